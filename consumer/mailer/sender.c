/* noticecast-mailer: sending — jobs consumer group, SMTP worker threads, outcomes. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mailer.h"
#include "ml_digest.h"
#include "nc_kafka.h"
#include "ml_mail.h"
#include "nc_notice.h"
#include "nc_time.h"
#include "nc_util.h"
#include "ml_domain.h"
#include "ml_policy.h"
#include "smtp.h"
#include "web.h"

#define MAX_OUTSTANDING 20000
#define NOTICE_WAIT_MS  (120 * 1000) /* a job may arrive before the view has its notice */
#define WAIT_RECHECK_MS 500
/* At shutdown, outcomes are flushed for at least this long after the sessions ended (even past
 * shutdown_timeout) and at most FLUSH_MAX_MS. */
#define FLUSH_MIN_MS 2000
#define FLUSH_MAX_MS 10000

/* ---- sent once ------------------------------------------------------------------------ *
 *
 * When the broker is away longer than the group session timeout, the consumer loses its
 * partitions; the messages sent meanwhile cannot have their offsets committed, and after the
 * rejoin the partitions are read again from the last commit.  Each job's Message-ID is kept
 * from the moment a copy of the job is prepared (one copy "owns" it) until its mail.sent
 * event is acknowledged, and the last MIDS_KEEP of those after that: a copy read again waits
 * while the owner is in flight and is settled without sending once the mail.sent of the owner
 * is on the deliveries topic.  A failed, bounced or skipped job drops its Message-ID (so a DLQ
 * replay sends it). */
#define MIDS_KEEP 100000

enum { MID_SENDING = 1, MID_SENT = 2, MID_RECORDED = 3 };

static const char *job_mid(const ml_job_t *j)
{
        return json_string_value(json_object_get(j->doc, "message_id"));
}

/* What a log line about job J is about: subscriber, Message-ID, where the job was read. */
static void job_log_fields(nc_log_fields_t *f, const ml_job_t *j)
{
        nc_log_field(f, "subscriber", json_string_value(json_object_get(j->doc, "subscriber")));
        nc_log_field(f, "message_id", job_mid(j));
        nc_log_field(f, "topic", rd_kafka_topic_name(j->rkm->rkt));
        nc_log_field_int(f, "partition", j->rkm->partition);
        nc_log_field_int(f, "offset", j->rkm->offset);
}

static int mid_state(const ml_t *m, const char *mid)
{
        return mid ? GPOINTER_TO_INT(g_hash_table_lookup(m->mids, mid)) : 0;
}

static void mid_set(ml_t *m, ml_job_t *j, int state)
{
        const char *mid = job_mid(j);
        char *key;

        if (!mid || !j->mid_owner)
                return;
        if (state != MID_RECORDED) {
                g_hash_table_replace(m->mids, g_strdup(mid), GINT_TO_POINTER(state));
                return;
        }
        key = g_strdup(mid);
        g_hash_table_replace(m->mids, key, GINT_TO_POINTER(state));
        g_queue_push_tail(m->mids_done, g_strdup(mid));
        j->mid_owner = 0; /* the entry lives on without its owner */
        while (g_queue_get_length(m->mids_done) > MIDS_KEEP) {
                char *old = g_queue_pop_head(m->mids_done);

                if (mid_state(m, old) == MID_RECORDED)
                        g_hash_table_remove(m->mids, old);
                g_free(old);
        }
}

/* A mail.sent read on the deliveries topic (sent by any instance, maybe this one). */
static void mid_learn(ml_t *m, const char *mid)
{
        if (mid_state(m, mid))
                return;
        g_hash_table_replace(m->mids, g_strdup(mid), GINT_TO_POINTER(MID_RECORDED));
        g_queue_push_tail(m->mids_done, g_strdup(mid));
        while (g_queue_get_length(m->mids_done) > MIDS_KEEP) {
                char *old = g_queue_pop_head(m->mids_done);

                if (mid_state(m, old) == MID_RECORDED)
                        g_hash_table_remove(m->mids, old);
                g_free(old);
        }
}

static void mid_forget(ml_t *m, ml_job_t *j)
{
        const char *mid = job_mid(j);

        if (mid && j->mid_owner)
                g_hash_table_remove(m->mids, mid);
        j->mid_owner = 0;
}

/* ---- offsets (per partition, in order) ------------------------------------------------- */

static void job_free(ml_t *m, ml_job_t *j)
{
        json_decref(j->doc);
        rd_kafka_message_destroy(j->rkm);
        free(j);
        m->outstanding--;
}

static void job_release(nc_track_msg_t *tm, void *opaque)
{
        job_free(opaque, (ml_job_t *)tm);
}

/* Its offset is stored (nc_tracks_store, once per poll) when every job before it is settled. */
static void job_settle(ml_t *m, ml_job_t *j)
{
        nc_track_settle(j->part, &j->tm, job_release, m);
}

/* A job's records (outcome event, DLQ entry) are acknowledged one by one; a hold keeps it from
 * being settled by the first acknowledgement while the next record is being produced (a full
 * queue makes produce_event poll, which serves delivery reports). */
static void job_hold(ml_job_t *j)
{
        j->acks++;
}

/* Settled once its final outcome was recorded (j->final) and every record acknowledged; a job
 * waiting for a retry, or left for a restart at a stop, has no final outcome and stays. */
static void job_unhold(ml_t *m, ml_job_t *j)
{
        if (--j->acks == 0 && j->final && !j->ack_failed)
                job_settle(m, j);
}

/* ---- recording outcomes ---------------------------------------------------------------- */

/* An outcome (or DLQ record) that the brokers did not take in time (an outage longer than
 * message.timeout.ms): produced again, as it was, rather than leaving its job unsettled until
 * a restart sends the message a second time.  Only for errors that can pass. */
static int reproduce(ml_t *m, const rd_kafka_message_t *r)
{
        rd_kafka_headers_t *h = NULL, *copy = NULL;
        rd_kafka_resp_err_t err;

        switch (r->err) {
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
        case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
        case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
                break;
        default:
                return 0;
        }
        if (rd_kafka_message_headers(r, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                copy = rd_kafka_headers_copy(h);
        err = rd_kafka_producev(m->events, RD_KAFKA_V_TOPIC(rd_kafka_topic_name(r->rkt)),
                                RD_KAFKA_V_KEY(r->key, r->key_len),
                                RD_KAFKA_V_VALUE(r->payload, r->len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(copy),
                                RD_KAFKA_V_OPAQUE(r->_private), RD_KAFKA_V_END);
        if (err) {
                if (copy)
                        rd_kafka_headers_destroy(copy);
                return 0;
        }
        log_warnx("recording to %s failed (%s): produced again", rd_kafka_topic_name(r->rkt),
                  rd_kafka_err2str(r->err));
        return 1;
}

static void events_dr(rd_kafka_t *rk, const rd_kafka_message_t *r, void *opaque)
{
        ml_t *m = opaque;
        ml_job_t *j = r->_private;

        (void)rk;
        if (!j)
                return;
        if (r->err && !m->stopping && reproduce(m, r))
                return; /* produced again: the hold goes on with the new copy */
        if (r->err) {
                /* The outcome could not be recorded: leave the job unsettled so that a
                 * restart retries it rather than lose track of it. */
                log_warnx("recording the outcome of a job failed (%s): %s",
                          rd_kafka_topic_name(r->rkt), rd_kafka_err2str(r->err));
                j->ack_failed = 1;
                if (mid_state(m, job_mid(j)) == MID_SENT)
                        mid_forget(m, j); /* not recorded: a copy read again may send it */
        } else if (mid_state(m, job_mid(j)) == MID_SENT) {
                mid_set(m, j, MID_RECORDED);
        }
        job_unhold(m, j);
}

static void record(ml_t *m, ml_job_t *j, ml_outcome_t o, int code, const char *text);

static void produce_event(ml_t *m, ml_job_t *j, const char *topic, const char *key, json_t *doc)
{
        char *value = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        rd_kafka_resp_err_t err;

        if (j)
                job_hold(j); /* released by its delivery report */
        do {
                err = rd_kafka_producev(m->events, RD_KAFKA_V_TOPIC(topic),
                                        RD_KAFKA_V_KEY(key, strlen(key)),
                                        RD_KAFKA_V_VALUE(value, value ? strlen(value) : 0),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                        RD_KAFKA_V_HEADER("content-type", "application/json", -1),
                                        RD_KAFKA_V_OPAQUE(j), RD_KAFKA_V_END);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(m->events, 20);
        } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (err) {
                log_warnx("produce to %s: %s", topic, rd_kafka_err2str(err));
                free(value);
                if (j) {
                        j->ack_failed = 1;
                        job_unhold(m, j);
                }
        }
}

/* A job that will not be sent (retries used up, message not buildable) goes to the DLQ as it
 * was consumed (key, value), with the noticecast-dlq-* headers that `noticecast dlq list`
 * shows and `noticecast dlq replay` follows: replayed, it goes back to the jobs topic and is
 * sent like a new job (same Message-ID).  The job is settled once this record and its
 * mail.failed event are both acknowledged. */
static void dlq_record(ml_t *m, ml_job_t *j, const char *reason)
{
        const rd_kafka_message_t *r = j->rkm;
        rd_kafka_headers_t *h = rd_kafka_headers_new(10);
        rd_kafka_resp_err_t err;
        char ts[40], num[32];

        rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
        rd_kafka_header_add(h, "noticecast-dlq-reason", -1, reason, -1);
        rd_kafka_header_add(h, "noticecast-dlq-stage", -1, "mailer", -1);
        rd_kafka_header_add(h, "noticecast-dlq-source-topic", -1, m->topic_jobs, -1);
        snprintf(num, sizeof(num), "%d", (int)r->partition);
        rd_kafka_header_add(h, "noticecast-dlq-source-partition", -1, num, -1);
        snprintf(num, sizeof(num), "%lld", (long long)r->offset);
        rd_kafka_header_add(h, "noticecast-dlq-source-offset", -1, num, -1);
        rd_kafka_header_add(h, "noticecast-dlq-time", -1,
                            nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)), -1);
        rd_kafka_header_add(h, "noticecast-dlq-replay-topic", -1, m->topic_jobs, -1);
        job_hold(j);
        do {
                err = rd_kafka_producev(
                    m->events, RD_KAFKA_V_TOPIC(m->topic_dlq), RD_KAFKA_V_KEY(r->key, r->key_len),
                    RD_KAFKA_V_VALUE(r->payload, r->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(j), RD_KAFKA_V_END);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(m->events, 20);
        } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (err) {
                log_warnx("produce to %s: %s", m->topic_dlq, rd_kafka_err2str(err));
                rd_kafka_headers_destroy(h);
                j->ack_failed = 1;
                job_unhold(m, j);
                return;
        }
        nc_metrics_inc(m->m_dlq, NULL, 1);
        {
                nc_log_fields_t f = {0};

                job_log_fields(&f, j);
                nc_log_field(&f, "reason", reason);
                nc_log_f(NC_LOG_WARN, &f, "dlq: job quarantined");
        }
}

/* mail.failed, and the job to the DLQ. */
static void job_fail(ml_t *m, ml_job_t *j, int code, const char *text)
{
        char reason[512];

        job_hold(j);
        record(m, j, ML_OUTCOME_FAILED, code, text);
        if (code)
                snprintf(reason, sizeof(reason), "mail.failed after %d attempt%s: %d %s",
                         j->attempt, j->attempt == 1 ? "" : "s", code, text ? text : "");
        else
                snprintf(reason, sizeof(reason), "mail.failed after %d attempt%s: %s", j->attempt,
                         j->attempt == 1 ? "" : "s", text ? text : "");
        dlq_record(m, j, reason);
        job_unhold(m, j);
}

static void record(ml_t *m, ml_job_t *j, ml_outcome_t o, int code, const char *text)
{
        const char *type = ml_outcome_event(o);
        const char *sub = json_string_value(json_object_get(j->doc, "subscriber"));
        char ts[40], l[NC_METRICS_LABELS_SIZE];
        json_t *ev;

        j->final = 1; /* settled once this (and a DLQ record, if any) is acknowledged */
        switch (o) {
        case ML_OUTCOME_SENT:
                mid_set(m, j, MID_SENT); /* MID_RECORDED once the event is acknowledged */
                break;
        case ML_OUTCOME_BOUNCE:
        case ML_OUTCOME_FAILED:
        case ML_OUTCOME_SKIPPED:
                mid_forget(m, j);
                break;
        }
        ev = json_pack("{s:s, s:s, s:s?, s:i, s:i, s:s, s:s}", "type", type, "subscriber", sub,
                       "message_id", json_string_value(json_object_get(j->doc, "message_id")),
                       "attempt", j->attempt, "code", code, "text", text ? text : "", "time",
                       nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)));
        if (!ev) /* an SMTP reply that is not UTF-8: keep the event, drop the text */
                ev = json_pack("{s:s, s:s, s:i, s:i, s:s}", "type", type, "subscriber", sub,
                               "attempt", j->attempt, "code", code, "time", ts);
        produce_event(m, j, m->topic_events, sub, ev);
        json_decref(ev);
        if (nc_metrics_labels(l, sizeof(l), "outcome", ml_outcome_label(o), NULL) == 0)
                nc_metrics_inc(m->m_sent, l, 1);
}

/* An SMTP-time bounce (5xx at the session) counted like one that came back (inbound.c). */
static void sub_bounced(ml_t *m, const ml_sub_t *s, const char *reason)
{
        json_t *rec = ml_sub_bounced(m, s, reason);

        produce_event(m, NULL, m->topic_subs, s->id, rec);
        json_decref(rec);
}

/* Accepted by the relay, with VERP off: the only word on the mailbox there is, so the count
 * starts again. */
static void bounces_reset(ml_t *m, const ml_sub_t *s)
{
        const ml_bounce_state_t b = {0, 0, 0, NULL};
        json_t *rec = ml_sub_record(m, s, &b);

        ml_store_sub_bounced(m, s->id, &b);
        produce_event(m, NULL, m->topic_subs, s->id, rec);
        json_decref(rec);
}

/* ---- preparing jobs -------------------------------------------------------------------- */

static void wait_later(ml_t *m, ml_job_t *j, int64_t at)
{
        j->not_before_ms = at;
        if (!j->waiting) {
                j->waiting = 1;
                j->wait_next = NULL;
                if (m->waiting_tail)
                        m->waiting_tail->wait_next = j;
                else
                        m->waiting = j;
                m->waiting_tail = j;
        }
}

void ml_envelope_from(const ml_t *m, const char *id, const char *message_id, char *out, size_t size)
{
        const char *base =
            m->cfg.mailer.envelope_from ? m->cfg.mailer.envelope_from : m->cfg.mailer.from_address;

        if (!m->cfg.mailer.verp || nc_verp_address(&m->verp_keys, base, ML_VERP_DELIMITER(m), id,
                                                   message_id, out, size) != 0)
                snprintf(out, size, "%s", base);
}

/* Resolves a job against the view and hands it to the workers, or records why not. */
static void job_prepare(ml_t *m, ml_job_t *j)
{
        const char *sub_id = json_string_value(json_object_get(j->doc, "subscriber"));
        const char *type = json_string_value(json_object_get(j->doc, "type"));
        const ml_sub_t *s = sub_id ? ml_store_sub(m, sub_id) : NULL;
        json_t *ids = json_object_get(j->doc, "notices"), *id, *notices;
        const char *mid = job_mid(j);
        char token[512];
        ml_unit_t *u;
        size_t i;

        if (mid && !j->mid_owner) {
                int st = mid_state(m, mid);

                if (st == MID_RECORDED) {
                        /* Read again after a rebalance: sent, and its mail.sent recorded. */
                        log_debug("job for %s (Message-ID %s) already sent and recorded: not "
                                  "sent again",
                                  sub_id ? sub_id : "?", mid);
                        m->dups_skipped++;
                        job_settle(m, j);
                        return;
                }
                if (st) { /* another copy of it is being sent, or its event recorded */
                        wait_later(m, j, nc_time_now_ms() + WAIT_RECHECK_MS);
                        return;
                }
                j->mid_owner = 1;
                mid_set(m, j, MID_SENDING);
        }
        if (!s || s->suppressed) {
                /* Unsubscribed or suppressed since planning: nothing to send. */
                record(m, j, ML_OUTCOME_SKIPPED, 0, s ? "suppressed" : "no longer subscribed");
                return;
        }
        notices = json_array();
        json_array_foreach(ids, i, id) {
                const char *nid = json_string_value(id);
                const ml_notice_t *n = nid ? ml_store_notice(m, nid) : NULL;

                if (!n) {
                        if (nc_time_now_ms() - j->first_try_ms < NOTICE_WAIT_MS) {
                                json_decref(notices);
                                wait_later(m, j, nc_time_now_ms() + WAIT_RECHECK_MS);
                                return;
                        }
                        nc_log_fields_t f = {0};

                        job_log_fields(&f, j);
                        nc_log_field(&f, "notice_id", nid);
                        nc_log_f(NC_LOG_WARN, &f, "job: notice unknown: left out");
                        continue;
                }
                /* Withdrawn since planning: left out; corrected: its latest version. */
                if ((n = ml_store_latest(m, nid))) {
                        size_t k;
                        json_t *e;
                        int dup = 0;

                        json_array_foreach(notices, k, e)
                                dup |= !strcmp(nc_notice_id(e), n->id);
                        if (!dup)
                                json_array_append(notices, n->data);
                }
        }
        if (json_array_size(notices) == 0) {
                json_decref(notices);
                record(m, j, ML_OUTCOME_SKIPPED, 0, "every notice was withdrawn");
                return;
        }
        u = nc_xcalloc(1, sizeof(*u));
        u->job = j;
        u->subscriber = ml_sub_json(m, s);
        u->notices = notices;
        u->urgent = json_is_true(json_object_get(j->doc, "urgent"));
        snprintf(u->period, sizeof(u->period), "%s",
                 json_string_value(json_object_get(j->doc, "period"))
                     ? json_string_value(json_object_get(j->doc, "period"))
                     : (type ? type : "immediate"));
        snprintf(u->message_id, sizeof(u->message_id), "%s",
                 json_string_value(json_object_get(j->doc, "message_id")));
        ml_unsub_token(m, s->id, token, sizeof(token));
        snprintf(u->unsub_url, sizeof(u->unsub_url), "%s?token=%s", m->cfg.mailer.unsubscribe_url,
                 token);
        ml_web_manage_url(s->id, s->gen, u->manage_url, sizeof(u->manage_url)); /* "" if off */
        ml_envelope_from(m, s->id, u->message_id, u->envelope_from, sizeof(u->envelope_from));
        /* Handed to the workers by queue_flush() at the end of this poll, all at once. */
        if (m->pend_tail)
                m->pend_tail->next = u;
        else
                m->pend_head = u;
        m->pend_tail = u;
        m->pend_n++;
}

/* Hands the units job_prepare() collected during this poll to the workers, all at once. */
static void queue_flush(ml_t *m)
{
        size_t batch = m->cfg.smtp.batch > 0 ? (size_t)m->cfg.smtp.batch : 1;

        if (!m->pend_head)
                return;
        ml_queue_push(&m->q, m->pend_head, m->pend_tail, m->pend_n, batch, (size_t)m->nworkers);
        m->pend_head = m->pend_tail = NULL;
        m->pend_n = 0;
}

/* ---- worker threads -------------------------------------------------------------------- */

char *ml_render_message(ml_t *m, ml_unit_t *u, const ml_templates_t *templates, size_t *len,
                        char *errstr, size_t errstr_size)
{
        ml_digest_parts_t parts;
        ml_mail_t mail = {0};
        char mailto[600];
        char *msg;

        /* The digest's bodies are rendered and encoded once per notice set and language (the
         * cache in ml_digest); this subscriber's values are filled in. */
        if (ml_digest_render_parts(templates, u->subscriber, u->notices, u->urgent, u->unsub_url,
                                   u->manage_url, u->period, &parts, errstr, errstr_size) != 0)
                return NULL;
        mail.from_name = m->cfg.mailer.from_name;
        mail.from_addr = m->cfg.mailer.from_address;
        mail.to_name = json_string_value(json_object_get(u->subscriber, "name"));
        mail.to_addr = json_string_value(json_object_get(u->subscriber, "email"));
        mail.subject = parts.subject;
        mail.text = parts.text_str;
        mail.html = parts.html_str;
        mail.message_id = u->message_id;
        mail.date_ms = nc_time_now_ms();
        mail.list_id = m->cfg.mailer.list_id;
        mail.unsubscribe_https = u->unsub_url;
        if (m->cfg.mailer.unsubscribe_mailto) {
                const char *tok = strstr(u->unsub_url, "token=");

                snprintf(mailto, sizeof(mailto), "%s?subject=unsubscribe%%20%s",
                         m->cfg.mailer.unsubscribe_mailto, tok ? tok + 6 : "");
                mail.unsubscribe_mailto = mailto;
        }
        if (parts.text)
                msg = ml_mail_build_bodies(&mail, parts.text, parts.html, parts.vals,
                                           ML_DIGEST_NVALUES, len, errstr, errstr_size);
        else
                msg = ml_mail_build(&mail, len, errstr, errstr_size);
        ml_digest_parts_free(&parts);
        return msg;
}

struct worker_arg {
        ml_t *m;
        int index;
};

/* A worker thread's own state: its compiled templates (not shared between threads: their
 * partial cache), its SMTP settings and its batch buffers. */
typedef struct worker {
        ml_t *m;
        int index;
        ml_smtp_config_t sc;
        char *password;
        ml_templates_t *tpl;
        unsigned gen; /* templates generation loaded (ml_queue.h) */
        ml_unit_t **units;
        ml_smtp_msg_t *msgs;
        char **bodies;
        char err[1024];
} worker_t;

void ml_sender_smtp_config(const ml_t *m, const char *password, ml_smtp_cancel_t *cancel,
                           ml_smtp_config_t *sc)
{
        memset(sc, 0, sizeof(*sc));
        sc->host = m->cfg.smtp.host;
        sc->port = m->cfg.smtp.port;
        sc->starttls = m->cfg.smtp.starttls == 0   ? ML_SMTP_TLS_OFF
                       : m->cfg.smtp.starttls == 2 ? ML_SMTP_TLS_REQUIRED
                                                   : ML_SMTP_TLS_OPTIONAL;
        sc->username = m->cfg.smtp.username;
        sc->password = password;
        sc->timeout_ms = m->cfg.smtp.timeout_ms;
        sc->ca_file = m->cfg.smtp.ca_file;
        sc->helo_name = m->cfg.smtp.helo;
        sc->allow_plaintext_auth = m->cfg.smtp.allow_plaintext_auth;
        sc->cancel = cancel;
}

static void worker_init(worker_t *w, ml_t *m, int index)
{
        size_t batch = (size_t)m->cfg.smtp.batch;

        memset(w, 0, sizeof(*w));
        w->m = m;
        w->index = index;
        w->units = nc_xcalloc(batch, sizeof(*w->units));
        w->msgs = nc_xcalloc(batch, sizeof(*w->msgs));
        w->bodies = nc_xcalloc(batch, sizeof(*w->bodies));
        w->tpl = ml_templates_load(m->cfg.mailer.templates, &m->cfg.languages,
                                   m->cfg.default_language, w->err, sizeof(w->err));
        if (!w->tpl)
                fatalx("worker %d: templates: %s", index, w->err);
        if (m->cfg.smtp.password_file) {
                size_t plen;

                if (!(w->password = nc_secret_file_read(m->cfg.smtp.password_file, &plen, w->err,
                                                        sizeof(w->err))))
                        fatalx("smtp password: %s", w->err);
                nc_str_trim(w->password);
        }
        ml_sender_smtp_config(m, w->password, &m->cancels[index], &w->sc);
        /* A deferring domain ends the session at once; its other units wait (ml_queue.h). */
        w->sc.deferral = ml_domain_is_deferral;
}

static void worker_free(worker_t *w)
{
        ml_templates_free(w->tpl);
        if (w->password) {
                memset(w->password, 0, strlen(w->password));
                free(w->password);
        }
        free(w->units);
        free(w->msgs);
        free(w->bodies);
}

/* A reload bumped the generation: load the templates again.  The main thread checked the
 * new set before bumping it; if it fails here anyway, keep the set we have. */
static void worker_reload(worker_t *w, unsigned gen)
{
        const ml_t *m = w->m;
        ml_templates_t *fresh;

        if (gen == w->gen)
                return;
        fresh = ml_templates_load(m->cfg.mailer.templates, &m->cfg.languages,
                                  m->cfg.default_language, w->err, sizeof(w->err));
        if (fresh) {
                ml_templates_free(w->tpl);
                w->tpl = fresh;
        } else {
                log_warnx("worker %d: templates not reloaded: %s", w->index, w->err);
        }
        w->gen = gen;
}

/* Renders and builds the N units taken; returns how many went into msgs[] (the others are
 * ML_STATUS_NOT_BUILT). */
static size_t worker_build(worker_t *w, size_t n)
{
        ml_t *m = w->m;
        size_t built = 0;

        for (size_t i = 0; i < n; i++) {
                ml_unit_t *u = w->units[i];
                ml_smtp_msg_t *msg = &w->msgs[built];
                size_t len = 0;

                u->status = 0;
                u->attempted = 0;
                u->deferred = 0;
                w->bodies[built] = ml_render_message(m, u, w->tpl, &len, w->err, sizeof(w->err));
                if (!w->bodies[built]) {
                        /* A template or data problem, not the recipient's: recorded as
                         * failed, never counted as a bounce. */
                        u->status = ML_STATUS_NOT_BUILT;
                        snprintf(u->reply, sizeof(u->reply), "message not built: %.200s", w->err);
                        continue;
                }
                memset(msg, 0, sizeof(*msg));
                msg->mail_from = u->envelope_from;
                msg->rcpt = json_string_value(json_object_get(u->subscriber, "email"));
                msg->data = w->bodies[built];
                msg->len = len;
                u->status = ML_STATUS_IN_BATCH; /* index marker for worker_send */
                built++;
        }
        return built;
}

static int worker_deferred(const worker_t *w, size_t built)
{
        for (size_t i = 0; i < built; i++)
                if (w->msgs[i].deferred)
                        return 1;
        return 0;
}

/* Sends the BUILT messages and gives each of the N units its result. */
static void worker_send(worker_t *w, size_t n, size_t built)
{
        w->err[0] = '\0';
        /* One session, or more when the relay ends one before every message was tried (a
         * limit of messages per connection): see ml_smtp_send_batch. */
        if (built &&
            ml_smtp_send_batch(&w->sc, w->msgs, built, 0, NULL, w->err, sizeof(w->err)) != 0 &&
            !worker_deferred(w, built)) /* a deferral: the domain's own line says it */
                log_warnx("smtp %s:%d: %s", w->sc.host, w->sc.port, w->err);
        built = 0;
        for (size_t i = 0; i < n; i++) {
                ml_unit_t *u = w->units[i];
                const ml_smtp_msg_t *msg = &w->msgs[built];

                if (u->status != ML_STATUS_IN_BATCH)
                        continue;
                u->status = msg->status;
                u->attempted = msg->attempted;
                u->deferred = msg->deferred;
                if (msg->seconds >= 0 && w->m->m_txn)
                        nc_metrics_observe(w->m->m_txn, NULL, msg->seconds);
                /* Each message carries its own reason, also when it was not sent. */
                snprintf(u->reply, sizeof(u->reply), "%.200s", msg->reply[0] ? msg->reply : w->err);
                free(w->bodies[built]);
                built++;
        }
}

/* Logs a domain's backoff and recovery (its name and the reply's codes, no address) and
 * counts its deferrals. */
static void worker_domain_event(worker_t *w, const ml_queue_session_t *s)
{
        char l[NC_METRICS_LABELS_SIZE];
        nc_log_fields_t f = {0};

        if (s->event == ML_DOMAIN_NONE)
                return;
        nc_log_field(&f, "domain", s->domain);
        if (s->event == ML_DOMAIN_RECOVERED) {
                nc_log_f(NC_LOG_INFO, &f, "domain accepts mail again: backoff ended");
                return;
        }
        if (nc_metrics_labels(l, sizeof(l), "domain", ml_domain_label(&w->m->domains, s->domain),
                              NULL) == 0)
                nc_metrics_inc(w->m->m_deferrals, l, 1);
        nc_log_field_int(&f, "code", s->code);
        nc_log_field(&f, "status", s->status);
        nc_log_field_int(&f, "deferrals", s->deferrals);
        nc_log_field_int(&f, "backoff_ms", s->backoff_ms);
        nc_log_field_int(&f, "waiting", (long long)s->requeued);
        nc_log_f(NC_LOG_WARN, &f, "domain deferred mail: no session for it for %lld s",
                 (long long)(s->backoff_ms + 999) / 1000);
}

static void *worker_main(void *arg)
{
        struct worker_arg *wa = arg;
        ml_queue_session_t s;
        worker_t w;
        size_t n;
        unsigned gen;

        worker_init(&w, wa->m, wa->index);
        free(wa);
        while ((n = ml_queue_take(&w.m->q, w.units, (size_t)w.m->cfg.smtp.batch, &gen))) {
                worker_reload(&w, gen);
                worker_send(&w, n, worker_build(&w, n));
                ml_queue_done(&w.m->q, w.units, n, &s);
                worker_domain_event(&w, &s);
        }
        worker_free(&w); /* the queue is stopped */
        return NULL;
}

/* ---- outcomes -------------------------------------------------------------------------- */

static void unit_outcome(ml_t *m, ml_unit_t *u)
{
        ml_job_t *j = u->job;
        const char *sub_id = json_string_value(json_object_get(j->doc, "subscriber"));
        const ml_sub_t *s = ml_store_sub(m, sub_id);
        const ml_smtp_result_t r = {u->status, u->attempted, u->reply};
        const ml_retry_schedule_t rs = {m->cfg.mailer.retry_ms, m->cfg.mailer.retry_n};
        int64_t delay;

        ml_verdict_t v = ml_policy_smtp(&r, j->attempt, &rs, m->stopping, &delay);
        nc_log_fields_t f = {0};

        job_hold(j); /* j stays valid until the end of this function */
        job_log_fields(&f, j);
        nc_log_field_int(&f, "attempt", j->attempt);
        if (u->status > 0)
                nc_log_field_int(&f, "code", u->status);
        nc_log_field(&f, "reply", u->reply);
        if (v == ML_VERDICT_SENT || v == ML_VERDICT_BOUNCE)
                nc_log_f(v == ML_VERDICT_SENT ? NC_LOG_DEBUG : NC_LOG_INFO, &f, "smtp: %s",
                         ml_verdict_name(v));
        switch (v) {
        case ML_VERDICT_FAILED:
                if (u->status == ML_STATUS_NOT_BUILT) {
                        nc_log_f(NC_LOG_WARN, &f, "message not built");
                        job_fail(m, j, 0, u->reply);
                } else {
                        job_fail(m, j, u->status, u->reply);
                }
                break;
        case ML_VERDICT_LEAVE:
                /* Stopping: not sent, or its session was ended at shutdown_timeout.  Nothing
                 * is recorded and no attempt charged: left uncommitted, it is sent again by
                 * the next owner of its partition. */
                nc_log_f(NC_LOG_DEBUG, &f, "stopping: job left for a restart");
                break;
        case ML_VERDICT_SENT:
                record(m, j, ML_OUTCOME_SENT, u->status, u->reply);
                /* With VERP, the bounces that count come back later (inbound.c). */
                if (s && s->bounces && !m->cfg.mailer.verp)
                        bounces_reset(m, s);
                break;
        case ML_VERDICT_BOUNCE:
                /* Final for this recipient: a bounce, counted towards suppression. */
                record(m, j, ML_OUTCOME_BOUNCE, u->status, u->reply);
                if (s) {
                        char reason[300];

                        snprintf(reason, sizeof(reason), "smtp; %d %.250s", u->status, u->reply);
                        sub_bounced(m, s, reason);
                }
                break;
        case ML_VERDICT_RETRY:
                /* 4xx (throttling, greylisting) or no connection: try again later. */
                nc_log_f(NC_LOG_INFO, &f, "smtp: temporary failure: retry %d in %lld ms",
                         j->attempt, (long long)delay);
                j->attempt++;
                wait_later(m, j, nc_time_now_ms() + delay);
                break;
        }
        json_decref(u->subscriber);
        json_decref(u->notices);
        free(u);
        job_unhold(m, j);
}

static void unit_free(ml_unit_t *u)
{
        json_decref(u->subscriber);
        json_decref(u->notices);
        free(u);
}

/* Takes what the workers finished (under the lock) and records each outcome (without it). */
static void record_outcomes(ml_t *m)
{
        ml_unit_t *done = ml_queue_take_done(&m->q), *u;

        while ((u = done)) {
                done = u->next;
                unit_outcome(m, u);
        }
}

/* ---- catching up with the deliveries topic ---------------------------------------------- *
 *
 * A partition newly assigned (at the start, after a rebalance, after the broker was away) is
 * read from its last committed offset, which may lie well before jobs whose messages were sent
 * and recorded since: by this instance before a kill -9, by another instance that lost the
 * partition, or behind a job that waits for a retry and holds the offset back.  Before its
 * jobs are taken, the last events of every deliveries partition (MIDS_KEEP in all) are read
 * and each mail.sent's Message-ID remembered: such a job is then settled without sending.
 * Non-blocking: the scan runs in the main loop; the jobs partitions stay paused until every
 * deliveries partition was read to its end, or SCAN_MAX_MS passed. */
#define SCAN_MAX_MS 30000

static void scan_done(ml_t *m, const char *why)
{
        int n = m->paused ? m->paused->cnt : 0;

        if (n)
                rd_kafka_resume_partitions(m->sender, m->paused);
        if (m->paused) {
                rd_kafka_topic_partition_list_destroy(m->paused);
                m->paused = NULL;
        }
        nc_tail_stop(m->scan);
        log_info("deliveries %s: %zu Message-ID%s of sent mail learned; taking the jobs of %d "
                 "partition%s",
                 why, m->scan_learned, m->scan_learned == 1 ? "" : "s", n, n == 1 ? "" : "s");
}

/* (Re)reads the last MIDS_KEEP events (spread over the partitions) from the tail. */
static void scan_start(ml_t *m)
{
        char err[512];

        if (!nc_tail_running(m->scan))
                m->scan_learned = 0;
        if (nc_tail_start(m->scan, MIDS_KEEP / m->scan_nparts, m->cfg.producer_timeout_ms, err,
                          sizeof(err)) != 0) {
                log_warnx("deliveries catch-up: %s", err);
                scan_done(m, "catch-up failed");
        }
}

static void scan_event(const rd_kafka_message_t *r, void *opaque)
{
        ml_t *m = opaque;
        json_t *ev;
        const char *mid;

        if (r->err) {
                log_warnx("deliveries catch-up: %s", rd_kafka_message_errstr(r));
                return;
        }
        /* Webhook deliveries share the topic: parse only what may be a mail.sent. */
        if (!r->payload || !memmem(r->payload, r->len, "\"mail.sent\"", 11))
                return;
        ev = json_loadb(r->payload, r->len, 0, NULL);
        mid = json_string_value(json_object_get(ev, "message_id"));
        if (mid && !g_strcmp0(json_string_value(json_object_get(ev, "type")), "mail.sent") &&
            !mid_state(m, mid)) {
                mid_learn(m, mid);
                m->scan_learned++;
        }
        json_decref(ev);
}

static void scan_poll(ml_t *m)
{
        if (!nc_tail_running(m->scan))
                return;
        nc_tail_poll(m->scan, 0, scan_event, m);
        if (nc_tail_caught_up(m->scan))
                scan_done(m, "caught up");
        else if (nc_time_now_ms() - nc_tail_started_ms(m->scan) > SCAN_MAX_MS)
                scan_done(m, "catch-up timed out (30 s)");
}

/* Without the deliveries topic's partitions there is no catch-up (M->scan stays NULL). */
static int scan_init(ml_t *m, char *errstr, size_t errstr_size)
{
        char group[300], err[512];

        /* Never subscribes nor commits: the group id only satisfies the configuration. */
        snprintf(group, sizeof(group), "%s.senders-catchup", m->cfg.mailer.group_id);
        if (!(m->scan = nc_tail_new(&m->cfg,
                                    &(nc_tail_opts_t){.name = "deliveries reader",
                                                      .topic = m->topic_events,
                                                      .group_id = group},
                                    errstr, errstr_size)))
                return -1;
        nc_tail_wake_fd(m->scan, m->wake_pipe[1], "s", 1);
        m->scan_nparts = nc_tail_partitions(m->scan, 10000, err, sizeof(err));
        if (m->scan_nparts <= 0) {
                log_warnx("%s: jobs read again after a rebalance are not checked against it", err);
                nc_tail_free(m->scan);
                m->scan = NULL;
                m->scan_nparts = 0;
        }
        return 0;
}

/* ---- group membership ------------------------------------------------------------------ */

/* Newly assigned jobs partitions wait until the recent mail.sent events are read. */
static void jobs_assigned(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        ml_t *m = opaque;

        nc_kafka_denied_clear(m->sender_denied);
        if (!m->scan || parts->cnt <= 0)
                return;
        rd_kafka_pause_partitions(rk, parts);
        if (!m->paused)
                m->paused = rd_kafka_topic_partition_list_new(parts->cnt);
        for (int i = 0; i < parts->cnt; i++)
                rd_kafka_topic_partition_list_add(m->paused, parts->elems[i].topic,
                                                  parts->elems[i].partition);
        scan_start(m);
}

static int unit_still_ours(const ml_unit_t *u, void *opaque)
{
        (void)opaque;
        return !u->job->part->revoked;
}

/* The next owner of a revoked partition reads it again from the committed offset, and its
 * catch-up learns from the deliveries topic what was sent.  So the jobs not begun are let go
 * (it sends them), and the SMTP sessions under way are waited for, for a bounded while, and
 * their mail.sent events flushed before the rebalance goes on: else both would send them.
 * The wait is bounded by [mailer] shutdown_timeout, as at a stop. */

static void jobs_let_go(ml_t *m)
{
        ml_unit_t *u, *gone;
        size_t n = 0;

        queue_flush(m); /* prepared in this poll, not pushed yet */
        for (gone = ml_queue_remove_if(&m->q, unit_still_ours, NULL); (u = gone); n++) {
                gone = u->next;
                mid_forget(m, u->job);
                job_settle(m, u->job); /* revoked: no offset is stored for it */
                unit_free(u);
        }
        if (n)
                log_info("rebalance: %zu job%s not begun left to the partitions' next owner", n,
                         n == 1 ? "" : "s");
}

static void sessions_finish(ml_t *m)
{
        int64_t start = nc_time_now_ms(), deadline = start + m->cfg.mailer.shutdown_timeout_ms;
        size_t busy;
        int done;

        for (;;) {
                record_outcomes(m);
                ml_queue_counts(&m->q, NULL, &busy, &done);
                if (!busy && !done)
                        break;
                if (nc_time_now_ms() >= deadline) {
                        log_warnx("rebalance: %zu message%s still in SMTP sessions after "
                                  "shutdown_timeout: the partitions' next owner may send them "
                                  "again",
                                  busy, busy == 1 ? "" : "s");
                        break;
                }
                poll(NULL, 0, 20);
        }
        if (rd_kafka_flush(m->events,
                           (int)(deadline > nc_time_now_ms() ? deadline - nc_time_now_ms()
                                                             : 1000)) != RD_KAFKA_RESP_ERR_NO_ERROR)
                log_warnx("rebalance: outcome events not all written yet: the partitions' next "
                          "owner may send some messages again");
        log_debug("rebalance: sessions finished and events flushed in %lld ms",
                  (long long)(nc_time_now_ms() - start));
}

static void jobs_revoking(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        ml_t *m = opaque;

        (void)rk;
        if (m->paused)
                for (int i = 0; i < parts->cnt; i++)
                        rd_kafka_topic_partition_list_del(m->paused, parts->elems[i].topic,
                                                          parts->elems[i].partition);
        if (m->workers && !m->stopping) {
                jobs_let_go(m);
                sessions_finish(m);
        }
}

int ml_sender_start(ml_t *m, char *errstr, size_t errstr_size)
{
        /* One outcome event per message: batch them for 50 ms rather than librdkafka's 5 (ten
         * times fewer produce requests for the daemon and the broker to handle; an outcome,
         * and the job's offset, is recorded at most 50 ms later).  [kafka] linger.ms wins. */
        static const nc_kafka_setting_t linger[] = {{"linger.ms", "50"}, {NULL, NULL}};
        static const nc_kafka_setting_t set[] = {{"fetch.wait.max.ms", "100"}, {NULL, NULL}};
        rd_kafka_topic_partition_list_t *subs;
        char group[256];
        int i;

        if (!(m->events =
                  nc_kafka_idempotent_producer_new(&m->cfg,
                                                   &(nc_kafka_opts_t){.name = "events producer",
                                                                      .defaults = linger,
                                                                      .dr_msg_cb = events_dr,
                                                                      .opaque = m},
                                                   errstr, errstr_size)))
                return -1;

        snprintf(group, sizeof(group), "%s.senders", m->cfg.mailer.group_id);
        /* What was sent is committed with the revocation (the tracks), the rest every 500 ms. */
        m->sender_rb = (nc_kafka_rebalance_t){
            .assigned = jobs_assigned, .revoking = jobs_revoking, .tracks = &m->parts, .opaque = m};
        if (!(m->sender =
                  nc_kafka_group_consumer_new(&m->cfg,
                                              &(nc_kafka_opts_t){.name = "sender consumer",
                                                                 .group_id = group,
                                                                 .commit_interval_ms = 500,
                                                                 .set = set,
                                                                 .rebalance = &m->sender_rb},
                                              errstr, errstr_size)))
                return -1;
        m->mids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m->mids_done = g_queue_new();
        if (scan_init(m, errstr, errstr_size) != 0)
                return -1;
        subs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(subs, m->topic_jobs, RD_KAFKA_PARTITION_UA);
        if (rd_kafka_subscribe(m->sender, subs)) {
                rd_kafka_topic_partition_list_destroy(subs);
                return nc_err(errstr, errstr_size, "sender: subscribe failed");
        }
        rd_kafka_topic_partition_list_destroy(subs);

        if (m->cfg.smtp.allow_plaintext_auth)
                log_warnx("[smtp] allow_plaintext_auth = true: the SMTP password is sent in "
                          "clear to a relay that does not offer STARTTLS");
        else if (m->cfg.smtp.password_file && m->cfg.smtp.starttls == 0)
                log_warnx("[smtp] starttls = off with a password: no credentials are sent without "
                          "TLS, so sessions fail unless allow_plaintext_auth = true");

        ml_queue_init(&m->q, m->wake_pipe[1], &m->domains);
        m->nworkers = m->cfg.smtp.sessions;
        m->workers = nc_xcalloc((size_t)m->nworkers, sizeof(*m->workers));
        m->cancels = nc_xcalloc((size_t)m->nworkers, sizeof(*m->cancels));
        for (i = 0; i < m->nworkers; i++)
                ml_smtp_cancel_init(&m->cancels[i]);
        for (i = 0; i < m->nworkers; i++) {
                struct worker_arg *wa = nc_xcalloc(1, sizeof(*wa));

                wa->m = m;
                wa->index = i;
                if (pthread_create(&m->workers[i], NULL, worker_main, wa) != 0)
                        return nc_err(errstr, errstr_size, "cannot start SMTP worker threads");
        }
        return 0;
}

static int take_token(ml_t *m)
{
        int64_t now = nc_time_now_ms();
        double rate = m->cfg.smtp.rate_limit;

        if (rate <= 0)
                return 1;
        m->tokens += (double)(now - m->tokens_ms) * rate / 1000.0;
        m->tokens_ms = now;
        if (m->tokens > rate)
                m->tokens = rate < 1 ? 1 : rate;
        if (m->tokens < 1)
                return 0;
        m->tokens -= 1;
        return 1;
}

int ml_sender_poll(ml_t *m)
{
        rd_kafka_message_t *batch[500];
        rd_kafka_queue_t *q;
        ml_job_t **pp, *j, *prev;
        int64_t now = nc_time_now_ms();
        ssize_t n, i;
        size_t queued;
        int starved = 0; /* a job due now waits for a token of [smtp] rate_limit */

        rd_kafka_poll(m->events, 0);
        if (now - m->lag_ms >= 2000) { /* cheap, but not on every turn of the loop */
                m->lag_ms = now;
                ml_metrics_lag(m, m->planner, "planner");
                ml_metrics_lag(m, m->sender, "sender");
        }
        scan_poll(m);
        nc_tracks_gc(&m->parts, NULL, NULL); /* revoked partitions whose last job settled */
        record_outcomes(m);                  /* of the workers' finished sessions */
        nc_tracks_store(m->parts, m->sender);
        if (m->stopping) /* waiting jobs stay uncommitted: sent again after a restart */
                return 0;
        /* Jobs whose backoff is over, or whose notice may have arrived, oldest first. */
        prev = NULL;
        for (pp = &m->waiting; (j = *pp);) {
                if (j->not_before_ms <= now && take_token(m)) {
                        *pp = j->wait_next;
                        if (m->waiting_tail == j)
                                m->waiting_tail = prev;
                        j->waiting = 0;
                        if (j->part->revoked) {
                                mid_forget(m, j);
                                job_settle(m, j); /* the next owner sends it; just let go */
                                continue;
                        }
                        job_prepare(m, j); /* may queue it again at the tail */
                } else {
                        starved |= j->not_before_ms <= now;
                        prev = j;
                        pp = &j->wait_next;
                }
        }
        /* Under a rate limit, take no more jobs than can be sent soon: what sits in memory
         * holds back the committed offset, and a crash would repeat it.  Jobs waiting for a
         * retry (a domain's deferral among them) do not stop the others. */
        if (!m->store.caught_up || m->stopping || m->outstanding >= MAX_OUTSTANDING ||
            (m->cfg.smtp.rate_limit > 0 && starved)) {
                queue_flush(m);
                return 0;
        }
        q = rd_kafka_queue_get_consumer(m->sender);
        n = rd_kafka_consume_batch_queue(q, 0, batch, sizeof(batch) / sizeof(*batch));
        rd_kafka_queue_destroy(q);
        for (i = 0; i < n; i++) {
                rd_kafka_message_t *r = batch[i];
                ml_job_t *job;

                if (r->err) {
                        if (r->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                            !nc_kafka_consumer_denied(&m->cfg, m->sender, r, "sender",
                                                      m->sender_denied, sizeof(m->sender_denied)))
                                log_warnx("sender: %s", rd_kafka_message_errstr(r));
                        rd_kafka_message_destroy(r);
                        continue;
                }
                job = nc_xcalloc(1, sizeof(*job));
                job->rkm = r;
                job->attempt = 1;
                job->first_try_ms = now;
                job->part = nc_track_get(&m->parts, rd_kafka_topic_name(r->rkt), r->partition,
                                         sizeof(nc_track_t), NULL);
                nc_track_append(job->part, &job->tm, r->offset);
                m->outstanding++;
                job->doc = r->payload ? json_loadb(r->payload, r->len, 0, NULL) : NULL;
                if (!json_is_object(job->doc) ||
                    !json_string_value(json_object_get(job->doc, "subscriber"))) {
                        /* Jobs are written by the planner only; a bad one is a bug: skip. */
                        nc_log_fields_t f = {0};

                        nc_log_field(&f, "topic", job->part->topic);
                        nc_log_field_int(&f, "partition", r->partition);
                        nc_log_field_int(&f, "offset", r->offset);
                        nc_log_f(NC_LOG_WARN, &f, "sender: malformed job skipped");
                        if (!job->doc)
                                job->doc = json_object();
                        job_settle(m, job);
                        continue;
                }
                if (take_token(m))
                        job_prepare(m, job);
                else
                        wait_later(m, job, now);
        }
        queue_flush(m);
        ml_queue_counts(&m->q, &queued, NULL, NULL);
        nc_metrics_set(m->m_queue, NULL, (double)queued);
        if (m->dups_skipped) {
                log_info("%zu job%s read again (after a rebalance) had been sent and recorded "
                         "already: not sent again",
                         m->dups_skipped, m->dups_skipped == 1 ? "" : "s");
                m->dups_skipped = 0;
        }
        return n == (ssize_t)(sizeof(batch) / sizeof(*batch));
}

size_t ml_sender_busy(ml_t *m)
{
        size_t queued, busy;
        int done;

        ml_queue_counts(&m->q, &queued, &busy, &done);
        return queued + busy + (size_t)done;
}

void ml_sender_quiesce(ml_t *m)
{
        ml_unit_t *u;
        int i;

        m->stopping = 1;
        if (!m->workers)
                return;
        /* Units not started yet are dropped: their jobs stay uncommitted. */
        for (ml_unit_t *todo = ml_queue_stop(&m->q); (u = todo);) {
                todo = u->next;
                unit_free(u);
        }
        /* A batch that a relay cut short is not continued in a new session. */
        for (i = 0; i < m->nworkers; i++)
                ml_smtp_cancel_stop(&m->cancels[i]);
}

void ml_sender_stop(ml_t *m, int64_t deadline_ms)
{
        ml_unit_t *u;
        int64_t flush_ms;
        size_t busy;
        int i;

        m->stopping = 1; /* also on a failed start: nothing is produced again from here */
        if (m->workers) {
                ml_sender_quiesce(m);
                ml_queue_counts(&m->q, NULL, &busy, NULL);
                if (busy) {
                        /* libesmtp blocks on a relay that does not answer for up to timeout_ms
                         * per reply: shut the sessions' sockets down so that the threads
                         * return now.  What they were sending is left uncommitted. */
                        log_warnx("shutdown_timeout reached with %zu message%s in SMTP sessions: "
                                  "ending them; their jobs are sent again after a restart",
                                  busy, busy == 1 ? "" : "s");
                        for (i = 0; i < m->nworkers; i++)
                                ml_smtp_cancel_now(&m->cancels[i]);
                }
                for (i = 0; i < m->nworkers; i++)
                        pthread_join(m->workers[i], NULL);
                free(m->workers);
                m->workers = NULL;
                for (i = 0; i < m->nworkers; i++)
                        ml_smtp_cancel_destroy(&m->cancels[i]);
                free(m->cancels);
                m->cancels = NULL;
                /* Outcomes of the last sessions are recorded before committing (sent and
                 * bounced ones; temporary ones are left for the restart). */
                record_outcomes(m);
        }
        if (m->events) {
                flush_ms = deadline_ms - nc_time_now_ms();
                if (flush_ms < FLUSH_MIN_MS)
                        flush_ms = FLUSH_MIN_MS;
                if (flush_ms > FLUSH_MAX_MS)
                        flush_ms = FLUSH_MAX_MS;
                if (rd_kafka_flush(m->events, (int)flush_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
                        log_warnx("stopping: %d outcome record%s not acknowledged in time; their "
                                  "jobs are sent again after a restart",
                                  rd_kafka_outq_len(m->events),
                                  rd_kafka_outq_len(m->events) == 1 ? "" : "s");
                rd_kafka_poll(m->events, 0);
        }
        if (m->sender) {
                nc_tracks_store(m->parts, m->sender);
                rd_kafka_commit(m->sender, NULL, 0);
        }
        if (m->events) {
                /* What is still queued is dropped (its jobs were not settled); no delivery
                 * report may reach a job after this. */
                rd_kafka_purge(m->events, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_poll(m->events, 0);
                rd_kafka_destroy(m->events);
                m->events = NULL;
        }
        for (ml_unit_t *done = m->q.wake_fd ? ml_queue_take_done(&m->q) : NULL; (u = done);) {
                done = u->next;
                unit_free(u);
        }
        while ((u = m->pend_head)) {
                m->pend_head = u->next;
                unit_free(u);
        }
        m->pend_tail = NULL;
        /* Every consumed message is released before the consumer is closed: librdkafka's
         * destroy waits for the messages the application still holds (jobs waiting for a
         * retry hold theirs). */
        m->waiting = m->waiting_tail = NULL;
        nc_tracks_free(&m->parts, job_release, m, NULL);
        if (m->sender) {
                rd_kafka_consumer_close(m->sender);
                rd_kafka_destroy(m->sender);
                m->sender = NULL;
        }
        if (m->paused) {
                rd_kafka_topic_partition_list_destroy(m->paused);
                m->paused = NULL;
        }
        nc_tail_free(m->scan);
        m->scan = NULL;
        ml_queue_destroy(&m->q);
        if (m->mids) {
                g_hash_table_destroy(m->mids);
                m->mids = NULL;
        }
        if (m->mids_done) {
                g_queue_free_full(m->mids_done, g_free);
                m->mids_done = NULL;
        }
}

/* ---- metrics ----------------------------------------------------------------------------- */

/* SMTP transactions: loopback relays answer within a millisecond, real ones take seconds. */
static const double txn_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,  0.5,    1,     2.5,  5,     10,   30};

void ml_metrics_init(ml_t *m)
{
        static const ml_outcome_t outcomes[] = {ML_OUTCOME_SENT, ML_OUTCOME_BOUNCE,
                                                ML_OUTCOME_FAILED, ML_OUTCOME_SKIPPED};
        char l[NC_METRICS_LABELS_SIZE];
        size_t i;

        nc_metrics_standard(m->metrics, "noticecast-mailer", NC_VERSION);
        for (i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
                if (nc_metrics_labels(l, sizeof(l), "outcome", ml_outcome_label(outcomes[i]),
                                      NULL) == 0)
                        nc_metrics_inc(m->m_sent, l, 0);
        m->m_deferrals = nc_metrics_counter(m->metrics, "noticecast_mail_domain_deferrals_total",
                                            "Deferrals (421, 4.7.x) that backed a recipient domain "
                                            "off: the domains of [smtp] domain_limits, the rest "
                                            "as \"other\".");
        for (i = 0; i <= m->domains.n; i++)
                if (nc_metrics_labels(l, sizeof(l), "domain",
                                      i < m->domains.n ? m->domains.v[i].domain : "other",
                                      NULL) == 0)
                        nc_metrics_inc(m->m_deferrals, l, 0);
        m->m_dlq = nc_metrics_counter(m->metrics, "noticecast_mail_dlq_total",
                                      "Email jobs put in the dead letter queue.");
        nc_metrics_inc(m->m_dlq, NULL, 0);
        m->m_txn = nc_metrics_histogram(m->metrics, "noticecast_mail_smtp_transaction_seconds",
                                        "SMTP transactions, from MAIL FROM to the final reply "
                                        "after the message data.",
                                        txn_buckets, sizeof(txn_buckets) / sizeof(txn_buckets[0]));
        nc_metrics_touch(m->m_txn, NULL);
        m->m_lag = nc_metrics_gauge(m->metrics, "noticecast_mail_consumer_lag",
                                    "Messages on a consumer's assigned partitions not yet read "
                                    "(planner: notices and subscribers; sender: jobs).");
        m->m_planned = nc_metrics_counter(m->metrics, "noticecast_mail_notices_planned_total",
                                          "Notices the planner has planned (committed "
                                          "transactions), whether or not they made jobs.");
        nc_metrics_inc(m->m_planned, NULL, 0);
        m->m_plan_ts =
            nc_metrics_gauge(m->metrics, "noticecast_mail_planner_last_notice_timestamp_seconds",
                             "Publication time (Kafka timestamp) of the last notice "
                             "planned by this instance.");
        m->m_digest_ts = nc_metrics_gauge(
            m->metrics, "noticecast_mail_digests_planned_through_timestamp_seconds",
            "End of the last minute whose digests are planned (on the instance "
            "that plans the digests).");
}

void ml_metrics_lag(ml_t *m, rd_kafka_t *rk, const char *name)
{
        char l[NC_METRICS_LABELS_SIZE];
        long long lag;

        if (!m->m_lag || !rk)
                return;
        lag = nc_metrics_consumer_lag(rk);
        if (nc_metrics_labels(l, sizeof(l), "consumer", name, NULL) == 0)
                nc_metrics_set(m->m_lag, l, lag < 0 ? 0 : (double)lag);
}
