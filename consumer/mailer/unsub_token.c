#include "unsub_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "nc_sign.h"

#define VERSION  0x02
#define TAG_LEN  16
#define HEAD_LEN 10 /* version, generation, id length */
#define P_MAX    (((HEAD_LEN + ML_TOKEN_ID_MAX) + 15) / 16 * 16)

const char *const ml_token_status_names[] = {"ok", "malformed", "forged"};

struct keys {
        unsigned char enc[32], mac[32];
};

/* One secret, two keys, each for one purpose. */
static void derive(const unsigned char *secret, size_t len, struct keys *k)
{
        static const char enc_label[] = "noticecast unsubscribe token v2: encryption";
        static const char mac_label[] = "noticecast unsubscribe token v2: authentication";
        unsigned int n = 32;

        HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)enc_label,
             sizeof(enc_label) - 1, k->enc, &n);
        n = 32;
        HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)mac_label,
             sizeof(mac_label) - 1, k->mac, &n);
}

static void tag_of(const struct keys *k, const unsigned char *p, size_t len,
                   unsigned char tag[TAG_LEN])
{
        unsigned char full[32];
        unsigned int n = sizeof(full);

        HMAC(EVP_sha256(), k->mac, sizeof(k->mac), p, len, full, &n);
        memcpy(tag, full, TAG_LEN);
        OPENSSL_cleanse(full, sizeof(full));
}

/* AES-256-CTR is its own inverse. */
static int ctr(const struct keys *k, const unsigned char iv[TAG_LEN], const unsigned char *in,
               size_t len, unsigned char *out)
{
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int n1 = 0, n2 = 0, ok;

        if (!c)
                return -1;
        ok = EVP_EncryptInit_ex(c, EVP_aes_256_ctr(), NULL, k->enc, iv) == 1 &&
             EVP_EncryptUpdate(c, out, &n1, in, (int)len) == 1 &&
             EVP_EncryptFinal_ex(c, out + n1, &n2) == 1 && (size_t)(n1 + n2) == len;
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -1;
}

int ml_token_seal(const unsigned char *secret, size_t secret_len, const char *id,
                  uint64_t generation, char *out, size_t size)
{
        unsigned char p[P_MAX], buf[TAG_LEN + P_MAX];
        size_t n = strlen(id), plen = (HEAD_LEN + n + 15) / 16 * 16;
        struct keys k;
        int i, rc = -1;

        if (size)
                out[0] = '\0';
        if (n > ML_TOKEN_ID_MAX || size < (TAG_LEN + plen + 2) / 3 * 4 + 1)
                return -1;
        memset(p, 0, sizeof(p));
        p[0] = VERSION;
        for (i = 0; i < 8; i++)
                p[1 + i] = (unsigned char)(generation >> (56 - 8 * i));
        p[9] = (unsigned char)n;
        memcpy(p + HEAD_LEN, id, n);
        derive(secret, secret_len, &k);
        tag_of(&k, p, plen, buf);
        if (ctr(&k, buf, p, plen, buf + TAG_LEN) == 0 &&
            nc_base64url_encode(buf, TAG_LEN + plen, out, size) >= 0)
                rc = 0;
        OPENSSL_cleanse(&k, sizeof(k));
        OPENSSL_cleanse(p, sizeof(p));
        return rc;
}

ml_token_status_t ml_token_open(const unsigned char *secret, size_t secret_len, const char *token,
                                char *id, size_t id_size, uint64_t *generation)
{
        unsigned char buf[TAG_LEN + P_MAX], p[P_MAX], tag[TAG_LEN];
        size_t len, plen, n, i;
        ml_token_status_t st = ML_TOKEN_FORGED;
        struct keys k;
        int zero = 0;

        if (id_size)
                id[0] = '\0';
        if (!token || strlen(token) > ML_TOKEN_SIZE ||
            nc_base64url_decode(token, strlen(token), buf, sizeof(buf), &len) != 0 ||
            len < TAG_LEN + 16 || (len - TAG_LEN) % 16)
                return ML_TOKEN_MALFORMED;
        plen = len - TAG_LEN;
        derive(secret, secret_len, &k);
        if (ctr(&k, buf, buf + TAG_LEN, plen, p) != 0)
                goto out;
        tag_of(&k, p, plen, tag);
        if (CRYPTO_memcmp(tag, buf, TAG_LEN) != 0)
                goto out;
        /* Authentic: made by us, so well formed unless the format changed. */
        n = p[9];
        if (p[0] != VERSION || HEAD_LEN + n > plen || (HEAD_LEN + n + 15) / 16 * 16 != plen ||
            n >= id_size || memchr(p + HEAD_LEN, '\0', n)) {
                st = ML_TOKEN_MALFORMED;
                goto out;
        }
        for (i = HEAD_LEN + n; i < plen; i++)
                zero |= p[i];
        if (zero) {
                st = ML_TOKEN_MALFORMED;
                goto out;
        }
        *generation = 0;
        for (i = 0; i < 8; i++)
                *generation = *generation << 8 | p[1 + i];
        memcpy(id, p + HEAD_LEN, n);
        id[n] = '\0';
        st = ML_TOKEN_OK;
out:
        OPENSSL_cleanse(&k, sizeof(k));
        OPENSSL_cleanse(p, sizeof(p));
        return st;
}
