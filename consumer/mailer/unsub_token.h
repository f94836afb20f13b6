/* noticecast-mailer: one-click unsubscribe tokens (pure functions; tests/unit/test_unsub_token.c).
 *
 *   P     = 0x03 || expiry (8 bytes, unix seconds, big-endian) || generation (8 bytes,
 *           big-endian) || length of id (1 byte) || id || zero bytes up to a multiple of 16
 *   tag   = HMAC-SHA256(K_mac, P), first 16 bytes
 *   token = base64url(tag || AES-256-CTR(K_enc, iv = tag, P)), unpadded
 *   K_enc = HMAC-SHA256(secret, "noticecast unsubscribe token v2: encryption")
 *   K_mac = HMAC-SHA256(secret, "noticecast unsubscribe token v2: authentication")
 *
 * A synthetic-IV construction (deterministic authenticated encryption): the address cannot be
 * read from a token (only its length, to 16 bytes), no bit of it can be changed without the
 * tag failing (compared in constant time), and one subscription always gets the same token.
 * The generation is the subscriber record's "generation" (nc_subscriber.h): it changes when
 * the address subscribes again, so the caller can tell a token of an earlier subscription
 * from a current one.  The expiry is inside the MAC: a link stops working after [mailer]
 * unsubscribe_expiry (every email brings a fresh one).  Tokens of the previous format (0x02:
 * the same without the expiry, under the same keys) still open, without an expiry: they are
 * in emails already sent.  Tokens of the first format (base64url(id) "." MAC) do not open.
 *
 * The purpose is in the keys: these keys seal nothing but unsubscribe tokens (the sign-up
 * pages' tokens, ml_webtoken.h, have keys and purposes of their own). */
#ifndef ML_UNSUB_TOKEN_H
#define ML_UNSUB_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/* Room for the longest token (an id of 255 bytes) and its NUL. */
#define ML_TOKEN_SIZE   420
#define ML_TOKEN_ID_MAX 255

typedef enum ml_token_status {
        ML_TOKEN_OK = 0,
        ML_TOKEN_MALFORMED, /* not base64url, wrong length */
        ML_TOKEN_FORGED,    /* the tag does not match: not made with this secret, or altered */
        ML_TOKEN_EXPIRED,   /* ours, but its time has passed */
} ml_token_status_t;

extern const char *const ml_token_status_names[]; /* indexed by ml_token_status_t */

/* Writes the token for ID (at most ML_TOKEN_ID_MAX bytes) and GENERATION, valid until
 * EXPIRES_S (unix seconds, inclusive), into OUT.  Returns 0, or -1 (OUT[0] = '\0') if ID is
 * too long or SIZE too small. */
int ml_token_seal(const unsigned char *secret, size_t secret_len, const char *id,
                  uint64_t generation, int64_t expires_s, char *out, size_t size);

/* Opens TOKEN at NOW_S: on ML_TOKEN_OK, ID (NUL-terminated; ID_SIZE must hold ML_TOKEN_ID_MAX
 * + 1) and *GENERATION are what it was sealed with.  The expiry is checked only once the tag
 * matched. */
ml_token_status_t ml_token_open(const unsigned char *secret, size_t secret_len, const char *token,
                                int64_t now_s, char *id, size_t id_size, uint64_t *generation);

#endif
