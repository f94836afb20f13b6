#include "nc_sign.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "nc_log.h"
#include "nc_util.h"

#define WHSEC_PREFIX "whsec_"
/* Longest useful line: prefix + base64 of NC_WHSEC_MAX bytes (88) + blanks and CR LF. */
#define SECRET_LINE_MAX 256

/* ---- base64 (RFC 4648 §4, padded) and base64url (§5, unpadded): one strict codec ---------- */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(unsigned char c, int url)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == (url ? '-' : '+'))
                return 62;
        if (c == (url ? '_' : '/'))
                return 63;
        return -1;
}

static int b64_encode(const unsigned char *in, size_t len, char *out, size_t out_size, int url)
{
        const char *a = url ? b64_url : b64_std;
        size_t i, o = 0, rem = len % 3, need;

        if (len > (size_t)INT_MAX / 4 * 3 - 3)
                return -1;
        need = len / 3 * 4 + (rem == 0 ? 0 : url ? rem + 1 : 4);
        if (out_size < need + 1)
                return -1;
        for (i = 0; i + 2 < len; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

                out[o++] = a[v >> 18];
                out[o++] = a[(v >> 12) & 63];
                out[o++] = a[(v >> 6) & 63];
                out[o++] = a[v & 63];
        }
        if (rem == 1) {
                out[o++] = a[in[i] >> 2];
                out[o++] = a[(in[i] & 3) << 4];
        } else if (rem == 2) {
                uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];

                out[o++] = a[v >> 10];
                out[o++] = a[(v >> 4) & 63];
                out[o++] = a[(v & 15) << 2];
        }
        while (!url && o % 4)
                out[o++] = '=';
        out[o] = '\0';
        return (int)o;
}

/* Checks IN against the strict grammar (padded: length a multiple of 4 and '=' exactly where
 * the last quantum is short; unpadded: no '=', never 1 character left over; the alphabet
 * only; the bits that do not reach a whole byte are 0, so that one value has one encoding).
 * Returns the decoded length, or -1; *DATA_LEN is IN_LEN without the padding. */
static long b64_decoded_len(const char *in, size_t in_len, int url, size_t *data_len)
{
        size_t i, n = in_len, rem;
        int last;

        if (in_len > (size_t)LONG_MAX / 3)
                return -1;
        if (!url) {
                if (in_len % 4 != 0)
                        return -1;
                while (n > 0 && in_len - n < 2 && in[n - 1] == '=')
                        n--;
        }
        rem = n % 4;
        if (rem == 1 || (!url && in_len - n != (rem ? 4 - rem : 0)))
                return -1;
        for (i = 0; i < n; i++)
                if (b64_value((unsigned char)in[i], url) < 0)
                        return -1;
        last = n ? b64_value((unsigned char)in[n - 1], url) : 0;
        if ((rem == 2 && (last & 0x0f)) || (rem == 3 && (last & 0x03)))
                return -1;
        *data_len = n;
        return (long)(n / 4 * 3 + (rem ? rem - 1 : 0));
}

static int b64_decode(const char *in, size_t in_len, unsigned char *out, size_t out_cap,
                      size_t *out_len, int url)
{
        size_t n, i, o = 0;
        long total = b64_decoded_len(in, in_len, url, &n);
        uint32_t acc = 0;
        int bits = 0;

        if (total < 0 || (size_t)total > out_cap)
                return -1;
        for (i = 0; i < n; i++) {
                acc = acc << 6 | (uint32_t)b64_value((unsigned char)in[i], url);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (unsigned char)(acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* Keys are decoded here: leave none of their bits on the stack. */
        OPENSSL_cleanse(&acc, sizeof(acc));
        *out_len = o;
        return 0;
}

int nc_base64_encode(const unsigned char *in, size_t len, char *out, size_t out_size)
{
        return b64_encode(in, len, out, out_size, 0);
}

int nc_base64_decode(const char *in, size_t in_len, unsigned char *out, size_t out_cap,
                     size_t *out_len)
{
        return b64_decode(in, in_len, out, out_cap, out_len, 0);
}

int nc_base64url_encode(const unsigned char *in, size_t len, char *out, size_t out_size)
{
        return b64_encode(in, len, out, out_size, 1);
}

int nc_base64url_decode(const char *in, size_t in_len, unsigned char *out, size_t out_cap,
                        size_t *out_len)
{
        return b64_decode(in, in_len, out, out_cap, out_len, 1);
}

int nc_whsec_decode(const char *secret, unsigned char *key, size_t key_cap, size_t *key_len,
                    char *errstr, size_t errstr_size)
{
        size_t len, data_len;
        long n;

        if (!strncmp(secret, WHSEC_PREFIX, strlen(WHSEC_PREFIX)))
                secret += strlen(WHSEC_PREFIX);
        len = strlen(secret);
        if (len == 0)
                return nc_err(errstr, errstr_size, "secret: empty");
        n = b64_decoded_len(secret, len, 0, &data_len);
        if (n < 0)
                return nc_err(errstr, errstr_size,
                              "secret: not valid base64 (%zu characters after the whsec_ prefix)",
                              len);
        if (n < NC_WHSEC_MIN || n > NC_WHSEC_MAX)
                return nc_err(errstr, errstr_size,
                              "secret: decodes to %ld bytes, expected %d to %d", n, NC_WHSEC_MIN,
                              NC_WHSEC_MAX);
        if ((size_t)n > key_cap || nc_base64_decode(secret, len, key, key_cap, key_len) < 0)
                return nc_err(errstr, errstr_size, "secret: cannot decode %ld bytes", n);
        return 0;
}

void nc_secrets_init(nc_secrets_t *s)
{
        memset(s, 0, sizeof(*s));
}

void nc_secrets_clear(nc_secrets_t *s)
{
        OPENSSL_cleanse(s, sizeof(*s));
        /* Old OpenSSL releases wiped with garbage; the count must read 0 afterwards. */
        nc_secrets_init(s);
}

int nc_secrets_add(nc_secrets_t *s, const char *secret, char *errstr, size_t errstr_size)
{
        if (s->n >= NC_SECRETS_MAX)
                return nc_err(errstr, errstr_size, "more than %d secrets", NC_SECRETS_MAX);
        if (nc_whsec_decode(secret, s->key[s->n], sizeof(s->key[s->n]), &s->len[s->n], errstr,
                            errstr_size) < 0)
                return -1;
        s->n++;
        return 0;
}

/* Reads the lines of F into S; returns 0 or -1 with "path:line: ..." in errstr. */
static int secrets_read(nc_secrets_t *s, FILE *f, const char *path, char *line, size_t line_size,
                        char *errstr, size_t errstr_size)
{
        char err[256];
        unsigned lineno = 0;

        while (fgets(line, (int)line_size, f)) {
                char *p = line, *e;

                lineno++;
                e = p + strlen(p);
                if (e > p && e[-1] != '\n' && !feof(f))
                        return nc_err(errstr, errstr_size, "%s:%u: line too long", path, lineno);
                while (*p == ' ' || *p == '\t')
                        p++;
                while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
                        *--e = '\0';
                if (*p == '\0' || *p == '#')
                        continue;
                if (nc_secrets_add(s, p, err, sizeof(err)) < 0)
                        return nc_err(errstr, errstr_size, "%s:%u: %s", path, lineno, err);
        }
        if (ferror(f))
                return nc_err(errstr, errstr_size, "%s: %s", path, strerror(errno));
        if (s->n == 0)
                return nc_err(errstr, errstr_size, "%s:%u: no secret in file (need at least one)",
                              path, lineno ? lineno : 1);
        return 0;
}

int nc_secrets_load_file(nc_secrets_t *s, const char *path, char *errstr, size_t errstr_size)
{
        /* Our own stdio buffer and line buffer, both wiped afterwards, so that no copy of the
         * secrets is left behind in freed memory. */
        char iobuf[4096], line[SECRET_LINE_MAX];
        nc_secrets_t tmp;
        FILE *f;
        int rc;

        nc_secrets_init(&tmp);
        /* A secret file others can read is refused (nc_util.h), not merely warned about. */
        if (!(f = nc_secret_fopen(path, errstr, errstr_size)))
                return -1;
        setvbuf(f, iobuf, _IOFBF, sizeof(iobuf));
        rc = secrets_read(&tmp, f, path, line, sizeof(line), errstr, errstr_size);
        fclose(f);
        OPENSSL_cleanse(iobuf, sizeof(iobuf));
        OPENSSL_cleanse(line, sizeof(line));
        if (rc == 0)
                memcpy(s, &tmp, sizeof(*s));
        nc_secrets_clear(&tmp);
        return rc;
}

void nc_signer_free(nc_signer_t *sg)
{
        size_t i;

        for (i = 0; i < sg->n; i++)
                EVP_MAC_CTX_free(sg->ctx[i]);
        memset(sg, 0, sizeof(*sg));
}

int nc_signer_init(nc_signer_t *sg, const nc_secrets_t *s, char *errstr, size_t errstr_size)
{
        char digest[] = "SHA256";
        OSSL_PARAM params[2];
        EVP_MAC *mac;
        size_t i;

        memset(sg, 0, sizeof(*sg));
        if (s->n == 0)
                return nc_err(errstr, errstr_size, "no secret to sign with");
        if (!(mac = EVP_MAC_fetch(NULL, "HMAC", NULL)))
                return nc_err(errstr, errstr_size, "HMAC is not available in libcrypto");
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
        params[1] = OSSL_PARAM_construct_end();
        for (i = 0; i < s->n; i++) {
                EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);

                if (!ctx || !EVP_MAC_init(ctx, s->key[i], s->len[i], params)) {
                        EVP_MAC_CTX_free(ctx);
                        EVP_MAC_free(mac);
                        nc_signer_free(sg);
                        return nc_err(errstr, errstr_size, "cannot set up HMAC-SHA256");
                }
                sg->ctx[sg->n++] = ctx;
        }
        EVP_MAC_free(mac); /* each context holds its own reference */
        return 0;
}

/* HMAC-SHA256(key, msg_id "." ts "." body) into MAC[32].  A NULL key restarts the context
 * with the key it was initialised with. */
static int hmac_one(EVP_MAC_CTX *ctx, const char *msg_id, const char *ts, const char *body,
                    size_t body_len, unsigned char *out)
{
        size_t outl = 0;

        return EVP_MAC_init(ctx, NULL, 0, NULL) &&
                       EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) &&
                       EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
                       EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) &&
                       EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
                       (body_len == 0 ||
                        EVP_MAC_update(ctx, (const unsigned char *)body, body_len)) &&
                       EVP_MAC_final(ctx, out, &outl, 32) && outl == 32
                   ? 0
                   : -1;
}

int nc_signer_sign(nc_signer_t *sg, const char *msg_id, int64_t timestamp, const char *body,
                   size_t body_len, char *out, size_t out_size)
{
        unsigned char sig[32];
        char ts[24];
        size_t i, pos = 0;
        int rc = 0;

        if (sg->n == 0 || out_size == 0)
                return -1;
        out[0] = '\0';
        snprintf(ts, sizeof(ts), "%" PRId64, timestamp);
        for (i = 0; i < sg->n && rc == 0; i++) {
                int n;

                /* separator + "v1," + 44 characters + NUL */
                if (out_size - pos < (i ? 1u : 0u) + 3 + 44 + 1 ||
                    hmac_one(sg->ctx[i], msg_id, ts, body, body_len, sig) < 0) {
                        rc = -1;
                        break;
                }
                if (i)
                        out[pos++] = ' ';
                memcpy(out + pos, "v1,", 3);
                pos += 3;
                n = nc_base64_encode(sig, sizeof(sig), out + pos, out_size - pos);
                if (n < 0)
                        rc = -1;
                else
                        pos += (size_t)n;
        }
        OPENSSL_cleanse(sig, sizeof(sig));
        if (rc < 0)
                out[0] = '\0';
        return rc;
}

int nc_webhook_sign(const nc_secrets_t *s, const char *msg_id, int64_t timestamp, const char *body,
                    size_t body_len, char *out, size_t out_size)
{
        nc_signer_t sg;
        int rc;

        if (out_size)
                out[0] = '\0';
        if (nc_signer_init(&sg, s, NULL, 0) != 0)
                return -1;
        rc = nc_signer_sign(&sg, msg_id, timestamp, body, body_len, out, out_size);
        nc_signer_free(&sg);
        return rc;
}

void nc_webhook_id(const char *notice_id, const char *partner_id, const char *event_type,
                   char out[NC_WEBHOOK_ID_SIZE])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int i, ok;

        ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, notice_id, strlen(notice_id)) &&
             EVP_DigestUpdate(ctx, "\n", 1) &&
             EVP_DigestUpdate(ctx, partner_id, strlen(partner_id)) &&
             EVP_DigestUpdate(ctx, "\n", 1) &&
             EVP_DigestUpdate(ctx, event_type, strlen(event_type)) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= 16;
        EVP_MD_CTX_free(ctx);
        /* Only fails when libcrypto cannot allocate; like nc_xmalloc, that is fatal. */
        if (!ok)
                fatalx("webhook id: SHA-256 failed");
        memcpy(out, "msg_", 4);
        for (i = 0; i < 16; i++) {
                out[4 + 2 * i] = hex[md[i] >> 4];
                out[5 + 2 * i] = hex[md[i] & 0x0f];
        }
        out[36] = '\0';
}
