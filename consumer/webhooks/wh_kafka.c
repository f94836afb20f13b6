/* noticecast-webhooks: Kafka side — consumer, offset tracking, retry tiers, DLQ and delivery
 * events. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nc_kafka.h"
#include "nc_notice.h"
#include "nc_time.h"
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

static void hdr_add_int(rd_kafka_headers_t *h, const char *name, int64_t v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        rd_kafka_header_add(h, name, -1, buf, -1);
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
        free(m->std_body);
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

static void produce_free(wh_produce_t *pr)
{
        free(pr->key);
        free(pr->value);
        if (pr->hdrs)
                rd_kafka_headers_destroy(pr->hdrs);
        free(pr);
}

void wh_produce_record(wh_t *w, wh_produce_t *pr)
{
        rd_kafka_resp_err_t err;

        for (;;) {
                err = rd_kafka_producev(w->producer, RD_KAFKA_V_TOPIC(pr->topic),
                                        RD_KAFKA_V_KEY(pr->key, pr->key ? strlen(pr->key) : 0),
                                        RD_KAFKA_V_VALUE(pr->value, pr->value_len),
                                        RD_KAFKA_V_MSGFLAGS(0), /* pr->value outlives it */
                                        RD_KAFKA_V_HEADERS(pr->hdrs), RD_KAFKA_V_OPAQUE(pr),
                                        RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                rd_kafka_poll(w->producer, 10);
        }
        if (!err)
                pr->hdrs = NULL; /* now owned by the message; dr_cb takes them back on error */
        if (err) {
                /* Only a configuration problem gets here (unknown topic with auto-create off
                 * is reported through the delivery report instead). */
                log_warnx("produce to %s failed: %s; retrying in 1 s", pr->topic,
                          rd_kafka_err2str(err));
                sleep(1);
                wh_produce_record(w, pr);
        }
}

static wh_produce_t *record_new(wh_t *w, const char *topic, const wh_msg_t *m)
{
        wh_produce_t *pr = nc_xcalloc(1, sizeof(*pr));

        (void)w;
        pr->topic = topic; /* one of w's topic names, which live as long as w */
        pr->key = m->id[0]      ? nc_xstrdup(m->id)
                  : m->rkm->key ? strndup(m->rkm->key, m->rkm->key_len)
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
        if (hdr(m->rkm, "content-type", buf, sizeof(buf)))
                rd_kafka_header_add(pr->hdrs, "content-type", -1, buf, -1);
        if (hdr(m->rkm, "noticecast-schema", buf, sizeof(buf)))
                rd_kafka_header_add(pr->hdrs, "noticecast-schema", -1, buf, -1);
        if (hdr(m->rkm, "noticecast-event", buf, sizeof(buf)))
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

wh_produce_t *wh_dlq_record(wh_t *w, wh_msg_t *m, const char *partner, const char *reason)
{
        wh_produce_t *pr = record_new(w, w->dlq_topic, m);
        char ts[40];
        const char *topic = m->is_retry ? m->src_topic : rd_kafka_topic_name(m->rkm->rkt);

        record_copy_notice(pr, m);
        rd_kafka_header_add(pr->hdrs, "noticecast-dlq-reason", -1, reason, -1);
        rd_kafka_header_add(pr->hdrs, "noticecast-dlq-stage", -1, "webhooks", -1);
        rd_kafka_header_add(pr->hdrs, "noticecast-dlq-source-topic", -1, topic, -1);
        hdr_add_int(pr->hdrs, "noticecast-dlq-source-partition",
                    m->is_retry ? m->src_partition : m->rkm->partition);
        hdr_add_int(pr->hdrs, "noticecast-dlq-source-offset",
                    m->is_retry ? m->src_offset : m->rkm->offset);
        rd_kafka_header_add(pr->hdrs, "noticecast-dlq-time", -1,
                            nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)), -1);
        if (partner) {
                /* Replaying a partner's failure must go back to that partner only: through
                 * the first retry tier, due at once. */
                rd_kafka_header_add(pr->hdrs, "noticecast-dlq-partner", -1, partner, -1);
                rd_kafka_header_add(pr->hdrs, "noticecast-dlq-replay-topic", -1, w->retry_topics[0],
                                    -1);
                rd_kafka_header_add(pr->hdrs, "noticecast-partner", -1, partner, -1);
                hdr_add_int(pr->hdrs, "noticecast-attempt", 1);
                hdr_add_int(pr->hdrs, "noticecast-due", 0);
                record_source(pr, m);
        } else {
                rd_kafka_header_add(pr->hdrs, "noticecast-dlq-replay-topic", -1, topic, -1);
        }
        nc_metrics_inc(w->m_dlq, NULL, 1);
        log_warnx("dlq: %s (key %s, %s [%d] at offset %lld)", reason, pr->key ? pr->key : "-",
                  topic, (int)(m->is_retry ? m->src_partition : m->rkm->partition),
                  (long long)(m->is_retry ? m->src_offset : m->rkm->offset));
        return pr;
}

wh_produce_t *wh_retry_record(wh_t *w, wh_msg_t *m, const char *partner, int next_attempt,
                              int64_t due_ms, int tier)
{
        wh_produce_t *pr = record_new(w, w->retry_topics[tier], m);

        record_copy_notice(pr, m);
        rd_kafka_header_add(pr->hdrs, "noticecast-partner", -1, partner, -1);
        hdr_add_int(pr->hdrs, "noticecast-attempt", next_attempt);
        hdr_add_int(pr->hdrs, "noticecast-due", due_ms);
        record_source(pr, m);
        return pr;
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
wh_produce_t *wh_event_record(wh_t *w, const wh_job_t *j, const char *outcome, long status,
                              const char *error, double latency_ms)
{
        wh_produce_t *pr = record_new(w, w->events_topic, j->msg);
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
            j->msg->id, j->partner->cfg.id, j->webhook_id, j->msg->event, j->attempt, outcome, st,
            err, latency_ms, nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)));
        if (pr->value_len >= cap)
                pr->value_len = cap - 1;
        rd_kafka_header_add(pr->hdrs, "content-type", -1, "application/json", -1);
        rd_kafka_header_add(pr->hdrs, "noticecast-event", -1, "webhook.attempt", -1);
        return pr;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
        wh_produce_t *pr = rkm->_private;
        wh_t *w = opaque;

        (void)rk;
        if (w->stopping > 1) { /* shutting down after the flush: what is left is abandoned */
                produce_free(pr);
                return;
        }
        if (rkm->err) {
                /* Never drop a retry, DLQ or event record: send it again. */
                log_warnx("delivery of a record to %s failed: %s; producing it again", pr->topic,
                          rd_kafka_err2str(rkm->err));
                /* The failed message still holds the headers: take them back to send again. */
                rd_kafka_message_detach_headers((rd_kafka_message_t *)rkm, &pr->hdrs);
                if (!pr->hdrs)
                        pr->hdrs = rd_kafka_headers_new(1);
                wh_produce_record(w, pr);
                return;
        }
        if (pr->job)
                wh_job_settle_one(w, pr->job);
        else if (pr->msg)
                wh_msg_settle_one(w, pr->msg);
        produce_free(pr);
}

/* ---- decoding consumed messages -------------------------------------------------------- */

static int decode(wh_t *w, wh_msg_t *m, char *err, size_t errsize)
{
        rd_kafka_message_t *r = m->rkm;
        char event[64], schema[16], e[512];
        rd_kafka_timestamp_type_t tstype;
        json_error_t jerr;
        json_t *v, *n;

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
        if (!m->is_retry)
                m->event_ms = rd_kafka_message_timestamp(r, &tstype);
        if (m->event_ms <= 0)
                m->event_ms = nc_time_now_ms();
        return 0;
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
                m->is_retry = 1;
                hdr(rkm, "noticecast-partner", m->partner, sizeof(m->partner));
                m->attempt = (int)hdr_int(rkm, "noticecast-attempt", 2);
                m->due_ms = hdr_int(rkm, "noticecast-due", 0);
                hdr(rkm, "noticecast-source-topic", m->src_topic, sizeof(m->src_topic));
                m->src_partition = (int32_t)hdr_int(rkm, "noticecast-source-partition", -1);
                m->src_offset = hdr_int(rkm, "noticecast-source-offset", -1);
                m->event_ms = hdr_int(rkm, "noticecast-event-time", 0);
        }
        if (decode(w, m, err, sizeof(err)) != 0) {
                wh_produce_t *pr = wh_dlq_record(w, m, m->is_retry ? m->partner : NULL, err);

                pr->msg = m;
                m->pending++;
                wh_produce_record(w, pr);
        } else if (m->is_retry && m->due_ms > nc_time_now_ms()) {
                /* Not due yet: hold it (and everything behind it on this partition). */
                if (t->held_n == t->held_cap) {
                        t->held_cap = t->held_cap ? t->held_cap * 2 : 16;
                        t->held = nc_xrealloc(t->held, t->held_cap * sizeof(*t->held));
                }
                t->held[t->held_n++] = m;
                m->pending++;
                if (!t->paused) {
                        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);

                        rd_kafka_topic_partition_list_add(l, t->base.topic, t->base.partition);
                        rd_kafka_pause_partitions(w->consumer, l);
                        rd_kafka_topic_partition_list_destroy(l);
                        t->paused = 1;
                }
                if (w->next_timer_ms == 0 || m->due_ms < w->next_timer_ms)
                        w->next_timer_ms = m->due_ms;
        } else if (m->is_retry && t->held_n > t->held_first) {
                /* Keep the partition's order: it waits behind the held ones. */
                m->due_ms = t->held[t->held_n - 1]->due_ms;
                if (t->held_n == t->held_cap) {
                        t->held_cap *= 2;
                        t->held = nc_xrealloc(t->held, t->held_cap * sizeof(*t->held));
                }
                t->held[t->held_n++] = m;
                m->pending++;
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
        for (b = w->tracks; b; b = b->next) {
                wh_track_t *t = (wh_track_t *)b;

                while (t->held_first < t->held_n && t->held[t->held_first]->due_ms <= now) {
                        wh_msg_t *m = t->held[t->held_first++];

                        if (!b->revoked)
                                wh_dispatch(w, m);
                        wh_msg_settle_one(w, m);
                }
                if (t->held_first < t->held_n) {
                        int64_t due = t->held[t->held_first]->due_ms;

                        if (w->next_timer_ms == 0 || due < w->next_timer_ms)
                                w->next_timer_ms = due;
                } else if (t->held_n) {
                        t->held_n = t->held_first = 0;
                        if (t->paused && !b->revoked) {
                                rd_kafka_topic_partition_list_t *l =
                                    rd_kafka_topic_partition_list_new(1);

                                rd_kafka_topic_partition_list_add(l, t->base.topic,
                                                                  t->base.partition);
                                rd_kafka_resume_partitions(w->consumer, l);
                                rd_kafka_topic_partition_list_destroy(l);
                        }
                        t->paused = 0;
                }
        }
}

/* ---- rebalancing ----------------------------------------------------------------------- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        wh_t *w = opaque;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                log_info("assigned %d partition%s", parts->cnt, parts->cnt == 1 ? "" : "s");
                rd_kafka_assign(rk, parts);
                w->ready = 1;
                return;
        }
        /* Revoked: work already started goes on, but its offsets are no longer ours to store;
         * the next owner re-reads from the last committed offset (at-least-once). */
        nc_tracks_store(w->tracks, rk); /* what is settled is committed with the revocation */
        nc_tracks_revoke(w->tracks, parts);
        log_info("revoked %d partition%s", parts->cnt, parts->cnt == 1 ? "" : "s");
        rd_kafka_assign(rk, NULL);
}

/* ---- start / poll / stop --------------------------------------------------------------- */

static int make_topics(wh_t *w, char *errstr, size_t errstr_size)
{
        nc_kafka_topic_spec_t specs[20];
        size_t n = 0, i, j;
        char label[32];

        for (i = 0; i < w->cfg.webhooks.retry_n; i++) {
                nc_duration_format(w->cfg.webhooks.retry_ms[i], label, sizeof(label));
                snprintf(w->retry_topics[i], sizeof(w->retry_topics[i]), "%swebhooks.retry.%s",
                         w->cfg.topic_prefix, label);
                for (j = 0; j < n; j++)
                        if (!strcmp(specs[j].name, w->retry_topics[i]))
                                break;
                if (j < n)
                        continue;
                memset(&specs[n], 0, sizeof(specs[n]));
                snprintf(specs[n].name, sizeof(specs[n].name), "%s", w->retry_topics[i]);
                specs[n].partitions = w->cfg.partitions;
                /* Longer than the whole schedule, so a parked retry outlives any outage. */
                specs[n].retention_ms = 7L * 24 * 3600 * 1000;
                n++;
        }
        nc_config_topic(&w->cfg, "dlq", w->dlq_topic, sizeof(w->dlq_topic));
        nc_config_topic(&w->cfg, "deliveries", w->events_topic, sizeof(w->events_topic));
        memset(&specs[n], 0, sizeof(specs[n]));
        snprintf(specs[n].name, sizeof(specs[n].name), "%s", w->dlq_topic);
        specs[n].partitions = w->cfg.partitions;
        specs[n++].retention_ms = -1;
        memset(&specs[n], 0, sizeof(specs[n]));
        snprintf(specs[n].name, sizeof(specs[n].name), "%s", w->events_topic);
        specs[n].partitions = w->cfg.partitions;
        specs[n++].retention_ms = 90L * 24 * 3600 * 1000; /* the agencies' audit trail */
        return nc_kafka_create_topics(&w->cfg, specs, n, w->cfg.producer_timeout_ms, NULL, NULL,
                                      errstr, errstr_size);
}

static void wait_for_topics(wh_t *w)
{
        const char *names[16];
        size_t i;

        for (i = 0; i < w->cfg.webhooks.retry_n; i++)
                names[i] = w->retry_topics[i];
        if (nc_kafka_wait_topics(w->producer, names, i, 15000) != 0)
                log_warnx("retry topics not visible yet: they join the subscription later");
}

static void regex_escape(const char *in, char *out, size_t size)
{
        size_t o = 0;

        for (; *in && o + 3 < size; in++) {
                if (strchr(".^$*+?()[]{}|\\", *in))
                        out[o++] = '\\';
                out[o++] = *in;
        }
        out[o] = '\0';
}

int wh_kafka_start(wh_t *w, char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *subs;
        rd_kafka_conf_t *conf;
        char kerr[512], prefix[200];
        size_t i;

        if (make_topics(w, errstr, errstr_size) != 0)
                return -1;

        /* Producer: retry tiers, DLQ, delivery events.  Idempotent and acks=all: a record
         * acknowledged here is durable, which is what settles the work behind it. */
        if (!(conf = nc_kafka_conf_new(&w->cfg, errstr, errstr_size)))
                return -1;
        rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
        rd_kafka_conf_set(conf, "acks", "all", NULL, 0);
        /* One event record per attempt is most of what the brokers receive from us: bigger,
         * compressed batches halve the broker's CPU per delivery (make bench).  The only cost
         * is that a delivery settles up to 50 ms later.  [kafka] may set them otherwise. */
        nc_kafka_conf_default(conf, &w->cfg, "linger.ms", "50");
        nc_kafka_conf_default(conf, &w->cfg, "compression.type", "lz4");
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_conf_set_opaque(conf, w);
        if (!(w->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(conf);
                return nc_err(errstr, errstr_size, "kafka producer: %s", kerr);
        }

        wait_for_topics(w);

        if (!(conf = nc_kafka_conf_new(&w->cfg, errstr, errstr_size)))
                return -1;
        if (rd_kafka_conf_set(conf, "group.id", w->cfg.webhooks.group_id, kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "true", kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "auto.commit.interval.ms", "200", kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "isolation.level", "read_committed", kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "topic.metadata.refresh.interval.ms", "10000", kerr,
                              sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", kerr, sizeof(kerr))) {
                rd_kafka_conf_destroy(conf);
                return nc_err(errstr, errstr_size, "kafka consumer: %s", kerr);
        }
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_opaque(conf, w);
        if (!(w->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(conf);
                return nc_err(errstr, errstr_size, "kafka consumer: %s", kerr);
        }
        conf = NULL; /* now owned by the consumer */
        rd_kafka_poll_set_consumer(w->consumer);
        w->cq = rd_kafka_queue_get_consumer(w->consumer);
        /* Wake the event loop (blocked in epoll_wait) when messages or reports arrive. */
        rd_kafka_queue_io_event_enable(w->cq, w->wake_pipe[1], "k", 1);
        {
                rd_kafka_queue_t *pq = rd_kafka_queue_get_main(w->producer);

                rd_kafka_queue_io_event_enable(pq, w->wake_pipe[1], "p", 1);
                rd_kafka_queue_destroy(pq);
        }

        regex_escape(w->cfg.topic_prefix, prefix, sizeof(prefix));
        snprintf(w->notice_regex, sizeof(w->notice_regex), "^%snotices\\..+", prefix);
        subs = rd_kafka_topic_partition_list_new(20);
        rd_kafka_topic_partition_list_add(subs, w->notice_regex, RD_KAFKA_PARTITION_UA);
        for (i = 0; i < w->cfg.webhooks.retry_n; i++)
                if (!rd_kafka_topic_partition_list_find(subs, w->retry_topics[i],
                                                        RD_KAFKA_PARTITION_UA))
                        rd_kafka_topic_partition_list_add(subs, w->retry_topics[i],
                                                          RD_KAFKA_PARTITION_UA);
        if (rd_kafka_subscribe(w->consumer, subs)) {
                rd_kafka_topic_partition_list_destroy(subs);
                return nc_err(errstr, errstr_size, "subscribe failed");
        }
        rd_kafka_topic_partition_list_destroy(subs);
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

/* Serves producer reports and takes new messages (unless paused for memory). */
void wh_kafka_poll(wh_t *w)
{
        rd_kafka_message_t *batch[500];
        ssize_t n, i;

        /* between loop turns, never while the list is being walked */
        nc_tracks_gc(&w->tracks, track_busy, track_free_extra);
        rd_kafka_poll(w->producer, 0); /* delivery reports settle work */
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
        n = rd_kafka_consume_batch_queue(w->cq, 0, batch, sizeof(batch) / sizeof(batch[0]));
        for (i = 0; i < n; i++) {
                if (batch[i]->err) {
                        if (batch[i]->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                log_warnx("consumer: %s", rd_kafka_message_errstr(batch[i]));
                        rd_kafka_message_destroy(batch[i]);
                        continue;
                }
                handle_message(w, batch[i]);
        }
}

void wh_kafka_stop(wh_t *w)
{
        rd_kafka_topic_partition_list_t *l;
        rd_kafka_resp_err_t err;

        if (w->producer) {
                /* Every record that settles work must reach the brokers before we commit. */
                if ((err = rd_kafka_flush(w->producer, 10000)))
                        log_warnx("producer flush: %s", rd_kafka_err2str(err));
                rd_kafka_poll(w->producer, 0);
        }
        if (w->consumer) {
                nc_tracks_store(w->tracks, w->consumer);
                if (rd_kafka_assignment(w->consumer, &l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        if (l->cnt)
                                rd_kafka_commit(w->consumer, NULL, 0); /* stored offsets */
                        rd_kafka_topic_partition_list_destroy(l);
                }
                rd_kafka_consumer_close(w->consumer);
        }
        nc_tracks_free(&w->tracks, msg_release, w, track_free_extra);
        w->stopping = 2;
        if (w->cq)
                rd_kafka_queue_destroy(w->cq);
        if (w->consumer)
                rd_kafka_destroy(w->consumer);
        if (w->producer)
                rd_kafka_destroy(w->producer);
        w->consumer = w->producer = NULL;
        w->cq = NULL;
}
