#include "nc_verp.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "nc_log.h"

#define VERSION 1
#define RAW_LEN 20
#define MAC_OFF 13 /* version, subscriber and message references */
#define TAG_LEN (RAW_LEN - MAC_OFF)

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

const char *nc_verp_status_name(nc_verp_status_t s)
{
        switch (s) {
        case NC_VERP_OK:
                return "ok";
        case NC_VERP_NONE:
                return "none";
        case NC_VERP_MALFORMED:
                return "malformed";
        case NC_VERP_FORGED:
                return "forged";
        }
        fatalx("nc_verp_status_name: unknown status %d", (int)s);
}

static void hmac(const unsigned char *key, size_t klen, const void *data, size_t len,
                 unsigned char out[32])
{
        unsigned int olen = 32;

        HMAC(EVP_sha256(), key, (int)klen, data, len, out, &olen);
}

void nc_verp_derive(const unsigned char *secret, size_t secret_len, nc_verp_keys_t *k)
{
        static const char ref[] = "noticecast verp v1: subscriber reference";
        static const char mac[] = "noticecast verp v1: authentication";

        hmac(secret, secret_len, ref, sizeof(ref) - 1, k->ref);
        hmac(secret, secret_len, mac, sizeof(mac) - 1, k->mac);
}

uint64_t nc_verp_subscriber_ref(const nc_verp_keys_t *k, const char *id)
{
        unsigned char h[32];
        uint64_t v = 0;

        hmac(k->ref, sizeof(k->ref), id, strlen(id), h);
        for (int i = 0; i < 8; i++)
                v = v << 8 | h[i];
        return v;
}

uint32_t nc_verp_message_ref(const char *message_id)
{
        unsigned char h[SHA256_DIGEST_LENGTH];
        size_t n = strlen(message_id);

        if (n >= 2 && message_id[0] == '<' && message_id[n - 1] == '>') {
                message_id++;
                n -= 2;
        }
        SHA256((const unsigned char *)message_id, n, h);
        return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

static void raw_fill(const nc_verp_keys_t *k, uint64_t sub_ref, uint32_t msg_ref,
                     unsigned char raw[RAW_LEN])
{
        unsigned char tag[32];

        raw[0] = VERSION;
        for (int i = 0; i < 8; i++)
                raw[1 + i] = (unsigned char)(sub_ref >> (56 - 8 * i));
        for (int i = 0; i < 4; i++)
                raw[9 + i] = (unsigned char)(msg_ref >> (24 - 8 * i));
        hmac(k->mac, sizeof(k->mac), raw, MAC_OFF, tag);
        memcpy(raw + MAC_OFF, tag, TAG_LEN);
}

void nc_verp_token(const nc_verp_keys_t *k, uint64_t sub_ref, uint32_t msg_ref,
                   char out[NC_VERP_TOKEN_LEN + 1])
{
        unsigned char raw[RAW_LEN];
        size_t o = 0;

        raw_fill(k, sub_ref, msg_ref, raw);
        /* 20 bytes = 160 bits = 32 groups of 5: no padding. */
        for (size_t i = 0; i < RAW_LEN; i += 5) {
                uint64_t g = 0;

                for (size_t j = 0; j < 5; j++)
                        g = g << 8 | raw[i + j];
                for (int s = 35; s >= 0; s -= 5)
                        out[o++] = b32[(g >> s) & 31];
        }
        out[o] = '\0';
}

/* Decodes exactly NC_VERP_TOKEN_LEN base32 characters (either case) at S; -1 if not. */
static int decode(const char *s, unsigned char raw[RAW_LEN])
{
        for (size_t i = 0, o = 0; i < NC_VERP_TOKEN_LEN; i += 8, o += 5) {
                uint64_t g = 0;

                for (size_t j = 0; j < 8; j++) {
                        int c = tolower((unsigned char)s[i + j]);
                        const char *p = c ? strchr(b32, c) : NULL;

                        if (!p)
                                return -1;
                        g = g << 5 | (uint64_t)(p - b32);
                }
                for (size_t j = 0; j < 5; j++)
                        raw[o + j] = (unsigned char)(g >> (32 - 8 * j));
        }
        return 0;
}

static nc_verp_status_t check(const nc_verp_keys_t *k, const char *tok, uint64_t *sub_ref,
                              uint32_t *msg_ref)
{
        unsigned char raw[RAW_LEN], want[RAW_LEN];
        uint64_t sr = 0;
        uint32_t mr = 0;

        if (decode(tok, raw) != 0 || raw[0] != VERSION)
                return NC_VERP_MALFORMED;
        for (int i = 0; i < 8; i++)
                sr = sr << 8 | raw[1 + i];
        for (int i = 0; i < 4; i++)
                mr = mr << 8 | raw[9 + i];
        raw_fill(k, sr, mr, want);
        if (CRYPTO_memcmp(raw + MAC_OFF, want + MAC_OFF, TAG_LEN) != 0)
                return NC_VERP_FORGED;
        if (sub_ref)
                *sub_ref = sr;
        if (msg_ref)
                *msg_ref = mr;
        return NC_VERP_OK;
}

/* BASE's local part and domain. */
static int split(const char *base, const char **local, size_t *llen, const char **domain)
{
        const char *at = strrchr(base, '@');

        if (!at || at == base || !at[1])
                return -1;
        *local = base;
        *llen = (size_t)(at - base);
        *domain = at + 1;
        return 0;
}

int nc_verp_address(const nc_verp_keys_t *k, const char *base, char delim, const char *id,
                    const char *message_id, char *out, size_t size)
{
        char tok[NC_VERP_TOKEN_LEN + 1];
        const char *local, *domain;
        size_t llen;
        int n;

        if (size)
                out[0] = '\0';
        if (split(base, &local, &llen, &domain) != 0)
                return -1;
        nc_verp_token(k, nc_verp_subscriber_ref(k, id), nc_verp_message_ref(message_id), tok);
        n = snprintf(out, size, "%.*s%c%s@%s", (int)llen, local, delim, tok, domain);
        if (n < 0 || (size_t)n >= size) {
                if (size)
                        out[0] = '\0';
                return -1;
        }
        return 0;
}

nc_verp_status_t nc_verp_parse(const nc_verp_keys_t *k, const char *base, char delim,
                               const char *addr, uint64_t *sub_ref, uint32_t *msg_ref)
{
        const char *local, *domain, *at;
        size_t llen, n;

        if (split(base, &local, &llen, &domain) != 0)
                return NC_VERP_NONE;
        while (*addr == ' ' || *addr == '\t' || *addr == '<')
                addr++;
        n = strlen(addr);
        while (n && (addr[n - 1] == '>' || addr[n - 1] == ' ' || addr[n - 1] == '\t' ||
                     addr[n - 1] == '\r' || addr[n - 1] == '\n'))
                n--;
        at = memrchr(addr, '@', n);
        if (!at || (size_t)(at - addr) <= llen || strncasecmp(addr, local, llen) != 0 ||
            addr[llen] != delim)
                return NC_VERP_NONE;
        if (strlen(domain) != n - (size_t)(at + 1 - addr) ||
            strncasecmp(at + 1, domain, strlen(domain)) != 0)
                return NC_VERP_NONE;
        if ((size_t)(at - (addr + llen + 1)) != NC_VERP_TOKEN_LEN)
                return NC_VERP_MALFORMED;
        return check(k, addr + llen + 1, sub_ref, msg_ref);
}

nc_verp_status_t nc_verp_find(const nc_verp_keys_t *k, const char *base, char delim,
                              const char *text, uint64_t *sub_ref, uint32_t *msg_ref)
{
        const char *local, *domain, *p;
        nc_verp_status_t last = NC_VERP_NONE;
        char lp[256];
        size_t llen;

        if (split(base, &local, &llen, &domain) != 0 || llen >= sizeof(lp))
                return NC_VERP_NONE;
        memcpy(lp, local, llen);
        lp[llen] = '\0';
        /* Every "<local><delim>" followed by 32 base32 characters and "@<domain>", in any
         * case: the report may have wrapped, quoted or re-cased the address around it. */
        for (p = text; (p = strcasestr(p, lp)); p++) {
                const char *t = p + llen, *e;

                if (*t != delim)
                        continue;
                t++;
                e = t;
                while (*e && strchr(b32, tolower((unsigned char)*e)))
                        e++;
                if (e - t != NC_VERP_TOKEN_LEN || *e != '@' ||
                    strncasecmp(e + 1, domain, strlen(domain)) != 0)
                        continue;
                if ((last = check(k, t, sub_ref, msg_ref)) == NC_VERP_OK)
                        return NC_VERP_OK;
        }
        return last;
}
