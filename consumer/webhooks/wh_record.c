/* noticecast-webhooks: the records the daemon writes (retry, DLQ, delivery event) and what it
 * reads back from its delivery events.  A leaf: it calls nothing in wh_kafka.c or
 * wh_deliver.c; both build their records here (see wh.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_dlq.h"
#include "nc_kafka.h"
#include "nc_log.h"
#include "nc_time.h"
#include "nc_util.h"
#include "wh.h"

static void hdr_add_int(rd_kafka_headers_t *h, const char *name, int64_t v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        rd_kafka_header_add(h, name, -1, buf, -1);
}

const char *wh_rec_kind_name(enum wh_rec_kind k)
{
        switch (k) {
        case WH_REC_EVENT:
                return "event";
        case WH_REC_RETRY:
                return "retry";
        case WH_REC_DLQ:
                return "DLQ";
        }
        fatalx("wh_rec_kind_name: unknown record kind %d", (int)k);
}

void wh_record_free(wh_produce_t *pr)
{
        free(pr->key);
        free(pr->value);
        free(pr->partner);
        free(pr->reason);
        free(pr->dlq_key);
        if (pr->hdrs)
                rd_kafka_headers_destroy(pr->hdrs);
        free(pr);
}

/* Keys of notice records are ids; anything longer is cut (it only labels the record). */
#define KEY_MAX 512

static wh_produce_t *record_new(wh_t *w, const char *topic, const wh_msg_t *m,
                                enum wh_rec_kind kind)
{
        wh_produce_t *pr = nc_xcalloc(1, sizeof(*pr));

        (void)w;
        pr->kind = kind;
        pr->topic = topic; /* one of w's topic names, which live as long as w */
        pr->key = m->id[0] ? nc_xstrdup(m->id)
                  : m->rkm->key
                      ? strndup(m->rkm->key, m->rkm->key_len < KEY_MAX ? m->rkm->key_len : KEY_MAX)
                      : NULL;
        pr->hdrs = rd_kafka_headers_new(12);
        return pr;
}

/* Original value bytes and the headers describing the notice. */
static void record_copy_notice(wh_produce_t *pr, const wh_msg_t *m)
{
        char buf[64];

        pr->value_len = m->rkm->len;
        pr->value = nc_xmalloc(m->rkm->len ? m->rkm->len : 1);
        if (m->rkm->len)
                memcpy(pr->value, m->rkm->payload, m->rkm->len);
        if (nc_kafka_header(m->rkm, "content-type", buf, sizeof(buf)))
                rd_kafka_header_add(pr->hdrs, "content-type", -1, buf, -1);
        if (nc_kafka_header(m->rkm, "noticecast-schema", buf, sizeof(buf)))
                rd_kafka_header_add(pr->hdrs, "noticecast-schema", -1, buf, -1);
        if (nc_kafka_header(m->rkm, "noticecast-event", buf, sizeof(buf)))
                rd_kafka_header_add(pr->hdrs, "noticecast-event", -1, buf, -1);
}

static void record_source(wh_produce_t *pr, const wh_msg_t *m)
{
        const char *topic = m->is_retry ? m->src_topic : rd_kafka_topic_name(m->rkm->rkt);
        int32_t part = m->is_retry ? m->src_partition : m->rkm->partition;
        int64_t off = m->is_retry ? m->src_offset : m->rkm->offset;

        rd_kafka_header_add(pr->hdrs, "noticecast-source-topic", -1, topic, -1);
        hdr_add_int(pr->hdrs, "noticecast-source-partition", part);
        hdr_add_int(pr->hdrs, "noticecast-source-offset", off);
        hdr_add_int(pr->hdrs, "noticecast-event-time", m->event_ms);
}

void wh_log_fields(nc_log_fields_t *f, const wh_msg_t *m, const char *partner)
{
        nc_log_field(f, "partner", partner);
        nc_log_field(f, "notice_id", m->id[0] ? m->id : NULL);
        nc_log_field(f, "topic", m->is_retry ? m->src_topic : rd_kafka_topic_name(m->rkm->rkt));
        nc_log_field_int(f, "partition", m->is_retry ? m->src_partition : m->rkm->partition);
        nc_log_field_int(f, "offset", m->is_retry ? m->src_offset : m->rkm->offset);
}

/* The chain a retry record belongs to, so that its DLQ entry has the chain's key. */
static void record_chain(wh_produce_t *pr, const wh_msg_t *m)
{
        char buf[320];

        snprintf(buf, sizeof(buf), "%s/%d/%lld", m->chain_topic, (int)m->chain_partition,
                 (long long)m->chain_offset);
        rd_kafka_header_add(pr->hdrs, "noticecast-chain", -1, buf, -1);
}

/* (Re)builds the value and headers of DLQ record PR for M: a copy of M, or a reference. */
static void dlq_fill(wh_t *w, wh_produce_t *pr, const wh_msg_t *m, int as_reference)
{
        const char *topic = m->is_retry ? m->src_topic : rd_kafka_topic_name(m->rkm->rkt);
        nc_dlq_source_t src = {.stage = "webhooks",
                               .topic = topic,
                               .partition = m->is_retry ? m->src_partition : m->rkm->partition,
                               .offset = m->is_retry ? m->src_offset : m->rkm->offset,
                               .reason = pr->reason,
                               .key = pr->dlq_key};

        free(pr->value);
        pr->value = NULL;
        if (pr->hdrs)
                rd_kafka_headers_destroy(pr->hdrs);
        pr->hdrs = rd_kafka_headers_new(16);
        if (as_reference) {
                /* No notice headers: replayed as is, it is refused as a notice, not taken for
                 * one; the original is still on its topic. */
                pr->value = nc_dlq_reference_value(&src, m->rkm->key, m->rkm->key_len,
                                                   m->rkm->payload, m->rkm->len, &pr->value_len);
                pr->reference = 1;
                rd_kafka_header_add(pr->hdrs, "content-type", -1, "application/json", -1);
        } else {
                record_copy_notice(pr, m);
        }
        nc_dlq_add_headers(pr->hdrs, &src, as_reference ? (m->rkm->len ? m->rkm->len : 1) : 0);
        if (pr->partner) {
                /* Replaying a partner's failure must go back to that partner only: through
                 * the first retry tier, due at once. */
                rd_kafka_header_add(pr->hdrs, "noticecast-dlq-partner", -1, pr->partner, -1);
                rd_kafka_header_add(pr->hdrs, "noticecast-dlq-replay-topic", -1, w->retry_topics[0],
                                    -1);
                rd_kafka_header_add(pr->hdrs, "noticecast-partner", -1, pr->partner, -1);
                hdr_add_int(pr->hdrs, "noticecast-attempt", 1);
                hdr_add_int(pr->hdrs, "noticecast-due", 0);
                record_source(pr, m);
        } else {
                rd_kafka_header_add(pr->hdrs, "noticecast-dlq-replay-topic", -1, topic, -1);
        }
}

wh_produce_t *wh_dlq_record(wh_t *w, wh_msg_t *m, const char *partner, const char *reason)
{
        wh_produce_t *pr = record_new(w, w->dlq_topic, m, WH_REC_DLQ);
        char k[NC_DLQ_KEY_SIZE];

        pr->partner = partner ? nc_xstrdup(partner) : NULL;
        pr->reason = nc_xstrdup(reason);
        nc_dlq_key(k, sizeof(k), "webhooks", m->chain_topic, m->chain_partition, m->chain_offset,
                   partner);
        pr->dlq_key = nc_xstrdup(k);
        /* Too large to copy: the brokers would refuse the copy (issue 8). */
        dlq_fill(w, pr, m, m->rkm->len > w->dlq_copy_max);
        return pr;
}

wh_produce_t *wh_retry_record(wh_t *w, wh_msg_t *m, const char *partner, int next_attempt,
                              int64_t due_ms, int tier)
{
        wh_produce_t *pr = record_new(w, w->retry_topics[tier], m, WH_REC_RETRY);

        record_copy_notice(pr, m);
        rd_kafka_header_add(pr->hdrs, "noticecast-partner", -1, partner, -1);
        hdr_add_int(pr->hdrs, "noticecast-attempt", next_attempt);
        hdr_add_int(pr->hdrs, "noticecast-due", due_ms);
        record_source(pr, m);
        record_chain(pr, m);
        return pr;
}

void wh_record_as_reference(wh_t *w, wh_produce_t *pr, const char *why)
{
        wh_msg_t *m = pr->job ? pr->job->msg : pr->msg;
        char reason[700];

        if (pr->kind == WH_REC_RETRY) {
                /* It cannot wait in a retry tier: the partner's delivery ends here. */
                char k[NC_DLQ_KEY_SIZE];

                snprintf(reason, sizeof(reason), "partner %s: cannot park the delivery in %s: %s",
                         pr->job->partner->cfg.id, pr->topic, why);
                pr->kind = WH_REC_DLQ;
                pr->topic = w->dlq_topic;
                pr->partner = nc_xstrdup(pr->job->partner->cfg.id);
                pr->reason = nc_xstrdup(reason);
                nc_dlq_key(k, sizeof(k), "webhooks", m->chain_topic, m->chain_partition,
                           m->chain_offset, pr->partner);
                pr->dlq_key = nc_xstrdup(k);
                pr->checked = 0;
        } else {
                /* Its key is claimed already (pr->checked): keep it. */
                snprintf(reason, sizeof(reason), "%s (the copy was refused: %s)", pr->reason, why);
                free(pr->reason);
                pr->reason = nc_xstrdup(reason);
        }
        dlq_fill(w, pr, m, 1);
}

/* JSON string body (without quotes) of S; invalid UTF-8 bytes become U+FFFD. */
static size_t json_escape(const char *s, char *out, size_t size)
{
        json_t *str = json_string(s);
        char *d;
        size_t n;

        if (!str)
                str = json_string("(unprintable)");
        d = json_dumps(str, JSON_ENCODE_ANY);
        json_decref(str);
        n = snprintf(out, size, "%.*s", (int)(strlen(d) - 2), d + 1);
        free(d);
        return n < size ? n : size - 1;
}

/* Formatted by hand: one event per attempt makes this a hot path (no JSON tree needed). */
wh_produce_t *wh_event_record(wh_t *w, const wh_job_t *j, enum wh_outcome outcome, long status,
                              const char *error, double latency_ms)
{
        wh_produce_t *pr = record_new(w, w->events_topic, j->msg, WH_REC_EVENT);
        char ts[40], st[24], err[700];
        size_t cap = 1024 + strlen(j->partner->cfg.id);

        if (status > 0)
                snprintf(st, sizeof(st), "%ld", status);
        else
                snprintf(st, sizeof(st), "null");
        if (error) {
                err[0] = '"';
                json_escape(error, err + 1, sizeof(err) - 2);
                strcat(err, "\"");
        } else {
                snprintf(err, sizeof(err), "null");
        }
        pr->value = nc_xmalloc(cap);
        pr->value_len = (size_t)snprintf(
            pr->value, cap,
            "{\"type\":\"webhook.attempt\",\"notice_id\":\"%s\",\"partner\":\"%s\","
            "\"webhook_id\":\"%s\",\"event\":\"%s\",\"attempt\":%d,\"outcome\":\"%s\","
            "\"status\":%s,\"error\":%s,\"latency_ms\":%.1f,\"time\":\"%s\"}",
            j->msg->id, j->partner->cfg.id, j->webhook_id, j->msg->event, j->attempt,
            wh_outcome_name(outcome), st, err, latency_ms,
            nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)));
        if (pr->value_len >= cap)
                pr->value_len = cap - 1;
        rd_kafka_header_add(pr->hdrs, "content-type", -1, "application/json", -1);
        rd_kafka_header_add(pr->hdrs, "noticecast-event", -1, "webhook.attempt", -1);
        return pr;
}

/* Found by searching rather than parsing, since every event of every instance passes here:
 * {"type":"webhook.attempt",...,"webhook_id":"msg_...",...,"outcome":"delivered",...} as
 * wh_event_record writes it. */
int wh_event_delivered_id(const void *payload, size_t len, char *buf, size_t size)
{
        static const char wid[] = "\"webhook_id\":\"";
        const char *p = payload, *id, *end;
        char out[64];
        int outl;

        outl =
            snprintf(out, sizeof(out), "\"outcome\":\"%s\"", wh_outcome_name(WH_OUTCOME_DELIVERED));
        if (!p || !memmem(p, len, out, (size_t)outl) ||
            !(id = memmem(p, len, wid, sizeof(wid) - 1)))
                return 0;
        id += sizeof(wid) - 1;
        if (!(end = memchr(id, '"', len - (size_t)(id - p))) || end == id ||
            (size_t)(end - id) >= size)
                return 0;
        memcpy(buf, id, (size_t)(end - id));
        buf[end - id] = '\0';
        return 1;
}

/* A webhook-id is "msg_" + 32 hex digits of a SHA-256 already: its first 16 digits are the
 * key (no second digest on this hot path). */
static uint64_t wid_key(const char *webhook_id)
{
        uint64_t h = 0;
        int i;

        if (strncmp(webhook_id, "msg_", 4) != 0)
                return nc_key_hash(webhook_id, strlen(webhook_id));
        for (i = 4; i < 20; i++) {
                int c = (unsigned char)webhook_id[i];

                if (!isxdigit(c))
                        return nc_key_hash(webhook_id, strlen(webhook_id));
                h = h << 4 | (uint64_t)(isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        return h ? h : 1;
}

int wh_delivered_has(const wh_t *w, const char *webhook_id)
{
        return nc_keyset_has(&w->delivered, wid_key(webhook_id));
}

void wh_delivered_add(wh_t *w, const char *webhook_id)
{
        nc_keyset_add(&w->delivered, wid_key(webhook_id));
}
