/* noticecast-mailer — email digests and urgent alerts for subscribers, in their language. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mailer.h"
#include "nc_daemon.h"
#include "ml_digest.h"
#include "nc_httpd.h"
#include "nc_kafka.h"
#include "ml_mail.h"
#include "nc_time.h"
#include "nc_topics.h"
#include "nc_util.h"
#include "web.h"

static const char usage[] =
    "usage: noticecast-mailer [-C FILE] [-X key=value]... [-b BROKERS] [-v|-q] [-n]\n"
    "       noticecast-mailer [-C FILE] --preview EMAIL\n"
    "       noticecast-mailer -h | -V\n"
    "\n"
    "Sends notices to subscribers by email: at once for 'immediate' subscribers and for\n"
    "urgent notices, as daily or weekly digests at each subscriber's local send time.\n"
    "\n"
    "  -C FILE          configuration file (default: $NOTICECAST_CONFIG, else\n"
    "                   " NC_SYSCONFDIR "/noticecast/noticecast.conf)\n"
    "  -X key=value     librdkafka property, overrides [kafka]\n"
    "  -b BROKERS       bootstrap servers\n"
    "  -n               check the configuration and the templates, and exit\n"
    "  --preview EMAIL  print, as an .eml, the digest EMAIL would get now; send nothing\n"
    "  --clock-offset S (tests) plan as if the time were now + S seconds\n"
    "  -v, -q           more / less logging\n"
    "  -h, -V           help, versions\n"
    "\n"
    "Signals: TERM/INT stop gracefully, HUP re-reads the templates.\n"
    "Exit: 0, 64 usage, 69 Kafka, 78 config.\n";

/* main()'s state: the daemon's, and what only the skeleton's callbacks use. */
typedef struct ml_main {
        ml_t m;
        const char *preview_email; /* --preview */
        int64_t deadline;          /* end of the graceful stop */
} ml_main_t;

static int load_secrets(ml_t *m, nc_daemon_t *d, char *err, size_t size)
{
        char *key, why[512];
        size_t len;

        if (nc_daemon_load_config(d, &m->cfg, err, size) != 0 ||
            nc_config_check_mailer(&m->cfg, err, size) != 0)
                return -1;
        ml_domain_limits_free(&m->domains);
        if (ml_domain_limits_parse(m->cfg.smtp.domain_limits, m->cfg.smtp.domain_limit_default,
                                   m->cfg.smtp.domain_backoff_ms, m->cfg.smtp.domain_backoff_max_ms,
                                   &m->domains, why, sizeof(why)) != 0)
                return nc_err(err, size, "%s: %s", m->cfg.path ? m->cfg.path : "configuration",
                              why);
        if (!m->cfg.mailer.unsubscribe_secret_file)
                return nc_err(err, size,
                              "%s: [mailer] unsubscribe_secret_file is required "
                              "(a file with a long random secret)",
                              m->cfg.path ? m->cfg.path : "configuration");
        if (!(key = nc_secret_file_read(m->cfg.mailer.unsubscribe_secret_file, &len, err, size)))
                return -1;
        nc_str_trim(key);
        len = strlen(key);
        if (len < 16) {
                free(key);
                return nc_err(err, size, "%s: the unsubscribe secret is shorter than 16 bytes",
                              m->cfg.mailer.unsubscribe_secret_file);
        }
        m->unsub_key_len = len < sizeof(m->unsub_key) ? len : sizeof(m->unsub_key);
        memcpy(m->unsub_key, key, m->unsub_key_len);
        /* The same secret, keys of their own purpose: `noticecast inbound` derives them alike
         * to check the bounces that come back. */
        nc_verp_derive(m->unsub_key, m->unsub_key_len, &m->verp_keys);
        memset(key, 0, len);
        free(key);
        /* The workers read the SMTP password; check it here so a bad file is exit 78. */
        if (m->cfg.smtp.password_file &&
            nc_secret_file_check(m->cfg.smtp.password_file, err, size) != 0)
                return -1;
        nc_topics_name(&m->cfg, NC_TOPIC_MAILER_JOBS, m->topic_jobs, sizeof(m->topic_jobs));
        nc_topics_name(&m->cfg, NC_TOPIC_MAILER_PLAN, m->topic_plan, sizeof(m->topic_plan));
        nc_topics_name(&m->cfg, NC_TOPIC_DELIVERIES, m->topic_events, sizeof(m->topic_events));
        nc_topics_name(&m->cfg, NC_TOPIC_DLQ, m->topic_dlq, sizeof(m->topic_dlq));
        nc_topics_name(&m->cfg, NC_TOPIC_SUBSCRIBERS, m->topic_subs, sizeof(m->topic_subs));
        snprintf(m->store.subs_topic, sizeof(m->store.subs_topic), "%s", m->topic_subs);
        return 0;
}

/* `noticecast topics create` makes them: we only check (no CreateTopics right needed). */
static int topics_step(void *arg, char *err, size_t size)
{
        ml_t *m = arg;

        return nc_kafka_topics_require(&m->cfg, NC_TOPICS_MAILER, m->cfg.producer_timeout_ms, err,
                                       size);
}

/* --preview: the digest this subscriber would get now, as an .eml on stdout. */
static int preview(ml_t *m, const char *email)
{
        int64_t deadline = nc_time_now_ms() + m->cfg.producer_timeout_ms, now = ml_now(m);
        char id[300], err[1024], token[512];
        const ml_sub_t *s;
        ml_templates_t *tpl;
        ml_unit_t u = {0};
        json_t *ids, *notices;
        size_t i, len;
        char *msg;

        if (ml_store_start(m, err, sizeof(err)) != 0) {
                fprintf(stderr, "noticecast-mailer: %s\n", err);
                return NC_EX_UNAVAILABLE;
        }
        while (!m->store.caught_up && nc_time_now_ms() < deadline)
                ml_store_poll(m, 100);
        if (!m->store.caught_up) {
                fprintf(stderr, "noticecast-mailer: could not read the topics in time\n");
                return NC_EX_UNAVAILABLE;
        }
        snprintf(id, sizeof(id), "%s", email);
        nc_str_lower(id);
        if (!(s = ml_store_sub(m, id))) {
                fprintf(stderr, "noticecast-mailer: %s is not a subscriber\n", email);
                return NC_EX_DATAERR;
        }
        ids = ml_digest_notices(m, s, now - (s->freq == ML_FREQ_WEEKLY ? 7 : 1) * 86400000LL, now);
        notices = json_array();
        for (i = 0; i < json_array_size(ids); i++) {
                const ml_notice_t *n =
                    ml_store_latest(m, json_string_value(json_array_get(ids, i)));

                if (n)
                        json_array_append(notices, n->data);
        }
        json_decref(ids);
        if (!json_array_size(notices)) {
                json_decref(notices);
                fprintf(stderr,
                        "noticecast-mailer: no notice for %s in the current window: "
                        "no digest would be sent\n",
                        email);
                return NC_EX_OK;
        }
        if (!(tpl = ml_templates_load(m->cfg.mailer.templates, &m->cfg.languages,
                                      m->cfg.default_language, err, sizeof(err)))) {
                json_decref(notices);
                fprintf(stderr, "noticecast-mailer: %s\n", err);
                return NC_EX_CONFIG;
        }
        u.subscriber = ml_sub_json(m, s);
        u.notices = notices;
        snprintf(u.period, sizeof(u.period), "%s", s->freq == ML_FREQ_WEEKLY ? "weekly" : "daily");
        ml_mail_message_id(s->id, "preview", m->cfg.mailer.message_id_domain, u.message_id,
                           sizeof(u.message_id));
        ml_unsub_token(m, s->id, token, sizeof(token));
        snprintf(u.unsub_url, sizeof(u.unsub_url), "%s?token=%s", m->cfg.mailer.unsubscribe_url,
                 token);
        if (ml_web_links_init(m, err, sizeof(err)) != 0) {
                fprintf(stderr, "noticecast-mailer: %s\n", err);
                json_decref(u.subscriber);
                json_decref(notices);
                ml_templates_free(tpl);
                return NC_EX_CONFIG;
        }
        ml_web_manage_url(s->id, s->gen, u.manage_url, sizeof(u.manage_url));
        ml_web_stop();
        msg = ml_render_message(m, &u, tpl, &len, err, sizeof(err));
        if (msg)
                fwrite(msg, 1, len, stdout);
        else
                fprintf(stderr, "noticecast-mailer: %s\n", err);
        free(msg);
        json_decref(u.subscriber);
        json_decref(notices);
        ml_templates_free(tpl);
        return msg ? NC_EX_OK : NC_EX_SOFTWARE;
}

/* The jobs and plan topics may have just been created (`noticecast topics create`): wait up to 15 s
 * for them to be visible before subscribing; if they are not, warn and go on (the group picks them
 * up later). */
static void wait_topics(ml_t *m)
{
        const char *const names[] = {m->topic_jobs, m->topic_plan};

        if (nc_kafka_wait_topics(m->store.rk, names, 2, 15000) != 0)
                log_warnx("the jobs and plan topics are not visible yet");
}

static void wake_on(ml_t *m, rd_kafka_t *rk)
{
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);

        rd_kafka_queue_io_event_enable(q, m->wake_pipe[1], "k", 1);
        rd_kafka_queue_destroy(q);
}

static int option(void *arg, int val, const char *optarg)
{
        ml_main_t *mm = arg;

        if (val == 'P') {
                mm->preview_email = optarg;
                nc_log_adjust(+1); /* stdout is the message; keep stderr quiet */
        } else {
                mm->m.clock_offset_ms = (int64_t)(atof(optarg) * 1000);
        }
        return 0;
}

static void version(void)
{
        printf("noticecast-mailer %s\nlibrdkafka %s\njansson %s\n", NC_VERSION,
               rd_kafka_version_str(), jansson_version_str());
}

/* The configuration, its secrets and the templates (a broken set is exit 78). */
static int load(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size)
{
        ml_t *m = &((ml_main_t *)arg)->m;
        ml_templates_t *t;
        char err[1024];

        ml_mail_global_init();
        if (load_secrets(m, d, errstr, errstr_size) != 0)
                return -1;
        t = ml_templates_load(m->cfg.mailer.templates, &m->cfg.languages, m->cfg.default_language,
                              err, sizeof(err));
        if (!t)
                return nc_err(errstr, errstr_size, "templates: %s", err);
        ml_templates_free(t);
        return 0;
}

static int oneshot(void *arg, nc_daemon_t *d)
{
        ml_main_t *mm = arg;

        (void)d;
        if (!mm->preview_email)
                return -1;
        mm->m.oneshot = 1;
        return preview(&mm->m, mm->preview_email);
}

static nc_metrics_t *setup(void *arg, nc_daemon_t *d, const char **listen)
{
        ml_t *m = &((ml_main_t *)arg)->m;

        /* Copies of the skeleton's descriptors (it closes them). */
        m->wake_pipe[0] = nc_daemon_wake_read_fd(d);
        m->wake_pipe[1] = nc_daemon_wake_write_fd(d);
        m->metrics = nc_metrics_new();
        m->m_sent = nc_metrics_counter(m->metrics, "noticecast_mail_messages_total",
                                       "Emails by outcome (sent, bounce, failed, skipped).");
        m->m_jobs = nc_metrics_counter(m->metrics, "noticecast_mail_jobs_planned_total",
                                       "Email jobs planned by this instance.");
        m->m_subs = nc_metrics_gauge(m->metrics, "noticecast_mail_subscribers",
                                     "Subscribers in this instance's view.");
        m->m_notices = nc_metrics_gauge(m->metrics, "noticecast_mail_recent_notices",
                                        "Notices of the last eight days in the view.");
        m->m_queue = nc_metrics_gauge(m->metrics, "noticecast_mail_queue",
                                      "Messages waiting for an SMTP session.");
        nc_metrics_inc(m->m_jobs, NULL, 0);
        ml_metrics_init(m);
        /* The planner's transaction calls run on the loop and, with the brokers away, block
         * it for as long as their timeouts: commit 60 s then abort 30 s then the committed
         * offsets 10 s.  A loop stuck longer than that is stuck for another reason. */
        nc_daemon_set_live_bound(d, 120000);
        *listen = m->cfg.mailer.listen;
        return m->metrics;
}

/* The public listener (/unsubscribe), after the admin endpoint: a refused address is a
 * configuration error (78), named as the admin one's is. */
static int listen_public(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size)
{
        ml_t *m = &((ml_main_t *)arg)->m;
        const char *listen = m->cfg.mailer.public_listen, *port;
        char err[1024];

        (void)d;
        if (ml_unsub_listen(m, err, sizeof(err)) == 0)
                return 0;
        port = strrchr(listen, ':');
        return nc_err(errstr, errstr_size,
                      "public http endpoint: cannot listen on port %s ([mailer] public_listen = "
                      "%s): %s",
                      port ? port + 1 : listen, listen, err);
}

/* The HTTP endpoint is up first: /healthz answers (and /readyz says 503) while the brokers
 * are waited for. */
static int start(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size)
{
        ml_t *m = &((ml_main_t *)arg)->m;

        m->httpd = nc_daemon_httpd(d);
        nc_kafka_acl_role(NC_ACL_ROLE_MAILER);
        if (nc_kafka_conn_start(&m->cfg, errstr, errstr_size) != 0 ||
            ml_unsub_start(m, errstr, errstr_size) != 0 ||
            nc_daemon_retry("checking topics", topics_step, m, errstr, errstr_size) != 0 ||
            ml_store_start(m, errstr, errstr_size) != 0)
                return -1;
        wait_topics(m);
        if (ml_planner_start(m, errstr, errstr_size) != 0 ||
            ml_sender_start(m, errstr, errstr_size) != 0 ||
            ml_inbound_start(m, errstr, errstr_size) != 0)
                return -1;
        wake_on(m, m->store.rk);
        wake_on(m, m->planner);
        wake_on(m, m->sender);
        wake_on(m, ml_inbound_consumer(m));
        log_info("started: %d SMTP session%s to %s:%d", m->cfg.smtp.sessions,
                 m->cfg.smtp.sessions == 1 ? "" : "s", m->cfg.smtp.host, m->cfg.smtp.port);
        return 0;
}

/* Ready: the view is complete, planner and sender run, and no consumer lacks an ACL (a
 * denial is named until that consumer gets an assignment again). */
static int ml_ready(const ml_t *m, const char **reason)
{
        const char *denied = m->view_denied[0]      ? m->view_denied
                             : m->planner_denied[0] ? m->planner_denied
                             : m->sender_denied[0]  ? m->sender_denied
                                                    : ml_inbound_denied(m);

        *reason = denied[0]             ? denied
                  : !m->store.caught_up ? "reading the subscribers and notices"
                  : !m->planner         ? "planner not running"
                                        : "sender not running";
        return m->store.caught_up && m->planner && m->sender && !denied[0];
}

static void loop_turn(void *arg, nc_daemon_t *d)
{
        ml_t *m = &((ml_main_t *)arg)->m;
        const char *reason;
        int more, ready;

        /* librdkafka wakes us only when a queue goes from empty to not empty: after a full
         * batch, poll again at once instead of sleeping. */
        more = ml_store_poll(m, 0);
        more |= ml_planner_poll(m);
        more |= ml_sender_poll(m);
        more |= ml_inbound_poll(m);
        ready = ml_ready(m, &reason);
        nc_daemon_health(d, ready, reason, m->cfg.mailer.kafka_grace_ms);
        if (!more)
                nc_daemon_wait(d, m->waiting ? 20 : 200);
}

/* Subscribers and notices are followed live; a reload re-reads the templates of the emails
 * (checked here first: a broken set is not taken) and of the pages (ml_web_reload: the
 * same). */
static void reload(void *arg, nc_daemon_t *d)
{
        ml_t *m = &((ml_main_t *)arg)->m;
        ml_templates_t *t;
        char err[1024];

        (void)d;
        t = ml_templates_load(m->cfg.mailer.templates, &m->cfg.languages, m->cfg.default_language,
                              err, sizeof(err));
        if (!t) {
                log_warnx("reload: templates: %s; keeping the current ones", err);
                return;
        }
        ml_templates_free(t);
        ml_queue_reload_templates(&m->q);
        log_info("reload: templates re-read from %s", m->cfg.mailer.templates);
        ml_web_reload();
}

/* Graceful stop: take no new jobs, start no new SMTP session, let the sessions in progress
 * finish (until shutdown_timeout: then ml_sender_stop ends them) and record their outcomes,
 * then commit.  Jobs not sent (waiting for a retry, not started, or in a session that was
 * ended) are not committed: the next owner of their partition sends them. */
static void drain(void *arg, nc_daemon_t *d)
{
        ml_main_t *mm = arg;

        log_info("stopping");
        mm->deadline = nc_time_now_ms() + mm->m.cfg.mailer.shutdown_timeout_ms;
        ml_sender_quiesce(&mm->m);
        while (ml_sender_busy(&mm->m) && nc_time_now_ms() < mm->deadline) {
                ml_sender_poll(&mm->m);
                nc_daemon_wait(d, 50);
                nc_daemon_heartbeat(d);
        }
}

static void release(void *arg, nc_daemon_t *d)
{
        ml_main_t *mm = arg;
        ml_t *m = &mm->m;

        /* First: the pages of unsubscribes in flight get their answers, then the HTTP thread
         * (which uses the view) stops. */
        ml_unsub_stop(m);
        nc_daemon_http_stop(d);
        m->httpd = NULL;
        ml_sender_stop(m, mm->deadline);
        ml_inbound_stop(m);
        ml_planner_stop(m);
        ml_store_stop(m);
        nc_kafka_conn_stop();
        if (m->metrics)
                nc_metrics_free(m->metrics);
        ml_domain_limits_free(&m->domains);
        nc_config_free(&m->cfg);
}

/* [smtp] domain_limits and domain_limit_default, checked where the file sets them (an error
 * names its line): parsed with the defaults of the other key, and dropped.  The loader names
 * the key itself: the parser's own "[smtp] KEY: " goes. */
static int check_domain(const char *list, const char *def, const char *key, char *err, size_t size)
{
        ml_domain_limits_t l;
        int rc = ml_domain_limits_parse(list, def, 30000, 30000, &l, err, size);
        size_t n = strlen(key);

        ml_domain_limits_free(&l);
        if (rc != 0 && !strncmp(err, key, n))
                memmove(err, err + n, strlen(err + n) + 1);
        return rc;
}

static int check_domain_limits(const char *v, char *err, size_t size)
{
        return check_domain(v, "0 4", "[smtp] domain_limits: ", err, size);
}

static int check_domain_default(const char *v, char *err, size_t size)
{
        return check_domain(NULL, v, "[smtp] domain_limit_default: ", err, size);
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {{"preview", required_argument, NULL, 'P'},
                                                 {"clock-offset", required_argument, NULL, 'O'},
                                                 {0}};
        static const nc_daemon_ops_t ops = {
            .name = "noticecast-mailer",
            .usage = usage,
            .longopts = longopts,
            .option = option,
            .version = version,
            .load = load,
            .oneshot = oneshot,
            .setup = setup,
            .listen_key = "[mailer] listen",
            .listen_more = listen_public,
            .start = start,
            .loop_once = loop_turn,
            .reload = reload,
            .drain = drain,
            .free = release,
        };
        ml_main_t mm = {.m = {.wake_pipe = {-1, -1}, .planned_minute = -1}};

        nc_config_add_check("smtp", "domain_limits", check_domain_limits);
        nc_config_add_check("smtp", "domain_limit_default", check_domain_default);
        return nc_daemon_run(&ops, &mm, argc, argv);
}
