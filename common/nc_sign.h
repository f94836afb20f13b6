/* Standard Webhooks (https://www.standardwebhooks.com) signing: whsec_ secrets, secret files
 * with several keys for rotation, the webhook-signature header and deterministic message ids.
 *
 *   webhook-id:        msg_<32 hex>                          (nc_webhook_id)
 *   webhook-timestamp: <Unix seconds>
 *   webhook-signature: v1,<base64 HMAC-SHA256> [v1,...]      (nc_webhook_sign)
 *
 * Secrets never appear in error messages or logs. */
#ifndef NC_SIGN_H
#define NC_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define NC_WHSEC_MIN   24 /* decoded key bytes, as the Standard Webhooks libraries require */
#define NC_WHSEC_MAX   64
#define NC_SECRETS_MAX 8

/* "v1," + 44 base64 characters, one per secret, separated by spaces, plus NUL. */
#define NC_WEBHOOK_SIG_SIZE (NC_SECRETS_MAX * 48)
/* "msg_" + 32 hex digits + NUL fits with room to spare. */
#define NC_WEBHOOK_ID_SIZE 40

/* The keys of one partner, in file order: the first signs alone until a rotation adds a
 * second line, then both sign until the partner has switched. */
typedef struct nc_secrets {
        unsigned char key[NC_SECRETS_MAX][NC_WHSEC_MAX];
        size_t len[NC_SECRETS_MAX];
        size_t n;
} nc_secrets_t;

/* Standard base64 with padding.  Encode writes a NUL-terminated string and returns its
 * length, or -1 if OUT_SIZE is too small.  Decode is strict: length a multiple of 4, only the
 * base64 alphabet, '=' only as the last one or two characters and zero padding bits;
 * returns 0, or -1 on bad input or when the result would not fit in OUT_CAP. */
int nc_base64_encode(const unsigned char *in, size_t len, char *out, size_t out_size);
int nc_base64_decode(const char *in, size_t in_len, unsigned char *out, size_t out_cap,
                     size_t *out_len);
/* The same for base64url without padding (RFC 4648 §5: '-' and '_', for URLs): decode refuses
 * '=', a length that leaves one character over and non-zero leftover bits. */
int nc_base64url_encode(const unsigned char *in, size_t len, char *out, size_t out_size);
int nc_base64url_decode(const char *in, size_t in_len, unsigned char *out, size_t out_cap,
                        size_t *out_len);

/* Decodes "whsec_<base64>" (the prefix is optional) into KEY; the key must be NC_WHSEC_MIN to
 * NC_WHSEC_MAX bytes.  Errors read "secret: ...". */
int nc_whsec_decode(const char *secret, unsigned char *key, size_t key_cap, size_t *key_len,
                    char *errstr, size_t errstr_size);

void nc_secrets_init(nc_secrets_t *s);
/* Appends one secret (whsec_ form); -1 if invalid or the set is full. */
int nc_secrets_add(nc_secrets_t *s, const char *secret, char *errstr, size_t errstr_size);
/* Replaces S with the secrets of PATH: one per line, blank lines and '#' comments ignored,
 * 1 to NC_SECRETS_MAX of them.  Errors read "path:line: ...".  Warns when the file can be
 * read by group or others.  On error S is left as it was, so a reload can keep the old keys. */
int nc_secrets_load_file(nc_secrets_t *s, const char *path, char *errstr, size_t errstr_size);
/* Wipes the keys. */
void nc_secrets_clear(nc_secrets_t *s);

/* Writes the webhook-signature header value for MSG_ID, TIMESTAMP and BODY: one
 * "v1,<signature>" per secret, in order, separated by single spaces.  Returns 0, or -1 if S
 * is empty, OUT_SIZE is too small (NC_WEBHOOK_SIG_SIZE always suffices) or HMAC fails. */
int nc_webhook_sign(const nc_secrets_t *s, const char *msg_id, int64_t timestamp, const char *body,
                    size_t body_len, char *out, size_t out_size);

/* The keys of one partner ready to sign: an HMAC context per secret, keyed once, so a
 * signature costs only the hashing of the message (the key schedule and the provider lookup
 * are not repeated per request).  Used by one thread at a time. */
typedef struct nc_signer {
        void *ctx[NC_SECRETS_MAX]; /* EVP_MAC_CTX */
        size_t n;
} nc_signer_t;

/* Keys a signer with the secrets of S (which may be wiped afterwards).  -1 on failure, with
 * SG left empty. */
int nc_signer_init(nc_signer_t *sg, const nc_secrets_t *s, char *errstr, size_t errstr_size);
/* Same result as nc_webhook_sign with the secrets SG was keyed with. */
int nc_signer_sign(nc_signer_t *sg, const char *msg_id, int64_t timestamp, const char *body,
                   size_t body_len, char *out, size_t out_size);
void nc_signer_free(nc_signer_t *sg);

/* Deterministic webhook-id: "msg_" + the first 32 hex digits of
 * SHA-256(notice_id "\n" partner_id "\n" event_type), so a retry or a restart resends the same
 * id (receivers deduplicate on it) while each (notice, partner, event) gets its own. */
void nc_webhook_id(const char *notice_id, const char *partner_id, const char *event_type,
                   char out[NC_WEBHOOK_ID_SIZE]);

#endif
