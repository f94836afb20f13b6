/* noticecast-webhooks — delivers every notice to partner agencies as signed webhooks.
 *
 * Single-threaded event loop: Kafka consumer + producer + libcurl multi, on epoll.  Signal handlers
 * only set flags (and poke the wake pipe); the loop does the work. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nc_daemon.h"
#include "nc_httpd.h"
#include "nc_time.h"
#include "nc_util.h"
#include "wh.h"

static const char usage[] =
    "usage: noticecast-webhooks [-C FILE] [-X key=value]... [-b BROKERS] [-v|-q] [-n]\n"
    "       noticecast-webhooks -h | -V\n"
    "\n"
    "Delivers every notice on the notice topics to the partners of [partner.<id>] sections\n"
    "as signed webhooks (Standard Webhooks), with retries kept in Kafka.\n"
    "\n"
    "  -C FILE        configuration file (default: $NOTICECAST_CONFIG, else\n"
    "                 " NC_SYSCONFDIR "/noticecast/noticecast.conf)\n"
    "  -X key=value   librdkafka property, overrides [kafka]\n"
    "  -b BROKERS     bootstrap servers\n"
    "  -n             check the configuration (and every partner's secrets) and exit\n"
    "  -v, -q         more / less logging\n"
    "  -h, -V         help, versions\n"
    "\n"
    "Signals: TERM/INT stop gracefully, HUP reloads the partners.\n"
    "Exit status: 0 stopped cleanly, 64 usage, 69 Kafka unavailable, 78 bad config.\n";

/* main()'s state: the daemon's, and what only the skeleton's callbacks use. */
typedef struct wh_main {
        wh_t w;
        nc_daemon_t *d;
        int64_t last_lag; /* last update_lag() */
        int64_t hard;     /* end of the graceful stop, for leaving the group */
} wh_main_t;

/* SIGHUP: parse into a fresh struct; take its partners only if every one of them is valid. */
static void reload(void *arg, nc_daemon_t *d)
{
        wh_t *w = &((wh_main_t *)arg)->w;
        nc_config_t fresh;
        char err[1024];
        nc_partner_t *tmp;
        size_t n;

        if (nc_daemon_load_config(d, &fresh, err, sizeof(err)) != 0) {
                log_warnx("reload: %s; keeping the current configuration", err);
                return;
        }
        if (nc_config_check_webhooks(&fresh, err, sizeof(err)) != 0 ||
            wh_partners_apply(w, &fresh, err, sizeof(err)) != 0) {
                log_warnx("reload: %s; keeping the current configuration", err);
                nc_config_free(&fresh);
                return;
        }
        /* Only the partners (and delivery tunables) change live; Kafka settings, topics and
         * the retry schedule need a restart. */
        tmp = w->cfg.partners;
        n = w->cfg.partners_n;
        w->cfg.partners = fresh.partners;
        w->cfg.partners_n = fresh.partners_n;
        fresh.partners = tmp;
        fresh.partners_n = n;
        w->cfg.webhooks.max_pending = fresh.webhooks.max_pending;
        w->cfg.webhooks.retry_after_max_ms = fresh.webhooks.retry_after_max_ms;
        nc_config_free(&fresh);
        log_info("reload: %zu partner%s", w->cfg.partners_n, w->cfg.partners_n == 1 ? "" : "s");
}

/* Sum of (high watermark - position) over the assigned partitions, from librdkafka's cache:
 * no request to the brokers. */
static void update_lag(wh_t *w)
{
        long long lag = nc_metrics_consumer_lag(w->consumer);

        /* -1: nothing assigned (yet), so nothing to read */
        nc_metrics_set(w->m_lag, NULL, lag < 0 ? 0.0 : (double)lag);
}

/* libcurl tells which sockets to watch for what; epoll watches them. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
        wh_t *w = userp;
        struct epoll_event ev = {0};

        (void)e;
        if (what == CURL_POLL_REMOVE) {
                epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL); /* fails harmlessly if closed */
                curl_multi_assign(w->multi, s, NULL);
                return 0;
        }
        ev.data.fd = s;
        ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
        /* SOCKETP marks a socket already added; a number reused after a close starts afresh. */
        if (!socketp) {
                if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
                        epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev);
                curl_multi_assign(w->multi, s, w);
        } else if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
                epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev);
        }
        return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
        wh_t *w = userp;

        (void)multi;
        w->curl_timer_ms = timeout_ms < 0 ? -1 : nc_time_now_ms() + timeout_ms;
        return 0;
}

/* One turn of the loop: Kafka, timers, then whatever sockets are ready.  libcurl only
 * looks at the connections that have something to do (curl_multi_socket_action), so the
 * cost of a turn does not grow with the number of partners and connections. */
static void loop_once(wh_main_t *wm)
{
        wh_t *w = &wm->w;
        struct epoll_event evs[128];
        int64_t now, timeout;
        int running, n, i;

        wh_kafka_poll(w);
        now = nc_time_now_ms();
        if (w->next_timer_ms && w->next_timer_ms <= now)
                wh_timers(w, now);
        wh_deliver_pump(w);
        if (w->curl_timer_ms >= 0 && w->curl_timer_ms <= nc_time_now_ms()) {
                w->curl_timer_ms = -1;
                curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
                wh_deliver_completed(w);
                wh_deliver_pump(w);
        }

        now = nc_time_now_ms();
        timeout = 200;
        if (w->next_timer_ms) {
                int64_t t = w->next_timer_ms - now;

                timeout = t < 0 ? 0 : t < timeout ? t : timeout;
        }
        if (w->curl_timer_ms >= 0) {
                int64_t t = w->curl_timer_ms - now;

                timeout = t < 0 ? 0 : t < timeout ? t : timeout;
        }
        if (w->prq_due_ms) { /* records to produce again */
                int64_t t = w->prq_due_ms - now;

                timeout = t < 0 ? 0 : t < timeout ? t : timeout;
        }
        if (!w->stopping && !w->consuming_paused && rd_kafka_queue_length(w->cq) > 0)
                timeout = 0;
        n = epoll_wait(w->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), (int)timeout);
        for (i = 0; i < n; i++) {
                int fd = evs[i].data.fd, mask = 0;

                if (fd == w->wake_pipe[0]) {
                        nc_daemon_wake_drain(wm->d);
                        continue;
                }
                if (evs[i].events & EPOLLIN)
                        mask |= CURL_CSELECT_IN;
                if (evs[i].events & EPOLLOUT)
                        mask |= CURL_CSELECT_OUT;
                if (evs[i].events & (EPOLLERR | EPOLLHUP))
                        mask |= CURL_CSELECT_ERR;
                curl_multi_socket_action(w->multi, fd, mask, &running);
        }
        if (n > 0)
                wh_deliver_completed(w);
}

static void version(void)
{
        printf("noticecast-webhooks %s\nlibrdkafka %s\nlibcurl %s\njansson %s\nopenssl %s\n",
               NC_VERSION, rd_kafka_version_str(), curl_version_info(CURLVERSION_NOW)->version,
               jansson_version_str(), OpenSSL_version(OPENSSL_VERSION));
}

static int load(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size)
{
        wh_t *w = &((wh_main_t *)arg)->w;

        if (nc_daemon_load_config(d, &w->cfg, errstr, errstr_size) != 0 ||
            nc_config_check_webhooks(&w->cfg, errstr, errstr_size) != 0)
                return -1;
        return wh_partners_apply(w, &w->cfg, errstr, errstr_size);
}

static nc_metrics_t *setup(void *arg, nc_daemon_t *d, const char **listen)
{
        wh_main_t *wm = arg;
        wh_t *w = &wm->w;
        struct epoll_event ev = {.events = EPOLLIN};

        wm->d = d;
        /* Copies of the skeleton's descriptors (it closes them). */
        w->wake_pipe[0] = nc_daemon_wake_read_fd(d);
        w->wake_pipe[1] = nc_daemon_wake_write_fd(d);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0)
                fatal("epoll_create1");
        ev.data.fd = w->wake_pipe[0];
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_pipe[0], &ev) != 0)
                fatal("epoll_ctl");
        curl_global_init(CURL_GLOBAL_DEFAULT);
        w->multi = curl_multi_init();
        w->curl_timer_ms = -1;
        curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, 4096L);
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);

        w->metrics = nc_metrics_new();
        w->m_deliveries = nc_metrics_counter(w->metrics, "noticecast_webhook_deliveries_total",
                                             "Webhook deliveries by partner and final outcome.");
        w->m_latency = nc_metrics_histogram(
            w->metrics, "noticecast_webhook_attempt_seconds", "Duration of webhook HTTP attempts.",
            nc_metrics_latency_buckets, nc_metrics_latency_nbuckets);
        w->m_backlog = nc_metrics_gauge(w->metrics, "noticecast_webhook_retry_backlog",
                                        "Deliveries waiting in the retry tiers: read and not "
                                        "settled yet (held until due, or being retried), plus "
                                        "not read yet.");
        w->m_lag = nc_metrics_gauge(w->metrics, "noticecast_webhook_consumer_lag",
                                    "Messages on the assigned partitions not yet read.");
        w->m_dlq = nc_metrics_counter(w->metrics, "noticecast_webhook_dlq_total",
                                      "Records sent to the dead letter queue.");
        w->m_inflight = nc_metrics_gauge(w->metrics, "noticecast_webhook_in_flight",
                                         "Deliveries queued or in progress.");
        w->m_skipped = nc_metrics_counter(w->metrics, "noticecast_webhook_duplicates_avoided_total",
                                          "Deliveries not sent because their (notice, partner, "
                                          "event) was delivered already (read again after an "
                                          "outage, a rebalance or a restart).");
        nc_metrics_inc(w->m_dlq, NULL, 0);
        wh_metrics_init(w);
        *listen = w->cfg.webhooks.listen;
        return w->metrics;
}

static int start(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size)
{
        wh_t *w = &((wh_main_t *)arg)->w;

        w->httpd = nc_daemon_httpd(d);
        nc_kafka_acl_role(NC_ACL_ROLE_WEBHOOKS);
        if (nc_kafka_conn_start(&w->cfg, errstr, errstr_size) != 0 ||
            wh_kafka_start(w, errstr, errstr_size) != 0)
                return -1;
        log_info("started with %zu partner%s", w->cfg.partners_n,
                 w->cfg.partners_n == 1 ? "" : "s");
        return 0;
}

static void loop_turn(void *arg, nc_daemon_t *d)
{
        wh_main_t *wm = arg;
        int64_t now;

        loop_once(wm);
        /* A missing ACL is named until the consumer gets an assignment again. */
        nc_daemon_health(d, wm->w.ready && !wm->w.denied[0],
                         wm->w.denied[0] ? wm->w.denied : "no partitions assigned yet",
                         wm->w.cfg.webhooks.kafka_grace_ms);
        now = nc_time_now_ms();
        if (now - wm->last_lag >= 2000) {
                wm->last_lag = now;
                update_lag(&wm->w);
                nc_metrics_set(wm->w.m_backlog, NULL, (double)wh_retry_backlog(&wm->w));
        }
}

/* Graceful stop: take nothing new and let deliveries go on (their outcome settles their
 * offsets) until the shutdown timeout minus a reserve; then park whatever is still queued or
 * running in the first retry tier (same attempt, due at once) and wait for those records, so
 * that every offset can be committed: after the restart no partner gets again what it already
 * has.  Then commit and leave the group (wh_kafka_stop, in release). */
static void drain(void *arg, nc_daemon_t *d)
{
        wh_main_t *wm = arg;
        wh_t *w = &wm->w;
        int64_t park_at, reserve, timeout = w->cfg.webhooks.shutdown_timeout_ms;

        log_info("stopping: finishing %zu deliveries (at most %lld ms)", wh_in_flight(w),
                 (long long)timeout);
        w->stopping = 1;
        wm->hard = nc_time_now_ms() + timeout;
        reserve = timeout / 4;
        reserve = reserve < 1000 ? 1000 : reserve > 5000 ? 5000 : reserve;
        if (reserve > timeout / 2)
                reserve = timeout / 2;
        park_at = wm->hard - reserve;
        while ((wh_in_flight(w) > 0 || w->produces > 0) && nc_time_now_ms() < park_at) {
                loop_once(wm);
                nc_daemon_heartbeat(d);
        }
        if (wh_in_flight(w) > 0)
                log_info("stopping: parked %zu unfinished deliveries in %s", wh_deliver_park_all(w),
                         w->retry_topics[0]);
        while (w->produces > 0 && nc_time_now_ms() < wm->hard) {
                loop_once(wm);
                nc_daemon_heartbeat(d);
        }
        if (w->produces > 0)
                log_warnx("stopping: %zu records not acknowledged in time; what they settle is "
                          "read again after the restart",
                          w->produces);
        wh_deliver_abandon(w);
        /* The group leave may take a little beyond the timeout (bounded). */
        wm->hard += 2000;
}

static void release(void *arg, nc_daemon_t *d)
{
        wh_main_t *wm = arg;
        wh_t *w = &wm->w;

        wh_kafka_stop(w, wm->hard);
        nc_kafka_conn_stop();
        wh_partners_free(w);
        if (w->multi) {
                curl_multi_cleanup(w->multi);
                curl_global_cleanup();
        }
        nc_daemon_http_stop(d);
        w->httpd = NULL;
        if (w->metrics)
                nc_metrics_free(w->metrics);
        if (w->epfd >= 0)
                close(w->epfd); /* after curl_multi_cleanup: it still reports sockets */
        nc_config_free(&w->cfg);
}

int main(int argc, char **argv)
{
        static const nc_daemon_ops_t ops = {
            .name = "noticecast-webhooks",
            .usage = usage,
            .version = version,
            .load = load,
            .setup = setup,
            .listen_key = "[webhooks] listen",
            .start = start,
            .loop_once = loop_turn,
            .reload = reload,
            .drain = drain,
            .free = release,
        };
        wh_main_t wm = {.w = {.wake_pipe = {-1, -1}, .epfd = -1}};

        return nc_daemon_run(&ops, &wm, argc, argv);
}
