/* The daemons' HTTP endpoint (libmicrohttpd, one internal polling thread):
 *
 *   GET /metrics  Prometheus text format 0.0.4 from an nc_metrics_t
 *   GET /healthz  200 "ok" while the process runs
 *   GET /readyz   200 "ready" once nc_httpd_set_ready(h, 1), else 503 "not ready: <reason>"
 *
 * HEAD works wherever GET does; other methods on these paths get 405, unknown paths 404.
 * Programs add their own routes (the mailer's one-click unsubscribe) with nc_httpd_add_route.
 * Handlers run on the HTTP thread, so whatever they touch must be thread-safe. */
#ifndef NC_HTTPD_H
#define NC_HTTPD_H

#include <stddef.h>

#include "nc_metrics.h"

/* Largest request body a route handler receives; larger ones get 413. */
#define NC_HTTPD_BODY_MAX   (64 * 1024)
#define NC_HTTPD_ROUTES_MAX 16

typedef struct nc_httpd nc_httpd_t;
typedef struct nc_httpd_req nc_httpd_req_t;

/* What a handler fills in.  BODY is malloc'd (or NULL for none) and freed by the server;
 * BODY_LEN of 0 with a non-NULL BODY means strlen(BODY).  CONTENT_TYPE must outlive the
 * request (a string literal); NULL means "text/plain; charset=utf-8". */
typedef struct nc_httpd_resp {
        const char *content_type;
        char *body;
        size_t body_len;
} nc_httpd_resp_t;

/* Returns the HTTP status (100-599; anything else becomes 500). */
typedef int nc_httpd_handler_fn(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque);

/* LISTEN is "host:port", "[v6addr]:port" or ":port" (all interfaces, IPv6 and IPv4 where
 * possible); port 0 picks a free port, see nc_httpd_port().  METRICS may be NULL (empty
 * /metrics); it must outlive the server. */
nc_httpd_t *nc_httpd_start(const char *listen, nc_metrics_t *metrics, char *errstr,
                           size_t errstr_size);
/* Stops the thread, closes the socket and frees H (NULL is fine). */
void nc_httpd_stop(nc_httpd_t *h);
/* The port actually bound. */
int nc_httpd_port(nc_httpd_t *h);

void nc_httpd_set_ready(nc_httpd_t *h, int ready);
/* Why /readyz says 503 ("kafka: no brokers"); copied; NULL clears it. */
void nc_httpd_set_ready_reason(nc_httpd_t *h, const char *reason);

/* Routes PATH (exact match, without the query string) to FN for every method; FN decides
 * which methods it accepts.  Returns -1 if PATH is taken (built-in or added before), does not
 * start with '/', or the table is full. */
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

#endif
