/* The daemons' HTTP endpoint (libmicrohttpd, one internal polling thread):
 *
 *   GET /metrics  Prometheus text format 0.0.4 from an nc_metrics_t
 *   GET /healthz  200 "ok" while the liveness callback (nc_httpd_set_live) says so, asked at
 *                 each request, else 503 "not ok: <reason>"; 200 without a callback
 *   GET /readyz   200 "ready" once nc_httpd_set_ready(h, 1), else 503 "not ready: <reason>"
 *
 * HEAD works wherever GET does; other methods on these paths get 405, unknown paths 404.
 * A public listener (nc_httpd_start_public: the mailer's Internet-facing port) has none of
 * these three: they answer 404 there, and only its added routes are served.
 * Every answer of a public listener carries a strict Content-Security-Policy, nosniff,
 * Referrer-Policy: no-referrer, X-Frame-Options: DENY and Cache-Control: no-store; the admin
 * listener's carry nosniff and no-store.
 * Programs add their own routes (the mailer's one-click unsubscribe) with nc_httpd_add_route.
 * Handlers run on the HTTP thread, so whatever they touch must be thread-safe, and they must
 * not block: one that waits for something (a Kafka acknowledgement) defers its answer.
 *
 * Budgets, so that a slow or hostile client cannot starve probes and unsubscribes: at most
 * NC_HTTPD_CONNECTIONS connections, NC_HTTPD_CONNECTIONS_PER_IP of them from one address;
 * a request (headers and body) must arrive within NC_HTTPD_REQUEST_DEADLINE_S of its first
 * byte however slowly it trickles in (the connection is closed otherwise), and a connection
 * idle for NC_HTTPD_IDLE_TIMEOUT_S is closed.  A request with conflicting Content-Length
 * headers, or with both Content-Length and Transfer-Encoding, gets 400 and the connection is
 * closed (a proxy in front might have framed it differently). */
#ifndef NC_HTTPD_H
#define NC_HTTPD_H

#include <stddef.h>

#include "nc_metrics.h"

/* Largest request body a route handler receives; larger ones get 413. */
#define NC_HTTPD_BODY_MAX   (64 * 1024)
#define NC_HTTPD_ROUTES_MAX 16

#define NC_HTTPD_CONNECTIONS        128
#define NC_HTTPD_CONNECTIONS_PER_IP 16
#define NC_HTTPD_REQUEST_DEADLINE_S 10
#define NC_HTTPD_IDLE_TIMEOUT_S     10

/* What a handler returns when it answers later with nc_httpd_deferred_reply(). */
#define NC_HTTPD_DEFERRED 0

typedef struct nc_httpd nc_httpd_t;
typedef struct nc_httpd_req nc_httpd_req_t;

/* What a handler fills in.  BODY is malloc'd (or NULL for none) and freed by the server;
 * BODY_LEN of 0 with a non-NULL BODY means strlen(BODY).  CONTENT_TYPE must outlive the
 * request (a string literal); NULL means "text/plain; charset=utf-8". */
typedef struct nc_httpd_resp {
        const char *content_type;
        char *body;
        size_t body_len;
        /* Added at the end (positional initialisers exist).  SET_COOKIE: malloc'd or NULL, the
         * value of one Set-Cookie header; the server frees it.  LOCATION: NULL or the target of
         * a redirect (send it with status 303); NOT freed: it must outlive the request (a
         * literal or a string owned by the handler's opaque). */
        char *set_cookie;
        const char *location;
} nc_httpd_resp_t;

/* Returns the HTTP status (100-599; anything else becomes 500), or NC_HTTPD_DEFERRED after
 * nc_httpd_req_defer(). */
typedef int nc_httpd_handler_fn(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque);

/* A request whose answer comes later, from any thread; the connection waits without holding
 * the HTTP thread (and without the request deadline). */
typedef struct nc_httpd_deferred nc_httpd_deferred_t;

/* LISTEN is "host:port", "[v6addr]:port" or ":port" (all interfaces, IPv6 and IPv4 where
 * possible); port 0 picks a free port, see nc_httpd_port().  METRICS may be NULL (empty
 * /metrics); it must outlive the server.  Errors name LISTEN, the address and the port
 * ("listen \"127.0.0.1:9464\": cannot bind 127.0.0.1 port 9464: Address already in use"). */
nc_httpd_t *nc_httpd_start(const char *listen, nc_metrics_t *metrics, char *errstr,
                           size_t errstr_size);
/* A listener without /metrics, /healthz and /readyz (404), for routes that face the
 * Internet; the same budgets and deadlines. */
nc_httpd_t *nc_httpd_start_public(const char *listen, char *errstr, size_t errstr_size);
/* Stops the thread, closes the socket and frees H (NULL is fine).  Requests still deferred
 * get 503 "shutting down"; their later nc_httpd_deferred_reply() only frees. */
void nc_httpd_stop(nc_httpd_t *h);
/* The port actually bound. */
int nc_httpd_port(nc_httpd_t *h);

void nc_httpd_set_ready(nc_httpd_t *h, int ready);
/* Why /readyz says 503 ("kafka: no brokers"); copied; NULL clears it. */
void nc_httpd_set_ready_reason(nc_httpd_t *h, const char *reason);

/* Liveness for /healthz: FN returns 1 if the process is live, else 0 with a reason in
 * WHY[0..SIZE) ("main loop stalled for 31 s").  Called on the HTTP thread at each /healthz
 * request, so it must be thread-safe and must not block: read an atomic heartbeat stamp
 * that the main loop sets, never ask the loop.  NULL: always live. */
typedef int nc_httpd_live_fn(void *opaque, char *why, size_t size);
void nc_httpd_set_live(nc_httpd_t *h, nc_httpd_live_fn *fn, void *opaque);

/* Routes PATH (exact match, without the query string) to FN for every method; FN decides
 * which methods it accepts.  Returns -1 if PATH is taken (built-in, unless public, or added
 * before), does not start with '/', or the table is full. */
int nc_httpd_add_route(nc_httpd_t *h, const char *path, nc_httpd_handler_fn *fn, void *opaque);

/* Request accessors, valid during the handler call. */
const char *nc_httpd_req_method(const nc_httpd_req_t *req);
const char *nc_httpd_req_path(const nc_httpd_req_t *req);
/* A query-string argument, decoded; NULL if absent. */
const char *nc_httpd_req_query(const nc_httpd_req_t *req, const char *key);
/* A request header (case-insensitive name); NULL if absent. */
const char *nc_httpd_req_header(const nc_httpd_req_t *req, const char *name);
/* The raw request body, NUL-terminated ("" if none). */
const char *nc_httpd_req_body(const nc_httpd_req_t *req, size_t *len);
/* The first KEY field of an application/x-www-form-urlencoded body, decoded ('+' and %XX),
 * malloc'd; NULL if absent, the body is not a form or the value is not valid (%00, bad %). */
char *nc_httpd_req_form(const nc_httpd_req_t *req, const char *key);
/* Every KEY field of a urlencoded body (checkbox groups), decoded, in body order: a malloc'd
 * NULL-terminated array of malloc'd strings, *N its count (an empty list is {NULL}, *N = 0);
 * NULL only when the body is not a valid form.  Free with nc_httpd_form_list_free(). */
char **nc_httpd_req_form_list(const nc_httpd_req_t *req, const char *key, size_t *n);
void nc_httpd_form_list_free(char **list);
/* Value of cookie NAME from the Cookie header (owned by the request), or NULL if absent. */
const char *nc_httpd_req_cookie(const nc_httpd_req_t *req, const char *name);
/* The peer's address as text (IPv4 dotted or IPv6) into BUF; 0 or -1.  X-Forwarded-For is never
 * trusted: behind a proxy every client has the proxy's address. */
int nc_httpd_req_client_ip(const nc_httpd_req_t *req, char *buf, size_t size);

/* Called by a handler (which then returns NC_HTTPD_DEFERRED): the caller owns the returned
 * handle until it passes it to nc_httpd_deferred_reply(), exactly once. */
nc_httpd_deferred_t *nc_httpd_req_defer(const nc_httpd_req_t *req);
/* Answers a deferred request with STATUS and RESP (its body is taken over, as a handler's
 * would be) and releases D; from any thread, even after nc_httpd_stop() (then it only
 * frees). */
void nc_httpd_deferred_reply(nc_httpd_deferred_t *d, int status, nc_httpd_resp_t *resp);

#endif
