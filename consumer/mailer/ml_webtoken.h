/* noticecast-mailer: tokens of the citizen pages (pure functions; tests/unit/test_webtoken.c).
 *
 * A sign-up is confirmed, and a subscription managed, through links that carry everything the
 * server needs: no store of pending requests.  Every token names its purpose and expiry inside
 * its MAC, so a token made for one page opens on no other and none opens after its time.
 *
 *   H     = 0x01 (version) || purpose (1 byte) || expiry (8 bytes, unix seconds, big-endian)
 *           || payload length (2 bytes, big-endian)
 *   P     = H || payload || zero bytes up to a multiple of 16
 *   tag   = HMAC-SHA256(K_mac, P), first 16 bytes
 *   token = base64url(tag || AES-256-CTR(K_enc, iv = tag, P)), unpadded
 *   K_enc = HMAC-SHA256(secret, "noticecast web token v1: encryption")
 *   K_mac = HMAC-SHA256(secret, "noticecast web token v1: authentication")
 *
 * A synthetic-IV construction, as the unsubscribe tokens (unsub_token.h), under its own keys:
 * the payload (an address, a sign-up request) cannot be read from a URL, and no bit of a token
 * can change without the tag failing (compared in constant time, CRYPTO_memcmp).  The purpose
 * and the expiry are checked only once the tag is good, so an error never tells anything
 * about a forged token.
 *
 * Rotation: ml_wt_keys_t holds up to ML_WT_SECRETS_MAX secrets; the first seals, every one
 * opens, so links mailed before a rotation keep working until the old secret is removed.
 *
 * CSRF: a page with a form sets a cookie holding a random nonce and puts
 * ml_wt_csrf(nonce, expiry) in a hidden field (a token of purpose ML_WT_CSRF whose payload is
 * the nonce); a POST is taken only if the field opens and holds the cookie's nonce. */
#ifndef ML_WEBTOKEN_H
#define ML_WEBTOKEN_H

#include <stddef.h>
#include <stdint.h>

typedef enum ml_wt_purpose {
        ML_WT_CONFIRM = 1,     /* confirm a sign-up: the payload is the request */
        ML_WT_MANAGE = 2,      /* the preference centre of one subscription */
        ML_WT_UNSUBSCRIBE = 3, /* reserved for the next format of the unsubscribe links */
        ML_WT_CSRF = 4,        /* a form's hidden field: the payload is the cookie's nonce */
} ml_wt_purpose_t;

typedef enum ml_wt_status {
        ML_WT_OK = 0,
        ML_WT_MALFORMED,     /* not base64url, wrong length, or not of this format */
        ML_WT_FORGED,        /* the tag does not match under any key: not ours, or altered */
        ML_WT_EXPIRED,       /* ours, but its time has passed */
        ML_WT_WRONG_PURPOSE, /* ours, but made for another page */
} ml_wt_status_t;

/* Names for logs; an unknown value is a programming error and aborts. */
const char *ml_wt_status_name(ml_wt_status_t st);
const char *ml_wt_purpose_name(ml_wt_purpose_t p);

#define ML_WT_SECRETS_MAX 4
#define ML_WT_SECRET_MAX  64
#define ML_WT_SECRET_MIN  32

/* Secrets: secret[0] seals, every one opens.  Zero it with ml_wt_keys_clear. */
typedef struct ml_wt_keys {
        unsigned char secret[ML_WT_SECRETS_MAX][ML_WT_SECRET_MAX];
        size_t len[ML_WT_SECRETS_MAX];
        int n;
} ml_wt_keys_t;

#define ML_WT_PAYLOAD_MAX 1024 /* bytes of payload a token can carry */
#define ML_WT_TOKEN_SIZE  1500 /* room for the longest token and its NUL */

/* Adds SECRET (LEN >= ML_WT_SECRET_MIN bytes; only the first ML_WT_SECRET_MAX are used) as the
 * next key.  Returns 0, or -1 with errstr (too short, too many keys). */
int ml_wt_keys_add(ml_wt_keys_t *k, const unsigned char *secret, size_t len, char *errstr,
                   size_t errstr_size);
/* Loads the N secret files of PATHS (nc_secret_file_read: owner-only permissions), the first
 * being the sealing one.  errstr names the file, never its content. */
int ml_wt_keys_load(ml_wt_keys_t *k, const char *const *paths, int n, char *errstr,
                    size_t errstr_size);
void ml_wt_keys_clear(ml_wt_keys_t *k);

/* Seals PAYLOAD (LEN <= ML_WT_PAYLOAD_MAX opaque bytes) for PURPOSE, valid until EXPIRES_S
 * (unix seconds, inclusive), into OUT.  Returns 0, or -1 (no key, too long, OUT too small:
 * then OUT is ""). */
int ml_wt_seal(const ml_wt_keys_t *k, ml_wt_purpose_t purpose, int64_t expires_s,
               const void *payload, size_t len, char *out, size_t size);

/* Opens TOKEN for PURPOSE at NOW_S.  On ML_WT_OK the payload is in OUT (NUL-terminated:
 * OUT_SIZE must be at least its length + 1, else ML_WT_MALFORMED), its length in *LEN and
 * the expiry in *EXPIRES_S (LEN and EXPIRES_S may be NULL). */
ml_wt_status_t ml_wt_open(const ml_wt_keys_t *k, ml_wt_purpose_t purpose, int64_t now_s,
                          const char *token, void *out, size_t out_size, size_t *len,
                          int64_t *expires_s);

/* A fresh random nonce for a CSRF cookie: base64url of 18 random bytes (24 characters).
 * Returns 0, or -1 if SIZE is below 25 or the random generator failed. */
int ml_wt_nonce(char *out, size_t size);
/* The hidden form field for NONCE, valid until EXPIRES_S.  Returns 0 or -1. */
int ml_wt_csrf(const ml_wt_keys_t *k, const char *nonce, int64_t expires_s, char *out, size_t size);
/* Checks FIELD against the cookie's NONCE: ML_WT_OK only if FIELD opens as a CSRF token at
 * NOW_S and holds exactly NONCE (compared in constant time).  A missing NONCE or FIELD is
 * ML_WT_MALFORMED; a field made for another nonce is ML_WT_FORGED. */
ml_wt_status_t ml_wt_csrf_check(const ml_wt_keys_t *k, const char *nonce, const char *field,
                                int64_t now_s);

#endif
