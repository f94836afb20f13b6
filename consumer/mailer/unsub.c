/* noticecast-mailer: RFC 8058 one-click unsubscribe.
 *
 *   token = base64url(subscriber id) "." base64url(HMAC-SHA256(secret, "unsubscribe\n" id))
 *
 * GET shows a page with a button (link scanners fetch URLs; they must not unsubscribe
 * anyone); POST — the RFC 8058 "List-Unsubscribe=One-Click" body or the button — writes a
 * tombstone for the subscriber on the subscribers topic.  A bad token gets 403. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "mailer.h"
#include "nc_httpd.h"
#include "nc_kafka.h"
#include "nc_sign.h"
#include "nc_util.h"

static void b64url(const unsigned char *in, size_t len, char *out, size_t size)
{
        char tmp[1024];
        size_t i, o = 0;

        if (nc_base64_encode(in, len, tmp, sizeof(tmp)) < 0) {
                out[0] = '\0';
                return;
        }
        for (i = 0; tmp[i] && o + 1 < size; i++) {
                if (tmp[i] == '=')
                        break;
                out[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
        }
        out[o] = '\0';
}

static int unb64url(const char *in, size_t len, unsigned char *out, size_t cap, size_t *olen)
{
        char tmp[1024];
        size_t i;

        if (len + 4 >= sizeof(tmp))
                return -1;
        for (i = 0; i < len; i++) {
                char c = in[i];

                if (c == '+' || c == '/' || c == '=')
                        return -1;
                tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
        }
        while (i % 4)
                tmp[i++] = '=';
        return nc_base64_decode(tmp, i, out, cap, olen);
}

static void mac(const ml_t *m, const char *id, unsigned char out[32])
{
        unsigned int len = 32;
        char msg[400];

        snprintf(msg, sizeof(msg), "unsubscribe\n%s", id);
        HMAC(EVP_sha256(), m->unsub_key, (int)m->unsub_key_len, (const unsigned char *)msg,
             strlen(msg), out, &len);
}

void ml_unsub_token(const ml_t *m, const char *id, char *out, size_t size)
{
        unsigned char h[32];
        char a[512], b[64];

        mac(m, id, h);
        b64url((const unsigned char *)id, strlen(id), a, sizeof(a));
        b64url(h, sizeof(h), b, sizeof(b));
        snprintf(out, size, "%s.%s", a, b);
}

int ml_unsub_verify(const ml_t *m, const char *token, char *id, size_t size)
{
        const char *dot = token ? strchr(token, '.') : NULL;
        unsigned char h[32], got[64];
        size_t idlen, glen;

        if (!dot ||
            unb64url(token, (size_t)(dot - token), (unsigned char *)id, size - 1, &idlen) != 0)
                return -1;
        id[idlen] = '\0';
        if (strlen(id) != idlen ||
            unb64url(dot + 1, strlen(dot + 1), got, sizeof(got), &glen) != 0 || glen != sizeof(h))
                return -1;
        mac(m, id, h);
        return CRYPTO_memcmp(h, got, sizeof(h)) == 0 ? 0 : -1;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<title>Unsubscribe</title></head>"
    "<body style=\"font-family: sans-serif; max-width: 36em; margin: 2em auto; "
    "line-height: 1.5\">";

static int page(nc_httpd_resp_t *resp, int status, const char *body)
{
        size_t n = strlen(page_head) + strlen(body) + 32;

        resp->content_type = "text/html; charset=utf-8";
        resp->body = nc_xmalloc(n);
        resp->body_len = (size_t)snprintf(resp->body, n, "%s%s</body></html>\n", page_head, body);
        return status;
}

static void tombstone_dr(rd_kafka_t *rk, const rd_kafka_message_t *r, void *opaque)
{
        (void)rk;
        (void)opaque;
        *(int *)r->_private = r->err ? -1 : 1;
}

/* Writes the tombstone and waits for the brokers' acknowledgement: the page must not say
 * "unsubscribed" before it is true. */
static int remove_subscriber(ml_t *m, const char *id)
{
        int done = 0;
        rd_kafka_resp_err_t err;

        err = rd_kafka_producev(m->unsub_p, RD_KAFKA_V_TOPIC(m->topic_subs),
                                RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE(NULL, 0),
                                RD_KAFKA_V_HEADER("noticecast-event", "subscriber.removed", -1),
                                RD_KAFKA_V_OPAQUE(&done), RD_KAFKA_V_END);
        if (err)
                return -1;
        rd_kafka_flush(m->unsub_p, 10000);
        return done == 1 ? 0 : -1;
}

static int handle(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        ml_t *m = opaque;
        const char *method = nc_httpd_req_method(req);
        const char *token = nc_httpd_req_query(req, "token");
        char id[300], body[2048];

        if (!token || ml_unsub_verify(m, token, id, sizeof(id)) != 0)
                return page(resp, 403,
                            "<h1>This link is not valid</h1><p>Nothing was changed. Use the "
                            "unsubscribe link of a recent email.</p>");
        if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) {
                /* The token stays in the URL: the form posts back to the same address. */
                snprintf(body, sizeof(body),
                         "<h1>Unsubscribe</h1><p>Stop sending notices to this address?</p>"
                         "<form method=\"post\" action=\"?token=%s\">"
                         "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                         "<button type=\"submit\" style=\"font-size: 1.1em; padding: .5em 1em\">"
                         "Unsubscribe</button></form>",
                         token);
                return page(resp, 200, body);
        }
        if (strcmp(method, "POST"))
                return page(resp, 405, "<h1>Method not allowed</h1>");
        if (remove_subscriber(m, id) != 0) {
                log_warnx("unsubscribe of %s could not be written to Kafka", id);
                return page(resp, 503,
                            "<h1>Please try again in a minute</h1><p>Your request "
                            "could not be saved.</p>");
        }
        log_info("unsubscribed %s (one-click)", id);
        return page(resp, 200,
                    "<h1>You are unsubscribed</h1><p>You will not receive notices "
                    "at this address any more.</p>");
}

int ml_unsub_start(ml_t *m, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf;
        char kerr[512];

        if (!(conf = nc_kafka_conf_new(&m->cfg, errstr, errstr_size)))
                return -1;
        rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
        rd_kafka_conf_set(conf, "acks", "all", NULL, 0);
        rd_kafka_conf_set(conf, "linger.ms", "0", NULL, 0);
        rd_kafka_conf_set_dr_msg_cb(conf, tombstone_dr);
        if (!(m->unsub_p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(conf);
                return nc_err(errstr, errstr_size, "kafka: %s", kerr);
        }
        if (m->httpd && nc_httpd_add_route(m->httpd, "/unsubscribe", handle, m) != 0)
                return nc_err(errstr, errstr_size, "cannot add the /unsubscribe route");
        return 0;
}
