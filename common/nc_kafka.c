#include "nc_kafka.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "nc_notice.h"
#include "nc_time.h"
#include "nc_util.h"
#include "nc_uuid.h"

#define NOTICE_RETENTION_MS (30L * 24 * 3600 * 1000) /* digests look back at most a week */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        enum nc_log_level l = level <= LOG_ERR       ? NC_LOG_ERROR
                              : level <= LOG_WARNING ? NC_LOG_WARN
                              : level <= LOG_INFO    ? NC_LOG_INFO
                                                     : NC_LOG_DEBUG;

        /* Transient conditions librdkafka retries by itself (coordinator still loading after
         * a broker start, ...) are not worth a warning: the caller reports real failures. */
        if (l == NC_LOG_WARN && strstr(buf, ": retrying"))
                l = NC_LOG_INFO;
        nc_log_kv(l, buf, "component", "librdkafka", "facility", fac, "client", rd_kafka_name(rk),
                  NULL);
}

rd_kafka_conf_t *nc_kafka_conf_new(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char kerr[512];
        size_t i;

        rd_kafka_conf_set_log_cb(conf, log_cb);
        /* librdkafka's own "connection refused" chatter would drown our messages. */
        if (nc_log_get_level() > NC_LOG_DEBUG)
                rd_kafka_conf_set(conf, "log.connection.close", "false", NULL, 0);
        rd_kafka_conf_set(conf, "client.id", "noticecast", NULL, 0);
        for (i = 0; i < cfg->kafka_n; i++) {
                if (rd_kafka_conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].value, kerr,
                                      sizeof(kerr)) != RD_KAFKA_CONF_OK) {
                        rd_kafka_conf_destroy(conf);
                        nc_err(errstr, errstr_size, "%s: kafka: %s", cfg->kafka[i].origin, kerr);
                        return NULL;
                }
        }
        return conf;
}

void nc_kafka_conf_default(rd_kafka_conf_t *conf, const nc_config_t *cfg, const char *key,
                           const char *value)
{
        static const char *const aliases[][2] = {{"linger.ms", "queue.buffering.max.ms"},
                                                 {"compression.type", "compression.codec"}};
        size_t i;

        if (nc_config_kafka_get(cfg, key))
                return;
        for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
                if ((!strcmp(key, aliases[i][0]) && nc_config_kafka_get(cfg, aliases[i][1])) ||
                    (!strcmp(key, aliases[i][1]) && nc_config_kafka_get(cfg, aliases[i][0])))
                        return;
        rd_kafka_conf_set(conf, key, value, NULL, 0);
}

const char *nc_kafka_header(const rd_kafka_message_t *msg, const char *name, char *buf, size_t size)
{
        rd_kafka_headers_t *hdrs;
        const void *val;
        size_t len;

        if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return NULL;
        if (rd_kafka_header_get_last(hdrs, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return NULL;
        if (!val)
                len = 0;
        if (len >= size)
                len = size - 1;
        memcpy(buf, val ? val : "", len);
        buf[len] = '\0';
        return buf;
}

/* ---- transactional produce ------------------------------------------------------------- */

struct dr_state {
        size_t failed;
        char first_error[256];
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        nc_kafka_msg_t *msg = m->_private;
        struct dr_state *st = opaque;

        (void)rk;
        if (m->err) {
                if (!st->failed++)
                        snprintf(st->first_error, sizeof(st->first_error), "%s: %s",
                                 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
                return;
        }
        msg->partition = m->partition;
        msg->offset = m->offset;
}

static int remaining(int64_t deadline)
{
        int64_t left = deadline - nc_time_now_ms();

        return left > 0 ? (int)left : 1;
}

/* Commits, retrying retriable errors; aborts when the error says so.  Returns 0 on commit. */
static int txn_finish(rd_kafka_t *rk, int64_t deadline, char *errstr, size_t errstr_size)
{
        rd_kafka_error_t *err;

        for (;;) {
                err = rd_kafka_commit_transaction(rk, remaining(deadline));
                if (!err)
                        return 0;
                if (rd_kafka_error_is_retriable(err) && nc_time_now_ms() < deadline) {
                        rd_kafka_error_destroy(err);
                        continue;
                }
                nc_err(errstr, errstr_size, "commit failed: %s", rd_kafka_error_string(err));
                if (rd_kafka_error_txn_requires_abort(err)) {
                        rd_kafka_error_t *aerr = rd_kafka_abort_transaction(rk, 5000);

                        if (aerr) {
                                log_warnx("abort of the failed transaction: %s",
                                          rd_kafka_error_string(aerr));
                                rd_kafka_error_destroy(aerr);
                        }
                }
                /* A fatal or timed-out commit leaves the transaction open: the broker aborts it
                 * when transaction.timeout.ms (= our timeout) expires; read_committed readers
                 * never see its messages. */
                rd_kafka_error_destroy(err);
                return -1;
        }
}

static rd_kafka_headers_t *make_headers(const nc_kafka_msg_t *m)
{
        rd_kafka_headers_t *h;

        if (m->headers) {
                /* A replay: the original headers minus the DLQ's own annotations. */
                h = rd_kafka_headers_copy(m->headers);
                rd_kafka_header_remove(h, "noticecast-dlq-reason");
                rd_kafka_header_remove(h, "noticecast-dlq-stage");
                rd_kafka_header_remove(h, "noticecast-dlq-time");
                rd_kafka_header_remove(h, "noticecast-dlq-replay-topic");
                rd_kafka_header_remove(h, "noticecast-dlq-partner");
                rd_kafka_header_remove(h, "noticecast-dlq-source-topic");
                rd_kafka_header_remove(h, "noticecast-dlq-source-partition");
                rd_kafka_header_remove(h, "noticecast-dlq-source-offset");
                rd_kafka_header_remove(h, "noticecast-dlq-key");
                rd_kafka_header_remove(h, "noticecast-dlq-reference");
                rd_kafka_header_remove(h, "noticecast-dlq-size");
                return h;
        }
        h = rd_kafka_headers_new(3);

        rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
        rd_kafka_header_add(h, "noticecast-schema", -1, NC_NOTICE_SCHEMA, -1);
        if (m->event)
                rd_kafka_header_add(h, "noticecast-event", -1, m->event, -1);
        return h;
}

/* A transactional producer being made ready in a thread of its own, so that connecting,
 * initialising transactions and learning the partition leaders overlap the caller's work
 * (validating a batch). */
struct nc_kafka_txn {
        const nc_config_t *cfg;
        rd_kafka_t *rk;
        struct dr_state st;
        int64_t deadline;
        pthread_t thread;
        int started;
        volatile int abandon; /* set by free(): stop retrying */
        int rc;
        char err[512];
        char **topics;
        size_t ntopics;
};

static void *txn_prepare_main(void *arg)
{
        nc_kafka_txn_t *t = arg;
        rd_kafka_error_t *err = NULL;
        size_t i;

        /* In slices, so that an abandoned preparation (invalid input) ends quickly even when
         * the brokers are down; a timed-out init may be called again to resume. */
        while (!t->abandon) {
                int left = remaining(t->deadline), slice = left < 500 ? left : 500;

                if (err)
                        rd_kafka_error_destroy(err);
                if (!(err = rd_kafka_init_transactions(t->rk, slice)))
                        break;
                if (!rd_kafka_error_is_retriable(err) || nc_time_now_ms() >= t->deadline)
                        break;
        }
        if (err || t->abandon) {
                nc_err(t->err, sizeof(t->err), "cannot start a transaction (broker %s): %s",
                       nc_config_kafka_get(t->cfg, "bootstrap.servers"),
                       err ? rd_kafka_error_string(err) : "abandoned");
                if (err)
                        rd_kafka_error_destroy(err);
                t->rc = -1;
                return NULL;
        }
        log_debug("transactions initialised");
        /* Learn the partition leaders first: messages queued before that wait on librdkafka's
         * unassigned queue and are then drained partition by partition, which made a
         * 100,000-message batch take three times longer to flush. */
        for (i = 0; i < t->ntopics && !t->abandon; i++) {
                const struct rd_kafka_metadata *md;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(t->rk, t->topics[i], NULL);

                if (rd_kafka_metadata(t->rk, 0, rkt, &md, remaining(t->deadline)) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR)
                        rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
        }
        t->rc = 0;
        return NULL;
}

nc_kafka_txn_t *nc_kafka_txn_prepare(const nc_config_t *cfg, const char *const *topics,
                                     size_t ntopics, int timeout_ms, char *errstr,
                                     size_t errstr_size)
{
        nc_kafka_txn_t *t;
        rd_kafka_conf_t *conf;
        char kerr[512], tid[64], tmo[32];
        size_t i;

        if (!(conf = nc_kafka_conf_new(cfg, errstr, errstr_size)))
                return NULL;
        /* A fresh transactional.id per invocation: two admins publishing at once must not
         * fence each other.  An operator may still pin one with -X transactional.id=... */
        if (!nc_config_kafka_get(cfg, "transactional.id")) {
                char uuid[NC_UUID_STRLEN];

                if (nc_uuid_v7(nc_time_now_ms(), uuid) != 0) {
                        rd_kafka_conf_destroy(conf);
                        nc_err(errstr, errstr_size, "cannot generate transactional.id");
                        return NULL;
                }
                snprintf(tid, sizeof(tid), "noticecast-cli-%s", uuid);
                rd_kafka_conf_set(conf, "transactional.id", tid, NULL, 0);
        }
        snprintf(tmo, sizeof(tmo), "%d", timeout_ms < 1000 ? 1000 : timeout_ms);
        if (rd_kafka_conf_set(conf, "enable.idempotence", "true", kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "acks", "all", kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "transaction.timeout.ms", tmo, kerr, sizeof(kerr)) ||
            rd_kafka_conf_set(conf, "message.timeout.ms", tmo, kerr, sizeof(kerr))) {
                rd_kafka_conf_destroy(conf);
                nc_err(errstr, errstr_size, "kafka: %s", kerr);
                return NULL;
        }
        t = nc_xcalloc(1, sizeof(*t));
        t->cfg = cfg;
        t->deadline = nc_time_now_ms() + timeout_ms;
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_conf_set_opaque(conf, &t->st);
        if (!(t->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(conf);
                free(t);
                nc_err(errstr, errstr_size, "kafka: %s", kerr);
                return NULL;
        }
        conf = NULL; /* now owned by rk */
        t->topics = nc_xcalloc(ntopics ? ntopics : 1, sizeof(*t->topics));
        for (i = 0; i < ntopics; i++)
                t->topics[t->ntopics++] = nc_xstrdup(topics[i]);
        t->started = pthread_create(&t->thread, NULL, txn_prepare_main, t) == 0;
        if (!t->started)
                txn_prepare_main(t);
        return t;
}

void nc_kafka_txn_free(nc_kafka_txn_t *t)
{
        size_t i;

        if (!t)
                return;
        t->abandon = 1;
        if (t->started)
                pthread_join(t->thread, NULL);
        rd_kafka_destroy(t->rk);
        for (i = 0; i < t->ntopics; i++)
                free(t->topics[i]);
        free(t->topics);
        free(t);
}

int nc_kafka_txn_run(nc_kafka_txn_t *t, nc_kafka_msg_t *msgs, size_t n, char *errstr,
                     size_t errstr_size)
{
        int64_t deadline = t->deadline;
        rd_kafka_t *rk = t->rk;
        rd_kafka_error_t *err;
        size_t i;

        if (t->started) {
                pthread_join(t->thread, NULL);
                t->started = 0;
        }
        if (t->rc != 0)
                return nc_err(errstr, errstr_size, "%s", t->err);
        if ((err = rd_kafka_begin_transaction(rk))) {
                nc_err(errstr, errstr_size, "begin transaction: %s", rd_kafka_error_string(err));
                rd_kafka_error_destroy(err);
                return -1;
        }
        for (i = 0; i < n; i++) {
                rd_kafka_headers_t *hdrs = make_headers(&msgs[i]);
                rd_kafka_resp_err_t perr;

                msgs[i].partition = -1;
                msgs[i].offset = -1;
                do {
                        perr = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(msgs[i].topic),
                            RD_KAFKA_V_KEY(msgs[i].key, strlen(msgs[i].key)),
                            RD_KAFKA_V_VALUE(msgs[i].value, msgs[i].value_len),
                            RD_KAFKA_V_MSGFLAGS(msgs[i].give_value ? RD_KAFKA_MSG_F_FREE
                                                                   : RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&msgs[i]), RD_KAFKA_V_END);
                        if (perr == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                rd_kafka_poll(rk, 10); /* let delivery reports drain */
                } while (perr == RD_KAFKA_RESP_ERR__QUEUE_FULL && nc_time_now_ms() < deadline);
                if (!perr && msgs[i].give_value)
                        msgs[i].value = NULL; /* now owned by rk */
                if (perr) {
                        rd_kafka_headers_destroy(hdrs);
                        nc_err(errstr, errstr_size, "produce to %s: %s", msgs[i].topic,
                               rd_kafka_err2str(perr));
                        err = rd_kafka_abort_transaction(rk, remaining(deadline));
                        if (err)
                                rd_kafka_error_destroy(err);
                        return -1;
                }
        }
        log_debug("produced %zu messages, committing", n);
        if (txn_finish(rk, deadline, errstr, errstr_size) != 0)
                return -1;
        log_debug("transaction committed");
        rd_kafka_poll(rk, 0); /* serve the last delivery reports */
        if (t->st.failed)
                /* Cannot happen after a successful commit; checked to honour the contract. */
                return nc_err(errstr, errstr_size, "%zu deliveries failed: %s", t->st.failed,
                              t->st.first_error);
        return 0;
}

int nc_kafka_produce_txn(const nc_config_t *cfg, nc_kafka_msg_t *msgs, size_t n, int timeout_ms,
                         char *errstr, size_t errstr_size)
{
        const char **topics = nc_xcalloc(n ? n : 1, sizeof(*topics));
        nc_kafka_txn_t *t;
        size_t i, j, nt = 0;
        int rc = -1;

        for (i = 0; i < n && nt < 64; i++) {
                for (j = 0; j < nt && strcmp(topics[j], msgs[i].topic); j++)
                        ;
                if (j == nt)
                        topics[nt++] = msgs[i].topic;
        }
        if ((t = nc_kafka_txn_prepare(cfg, topics, nt, timeout_ms, errstr, errstr_size))) {
                rc = nc_kafka_txn_run(t, msgs, n, errstr, errstr_size);
                nc_kafka_txn_free(t);
        }
        free(topics);
        return rc;
}

/* ---- topics ---------------------------------------------------------------------------- */

size_t nc_kafka_topic_specs(const nc_config_t *cfg, nc_kafka_topic_spec_t *specs, size_t max)
{
        size_t n = 0, i;

        for (i = 0; i < cfg->categories.n && n < max; i++, n++) {
                memset(&specs[n], 0, sizeof(specs[n]));
                nc_config_notice_topic(cfg, cfg->categories.v[i], specs[n].name,
                                       sizeof(specs[n].name));
                specs[n].partitions = cfg->partitions;
                specs[n].retention_ms = NOTICE_RETENTION_MS;
        }
        if (n < max) {
                memset(&specs[n], 0, sizeof(specs[n]));
                nc_config_topic(cfg, "subscribers", specs[n].name, sizeof(specs[n].name));
                specs[n].partitions = cfg->partitions;
                specs[n].compact = 1;
                n++;
        }
        if (n < max) {
                memset(&specs[n], 0, sizeof(specs[n]));
                nc_config_topic(cfg, "dlq", specs[n].name, sizeof(specs[n].name));
                specs[n].partitions = cfg->partitions;
                specs[n].retention_ms = -1; /* quarantined input is kept until replayed */
                n++;
        }
        return n;
}

int nc_kafka_create_topics(const nc_config_t *cfg, const nc_kafka_topic_spec_t *topics, size_t n,
                           int timeout_ms, nc_kafka_topic_report_fn *report, void *opaque,
                           char *errstr, size_t errstr_size)
{
        rd_kafka_NewTopic_t **nt = nc_xcalloc(n, sizeof(*nt));
        const rd_kafka_CreateTopics_result_t *res;
        const rd_kafka_topic_result_t **tres;
        rd_kafka_AdminOptions_t *opts;
        rd_kafka_conf_t *conf;
        rd_kafka_event_t *ev = NULL;
        rd_kafka_queue_t *q;
        rd_kafka_t *rk;
        char kerr[512], num[32];
        size_t i, cnt;
        int rc = -1;

        if (!(conf = nc_kafka_conf_new(cfg, errstr, errstr_size))) {
                free(nt);
                return -1;
        }
        if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(conf);
                free(nt);
                return nc_err(errstr, errstr_size, "kafka: %s", kerr);
        }
        for (i = 0; i < n; i++) {
                nt[i] = rd_kafka_NewTopic_new(topics[i].name, topics[i].partitions,
                                              cfg->replication_factor, kerr, sizeof(kerr));
                if (!nt[i]) {
                        nc_err(errstr, errstr_size, "topic %s: %s", topics[i].name, kerr);
                        goto out;
                }
                if (topics[i].compact)
                        rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "compact");
                if (topics[i].retention_ms) {
                        snprintf(num, sizeof(num), "%ld", topics[i].retention_ms);
                        rd_kafka_NewTopic_set_config(nt[i], "retention.ms", num);
                }
                if (cfg->replication_factor >= 3)
                        rd_kafka_NewTopic_set_config(nt[i], "min.insync.replicas", "2");
        }
        q = rd_kafka_queue_new(rk);
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, kerr, sizeof(kerr));
        rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, kerr, sizeof(kerr));
        rd_kafka_CreateTopics(rk, nt, n, opts, q);
        rd_kafka_AdminOptions_destroy(opts);
        ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
        rd_kafka_queue_destroy(q);
        if (!ev) {
                nc_err(errstr, errstr_size, "create topics: no answer from the broker in %d ms",
                       timeout_ms);
                goto out;
        }
        if (rd_kafka_event_error(ev)) {
                nc_err(errstr, errstr_size, "create topics: %s", rd_kafka_event_error_string(ev));
                goto out;
        }
        res = rd_kafka_event_CreateTopics_result(ev);
        tres = rd_kafka_CreateTopics_result_topics(res, &cnt);
        rc = 0;
        for (i = 0; i < cnt; i++) {
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tres[i]);

                if (e == RD_KAFKA_RESP_ERR_NO_ERROR ||
                    e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                        if (report)
                                report(rd_kafka_topic_result_name(tres[i]),
                                       e == RD_KAFKA_RESP_ERR_NO_ERROR, opaque);
                } else if (rc == 0) {
                        nc_err(errstr, errstr_size, "topic %s: %s",
                               rd_kafka_topic_result_name(tres[i]),
                               rd_kafka_topic_result_error_string(tres[i])
                                   ? rd_kafka_topic_result_error_string(tres[i])
                                   : rd_kafka_err2str(e));
                        rc = -1;
                }
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        for (i = 0; i < n; i++)
                if (nt[i])
                        rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
        rd_kafka_destroy(rk);
        return rc;
}

/* ---- reading a whole topic ------------------------------------------------------------- */

int nc_kafka_read_topic(const nc_config_t *cfg, const char *topic, int timeout_ms,
                        nc_kafka_read_fn *fn, void *opaque, char *errstr, size_t errstr_size)
{
        int64_t deadline = nc_time_now_ms() + timeout_ms;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;
        rd_kafka_conf_t *conf;
        rd_kafka_topic_t *rkt;
        rd_kafka_t *rk;
        rd_kafka_resp_err_t err;
        char kerr[512];
        int i, eof = 0, nparts, rc = -1;

        if (!(conf = nc_kafka_conf_new(cfg, errstr, errstr_size)))
                return -1;
        /* librdkafka 2.0 wants a group.id even for assign(); nothing is ever committed. */
        if (!nc_config_kafka_get(cfg, "group.id"))
                rd_kafka_conf_set(conf, "group.id", "noticecast-reader", NULL, 0);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
        if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(conf);
                return nc_err(errstr, errstr_size, "kafka: %s", kerr);
        }
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        err = rd_kafka_metadata(rk, 0, rkt, &md, remaining(deadline));
        rd_kafka_topic_destroy(rkt);
        if (err) {
                nc_err(errstr, errstr_size, "metadata for %s: %s", topic, rd_kafka_err2str(err));
                goto out;
        }
        if (md->topic_cnt != 1 || md->topics[0].err) {
                nc_err(errstr, errstr_size, "topic %s: %s (run `noticecast topics create`)", topic,
                       rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
                                                      : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
                goto out;
        }
        nparts = md->topics[0].partition_cnt;
        parts = rd_kafka_topic_partition_list_new(nparts);
        for (i = 0; i < nparts; i++)
                rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id)
                    ->offset = RD_KAFKA_OFFSET_BEGINNING;
        if ((err = rd_kafka_assign(rk, parts))) {
                nc_err(errstr, errstr_size, "assign %s: %s", topic, rd_kafka_err2str(err));
                goto out;
        }
        /* With read_committed, EOF is reported at the last stable offset: an open transaction
         * of someone else never blocks us. */
        while (eof < nparts) {
                rd_kafka_message_t *m;

                if (nc_time_now_ms() >= deadline) {
                        nc_err(errstr, errstr_size, "reading %s: timed out after %d ms", topic,
                               timeout_ms);
                        goto out_unassign;
                }
                if (!(m = rd_kafka_consumer_poll(rk, 100)))
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        eof++;
                } else if (m->err) {
                        nc_err(errstr, errstr_size, "reading %s: %s", topic,
                               rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        goto out_unassign;
                } else if (fn(m, opaque) != 0) {
                        rd_kafka_message_destroy(m);
                        rc = 0;
                        goto out_unassign;
                }
                rd_kafka_message_destroy(m);
        }
        rc = 0;
out_unassign:
        rd_kafka_assign(rk, NULL);
out:
        if (parts)
                rd_kafka_topic_partition_list_destroy(parts);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return rc;
}

int nc_kafka_wait_topics(rd_kafka_t *rk, const char *const *names, size_t n, int timeout_ms)
{
        int64_t deadline = nc_time_now_ms() + timeout_ms;
        size_t i = 0;

        while (i < n) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, names[i], NULL);
                int ok = rd_kafka_metadata(rk, 0, rkt, &md, 2000) == 0 && md->topic_cnt == 1 &&
                         !md->topics[0].err && md->topics[0].partition_cnt > 0;

                if (md)
                        rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
                if (ok) {
                        i++;
                        continue;
                }
                if (nc_time_now_ms() >= deadline)
                        return -1;
                usleep(100 * 1000);
        }
        return 0;
}

int nc_kafka_consumer_close_bounded(rd_kafka_t *rk, int timeout_ms)
{
        int64_t deadline = nc_time_now_ms() + timeout_ms;
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_error_t *e = rd_kafka_consumer_close_queue(rk, q);
        int closed;

        if (e) {
                log_warnx("consumer close: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        } else {
                while (!rd_kafka_consumer_closed(rk) && nc_time_now_ms() < deadline) {
                        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);

                        if (!ev)
                                continue;
                        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                                rd_kafka_assign(rk, NULL);
                        rd_kafka_event_destroy(ev);
                }
        }
        closed = rd_kafka_consumer_closed(rk);
        rd_kafka_queue_destroy(q);
        return closed ? 0 : -1;
}
