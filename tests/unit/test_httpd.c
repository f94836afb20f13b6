/* Unit tests for common/nc_httpd.c: the built-in endpoints, added routes with query strings
 * and form bodies, body limits and listen addresses, over real HTTP with libcurl. */
#include "nc_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "nc_health.h"
#include "nc_httpd.h"
#include "nc_log.h"
#include "nc_metrics.h"

struct fetch {
        long status;
        char *body;
        size_t len;
        char ctype[128];
        char allow[64];
        char headers[4096]; /* every response header line, CRLF-terminated */
        CURLcode rc;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
        struct fetch *f = arg;

        f->body = realloc(f->body, f->len + size * n + 1);
        assert_non_null(f->body);
        memcpy(f->body + f->len, p, size * n);
        f->len += size * n;
        f->body[f->len] = '\0';
        return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
        struct fetch *f = arg;
        size_t len = size * n;

        size_t used = strlen(f->headers);

        if (len > 7 && !strncasecmp(p, "Allow: ", 7))
                snprintf(f->allow, sizeof(f->allow), "%.*s", (int)(len - 9), p + 7);
        snprintf(f->headers + used, sizeof(f->headers) - used, "%.*s", (int)len, p);
        return len;
}

/* METHOD on http://127.0.0.1:PORT/PATH; BODY (if any) as the request body with CTYPE
 * (NULL: form), sent chunked when CHUNKED; HEADER (if any) one more request header line. */
static void fetch_hdr(struct fetch *f, int port, const char *method, const char *path,
                      const char *body, size_t body_len, const char *ctype, int chunked,
                      const char *header)
{
        struct curl_slist *hdrs = NULL;
        char url[512], hdr[160];
        char *ct = NULL;
        CURL *c = curl_easy_init();

        assert_non_null(c);
        memset(f, 0, sizeof(*f));
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, f);
        if (!strcmp(method, "HEAD"))
                curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (strcmp(method, "GET"))
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
                if (ctype) {
                        snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
                        hdrs = curl_slist_append(hdrs, hdr);
                }
                if (chunked) {
                        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
                        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
                }
                /* Answer at once instead of waiting a second for "100 Continue". */
                hdrs = curl_slist_append(hdrs, "Expect:");
        }
        if (header)
                hdrs = curl_slist_append(hdrs, header);
        if (hdrs)
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        f->rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f->status);
        if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
                snprintf(f->ctype, sizeof(f->ctype), "%s", ct);
        if (!f->body)
                f->body = calloc(1, 1);
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(c);
}

static void fetch(struct fetch *f, int port, const char *method, const char *path, const char *body,
                  size_t body_len, const char *ctype, int chunked)
{
        fetch_hdr(f, port, method, path, body, body_len, ctype, chunked, NULL);
}

static void get(struct fetch *f, int port, const char *path)
{
        fetch(f, port, "GET", path, NULL, 0, NULL, 0);
}

static void expect(int port, const char *method, const char *path, long status, const char *body)
{
        struct fetch f;

        fetch(&f, port, method, path, NULL, 0, NULL, 0);
        assert_int_equal(f.rc, CURLE_OK);
        assert_int_equal(f.status, status);
        assert_string_equal(f.body, body);
        free(f.body);
}

static void test_builtin(void **state)
{
        nc_metrics_t *m = nc_metrics_new();
        nc_metric_t *c = nc_metrics_counter(m, "noticecast_published_total", "Notices.");
        char err[256] = "", *text;
        struct fetch f;
        nc_httpd_t *h;
        int port;

        (void)state;
        h = nc_httpd_start("127.0.0.1:0", m, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        assert_true(port > 0 && port < 65536);

        get(&f, port, "/healthz");
        assert_int_equal(f.status, 200);
        assert_string_equal(f.body, "ok\n");
        assert_string_equal(f.ctype, "text/plain; charset=utf-8");
        free(f.body);

        /* /metrics shows exactly what the registry renders, live. */
        nc_metrics_inc(c, "topic=\"notices\"", 3);
        get(&f, port, "/metrics");
        assert_int_equal(f.status, 200);
        assert_string_equal(f.ctype, "text/plain; version=0.0.4; charset=utf-8");
        text = nc_metrics_render(m);
        assert_string_equal(f.body, text);
        assert_non_null(strstr(f.body, "\nnoticecast_published_total{topic=\"notices\"} 3\n"));
        free(text);
        free(f.body);
        nc_metrics_inc(c, "topic=\"notices\"", 1);
        get(&f, port, "/metrics?ignored=1");
        assert_non_null(strstr(f.body, "\nnoticecast_published_total{topic=\"notices\"} 4\n"));
        free(f.body);

        /* Not ready until told so; the reason shows in the 503 body. */
        expect(port, "GET", "/readyz", 503, "not ready\n");
        nc_httpd_set_ready_reason(h, "kafka: no brokers");
        expect(port, "GET", "/readyz", 503, "not ready: kafka: no brokers\n");
        nc_httpd_set_ready_reason(h, "kafka: joining group");
        expect(port, "GET", "/readyz", 503, "not ready: kafka: joining group\n");
        nc_httpd_set_ready(h, 1);
        expect(port, "GET", "/readyz", 200, "ready\n");
        nc_httpd_set_ready(h, 0);
        expect(port, "GET", "/readyz", 503, "not ready: kafka: joining group\n");
        nc_httpd_set_ready_reason(h, NULL);
        expect(port, "GET", "/readyz", 503, "not ready\n");

        /* HEAD works, other methods are refused with Allow, unknown paths are 404. */
        expect(port, "HEAD", "/healthz", 200, "");
        fetch(&f, port, "POST", "/metrics", "a=b", 3, NULL, 0);
        assert_int_equal(f.status, 405);
        assert_string_equal(f.allow, "GET, HEAD");
        free(f.body);
        expect(port, "DELETE", "/readyz", 405, "method not allowed\n");
        expect(port, "GET", "/", 404, "not found\n");
        expect(port, "GET", "/metrics/", 404, "not found\n");
        expect(port, "GET", "/nope?x=1", 404, "not found\n");
        /* Still serving after all of that. */
        expect(port, "GET", "/healthz", 200, "ok\n");

        nc_httpd_stop(h);
        nc_metrics_free(m);
}

/* Echoes what it got: method, the "token" query argument, the form fields "a" and "b" and the
 * body length. */
static int echo_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *token = nc_httpd_req_query(req, "token");
        char *a = nc_httpd_req_form(req, "a"), *b = nc_httpd_req_form(req, "b");
        size_t len;

        int n;

        /* Runs on the HTTP thread: no cmocka assertions here, the client checks the reply. */
        (*(int *)opaque)++;
        nc_httpd_req_body(req, &len);
        n = asprintf(&resp->body, "%s token=%s a=%s b=%s len=%zu", nc_httpd_req_method(req),
                     token ? token : "(null)", a ? a : "(null)", b ? b : "(null)", len);
        resp->content_type = "text/x-echo";
        free(a);
        free(b);
        if (n < 0 || strcmp(nc_httpd_req_path(req), "/echo")) {
                resp->body = n < 0 ? NULL : resp->body;
                return 500;
        }
        return !strcmp(nc_httpd_req_method(req), "PUT") ? 202 : 200;
}

static int json_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *ok = nc_httpd_req_header(req, "X-Test");

        (void)opaque;
        if (strcmp(nc_httpd_req_method(req), "GET"))
                return 405;
        resp->content_type = "application/json";
        resp->body = strdup(ok ? "{\"x\":1}" : "{}");
        resp->body_len = 0; /* strlen */
        return 200;
}

static int bad_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        (void)req;
        (void)opaque;
        resp->body = strdup("leaks if not freed");
        return 42;
}

static int empty_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        (void)req;
        (void)resp;
        (void)opaque;
        return 204;
}

static void expect_echo(int port, const char *method, const char *path, const char *body,
                        const char *ctype, int chunked, long status, const char *reply)
{
        struct fetch f;

        fetch(&f, port, method, path, body, body ? strlen(body) : 0, ctype, chunked);
        assert_int_equal(f.rc, CURLE_OK);
        assert_int_equal(f.status, status);
        assert_string_equal(f.body, reply);
        assert_string_equal(f.ctype, "text/x-echo");
        free(f.body);
}

static void test_routes(void **state)
{
        static const char form[] = "application/x-www-form-urlencoded";
        char err[256] = "", path[32];
        int calls = 0, port, i;
        nc_httpd_t *h;
        struct fetch f;

        (void)state;
        h = nc_httpd_start("127.0.0.1:0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        assert_int_equal(nc_httpd_add_route(h, "/echo", echo_handler, &calls), 0);
        assert_int_equal(nc_httpd_add_route(h, "/json", json_handler, NULL), 0);
        assert_int_equal(nc_httpd_add_route(h, "/bad", bad_handler, NULL), 0);
        assert_int_equal(nc_httpd_add_route(h, "/empty", empty_handler, NULL), 0);
        /* Taken, built-in or malformed paths are refused. */
        assert_int_equal(nc_httpd_add_route(h, "/echo", json_handler, NULL), -1);
        assert_int_equal(nc_httpd_add_route(h, "/metrics", json_handler, NULL), -1);
        assert_int_equal(nc_httpd_add_route(h, "/readyz", json_handler, NULL), -1);
        assert_int_equal(nc_httpd_add_route(h, "echo2", json_handler, NULL), -1);

        expect_echo(port, "GET", "/echo?token=abc%2Fdef&x", NULL, NULL, 0, 200,
                    "GET token=abc/def a=(null) b=(null) len=0");
        /* The RFC 8058 one-click shape: token in the URL, form body. */
        expect_echo(port, "POST", "/echo?token=t1", "a=One-Click&b=x%20y+z%26w", form, 0, 200,
                    "POST token=t1 a=One-Click b=x y z&w len=25");
        expect_echo(port, "POST", "/echo", "b=2&a=1&a=second",
                    "Application/X-WWW-Form-Urlencoded; "
                    "charset=utf-8",
                    0, 200, "POST token=(null) a=1 b=2 len=16");
        expect_echo(port, "POST", "/echo", "a=&b", form, 0, 200, "POST token=(null) a= b= len=4");
        expect_echo(port, "PUT", "/echo", "a=1", NULL, 0, 202,
                    "PUT token=(null) a=1 b=(null) len=3");
        /* Malformed escapes and encoded NULs are not values; other types are not forms. */
        expect_echo(port, "POST", "/echo", "a=%00&b=%zz", form, 0, 200,
                    "POST token=(null) a=(null) b=(null) len=11");
        expect_echo(port, "POST", "/echo", "a=%4&b=%", form, 0, 200,
                    "POST token=(null) a=(null) b=(null) len=8");
        expect_echo(port, "POST", "/echo", "a=1", "multipart/form-data; boundary=x", 0, 200,
                    "POST token=(null) a=(null) b=(null) len=3");
        expect_echo(port, "POST", "/echo", "a=1", "application/x-www-form-urlencodedx", 0, 200,
                    "POST token=(null) a=(null) b=(null) len=3");
        /* A chunked body (no Content-Length) arrives whole too. */
        expect_echo(port, "POST", "/echo", "a=chunky&b=bacon", form, 1, 200,
                    "POST token=(null) a=chunky b=bacon len=16");

        fetch(&f, port, "GET", "/json", NULL, 0, NULL, 0);
        assert_int_equal(f.status, 200);
        assert_string_equal(f.ctype, "application/json");
        assert_string_equal(f.body, "{}");
        free(f.body);
        expect(port, "DELETE", "/json", 405, "");
        expect(port, "GET", "/bad", 500, "internal error\n");
        expect(port, "GET", "/empty", 204, "");
        expect(port, "GET", "/echo/", 404, "not found\n");
        assert_int_equal(calls, 10);

        /* The table is bounded. */
        for (i = 4; i < NC_HTTPD_ROUTES_MAX; i++) {
                snprintf(path, sizeof(path), "/r%d", i);
                assert_int_equal(nc_httpd_add_route(h, path, empty_handler, NULL), 0);
        }
        assert_int_equal(nc_httpd_add_route(h, "/one-too-many", empty_handler, NULL), -1);
        expect(port, "GET", "/r15", 204, "");
        nc_httpd_stop(h);
}

static void test_body_limit(void **state)
{
        static const char form[] = "application/x-www-form-urlencoded";
        char err[256] = "", *big;
        int calls = 0, port;
        struct fetch f;
        nc_httpd_t *h;

        (void)state;
        h = nc_httpd_start("127.0.0.1:0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        assert_int_equal(nc_httpd_add_route(h, "/echo", echo_handler, &calls), 0);
        big = malloc(NC_HTTPD_BODY_MAX + 2);
        assert_non_null(big);
        memcpy(big, "a=", 2);
        memset(big + 2, 'x', NC_HTTPD_BODY_MAX);
        big[NC_HTTPD_BODY_MAX] = '\0';

        /* Exactly the limit: accepted, whichever way it is sent. */
        fetch(&f, port, "POST", "/echo", big, NC_HTTPD_BODY_MAX, form, 0);
        assert_int_equal(f.status, 200);
        assert_true(!strncmp(f.body, "POST token=(null) a=xxxx", 24));
        assert_non_null(strstr(f.body, " b=(null) len=65536"));
        free(f.body);
        fetch(&f, port, "POST", "/echo", big, NC_HTTPD_BODY_MAX, form, 1);
        assert_int_equal(f.status, 200);
        assert_non_null(strstr(f.body, " len=65536"));
        free(f.body);
        assert_int_equal(calls, 2);

        /* One byte more: 413 before the body is read when the length is announced ... */
        big[NC_HTTPD_BODY_MAX] = 'x';
        big[NC_HTTPD_BODY_MAX + 1] = '\0';
        fetch(&f, port, "POST", "/echo", big, NC_HTTPD_BODY_MAX + 1, form, 0);
        assert_int_equal(f.status, 413);
        assert_string_equal(f.body, "request body too large\n");
        free(f.body);
        /* ... and the connection dropped when it is not. */
        fetch(&f, port, "POST", "/echo", big, NC_HTTPD_BODY_MAX + 1, form, 1);
        assert_int_not_equal(f.rc, CURLE_OK);
        assert_int_equal(f.status, 0);
        free(f.body);
        assert_int_equal(calls, 2);

        expect(port, "GET", "/healthz", 200, "ok\n");
        free(big);
        nc_httpd_stop(h);
}

static void expect_bad_listen(const char *listen, const char *msg)
{
        char err[256] = "";

        assert_null(nc_httpd_start(listen, NULL, err, sizeof(err)));
        if (!strstr(err, msg))
                fail_msg("%s: \"%s\" does not contain \"%s\"", listen, err, msg);
}

static void test_listen(void **state)
{
        char err[256] = "", addr[64];
        nc_httpd_t *h, *h2;
        int port;

        (void)state;
        expect_bad_listen("127.0.0.1", "expected host:port or :port");
        expect_bad_listen("127.0.0.1:", "bad port");
        expect_bad_listen("127.0.0.1:65536", "bad port");
        expect_bad_listen("127.0.0.1:-1", "bad port");
        expect_bad_listen("127.0.0.1:+80", "bad port");
        expect_bad_listen("127.0.0.1:80x", "bad port");
        expect_bad_listen("::1:9464", "put IPv6 addresses in brackets");
        expect_bad_listen("[::1]9464", "expected [address]:port");
        expect_bad_listen("[]:9464", "bad address");
        expect_bad_listen("300.1.1.1:9464", "listen \"300.1.1.1:9464\": ");

        /* ":port" listens everywhere; reachable over IPv4 loopback. */
        h = nc_httpd_start(":0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        assert_true(port > 0);
        expect(port, "GET", "/healthz", 200, "ok\n");

        /* A port in use is an error that says so, naming the address and port tried. */
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
        h2 = nc_httpd_start(addr, NULL, err, sizeof(err));
        assert_null(h2);
        assert_true(!strncmp(err, "listen \"127.0.0.1:", 18));
        {
                char want[64];

                snprintf(want, sizeof(want), "cannot bind 127.0.0.1 port %d: ", port);
                if (!strstr(err, want) || !strstr(err, "in use"))
                        fail_msg("\"%s\" does not say \"%s...in use\"", err, want);
        }
        nc_httpd_stop(h);

        /* IPv6 loopback, where the host has it. */
        h = nc_httpd_start("[::1]:0", NULL, err, sizeof(err));
        if (h) {
                assert_true(nc_httpd_port(h) > 0);
                nc_httpd_stop(h);
        } else {
                print_message("no IPv6 loopback here: %s\n", err);
        }
        h = nc_httpd_start("localhost:0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        nc_httpd_stop(h);
        nc_httpd_stop(NULL);
}

/* ---- raw sockets: framing and connection budgets ------------------------------------------ */

/* A connection to 127.0.0.1:PORT from SRC (NULL: any). */
static int raw_connect(int port, const char *src)
{
        struct sockaddr_in sin;
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        assert_true(fd >= 0);
        if (src) {
                memset(&sin, 0, sizeof(sin));
                sin.sin_family = AF_INET;
                inet_pton(AF_INET, src, &sin.sin_addr);
                assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        }
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
        assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        return fd;
}

/* Sends REQ and reads until the server closes (5 s at most); the answer in BUF. */
static size_t raw_exchange(int port, const char *req, char *buf, size_t size)
{
        int fd = raw_connect(port, NULL);
        size_t n = 0;

        assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
        for (;;) {
                struct pollfd p = {fd, POLLIN, 0};
                ssize_t r;

                if (poll(&p, 1, 5000) <= 0 || n + 1 >= size)
                        break;
                if ((r = recv(fd, buf + n, size - n - 1, 0)) <= 0)
                        break;
                n += (size_t)r;
        }
        buf[n] = '\0';
        close(fd);
        return n;
}

/* 1 if the server closed FD within MS milliseconds. */
static int closed_within(int fd, int ms)
{
        struct pollfd p = {fd, POLLIN, 0};
        char c;

        if (poll(&p, 1, ms) <= 0)
                return 0;
        return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void test_framing(void **state)
{
        static const char *const bad[] = {
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n"
            "hello",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\n"
            "hello",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\na=1&",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked"
            "\r\n\r\n0\r\n\r\n",
        };
        char err[256] = "", buf[4096];
        int calls = 0, port;
        nc_httpd_t *h;
        size_t i;

        (void)state;
        h = nc_httpd_start("127.0.0.1:0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        assert_int_equal(nc_httpd_add_route(h, "/echo", echo_handler, &calls), 0);
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                raw_exchange(port, bad[i], buf, sizeof(buf));
                if (strncmp(buf, "HTTP/1.1 400 ", 13))
                        fail_msg("request %zu: %.80s", i, buf);
                /* One answer only: the rest is never read as a next request. */
                assert_null(strstr(buf + 1, "HTTP/1."));
        }
        assert_int_equal(calls, 0);
        /* Identical values are one length (RFC 9110 8.6). */
        raw_exchange(port,
                     "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n",
                     buf, sizeof(buf));
        assert_true(!strncmp(buf, "HTTP/1.1 200 ", 13));
        nc_httpd_stop(h);
}

static void test_per_ip_budget(void **state)
{
        int fds[NC_HTTPD_CONNECTIONS_PER_IP + 4];
        char err[256] = "";
        int port, n, closed = 0;
        nc_httpd_t *h;
        struct fetch f;
        CURL *c;

        (void)state;
        h = nc_httpd_start("127.0.0.1:0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        /* Idle connections from one address: those past its budget are closed at once. */
        for (n = 0; n < (int)(sizeof(fds) / sizeof(fds[0])); n++)
                fds[n] = raw_connect(port, "127.0.0.1");
        for (n = 0; n < (int)(sizeof(fds) / sizeof(fds[0])); n++)
                closed += closed_within(fds[n], n < NC_HTTPD_CONNECTIONS_PER_IP ? 50 : 2000);
        assert_int_equal(closed, 4);
        /* Another address is still served. */
        c = curl_easy_init();
        assert_non_null(c);
        memset(&f, 0, sizeof(f));
        {
                char url[64];

                snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
                curl_easy_setopt(c, CURLOPT_URL, url);
        }
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_INTERFACE, "127.0.0.2");
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f.status);
        assert_int_equal(f.status, 200);
        free(f.body);
        curl_easy_cleanup(c);
        for (n = 0; n < (int)(sizeof(fds) / sizeof(fds[0])); n++)
                close(fds[n]);
        nc_httpd_stop(h);
}

/* ---- deferred answers ------------------------------------------------------------------- */

struct later {
        nc_httpd_deferred_t *d;
        int delay_ms;
        int status;
        int cookie; /* answer with a Set-Cookie and a Location */
};

static void *reply_later(void *arg)
{
        struct later *l = arg;
        nc_httpd_resp_t r = {"text/plain", NULL, 0, NULL, NULL};

        usleep((useconds_t)l->delay_ms * 1000);
        r.body = strdup("answered later\n");
        if (l->cookie) {
                r.set_cookie = strdup("later=1; HttpOnly");
                r.location = "/after";
        }
        nc_httpd_deferred_reply(l->d, l->status, &r);
        free(l);
        return NULL;
}

/* ?ms=N: answered by another thread N ms later; ?ms=0: answered before the handler returns;
 * ?ms=-1: kept (the test answers it after stopping the server). */
static nc_httpd_deferred_t *kept;

static int defer_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *ms = nc_httpd_req_query(req, "ms");
        struct later *l = calloc(1, sizeof(*l));
        pthread_t t;

        (void)resp;
        (void)opaque;
        assert_non_null(l);
        l->d = nc_httpd_req_defer(req);
        assert_non_null(l->d);
        assert_null(nc_httpd_req_defer(req)); /* once */
        l->delay_ms = ms ? atoi(ms) : 0;
        l->status = 202;
        l->cookie = nc_httpd_req_query(req, "cookie") != NULL;
        if (l->delay_ms < 0) {
                kept = l->d;
                free(l);
        } else if (l->delay_ms == 0) {
                reply_later(l);
        } else {
                assert_int_equal(pthread_create(&t, NULL, reply_later, l), 0);
                pthread_detach(t);
        }
        return NC_HTTPD_DEFERRED;
}

struct bg_fetch {
        int port;
        const char *path;
        struct fetch f;
};

static void *fetch_bg(void *arg)
{
        struct bg_fetch *b = arg;

        fetch(&b->f, b->port, "POST", b->path, "a=1", 3, NULL, 0);
        return NULL;
}

static void test_deferred(void **state)
{
        struct bg_fetch bg = {0, "/later?ms=1500", {0}};
        char err[256] = "";
        pthread_t t;
        struct fetch f;
        nc_httpd_t *h;
        int port, i;

        (void)state;
        h = nc_httpd_start("127.0.0.1:0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        assert_int_equal(nc_httpd_add_route(h, "/later", defer_handler, NULL), 0);

        /* Answered before the handler even returned. */
        fetch(&f, port, "POST", "/later?ms=0", "a=1", 3, NULL, 0);
        assert_int_equal(f.status, 202);
        assert_string_equal(f.body, "answered later\n");
        free(f.body);

        /* A deferred answer carries its cookie and redirect too (from another thread). */
        fetch(&f, port, "POST", "/later?ms=50&cookie=1", "a=1", 3, NULL, 0);
        assert_int_equal(f.status, 202);
        assert_non_null(strstr(f.headers, "\r\nSet-Cookie: later=1; HttpOnly\r\n"));
        assert_non_null(strstr(f.headers, "\r\nLocation: /after\r\n"));
        free(f.body);
        fetch(&f, port, "POST", "/later?ms=0&cookie=1", "a=1", 3, NULL, 0);
        assert_int_equal(f.status, 202);
        assert_non_null(strstr(f.headers, "\r\nSet-Cookie: later=1; HttpOnly\r\n"));
        free(f.body);

        /* While one request waits, the HTTP thread serves others. */
        bg.port = port;
        assert_int_equal(pthread_create(&t, NULL, fetch_bg, &bg), 0);
        usleep(200 * 1000);
        for (i = 0; i < 5; i++)
                expect(port, "GET", "/healthz", 200, "ok\n");
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(bg.f.status, 202);
        assert_string_equal(bg.f.body, "answered later\n");
        free(bg.f.body);

        /* Stopping answers what still waits (503) and a later reply only frees. */
        bg.path = "/later?ms=-1";
        memset(&bg.f, 0, sizeof(bg.f));
        kept = NULL;
        assert_int_equal(pthread_create(&t, NULL, fetch_bg, &bg), 0);
        for (i = 0; i < 200 && !kept; i++)
                usleep(10 * 1000);
        assert_non_null(kept);
        nc_httpd_stop(h);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_true(bg.f.status == 503 || bg.f.status == 0);
        free(bg.f.body);
        {
                /* Dropped: the body and the cookie are freed (ASan would see a leak). */
                nc_httpd_resp_t r = {NULL, strdup("too late\n"), 0, strdup("late=1"), "/x"};

                nc_httpd_deferred_reply(kept, 200, &r);
        }
}

static int setup(void **state)
{
        (void)state;
        return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown(void **state)
{
        (void)state;
        curl_global_cleanup();
        return 0;
}

/* A heartbeat stamp as a daemon's main loop sets it, read by the liveness callback through
 * nc_health_live(), as the daemons do. */
struct beat {
        int64_t stamp_ms; /* -1: no heartbeat yet */
        int64_t now_ms;
        int calls;
};

static int beat_live(void *opaque, char *why, size_t size)
{
        struct beat *b = opaque;

        b->calls++;
        return nc_health_live(b->stamp_ms < 0 ? -1 : b->now_ms - b->stamp_ms, 30000, why, size);
}

static void test_healthz_heartbeat(void **state)
{
        struct beat b = {-1, 1000000, 0};
        char err[256] = "";
        nc_httpd_t *h;
        int port;

        (void)state;
        h = nc_httpd_start("127.0.0.1:0", NULL, err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        nc_httpd_set_live(h, beat_live, &b);
        expect(port, "GET", "/healthz", 200, "ok\n"); /* starting: no heartbeat yet */
        b.stamp_ms = b.now_ms - 1000;
        expect(port, "GET", "/healthz", 200, "ok\n");
        /* The loop stopped beating: the HTTP thread, itself fine, says 503 from the stamp. */
        b.stamp_ms = b.now_ms - 31000;
        expect(port, "GET", "/healthz", 503, "not ok: main loop stalled for 31 s\n");
        expect(port, "HEAD", "/healthz", 503, "");
        /* Readiness is not liveness: /readyz does not ask the callback. */
        nc_httpd_set_ready(h, 1);
        expect(port, "GET", "/readyz", 200, "ready\n");
        b.stamp_ms = b.now_ms; /* beating again */
        expect(port, "GET", "/healthz", 200, "ok\n");
        assert_int_equal(b.calls, 5); /* asked at every /healthz, never cached */
        nc_httpd_set_live(h, NULL, NULL);
        b.stamp_ms = 0;
        expect(port, "GET", "/healthz", 200, "ok\n");
        assert_int_equal(b.calls, 5);
        nc_httpd_stop(h);
}

static int hello_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        (void)req;
        (void)opaque;
        resp->body = strdup("hello\n");
        return 200;
}

/* The public listener: its routes only, never the admin endpoints. */
static void test_public_listener(void **state)
{
        nc_metrics_t *m = nc_metrics_new();
        char err[256] = "";
        nc_httpd_t *pub, *admin;
        int pport, aport;

        (void)state;
        nc_metrics_inc(nc_metrics_counter(m, "noticecast_secret_total", "Admin only."), NULL, 1);
        pub = nc_httpd_start_public("127.0.0.1:0", err, sizeof(err));
        if (!pub)
                fail_msg("%s", err);
        admin = nc_httpd_start("127.0.0.1:0", m, err, sizeof(err));
        if (!admin)
                fail_msg("%s", err);
        pport = nc_httpd_port(pub);
        aport = nc_httpd_port(admin);
        assert_int_equal(nc_httpd_add_route(pub, "/unsubscribe", hello_handler, NULL), 0);
        expect(pport, "GET", "/unsubscribe", 200, "hello\n");
        expect(pport, "GET", "/metrics", 404, "not found\n");
        expect(pport, "GET", "/healthz", 404, "not found\n");
        expect(pport, "GET", "/readyz", 404, "not found\n");
        expect(pport, "HEAD", "/metrics", 404, "");
        expect(pport, "POST", "/metrics", 404, "not found\n");
        /* The admin one serves them, and not the public route. */
        expect(aport, "GET", "/unsubscribe", 404, "not found\n");
        expect(aport, "GET", "/healthz", 200, "ok\n");
        {
                struct fetch f;

                get(&f, aport, "/metrics");
                assert_int_equal(f.status, 200);
                assert_non_null(strstr(f.body, "noticecast_secret_total 1"));
                free(f.body);
        }
        nc_httpd_stop(pub);
        nc_httpd_stop(admin);
        nc_metrics_free(m);
}

/* ---- cookies, client address, form lists, Set-Cookie and Location -------------------------- */

static int cookie_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *sid = nc_httpd_req_cookie(req, "sid"), *a = nc_httpd_req_cookie(req, "a");
        const char *b = nc_httpd_req_cookie(req, "b");
        char ip[64] = "-";

        (void)opaque;
        if (nc_httpd_req_client_ip(req, ip, sizeof(ip)) != 0)
                snprintf(ip, sizeof(ip), "(error)");
        /* SID looked up again after others: the values stay valid for the whole call. */
        if (asprintf(&resp->body, "sid=%s a=%s b=%s ip=%s same=%d", sid ? sid : "(null)",
                     a ? a : "(null)", b ? b : "(null)", ip,
                     sid == nc_httpd_req_cookie(req, "sid")) < 0)
                resp->body = NULL;
        return 200;
}

/* Every "t" field: "n=N [v1][v2]..." or "invalid". */
static int list_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        size_t n = 99, i, used;
        char **list = nc_httpd_req_form_list(req, "t", &n);
        char out[512];

        (void)opaque;
        if (!list) {
                resp->body = strdup("invalid");
                return 200;
        }
        used = (size_t)snprintf(out, sizeof(out), "n=%zu ", n);
        for (i = 0; list[i] && used < sizeof(out); i++)
                used += (size_t)snprintf(out + used, sizeof(out) - used, "[%s]", list[i]);
        if (i != n)
                snprintf(out, sizeof(out), "count %zu but %zu entries", n, i);
        nc_httpd_form_list_free(list);
        resp->body = strdup(out);
        return 200;
}

static int redirect_handler(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        (void)opaque;
        if (nc_httpd_req_query(req, "bad"))
                resp->set_cookie = strdup("sid=x\r\nX-Injected: 1");
        else
                resp->set_cookie = strdup("sid=abc; Path=/; HttpOnly; SameSite=Strict");
        resp->location = "/done?ok=1";
        return 303;
}

static void expect_cookies(int port, const char *header, const char *reply)
{
        struct fetch f;

        fetch_hdr(&f, port, "GET", "/cookie", NULL, 0, NULL, 0, header);
        assert_int_equal(f.rc, CURLE_OK);
        assert_int_equal(f.status, 200);
        assert_string_equal(f.body, reply);
        free(f.body);
}

static void expect_list(int port, const char *body, const char *ctype, const char *reply)
{
        struct fetch f;

        fetch(&f, port, "POST", "/list", body, strlen(body), ctype, 0);
        assert_int_equal(f.status, 200);
        assert_string_equal(f.body, reply);
        free(f.body);
}

static void test_cookies_forms(void **state)
{
        static const char form[] = "application/x-www-form-urlencoded";
        char err[256] = "";
        struct fetch f;
        nc_httpd_t *h;
        int port;

        (void)state;
        h = nc_httpd_start_public("127.0.0.1:0", err, sizeof(err));
        if (!h)
                fail_msg("%s", err);
        port = nc_httpd_port(h);
        assert_int_equal(nc_httpd_add_route(h, "/cookie", cookie_handler, NULL), 0);
        assert_int_equal(nc_httpd_add_route(h, "/list", list_handler, NULL), 0);
        assert_int_equal(nc_httpd_add_route(h, "/go", redirect_handler, NULL), 0);

        /* Absent, one, several; exact names (no case folding, no prefixes); first one wins;
         * X-Forwarded-For never changes the client address. */
        expect_cookies(port, NULL, "sid=(null) a=(null) b=(null) ip=127.0.0.1 same=1");
        expect_cookies(port, "Cookie: sid=s3cr3t",
                       "sid=s3cr3t a=(null) b=(null) ip=127.0.0.1 same=1");
        expect_cookies(port, "Cookie: a=1; b=2;sid=xyz", "sid=xyz a=1 b=2 ip=127.0.0.1 same=1");
        expect_cookies(port, "Cookie: SID=up; sidx=long; xsid=pre; a=",
                       "sid=(null) a= b=(null) ip=127.0.0.1 same=1");
        expect_cookies(port, "Cookie: b=first; b=second; noeq; sid=\"quoted\"",
                       "sid=quoted a=(null) b=first ip=127.0.0.1 same=1");
        expect_cookies(port, "X-Forwarded-For: 203.0.113.9",
                       "sid=(null) a=(null) b=(null) ip=127.0.0.1 same=1");

        /* Form lists: none, one, three in body order, decoded; invalid -> NULL. */
        expect_list(port, "a=1&b=2", form, "n=0 ");
        expect_list(port, "", form, "n=0 ");
        expect_list(port, "t=one", form, "n=1 [one]");
        expect_list(port, "t=x&a=1&t=y+z&t=%C3%A9%26", form, "n=3 [x][y z][é&]");
        expect_list(port, "t=&t", form, "n=2 [][]");
        expect_list(port, "%74=enc&tt=no&T=no", form, "n=1 [enc]");
        expect_list(port, "t=ok&t=%zz", form, "invalid");
        expect_list(port, "t=%00", form, "invalid");
        expect_list(port, "t=1", "text/plain", "invalid");

        /* Set-Cookie and Location as the handler set them. */
        get(&f, port, "/go");
        assert_int_equal(f.status, 303);
        assert_non_null(
            strstr(f.headers, "\r\nSet-Cookie: sid=abc; Path=/; HttpOnly; SameSite=Strict\r\n"));
        assert_non_null(strstr(f.headers, "\r\nLocation: /done?ok=1\r\n"));
        free(f.body);
        /* A line break would split the header: refused, nothing injected. */
        get(&f, port, "/go?bad=1");
        assert_int_equal(f.status, 500);
        assert_null(strstr(f.headers, "X-Injected"));
        assert_null(strstr(f.headers, "Set-Cookie"));
        free(f.body);
        /* Routes without them send neither. */
        fetch_hdr(&f, port, "GET", "/cookie", NULL, 0, NULL, 0, NULL);
        assert_null(strstr(f.headers, "Set-Cookie"));
        assert_null(strstr(f.headers, "Location"));
        free(f.body);
        nc_httpd_stop(h);
}

static const char *const public_expected[] = {
    "\r\nContent-Security-Policy: default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'\r\n",
    "\r\nX-Content-Type-Options: nosniff\r\n",
    "\r\nReferrer-Policy: no-referrer\r\n",
    "\r\nX-Frame-Options: DENY\r\n",
    "\r\nCache-Control: no-store\r\n",
};

static void expect_security(int port, const char *method, const char *path, long status, int pub)
{
        struct fetch f;
        size_t i;

        fetch(&f, port, method, path, NULL, 0, NULL, 0);
        assert_int_equal(f.status, status);
        for (i = 0; i < sizeof(public_expected) / sizeof(public_expected[0]); i++) {
                const char *hit = strstr(f.headers, public_expected[i]);

                /* Admin: nosniff and no-store only. */
                if (pub || i == 1 || i == 4) {
                        if (!hit)
                                fail_msg("%s %s: no %s in\n%s", method, path, public_expected[i],
                                         f.headers);
                } else {
                        assert_null(hit);
                }
        }
        free(f.body);
}

static void test_security_headers(void **state)
{
        char err[256] = "";
        nc_httpd_t *pub, *admin;
        int pport, aport;

        (void)state;
        pub = nc_httpd_start_public("127.0.0.1:0", err, sizeof(err));
        if (!pub)
                fail_msg("%s", err);
        admin = nc_httpd_start("127.0.0.1:0", NULL, err, sizeof(err));
        if (!admin)
                fail_msg("%s", err);
        pport = nc_httpd_port(pub);
        aport = nc_httpd_port(admin);
        assert_int_equal(nc_httpd_add_route(pub, "/page", json_handler, NULL), 0);
        assert_int_equal(nc_httpd_add_route(admin, "/page", json_handler, NULL), 0);
        expect_security(pport, "GET", "/page", 200, 1);
        expect_security(pport, "DELETE", "/page", 405, 1);
        expect_security(pport, "GET", "/nope", 404, 1);
        expect_security(pport, "GET", "/metrics", 404, 1);
        expect_security(aport, "GET", "/page", 200, 0);
        expect_security(aport, "GET", "/healthz", 200, 0);
        expect_security(aport, "POST", "/metrics", 405, 0);
        expect_security(aport, "GET", "/nope", 404, 0);
        nc_httpd_stop(pub);
        nc_httpd_stop(admin);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_builtin),          cmocka_unit_test(test_routes),
            cmocka_unit_test(test_body_limit),       cmocka_unit_test(test_listen),
            cmocka_unit_test(test_framing),          cmocka_unit_test(test_per_ip_budget),
            cmocka_unit_test(test_deferred),         cmocka_unit_test(test_healthz_heartbeat),
            cmocka_unit_test(test_public_listener),  cmocka_unit_test(test_cookies_forms),
            cmocka_unit_test(test_security_headers),
        };

        /* The failing binds and the bad handler log warnings; keep the output readable. */
        nc_log_init("test_httpd", NC_LOG_ERROR);
        return cmocka_run_group_tests(tests, setup, teardown);
}
