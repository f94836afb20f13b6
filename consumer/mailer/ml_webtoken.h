/* Purpose tokens for the mailer's self-service pages (confirm, manage, unsubscribe, CSRF).
 *
 * Format (version 1): base64url, unpadded, of
 *     header[12] || tag[16] || AES-256-CTR(K_enc, iv = tag, payload)
 * with header = version (1 byte, 0x01) || purpose (1 byte) || expiry (8 bytes, big-endian
 *               unix seconds) || payload length (2 bytes, big-endian)
 * and  tag    = HMAC-SHA256(K_mac, header || payload) truncated to 16 bytes.
 * K_mac and K_enc are HMAC-SHA256(secret, "noticecast web token v1: mac") and
 * (..., "noticecast web token v1: enc"): the same keys for every purpose, the purpose being
 * inside the MAC.  Encrypted so an address is not readable from a URL; SIV so the same input
 * gives the same token (no nonce to store). */
#ifndef ML_WEBTOKEN_H
#define ML_WEBTOKEN_H

#include <stddef.h>
#include <stdint.h>

typedef enum ml_wt_purpose {
        ML_WT_CONFIRM = 1,
        ML_WT_MANAGE = 2,
        ML_WT_UNSUBSCRIBE = 3,
        ML_WT_CSRF = 4
} ml_wt_purpose_t;

typedef enum ml_wt_status {
        ML_WT_OK = 0,
        ML_WT_MALFORMED,
        ML_WT_FORGED,
        ML_WT_EXPIRED,
        ML_WT_WRONG_PURPOSE
} ml_wt_status_t;

/* Static names; abort() on an unknown value (a programming error). */
const char *ml_wt_status_name(ml_wt_status_t st);
const char *ml_wt_purpose_name(ml_wt_purpose_t p);

#define ML_WT_SECRETS_MAX 4
/* secret[0] seals; every one opens (rotation grace period). */
typedef struct ml_wt_keys {
        unsigned char secret[ML_WT_SECRETS_MAX][64];
        size_t len[ML_WT_SECRETS_MAX];
        int n;
} ml_wt_keys_t;

#define ML_WT_PAYLOAD_MAX 1024 /* bytes of payload a token can carry */
#define ML_WT_TOKEN_SIZE  1500 /* room for the longest token + NUL */

/* Seals PAYLOAD for PURPOSE, valid until EXPIRES_S (unix seconds), into OUT (base64url,
 * unpadded, NUL-terminated).  0, or -1 if LEN > ML_WT_PAYLOAD_MAX, OUT too small or no key. */
int ml_wt_seal(const ml_wt_keys_t *k, ml_wt_purpose_t purpose, int64_t expires_s,
               const void *payload, size_t len, char *out, size_t size);
/* Opens TOKEN for PURPOSE at NOW_S: on ML_WT_OK copies the payload into OUT (NUL-terminated;
 * OUT_SIZE must be >= len + 1, else ML_WT_MALFORMED), *LEN and *EXPIRES_S (either may be
 * NULL).  Tries every key, constant-time tag compare.  WRONG_PURPOSE and EXPIRED only after
 * the MAC checked; a token is valid while NOW_S <= expiry. */
ml_wt_status_t ml_wt_open(const ml_wt_keys_t *k, ml_wt_purpose_t purpose, int64_t now_s,
                          const char *token, void *out, size_t out_size, size_t *len,
                          int64_t *expires_s);

/* CSRF: the form carries ml_wt_csrf(k, nonce, expiry), the browser the nonce in a cookie
 * (SameSite=Strict, HttpOnly); the field is a CSRF-purpose token over the nonce, so the check
 * opens it and compares the nonce in constant time.  0/-1; status as ml_wt_open (FORGED when
 * the nonce differs). */
int ml_wt_csrf(const ml_wt_keys_t *k, const char *nonce, int64_t expires_s, char *out, size_t size);
ml_wt_status_t ml_wt_csrf_check(const ml_wt_keys_t *k, const char *nonce, const char *field,
                                int64_t now_s);

/* A random nonce (base64url of 18 random bytes, 24 chars) for the cookie.  0/-1. */
int ml_wt_nonce(char *out, size_t size);

/* Loads N (1..ML_WT_SECRETS_MAX) secret files, PATHS[0] sealing, with the checks of the
 * mailer's unsubscribe secret loader (>= 32 bytes, not readable by group/other).  0, or -1
 * with ERRSTR naming the file (never its content). */
int ml_wt_keys_load(ml_wt_keys_t *k, const char *const *paths, int n, char *errstr,
                    size_t errstr_size);

#endif
