#include "nc_httpd.h"

#include <arpa/inet.h>
#include <errno.h>
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

#include <microhttpd.h>

#include "nc_log.h"
#include "nc_util.h"

/* Enough for Prometheus, kubelet probes and a few humans; connections beyond it are refused
 * rather than queued.  The timeout closes idle or trickling connections. */
#define HTTPD_CONNECTION_LIMIT 64
#define HTTPD_TIMEOUT_S        10

#define CT_TEXT    "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct route {
        char *path;
        nc_httpd_handler_fn *fn;
        void *opaque;
};

struct nc_httpd {
        struct MHD_Daemon *d;
        nc_metrics_t *metrics;
        int port;
        pthread_mutex_t lock; /* routes, ready, reason: set by the main thread, read by MHD's */
        struct route routes[NC_HTTPD_ROUTES_MAX];
        size_t nroutes;
        int ready;
        char *reason;
        /* While MHD_start_daemon runs, its log lines are kept for errstr instead of logged. */
        int starting;
        char start_err[256];
};

/* One request to an added route, kept across the calls MHD makes while the body arrives. */
struct nc_httpd_req {
        struct MHD_Connection *conn;
        const char *method, *path;
        nc_httpd_handler_fn *fn;
        void *opaque;
        char *body;
        size_t len, cap;
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
        pthread_mutex_unlock(&h->lock);
        log_warnx("httpd: %s", buf);
}

/* Queues BODY (taken over when MUST_FREE) with STATUS. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             char *body, size_t len, int must_free, const char *allow)
{
        struct MHD_Response *r;
        enum MHD_Result ret;

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
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        /* Probes and scrapes must see the live state, never a cached copy. */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (allow)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
        ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
        return reply(conn, status, CT_TEXT, (char *)text, strlen(text), 0, NULL);
}

static enum MHD_Result serve_builtin(nc_httpd_t *h, struct MHD_Connection *conn, const char *path)
{
        char *text;

        if (!strcmp(path, "/healthz"))
                return reply_text(conn, MHD_HTTP_OK, "ok\n");
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
                        return reply_text(conn, MHD_HTTP_OK, "ready\n");
                if (!text)
                        return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
                return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, CT_TEXT, text, strlen(text), 1,
                             NULL);
        }
        /* /metrics */
        text = h->metrics ? nc_metrics_render(h->metrics) : strdup("");
        if (!text)
                return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render metrics\n");
        return reply(conn, MHD_HTTP_OK, CT_METRICS, text, strlen(text), 1, NULL);
}

/* First call for a request: only the headers are in.  Built-in paths, unknown paths and
 * oversized bodies are answered at once (MHD then skips the body and closes the connection);
 * requests for added routes get their state and wait for the body. */
static enum MHD_Result start_request(nc_httpd_t *h, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls)
{
        struct nc_httpd_req *req;
        const char *cl;
        size_t i;

        if (is_builtin(url)) {
                if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
                        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, CT_TEXT,
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
                return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
        }
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > NC_HTTPD_BODY_MAX) {
                free(req);
                /* 413 is spelt differently across MHD releases. */
                return reply_text(conn, 413, "request body too large\n");
        }
        req->conn = conn;
        req->method = method;
        req->path = url;
        *con_cls = req;
        return MHD_YES;
}

static enum MHD_Result run_handler(struct nc_httpd_req *req)
{
        nc_httpd_resp_t resp = {NULL, NULL, 0};
        int status;

        if (!req->body)
                req->body = nc_xcalloc(1, 1);
        status = req->fn(req, &resp, req->opaque);
        if (status < 100 || status > 599) {
                log_warnx("httpd: %s: handler returned status %d", req->path, status);
                free(resp.body);
                return reply_text(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
        }
        if (resp.body && resp.body_len == 0)
                resp.body_len = strlen(resp.body);
        return reply(req->conn, (unsigned)status, resp.content_type ? resp.content_type : CT_TEXT,
                     resp.body, resp.body_len, 1, NULL);
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

        (void)cls;
        (void)conn;
        (void)toe;
        if (!req)
                return;
        free(req->body);
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

static struct MHD_Daemon *daemon_start(nc_httpd_t *h, const struct sockaddr_storage *ss, int dual)
{
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

        if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
                flags |= MHD_USE_EPOLL;
        else if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
                flags |= MHD_USE_POLL;
        if (ss->ss_family == AF_INET6)
                flags |= dual ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
        return MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)ss,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTPD_CONNECTION_LIMIT,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
            on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, on_log, h, MHD_OPTION_END);
}

nc_httpd_t *nc_httpd_start(const char *listen, nc_metrics_t *metrics, char *errstr,
                           size_t errstr_size)
{
        struct sockaddr_storage ss;
        const union MHD_DaemonInfo *info;
        socklen_t sslen;
        nc_httpd_t *h;
        int any;

        if (parse_listen(listen, &ss, &sslen, &any, errstr, errstr_size) < 0)
                return NULL;
        h = nc_xcalloc(1, sizeof(*h));
        h->metrics = metrics;
        pthread_mutex_init(&h->lock, NULL);
        h->starting = 1;
        h->d = daemon_start(h, &ss, any);
        if (!h->d && any) {
                /* No IPv6 on this host: all IPv4 interfaces, then. */
                struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
                uint16_t port = ((struct sockaddr_in6 *)&ss)->sin6_port;

                memset(&ss, 0, sizeof(ss));
                sin->sin_family = AF_INET;
                sin->sin_addr.s_addr = htonl(INADDR_ANY);
                sin->sin_port = port;
                h->d = daemon_start(h, &ss, 0);
        }
        pthread_mutex_lock(&h->lock);
        h->starting = 0;
        pthread_mutex_unlock(&h->lock);
        if (!h->d) {
                nc_err(errstr, errstr_size, "listen \"%s\": %s", listen,
                       h->start_err[0] ? h->start_err : "cannot start the HTTP server");
                pthread_mutex_destroy(&h->lock);
                free(h);
                return NULL;
        }
        info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
        h->port = info ? info->port : 0;
        return h;
}

void nc_httpd_stop(nc_httpd_t *h)
{
        size_t i;

        if (!h)
                return;
        MHD_stop_daemon(h->d);
        for (i = 0; i < h->nroutes; i++)
                free(h->routes[i].path);
        free(h->reason);
        pthread_mutex_destroy(&h->lock);
        free(h);
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

int nc_httpd_add_route(nc_httpd_t *h, const char *path, nc_httpd_handler_fn *fn, void *opaque)
{
        size_t i;
        int rc = 0;

        if (path[0] != '/' || !fn || is_builtin(path))
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

char *nc_httpd_req_form(const nc_httpd_req_t *req, const char *key)
{
        static const char form_ct[] = "application/x-www-form-urlencoded";
        const char *ct = nc_httpd_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        const char *p, *end, *amp, *eq;
        size_t len;

        if (ct && (strncasecmp(ct, form_ct, sizeof(form_ct) - 1) ||
                   (ct[sizeof(form_ct) - 1] != '\0' && ct[sizeof(form_ct) - 1] != ';' &&
                    ct[sizeof(form_ct) - 1] != ' ')))
                return NULL;
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
                if (match)
                        return eq < amp ? form_decode(eq + 1, (size_t)(amp - eq - 1))
                                        : nc_xstrdup("");
        }
        return NULL;
}
