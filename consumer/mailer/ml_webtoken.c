#include "ml_webtoken.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml_siv.h"
#include "nc_log.h"
#include "nc_sign.h"
#include "nc_util.h"

#define VERSION   0x01
#define HEAD_LEN  12 /* version, purpose, expiry, payload length */
#define P_MAX     (((HEAD_LEN + ML_WT_PAYLOAD_MAX) + 15) / 16 * 16)
#define NONCE_RAW 18

static const char enc_label[] = "noticecast web token v1: encryption";
static const char mac_label[] = "noticecast web token v1: authentication";

const char *ml_wt_status_name(ml_wt_status_t st)
{
        switch (st) {
        case ML_WT_OK:
                return "ok";
        case ML_WT_MALFORMED:
                return "malformed";
        case ML_WT_FORGED:
                return "forged";
        case ML_WT_EXPIRED:
                return "expired";
        case ML_WT_WRONG_PURPOSE:
                return "wrong purpose";
        }
        log_warnx("ml_wt_status_name: unknown status %d", (int)st);
        abort();
}

const char *ml_wt_purpose_name(ml_wt_purpose_t p)
{
        switch (p) {
        case ML_WT_CONFIRM:
                return "confirm";
        case ML_WT_MANAGE:
                return "manage";
        case ML_WT_UNSUBSCRIBE:
                return "unsubscribe";
        case ML_WT_CSRF:
                return "csrf";
        }
        log_warnx("ml_wt_purpose_name: unknown purpose %d", (int)p);
        abort();
}

int ml_wt_keys_add(ml_wt_keys_t *k, const unsigned char *secret, size_t len, char *errstr,
                   size_t errstr_size)
{
        if (k->n >= ML_WT_SECRETS_MAX)
                return nc_err(errstr, errstr_size, "at most %d secrets", ML_WT_SECRETS_MAX);
        if (len < ML_WT_SECRET_MIN)
                return nc_err(errstr, errstr_size, "a secret must have at least %d bytes",
                              ML_WT_SECRET_MIN);
        if (len > ML_WT_SECRET_MAX)
                len = ML_WT_SECRET_MAX;
        memcpy(k->secret[k->n], secret, len);
        k->len[k->n++] = len;
        return 0;
}

int ml_wt_keys_load(ml_wt_keys_t *k, const char *const *paths, int n, char *errstr,
                    size_t errstr_size)
{
        char err[512];

        memset(k, 0, sizeof(*k));
        for (int i = 0; i < n; i++) {
                size_t len = 0;
                char *s = nc_secret_file_read(paths[i], &len, err, sizeof(err));
                int rc;

                if (!s) {
                        ml_wt_keys_clear(k);
                        return nc_err(errstr, errstr_size, "%s", err);
                }
                rc = ml_wt_keys_add(k, (const unsigned char *)s, len, err, sizeof(err));
                OPENSSL_cleanse(s, len);
                free(s);
                if (rc != 0) {
                        ml_wt_keys_clear(k);
                        return nc_err(errstr, errstr_size, "%s: %s", paths[i], err);
                }
        }
        return 0;
}

void ml_wt_keys_clear(ml_wt_keys_t *k)
{
        OPENSSL_cleanse(k, sizeof(*k));
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
        for (int i = 0; i < bytes; i++)
                p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
        uint64_t v = 0;

        for (int i = 0; i < bytes; i++)
                v = v << 8 | p[i];
        return v;
}

int ml_wt_seal(const ml_wt_keys_t *k, ml_wt_purpose_t purpose, int64_t expires_s,
               const void *payload, size_t len, char *out, size_t size)
{
        unsigned char p[P_MAX], buf[ML_SIV_TAG_LEN + P_MAX];
        size_t plen = (HEAD_LEN + len + 15) / 16 * 16;
        ml_siv_keys_t sk;
        int rc = -1;

        if (size)
                out[0] = '\0';
        if (!k || k->n < 1 || len > ML_WT_PAYLOAD_MAX ||
            size < (ML_SIV_TAG_LEN + plen + 2) / 3 * 4 + 1)
                return -1;
        memset(p, 0, sizeof(p));
        p[0] = VERSION;
        p[1] = (unsigned char)purpose;
        put_be(p + 2, (uint64_t)expires_s, 8);
        put_be(p + 10, len, 2);
        if (len)
                memcpy(p + HEAD_LEN, payload, len);
        ml_siv_derive(k->secret[0], k->len[0], enc_label, mac_label, &sk);
        ml_siv_tag(&sk, p, plen, buf);
        if (ml_siv_ctr(&sk, buf, p, plen, buf + ML_SIV_TAG_LEN) == 0 &&
            nc_base64url_encode(buf, ML_SIV_TAG_LEN + plen, out, size) >= 0)
                rc = 0;
        OPENSSL_cleanse(&sk, sizeof(sk));
        OPENSSL_cleanse(p, sizeof(p));
        return rc;
}

/* Decrypts and authenticates BUF under each key; P gets the plaintext.  Returns 1 if a key's
 * tag matched. */
static int open_any(const ml_wt_keys_t *k, const unsigned char *buf, size_t plen, unsigned char *p)
{
        int ok = 0;

        for (int i = 0; i < k->n && !ok; i++) {
                unsigned char tag[ML_SIV_TAG_LEN];
                ml_siv_keys_t sk;

                ml_siv_derive(k->secret[i], k->len[i], enc_label, mac_label, &sk);
                if (ml_siv_ctr(&sk, buf, buf + ML_SIV_TAG_LEN, plen, p) == 0) {
                        ml_siv_tag(&sk, p, plen, tag);
                        ok = CRYPTO_memcmp(tag, buf, ML_SIV_TAG_LEN) == 0;
                }
                OPENSSL_cleanse(&sk, sizeof(sk));
        }
        return ok;
}

ml_wt_status_t ml_wt_open(const ml_wt_keys_t *k, ml_wt_purpose_t purpose, int64_t now_s,
                          const char *token, void *out, size_t out_size, size_t *len,
                          int64_t *expires_s)
{
        unsigned char buf[ML_SIV_TAG_LEN + P_MAX], p[P_MAX];
        size_t blen, plen, n, tlen = token ? strlen(token) : 0;
        ml_wt_status_t st = ML_WT_FORGED;
        int64_t exp;
        int zero = 0;

        if (out_size)
                ((char *)out)[0] = '\0';
        if (!k || k->n < 1 || !token || tlen >= ML_WT_TOKEN_SIZE ||
            nc_base64url_decode(token, tlen, buf, sizeof(buf), &blen) != 0 ||
            blen < ML_SIV_TAG_LEN + 16 || (blen - ML_SIV_TAG_LEN) % 16)
                return ML_WT_MALFORMED;
        plen = blen - ML_SIV_TAG_LEN;
        if (!open_any(k, buf, plen, p))
                goto out;
        /* Authentic: made by us, so well formed unless the format changed. */
        n = (size_t)get_be(p + 10, 2);
        st = ML_WT_MALFORMED;
        if (p[0] != VERSION || n > ML_WT_PAYLOAD_MAX || (HEAD_LEN + n + 15) / 16 * 16 != plen)
                goto out;
        for (size_t i = HEAD_LEN + n; i < plen; i++)
                zero |= p[i];
        if (zero)
                goto out;
        exp = (int64_t)get_be(p + 2, 8);
        if (p[1] != (unsigned char)purpose) {
                st = ML_WT_WRONG_PURPOSE;
                goto out;
        }
        if (now_s > exp) {
                st = ML_WT_EXPIRED;
                goto out;
        }
        if (n + 1 > out_size)
                goto out;
        memcpy(out, p + HEAD_LEN, n);
        ((char *)out)[n] = '\0';
        if (len)
                *len = n;
        if (expires_s)
                *expires_s = exp;
        st = ML_WT_OK;
out:
        OPENSSL_cleanse(p, sizeof(p));
        return st;
}

int ml_wt_nonce(char *out, size_t size)
{
        unsigned char raw[NONCE_RAW];

        if (size)
                out[0] = '\0';
        if (size < NONCE_RAW / 3 * 4 + 1 || RAND_bytes(raw, sizeof(raw)) != 1)
                return -1;
        return nc_base64url_encode(raw, sizeof(raw), out, size) >= 0 ? 0 : -1;
}

int ml_wt_csrf(const ml_wt_keys_t *k, const char *nonce, int64_t expires_s, char *out, size_t size)
{
        if (!nonce || !*nonce)
                return -1;
        return ml_wt_seal(k, ML_WT_CSRF, expires_s, nonce, strlen(nonce), out, size);
}

ml_wt_status_t ml_wt_csrf_check(const ml_wt_keys_t *k, const char *nonce, const char *field,
                                int64_t now_s)
{
        char got[ML_WT_PAYLOAD_MAX + 1];
        size_t n = 0, want;
        ml_wt_status_t st;

        if (!nonce || !*nonce || !field || !*field)
                return ML_WT_MALFORMED;
        st = ml_wt_open(k, ML_WT_CSRF, now_s, field, got, sizeof(got), &n, NULL);
        if (st != ML_WT_OK)
                return st;
        want = strlen(nonce);
        /* Lengths are not secret (the nonce's is fixed); the bytes are compared in constant
         * time. */
        if (n != want || CRYPTO_memcmp(got, nonce, n) != 0)
                return ML_WT_FORGED;
        return ML_WT_OK;
}
