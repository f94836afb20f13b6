#include "ml_siv.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

void ml_siv_derive(const unsigned char *secret, size_t len, const char *enc_label,
                   const char *mac_label, ml_siv_keys_t *k)
{
        unsigned int n = sizeof(k->enc);

        HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)enc_label, strlen(enc_label),
             k->enc, &n);
        n = sizeof(k->mac);
        HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)mac_label, strlen(mac_label),
             k->mac, &n);
}

void ml_siv_tag(const ml_siv_keys_t *k, const unsigned char *p, size_t len,
                unsigned char tag[ML_SIV_TAG_LEN])
{
        unsigned char full[32];
        unsigned int n = sizeof(full);

        HMAC(EVP_sha256(), k->mac, sizeof(k->mac), p, len, full, &n);
        memcpy(tag, full, ML_SIV_TAG_LEN);
        OPENSSL_cleanse(full, sizeof(full));
}

int ml_siv_ctr(const ml_siv_keys_t *k, const unsigned char iv[ML_SIV_TAG_LEN],
               const unsigned char *in, size_t len, unsigned char *out)
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
