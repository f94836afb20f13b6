/* noticecast-mailer: RFC 8058 one-click unsubscribe.
 *
 * The token (unsub_token.h) hides the address and binds the subscription's generation.  GET
 * shows a page with a button (link scanners fetch URLs; they must not unsubscribe anyone);
 * POST (the RFC 8058 "List-Unsubscribe=One-Click" body, or the button) writes a tombstone for
 * the subscriber on the subscribers topic.  Nothing changes unless the page says so:
 *
 *   403  not one of our tokens (or a token of the first format)
 *   410  a token of an earlier subscription of the address (it subscribed again since)
 *   200  "not subscribed": the address is not subscribed now
 *   503  the view of the subscribers is still loading
 *
 * The HTTP thread never waits for Kafka: a POST queues the tombstone and defers its answer
 * (nc_httpd_req_defer); the delivery report, served by this file's poller thread, gives it:
 *
 *   200  written (acknowledged by all in-sync replicas)
 *   503  "not saved": librdkafka reports that it was never written, and it drops it (the
 *        producer's message timeout, UNSUB_TIMEOUT_MS): it will not be written later
 *   503  "could not confirm": a broker received the request but its answer never came
 *        (possibly persisted); the page says so and asks to use the link again, which is
 *        right whichever way it went.
 *
 * A re-subscription the view has not seen yet (it follows the topic within moments) lets a
 * token of the previous subscription through until it has.
 *
 * /unsubscribe is served on its own listener, [mailer] public_listen (nc_httpd_start_public:
 * no /metrics, /healthz, /readyz there), never on the admin one ([mailer] listen): the port
 * that faces the Internet shows nothing but these pages. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mailer.h"
#include "nc_httpd.h"
#include "nc_kafka.h"
#include "nc_subscriber.h"
#include "nc_time.h"
#include "nc_util.h"
#include "unsub_token.h"
#include "web.h"

/* How long a tombstone may wait for the brokers before it is given up (and the page says
 * "not saved"): the client's page waits this long at most, plus the timeout scan. */
#define UNSUB_TIMEOUT_MS         5000
#define UNSUB_REQUEST_TIMEOUT_MS 4000
#define UNSUB_POLL_MS            100

/* One mailer per process: the state the HTTP thread, the poller and the main thread share. */
static struct {
        pthread_mutex_t lock; /* stopping, and the producer against ml_unsub_stop() */
        int stopping, poll_stop;
        pthread_t poller;
        int poller_running;
        nc_httpd_t *public; /* the /unsubscribe listener, or NULL */
} U = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, NULL};

/* A page waiting for the delivery report of the record it wrote (ml_public_write). */
struct pending {
        nc_httpd_deferred_t *d;
        ml_public_done_fn *done;
        void *arg;
};

void ml_unsub_token(const ml_t *m, const char *id, char *out, size_t size)
{
        const ml_sub_t *s = ml_store_sub(m, id);
        /* From the end of today: every email of a subscription on one day has the same link. */
        int64_t expires =
            (nc_time_now_ms() / 86400000 + 1) * 86400 + m->cfg.mailer.unsubscribe_expiry_ms / 1000;

        if (ml_token_seal(m->unsub_key, m->unsub_key_len, id, s ? s->gen : 0, expires, out, size) !=
            0)
                log_warnx("no unsubscribe token for %s: id too long", id);
}

/* ---- pages ------------------------------------------------------------------------------- */

/* The pages are the templates of web.c (pages/unsubscribe.mustache and the sections of
 * pages/message.mustache), in the subscriber's language when the token named one, else in the
 * browser's. */

/* ---- the tombstone --------------------------------------------------------------------- */

/* On the poller thread (or the main thread's final flush). */
static void public_dr(rd_kafka_t *rk, const rd_kafka_message_t *r, void *opaque)
{
        struct pending *p = r->_private;
        ml_public_outcome_t o = ML_PUBLIC_WRITTEN;

        (void)rk;
        (void)opaque;
        if (!p)
                return;
        if (r->err)
                o = rd_kafka_message_status(r) == RD_KAFKA_MSG_STATUS_NOT_PERSISTED
                        ? ML_PUBLIC_NOT_SAVED
                        : ML_PUBLIC_UNCONFIRMED;
        p->done(p->arg, p->d, o, r->err ? rd_kafka_err2str(r->err) : "");
        free(p);
}

struct unsub_wait {
        char id[ML_TOKEN_ID_MAX + 1];
        char lang[16];
};

/* The unsubscribe page's answer to its tombstone's outcome. */
static void tombstone_done(void *arg, nc_httpd_deferred_t *d, ml_public_outcome_t o,
                           const char *why)
{
        nc_httpd_resp_t resp = {NULL, NULL, 0, NULL, NULL};
        struct unsub_wait *w = arg;
        int status;

        switch (o) {
        case ML_PUBLIC_WRITTEN:
                log_info("unsubscribed %s (one-click)", w->id);
                status = ml_web_page(NULL, &resp, 200, w->lang, "unsubscribed", NULL);
                break;
        case ML_PUBLIC_NOT_SAVED:
                log_warnx("unsubscribe of %s not saved: %s; the page said so", w->id, why);
                status = ml_web_page(NULL, &resp, 503, w->lang, "not_saved", NULL);
                break;
        case ML_PUBLIC_UNCONFIRMED:
                log_warnx("unsubscribe of %s may or may not be saved: %s; the page said so", w->id,
                          why);
                status = ml_web_page(NULL, &resp, 503, w->lang, "unconfirmed", NULL);
                break;
        default:
                fatalx("tombstone_done: outcome %d", (int)o);
        }
        nc_httpd_deferred_reply(d, status, &resp);
        free(w);
}

static void *poller_main(void *arg)
{
        ml_t *m = arg;

        for (;;) {
                int stop;

                pthread_mutex_lock(&U.lock);
                stop = U.poll_stop;
                pthread_mutex_unlock(&U.lock);
                if (stop)
                        break;
                rd_kafka_poll(m->unsub_p, UNSUB_POLL_MS);
        }
        return NULL;
}

int ml_public_write(ml_t *m, const char *id, const char *value, const char *event,
                    nc_httpd_deferred_t *d, ml_public_done_fn *done, void *arg, char *why,
                    size_t why_size)
{
        struct pending *p = nc_xcalloc(1, sizeof(*p));
        rd_kafka_resp_err_t err;

        p->d = d;
        p->done = done;
        p->arg = arg;
        pthread_mutex_lock(&U.lock);
        if (U.stopping || !m->unsub_p) {
                pthread_mutex_unlock(&U.lock);
                free(p);
                snprintf(why, why_size, "shutting down");
                return -1;
        }
        err = rd_kafka_producev(
            m->unsub_p, RD_KAFKA_V_TOPIC(m->topic_subs), RD_KAFKA_V_KEY(id, strlen(id)),
            RD_KAFKA_V_VALUE((void *)value, value ? strlen(value) : 0),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("noticecast-event", event, -1), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        pthread_mutex_unlock(&U.lock);
        if (err) {
                free(p);
                snprintf(why, why_size, "%s", rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static int handle(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        ml_t *m = opaque;
        const char *method = nc_httpd_req_method(req);
        const char *token = nc_httpd_req_query(req, "token");
        char id[ML_TOKEN_ID_MAX + 1], why[256], lang[16];
        uint64_t gen = 0, current;
        json_t *rec;
        ml_token_status_t st;
        nc_httpd_deferred_t *d;
        struct unsub_wait *w;
        int known;

        st = ml_token_open(m->unsub_key, m->unsub_key_len, token, nc_time_now_ms() / 1000, id,
                           sizeof(id), &gen);
        if (st == ML_TOKEN_EXPIRED)
                return ml_web_page(req, resp, 410, NULL, "link_expired", NULL);
        if (st != ML_TOKEN_OK)
                return ml_web_page(req, resp, 403, NULL, "invalid", NULL);
        if (strcmp(method, "GET") && strcmp(method, "HEAD") && strcmp(method, "POST"))
                return ml_web_page(req, resp, 405, NULL, "invalid", NULL);
        rec = ml_store_sub_copy(m, id, &known);
        if (known < 0)
                return ml_web_page(req, resp, 503, NULL, "loading", NULL);
        if (known == 0)
                return ml_web_page(req, resp, 200, NULL, "not_subscribed", NULL);
        /* The subscriber's language for the pages, and the subscription the token must name. */
        snprintf(lang, sizeof(lang), "%s", json_string_value(json_object_get(rec, "lang")));
        current = nc_subscriber_generation(rec);
        json_decref(rec);
        if (current != gen) {
                log_info("unsubscribe link of an earlier subscription of %s refused", id);
                return ml_web_page(req, resp, 410, lang, "stale", NULL);
        }
        if (strcmp(method, "POST")) /* the token is base64url: nothing to escape */
                return ml_web_page(req, resp, 200, lang, "unsubscribe", token);
        d = nc_httpd_req_defer(req);
        w = nc_xcalloc(1, sizeof(*w));
        snprintf(w->id, sizeof(w->id), "%s", id);
        snprintf(w->lang, sizeof(w->lang), "%s", lang);
        if (ml_public_write(m, id, NULL, "subscriber.removed", d, tombstone_done, w, why,
                            sizeof(why)) != 0)
                tombstone_done(w, d, ML_PUBLIC_NOT_SAVED, why); /* now owned by it */
        return NC_HTTPD_DEFERRED;
}

int ml_unsub_start(ml_t *m, char *errstr, size_t errstr_size)
{
        char msg_timeout[16], req_timeout[16];
        /* Not idempotent: a tombstone written twice is the same tombstone, and a producer
         * that an idempotence error made fatal would refuse every later unsubscribe. */
        const nc_kafka_setting_t set[] = {{"enable.idempotence", "false"},
                                          {"acks", "all"},
                                          {"linger.ms", "0"},
                                          {"message.timeout.ms", msg_timeout},
                                          {"request.timeout.ms", req_timeout},
                                          {NULL, NULL}};

        snprintf(msg_timeout, sizeof(msg_timeout), "%d", UNSUB_TIMEOUT_MS);
        snprintf(req_timeout, sizeof(req_timeout), "%d", UNSUB_REQUEST_TIMEOUT_MS);
        if (!(m->unsub_p = nc_kafka_producer_new(&m->cfg,
                                                 &(nc_kafka_opts_t){.name = "unsubscribe producer",
                                                                    .set = set,
                                                                    .dr_msg_cb = public_dr},
                                                 errstr, errstr_size)))
                return -1;
        if (pthread_create(&U.poller, NULL, poller_main, m) != 0)
                return nc_err(errstr, errstr_size, "cannot start the unsubscribe thread");
        U.poller_running = 1;
        if (U.public && nc_httpd_add_route(U.public, "/unsubscribe", handle, m) != 0)
                return nc_err(errstr, errstr_size, "cannot add the /unsubscribe route");
        /* The sign-up pages share the listener (and, later, this producer). */
        return ml_web_start(m, U.public, errstr, errstr_size);
}

int ml_unsub_listen(ml_t *m, char *errstr, size_t errstr_size)
{
        const char *listen = m->cfg.mailer.public_listen;
        char addr[300], port[16];
        const char *colon;

        if (!listen || !listen[0]) {
                log_info("no [mailer] public_listen: /unsubscribe is not served (unsubscribe by "
                         "mail only)");
                return 0;
        }
        if (!(U.public = nc_httpd_start_public(listen, errstr, errstr_size)))
                return -1;
        /* Not "http listening": that line names the admin endpoint. */
        colon = strrchr(listen, ':');
        snprintf(port, sizeof(port), "%d", nc_httpd_port(U.public));
        snprintf(addr, sizeof(addr), "%.*s:%s", colon ? (int)(colon - listen) : 0, listen, port);
        nc_log_kv(NC_LOG_INFO, "public http listening", "addr", addr, "paths", "/unsubscribe",
                  NULL);
        return 0;
}

void ml_unsub_stop(ml_t *m)
{
        rd_kafka_t *p;

        pthread_mutex_lock(&U.lock);
        U.stopping = 1;
        pthread_mutex_unlock(&U.lock);
        if (!m->unsub_p) {
                nc_httpd_stop(U.public);
                U.public = NULL;
                return;
        }
        /* Every tombstone queued gets its report within the message timeout: the pages
         * waiting for them are answered before the HTTP server stops. */
        rd_kafka_flush(m->unsub_p, UNSUB_TIMEOUT_MS + 2000);
        if (U.poller_running) {
                pthread_mutex_lock(&U.lock);
                U.poll_stop = 1;
                pthread_mutex_unlock(&U.lock);
                pthread_join(U.poller, NULL);
                U.poller_running = 0;
        }
        /* Should the flush have run out, whatever is left is dropped and its page says so. */
        rd_kafka_purge(m->unsub_p, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(m->unsub_p, 1000);
        pthread_mutex_lock(&U.lock);
        p = m->unsub_p;
        m->unsub_p = NULL;
        pthread_mutex_unlock(&U.lock);
        rd_kafka_destroy(p);
        /* Every page waiting was answered: the listener (whose handler reads the view) goes
         * before the view does. */
        nc_httpd_stop(U.public);
        U.public = NULL;
        ml_web_stop();
}
