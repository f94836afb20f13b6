/* noticecast-mailer: the synthetic-IV construction the mailer's link tokens share
 * (unsub_token.h, ml_webtoken.h): one secret, two keys derived under labels of the token's
 * format, a truncated HMAC-SHA256 tag over the plaintext that is also the AES-256-CTR IV. */
#ifndef ML_SIV_H
#define ML_SIV_H

#include <stddef.h>

#define ML_SIV_TAG_LEN 16

typedef struct ml_siv_keys {
        unsigned char enc[32], mac[32];
} ml_siv_keys_t;

/* K = HMAC-SHA256(SECRET, ENC_LABEL) and HMAC-SHA256(SECRET, MAC_LABEL).  OPENSSL_cleanse it
 * after use. */
void ml_siv_derive(const unsigned char *secret, size_t len, const char *enc_label,
                   const char *mac_label, ml_siv_keys_t *k);
/* The first ML_SIV_TAG_LEN bytes of HMAC-SHA256(K->mac, P). */
void ml_siv_tag(const ml_siv_keys_t *k, const unsigned char *p, size_t len,
                unsigned char tag[ML_SIV_TAG_LEN]);
/* AES-256-CTR under K->enc with IV (its own inverse).  Returns 0 or -1. */
int ml_siv_ctr(const ml_siv_keys_t *k, const unsigned char iv[ML_SIV_TAG_LEN],
               const unsigned char *in, size_t len, unsigned char *out);

#endif
