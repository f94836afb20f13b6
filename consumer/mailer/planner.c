/* noticecast-mailer: planning, once per notice and once per digest minute, in Kafka
 * transactions (jobs + progress together). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mailer.h"
#include "nc_daemon.h"
#include "nc_dlq.h"
#include "nc_kafka.h"
#include "ml_mail.h"
#include "nc_notice.h"
#include "nc_subscriber.h"
#include "nc_time.h"
#include "nc_util.h"
#include "nc_uuid.h"

#define IMMEDIATE_MAX_AGE_MS (24LL * 3600 * 1000) /* older notices seen first: no email */
#define MINUTES_PER_TXN      30

int64_t ml_now(const ml_t *m)
{
        return nc_time_now_ms() + m->clock_offset_ms;
}

/* ---- producing inside the current transaction ------------------------------------------ */

static rd_kafka_resp_err_t txn_produce_err(ml_t *m, const char *topic, const char *key,
                                           const char *value, size_t len, rd_kafka_headers_t *hdrs);

static int txn_produce(ml_t *m, const char *topic, const char *key, const char *value, size_t len,
                       rd_kafka_headers_t *hdrs)
{
        return txn_produce_err(m, topic, key, value, len, hdrs) ? -1 : 0;
}

static rd_kafka_resp_err_t txn_produce_err(ml_t *m, const char *topic, const char *key,
                                           const char *value, size_t len, rd_kafka_headers_t *hdrs)
{
        rd_kafka_resp_err_t err;

        do {
                err = rd_kafka_producev(m->planner_txp, RD_KAFKA_V_TOPIC(topic),
                                        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                        RD_KAFKA_V_VALUE((void *)value, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(m->planner_txp, 50);
        } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (err) {
                if (hdrs)
                        rd_kafka_headers_destroy(hdrs);
                log_warnx("planner: produce to %s: %s", topic, rd_kafka_err2str(err));
                return err;
        }
        return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static int produce_job(ml_t *m, const char *sub_id, const char *type, const char *period,
                       int urgent, json_t *ids, const char *what, int64_t window_end)
{
        char msgid[ML_MAIL_MSGID_SIZE], *value;
        json_t *job;
        int rc;

        ml_mail_message_id(sub_id, what, m->cfg.mailer.message_id_domain, msgid, sizeof(msgid));
        job = json_pack("{s:s, s:s, s:s, s:b, s:O, s:I, s:s, s:I}", "type", type, "subscriber",
                        sub_id, "period", period, "urgent", urgent, "notices", ids, "window_end",
                        (json_int_t)window_end, "message_id", msgid, "planned_at",
                        (json_int_t)nc_time_now_ms());
        value = json_dumps(job, JSON_COMPACT);
        json_decref(job);
        rc = txn_produce(m, m->topic_jobs, sub_id, value, strlen(value), NULL);
        free(value);
        nc_metrics_inc(m->m_jobs, NULL, 1);
        return rc;
}

/* A quarantine write of this transaction failed: it must not commit (the record would be
 * lost); it is aborted and planned again. */
static int dlq_failed;

/* Quarantines R in the open transaction (its offset is committed with it, so a record read
 * again after a restart is not quarantined twice).  A record too large to be copied (or whose
 * copy is refused as such) is quarantined as a reference (nc_dlq.h). */
static int produce_dlq(ml_t *m, const rd_kafka_message_t *r, const char *reason)
{
        rd_kafka_headers_t *h, *orig = NULL;
        char key[256] = "", dkey[NC_DLQ_KEY_SIZE], mmb[32];
        const char *topic = rd_kafka_topic_name(r->rkt);
        nc_dlq_source_t src = {.stage = "mailer",
                               .topic = topic,
                               .partition = r->partition,
                               .offset = r->offset,
                               .reason = reason,
                               .key = dkey};
        size_t mmb_len = sizeof(mmb), len;
        rd_kafka_resp_err_t err;
        int reference;
        const void *v;
        char *ref;

        nc_dlq_key(dkey, sizeof(dkey), "mailer", topic, r->partition, r->offset, NULL);
        if (rd_kafka_conf_get(rd_kafka_conf(m->planner_txp), "message.max.bytes", mmb, &mmb_len) !=
            RD_KAFKA_CONF_OK)
                snprintf(mmb, sizeof(mmb), "1000000");
        reference = r->len > nc_dlq_copy_max(mmb);
        if (r->key && r->key_len < sizeof(key)) {
                memcpy(key, r->key, r->key_len);
                key[r->key_len] = '\0';
        }
        for (;;) {
                h = rd_kafka_headers_new(12);
                if (reference) {
                        rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
                } else if (rd_kafka_message_headers(r, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                           rd_kafka_header_get_last(orig, "noticecast-event", &v, &len) == 0 && v) {
                        rd_kafka_header_add(h, "noticecast-event", -1, v, (ssize_t)len);
                }
                nc_dlq_add_headers(h, &src, reference ? (r->len ? r->len : 1) : 0);
                rd_kafka_header_add(h, "noticecast-dlq-replay-topic", -1, topic, -1);
                {
                        nc_log_fields_t f = {0};

                        /* Keys are notice ids on the notice topics, subscriber ids on theirs. */
                        nc_log_field(&f, strcmp(topic, m->topic_subs) ? "notice_id" : "subscriber",
                                     key[0] ? key : NULL);
                        nc_log_field(&f, "topic", topic);
                        nc_log_field_int(&f, "partition", r->partition);
                        nc_log_field_int(&f, "offset", r->offset);
                        nc_log_field(&f, "dlq_key", dkey);
                        nc_log_field(&f, "reason", reason);
                        nc_log_f(NC_LOG_WARN, &f, "dlq: quarantined%s",
                                 reference ? " as a reference" : "");
                }
                if (!reference) {
                        err = txn_produce_err(m, m->topic_dlq, key[0] ? key : NULL,
                                              r->payload ? r->payload : "", r->len, h);
                } else {
                        ref = nc_dlq_reference_value(&src, r->key, r->key_len, r->payload, r->len,
                                                     &len);
                        err = txn_produce_err(m, m->topic_dlq, key[0] ? key : NULL, ref, len, h);
                        free(ref);
                }
                if (!err)
                        return 0;
                if (reference || nc_produce_classify(err) != NC_PRODUCE_REFUSED)
                        break;
                reference = 1; /* the copy was refused for good: a reference, then */
        }
        dlq_failed = 1;
        return -1;
}

/* ---- transactions ---------------------------------------------------------------------- */

static int txn_begin(ml_t *m)
{
        rd_kafka_error_t *e = rd_kafka_begin_transaction(m->planner_txp);

        if (e) {
                log_warnx("planner: begin transaction: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                return -1;
        }
        return 0;
}

/* Rewinds the planner consumer to its committed offsets after an aborted transaction, so
 * what was in it is planned again. */
static void rewind_to_committed(ml_t *m)
{
        rd_kafka_topic_partition_list_t *parts;
        int i;

        if (rd_kafka_assignment(m->planner, &parts))
                return;
        if (rd_kafka_committed(m->planner, parts, 10000) == 0)
                for (i = 0; i < parts->cnt; i++) {
                        rd_kafka_topic_partition_t *p = &parts->elems[i];
                        rd_kafka_topic_t *rkt = rd_kafka_topic_new(m->planner, p->topic, NULL);

                        rd_kafka_seek(rkt, p->partition,
                                      p->offset >= 0 ? p->offset : RD_KAFKA_OFFSET_BEGINNING, 5000);
                        rd_kafka_topic_destroy(rkt);
                }
        rd_kafka_topic_partition_list_destroy(parts);
}

static void txn_abort(ml_t *m, const char *why)
{
        rd_kafka_error_t *e = rd_kafka_abort_transaction(m->planner_txp, 30000);

        log_warnx("planner: transaction aborted (%s): it will be planned again", why);
        if (e) {
                log_warnx("planner: abort: %s", rd_kafka_error_string(e));
                if (rd_kafka_error_is_fatal(e))
                        fatalx("planner: the transactional producer is fenced or broken: "
                               "restarting is the only way on");
                rd_kafka_error_destroy(e);
        }
        rewind_to_committed(m);
}

/* Commits the open transaction, with the consumer's positions when WITH_OFFSETS. */
static int txn_commit(ml_t *m, int with_offsets)
{
        rd_kafka_topic_partition_list_t *pos = NULL;
        rd_kafka_consumer_group_metadata_t *gm;
        rd_kafka_error_t *e;

        if (with_offsets && rd_kafka_assignment(m->planner, &pos) == 0) {
                rd_kafka_position(m->planner, pos);
                gm = rd_kafka_consumer_group_metadata(m->planner);
                e = rd_kafka_send_offsets_to_transaction(m->planner_txp, pos, gm, 30000);
                rd_kafka_consumer_group_metadata_destroy(gm);
                rd_kafka_topic_partition_list_destroy(pos);
                if (e) {
                        char why[256];

                        snprintf(why, sizeof(why), "send offsets: %s", rd_kafka_error_string(e));
                        rd_kafka_error_destroy(e);
                        txn_abort(m, why);
                        return -1;
                }
        }
        if ((e = rd_kafka_commit_transaction(m->planner_txp, 60000))) {
                char why[256];

                snprintf(why, sizeof(why), "commit: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                txn_abort(m, why);
                return -1;
        }
        return 0;
}

/* ---- notices -> immediate and urgent jobs ---------------------------------------------- */

/* A notice (or withdrawal) of one category on another category's topic: subscribers of the
 * topic's category must not get it, so it is quarantined (planner) and left out of the view
 * (store).  Sets REASON. */
int ml_category_mismatch(const ml_t *m, const rd_kafka_message_t *r, const json_t *n, char *reason,
                         size_t size)
{
        const char *topic = rd_kafka_topic_name(r->rkt), *cat = nc_notice_category(n);
        size_t pl = strlen(m->cfg.topic_prefix);

        if (!cat || strncmp(topic, m->cfg.topic_prefix, pl) || strncmp(topic + pl, "notices.", 8) ||
            !strcmp(topic + pl + 8, cat))
                return 0;
        snprintf(reason, size, "category '%s' does not match topic %s", cat, topic);
        return 1;
}

/* Notices planned in the open transaction, and the newest one's timestamp: counted once it
 * commits (an aborted one is planned again). */
static size_t planned_n;
static int64_t planned_ts;

static void plan_notice(ml_t *m, const rd_kafka_message_t *r)
{
        char event[64], err[512], what[80];
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(r, &tstype);
        const ml_sub_t *s;
        ml_store_iter_t it;
        json_t *in, *n, *ids;
        ml_notice_t rec;

        if (!nc_kafka_header(r, "noticecast-event", event, sizeof(event))) {
                produce_dlq(m, r, "missing header noticecast-event");
                return;
        }
        if (!r->payload || !nc_utf8_valid(r->payload, r->len) ||
            !(in = json_loadb(r->payload, r->len, JSON_REJECT_DUPLICATES, NULL))) {
                produce_dlq(m, r, "value is not valid UTF-8 JSON");
                return;
        }
        if (!strcmp(event, NC_EVENT_WITHDRAWN)) {
                if (nc_notice_withdrawal_check(in, &m->cfg, err, sizeof(err)) != 0) {
                        char reason[600];

                        snprintf(reason, sizeof(reason), "invalid withdrawal: %s", err);
                        produce_dlq(m, r, reason);
                } else if (ml_category_mismatch(m, r, in, err, sizeof(err))) {
                        produce_dlq(m, r, err);
                }
                json_decref(in); /* digests leave withdrawn notices out: nothing to plan */
                return;
        }
        if (strcmp(event, NC_EVENT_PUBLISHED)) {
                json_decref(in);
                produce_dlq(m, r, "unknown noticecast-event");
                return;
        }
        n = nc_notice_normalise(in, &m->cfg, NC_NOTICE_STORED, 0, err, sizeof(err));
        json_decref(in);
        if (!n) {
                char reason[600];

                snprintf(reason, sizeof(reason), "invalid notice: %s", err);
                produce_dlq(m, r, reason);
                return;
        }
        if (ml_category_mismatch(m, r, n, err, sizeof(err))) {
                produce_dlq(m, r, err);
                json_decref(n);
                return;
        }
        ml_notice_from_json(m, n, ts, &rec);
        planned_n++;
        if (ts > planned_ts)
                planned_ts = ts;
        if (ts > 0 && nc_time_now_ms() - ts > IMMEDIATE_MAX_AGE_MS) {
                nc_log_fields_t f = {0};

                nc_log_field(&f, "notice_id", rec.id);
                nc_log_field(&f, "topic", rd_kafka_topic_name(r->rkt));
                nc_log_field_int(&f, "partition", r->partition);
                nc_log_field_int(&f, "offset", r->offset);
                nc_log_f(NC_LOG_INFO, &f, "notice older than a day: no immediate emails");
                json_decref(n);
                return;
        }
        ids = json_pack("[s]", rec.id);
        snprintf(what, sizeof(what), "notice:%s", rec.id);
        for (ml_store_subs_begin(m, &it); (s = ml_store_subs_next(&it));) {
                /* Urgent notices go to every subscriber of the category at once, whatever
                 * their frequency (and digests leave them out). */
                if ((s->freq == ML_FREQ_IMMEDIATE || rec.urgent) && ml_sub_matches(m, s, &rec))
                        produce_job(m, s->id, "notice", "immediate", rec.urgent, ids, what, ts);
        }
        json_decref(ids);
        json_decref(n);
}

static void check_subscriber(ml_t *m, const rd_kafka_message_t *r)
{
        char err[512], reason[600];
        json_t *in, *rec;

        if (!r->payload)
                return; /* tombstone */
        in = json_loadb(r->payload, r->len, 0, NULL);
        rec = in ? nc_subscriber_normalise(in, &m->cfg, 0, err, sizeof(err)) : NULL;
        if (!in)
                snprintf(err, sizeof(err), "not JSON");
        if (!rec) {
                snprintf(reason, sizeof(reason), "invalid subscriber record: %s", err);
                produce_dlq(m, r, reason);
        }
        json_decref(rec);
        json_decref(in);
}

/* ---- digests --------------------------------------------------------------------------- */

static gint newest_first(gconstpointer a, gconstpointer b)
{
        const ml_notice_t *x = *(const ml_notice_t *const *)a, *y = *(const ml_notice_t *const *)b;

        return x->ts_ms < y->ts_ms ? 1 : x->ts_ms > y->ts_ms ? -1 : strcmp(x->id, y->id);
}

/* Notices eligible for a digest window: not urgent (they went out at once), not withdrawn,
 * not replaced by a correction, published through noticecast in [start, end). */
static GPtrArray *candidates(ml_t *m, int64_t start, int64_t end)
{
        GPtrArray *a = g_ptr_array_new();
        const ml_notice_t *n;
        ml_store_iter_t it;

        for (ml_store_notices_begin(m, &it); (n = ml_store_notices_next(&it));)
                if (!n->urgent && !n->withdrawn && !n->superseded_by[0] && n->ts_ms >= start &&
                    n->ts_ms < end)
                        g_ptr_array_add(a, (gpointer)n);
        g_ptr_array_sort(a, newest_first);
        return a;
}

static json_t *pick(ml_t *m, const ml_sub_t *s, GPtrArray *cands)
{
        json_t *ids = json_array();
        guint i;

        for (i = 0; i < cands->len && json_array_size(ids) < (size_t)m->cfg.mailer.max_notices;
             i++) {
                const ml_notice_t *n = g_ptr_array_index(cands, i);

                if (ml_sub_matches(m, s, n))
                        json_array_append_new(ids, json_string(n->id));
        }
        return ids;
}

json_t *ml_digest_notices(ml_t *m, const ml_sub_t *s, int64_t start_ms, int64_t end_ms)
{
        GPtrArray *c = candidates(m, start_ms, end_ms);
        json_t *ids = pick(m, s, c);

        g_ptr_array_free(c, TRUE);
        return ids;
}

/* Plans the digests due in minute MIN (Unix minutes, UTC). */
static size_t plan_minute(ml_t *m, int64_t min)
{
        int64_t end = min * 60000, t = min * 60;
        GPtrArray *daily = candidates(m, end - 24LL * 3600 * 1000, end);
        GPtrArray *weekly = candidates(m, end - 7LL * 24 * 3600 * 1000, end);
        int *offsets = nc_xcalloc(ml_store_zone_count(m) + 1, sizeof(int));
        char *known = nc_xcalloc(ml_store_zone_count(m) + 1, 1);
        const ml_sub_t *s;
        ml_store_iter_t it;
        char what[64];
        size_t jobs = 0;

        for (ml_store_subs_begin(m, &it); (s = ml_store_subs_next(&it));) {
                int64_t local;
                json_t *ids;
                int weekly_day;

                if (s->freq == ML_FREQ_IMMEDIATE || s->suppressed)
                        continue;
                if (!known[s->tz]) {
                        offsets[s->tz] = ml_zone_offset(m, s->tz, t);
                        known[s->tz] = 1;
                }
                local = t + offsets[s->tz];
                if ((int)((local / 60) % 1440) != s->send_min)
                        continue;
                weekly_day = (int)((local / 86400 + 4) % 7); /* 1970-01-01 was a Thursday */
                if (s->freq == ML_FREQ_WEEKLY && weekly_day != m->cfg.mailer.weekly_day)
                        continue;
                ids = pick(m, s, s->freq == ML_FREQ_WEEKLY ? weekly : daily);
                if (json_array_size(ids)) { /* an empty digest is not sent */
                        const char *period = s->freq == ML_FREQ_WEEKLY ? "weekly" : "daily";

                        snprintf(what, sizeof(what), "digest:%s:%lld", period, (long long)min);
                        produce_job(m, s->id, "digest", period, 0, ids, what, end);
                        jobs++;
                }
                json_decref(ids);
        }
        free(offsets);
        free(known);
        g_ptr_array_free(daily, TRUE);
        g_ptr_array_free(weekly, TRUE);
        return jobs;
}

static int read_marker(const rd_kafka_message_t *r, void *opaque)
{
        json_t *v = r->payload ? json_loadb(r->payload, r->len, 0, NULL) : NULL;
        int64_t *last = opaque;

        if (json_is_integer(json_object_get(v, "planned_through")))
                *last = json_integer_value(json_object_get(v, "planned_through"));
        json_decref(v);
        return 0;
}

static void plan_digests(ml_t *m)
{
        int64_t now_min = ml_now(m) / 60000, min, last;
        char err[512], *value;
        size_t jobs = 0;

        if (m->planned_minute == -2) { /* just became the owner: where did the last one stop? */
                last = -1;
                if (nc_kafka_read_topic(&m->cfg, m->topic_plan, 30000, read_marker, &last, err,
                                        sizeof(err)) != 0) {
                        log_warnx("planner: reading %s: %s", m->topic_plan, err);
                        return;
                }
                /* A first start plans from now on; a takeover catches up what was missed
                 * (bounded to a week, the longest digest window). */
                m->planned_minute = last < 0                    ? now_min - 1
                                    : last < now_min - 7 * 1440 ? now_min - 7 * 1440
                                                                : last;
                log_info("planner: digests planned through minute %lld (%s)",
                         (long long)m->planned_minute, last < 0 ? "first start" : "resumed");
        }
        if (m->planned_minute >= now_min)
                return;
        if (txn_begin(m) != 0)
                return;
        for (min = m->planned_minute + 1;
             min <= now_min && min - m->planned_minute <= MINUTES_PER_TXN; min++)
                jobs += plan_minute(m, min);
        min--;
        {
                json_t *mk = json_pack("{s:I}", "planned_through", (json_int_t)min);

                value = json_dumps(mk, JSON_COMPACT);
                json_decref(mk);
        }
        txn_produce(m, m->topic_plan, "digest", value, strlen(value), NULL);
        free(value);
        if (txn_commit(m, 0) == 0) {
                if (jobs)
                        log_info("planner: %zu digest%s planned for minute %lld", jobs,
                                 jobs == 1 ? "" : "s", (long long)min);
                m->planned_minute = min;
                if (m->m_digest_ts)
                        nc_metrics_set(m->m_digest_ts, NULL, (double)(min + 1) * 60);
        }
}

/* ---- group membership ------------------------------------------------------------------ */

/* The instance that owns partition 0 of the plan topic plans the digests. */
static void plan_assigned(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        ml_t *m = opaque;
        int i, owner = 0;

        (void)rk;
        nc_kafka_denied_clear(m->planner_denied);
        for (i = 0; i < parts->cnt; i++)
                if (!strcmp(parts->elems[i].topic, m->topic_plan) && parts->elems[i].partition == 0)
                        owner = 1;
        if (owner && !m->plan_owner) {
                m->plan_owner = 1;
                m->planned_minute = -2;
                log_info("planner: this instance plans the digests");
        }
}

static void plan_revoking(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        ml_t *m = opaque;

        (void)rk;
        (void)parts;
        if (m->plan_owner)
                log_info("planner: no longer planning the digests");
        m->plan_owner = 0;
}

/* Set by init_txn_step when the error will not pass by waiting. */
static int txn_fatal;

/* The planner's transactional producer, with an id unique per process; fencing of zombies
 * comes from the group generation (KIP-447). */
static int txn_producer_new(ml_t *m, char *errstr, size_t errstr_size)
{
        char tid[400], host[64] = "host", uuid[NC_UUID_STRLEN];

        if (gethostname(host, sizeof(host) - 1) != 0)
                snprintf(host, sizeof(host), "host");
        if (nc_uuid_v7(nc_time_now_ms(), uuid) != 0)
                return nc_err(errstr, errstr_size, "planner: cannot generate transactional.id");
        snprintf(tid, sizeof(tid), "%s.planner-%s-%s", m->cfg.mailer.group_id, host, uuid);
        m->planner_txp =
            nc_kafka_txn_producer_new(&m->cfg,
                                      &(nc_kafka_opts_t){.name = "planner producer",
                                                         .transactional_id = tid,
                                                         .transaction_timeout_ms = 60000},
                                      errstr, errstr_size);
        return m->planner_txp ? 0 : -1;
}

/* A missing ACL on the transactional id is fatal to the producer but not to us: it is named,
 * the producer is dropped, and the next try (a new one) succeeds once the ACL is granted. */
static int init_txn_denied(ml_t *m, rd_kafka_error_t *e, char *errstr, size_t errstr_size)
{
        char tid[400] = "";
        size_t n = sizeof(tid);

        if (rd_kafka_conf_get(rd_kafka_conf(m->planner_txp), "transactional.id", tid, &n) !=
            RD_KAFKA_CONF_OK)
                tid[0] = '\0';
        if (!nc_kafka_denied(&m->cfg, rd_kafka_error_code(e), "write", tid, errstr, errstr_size))
                return 0;
        rd_kafka_destroy(m->planner_txp);
        m->planner_txp = NULL;
        return 1;
}

/* -1 (try again) on a retriable error or a missing ACL; 0 with txn_fatal set on another. */
static int init_txn_step(void *arg, char *errstr, size_t errstr_size)
{
        ml_t *m = arg;
        rd_kafka_error_t *e;
        int retry;

        if (!m->planner_txp && txn_producer_new(m, errstr, errstr_size) != 0) {
                txn_fatal = 1;
                return 0;
        }
        if (!(e = rd_kafka_init_transactions(m->planner_txp, m->cfg.producer_timeout_ms)))
                return 0;
        if (init_txn_denied(m, e, errstr, errstr_size)) {
                rd_kafka_error_destroy(e);
                return -1;
        }
        nc_err(errstr, errstr_size, "init transactions: %s", rd_kafka_error_string(e));
        retry = rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e);
        rd_kafka_error_destroy(e);
        if (retry)
                return -1;
        txn_fatal = 1;
        return 0;
}

int ml_planner_start(ml_t *m, char *errstr, size_t errstr_size)
{
        static const nc_kafka_setting_t set[] = {{"fetch.wait.max.ms", "100"}, {NULL, NULL}};
        rd_kafka_topic_partition_list_t *subs;
        char group[256];

        snprintf(group, sizeof(group), "%s.planner", m->cfg.mailer.group_id);
        /* The coordinator may not be there yet (brokers starting, or just gone): a timeout
         * or another retriable error is waited out (logged, /readyz 503); others end it. */
        if ((m->oneshot ? init_txn_step(m, errstr, errstr_size)
                        : nc_daemon_retry("planner: init transactions", init_txn_step, m, errstr,
                                          errstr_size)) != 0 ||
            txn_fatal)
                return -1;

        /* Offsets are committed with the planner's transactions (commit_interval_ms 0). */
        m->planner_rb = (nc_kafka_rebalance_t){
            .assigned = plan_assigned, .revoking = plan_revoking, .opaque = m};
        if (!(m->planner =
                  nc_kafka_group_consumer_new(&m->cfg,
                                              &(nc_kafka_opts_t){.name = "planner consumer",
                                                                 .group_id = group,
                                                                 .set = set,
                                                                 .rebalance = &m->planner_rb},
                                              errstr, errstr_size)))
                return -1;
        if (nc_kafka_notice_regex(&m->cfg, m->notice_regex, sizeof(m->notice_regex)) != 0)
                return nc_err(errstr, errstr_size,
                              "[noticecast] topic_prefix: too long for a topic name");
        subs = rd_kafka_topic_partition_list_new(3);
        rd_kafka_topic_partition_list_add(subs, m->notice_regex, RD_KAFKA_PARTITION_UA);
        rd_kafka_topic_partition_list_add(subs, m->topic_subs, RD_KAFKA_PARTITION_UA);
        rd_kafka_topic_partition_list_add(subs, m->topic_plan, RD_KAFKA_PARTITION_UA);
        if (rd_kafka_subscribe(m->planner, subs)) {
                rd_kafka_topic_partition_list_destroy(subs);
                return nc_err(errstr, errstr_size, "planner: subscribe failed");
        }
        rd_kafka_topic_partition_list_destroy(subs);
        return 0;
}

int ml_planner_poll(ml_t *m)
{
        rd_kafka_message_t *batch[500];
        rd_kafka_queue_t *q;
        ssize_t n, i;
        int in_txn = 0;

        /* Nothing is planned before the view holds every subscriber and notice. */
        if (!m->store.caught_up)
                return 0;
        q = rd_kafka_queue_get_consumer(m->planner);
        n = rd_kafka_consume_batch_queue(q, 0, batch, sizeof(batch) / sizeof(*batch));
        rd_kafka_queue_destroy(q);
        for (i = 0; i < n; i++) {
                rd_kafka_message_t *r = batch[i];
                const char *topic = r->rkt ? rd_kafka_topic_name(r->rkt) : "";

                if (r->err) {
                        if (r->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                            !nc_kafka_consumer_denied(&m->cfg, m->planner, r, "planner",
                                                      m->planner_denied, sizeof(m->planner_denied)))
                                log_warnx("planner: %s", rd_kafka_message_errstr(r));
                } else if (strcmp(topic, m->topic_plan)) {
                        if (!in_txn && txn_begin(m) == 0)
                                in_txn = 1;
                        if (in_txn) {
                                if (!strcmp(topic, m->topic_subs))
                                        check_subscriber(m, r);
                                else
                                        plan_notice(m, r);
                        }
                }
                rd_kafka_message_destroy(r);
        }
        if (in_txn) {
                if (dlq_failed) {
                        dlq_failed = 0;
                        rd_kafka_poll(m->planner_txp, 0);
                        txn_abort(m, "a DLQ record could not be written");
                } else if (txn_commit(m, 1) == 0 && m->m_planned) {
                        nc_metrics_inc(m->m_planned, NULL, (double)planned_n);
                        if (planned_ts > 0)
                                nc_metrics_set(m->m_plan_ts, NULL, (double)planned_ts / 1000.0);
                }
                planned_n = 0;
                planned_ts = 0;
        }
        if (m->plan_owner)
                plan_digests(m);
        rd_kafka_poll(m->planner_txp, 0);
        return n == (ssize_t)(sizeof(batch) / sizeof(*batch));
}

void ml_planner_stop(ml_t *m)
{
        if (m->planner) {
                rd_kafka_consumer_close(m->planner);
                rd_kafka_destroy(m->planner);
                m->planner = NULL;
        }
        if (m->planner_txp) {
                rd_kafka_flush(m->planner_txp, 10000);
                rd_kafka_destroy(m->planner_txp);
                m->planner_txp = NULL;
        }
}
