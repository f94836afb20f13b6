#include "unsub_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "ml_siv.h"
#include "nc_sign.h"

#define VERSION     0x03
#define VERSION_V2  0x02 /* no expiry: still opened, for the emails sent before v3 */
#define TAG_LEN     ML_SIV_TAG_LEN
#define HEAD_LEN    18 /* version, expiry, generation, id length */
#define HEAD_LEN_V2 10 /* version, generation, id length */
#define P_MAX       (((HEAD_LEN + ML_TOKEN_ID_MAX) + 15) / 16 * 16)

const char *const ml_token_status_names[] = {"ok", "malformed", "forged", "expired"};

/* One secret, two keys, each for one purpose. */
static void derive(const unsigned char *secret, size_t len, ml_siv_keys_t *k)
{
        ml_siv_derive(secret, len, "noticecast unsubscribe token v2: encryption",
                      "noticecast unsubscribe token v2: authentication", k);
}

static void put_be64(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const unsigned char *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

int ml_token_seal(const unsigned char *secret, size_t secret_len, const char *id,
                  uint64_t generation, int64_t expires_s, char *out, size_t size)
{
        unsigned char p[P_MAX], buf[TAG_LEN + P_MAX];
        size_t n = strlen(id), plen = (HEAD_LEN + n + 15) / 16 * 16;
        ml_siv_keys_t k;
        int rc = -1;

        if (size)
                out[0] = '\0';
        if (n > ML_TOKEN_ID_MAX || size < (TAG_LEN + plen + 2) / 3 * 4 + 1)
                return -1;
        memset(p, 0, sizeof(p));
        p[0] = VERSION;
        put_be64(p + 1, (uint64_t)expires_s);
        put_be64(p + 9, generation);
        p[17] = (unsigned char)n;
        memcpy(p + HEAD_LEN, id, n);
        derive(secret, secret_len, &k);
        ml_siv_tag(&k, p, plen, buf);
        if (ml_siv_ctr(&k, buf, p, plen, buf + TAG_LEN) == 0 &&
            nc_base64url_encode(buf, TAG_LEN + plen, out, size) >= 0)
                rc = 0;
        OPENSSL_cleanse(&k, sizeof(k));
        OPENSSL_cleanse(p, sizeof(p));
        return rc;
}

ml_token_status_t ml_token_open(const unsigned char *secret, size_t secret_len, const char *token,
                                int64_t now_s, char *id, size_t id_size, uint64_t *generation)
{
        unsigned char buf[TAG_LEN + P_MAX], p[P_MAX], tag[TAG_LEN];
        size_t len, plen, n, i, head;
        int64_t expires = INT64_MAX;
        ml_token_status_t st = ML_TOKEN_FORGED;
        ml_siv_keys_t k;
        int zero = 0;

        if (id_size)
                id[0] = '\0';
        if (!token || strlen(token) > ML_TOKEN_SIZE ||
            nc_base64url_decode(token, strlen(token), buf, sizeof(buf), &len) != 0 ||
            len < TAG_LEN + 16 || (len - TAG_LEN) % 16)
                return ML_TOKEN_MALFORMED;
        plen = len - TAG_LEN;
        derive(secret, secret_len, &k);
        if (ml_siv_ctr(&k, buf, buf + TAG_LEN, plen, p) != 0)
                goto out;
        ml_siv_tag(&k, p, plen, tag);
        if (CRYPTO_memcmp(tag, buf, TAG_LEN) != 0)
                goto out;
        /* Authentic: made by us, so well formed unless the format changed.  The version is
         * inside the MAC: a v2 token cannot pass for a v3 one, nor the reverse. */
        if (p[0] == VERSION) {
                head = HEAD_LEN;
                expires = (int64_t)get_be64(p + 1);
        } else if (p[0] == VERSION_V2) {
                head = HEAD_LEN_V2;
        } else {
                st = ML_TOKEN_MALFORMED;
                goto out;
        }
        n = p[head - 1];
        if (head + n > plen || (head + n + 15) / 16 * 16 != plen || n >= id_size ||
            memchr(p + head, '\0', n)) {
                st = ML_TOKEN_MALFORMED;
                goto out;
        }
        for (i = head + n; i < plen; i++)
                zero |= p[i];
        if (zero) {
                st = ML_TOKEN_MALFORMED;
                goto out;
        }
        if (now_s > expires) {
                st = ML_TOKEN_EXPIRED;
                goto out;
        }
        *generation = get_be64(p + head - 9);
        memcpy(id, p + head, n);
        id[n] = '\0';
        st = ML_TOKEN_OK;
out:
        OPENSSL_cleanse(&k, sizeof(k));
        OPENSSL_cleanse(p, sizeof(p));
        return st;
}
