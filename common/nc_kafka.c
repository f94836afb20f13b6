#include "nc_kafka.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "nc_notice.h"
#include "nc_time.h"
#include "nc_util.h"
#include "nc_uuid.h"

/* ---- TLS and SASL failures ---------------------------------------------------------------
 * A wrong password, an untrusted CA or a refused client certificate look like an unreachable
 * broker to our callers: librdkafka retries and the request times out.  The last such
 * failure is kept so that the timed-out operation and the "kafka unreachable" line name it.
 * It is taken from librdkafka's log lines too: they come at once from its threads, while an
 * error event waits for a poll that a program waiting on an admin result never makes. */

static struct {
        pthread_mutex_t lock;
        char why[512];
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* What a failure means, by the words of librdkafka's report, first match wins ("SSL alert
 * number": the broker refused our certificate after the handshake, as with TLS 1.3). */
static const struct {
        const char *mark, *cause;
} security_causes[] = {
    {"SASL authentication", "SASL authentication failed (sasl.username, sasl.password[_file])"},
    {"SASL handshake", "SASL handshake failed (sasl.mechanisms)"},
    {"certificate verify failed", "the broker's certificate is not trusted (ssl.ca.location)"},
    {"SSL alert number", "the broker refused the client certificate (ssl.certificate.location, "
                         "ssl.key.location)"},
    {"SSL handshake failed", "TLS handshake failed"},
};

/* The cause of a failed TLS handshake or SASL authentication that ERR or TEXT reports, or
 * NULL if it is none. */
static const char *security_failure(int err, const char *text)
{
        size_t i;

        for (i = 0; i < sizeof(security_causes) / sizeof(security_causes[0]); i++)
                if (strstr(text, security_causes[i].mark))
                        return security_causes[i].cause;
        if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION)
                return "authentication failed";
        if (err == RD_KAFKA_RESP_ERR__SSL)
                return "TLS failed";
        return NULL;
}

/* librdkafka before 2.6.1 computes a SCRAM proof that Kafka 4 rejects as invalid credentials
 * (its nonce check became strict; librdkafka issue 4895). */
static int scram_too_old(const char *text)
{
        return rd_kafka_version() < 0x020601ff && strstr(text, "invalid credentials") &&
               strstr(text, "SCRAM");
}

/* Keeps TEXT if it reports such a failure, less librdkafka's thread prefix and its
 * "(after N ms in state ...)" suffix.  The broker's reasons never hold the password. */
static void security_note(int err, const char *text)
{
        const char *p = text, *end, *cause = security_failure(err, text);
        int n;

        if (!cause)
                return;
        if (!strncmp(p, "[thrd:", 6) && (end = strstr(p, "]: ")))
                p = end + 3;
        end = strstr(p, " (after ");
        n = end ? (int)(end - p) : (int)strlen(p);
        pthread_mutex_lock(&S.lock);
        snprintf(S.why, sizeof(S.why), "%s: %.*s%s", cause, n, p,
                 scram_too_old(text) ? " (if the broker runs Kafka 4: librdkafka before 2.6.1 "
                                       "cannot authenticate with SCRAM there)"
                                     : "");
        pthread_mutex_unlock(&S.lock);
}

/* Copies the kept failure into BUF; returns 0 if there is none. */
static int security_why(char *buf, size_t size, int clear)
{
        int have;

        pthread_mutex_lock(&S.lock);
        have = S.why[0] != '\0';
        snprintf(buf, size, "%s", S.why);
        if (clear)
                S.why[0] = '\0';
        pthread_mutex_unlock(&S.lock);
        return have;
}

/* Appends the kept failure to ERRSTR, the error of an operation that failed; returns -1. */
static int security_explain(char *errstr, size_t errstr_size)
{
        char why[sizeof(S.why)];
        size_t len;

        if (!errstr || !errstr_size || !security_why(why, sizeof(why), 0))
                return -1;
        len = strlen(errstr);
        if (len + 1 < errstr_size)
                snprintf(errstr + len, errstr_size - len, "; %s", why);
        return -1;
}

/* The role of this process, for the hint of an authorization error (nc_kafka_acl_role). */
static nc_acl_role_t acl_role = NC_ACL_ROLE_CLI;

/* ---- broker connectivity ----------------------------------------------------------------
 * One tracker per process: every client reports to it (its error callback and log lines), a
 * probe thread decides.  ALL_BROKERS_DOWN from any client makes the probe run at once and a
 * single failure of it confirm the outage; otherwise two failed probes in a row do.  One
 * successful probe ends it.  Deciding in one place keeps a late error event of a client that
 * was polled rarely from reopening an outage that is over. */

#define PROBE_PERIOD_MS  1000
#define PROBE_TIMEOUT_MS 1000
/* A burst of librdkafka warnings ends when a probe succeeds and none came for this long. */
#define LIB_QUIET_MS 3000

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int started, stop;
        pthread_t thread;
        rd_kafka_t *rk;
        int gate; /* librdkafka's lines are gated (from before the probe's first line) */
        nc_health_kafka_t state;
        int64_t since_ms;   /* when STATE was entered (first evidence of an outage) */
        int suspect;        /* a client reported all brokers down: probe now, believe one */
        int64_t suspect_ms; /* when */
        int failures;       /* probes failed in a row */
        /* librdkafka's warnings: the first of a burst is logged, the rest are counted. */
        int lib_burst;
        int64_t lib_last_ms;
        unsigned lib_dropped;
} T = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .cond = PTHREAD_COND_INITIALIZER,
       .state = NC_HEALTH_KAFKA_UNKNOWN};

/* LEVEL for a librdkafka line at LEVEL: while the tracker runs, of the lines about broker
 * connections (CONN), and of every line while the brokers are unreachable, only the first
 * warning or error of a burst keeps its level (an outage yields dozens, one per client and
 * reconnect); the others go to debug, counted.  Other warnings (configuration) pass. */
static enum nc_log_level lib_gate(enum nc_log_level level, int conn)
{
        int64_t now;

        if (level < NC_LOG_WARN)
                return level;
        now = nc_time_now_ms();
        pthread_mutex_lock(&T.lock);
        if (T.gate && (conn || T.state == NC_HEALTH_KAFKA_DOWN)) {
                T.lib_last_ms = now;
                if (T.lib_burst) {
                        T.lib_dropped++;
                        level = NC_LOG_DEBUG;
                }
                T.lib_burst = 1;
        }
        pthread_mutex_unlock(&T.lock);
        return level;
}

/* librdkafka's facilities for a connection that failed, closed or timed out, and for offset
 * commits that failed: the auto-commit requests queued while the group coordinator was away
 * all fail at once when it is back (200+ lines in 2 s after a 60 s broker restart). */
static int conn_facility(const char *fac)
{
        static const char *const conn[] = {"FAIL",  "REQTMOUT",   "TIMEOUT",
                                           "ERROR", "BROKERFAIL", "COMMITFAIL"};
        size_t i;

        for (i = 0; i < sizeof(conn) / sizeof(conn[0]); i++)
                if (!strcmp(fac, conn[i]))
                        return 1;
        return 0;
}

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
        if (!strcmp(fac, "FAIL"))
                security_note(0, buf);
        l = lib_gate(l, conn_facility(fac));
        nc_log_kv(l, buf, "component", "librdkafka", "facility", fac, "client", rd_kafka_name(rk),
                  NULL);
}

/* Generic client errors (without this callback librdkafka logs them itself, as errors). */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        enum nc_log_level l = NC_LOG_ERROR;
        int conn;

        (void)opaque;
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                char fatal_str[512];

                rd_kafka_fatal_error(rk, fatal_str, sizeof(fatal_str));
                nc_log_kv(NC_LOG_ERROR, fatal_str, "component", "librdkafka", "client",
                          rd_kafka_name(rk), "fatal", "true", NULL);
                return;
        }
        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
                pthread_mutex_lock(&T.lock);
                if (T.started && !T.suspect && T.state != NC_HEALTH_KAFKA_DOWN) {
                        T.suspect = 1;
                        T.suspect_ms = nc_time_now_ms();
                        pthread_cond_signal(&T.cond);
                }
                pthread_mutex_unlock(&T.lock);
        }
        security_note(err, reason);
        /* Connectivity errors pass by themselves (librdkafka retries): the tracker's lines
         * say what matters. */
        conn = err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
               err == RD_KAFKA_RESP_ERR__RESOLVE || err == RD_KAFKA_RESP_ERR__TIMED_OUT;
        if (conn)
                l = NC_LOG_WARN;
        l = lib_gate(l, conn);
        nc_log_kv(l, reason, "component", "librdkafka", "client", rd_kafka_name(rk), "error",
                  rd_kafka_err2name(err), NULL);
}

/* "12.3s" */
static void secs(int64_t ms, char *buf, size_t size)
{
        snprintf(buf, size, "%lld.%llds", (long long)(ms / 1000), (long long)(ms % 1000 / 100));
}

/* One probe's result (STARTED: when it began); logs outside the lock, which log_cb takes. */
static void probe_result(int ok, const char *why, int64_t started)
{
        char outage[32], dropped[16], sec[sizeof(S.why)];
        int64_t now = nc_time_now_ms();
        unsigned n = 0;
        int burst_over;

        /* A TLS or SASL failure says more than the probe's own "timed out". */
        if (security_why(sec, sizeof(sec), ok))
                why = sec;

        pthread_mutex_lock(&T.lock);
        burst_over = ok && T.lib_burst && now - T.lib_last_ms >= LIB_QUIET_MS;
        if (ok) {
                nc_health_kafka_t was = T.state;
                int64_t since = T.since_ms;

                T.failures = 0;
                T.suspect = 0;
                if (was != NC_HEALTH_KAFKA_UP) {
                        T.state = NC_HEALTH_KAFKA_UP;
                        T.since_ms = now;
                }
                /* The outage's lines are counted in its "reconnected" line; those of a burst
                 * without an outage once it is over. */
                if (was == NC_HEALTH_KAFKA_DOWN || burst_over) {
                        n = T.lib_dropped;
                        T.lib_dropped = 0;
                }
                if (burst_over)
                        T.lib_burst = 0;
                pthread_mutex_unlock(&T.lock);
                if (was == NC_HEALTH_KAFKA_DOWN) {
                        secs(now - since, outage, sizeof(outage));
                        snprintf(dropped, sizeof(dropped), "%u", n);
                        nc_log_kv(NC_LOG_INFO, "kafka reconnected", "outage", outage,
                                  "librdkafka_lines_not_logged", dropped, NULL);
                } else if (n) {
                        snprintf(dropped, sizeof(dropped), "%u", n);
                        nc_log_kv(NC_LOG_INFO, "librdkafka warnings ended",
                                  "librdkafka_lines_not_logged", dropped, NULL);
                }
                return;
        }
        T.failures++;
        if (T.state != NC_HEALTH_KAFKA_DOWN && (T.suspect || T.failures >= 2)) {
                T.state = NC_HEALTH_KAFKA_DOWN;
                /* The first evidence: the client's report, or the first failed probe. */
                T.since_ms = T.suspect ? T.suspect_ms
                                       : started - (int64_t)(T.failures - 1) * PROBE_PERIOD_MS;
                T.suspect = 0;
                pthread_mutex_unlock(&T.lock);
                nc_log_kv(NC_LOG_WARN, "kafka unreachable", "error", why, NULL);
                return;
        }
        pthread_mutex_unlock(&T.lock);
}

static void *probe_main(void *arg)
{
        (void)arg;
        pthread_mutex_lock(&T.lock);
        while (!T.stop) {
                const struct rd_kafka_metadata *md = NULL;
                int64_t started = nc_time_now_ms();
                rd_kafka_resp_err_t err;
                struct timespec until;

                pthread_mutex_unlock(&T.lock);
                rd_kafka_poll(T.rk, 0); /* its own errors and logs */
                /* No topic: the cluster's brokers only, from any broker that answers. */
                err = rd_kafka_metadata(T.rk, 0, NULL, &md, PROBE_TIMEOUT_MS);
                if (md)
                        rd_kafka_metadata_destroy(md);
                probe_result(err == RD_KAFKA_RESP_ERR_NO_ERROR, rd_kafka_err2str(err), started);
                pthread_mutex_lock(&T.lock);
                if (T.stop || T.suspect)
                        continue;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += PROBE_PERIOD_MS * 1000000L;
                until.tv_sec += until.tv_nsec / 1000000000L;
                until.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&T.cond, &T.lock, &until);
        }
        pthread_mutex_unlock(&T.lock);
        return NULL;
}

int nc_kafka_conn_start(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        /* Its own reconnection backoff is short (librdkafka's grows to 10 s): the outage's end
         * is seen within about a second of the brokers' return. */
        static const nc_kafka_setting_t set[] = {
            {"reconnect.backoff.ms", "100"}, {"reconnect.backoff.max.ms", "1000"}, {NULL, NULL}};
        rd_kafka_t *rk;

        if (T.started)
                return 0;
        pthread_mutex_lock(&T.lock);
        T.gate = 1;
        pthread_mutex_unlock(&T.lock);
        if (!(rk = nc_kafka_producer_new(
                  cfg, &(nc_kafka_opts_t){.name = "connectivity probe", .set = set}, errstr,
                  errstr_size)))
                return -1;
        pthread_mutex_lock(&T.lock);
        T.rk = rk;
        T.stop = 0;
        T.started = 1;
        T.state = NC_HEALTH_KAFKA_UNKNOWN;
        T.since_ms = nc_time_now_ms();
        pthread_mutex_unlock(&T.lock);
        if (pthread_create(&T.thread, NULL, probe_main, NULL) != 0) {
                pthread_mutex_lock(&T.lock);
                T.started = 0;
                T.gate = 0;
                T.rk = NULL;
                pthread_mutex_unlock(&T.lock);
                rd_kafka_destroy(rk);
                return nc_err(errstr, errstr_size, "kafka: cannot start the connectivity probe");
        }
        return 0;
}

void nc_kafka_conn_stop(void)
{
        pthread_mutex_lock(&T.lock);
        if (!T.started) {
                pthread_mutex_unlock(&T.lock);
                return;
        }
        T.stop = 1;
        pthread_cond_signal(&T.cond);
        pthread_mutex_unlock(&T.lock);
        pthread_join(T.thread, NULL);
        pthread_mutex_lock(&T.lock);
        T.started = 0;
        pthread_mutex_unlock(&T.lock);
        rd_kafka_destroy(T.rk);
        T.rk = NULL;
        pthread_mutex_lock(&T.lock);
        T.gate = 0;
        pthread_mutex_unlock(&T.lock);
}

nc_health_kafka_t nc_kafka_conn_state(int64_t *since_ms)
{
        nc_health_kafka_t s;

        pthread_mutex_lock(&T.lock);
        s = T.state;
        if (since_ms)
                *since_ms = T.since_ms;
        pthread_mutex_unlock(&T.lock);
        return s;
}

int nc_kafka_broker_up(void)
{
        return nc_kafka_conn_state(NULL) == NC_HEALTH_KAFKA_UP;
}

/* Sets KEY=VALUE in CONF; -1 with errstr naming the property (and who asked for it). */
static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, const char *who,
                    char *errstr, size_t errstr_size)
{
        char kerr[512];

        if (rd_kafka_conf_set(conf, key, value, kerr, sizeof(kerr)) == RD_KAFKA_CONF_OK)
                return 0;
        return nc_err(errstr, errstr_size, "kafka: %s: %s=%s: %s", who, key, value, kerr);
}

rd_kafka_conf_t *nc_kafka_conf_new(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char kerr[512];
        size_t i;

        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        /* librdkafka's own "connection refused" chatter would drown our messages. */
        if ((nc_log_get_level() > NC_LOG_DEBUG &&
             conf_set(conf, "log.connection.close", "false", "noticecast", errstr, errstr_size)) ||
            conf_set(conf, "client.id", "noticecast", "noticecast", errstr, errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        for (i = 0; i < cfg->kafka_n; i++) {
                if (rd_kafka_conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].value, kerr,
                                      sizeof(kerr)) != RD_KAFKA_CONF_OK) {
                        rd_kafka_conf_destroy(conf);
                        /* librdkafka's message may quote the value, which may be a secret. */
                        if (nc_config_kafka_shown(&cfg->kafka[i]) != cfg->kafka[i].value)
                                nc_err(errstr, errstr_size, "%s: kafka: %s: value refused",
                                       cfg->kafka[i].origin, cfg->kafka[i].key);
                        else
                                nc_err(errstr, errstr_size, "%s: kafka: %s", cfg->kafka[i].origin,
                                       kerr);
                        return NULL;
                }
        }
        return conf;
}

/* The [kafka]/-X entry that set KEY or its librdkafka alias, or NULL. */
static const nc_kafka_prop_t *operator_prop(const nc_config_t *cfg, const char *key)
{
        static const char *const aliases[][2] = {
            {"linger.ms", "queue.buffering.max.ms"},
            {"compression.type", "compression.codec"},
            {"acks", "request.required.acks"},
        };
        const nc_kafka_prop_t *found = NULL;
        size_t i, j;

        /* The last one wins, as it did in librdkafka. */
        for (i = 0; i < cfg->kafka_n; i++) {
                int match = !strcmp(cfg->kafka[i].key, key);

                for (j = 0; !match && j < sizeof(aliases) / sizeof(aliases[0]); j++)
                        match = (!strcmp(key, aliases[j][0]) &&
                                 !strcmp(cfg->kafka[i].key, aliases[j][1])) ||
                                (!strcmp(key, aliases[j][1]) &&
                                 !strcmp(cfg->kafka[i].key, aliases[j][0]));
                if (match)
                        found = &cfg->kafka[i];
        }
        return found;
}

static int conf_default(rd_kafka_conf_t *conf, const nc_config_t *cfg, const char *key,
                        const char *value, const char *who, char *errstr, size_t errstr_size)
{
        if (operator_prop(cfg, key))
                return 0;
        return conf_set(conf, key, value, who, errstr, errstr_size);
}

void nc_kafka_conf_default(rd_kafka_conf_t *conf, const nc_config_t *cfg, const char *key,
                           const char *value)
{
        char err[600];

        if (conf_default(conf, cfg, key, value, "default", err, sizeof(err)) != 0)
                log_warnx("%s", err);
}

/* A setting the role cannot work without: an operator's different value is refused.  Values
 * are compared as librdkafka reads them back ("all" = "-1", "true" = "1"). */
static int conf_require(rd_kafka_conf_t *conf, const nc_config_t *cfg, const char *key,
                        const char *value, const char *who, char *errstr, size_t errstr_size)
{
        const nc_kafka_prop_t *p = operator_prop(cfg, key);
        char before[256] = "", after[256] = "";
        size_t n = sizeof(before);

        if (p && rd_kafka_conf_get(conf, key, before, &n) != RD_KAFKA_CONF_OK)
                before[0] = '\0';
        if (conf_set(conf, key, value, who, errstr, errstr_size) != 0)
                return -1;
        n = sizeof(after);
        if (p &&
            (rd_kafka_conf_get(conf, key, after, &n) != RD_KAFKA_CONF_OK || strcmp(before, after)))
                return nc_err(errstr, errstr_size, "%s: kafka: %s=%s: the %s needs %s=%s",
                              p->origin, p->key, nc_config_kafka_shown(p), who, key, value);
        return 0;
}

static int conf_list(rd_kafka_conf_t *conf, const nc_config_t *cfg, const nc_kafka_setting_t *l,
                     int yield, const char *who, char *errstr, size_t errstr_size)
{
        for (; l && l->key; l++)
                if ((yield ? conf_default(conf, cfg, l->key, l->value, who, errstr, errstr_size)
                           : conf_set(conf, l->key, l->value, who, errstr, errstr_size)) != 0)
                        return -1;
        return 0;
}

enum role { ROLE_TXN, ROLE_IDEMPOTENT, ROLE_PRODUCER, ROLE_GROUP, ROLE_READER };

/* The settings each role requires, one line each; the per-client ones (ids, intervals,
 * isolation) are added by client_new. */
static const struct role_def {
        const char *name;
        rd_kafka_type_t type;
        nc_kafka_setting_t required[4];
} roles[] = {
    [ROLE_TXN] = {"transactional producer",
                  RD_KAFKA_PRODUCER,
                  {{"enable.idempotence", "true"}, {"acks", "all"}, {NULL, NULL}}},
    [ROLE_IDEMPOTENT] = {"idempotent producer",
                         RD_KAFKA_PRODUCER,
                         {{"enable.idempotence", "true"}, {"acks", "all"}, {NULL, NULL}}},
    [ROLE_PRODUCER] = {"producer", RD_KAFKA_PRODUCER, {{NULL, NULL}}},
    /* Offsets are stored past settled work only (nc_track.h); notices of an aborted
     * transaction must never be delivered. */
    [ROLE_GROUP] = {"group consumer",
                    RD_KAFKA_CONSUMER,
                    {{"enable.auto.offset.store", "false"},
                     {"isolation.level", "read_committed"},
                     {NULL, NULL}}},
    [ROLE_READER] = {"reader", RD_KAFKA_CONSUMER, {{"enable.auto.commit", "false"}, {NULL, NULL}}},
};

static int role_settings(rd_kafka_conf_t *conf, const nc_config_t *cfg, enum role role,
                         const nc_kafka_opts_t *o, const char *who, char *errstr,
                         size_t errstr_size)
{
        char num[32], tid[64], uuid[NC_UUID_STRLEN];
        const nc_kafka_setting_t *s;

        for (s = roles[role].required; s->key; s++)
                if (conf_require(conf, cfg, s->key, s->value, who, errstr, errstr_size) != 0)
                        return -1;
        switch (role) {
        case ROLE_TXN:
                if (o->transactional_id) {
                        if (conf_set(conf, "transactional.id", o->transactional_id, who, errstr,
                                     errstr_size) != 0)
                                return -1;
                } else if (!operator_prop(cfg, "transactional.id")) {
                        /* Fresh per client: two admins publishing at once must not fence each
                         * other.  An operator may still pin one with -X transactional.id=... */
                        if (nc_uuid_v7(nc_time_now_ms(), uuid) != 0)
                                return nc_err(errstr, errstr_size,
                                              "cannot generate transactional.id");
                        snprintf(tid, sizeof(tid), "noticecast-cli-%s", uuid);
                        if (conf_set(conf, "transactional.id", tid, who, errstr, errstr_size))
                                return -1;
                }
                snprintf(num, sizeof(num), "%d", o->transaction_timeout_ms);
                if (o->transaction_timeout_ms > 0 &&
                    conf_set(conf, "transaction.timeout.ms", num, who, errstr, errstr_size) != 0)
                        return -1;
                return 0;
        case ROLE_IDEMPOTENT:
        case ROLE_PRODUCER:
                return 0;
        case ROLE_GROUP:
                snprintf(num, sizeof(num), "%d", o->commit_interval_ms);
                if (!o->group_id)
                        return nc_err(errstr, errstr_size, "kafka: %s: no group.id", who);
                if (conf_set(conf, "group.id", o->group_id, who, errstr, errstr_size) ||
                    conf_set(conf, "enable.auto.commit",
                             o->commit_interval_ms > 0 ? "true" : "false", who, errstr,
                             errstr_size) ||
                    (o->commit_interval_ms > 0 &&
                     conf_set(conf, "auto.commit.interval.ms", num, who, errstr, errstr_size)) ||
                    conf_set(conf, "auto.offset.reset", "earliest", who, errstr, errstr_size))
                        return -1;
                break;
        case ROLE_READER:
                /* librdkafka 2.0 wants a group.id even for assign(); nothing is committed. */
                if (conf_default(conf, cfg, "group.id",
                                 o->group_id ? o->group_id : "noticecast-reader", who, errstr,
                                 errstr_size) ||
                    conf_set(conf, "isolation.level",
                             o->read_uncommitted ? "read_uncommitted" : "read_committed", who,
                             errstr, errstr_size))
                        return -1;
                break;
        }
        if (o->partition_eof &&
            conf_set(conf, "enable.partition.eof", "true", who, errstr, errstr_size) != 0)
                return -1;
        return 0;
}

static rd_kafka_t *client_new(const nc_config_t *cfg, enum role role, const nc_kafka_opts_t *o,
                              char *errstr, size_t errstr_size)
{
        static const nc_kafka_opts_t none;
        const struct role_def *r = &roles[role];
        rd_kafka_conf_t *conf;
        const char *who;
        char kerr[512];
        rd_kafka_t *rk;

        if (!o)
                o = &none;
        who = o->name ? o->name : r->name;
        if (!(conf = nc_kafka_conf_new(cfg, errstr, errstr_size)))
                return NULL;
        if (role_settings(conf, cfg, role, o, who, errstr, errstr_size) != 0 ||
            conf_list(conf, cfg, o->set, 0, who, errstr, errstr_size) != 0 ||
            conf_list(conf, cfg, o->defaults, 1, who, errstr, errstr_size) != 0) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        if (o->dr_msg_cb)
                rd_kafka_conf_set_dr_msg_cb(conf, o->dr_msg_cb);
        if (o->rebalance) {
                rd_kafka_conf_set_rebalance_cb(conf, nc_kafka_rebalance_cb);
                rd_kafka_conf_set_opaque(conf, (void *)o->rebalance);
        } else {
                rd_kafka_conf_set_opaque(conf, o->opaque);
        }
        if (!(rk = rd_kafka_new(r->type, conf, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(conf);
                nc_err(errstr, errstr_size, "kafka: %s: %s", who, kerr);
                return NULL;
        }
        /* conf now owned by rk */
        if (r->type == RD_KAFKA_CONSUMER)
                rd_kafka_poll_set_consumer(rk);
        return rk;
}

rd_kafka_t *nc_kafka_txn_producer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o,
                                      char *errstr, size_t errstr_size)
{
        return client_new(cfg, ROLE_TXN, o, errstr, errstr_size);
}

rd_kafka_t *nc_kafka_idempotent_producer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o,
                                             char *errstr, size_t errstr_size)
{
        return client_new(cfg, ROLE_IDEMPOTENT, o, errstr, errstr_size);
}

rd_kafka_t *nc_kafka_producer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o, char *errstr,
                                  size_t errstr_size)
{
        return client_new(cfg, ROLE_PRODUCER, o, errstr, errstr_size);
}

rd_kafka_t *nc_kafka_group_consumer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o,
                                        char *errstr, size_t errstr_size)
{
        return client_new(cfg, ROLE_GROUP, o, errstr, errstr_size);
}

rd_kafka_t *nc_kafka_reader_new(const nc_config_t *cfg, const nc_kafka_opts_t *o, char *errstr,
                                size_t errstr_size)
{
        return client_new(cfg, ROLE_READER, o, errstr, errstr_size);
}

void nc_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        const nc_kafka_rebalance_t *rb = opaque;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                if (rb->assigning)
                        rb->assigning(rk, parts, rb->opaque);
                rd_kafka_assign(rk, parts);
                if (rb->assigned)
                        rb->assigned(rk, parts, rb->opaque);
                return;
        }
        if (rb->tracks) {
                nc_tracks_store(*rb->tracks, rk); /* settled work is committed with the
                                                     revocation */
                nc_tracks_revoke(*rb->tracks, parts);
        }
        if (rb->revoking)
                rb->revoking(rk, parts, rb->opaque);
        rd_kafka_assign(rk, NULL);
}

int nc_kafka_notice_regex(const nc_config_t *cfg, char *buf, size_t size)
{
        char prefix[512];
        const char *p;
        size_t o = 0;
        int n;

        for (p = cfg->topic_prefix; *p; p++) {
                if (o + 3 > sizeof(prefix))
                        return -1;
                if (strchr(".^$*+?()[]{}|\\", *p))
                        prefix[o++] = '\\';
                prefix[o++] = *p;
        }
        prefix[o] = '\0';
        n = snprintf(buf, size, "^%snotices\\..+", prefix);
        return n < 0 || (size_t)n >= size ? -1 : 0;
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
        char denied_topic[256]; /* the first topic refused for want of an ACL */
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
                if (nc_acl_denied_resource(m->err) == NC_ACL_TOPIC && !st->denied_topic[0])
                        snprintf(st->denied_topic, sizeof(st->denied_topic), "%s",
                                 rd_kafka_topic_name(m->rkt));
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

/* TOPIC: the topic a denial is about, if known.  NC_KAFKA_DENIED with errstr naming what is
 * missing, or -1 with the error as it is. */
static int txn_error(const nc_config_t *cfg, rd_kafka_t *rk, const rd_kafka_error_t *err,
                     const char *what, const char *topic, char *errstr, size_t errstr_size)
{
        rd_kafka_resp_err_t code = rd_kafka_error_code(err);
        char tid[256] = "";
        size_t n = sizeof(tid);
        int res = nc_acl_denied_resource(code);

        if (res == NC_ACL_TXN_ID &&
            rd_kafka_conf_get(rd_kafka_conf(rk), "transactional.id", tid, &n) != RD_KAFKA_CONF_OK)
                tid[0] = '\0';
        if (res >= 0 && nc_kafka_denied(cfg, code, "write", res == NC_ACL_TXN_ID ? tid : topic,
                                        errstr, errstr_size))
                return NC_KAFKA_DENIED;
        nc_err(errstr, errstr_size, "%s: %s", what, rd_kafka_error_string(err));
        return security_explain(errstr, errstr_size); /* a TLS/SASL failure behind it */
}

/* Commits, retrying retriable errors; aborts when the error says so.  Returns 0 on commit. */
static int txn_finish(const nc_config_t *cfg, rd_kafka_t *rk, const struct dr_state *st,
                      int64_t deadline, char *errstr, size_t errstr_size)
{
        rd_kafka_error_t *err;
        int rc;

        for (;;) {
                err = rd_kafka_commit_transaction(rk, remaining(deadline));
                if (!err)
                        return 0;
                if (rd_kafka_error_is_retriable(err) && nc_time_now_ms() < deadline) {
                        rd_kafka_error_destroy(err);
                        continue;
                }
                rc = txn_error(cfg, rk, err, "commit failed",
                               st->denied_topic[0] ? st->denied_topic : NULL, errstr, errstr_size);
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
                return rc;
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
                char what[300];

                snprintf(what, sizeof(what), "cannot start a transaction (broker %s)",
                         nc_config_kafka_get(t->cfg, "bootstrap.servers"));
                if (err) {
                        t->rc = txn_error(t->cfg, t->rk, err, what, NULL, t->err, sizeof(t->err));
                        rd_kafka_error_destroy(err);
                } else {
                        t->rc = nc_err(t->err, sizeof(t->err), "%s: abandoned", what);
                }
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
                    RD_KAFKA_RESP_ERR_NO_ERROR) {
                        /* Not even Describe: fail now rather than when the commit times out. */
                        int denied = md->topic_cnt == 1 &&
                                     nc_kafka_denied(t->cfg, md->topics[0].err, "write",
                                                     t->topics[i], t->err, sizeof(t->err));

                        rd_kafka_metadata_destroy(md);
                        if (denied) {
                                rd_kafka_topic_destroy(rkt);
                                t->rc = NC_KAFKA_DENIED;
                                return NULL;
                        }
                }
                rd_kafka_topic_destroy(rkt);
        }
        t->rc = 0;
        return NULL;
}

nc_kafka_txn_t *nc_kafka_txn_prepare(const nc_config_t *cfg, const char *const *topics,
                                     size_t ntopics, int timeout_ms, char *errstr,
                                     size_t errstr_size)
{
        char tmo[32];
        const nc_kafka_setting_t set[] = {{"message.timeout.ms", tmo}, {NULL, NULL}};
        nc_kafka_opts_t o = {
            .transaction_timeout_ms = timeout_ms < 1000 ? 1000 : timeout_ms,
            .set = set,
            .dr_msg_cb = dr_cb,
        };
        nc_kafka_txn_t *t = nc_xcalloc(1, sizeof(*t));
        size_t i;

        snprintf(tmo, sizeof(tmo), "%d", o.transaction_timeout_ms);
        o.opaque = &t->st;
        t->cfg = cfg;
        t->deadline = nc_time_now_ms() + timeout_ms;
        if (!(t->rk = nc_kafka_txn_producer_new(cfg, &o, errstr, errstr_size))) {
                free(t);
                return NULL;
        }
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
        int rc;

        if (t->started) {
                pthread_join(t->thread, NULL);
                t->started = 0;
        }
        if (t->rc != 0) {
                nc_err(errstr, errstr_size, "%s", t->err);
                return t->rc;
        }
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
        if ((rc = txn_finish(t->cfg, rk, &t->st, deadline, errstr, errstr_size)) != 0)
                return rc;
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

/* CreateTopics answers once the controller made the topic; each partition's leader learns of
 * it a moment later, and a client that reads the partition at once gets "Unknown topic or
 * partition" (seen on a three-broker cluster: `subscribers import` right after `topics
 * create`, exit 69).  So a created topic is ready when each of its partitions answers a
 * ListOffsets at its leader; waited for until DEADLINE_MS.  A topic the principal may not
 * Describe is not waited for (the programs that use it will say what is missing). */
static int topic_ready(rd_kafka_t *rk, const nc_topic_spec_t *t, int64_t deadline_ms, char *errstr,
                       size_t errstr_size)
{
        for (int p = 0; p < t->partitions; p++) {
                rd_kafka_resp_err_t e;
                int64_t lo, hi;

                while ((e = rd_kafka_query_watermark_offsets(rk, t->name, p, &lo, &hi, 2000)) !=
                       RD_KAFKA_RESP_ERR_NO_ERROR) {
                        if (e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
                                return 0;
                        if (nc_time_now_ms() >= deadline_ms)
                                return nc_err(errstr, errstr_size,
                                              "topic %s [%d] created, but its leader does not "
                                              "serve it yet: %s",
                                              t->name, p, rd_kafka_err2str(e));
                        usleep(200 * 1000);
                }
        }
        return 0;
}

int nc_kafka_create_topics(const nc_config_t *cfg, const nc_topic_spec_t *topics, size_t n,
                           int timeout_ms, nc_kafka_topic_report_fn *report, void *opaque,
                           char *errstr, size_t errstr_size)
{
        int64_t deadline = nc_time_now_ms() + timeout_ms;
        rd_kafka_NewTopic_t **nt = nc_xcalloc(n, sizeof(*nt));
        const rd_kafka_CreateTopics_result_t *res;
        const rd_kafka_topic_result_t **tres;
        rd_kafka_AdminOptions_t *opts;
        rd_kafka_event_t *ev = NULL;
        rd_kafka_queue_t *q;
        rd_kafka_t *rk;
        char kerr[512], num[32];
        size_t i, cnt;
        int rc = -1;

        if (!(rk = nc_kafka_producer_new(cfg, &(nc_kafka_opts_t){.name = "admin client"}, errstr,
                                         errstr_size))) {
                free(nt);
                return -1;
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
                        snprintf(num, sizeof(num), "%lld", (long long)topics[i].retention_ms);
                        rd_kafka_NewTopic_set_config(nt[i], "retention.ms", num);
                }
                if (topics[i].delete_retention_ms) {
                        snprintf(num, sizeof(num), "%lld",
                                 (long long)topics[i].delete_retention_ms);
                        rd_kafka_NewTopic_set_config(nt[i], "delete.retention.ms", num);
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
                security_explain(errstr, errstr_size);
                goto out;
        }
        if (rd_kafka_event_error(ev)) {
                nc_err(errstr, errstr_size, "create topics: %s", rd_kafka_event_error_string(ev));
                security_explain(errstr, errstr_size);
                goto out;
        }
        res = rd_kafka_event_CreateTopics_result(ev);
        tres = rd_kafka_CreateTopics_result_topics(res, &cnt);
        rc = 0;
        for (i = 0; i < cnt; i++) {
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tres[i]);

                if (e == RD_KAFKA_RESP_ERR_NO_ERROR && rc == 0) {
                        const char *name = rd_kafka_topic_result_name(tres[i]);

                        for (size_t j = 0; j < n; j++)
                                if (!strcmp(topics[j].name, name) &&
                                    topic_ready(rk, &topics[j], deadline, errstr, errstr_size))
                                        rc = -1;
                }
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR ||
                    e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                        if (report)
                                report(rd_kafka_topic_result_name(tres[i]),
                                       e == RD_KAFKA_RESP_ERR_NO_ERROR, opaque);
                } else if (rc == 0 && nc_acl_denied_resource(e) >= 0) {
                        /* topics create is the admin role's (nc_acl.h) */
                        nc_acl_role_t self = acl_role;

                        acl_role = NC_ACL_ROLE_ADMIN;
                        nc_kafka_denied(cfg, e, "create", rd_kafka_topic_result_name(tres[i]),
                                        errstr, errstr_size);
                        acl_role = self;
                        rc = NC_KAFKA_DENIED;
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

/* 1 if MD lists topic NAME (a topic just created may have no leader yet: it exists). */
static int md_has(const struct rd_kafka_metadata *md, const char *name)
{
        for (int i = 0; i < md->topic_cnt; i++)
                if (!strcmp(md->topics[i].topic, name) &&
                    md->topics[i].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                        return 1;
        return 0;
}

int nc_kafka_topics_require(const nc_config_t *cfg, unsigned kinds, int timeout_ms, char *errstr,
                            size_t errstr_size)
{
        size_t n = nc_topics_specs(cfg, kinds, NULL, 0), i, missing = 0, len = 0;
        nc_topic_spec_t *specs = nc_xcalloc(n ? n : 1, sizeof(*specs));
        const struct rd_kafka_metadata *md = NULL;
        char list[4096] = "";
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk;
        int rc = -1;

        n = nc_topics_specs(cfg, kinds, specs, n);
        if (!(rk = nc_kafka_producer_new(cfg, &(nc_kafka_opts_t){.name = "topics check"}, errstr,
                                         errstr_size))) {
                free(specs);
                return -1;
        }
        /* All topics: naming one may make a broker with auto.create.topics.enable create it. */
        if ((err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms))) {
                nc_err(errstr, errstr_size, "topic metadata: %s", rd_kafka_err2str(err));
                goto out;
        }
        for (i = 0; i < n; i++) {
                if (md_has(md, specs[i].name))
                        continue;
                if (len < sizeof(list))
                        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
                                                missing ? ", " : "", specs[i].name);
                missing++;
        }
        rc = missing ? 1 : 0;
        if (missing)
                snprintf(errstr, errstr_size,
                         "%zu topic%s missing (run `noticecast topics create` with this "
                         "configuration): %s",
                         missing, missing == 1 ? "" : "s", list);
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        free(specs);
        return rc;
}

/* ---- reading a whole topic ------------------------------------------------------------- */

int nc_kafka_read_topic(const nc_config_t *cfg, const char *topic, int timeout_ms,
                        nc_kafka_read_fn *fn, void *opaque, char *errstr, size_t errstr_size)
{
        int64_t deadline = nc_time_now_ms() + timeout_ms;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;
        rd_kafka_topic_t *rkt;
        rd_kafka_t *rk;
        rd_kafka_resp_err_t err;
        int i, eof = 0, nparts, rc = -1;

        if (!(rk = nc_kafka_reader_new(cfg, &(nc_kafka_opts_t){.partition_eof = 1}, errstr,
                                       errstr_size)))
                return -1;
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        err = rd_kafka_metadata(rk, 0, rkt, &md, remaining(deadline));
        rd_kafka_topic_destroy(rkt);
        if (err) {
                nc_err(errstr, errstr_size, "metadata for %s: %s", topic, rd_kafka_err2str(err));
                security_explain(errstr, errstr_size);
                goto out;
        }
        if (md->topic_cnt == 1 &&
            nc_kafka_denied(cfg, md->topics[0].err, "read", topic, errstr, errstr_size)) {
                rc = NC_KAFKA_DENIED;
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
                        security_explain(errstr, errstr_size);
                        goto out_unassign;
                }
                if (!(m = rd_kafka_consumer_poll(rk, 100)))
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        eof++;
                } else if (m->err) {
                        if (nc_kafka_denied_msg(cfg, rk, m, errstr, errstr_size))
                                rc = NC_KAFKA_DENIED;
                        else
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

/* ---- authorization --------------------------------------------------------------------- */

void nc_kafka_acl_role(nc_acl_role_t role)
{
        acl_role = role;
}

int nc_kafka_denied(const nc_config_t *cfg, rd_kafka_resp_err_t err, const char *op,
                    const char *name, char *buf, size_t size)
{
        const char *user = nc_config_kafka_get(cfg, "sasl.username");
        char principal[300];

        snprintf(principal, sizeof(principal), "User:%s", user ? user : "NAME");
        return nc_acl_denied_message(err, op, name, acl_role, principal, buf, size);
}

int nc_kafka_denied_msg(const nc_config_t *cfg, rd_kafka_t *rk, const rd_kafka_message_t *m,
                        char *buf, size_t size)
{
        char group[256] = "";
        size_t n = sizeof(group);

        if (m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED) {
                if (rd_kafka_conf_get(rd_kafka_conf(rk), "group.id", group, &n) != RD_KAFKA_CONF_OK)
                        group[0] = '\0';
                return nc_kafka_denied(cfg, m->err, "read", group, buf, size);
        }
        return nc_kafka_denied(cfg, m->err, "read", m->rkt ? rd_kafka_topic_name(m->rkt) : NULL,
                               buf, size);
}

int nc_kafka_consumer_denied(const nc_config_t *cfg, rd_kafka_t *rk, const rd_kafka_message_t *m,
                             const char *who, char *denied, size_t size)
{
        char msg[512];

        if (!nc_kafka_denied_msg(cfg, rk, m, msg, sizeof(msg)))
                return 0;
        if (strcmp(msg, denied)) {
                log_error("%s: %s", who, msg);
                snprintf(denied, size, "%s", msg);
        }
        return 1;
}

void nc_kafka_denied_clear(char *denied)
{
        denied[0] = '\0';
}

/* The bindings librdkafka can express, in BIND; IX[j] is the index in ACLS of BIND[j]. */
static size_t acl_bindings(const nc_kafka_acl_t *acls, size_t n, nc_kafka_acl_result_t *res,
                           rd_kafka_AclBinding_t **bind, size_t *ix)
{
        char kerr[256];
        size_t i, nb = 0;

        for (i = 0; i < n; i++) {
                memset(&res[i], 0, sizeof(res[i]));
                bind[nb] =
                    rd_kafka_AclBinding_new(acls[i].resource, acls[i].name, acls[i].pattern,
                                            acls[i].principal, acls[i].host, acls[i].op,
                                            RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, kerr, sizeof(kerr));
                if (!bind[nb]) {
                        snprintf(res[i].error, sizeof(res[i].error), "librdkafka %s: %s",
                                 rd_kafka_version_str(), kerr);
                        res[i].unsupported = 1;
                        continue;
                }
                ix[nb++] = i;
        }
        return nb;
}

static void acl_results(rd_kafka_event_t *ev, const size_t *ix, size_t nb,
                        nc_kafka_acl_result_t *res)
{
        const rd_kafka_acl_result_t **r;
        size_t cnt, j;

        r = rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &cnt);
        for (j = 0; j < cnt && j < nb; j++) {
                const rd_kafka_error_t *e = rd_kafka_acl_result_error(r[j]);
                nc_kafka_acl_result_t *o = &res[ix[j]];

                if (!e)
                        continue;
                o->denied = nc_acl_denied_resource(rd_kafka_error_code(e)) >= 0;
                snprintf(o->error, sizeof(o->error), "%s%s",
                         o->denied ? "not authorized to create ACLs (needs ALTER on the cluster): "
                                   : "",
                         rd_kafka_error_string(e));
        }
}

int nc_kafka_create_acls(const nc_config_t *cfg, const nc_kafka_acl_t *acls, size_t n,
                         nc_kafka_acl_result_t *res, int timeout_ms, char *errstr,
                         size_t errstr_size)
{
        rd_kafka_AclBinding_t **bind = nc_xcalloc(n ? n : 1, sizeof(*bind));
        size_t *ix = nc_xcalloc(n ? n : 1, sizeof(*ix)), nb, j;
        rd_kafka_AdminOptions_t *opts;
        rd_kafka_event_t *ev = NULL;
        rd_kafka_queue_t *q;
        rd_kafka_t *rk = NULL;
        char kerr[256];
        int rc = -1;

        nb = acl_bindings(acls, n, res, bind, ix);
        if (!nb) {
                rc = 0;
                goto out;
        }
        if (!(rk = nc_kafka_producer_new(cfg, &(nc_kafka_opts_t){.name = "admin client"}, errstr,
                                         errstr_size)))
                goto out;
        q = rd_kafka_queue_new(rk);
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATEACLS);
        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, kerr, sizeof(kerr));
        rd_kafka_CreateAcls(rk, bind, nb, opts, q);
        rd_kafka_AdminOptions_destroy(opts);
        ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
        rd_kafka_queue_destroy(q);
        if (!ev) {
                nc_err(errstr, errstr_size, "create ACLs: no answer from the broker in %d ms",
                       timeout_ms);
        } else if (rd_kafka_event_error(ev)) {
                nc_err(errstr, errstr_size, "create ACLs: %s", rd_kafka_event_error_string(ev));
                if (nc_acl_denied_resource(rd_kafka_event_error(ev)) >= 0)
                        rc = NC_KAFKA_DENIED;
        } else {
                acl_results(ev, ix, nb, res);
                rc = 0;
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        for (j = 0; j < nb; j++)
                rd_kafka_AclBinding_destroy(bind[j]);
        free(bind);
        free(ix);
        if (rk)
                rd_kafka_destroy(rk);
        return rc;
}
