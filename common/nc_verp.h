/* VERP envelope senders (Variable Envelope Return Path): every message goes out with its own
 * envelope sender, bounces+<token>@domain (the local part and domain of [mailer]
 * envelope_from, the delimiter of [mailer] verp_delimiter), so that a bounce sent back to it
 * names the subscriber and the message even when the report inside is mangled or redacted.
 *
 *   token = base32 of 20 bytes (RFC 4648 alphabet in lower case, unpadded: 32 characters;
 *           decoded in either case, since some MTAs fold local parts):
 *     0       version, 1
 *     1..8    subscriber reference: HMAC-SHA256(K_ref, subscriber id), first 8 bytes
 *     9..12   message reference: SHA-256(Message-ID without <>), first 4 bytes
 *     13..19  tag: HMAC-SHA256(K_mac, bytes 0..12), first 7 bytes
 *   K_ref = HMAC-SHA256(secret, "noticecast verp v1: subscriber reference")
 *   K_mac = HMAC-SHA256(secret, "noticecast verp v1: authentication")
 *
 * The secret is the unsubscribe secret ([mailer] unsubscribe_secret_file); the labels give
 * these keys a purpose of their own.  The address stays within RFC 5321's 64-octet local part
 * (bounces+ and 32 characters), which is why it carries references rather than the address:
 * the mailer maps a subscriber reference back to its subscriber with an index of its view.
 * The address itself is not in it (the envelope sender passes through relays).  A tag of 56
 * bits makes a forged bounce a guess of one in 2^56 per message sent to us; the tag is
 * compared in constant time. */
#ifndef NC_VERP_H
#define NC_VERP_H

#include <stddef.h>
#include <stdint.h>

#define NC_VERP_TOKEN_LEN 32

typedef struct nc_verp_keys {
        unsigned char ref[32];
        unsigned char mac[32];
} nc_verp_keys_t;

typedef enum nc_verp_status {
        NC_VERP_OK,
        NC_VERP_NONE,      /* not an address of this base (no delimiter and token) */
        NC_VERP_MALFORMED, /* of this base, but the token is not base32 of the right length or
                            * version */
        NC_VERP_FORGED,    /* the tag does not match: not ours, or altered */
} nc_verp_status_t;

/* "ok", "none", "malformed", "forged"; aborts on a value outside the enum. */
const char *nc_verp_status_name(nc_verp_status_t s);

void nc_verp_derive(const unsigned char *secret, size_t secret_len, nc_verp_keys_t *k);
/* The reference of subscriber ID (its lower-cased address, the key of its record). */
uint64_t nc_verp_subscriber_ref(const nc_verp_keys_t *k, const char *id);
/* The reference of MESSAGE_ID (with or without its angle brackets). */
uint32_t nc_verp_message_ref(const char *message_id);
/* The token for these references, NUL-terminated (OUT holds NC_VERP_TOKEN_LEN + 1). */
void nc_verp_token(const nc_verp_keys_t *k, uint64_t sub_ref, uint32_t msg_ref,
                   char out[NC_VERP_TOKEN_LEN + 1]);
/* BASE's local part, DELIM, the token of subscriber ID and MESSAGE_ID, '@', BASE's domain
 * into OUT.  Returns 0, or -1 (OUT = "") if BASE has no '@' or SIZE is too small. */
int nc_verp_address(const nc_verp_keys_t *k, const char *base, char delim, const char *id,
                    const char *message_id, char *out, size_t size);
/* Reads ADDR (with or without <>) as a VERP address of BASE with DELIM: local part and domain
 * compared without case.  On NC_VERP_OK, *SUB_REF and *MSG_REF (either may be NULL) are the
 * token's references. */
nc_verp_status_t nc_verp_parse(const nc_verp_keys_t *k, const char *base, char delim,
                               const char *addr, uint64_t *sub_ref, uint32_t *msg_ref);
/* Finds a token of this base anywhere in TEXT (a header value, a mangled report), the first
 * that verifies; NC_VERP_NONE when there is no candidate at all, else the status of the last
 * candidate seen. */
nc_verp_status_t nc_verp_find(const nc_verp_keys_t *k, const char *base, char delim,
                              const char *text, uint64_t *sub_ref, uint32_t *msg_ref);

#endif
