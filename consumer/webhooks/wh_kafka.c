/* noticecast-webhooks: Kafka side — consumer, offset tracking, retry tiers, DLQ and delivery
 * events, the DLQ and id readers (see wh.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nc_daemon.h"
#include "nc_dlq.h"
#include "nc_kafka.h"
#include "nc_notice.h"
#include "nc_time.h"
#include "nc_topics.h"
#include "nc_util.h"
#include "wh.h"

/* Consumption pauses while this many messages are unsettled (memory bound); a partner that
 * times out on everything still cannot stall the others, see wh_deliver.c. */
#define MAX_OUTSTANDING 4000

/* ---- headers --------------------------------------------------------------------------- */

static const char *hdr(const rd_kafka_message_t *m, const char *name, char *buf, size_t size)
{
        return nc_kafka_header(m, name, buf, size);
}

static int64_t hdr_int(const rd_kafka_message_t *m, const char *name, int64_t dflt)
{
        char buf[32], *end;
        long long v;

        if (!hdr(m, name, buf, sizeof(buf)))
                return dflt;
        v = strtoll(buf, &end, 10);
        return *end || end == buf ? dflt : v;
}

/* ---- tracks (per partition) ------------------------------------------------------------ */

static wh_track_t *track_get(wh_t *w, const char *topic, int32_t partition)
{
        int created = 0;
        wh_track_t *t =
            (wh_track_t *)nc_track_get(&w->tracks, topic, partition, sizeof(wh_track_t), &created);

        if (created)
                for (size_t i = 0; i < w->cfg.webhooks.retry_n; i++)
                        if (!strcmp(topic, w->retry_topics[i]))
                                t->retry_tier = 1;
        return t;
}

static void msg_free(wh_t *w, wh_msg_t *m)
{
        if (m->track->retry_tier)
                w->retry_outstanding--;
        free(m->shared_body);
        json_decref(m->data);
        rd_kafka_message_destroy(m->rkm);
        free(m);
        w->outstanding--;
}

static void msg_release(nc_track_msg_t *tm, void *opaque)
{
        msg_free(opaque, (wh_msg_t *)tm);
}

void wh_msg_settle_one(wh_t *w, wh_msg_t *m)
{
        if (--m->pending > 0)
                return;
        nc_track_settle(&m->track->base, &m->tm, msg_release, w);
}

/* ---- producing records whose acknowledgement settles work ------------------------------- */

/* Acknowledged (or known to be there already): settles what waited for it. */
static void produce_done(wh_t *w, wh_produce_t *pr)
{
        w->produces--;
        if (pr->job)
                wh_job_settle_one(w, pr->job);
        else if (pr->msg)
                wh_msg_settle_one(w, pr->msg);
        wh_record_free(pr);
}

static void prq_add(wh_t *w, wh_produce_t *pr, int64_t delay_ms)
{
        pr->due_ms = nc_time_now_ms() + delay_ms;
        TAILQ_INSERT_TAIL(&w->prq, pr, link);
        if (!w->prq_due_ms || pr->due_ms < w->prq_due_ms)
                w->prq_due_ms = pr->due_ms;
}

static void produce_try(wh_t *w, wh_produce_t *pr);

/* What PR is about, for its log lines: the message (and partner) it settles, else its key. */
static void produce_log_fields(nc_log_fields_t *f, const wh_produce_t *pr)
{
        const wh_msg_t *m = pr->job ? pr->job->msg : pr->msg;
        const char *partner = pr->partner ? pr->partner : pr->job ? pr->job->partner->cfg.id : NULL;

        if (m)
                wh_log_fields(f, m, partner);
        else
                nc_log_field(f, "key", pr->key);
}

/* librdkafka or the brokers would not take PR: a permanent refusal of a retry or DLQ record
 * turns it into a DLQ reference; anything else is produced again after a backoff, from the
 * loop (never by waiting here). */
static void produce_refused(wh_t *w, wh_produce_t *pr, rd_kafka_resp_err_t err)
{
        int64_t delay;

        if (nc_produce_classify(err) == NC_PRODUCE_REFUSED && pr->kind != WH_REC_EVENT &&
            !pr->reference) {
                nc_log_fields_t f = {0};

                produce_log_fields(&f, pr);
                nc_log_field(&f, "reason", rd_kafka_err2str(err));
                nc_log_f(NC_LOG_WARN, &f,
                         "%s record (%zu bytes) refused: quarantining a reference to it instead",
                         wh_rec_kind_name(pr->kind), pr->value_len);
                /* A delivery that cannot wait in a retry tier ends in the DLQ. */
                if (pr->kind == WH_REC_RETRY && pr->job)
                        wh_delivery_count(w, pr->job->partner->cfg.id, WH_OUTCOME_DLQ);
                wh_record_as_reference(w, pr, rd_kafka_err2str(err));
                produce_try(w, pr);
                return;
        }
        pr->attempts++;
        delay = err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? 20 : nc_produce_backoff_ms(pr->attempts);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL && (pr->attempts == 1 || pr->attempts % 50 == 0)) {
                nc_log_fields_t f = {0};

                produce_log_fields(&f, pr);
                nc_log_field(&f, "reason", rd_kafka_err2str(err));
                nc_log_field_int(&f, "attempt", pr->attempts);
                nc_log_f(NC_LOG_WARN, &f,
                         "producing a %s record to %s failed: trying again in %lld ms",
                         wh_rec_kind_name(pr->kind), pr->topic, (long long)delay);
        }
        prq_add(w, pr, delay);
}

static void produce_try(wh_t *w, wh_produce_t *pr)
{
        rd_kafka_resp_err_t err;

        if (pr->kind == WH_REC_DLQ && !pr->checked) {
                if (!w->dlq_synced) {
                        /* Not before we know what the DLQ holds already. */
                        prq_add(w, pr, 100);
                        return;
                }
                pr->checked = 1;
                nc_log_fields_t f = {0};

                produce_log_fields(&f, pr);
                nc_log_field(&f, "dlq_key", pr->dlq_key);
                if (!nc_keyset_add(&w->dlq_seen, nc_key_hash(pr->dlq_key, strlen(pr->dlq_key)))) {
                        nc_log_f(NC_LOG_INFO, &f, "dlq: quarantined already: not written again");
                        produce_done(w, pr);
                        return;
                }
                nc_metrics_inc(w->m_dlq, NULL, 1);
                nc_log_field(&f, "reason", pr->reason);
                nc_log_f(NC_LOG_WARN, &f, "dlq: quarantined%s",
                         pr->reference ? " as a reference" : "");
        }
        err =
            rd_kafka_producev(w->producer, RD_KAFKA_V_TOPIC(pr->topic),
                              RD_KAFKA_V_KEY(pr->key, pr->key ? strlen(pr->key) : 0),
                              RD_KAFKA_V_VALUE(pr->value, pr->value_len),
                              RD_KAFKA_V_MSGFLAGS(0), /* pr->value outlives it */
                              RD_KAFKA_V_HEADERS(pr->hdrs), RD_KAFKA_V_OPAQUE(pr), RD_KAFKA_V_END);
        if (!err) {
                pr->hdrs = NULL; /* now owned by the message; dr_cb takes them back on error */
                return;
        }
        produce_refused(w, pr, err);
}

void wh_produce_record(wh_t *w, wh_produce_t *pr)
{
        w->produces++;
        produce_try(w, pr);
}

void wh_msg_quarantine(wh_t *w, wh_msg_t *m, const char *partner, const char *reason)
{
        wh_produce_t *pr = wh_dlq_record(w, m, partner, reason);

        pr->msg = m;
        m->pending++;
        wh_produce_record(w, pr);
}

/* Produces again what waited in PRQ and is due (from the loop, every turn). */
static void prq_run(wh_t *w)
{
        struct wh_produce_list due;
        int64_t now = nc_time_now_ms();
        wh_produce_t *pr, *next;

        if (!w->prq_due_ms || now < w->prq_due_ms)
                return;
        TAILQ_INIT(&due);
        w->prq_due_ms = 0;
        for (pr = TAILQ_FIRST(&w->prq); pr; pr = next) {
                next = TAILQ_NEXT(pr, link);
                if (pr->due_ms <= now) {
                        TAILQ_REMOVE(&w->prq, pr, link);
                        TAILQ_INSERT_TAIL(&due, pr, link);
                } else if (!w->prq_due_ms || pr->due_ms < w->prq_due_ms) {
                        w->prq_due_ms = pr->due_ms;
                }
        }
        while ((pr = TAILQ_FIRST(&due))) {
                TAILQ_REMOVE(&due, pr, link);
                produce_try(w, pr);
        }
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
        wh_produce_t *pr = rkm->_private;
        wh_t *w = opaque;

        (void)rk;
        if (w->stopping > 1) { /* shutting down after the flush: what is left is abandoned */
                wh_record_free(pr);
                return;
        }
        if (rkm->err) {
                /* Never drop a retry, DLQ or event record: it is sent again (or, refused for
                 * good, as a reference).  The failed message still holds the headers. */
                rd_kafka_message_detach_headers((rd_kafka_message_t *)rkm, &pr->hdrs);
                if (!pr->hdrs)
                        pr->hdrs = rd_kafka_headers_new(1);
                produce_refused(w, pr, rkm->err);
                return;
        }
        produce_done(w, pr);
}

/* ---- decoding consumed messages -------------------------------------------------------- */

/* The category of notice topic TOPIC (<prefix>notices.<category>), or NULL. */
static const char *topic_category(const wh_t *w, const char *topic)
{
        size_t pl = strlen(w->cfg.topic_prefix);

        if (strncmp(topic, w->cfg.topic_prefix, pl) || strncmp(topic + pl, "notices.", 8))
                return NULL;
        return topic + pl + 8;
}

static int decode(wh_t *w, wh_msg_t *m, char *err, size_t errsize)
{
        rd_kafka_message_t *r = m->rkm;
        char event[64], schema[16], e[512];
        rd_kafka_timestamp_type_t tstype;
        json_error_t jerr;
        json_t *v, *n;
        const char *tc;

        if (!hdr(r, "noticecast-event", event, sizeof(event)))
                return nc_err(err, errsize, "missing header noticecast-event");
        if (strcmp(event, NC_EVENT_PUBLISHED) && strcmp(event, NC_EVENT_WITHDRAWN))
                return nc_err(err, errsize, "unknown noticecast-event '%.40s'", event);
        m->withdrawn = strcmp(event, NC_EVENT_PUBLISHED) != 0;
        m->event = m->withdrawn ? NC_EVENT_WITHDRAWN : NC_EVENT_PUBLISHED;
        if (hdr(r, "noticecast-schema", schema, sizeof(schema)) && strcmp(schema, NC_NOTICE_SCHEMA))
                return nc_err(err, errsize, "unsupported noticecast-schema '%.8s'", schema);
        if (!r->payload || !r->len)
                return nc_err(err, errsize, "empty value");
        if (!nc_utf8_valid(r->payload, r->len))
                return nc_err(err, errsize, "value is not valid UTF-8");
        if (!(v = json_loadb(r->payload, r->len, JSON_REJECT_DUPLICATES, &jerr)))
                return nc_err(err, errsize, "invalid JSON: %s", jerr.text);
        if (!m->withdrawn) {
                n = nc_notice_normalise(v, &w->cfg, NC_NOTICE_STORED, 0, e, sizeof(e));
                json_decref(v);
                if (!n)
                        return nc_err(err, errsize, "invalid notice: %s", e);
        } else {
                if (nc_notice_withdrawal_check(v, &w->cfg, e, sizeof(e)) != 0) {
                        json_decref(v);
                        return nc_err(err, errsize, "invalid withdrawal: %s", e);
                }
                n = v;
        }
        m->data = n;
        snprintf(m->id, sizeof(m->id), "%s", nc_notice_id(n));
        snprintf(m->category, sizeof(m->category), "%s", nc_notice_category(n));
        /* A partner filtering by category must not get it under the wrong one. */
        if (!m->is_retry && (tc = topic_category(w, rd_kafka_topic_name(r->rkt))) &&
            strcmp(tc, m->category))
                return nc_err(err, errsize, "category '%s' does not match topic %s", m->category,
                              rd_kafka_topic_name(r->rkt));
        if (!m->is_retry)
                m->event_ms = rd_kafka_message_timestamp(r, &tstype);
        if (m->event_ms <= 0)
                m->event_ms = nc_time_now_ms();
        return 0;
}

/* ---- the id reader: which notices were published ---------------------------------------- */

static uint64_t id_hash(const char *category, const char *id)
{
        char buf[256];
        size_t n = (size_t)snprintf(buf, sizeof(buf), "%s%c%s", category, '\0', id), i;

        if (n >= sizeof(buf))
                n = sizeof(buf) - 1;
        for (i = strlen(category) + 1; i < n; i++)
                buf[i] = (char)tolower((unsigned char)buf[i]);
        return nc_key_hash(buf, n);
}

static wh_idpart_t *idpart(wh_t *w, const char *topic, int32_t partition, int create)
{
        size_t i;

        for (i = 0; i < w->idparts_n; i++)
                if (w->idparts[i].partition == partition && !strcmp(w->idparts[i].topic, topic))
                        return &w->idparts[i];
        if (!create)
                return NULL;
        if (w->idparts_n == w->idparts_cap) {
                w->idparts_cap = w->idparts_cap ? w->idparts_cap * 2 : 16;
                w->idparts = nc_xrealloc(w->idparts, w->idparts_cap * sizeof(*w->idparts));
        }
        memset(&w->idparts[w->idparts_n], 0, sizeof(*w->idparts));
        snprintf(w->idparts[w->idparts_n].topic, sizeof(w->idparts[0].topic), "%s", topic);
        w->idparts[w->idparts_n].partition = partition;
        return &w->idparts[w->idparts_n++];
}

static void ids_update_synced(wh_t *w)
{
        size_t i;

        if (!w->ids_assigned)
                return;
        for (i = 0; i < w->idparts_n; i++)
                if (!w->idparts[i].eof)
                        return;
        if (!w->ids_synced)
                log_info("id reader: the notice topics are read (%zu published notices known)",
                         w->ids.n);
        w->ids_synced = 1;
}

/* Its own group, of one member: it is given every partition; it resumes where it was. */
static void id_assigning(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        wh_t *w = opaque;
        int i;

        (void)rk;
        for (i = 0; i < parts->cnt; i++) {
                wh_idpart_t *ip = idpart(w, parts->elems[i].topic, parts->elems[i].partition, 1);

                parts->elems[i].offset = ip->pos > 0 ? ip->pos : RD_KAFKA_OFFSET_BEGINNING;
        }
}

static void id_assigned(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        wh_t *w = opaque;

        (void)rk;
        (void)parts;
        w->ids_assigned = 1;
        w->ids_synced = 0;
        ids_update_synced(w);
}

static void id_record(wh_t *w, const rd_kafka_message_t *r)
{
        const char *tc = topic_category(w, rd_kafka_topic_name(r->rkt)), *id, *cat;
        char event[64];
        json_t *v;

        if (!tc || !r->payload || !hdr(r, "noticecast-event", event, sizeof(event)) ||
            strcmp(event, NC_EVENT_PUBLISHED))
                return;
        if (!(v = json_loadb(r->payload, r->len, 0, NULL)))
                return;
        id = json_string_value(json_object_get(v, "id"));
        cat = json_string_value(json_object_get(v, "category"));
        /* Published under another category, it is quarantined: not a notice of this one. */
        if (id && cat && !strcmp(cat, tc))
                nc_keyset_add(&w->ids, id_hash(cat, id));
        json_decref(v);
}

static void id_reader_poll(wh_t *w)
{
        rd_kafka_message_t *batch[500];
        ssize_t n, i;

        if (!w->id_q)
                return;
        n = rd_kafka_consume_batch_queue(w->id_q, 0, batch, sizeof(batch) / sizeof(batch[0]));
        for (i = 0; i < n; i++) {
                rd_kafka_message_t *r = batch[i];
                wh_idpart_t *ip =
                    r->rkt ? idpart(w, rd_kafka_topic_name(r->rkt), r->partition, 1) : NULL;

                if (r->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && ip) {
                        ip->eof = 1;
                        if (r->offset > ip->pos)
                                ip->pos = r->offset;
                        ids_update_synced(w);
                } else if (r->err) {
                        log_debug("id reader: %s", rd_kafka_message_errstr(r));
                } else if (ip) {
                        if (r->offset + 1 > ip->pos)
                                ip->pos = r->offset + 1;
                        id_record(w, r);
                }
                rd_kafka_message_destroy(r);
        }
}

/* Can it be told whether the notice withdrawn by M was published?  Once the reader has read
 * every partition to its end once and read past M itself (the notice, same key and topic,
 * comes before it on the same partition). */
static int withdrawal_decidable(wh_t *w, const wh_msg_t *m)
{
        const wh_idpart_t *ip;

        if (!w->ids_synced)
                return 0;
        ip = idpart(w, rd_kafka_topic_name(m->rkm->rkt), m->rkm->partition, 0);
        return ip && ip->pos > m->rkm->offset;
}

static void wait_append(wh_t *w, wh_msg_t *m)
{
        m->pending++;
        m->wait_next = NULL;
        if (w->wait_tail)
                w->wait_tail->wait_next = m;
        else
                w->wait_head = m;
        w->wait_tail = m;
}

/* Withdrawals whose notice is known now are dispatched; unknown ones go to the DLQ. */
static void wait_run(wh_t *w)
{
        wh_msg_t **pp = &w->wait_head, *m, *prev = NULL;

        if (w->stopping)
                return; /* left unsettled: read again after the restart */
        while ((m = *pp)) {
                if (!withdrawal_decidable(w, m)) {
                        prev = m;
                        pp = &m->wait_next;
                        continue;
                }
                *pp = m->wait_next;
                if (w->wait_tail == m)
                        w->wait_tail = prev;
                if (m->track->base.revoked) {
                        /* no longer ours: the next owner decides */
                } else if (nc_keyset_has(&w->ids, id_hash(m->category, m->id))) {
                        wh_dispatch(w, m);
                } else {
                        char reason[300];

                        snprintf(reason, sizeof(reason),
                                 "withdrawal of notice %s: no such notice was published on %s",
                                 m->id, rd_kafka_topic_name(m->rkm->rkt));
                        wh_msg_quarantine(w, m, NULL, reason);
                }
                wh_msg_settle_one(w, m);
        }
}

/* ---- the DLQ and events readers (nc_tail.h) --------------------------------------------- */

/* Serves tail reader T (one batch a turn); 1 the first time it is caught up. */
static int tail_poll(wh_t *w, nc_tail_t *t, nc_tail_fn *fn, int *synced)
{
        nc_tail_poll(t, 500, fn, w);
        if (*synced || !nc_tail_caught_up(t))
                return 0;
        return *synced = 1;
}

/* A DLQ entry of this stage, of any instance: it is not written again. */
static void dlq_entry(const rd_kafka_message_t *r, void *opaque)
{
        char key[NC_DLQ_KEY_SIZE];
        wh_t *w = opaque;

        if (r->err)
                log_debug("dlq reader: %s", rd_kafka_message_errstr(r));
        else if (hdr(r, "noticecast-dlq-key", key, sizeof(key)) && !strncmp(key, "webhooks/", 9))
                nc_keyset_add(&w->dlq_seen, nc_key_hash(key, strlen(key)));
}

static void dlq_reader_poll(wh_t *w)
{
        if (!tail_poll(w, w->dlq_tail, dlq_entry, &w->dlq_synced))
                return;
        w->prq_due_ms = 1; /* release the DLQ records waiting */
        log_info("dlq reader: %zu entries of this stage known", w->dlq_seen.n);
}

/* A delivery event of any instance: what it says was delivered is not sent again. */
static void ev_record(const rd_kafka_message_t *r, void *opaque)
{
        char buf[NC_WEBHOOK_ID_SIZE];

        if (r->err)
                log_debug("events reader: %s", rd_kafka_message_errstr(r));
        else if (wh_event_delivered_id(r->payload, r->len, buf, sizeof(buf)))
                wh_delivered_add(opaque, buf);
}

static void ev_reader_poll(wh_t *w)
{
        if (tail_poll(w, w->ev_tail, ev_record, &w->ev_synced))
                log_info("events reader: %zu delivered (notice, partner) known", w->delivered.n);
}

/* The chain of M: carried by a retry record, else M itself (a notice, or a replayed record). */
static void msg_chain(wh_msg_t *m)
{
        char buf[320], *a, *b;

        if (m->is_retry && hdr(m->rkm, "noticecast-chain", buf, sizeof(buf)) &&
            (b = strrchr(buf, '/')) && b > buf) {
                *b = '\0';
                if ((a = strrchr(buf, '/')) && a > buf) {
                        *a = '\0';
                        size_t tl = strlen(buf) < sizeof(m->chain_topic) - 1
                                        ? strlen(buf)
                                        : sizeof(m->chain_topic) - 1;

                        memcpy(m->chain_topic, buf, tl);
                        m->chain_topic[tl] = '\0';
                        m->chain_partition = (int32_t)strtol(a + 1, NULL, 10);
                        m->chain_offset = strtoll(b + 1, NULL, 10);
                        return;
                }
        }
        snprintf(m->chain_topic, sizeof(m->chain_topic), "%s", rd_kafka_topic_name(m->rkm->rkt));
        m->chain_partition = m->rkm->partition;
        m->chain_offset = m->rkm->offset;
}

/* What a retry record's headers say: for whom, which attempt, when, and where it came from. */
static void msg_read_retry(wh_msg_t *m)
{
        const rd_kafka_message_t *rkm = m->rkm;

        m->is_retry = 1;
        hdr(rkm, "noticecast-partner", m->partner, sizeof(m->partner));
        m->attempt = (int)hdr_int(rkm, "noticecast-attempt", 2);
        m->due_ms = hdr_int(rkm, "noticecast-due", 0);
        hdr(rkm, "noticecast-source-topic", m->src_topic, sizeof(m->src_topic));
        m->src_partition = (int32_t)hdr_int(rkm, "noticecast-source-partition", -1);
        m->src_offset = hdr_int(rkm, "noticecast-source-offset", -1);
        m->event_ms = hdr_int(rkm, "noticecast-event-time", 0);
}

static void timer_at(wh_t *w, int64_t due_ms)
{
        if (w->next_timer_ms == 0 || due_ms < w->next_timer_ms)
                w->next_timer_ms = due_ms;
}

static void partition_pause(wh_t *w, const wh_track_t *t, int pause)
{
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);

        rd_kafka_topic_partition_list_add(l, t->base.topic, t->base.partition);
        if (pause)
                rd_kafka_pause_partitions(w->consumer, l);
        else
                rd_kafka_resume_partitions(w->consumer, l);
        rd_kafka_topic_partition_list_destroy(l);
}

/* M waits on its track (held, in offset order) until wh_timers() releases it. */
static void track_hold(wh_track_t *t, wh_msg_t *m)
{
        if (t->held_n == t->held_cap) {
                t->held_cap = t->held_cap ? t->held_cap * 2 : 16;
                t->held = nc_xrealloc(t->held, t->held_cap * sizeof(*t->held));
        }
        t->held[t->held_n++] = m;
        m->pending++;
}

static void handle_message(wh_t *w, rd_kafka_message_t *rkm)
{
        wh_msg_t *m = nc_xcalloc(1, sizeof(*m));
        char err[600];
        wh_track_t *t;

        m->rkm = rkm;
        m->pending = 1; /* released at the end of this function */
        t = track_get(w, rd_kafka_topic_name(rkm->rkt), rkm->partition);
        m->track = t;
        nc_track_append(&t->base, &m->tm, rkm->offset);
        w->outstanding++;

        if (t->retry_tier) {
                w->retry_outstanding++;
                msg_read_retry(m);
        }
        msg_chain(m);
        if (decode(w, m, err, sizeof(err)) != 0) {
                wh_msg_quarantine(w, m, m->is_retry ? m->partner : NULL, err);
        } else if (!m->is_retry && m->withdrawn) {
                /* Forwarded only once we know its notice was published. */
                wait_append(w, m);
        } else if (m->is_retry && m->due_ms > nc_time_now_ms()) {
                /* Not due yet: hold it (and everything behind it on this partition). */
                track_hold(t, m);
                if (!t->paused) {
                        partition_pause(w, t, 1);
                        t->paused = 1;
                }
                timer_at(w, m->due_ms);
        } else if (m->is_retry && t->held_n > t->held_first) {
                /* Keep the partition's order: it waits behind the held ones. */
                m->due_ms = t->held[t->held_n - 1]->due_ms;
                track_hold(t, m);
        } else {
                wh_dispatch(w, m);
        }
        wh_msg_settle_one(w, m);
}

/* Releases held retry records that are due; resumes their partitions when empty. */
void wh_timers(wh_t *w, int64_t now)
{
        nc_track_t *b;

        w->next_timer_ms = 0;
        if (w->stopping)
                return; /* held records stay: they are read again after the restart */
        for (b = w->tracks; b; b = b->next) {
                wh_track_t *t = (wh_track_t *)b;

                while (t->held_first < t->held_n && t->held[t->held_first]->due_ms <= now) {
                        wh_msg_t *m = t->held[t->held_first++];

                        if (!b->revoked)
                                wh_dispatch(w, m);
                        wh_msg_settle_one(w, m);
                }
                if (t->held_first < t->held_n) {
                        timer_at(w, t->held[t->held_first]->due_ms);
                } else if (t->held_n) {
                        t->held_n = t->held_first = 0;
                        if (t->paused && !b->revoked)
                                partition_pause(w, t, 0);
                        t->paused = 0;
                }
        }
}

/* ---- rebalancing ----------------------------------------------------------------------- */

static void consumer_assigned(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        wh_t *w = opaque;

        (void)rk;
        log_info("assigned %d partition%s", parts->cnt, parts->cnt == 1 ? "" : "s");
        nc_kafka_denied_clear(w->denied);
        w->ready = 1;
}

/* Revoked: work already started goes on, but its offsets are no longer ours to store (what is
 * settled was, by nc_kafka_rebalance_cb); the next owner re-reads from the last committed
 * offset (at-least-once). */
static void consumer_revoking(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        (void)rk;
        (void)opaque;
        log_info("revoked %d partition%s", parts->cnt, parts->cnt == 1 ? "" : "s");
}

/* ---- start / poll / stop --------------------------------------------------------------- */

/* The names of the topics we use (nc_topics.h names them all). */
static void topic_names(wh_t *w)
{
        for (size_t i = 0; i < w->cfg.webhooks.retry_n; i++)
                nc_topics_retry_name(&w->cfg, w->cfg.webhooks.retry_ms[i], w->retry_topics[i],
                                     sizeof(w->retry_topics[i]));
        nc_topics_name(&w->cfg, NC_TOPIC_DLQ, w->dlq_topic, sizeof(w->dlq_topic));
        nc_topics_name(&w->cfg, NC_TOPIC_DELIVERIES, w->events_topic, sizeof(w->events_topic));
}

/* `noticecast topics create` makes them: we only check (no CreateTopics right needed). */
static int topics_step(void *arg, char *errstr, size_t errstr_size)
{
        wh_t *w = arg;

        return nc_kafka_topics_require(&w->cfg, NC_TOPICS_WEBHOOKS, w->cfg.producer_timeout_ms,
                                       errstr, errstr_size);
}

static void wait_for_topics(wh_t *w)
{
        const char *names[18];
        size_t i;

        for (i = 0; i < w->cfg.webhooks.retry_n; i++)
                names[i] = w->retry_topics[i];
        /* the readers need the partitions of these two at once */
        names[i++] = w->dlq_topic;
        names[i++] = w->events_topic;
        if (nc_kafka_wait_topics(w->producer, names, i, 15000) != 0)
                log_warnx("retry topics not visible yet: they join the subscription later");
}

/* A group-less reader of TOPIC from RECENT records before the end of each partition, then
 * live (nc_tail.h). */
static int tail_reader_start(wh_t *w, const char *topic, int64_t recent, const char *what,
                             nc_tail_t **tp, char *errstr, size_t errstr_size)
{
        char group[300];

        snprintf(group, sizeof(group), "%s.reader", w->cfg.webhooks.group_id);
        /* Our own records are not transactional; an open transaction of the mailer must not
         * hold back the end. */
        if (!(*tp = nc_tail_new(
                  &w->cfg,
                  &(nc_tail_opts_t){
                      .name = what, .topic = topic, .group_id = group, .read_uncommitted = 1},
                  errstr, errstr_size)))
                return -1;
        nc_tail_wake_fd(*tp, w->wake_pipe[1], "r", 1);
        return nc_tail_start(*tp, recent, w->cfg.producer_timeout_ms, errstr, errstr_size);
}

/* A member of group O->group_id (O->set is ours) subscribed to every notice topic (and the
 * retry tiers: WITH_RETRY), whose queue wakes the loop with WAKE. */
static int group_start(wh_t *w, const nc_kafka_opts_t *o, int with_retry, const char *wake,
                       rd_kafka_t **rkp, rd_kafka_queue_t **qp, char *errstr, size_t errstr_size)
{
        static const nc_kafka_setting_t set[] = {{"topic.metadata.refresh.interval.ms", "10000"},
                                                 {"fetch.wait.max.ms", "100"},
                                                 {NULL, NULL}};
        nc_kafka_opts_t ko = *o;
        rd_kafka_topic_partition_list_t *subs;
        rd_kafka_resp_err_t err;
        size_t i;

        ko.set = set;
        if (!(*rkp = nc_kafka_group_consumer_new(&w->cfg, &ko, errstr, errstr_size)))
                return -1;
        *qp = rd_kafka_queue_get_consumer(*rkp);
        /* Wake the event loop (blocked in epoll_wait) when messages arrive. */
        rd_kafka_queue_io_event_enable(*qp, w->wake_pipe[1], wake, 1);
        subs = rd_kafka_topic_partition_list_new(20);
        rd_kafka_topic_partition_list_add(subs, w->notice_regex, RD_KAFKA_PARTITION_UA);
        for (i = 0; with_retry && i < w->cfg.webhooks.retry_n; i++)
                if (!rd_kafka_topic_partition_list_find(subs, w->retry_topics[i],
                                                        RD_KAFKA_PARTITION_UA))
                        rd_kafka_topic_partition_list_add(subs, w->retry_topics[i],
                                                          RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(*rkp, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (err)
                return nc_err(errstr, errstr_size, "%s: subscribe: %s", o->name,
                              rd_kafka_err2str(err));
        return 0;
}

/* Every notice topic from the beginning, then live, in a consumer group of its own (one
 * member: it is given every partition, and new notice topics as they appear); nothing is
 * committed: it resumes from where it was (id_assigning). */
static int id_reader_start(wh_t *w, char *errstr, size_t errstr_size)
{
        char group[400], host[64] = "host";
        unsigned r = 0;

        gethostname(host, sizeof(host) - 1);
        if (getentropy(&r, sizeof(r)) != 0)
                r = (unsigned)nc_time_now_ms();
        snprintf(group, sizeof(group), "%s.ids.%s-%d-%08x", w->cfg.webhooks.group_id, host,
                 (int)getpid(), r);
        w->id_rebalance =
            (nc_kafka_rebalance_t){.assigning = id_assigning, .assigned = id_assigned, .opaque = w};
        return group_start(w,
                           &(nc_kafka_opts_t){.name = "id reader",
                                              .group_id = group,
                                              .commit_interval_ms = 0,
                                              .partition_eof = 1,
                                              .rebalance = &w->id_rebalance},
                           0, "i", &w->id_reader, &w->id_q, errstr, errstr_size);
}

/* ---- the retry tiers' backlog (a thread: watermark queries block) ------------------------ */

static int is_retry_topic(const wh_t *w, const char *topic)
{
        size_t i;

        for (i = 0; i < w->cfg.webhooks.retry_n; i++)
                if (!strcmp(topic, w->retry_topics[i]))
                        return 1;
        return 0;
}

/* Records of the assigned retry tier partitions not consumed yet: the high watermark (asked
 * of the leader: a paused partition is not fetched, so librdkafka's cached one goes stale)
 * minus the position (or the committed offset before anything was consumed).  -1 if unknown. */
static int64_t retry_lag(wh_t *w)
{
        rd_kafka_topic_partition_list_t *parts, *mine;
        int64_t lag = 0, lo, hi;
        int i;

        if (rd_kafka_assignment(w->consumer, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return -1;
        mine = rd_kafka_topic_partition_list_new(parts->cnt ? parts->cnt : 1);
        for (i = 0; i < parts->cnt; i++)
                if (is_retry_topic(w, parts->elems[i].topic))
                        rd_kafka_topic_partition_list_add(mine, parts->elems[i].topic,
                                                          parts->elems[i].partition);
        rd_kafka_topic_partition_list_destroy(parts);
        rd_kafka_position(w->consumer, mine);
        for (i = 0; i < mine->cnt; i++) {
                rd_kafka_topic_partition_t *p = &mine->elems[i];

                if (p->offset < 0) {
                        rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);

                        rd_kafka_topic_partition_list_add(one, p->topic, p->partition);
                        if (rd_kafka_committed(w->consumer, one, 5000) == 0)
                                p->offset = one->elems[0].offset;
                        rd_kafka_topic_partition_list_destroy(one);
                }
                if (rd_kafka_query_watermark_offsets(w->consumer, p->topic, p->partition, &lo, &hi,
                                                     5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                        lag = -1;
                        break;
                }
                if (p->offset < lo)
                        p->offset = lo;
                if (hi > p->offset)
                        lag += hi - p->offset;
        }
        rd_kafka_topic_partition_list_destroy(mine);
        return lag;
}

static void *stats_main(void *arg)
{
        wh_t *w = arg;
        struct timespec ts;

        pthread_mutex_lock(&w->stats_lock);
        while (!w->stats_stop) {
                int64_t lag;

                pthread_mutex_unlock(&w->stats_lock);
                lag = retry_lag(w);
                pthread_mutex_lock(&w->stats_lock);
                if (lag >= 0)
                        w->retry_lag = lag;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 2;
                if (!w->stats_stop)
                        pthread_cond_timedwait(&w->stats_cond, &w->stats_lock, &ts);
        }
        pthread_mutex_unlock(&w->stats_lock);
        return NULL;
}

size_t wh_retry_backlog(wh_t *w)
{
        int64_t lag;

        pthread_mutex_lock(&w->stats_lock);
        lag = w->retry_lag;
        pthread_mutex_unlock(&w->stats_lock);
        return w->retry_outstanding + (size_t)(lag > 0 ? lag : 0);
}

/* Producer: retry tiers, DLQ, delivery events.  Idempotent and acks=all: a record
 * acknowledged here is durable, which is what settles the work behind it. */
static int producer_start(wh_t *w, char *errstr, size_t errstr_size)
{
        /* One event record per attempt is most of what the brokers receive from us: bigger,
         * compressed batches halve the broker's CPU per delivery (make bench).  The only cost
         * is that a delivery settles up to 50 ms later.  [kafka] may set them otherwise. */
        static const nc_kafka_setting_t defaults[] = {
            {"linger.ms", "50"}, {"compression.type", "lz4"}, {NULL, NULL}};
        char mmb[32];
        size_t mmb_len = sizeof(mmb);
        rd_kafka_queue_t *pq;

        if (!(w->producer = nc_kafka_idempotent_producer_new(
                  &w->cfg,
                  &(nc_kafka_opts_t){.defaults = defaults, .dr_msg_cb = dr_cb, .opaque = w}, errstr,
                  errstr_size)))
                return -1;
        if (rd_kafka_conf_get(rd_kafka_conf(w->producer), "message.max.bytes", mmb, &mmb_len) !=
            RD_KAFKA_CONF_OK)
                snprintf(mmb, sizeof(mmb), "1000000");
        w->dlq_copy_max = nc_dlq_copy_max(mmb);
        /* Wake the event loop (blocked in epoll_wait) when reports arrive. */
        pq = rd_kafka_queue_get_main(w->producer);
        rd_kafka_queue_io_event_enable(pq, w->wake_pipe[1], "p", 1);
        rd_kafka_queue_destroy(pq);
        return 0;
}

/* The consumer of the notice topics and the retry tiers: its offsets are stored past settled
 * work (nc_track.h) and committed every 200 ms. */
static int consumer_start(wh_t *w, char *errstr, size_t errstr_size)
{
        w->rebalance = (nc_kafka_rebalance_t){.assigned = consumer_assigned,
                                              .revoking = consumer_revoking,
                                              .tracks = &w->tracks,
                                              .opaque = w};
        return group_start(w,
                           &(nc_kafka_opts_t){.name = "consumer",
                                              .group_id = w->cfg.webhooks.group_id,
                                              .commit_interval_ms = 200,
                                              .rebalance = &w->rebalance},
                           1, "k", &w->consumer, &w->cq, errstr, errstr_size);
}

int wh_kafka_start(wh_t *w, char *errstr, size_t errstr_size)
{
        TAILQ_INIT(&w->prq);
        nc_keyset_init(&w->dlq_seen, WH_DLQ_SEEN_MAX);
        nc_keyset_init(&w->ids, WH_IDS_MAX);
        nc_keyset_init(&w->delivered, WH_DELIVERED_MAX);
        pthread_mutex_init(&w->stats_lock, NULL);
        pthread_cond_init(&w->stats_cond, NULL);
        w->retry_lag = -1;
        /* Brokers down or not ready at start: wait (logged, /readyz 503), do not exit. */
        topic_names(w);
        if (nc_daemon_retry("checking topics", topics_step, w, errstr, errstr_size) != 0)
                return -1;
        if (nc_kafka_notice_regex(&w->cfg, w->notice_regex, sizeof(w->notice_regex)) != 0)
                return nc_err(errstr, errstr_size,
                              "%s: [noticecast] topic_prefix: too long for a topic pattern",
                              w->cfg.path ? w->cfg.path : "configuration");
        if (producer_start(w, errstr, errstr_size) != 0)
                return -1;
        wait_for_topics(w);
        /* The DLQ's recent entries and the recent delivery events, then live. */
        if (tail_reader_start(w, w->dlq_topic, WH_DLQ_RECENT, "dlq reader", &w->dlq_tail, errstr,
                              errstr_size) != 0 ||
            tail_reader_start(w, w->events_topic, WH_DELIVERED_RECENT, "events reader", &w->ev_tail,
                              errstr, errstr_size) != 0 ||
            id_reader_start(w, errstr, errstr_size) != 0 ||
            consumer_start(w, errstr, errstr_size) != 0)
                return -1;
        if (pthread_create(&w->stats_thread, NULL, stats_main, w) == 0)
                w->stats_started = 1;
        log_info("consuming %s and %zu retry tier%s as group %s", w->notice_regex,
                 w->cfg.webhooks.retry_n, w->cfg.webhooks.retry_n == 1 ? "" : "s",
                 w->cfg.webhooks.group_id);
        return 0;
}

/* A revoked track is freed once its last message is settled and nothing is held. */
static int track_busy(const nc_track_t *b)
{
        const wh_track_t *t = (const wh_track_t *)b;

        return t->held_first != t->held_n;
}

static void track_free_extra(nc_track_t *b)
{
        free(((wh_track_t *)b)->held);
}

/* Serves producer reports and the readers, produces again what is due, and takes new
 * messages (unless paused for memory). */
void wh_kafka_poll(wh_t *w)
{
        rd_kafka_message_t *batch[500];
        ssize_t n, i;

        /* between loop turns, never while the list is being walked */
        nc_tracks_gc(&w->tracks, track_busy, track_free_extra);
        rd_kafka_poll(w->producer, 0); /* delivery reports settle work */
        dlq_reader_poll(w);
        ev_reader_poll(w);
        id_reader_poll(w);
        prq_run(w);
        wait_run(w);
        nc_tracks_store(w->tracks, w->consumer);
        if (w->stopping)
                return;
        if (w->outstanding >= MAX_OUTSTANDING) {
                if (!w->consuming_paused)
                        log_debug("%zu messages in progress: waiting before consuming more",
                                  w->outstanding);
                w->consuming_paused = 1;
                /* Still serve rebalances and errors, without taking messages. */
                return;
        }
        w->consuming_paused = 0;
        if (!w->ev_synced)
                return; /* not before we know what was delivered already */
        n = rd_kafka_consume_batch_queue(w->cq, 0, batch, sizeof(batch) / sizeof(batch[0]));
        for (i = 0; i < n; i++) {
                if (batch[i]->err) {
                        if (batch[i]->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                            !nc_kafka_consumer_denied(&w->cfg, w->consumer, batch[i], "consumer",
                                                      w->denied, sizeof(w->denied)))
                                log_warnx("consumer: %s", rd_kafka_message_errstr(batch[i]));
                        rd_kafka_message_destroy(batch[i]);
                        continue;
                }
                handle_message(w, batch[i]);
        }
}

static int remaining_ms(int64_t deadline_ms, int floor_ms)
{
        int64_t left = deadline_ms - nc_time_now_ms();

        return left > floor_ms ? (int)left : floor_ms;
}

/* The readers commit nothing, and the id reader's group is its own: no group to leave. */
static void readers_free(wh_t *w)
{
        nc_tail_free(w->dlq_tail);
        nc_tail_free(w->ev_tail);
        w->dlq_tail = w->ev_tail = NULL;
        if (w->id_q)
                rd_kafka_queue_destroy(w->id_q);
        if (w->id_reader)
                rd_kafka_destroy_flags(w->id_reader, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        w->id_reader = NULL;
        w->id_q = NULL;
}

void wh_kafka_stop(wh_t *w, int64_t deadline_ms)
{
        rd_kafka_resp_err_t err;
        int closed = 1;

        if (w->stats_started) {
                pthread_mutex_lock(&w->stats_lock);
                w->stats_stop = 1;
                pthread_cond_signal(&w->stats_cond);
                pthread_mutex_unlock(&w->stats_lock);
                pthread_join(w->stats_thread, NULL);
                w->stats_started = 0;
        }
        if (w->producer) {
                /* Every record that settles work must reach the brokers before we commit. */
                if ((err = rd_kafka_flush(w->producer, remaining_ms(deadline_ms, 100))))
                        log_warnx("producer flush: %s (%zu records not acknowledged)",
                                  rd_kafka_err2str(err), w->produces);
                rd_kafka_poll(w->producer, 0);
        }
        if (w->consumer) {
                rd_kafka_topic_partition_list_t *l;

                closed = 0;
                nc_tracks_store(w->tracks, w->consumer);
                if (rd_kafka_assignment(w->consumer, &l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        if (l->cnt)
                                rd_kafka_commit(w->consumer, NULL, 1); /* stored offsets */
                        rd_kafka_topic_partition_list_destroy(l);
                }
                /* Leave the group (committing what is stored), but not for longer than the
                 * shutdown allows: a broker that is away cannot keep us. */
                if (nc_kafka_consumer_close_bounded(w->consumer, remaining_ms(deadline_ms, 2000)) ==
                    0)
                        closed = 1;
                else
                        log_warnx("consumer close: timed out; the group notices when our session "
                                  "expires");
        }
        readers_free(w);
        nc_tracks_free(&w->tracks, msg_release, w, track_free_extra);
        w->stopping = 2;
        while (!TAILQ_EMPTY(&w->prq)) {
                wh_produce_t *pr = TAILQ_FIRST(&w->prq);

                TAILQ_REMOVE(&w->prq, pr, link);
                wh_record_free(pr);
        }
        if (w->cq)
                rd_kafka_queue_destroy(w->cq);
        if (w->consumer)
                rd_kafka_destroy_flags(w->consumer,
                                       closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        if (w->producer)
                rd_kafka_destroy(w->producer);
        w->consumer = w->producer = NULL;
        w->cq = NULL;
        nc_keyset_free(&w->delivered);
        free(w->idparts);
        w->idparts = NULL;
        nc_keyset_free(&w->dlq_seen);
        nc_keyset_free(&w->ids);
}
