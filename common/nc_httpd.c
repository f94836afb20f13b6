#include "nc_httpd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "nc_log.h"
#include "nc_util.h"

/* How often the watchdog looks for requests past their deadline. */
#define WATCHDOG_PERIOD_MS 250
/* MHD's warnings logged per minute at most (the rest are counted). */
#define LOG_LINES_PER_MIN 20

#define CT_TEXT    "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct route {
        char *path;
        nc_httpd_handler_fn *fn;
        void *opaque;
};

/* One TCP connection as the deadline watchdog sees it (MHD's socket context). */
struct conn_track {
        struct conn_track *prev, *next;
        int fd;           /* our dup of the socket: shutdown() on it can never hit a reused fd */
        int64_t deadline; /* monotonic ms by which the request must be in; 0 = none */
};

/* What deferred requests share with the server; it outlives the server while a handler still
 * holds a deferred request.  Its lock guards every nc_httpd_deferred_t. */
struct hub {
        pthread_mutex_t lock;
        int refs; /* the server's, and one per deferred request not yet freed */
        int stopping;
        struct nc_httpd_deferred *head; /* requests whose connection is still open */
};

struct nc_httpd_deferred {
        struct hub *hub;
        struct nc_httpd_deferred *prev, *next;
        int refs;                    /* the handler's until it replies, the request's */
        struct MHD_Connection *conn; /* NULL once the request is over */
        int suspended, resumed, replied;
        int status;
        char *body;
        size_t body_len;
        const char *ctype;
        char *set_cookie, *location; /* ours: LOCATION is copied, the reply comes later */
};

struct nc_httpd {
        struct MHD_Daemon *d;
        nc_metrics_t *metrics;
        nc_metric_t *m_slow;
        int port;
        pthread_mutex_t lock; /* routes, ready, reason: set by the main thread, read by MHD's */
        struct route routes[NC_HTTPD_ROUTES_MAX];
        size_t nroutes;
        int ready;
        char *reason;
        int builtins; /* serves /metrics, /healthz, /readyz (0: a public listener) */
        nc_httpd_live_fn *live;
        void *live_opaque;
        /* While MHD_start_daemon runs, its log lines are kept for errstr instead of logged. */
        int starting;
        char start_err[256];
        /* MHD logs a line per refused or cut connection: under a flood, only a few. */
        int64_t log_window;
        unsigned log_lines, log_dropped;
        struct hub *hub;
        /* The watchdog: closes connections whose request does not arrive in time. */
        pthread_mutex_t track_lock;
        pthread_cond_t track_cond;
        struct conn_track *tracks;
        int watchdog_stop, watchdog_running;
        pthread_t watchdog;
};

/* One request to an added route, kept across the calls MHD makes while the body arrives. */
struct nc_httpd_req {
        nc_httpd_t *h;
        struct MHD_Connection *conn;
        const char *method, *path;
        nc_httpd_handler_fn *fn;
        void *opaque;
        char *body;
        size_t len, cap;
        struct nc_httpd_deferred *deferred;
        /* The Cookie headers split once, on first use: "name\0value\0" pairs. */
        char *cookies;
        size_t cookies_len;
        int cookies_parsed;
};

static const char *const builtin_paths[] = {"/metrics", "/healthz", "/readyz"};

static int is_builtin(const char *path)
{
        size_t i;

        for (i = 0; i < sizeof(builtin_paths) / sizeof(builtin_paths[0]); i++)
                if (!strcmp(path, builtin_paths[i]))
                        return 1;
        return 0;
}

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the request deadline ---------------------------------------------------------------- */

/* MHD's own timeout only closes idle connections: a client sending one byte every few
 * seconds keeps a connection (and a slot of the budget) forever.  The watchdog gives every
 * request a deadline from its first byte and shuts down the sockets of those that miss it;
 * MHD then sees the end of the stream and closes the connection itself. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
        nc_httpd_t *h = cls;
        struct conn_track *t = *socket_context;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci =
                    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

                t = nc_xcalloc(1, sizeof(*t));
                t->fd = ci ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
                t->deadline = mono_ms() + NC_HTTPD_REQUEST_DEADLINE_S * 1000;
                pthread_mutex_lock(&h->track_lock);
                t->next = h->tracks;
                if (h->tracks)
                        h->tracks->prev = t;
                h->tracks = t;
                pthread_mutex_unlock(&h->track_lock);
                *socket_context = t;
                return;
        }
        if (!t)
                return;
        pthread_mutex_lock(&h->track_lock);
        if (t->prev)
                t->prev->next = t->next;
        else
                h->tracks = t->next;
        if (t->next)
                t->next->prev = t->prev;
        pthread_mutex_unlock(&h->track_lock);
        if (t->fd >= 0)
                close(t->fd);
        free(t);
        *socket_context = NULL;
}

/* A new deadline for CONN's request: RUNNING = 1 starts the clock now, 0 stops it. */
static void track_set(nc_httpd_t *h, struct MHD_Connection *conn, int running)
{
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        struct conn_track *t = ci ? ci->socket_context : NULL;

        if (!t)
                return;
        pthread_mutex_lock(&h->track_lock);
        t->deadline = running ? mono_ms() + NC_HTTPD_REQUEST_DEADLINE_S * 1000 : 0;
        pthread_mutex_unlock(&h->track_lock);
}

static void *watchdog_main(void *arg)
{
        nc_httpd_t *h = arg;

        pthread_mutex_lock(&h->track_lock);
        while (!h->watchdog_stop) {
                int64_t now = mono_ms();
                struct timespec until;
                struct conn_track *t;
                unsigned cut = 0;

                for (t = h->tracks; t; t = t->next) {
                        if (t->deadline && now >= t->deadline && t->fd >= 0) {
                                shutdown(t->fd, SHUT_RDWR);
                                t->deadline = 0;
                                cut++;
                        }
                }
                if (cut && h->m_slow)
                        nc_metrics_inc(h->m_slow, NULL, cut);
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += WATCHDOG_PERIOD_MS * 1000000L;
                until.tv_sec += until.tv_nsec / 1000000000L;
                until.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&h->track_cond, &h->track_lock, &until);
        }
        pthread_mutex_unlock(&h->track_lock);
        return NULL;
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
        nc_httpd_t *h = cls;
        char buf[256];
        size_t n;

        vsnprintf(buf, sizeof(buf), fmt, ap);
        n = strlen(buf);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == '.'))
                buf[--n] = '\0';
        pthread_mutex_lock(&h->lock);
        if (h->starting) {
                snprintf(h->start_err, sizeof(h->start_err), "%s", buf);
                pthread_mutex_unlock(&h->lock);
                return;
        }
        {
                int64_t now = mono_ms();
                unsigned dropped = 0;

                if (now - h->log_window >= 60000) {
                        dropped = h->log_dropped;
                        h->log_window = now;
                        h->log_lines = h->log_dropped = 0;
                }
                if (h->log_lines >= LOG_LINES_PER_MIN) {
                        h->log_dropped++;
                        pthread_mutex_unlock(&h->lock);
                        return;
                }
                h->log_lines++;
                pthread_mutex_unlock(&h->lock);
                if (dropped)
                        log_warnx("httpd: %u more warnings in the last minute not logged", dropped);
        }
        log_warnx("httpd: %s", buf);
}

/* Sent with every answer of a public listener: its pages are plain HTML forms, so nothing
 * else may load, frame them or leak their URLs (which carry tokens) to other sites. */
static const char *const public_headers[][2] = {
    {"Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
    {"X-Frame-Options", "DENY"},
};

/* A response with BODY (taken over when MUST_FREE), or NULL (BODY freed). */
static struct MHD_Response *response_new(const char *ctype, char *body, size_t len, int must_free)
{
        struct MHD_Response *r;

        if (!body) {
                body = "";
                len = 0;
                must_free = 0;
        }
        r = MHD_create_response_from_buffer(
            len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!r) {
                if (must_free)
                        free(body);
                return NULL;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        /* Probes and scrapes must see the live state, never a cached copy; pages carry
         * tokens. */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        return r;
}

/* Adds the listener's security headers to R, queues it with STATUS and releases it. */
static enum MHD_Result response_queue(nc_httpd_t *h, struct MHD_Connection *conn, unsigned status,
                                      struct MHD_Response *r)
{
        enum MHD_Result ret;
        size_t i;

        if (!r)
                return MHD_NO;
        if (h->builtins) {
                MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        } else {
                for (i = 0; i < sizeof(public_headers) / sizeof(public_headers[0]); i++)
                        MHD_add_response_header(r, public_headers[i][0], public_headers[i][1]);
        }
        ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return ret;
}

/* Queues BODY (taken over when MUST_FREE) with STATUS. */
static enum MHD_Result reply_full(nc_httpd_t *h, struct MHD_Connection *conn, unsigned status,
                                  const char *ctype, char *body, size_t len, int must_free,
                                  const char *allow, int close_after)
{
        struct MHD_Response *r = response_new(ctype, body, len, must_free);

        if (r && allow)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
        if (r && close_after)
                MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        return response_queue(h, conn, status, r);
}

static enum MHD_Result reply(nc_httpd_t *h, struct MHD_Connection *conn, unsigned status,
                             const char *ctype, char *body, size_t len, int must_free,
                             const char *allow)
{
        return reply_full(h, conn, status, ctype, body, len, must_free, allow, 0);
}

static enum MHD_Result reply_text(nc_httpd_t *h, struct MHD_Connection *conn, unsigned status,
                                  const char *text)
{
        return reply(h, conn, status, CT_TEXT, (char *)text, strlen(text), 0, NULL);
}

/* A handler's answer: BODY and SET_COOKIE taken over.  A header value with CR or LF (which
 * would split the header) is a handler's bug: 500 rather than a half-sent cookie. */
static enum MHD_Result reply_resp(nc_httpd_t *h, struct MHD_Connection *conn, unsigned status,
                                  const char *ctype, char *body, size_t len, char *set_cookie,
                                  const char *location)
{
        struct MHD_Response *r;

        if ((set_cookie && strpbrk(set_cookie, "\r\n")) ||
            (location && strpbrk(location, "\r\n"))) {
                log_warnx("httpd: a handler's Set-Cookie or Location has a line break");
                free(body);
                free(set_cookie);
                return reply_text(h, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
        }
        r = response_new(ctype ? ctype : CT_TEXT, body, len, 1);
        if (r && set_cookie)
                MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, set_cookie);
        if (r && location)
                MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location);
        free(set_cookie);
        return response_queue(h, conn, status, r);
}

static enum MHD_Result serve_builtin(nc_httpd_t *h, struct MHD_Connection *conn, const char *path)
{
        char *text;

        if (!strcmp(path, "/healthz")) {
                nc_httpd_live_fn *live;
                void *opaque;
                char why[256];

                pthread_mutex_lock(&h->lock);
                live = h->live;
                opaque = h->live_opaque;
                pthread_mutex_unlock(&h->lock);
                /* Asked on every probe: the answer is the main loop's, not this thread's. */
                if (!live || live(opaque, why, sizeof(why)))
                        return reply_text(h, conn, MHD_HTTP_OK, "ok\n");
                if (asprintf(&text, "not ok: %s\n", why[0] ? why : "not live") < 0)
                        return reply_text(h, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ok\n");
                return reply(h, conn, MHD_HTTP_SERVICE_UNAVAILABLE, CT_TEXT, text, strlen(text), 1,
                             NULL);
        }
        if (!strcmp(path, "/readyz")) {
                int ready;

                pthread_mutex_lock(&h->lock);
                ready = h->ready;
                if (ready || !h->reason) {
                        text = NULL;
                } else if (asprintf(&text, "not ready: %s\n", h->reason) < 0) {
                        text = NULL;
                }
                pthread_mutex_unlock(&h->lock);
                if (ready)
                        return reply_text(h, conn, MHD_HTTP_OK, "ready\n");
                if (!text)
                        return reply_text(h, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
                return reply(h, conn, MHD_HTTP_SERVICE_UNAVAILABLE, CT_TEXT, text, strlen(text), 1,
                             NULL);
        }
        /* /metrics */
        text = h->metrics ? nc_metrics_render(h->metrics) : strdup("");
        if (!text)
                return reply_text(h, conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                  "cannot render metrics\n");
        return reply(h, conn, MHD_HTTP_OK, CT_METRICS, text, strlen(text), 1, NULL);
}

struct framing {
        int n_cl, conflict, te;
        unsigned long long cl;
};

/* One Content-Length value: a list of decimal lengths ("5" or "5, 5"). */
static void framing_cl(struct framing *f, const char *v)
{
        while (*v) {
                unsigned long long n = 0;
                int digits = 0;

                while (*v == ' ' || *v == '\t')
                        v++;
                for (; isdigit((unsigned char)*v); v++, digits++)
                        n = n > (~0ULL - 9) / 10 ? ~0ULL : n * 10 + (unsigned)(*v - '0');
                while (*v == ' ' || *v == '\t')
                        v++;
                if (!digits || (*v && *v != ',')) {
                        f->conflict = 1;
                        return;
                }
                if (f->n_cl++ && n != f->cl)
                        f->conflict = 1;
                f->cl = n;
                if (*v == ',')
                        v++;
        }
}

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
        struct framing *f = cls;

        (void)kind;
        if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
                framing_cl(f, value ? value : "");
        else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                f->te = 1;
        return MHD_YES;
}

/* First call for a request: only the headers are in.  Badly framed requests, built-in paths,
 * unknown paths and oversized bodies are answered at once (MHD then skips the body and closes
 * the connection); requests for added routes get their state and wait for the body. */
static enum MHD_Result start_request(nc_httpd_t *h, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls)
{
        struct framing fr = {0, 0, 0, 0};
        struct nc_httpd_req *req;
        const char *cl;
        size_t i;

        /* Two different lengths (or a length and chunking) mean that whoever else reads this
         * request may see another body and another next request: refuse it outright. */
        MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_header, &fr);
        if (fr.conflict || (fr.n_cl && fr.te)) {
                static const char msg[] = "bad request: conflicting Content-Length / "
                                          "Transfer-Encoding headers\n";

                return reply_full(h, conn, MHD_HTTP_BAD_REQUEST, CT_TEXT, (char *)msg,
                                  sizeof(msg) - 1, 0, NULL, 1);
        }
        if (h->builtins && is_builtin(url)) {
                if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
                        return reply(h, conn, MHD_HTTP_METHOD_NOT_ALLOWED, CT_TEXT,
                                     "method not allowed\n", 19, 0, "GET, HEAD");
                return serve_builtin(h, conn, url);
        }
        req = nc_xcalloc(1, sizeof(*req));
        pthread_mutex_lock(&h->lock);
        for (i = 0; i < h->nroutes; i++) {
                if (!strcmp(h->routes[i].path, url)) {
                        req->fn = h->routes[i].fn;
                        req->opaque = h->routes[i].opaque;
                        break;
                }
        }
        pthread_mutex_unlock(&h->lock);
        if (!req->fn) {
                free(req);
                return reply_text(h, conn, MHD_HTTP_NOT_FOUND, "not found\n");
        }
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > NC_HTTPD_BODY_MAX) {
                free(req);
                /* 413 is spelt differently across MHD releases. */
                return reply_text(h, conn, 413, "request body too large\n");
        }
        req->h = h;
        req->conn = conn;
        req->method = method;
        req->path = url;
        *con_cls = req;
        return MHD_YES;
}

/* ---- deferred answers ---------------------------------------------------------------------- */

/* Drops one reference of D (hub lock held); returns 1 when the hub must be freed. */
static int deferred_unref(struct nc_httpd_deferred *d)
{
        struct hub *hub = d->hub;

        if (--d->refs > 0)
                return 0;
        free(d->body);
        free(d->set_cookie);
        free(d->location);
        free(d);
        return --hub->refs == 0;
}

static void hub_free(struct hub *hub)
{
        pthread_mutex_destroy(&hub->lock);
        free(hub);
}

static void deferred_set(struct nc_httpd_deferred *d, int status, char *body, size_t len,
                         const char *ctype)
{
        d->replied = 1;
        d->status = status;
        d->body = body;
        d->body_len = body ? len : 0;
        d->ctype = ctype;
}

/* Queues the answer a deferred request got. */
static enum MHD_Result deferred_answer(struct nc_httpd_req *req)
{
        struct nc_httpd_deferred *d = req->deferred;
        struct hub *hub = d->hub;
        unsigned status;
        const char *ctype;
        size_t len;
        char *body, *set_cookie, *location;
        enum MHD_Result ret;

        pthread_mutex_lock(&hub->lock);
        if (!d->replied) {
                /* Not answered yet (a spurious wake-up): keep waiting. */
                d->suspended = 1;
                d->resumed = 0;
                MHD_suspend_connection(req->conn);
                pthread_mutex_unlock(&hub->lock);
                return MHD_YES;
        }
        status = (unsigned)d->status;
        body = d->body;
        len = d->body_len;
        ctype = d->ctype;
        set_cookie = d->set_cookie;
        location = d->location;
        d->body = d->set_cookie = d->location = NULL;
        pthread_mutex_unlock(&hub->lock);
        track_set(req->h, req->conn, 1);
        ret = reply_resp(req->h, req->conn, status, ctype, body, len, set_cookie, location);
        free(location);
        return ret;
}

/* The handler deferred its answer: the connection waits (suspended, off the HTTP thread and
 * off the deadline) unless the answer is already there. */
static enum MHD_Result deferred_wait(struct nc_httpd_req *req)
{
        struct nc_httpd_deferred *d = req->deferred;
        struct hub *hub = d->hub;

        pthread_mutex_lock(&hub->lock);
        if (!d->replied && hub->stopping) {
                /* MHD must not be stopped with a suspended connection. */
                deferred_set(d, MHD_HTTP_SERVICE_UNAVAILABLE, nc_xstrdup("shutting down\n"), 14,
                             CT_TEXT);
        }
        if (!d->replied) {
                d->suspended = 1;
                track_set(req->h, req->conn, 0);
                MHD_suspend_connection(req->conn);
                pthread_mutex_unlock(&hub->lock);
                return MHD_YES;
        }
        pthread_mutex_unlock(&hub->lock);
        return deferred_answer(req);
}

nc_httpd_deferred_t *nc_httpd_req_defer(const nc_httpd_req_t *creq)
{
        struct nc_httpd_req *req = (struct nc_httpd_req *)creq;
        struct hub *hub = req->h->hub;
        struct nc_httpd_deferred *d;

        if (req->deferred)
                return NULL; /* once per request */
        d = nc_xcalloc(1, sizeof(*d));
        d->hub = hub;
        d->refs = 2;
        d->conn = req->conn;
        pthread_mutex_lock(&hub->lock);
        hub->refs++;
        d->next = hub->head;
        if (hub->head)
                hub->head->prev = d;
        hub->head = d;
        pthread_mutex_unlock(&hub->lock);
        req->deferred = d;
        return d;
}

void nc_httpd_deferred_reply(nc_httpd_deferred_t *d, int status, nc_httpd_resp_t *resp)
{
        struct hub *hub;
        char *body = resp ? resp->body : NULL;
        char *set_cookie = resp ? resp->set_cookie : NULL;
        size_t len = resp ? resp->body_len : 0;
        int last;

        if (!d) {
                free(body);
                free(set_cookie);
                return;
        }
        if (body && len == 0)
                len = strlen(body);
        if (status < 100 || status > 599) {
                log_warnx("httpd: deferred answer with status %d", status);
                free(body);
                free(set_cookie);
                set_cookie = NULL;
                status = MHD_HTTP_INTERNAL_SERVER_ERROR;
                body = nc_xstrdup("internal error\n");
                len = strlen(body);
                resp = NULL;
        }
        hub = d->hub;
        pthread_mutex_lock(&hub->lock);
        if (d->replied) {
                /* nc_httpd_stop() answered it already. */
                free(body);
                free(set_cookie);
        } else {
                deferred_set(d, status, body, len, resp ? resp->content_type : NULL);
                d->set_cookie = set_cookie;
                d->location = resp && resp->location ? nc_xstrdup(resp->location) : NULL;
                if (d->conn && d->suspended && !d->resumed) {
                        d->resumed = 1;
                        MHD_resume_connection(d->conn);
                }
        }
        last = deferred_unref(d);
        pthread_mutex_unlock(&hub->lock);
        if (last)
                hub_free(hub);
}

static enum MHD_Result run_handler(struct nc_httpd_req *req)
{
        nc_httpd_resp_t resp = {NULL, NULL, 0, NULL, NULL};
        int status;

        if (!req->body)
                req->body = nc_xcalloc(1, 1);
        status = req->fn(req, &resp, req->opaque);
        if (req->deferred) {
                /* A deferring handler answers through the handle. */
                free(resp.body);
                free(resp.set_cookie);
                return deferred_wait(req);
        }
        if (status < 100 || status > 599) {
                log_warnx("httpd: %s: handler returned status %d", req->path, status);
                free(resp.body);
                free(resp.set_cookie);
                return reply_text(req->h, req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal error\n");
        }
        if (resp.body && resp.body_len == 0)
                resp.body_len = strlen(resp.body);
        return reply_resp(req->h, req->conn, (unsigned)status, resp.content_type, resp.body,
                          resp.body_len, resp.set_cookie, resp.location);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
        struct nc_httpd_req *req = *con_cls;
        size_t n = *upload_data_size;

        (void)version;
        if (!req)
                return start_request(cls, conn, url, method, con_cls);
        if (req->deferred) /* called again after MHD_resume_connection() */
                return deferred_answer(req);
        if (n == 0)
                return run_handler(req);
        /* A body without Content-Length (chunked) that grows too large: no response can be
         * queued in the middle of an upload, so drop the connection. */
        if (n > NC_HTTPD_BODY_MAX - req->len)
                return MHD_NO;
        if (req->len + n + 1 > req->cap) {
                req->cap = req->len + n + 1 > 2 * req->cap ? req->len + n + 1 : 2 * req->cap;
                req->body = nc_xrealloc(req->body, req->cap);
        }
        memcpy(req->body + req->len, upload_data, n);
        req->len += n;
        req->body[req->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
        struct nc_httpd_req *req = *con_cls;
        nc_httpd_t *h = cls;

        /* Keep-alive: the next request gets a deadline of its own. */
        if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                track_set(h, conn, 1);
        if (!req)
                return;
        if (req->deferred) {
                struct nc_httpd_deferred *d = req->deferred;
                struct hub *hub = d->hub;
                int last;

                pthread_mutex_lock(&hub->lock);
                d->conn = NULL;
                if (d->prev)
                        d->prev->next = d->next;
                else
                        hub->head = d->next;
                if (d->next)
                        d->next->prev = d->prev;
                last = deferred_unref(d);
                pthread_mutex_unlock(&hub->lock);
                if (last)
                        hub_free(hub);
        }
        free(req->body);
        free(req->cookies);
        free(req);
        *con_cls = NULL;
}

/* Splits LISTEN into the address to bind.  *ANY is set for ":port" / "*:port". */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen, int *any,
                        char *errstr, size_t errstr_size)
{
        char host[256];
        const char *colon, *port_s;
        struct addrinfo hints, *res = NULL;
        unsigned long port;
        char *end;
        size_t hlen;
        int rc;

        *any = 0;
        if (listen[0] == '[') {
                const char *rb = strchr(listen, ']');

                if (!rb || rb[1] != ':')
                        return nc_err(errstr, errstr_size, "listen \"%s\": expected [address]:port",
                                      listen);
                hlen = (size_t)(rb - listen - 1);
                if (hlen == 0 || hlen >= sizeof(host))
                        return nc_err(errstr, errstr_size, "listen \"%s\": bad address", listen);
                memcpy(host, listen + 1, hlen);
                port_s = rb + 2;
        } else {
                colon = strrchr(listen, ':');
                if (!colon)
                        return nc_err(errstr, errstr_size,
                                      "listen \"%s\": expected host:port or :port", listen);
                hlen = (size_t)(colon - listen);
                if (hlen >= sizeof(host) || memchr(listen, ':', hlen))
                        return nc_err(errstr, errstr_size,
                                      "listen \"%s\": put IPv6 addresses in brackets", listen);
                memcpy(host, listen, hlen);
                port_s = colon + 1;
        }
        host[hlen] = '\0';
        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (!*port_s || *end || errno || port > 65535 || port_s[0] < '0' || port_s[0] > '9')
                return nc_err(errstr, errstr_size, "listen \"%s\": bad port", listen);
        memset(ss, 0, sizeof(*ss));
        if (host[0] == '\0' || !strcmp(host, "*")) {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

                *any = 1;
                sin6->sin6_family = AF_INET6;
                sin6->sin6_addr = in6addr_any;
                sin6->sin6_port = htons((uint16_t)port);
                *sslen = sizeof(*sin6);
                return 0;
        }
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0)
                return nc_err(errstr, errstr_size, "listen \"%s\": %s", listen, gai_strerror(rc));
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        *sslen = res->ai_addrlen;
        freeaddrinfo(res);
        if (ss->ss_family == AF_INET)
                ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
        else if (ss->ss_family == AF_INET6)
                ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
        else
                return nc_err(errstr, errstr_size, "listen \"%s\": not an IP address", listen);
        return 0;
}

/* "127.0.0.1 port 9464", "[::] port 9464": for errors that must name what was tried. */
static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;

        if (ss->ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

                inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
                port = ntohs(sin->sin_port);
                snprintf(buf, size, "%s port %d", host, port);
        } else {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

                inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
                port = ntohs(sin6->sin6_port);
                snprintf(buf, size, "[%s] port %d", host, port);
        }
}

/* Binds and listens ourselves (MHD would report the port it was given as an argument, 0,
 * instead of the one in the address).  Returns the socket, or -1 with errno set and ERRSTR
 * saying which address and port could not be bound. */
static int listen_socket(const char *spec, const struct sockaddr_storage *ss, socklen_t sslen,
                         int dual, char *errstr, size_t errstr_size)
{
        char what[INET6_ADDRSTRLEN + 32];
        const char *step = "socket";
        int fd, one = 1, v6only = !dual, e;

        addr_text(ss, what, sizeof(what));
        fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0) {
                /* SO_REUSEADDR: a restart must not wait for TIME_WAIT; a port another process
                 * listens on still fails with EADDRINUSE. */
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (ss->ss_family == AF_INET6)
                        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
                step = "bind";
                if (bind(fd, (const struct sockaddr *)ss, sslen) == 0) {
                        step = "listen on";
                        if (listen(fd, SOMAXCONN) == 0)
                                return fd;
                }
        }
        e = errno;
        nc_err(errstr, errstr_size, "listen \"%s\": cannot %s %s: %s", spec, step, what,
               strerror(e));
        if (fd >= 0)
                close(fd);
        errno = e;
        return -1;
}

static struct MHD_Daemon *daemon_start(nc_httpd_t *h, int fd, int family)
{
        unsigned flags =
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;

        /* poll(): the connection budget is small, and no epoll registration can outlive a
         * socket the watchdog still holds a duplicate of. */
        if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
                flags |= MHD_USE_POLL;
        if (family == AF_INET6)
                flags |= MHD_USE_IPv6;
        return MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned)NC_HTTPD_CONNECTIONS,
            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)NC_HTTPD_CONNECTIONS_PER_IP,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)NC_HTTPD_IDLE_TIMEOUT_S,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION,
            on_connection, h, MHD_OPTION_EXTERNAL_LOGGER, on_log, h, MHD_OPTION_END);
}

static void httpd_free(nc_httpd_t *h)
{
        size_t i;
        int last;

        for (i = 0; i < h->nroutes; i++)
                free(h->routes[i].path);
        free(h->reason);
        while (h->tracks) { /* none normally: MHD reported every connection closed */
                struct conn_track *t = h->tracks;

                h->tracks = t->next;
                if (t->fd >= 0)
                        close(t->fd);
                free(t);
        }
        pthread_cond_destroy(&h->track_cond);
        pthread_mutex_destroy(&h->track_lock);
        pthread_mutex_destroy(&h->lock);
        pthread_mutex_lock(&h->hub->lock);
        last = --h->hub->refs == 0;
        pthread_mutex_unlock(&h->hub->lock);
        if (last)
                hub_free(h->hub);
        free(h);
}

static nc_httpd_t *httpd_start(const char *listen, int builtins, nc_metrics_t *metrics,
                               char *errstr, size_t errstr_size)
{
        struct sockaddr_storage ss;
        socklen_t sslen = 0;
        nc_httpd_t *h;
        int any, fd;

        if (parse_listen(listen, &ss, &sslen, &any, errstr, errstr_size) < 0)
                return NULL;
        fd = listen_socket(listen, &ss, sslen, any, errstr, errstr_size);
        if (fd < 0 && any && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
                /* No IPv6 on this host: all IPv4 interfaces, then. */
                struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
                uint16_t port = ((struct sockaddr_in6 *)&ss)->sin6_port;

                memset(&ss, 0, sizeof(ss));
                sin->sin_family = AF_INET;
                sin->sin_addr.s_addr = htonl(INADDR_ANY);
                sin->sin_port = port;
                sslen = sizeof(*sin);
                fd = listen_socket(listen, &ss, sslen, 0, errstr, errstr_size);
        }
        if (fd < 0)
                return NULL;
        h = nc_xcalloc(1, sizeof(*h));
        h->metrics = metrics;
        h->builtins = builtins;
        pthread_mutex_init(&h->lock, NULL);
        pthread_mutex_init(&h->track_lock, NULL);
        pthread_cond_init(&h->track_cond, NULL);
        h->hub = nc_xcalloc(1, sizeof(*h->hub));
        pthread_mutex_init(&h->hub->lock, NULL);
        h->hub->refs = 1;
        if (metrics) {
                h->m_slow = nc_metrics_counter(metrics, "noticecast_http_slow_requests_total",
                                               "HTTP connections closed because a request did "
                                               "not arrive within the request deadline.");
                if (h->m_slow)
                        nc_metrics_inc(h->m_slow, NULL, 0);
        }
        {
                struct sockaddr_storage bound;
                socklen_t blen = sizeof(bound);

                if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
                        h->port = bound.ss_family == AF_INET
                                      ? ntohs(((struct sockaddr_in *)&bound)->sin_port)
                                      : ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        }
        h->starting = 1;
        h->d = daemon_start(h, fd, ss.ss_family);
        pthread_mutex_lock(&h->lock);
        h->starting = 0;
        pthread_mutex_unlock(&h->lock);
        if (!h->d) {
                /* MHD closes a listen socket it was given when it fails to start. */
                nc_err(errstr, errstr_size, "listen \"%s\": %s", listen,
                       h->start_err[0] ? h->start_err : "cannot start the HTTP server");
                httpd_free(h);
                return NULL;
        }
        if (pthread_create(&h->watchdog, NULL, watchdog_main, h) == 0)
                h->watchdog_running = 1;
        else
                log_warnx("httpd: no watchdog thread: slow requests are only closed when idle");
        return h;
}

nc_httpd_t *nc_httpd_start(const char *listen, nc_metrics_t *metrics, char *errstr,
                           size_t errstr_size)
{
        return httpd_start(listen, 1, metrics, errstr, errstr_size);
}

nc_httpd_t *nc_httpd_start_public(const char *listen, char *errstr, size_t errstr_size)
{
        return httpd_start(listen, 0, NULL, errstr, errstr_size);
}

void nc_httpd_stop(nc_httpd_t *h)
{
        struct nc_httpd_deferred *d;

        if (!h)
                return;
        /* MHD must not be stopped with suspended connections: answer those still waiting. */
        pthread_mutex_lock(&h->hub->lock);
        h->hub->stopping = 1;
        for (d = h->hub->head; d; d = d->next) {
                if (!d->replied)
                        deferred_set(d, MHD_HTTP_SERVICE_UNAVAILABLE, nc_xstrdup("shutting down\n"),
                                     14, CT_TEXT);
                if (d->conn && d->suspended && !d->resumed) {
                        d->resumed = 1;
                        MHD_resume_connection(d->conn);
                }
        }
        pthread_mutex_unlock(&h->hub->lock);
        MHD_stop_daemon(h->d);
        if (h->watchdog_running) {
                pthread_mutex_lock(&h->track_lock);
                h->watchdog_stop = 1;
                pthread_cond_signal(&h->track_cond);
                pthread_mutex_unlock(&h->track_lock);
                pthread_join(h->watchdog, NULL);
        }
        httpd_free(h);
}

int nc_httpd_port(nc_httpd_t *h)
{
        return h->port;
}

void nc_httpd_set_ready(nc_httpd_t *h, int ready)
{
        pthread_mutex_lock(&h->lock);
        h->ready = ready != 0;
        pthread_mutex_unlock(&h->lock);
}

void nc_httpd_set_ready_reason(nc_httpd_t *h, const char *reason)
{
        char *copy = reason ? nc_xstrdup(reason) : NULL;

        pthread_mutex_lock(&h->lock);
        free(h->reason);
        h->reason = copy;
        pthread_mutex_unlock(&h->lock);
}

void nc_httpd_set_live(nc_httpd_t *h, nc_httpd_live_fn *fn, void *opaque)
{
        pthread_mutex_lock(&h->lock);
        h->live = fn;
        h->live_opaque = opaque;
        pthread_mutex_unlock(&h->lock);
}

int nc_httpd_add_route(nc_httpd_t *h, const char *path, nc_httpd_handler_fn *fn, void *opaque)
{
        size_t i;
        int rc = 0;

        if (path[0] != '/' || !fn || (h->builtins && is_builtin(path)))
                return -1;
        pthread_mutex_lock(&h->lock);
        for (i = 0; i < h->nroutes; i++)
                if (!strcmp(h->routes[i].path, path))
                        rc = -1;
        if (rc == 0 && h->nroutes == NC_HTTPD_ROUTES_MAX)
                rc = -1;
        if (rc == 0) {
                h->routes[h->nroutes].path = nc_xstrdup(path);
                h->routes[h->nroutes].fn = fn;
                h->routes[h->nroutes].opaque = opaque;
                h->nroutes++;
        }
        pthread_mutex_unlock(&h->lock);
        return rc;
}

const char *nc_httpd_req_method(const nc_httpd_req_t *req)
{
        return req->method;
}

const char *nc_httpd_req_path(const nc_httpd_req_t *req)
{
        return req->path;
}

const char *nc_httpd_req_query(const nc_httpd_req_t *req, const char *key)
{
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *nc_httpd_req_header(const nc_httpd_req_t *req, const char *name)
{
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *nc_httpd_req_body(const nc_httpd_req_t *req, size_t *len)
{
        if (len)
                *len = req->len;
        return req->body ? req->body : "";
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decodes S[0..n) of a form field; NULL on a malformed escape or an encoded NUL. */
static char *form_decode(const char *s, size_t n)
{
        char *out = nc_xmalloc(n + 1), *o = out;
        size_t i;

        for (i = 0; i < n; i++) {
                if (s[i] == '+') {
                        *o++ = ' ';
                } else if (s[i] == '%') {
                        int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
                        int lo = i + 2 < n ? hexval(s[i + 2]) : -1;

                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                                free(out);
                                return NULL;
                        }
                        *o++ = (char)(hi * 16 + lo);
                        i += 2;
                } else {
                        *o++ = s[i];
                }
        }
        *o = '\0';
        return out;
}

/* Calls FN with the decoded value (NULL if it does not decode) of each KEY field of REQ's
 * urlencoded body, in order, until FN returns nonzero.  -1 if the body is not a form. */
static int form_each(const nc_httpd_req_t *req, const char *key, int (*fn)(char *value, void *arg),
                     void *arg)
{
        static const char form_ct[] = "application/x-www-form-urlencoded";
        const char *ct = nc_httpd_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        const char *p, *end, *amp, *eq;
        size_t len;

        if (ct && (strncasecmp(ct, form_ct, sizeof(form_ct) - 1) ||
                   (ct[sizeof(form_ct) - 1] != '\0' && ct[sizeof(form_ct) - 1] != ';' &&
                    ct[sizeof(form_ct) - 1] != ' ')))
                return -1;
        p = nc_httpd_req_body(req, &len);
        end = p + len;
        for (; p < end; p = amp + 1) {
                char *name;
                int match;

                amp = memchr(p, '&', (size_t)(end - p));
                if (!amp)
                        amp = end;
                eq = memchr(p, '=', (size_t)(amp - p));
                if (!eq)
                        eq = amp;
                name = form_decode(p, (size_t)(eq - p));
                match = name && !strcmp(name, key);
                free(name);
                if (match &&
                    fn(eq < amp ? form_decode(eq + 1, (size_t)(amp - eq - 1)) : nc_xstrdup(""),
                       arg))
                        break;
        }
        return 0;
}

static int form_first(char *value, void *arg)
{
        *(char **)arg = value;
        return 1;
}

char *nc_httpd_req_form(const nc_httpd_req_t *req, const char *key)
{
        char *value = NULL;

        form_each(req, key, form_first, &value);
        return value;
}

struct form_list {
        char **v;
        size_t n, cap;
        int bad;
};

static int form_append(char *value, void *arg)
{
        struct form_list *l = arg;

        if (!value) {
                l->bad = 1;
                return 1;
        }
        if (l->n + 2 > l->cap) {
                l->cap = l->cap ? 2 * l->cap : 4;
                l->v = nc_xrealloc(l->v, l->cap * sizeof(*l->v));
        }
        l->v[l->n++] = value;
        l->v[l->n] = NULL;
        return 0;
}

char **nc_httpd_req_form_list(const nc_httpd_req_t *req, const char *key, size_t *n)
{
        struct form_list l = {NULL, 0, 0, 0};

        if (n)
                *n = 0;
        if (form_each(req, key, form_append, &l) < 0 || l.bad) {
                if (l.v)
                        l.v[l.n] = NULL;
                nc_httpd_form_list_free(l.v);
                return NULL;
        }
        if (!l.v)
                l.v = nc_xcalloc(1, sizeof(*l.v));
        if (n)
                *n = l.n;
        return l.v;
}

void nc_httpd_form_list_free(char **list)
{
        char **p;

        if (!list)
                return;
        for (p = list; *p; p++)
                free(*p);
        free(list);
}

/* Appends the cookies of one Cookie header value ("a=1; b=2") to the request's pairs. */
static enum MHD_Result cookie_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
        struct nc_httpd_req *req = cls;
        const char *p = value ? value : "";

        (void)kind;
        if (strcasecmp(key, MHD_HTTP_HEADER_COOKIE))
                return MHD_YES;
        while (*p) {
                const char *semi = strchr(p, ';'), *eq, *name, *val, *name_end, *val_end;

                if (!semi)
                        semi = p + strlen(p);
                eq = memchr(p, '=', (size_t)(semi - p));
                if (eq) {
                        for (name = p; name < eq && (*name == ' ' || *name == '\t'); name++)
                                ;
                        for (name_end = eq;
                             name_end > name && (name_end[-1] == ' ' || name_end[-1] == '\t');
                             name_end--)
                                ;
                        for (val = eq + 1; val < semi && (*val == ' ' || *val == '\t'); val++)
                                ;
                        for (val_end = semi;
                             val_end > val && (val_end[-1] == ' ' || val_end[-1] == '\t');
                             val_end--)
                                ;
                        /* RFC 6265 allows a value in double quotes. */
                        if (val_end - val >= 2 && *val == '"' && val_end[-1] == '"') {
                                val++;
                                val_end--;
                        }
                        if (name_end > name) {
                                size_t nl = (size_t)(name_end - name), vl = (size_t)(val_end - val);

                                req->cookies =
                                    nc_xrealloc(req->cookies, req->cookies_len + nl + vl + 2);
                                memcpy(req->cookies + req->cookies_len, name, nl);
                                req->cookies[req->cookies_len + nl] = '\0';
                                memcpy(req->cookies + req->cookies_len + nl + 1, val, vl);
                                req->cookies[req->cookies_len + nl + 1 + vl] = '\0';
                                req->cookies_len += nl + vl + 2;
                        }
                }
                p = *semi ? semi + 1 : semi;
        }
        return MHD_YES;
}

const char *nc_httpd_req_cookie(const nc_httpd_req_t *creq, const char *name)
{
        struct nc_httpd_req *req = (struct nc_httpd_req *)creq;
        size_t off = 0;

        if (!req->cookies_parsed) {
                req->cookies_parsed = 1;
                MHD_get_connection_values(req->conn, MHD_HEADER_KIND, cookie_header, req);
        }
        /* Exact, case-sensitive names (MHD's own lookup ignores case); the first one wins. */
        while (off < req->cookies_len) {
                const char *n = req->cookies + off, *v = n + strlen(n) + 1;

                if (!strcmp(n, name))
                        return v;
                off = (size_t)(v + strlen(v) + 1 - req->cookies);
        }
        return NULL;
}

int nc_httpd_req_client_ip(const nc_httpd_req_t *req, char *buf, size_t size)
{
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;

        if (!sa || size == 0)
                return -1;
        if (sa->sa_family == AF_INET)
                return inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
                                 (socklen_t)size)
                           ? 0
                           : -1;
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

                /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: one client, one
                 * key, whichever socket it came through. */
                if (IN6_IS_ADDR_V4MAPPED(a))
                        return inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)size) ? 0 : -1;
                return inet_ntop(AF_INET6, a, buf, (socklen_t)size) ? 0 : -1;
        }
        return -1;
}
