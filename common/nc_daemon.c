#include "nc_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nc_health.h"
#include "nc_kafka.h"
#include "nc_log.h"
#include "nc_sdnotify.h"
#include "nc_time.h"
#include "nc_util.h"

#define OPTS_MAX 16

struct nc_daemon {
        const nc_daemon_ops_t *ops;
        const char *config_path, *brokers;
        nc_strlist_t xprops;
        int wake[2];
        nc_httpd_t *httpd;
        _Atomic int64_t heartbeat_us; /* read by the HTTP thread */
        atomic_int looping;           /* the loop has turned once: liveness counts from then */
        _Atomic int64_t live_bound_ms;
        nc_metric_t *m_broker_up;
        uint64_t watchdog_us; /* 0: no watchdog */
        int64_t watchdog_sent_us;
        int ready;          /* -1 until the first nc_daemon_set_ready */
        int notified_ready; /* READY=1 sent */
        int notify_failed;  /* logged once */
        char reason[256];
};

volatile sig_atomic_t nc_stop_flag, nc_reload_flag;
static int wake_fd = -1;
static nc_daemon_t *current; /* nc_daemon_run's, for nc_daemon_retry's heartbeats */

static void on_signal(int sig)
{
        int saved = errno;

        if (sig == SIGHUP)
                nc_reload_flag = 1;
        else
                nc_stop_flag = 1;
        if (wake_fd >= 0 && write(wake_fd, "s", 1) < 0) {
                /* the loop wakes up at its next timeout anyway */
        }
        errno = saved;
}

void nc_daemon_signals(int fd)
{
        struct sigaction sa;

        wake_fd = fd;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int nc_daemon_config(nc_config_t *cfg, const char *cli_path, const nc_strlist_t *xprops,
                     const char *brokers, char *errstr, size_t errstr_size)
{
        int explicit_path;
        const char *path = nc_config_path(cli_path, &explicit_path);

        if (nc_config_load(cfg, path, explicit_path, errstr, errstr_size) != 0)
                return -1;
        if (nc_config_apply_overrides(cfg, xprops, brokers, errstr, errstr_size) != 0) {
                nc_config_free(cfg);
                return -1;
        }
        return 0;
}

void nc_daemon_log_listen(const char *listen, int port)
{
        const char *colon = strrchr(listen, ':');
        char addr[300], p[16];

        snprintf(p, sizeof(p), "%d", port);
        snprintf(addr, sizeof(addr), "%.*s:%s", colon ? (int)(colon - listen) : 0, listen, p);
        nc_log_kv(NC_LOG_INFO, "http listening", "addr", addr, NULL);
}

/* Sleeps MS, feeding the heartbeat (waiting on purpose, not stuck: alive for /healthz and
 * systemd).  -1 if a stop was asked for. */
static int retry_pause(int ms)
{
        int64_t until = nc_time_now_ms() + ms;

        while (!nc_stop_flag && nc_time_now_ms() < until) {
                struct timespec ts = {0, 50 * 1000 * 1000};

                if (current)
                        nc_daemon_heartbeat(current);
                nanosleep(&ts, NULL);
        }
        return nc_stop_flag ? -1 : 0;
}

/* A step waiting for someone else: /readyz says why; logged when that changes, and again
 * once every NC_DAEMON_AWAIT_LOG_MS while it lasts. */
static void retry_await(const char *what, const char *why, char *said, size_t said_size,
                        int64_t *said_ms)
{
        int64_t now = nc_time_now_ms();

        if (current)
                nc_daemon_set_ready(current, 0, why);
        if (!strcmp(said, why) && now - *said_ms < NC_DAEMON_AWAIT_LOG_MS)
                return;
        log_warnx("%s: %s; checking again every %d s", what, why, NC_DAEMON_AWAIT_MS / 1000);
        snprintf(said, said_size, "%s", why);
        *said_ms = now;
}

int nc_daemon_retry(const char *what, nc_daemon_step_fn step, void *arg, char *errstr,
                    size_t errstr_size)
{
        char said[1024] = "";
        int64_t said_ms = 0;
        int wait_ms = 500, rc;

        for (;;) {
                if ((rc = step(arg, errstr, errstr_size)) == 0) {
                        if (said[0]) {
                                log_info("%s: done", what);
                                if (current)
                                        nc_daemon_set_ready(current, 0, "starting");
                        }
                        return 0;
                }
                if (nc_stop_flag)
                        return -1;
                if (rc > 0) {
                        retry_await(what, errstr, said, sizeof(said), &said_ms);
                        if (retry_pause(NC_DAEMON_AWAIT_MS) != 0)
                                return -1;
                        continue;
                }
                log_warnx("%s: %s; trying again in %d ms", what, errstr, wait_ms);
                if (retry_pause(wait_ms) != 0)
                        return -1;
                wait_ms = wait_ms < 7500 ? wait_ms * 2 : 15000;
        }
}

/* ---- the skeleton ------------------------------------------------------------------------ */

static int64_t mono_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* systemd is told, never relied on: a failure is logged once and the daemon goes on. */
static void notify(nc_daemon_t *d, const char *state)
{
        char err[512];

        if (nc_sdnotify(state, err, sizeof(err)) < 0 && !d->notify_failed) {
                d->notify_failed = 1;
                log_warnx("systemd notification: %s", err);
        }
}

int nc_daemon_load_config(const nc_daemon_t *d, nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        return nc_daemon_config(cfg, d->config_path, &d->xprops, d->brokers, errstr, errstr_size);
}

int nc_daemon_wake_read_fd(const nc_daemon_t *d)
{
        return d->wake[0];
}

int nc_daemon_wake_write_fd(const nc_daemon_t *d)
{
        return d->wake[1];
}

void nc_daemon_wake_drain(nc_daemon_t *d)
{
        char buf[256];

        while (read(d->wake[0], buf, sizeof(buf)) > 0)
                ;
}

void nc_daemon_wait(nc_daemon_t *d, int timeout_ms)
{
        struct pollfd pfd = {.fd = d->wake[0], .events = POLLIN};

        if (poll(&pfd, 1, timeout_ms) > 0)
                nc_daemon_wake_drain(d);
}

nc_httpd_t *nc_daemon_httpd(const nc_daemon_t *d)
{
        return d->httpd;
}

void nc_daemon_http_stop(nc_daemon_t *d)
{
        nc_httpd_stop(d->httpd);
        d->httpd = NULL;
}

void nc_daemon_heartbeat(nc_daemon_t *d)
{
        int64_t now = mono_us();

        atomic_store(&d->heartbeat_us, now);
        if (d->watchdog_us && now - d->watchdog_sent_us >= (int64_t)(d->watchdog_us / 2)) {
                d->watchdog_sent_us = now;
                notify(d, "WATCHDOG=1");
        }
}

int64_t nc_daemon_heartbeat_age_ms(const nc_daemon_t *d)
{
        return (mono_us() - atomic_load(&d->heartbeat_us)) / 1000;
}

void nc_daemon_set_live_bound(nc_daemon_t *d, int64_t bound_ms)
{
        atomic_store(&d->live_bound_ms, bound_ms);
}

/* /healthz, on the HTTP thread: from the heartbeat stamp only, never asking the loop. */
static int live_cb(void *opaque, char *why, size_t size)
{
        const nc_daemon_t *d = opaque;
        int64_t age = atomic_load(&d->looping) ? nc_daemon_heartbeat_age_ms(d) : -1;

        return nc_health_live(age, atomic_load(&d->live_bound_ms), why, size);
}

void nc_daemon_health(nc_daemon_t *d, int progress, const char *reason, int64_t grace_ms)
{
        nc_health_in_t in = {.grace_ms = grace_ms,
                             .progress = progress,
                             .progress_reason = reason,
                             .now_ms = nc_time_now_ms()};
        char why[256];

        in.kafka = nc_kafka_conn_state(&in.kafka_since_ms);
        if (d->m_broker_up)
                nc_metrics_set(d->m_broker_up, NULL, in.kafka == NC_HEALTH_KAFKA_UP ? 1 : 0);
        nc_daemon_set_ready(d, nc_health_ready(&in, why, sizeof(why)) == NC_HEALTH_READY, why);
}

void nc_daemon_set_ready(nc_daemon_t *d, int ready, const char *reason)
{
        char state[300];

        ready = ready != 0;
        if (!reason)
                reason = "";
        /* The loop calls this on every turn: act on changes only. */
        if (ready == d->ready && (ready || !strcmp(reason, d->reason)))
                return;
        d->ready = ready;
        snprintf(d->reason, sizeof(d->reason), "%s", ready ? "" : reason);
        if (d->httpd) {
                nc_httpd_set_ready_reason(d->httpd, ready || !*reason ? NULL : d->reason);
                nc_httpd_set_ready(d->httpd, ready);
        }
        if (ready && !d->notified_ready) {
                d->notified_ready = 1;
                notify(d, "READY=1\nSTATUS=ready");
                return;
        }
        if (ready)
                snprintf(state, sizeof(state), "STATUS=ready");
        else
                snprintf(state, sizeof(state), "STATUS=not ready%s%s", *d->reason ? ": " : "",
                         d->reason);
        notify(d, state);
}

static void do_reload(nc_daemon_t *d, void *arg)
{
        char state[64];

        snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%" PRId64, mono_us());
        notify(d, state);
        d->ops->reload(arg, d);
        /* READY=1 ends the reload for systemd; before the first readiness it would claim a
         * start-up that has not completed (that READY=1 comes with readiness). */
        if (d->notified_ready)
                notify(d, "READY=1");
}

/* The common options, then the daemon's. */
static void longopts_build(struct option *all, const struct option *extra)
{
        static const struct option common[] = {{"help", no_argument, NULL, 'h'},
                                               {"version", no_argument, NULL, 'V'}};
        size_t n = 0, i;

        for (i = 0; i < sizeof(common) / sizeof(common[0]); i++)
                all[n++] = common[i];
        for (i = 0; extra && extra[i].name && n < OPTS_MAX - 1; i++)
                all[n++] = extra[i];
        memset(&all[n], 0, sizeof(all[n]));
}

/* 1 if VAL is one of the daemon's own options. */
static int is_extra(const struct option *extra, int val)
{
        size_t i;

        for (i = 0; extra && extra[i].name; i++)
                if (extra[i].val == val)
                        return 1;
        return 0;
}

/* Parses the command line into D; returns -1 to go on, else the exit status. */
static int parse_args(nc_daemon_t *d, void *arg, int argc, char **argv, int *check_only)
{
        const nc_daemon_ops_t *ops = d->ops;
        struct option longopts[OPTS_MAX];
        int c;

        longopts_build(longopts, ops->longopts);
        while ((c = getopt_long(argc, argv, "C:X:b:vqnhV", longopts, NULL)) != -1) {
                if (nc_config_cmdline_opt(c, optarg, &d->config_path, &d->xprops, &d->brokers))
                        continue;
                switch (c) {
                case 'n':
                        *check_only = 1;
                        continue;
                case 'h':
                        fputs(ops->usage, stdout);
                        return NC_EX_OK;
                case 'V':
                        ops->version();
                        return NC_EX_OK;
                default:
                        if (ops->option && is_extra(ops->longopts, c) &&
                            ops->option(arg, c, optarg) == 0)
                                continue;
                        fputs(ops->usage, stderr);
                        return NC_EX_USAGE;
                }
        }
        if (optind != argc) {
                fputs(ops->usage, stderr);
                return NC_EX_USAGE;
        }
        return -1;
}

/* The HTTP endpoint on LISTEN, its /healthz from the heartbeat.  0, or the exit status. */
static int admin_listen(nc_daemon_t *d, const char *listen, nc_metrics_t *metrics)
{
        const char *port;
        char err[1024];

        if (!(d->httpd = nc_httpd_start(listen, metrics, err, sizeof(err)))) {
                /* Name the port the operator configured (the server's own message may not: it
                 * binds a socket address). */
                port = strrchr(listen, ':');
                log_error("http endpoint: cannot listen on port %s (%s = %s): %s",
                          port ? port + 1 : listen, d->ops->listen_key, listen, err);
                return NC_EX_CONFIG;
        }
        nc_httpd_set_live(d->httpd, live_cb, d);
        nc_daemon_log_listen(listen, nc_httpd_port(d->httpd));
        return 0;
}

/* Wake pipe, signals, watchdog, metrics and the HTTP endpoint(s).  0, or the exit status. */
static int prepare(nc_daemon_t *d, void *arg)
{
        const char *listen = NULL;
        nc_metrics_t *metrics;
        char err[1024];
        uint64_t us;
        int rc;

        if (pipe2(d->wake, O_NONBLOCK | O_CLOEXEC) != 0)
                fatal("pipe");
        nc_daemon_signals(d->wake[1]);
        switch (nc_sdnotify_watchdog_usec(&us, err, sizeof(err))) {
        case 1:
                d->watchdog_us = us;
                break;
        case 0:
                break;
        default:
                log_warnx("systemd watchdog: %s; not sending keep-alives", err);
        }
        metrics = d->ops->setup(arg, d, &listen);
        if (metrics) {
                d->m_broker_up = nc_metrics_gauge(metrics, "noticecast_kafka_broker_up",
                                                  "1 if the Kafka brokers answer (the "
                                                  "connectivity probe, every second), else 0.");
                nc_metrics_set(d->m_broker_up, NULL, 0);
        }
        if (listen && *listen && (rc = admin_listen(d, listen, metrics)) != 0)
                return rc;
        if (d->ops->listen_more && d->ops->listen_more(arg, d, err, sizeof(err)) != 0) {
                log_error("%s", err);
                return NC_EX_CONFIG;
        }
        return 0;
}

/* From the start to the end of the graceful stop.  Returns the exit status. */
static int serve(nc_daemon_t *d, void *arg)
{
        const nc_daemon_ops_t *ops = d->ops;
        char err[1024];
        int rc;

        if ((rc = prepare(d, arg)) != 0)
                return rc;
        if (ops->start(arg, d, err, sizeof(err)) != 0) {
                if (nc_stop_flag) { /* stopped while waiting for the brokers */
                        notify(d, "STOPPING=1");
                        log_info("stopped before start-up completed");
                        return NC_EX_OK;
                }
                log_error("%s", err);
                return NC_EX_UNAVAILABLE;
        }
        while (!nc_stop_flag) {
                if (nc_reload_flag) {
                        nc_reload_flag = 0;
                        do_reload(d, arg);
                }
                ops->loop_once(arg, d);
                nc_daemon_heartbeat(d);
                atomic_store(&d->looping, 1);
        }
        notify(d, "STOPPING=1");
        nc_daemon_set_ready(d, 0, "stopping");
        ops->drain(arg, d);
        return NC_EX_OK;
}

int nc_daemon_run(const nc_daemon_ops_t *ops, void *arg, int argc, char **argv)
{
        nc_daemon_t d = {.ops = ops, .wake = {-1, -1}, .ready = -1};
        int check_only = 0, daemon = 0, rc;
        char err[1024];

        nc_log_init(ops->name, NC_LOG_INFO);
        atomic_store(&d.heartbeat_us, mono_us());
        atomic_store(&d.live_bound_ms, NC_HEALTH_LIVE_MS_DEFAULT);
        current = &d;
        if ((rc = parse_args(&d, arg, argc, argv, &check_only)) >= 0) {
                nc_strlist_clear(&d.xprops);
                current = NULL;
                return rc;
        }
        rc = NC_EX_OK;
        if (ops->load(arg, &d, err, sizeof(err)) != 0) {
                fprintf(stderr, "%s: %s\n", ops->name, err);
                rc = NC_EX_CONFIG;
        } else if (check_only) {
                printf("configuration OK\n");
        } else if (!ops->oneshot || (rc = ops->oneshot(arg, &d)) < 0) {
                daemon = 1;
                rc = serve(&d, arg);
        }
        ops->free(arg, &d);
        nc_daemon_http_stop(&d);
        if (d.wake[0] >= 0) {
                close(d.wake[0]);
                close(d.wake[1]);
        }
        nc_strlist_clear(&d.xprops);
        current = NULL;
        if (daemon && rc == NC_EX_OK)
                log_info("stopped");
        return rc;
}
