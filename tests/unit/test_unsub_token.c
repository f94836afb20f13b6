/* Unit tests for consumer/mailer/unsub_token.c (one-click unsubscribe tokens) and the
 * subscription generation of common/nc_subscriber.c that the tokens bind. */
#include "nc_test.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "nc_sign.h"
#include "nc_subscriber.h"
#include "nc_util.h"

#include "../../consumer/mailer/ml_siv.c"
#include "../../consumer/mailer/unsub_token.c"

/* The base64url alphabet (RFC 4648 §5). */
static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
static const unsigned char other_secret[] = "fedcba9876543210fedcba9876543210";
#define SECRET_LEN (sizeof(secret) - 1)
#define NOW        1800000000LL  /* the clock of these tests */
#define EXP        (NOW + 86400) /* the expiry they seal with */

/* A token of the previous format (0x02, no expiry) of "ana@example.org", generation
 * 0x1234abcd5678ef90, under SECRET, as that release's ml_token_seal made it: links in emails
 * sent before v3 must keep working. */
#define V2_TOKEN "SID6DhE_-2Z6242wpEwHI7BMvU_6iT9yxt6pQi5m875BeINd5Cg9fi9ONfXzpcza"

static void lower(char *s)
{
        for (; *s; s++)
                *s = (char)tolower((unsigned char)*s);
}

/* Every encoding of S the token could be hiding it in. */
static void assert_hidden(const char *token, const char *s)
{
        char enc[1024], url[1024], hex[1024], tok_lower[ML_TOKEN_SIZE];
        size_t i, n = strlen(s);

        assert_true(nc_base64_encode((const unsigned char *)s, n, enc, sizeof(enc)) > 0);
        for (i = 0; enc[i] && enc[i] != '='; i++)
                url[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
        url[i] = '\0';
        enc[i] = '\0';
        for (i = 0; i < n; i++)
                snprintf(hex + 2 * i, 3, "%02x", (unsigned char)s[i]);
        snprintf(tok_lower, sizeof(tok_lower), "%s", token);
        lower(tok_lower);
        assert_null(strstr(token, s));
        /* The first 12 characters of an encoding start at a byte boundary of S. */
        enc[12] = url[12] = '\0';
        assert_null(strstr(token, enc));
        assert_null(strstr(token, url));
        hex[16] = '\0';
        assert_null(strstr(tok_lower, hex));
}

static void test_round_trip(void **state)
{
        static const char *const ids[] = {"ana@example.org", "a@b.c",
                                          "very.long.local.part.of.an.address@example.org"};
        char tok[ML_TOKEN_SIZE], again[ML_TOKEN_SIZE], id[ML_TOKEN_ID_MAX + 1];
        uint64_t gen;
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                assert_int_equal(ml_token_seal(secret, SECRET_LEN, ids[i], 0x1234abcd5678ef90ULL,
                                               EXP, tok, sizeof(tok)),
                                 0);
                assert_int_equal(ml_token_open(secret, SECRET_LEN, tok, NOW, id, sizeof(id), &gen),
                                 ML_TOKEN_OK);
                assert_string_equal(id, ids[i]);
                assert_true(gen == 0x1234abcd5678ef90ULL);
                /* URL-safe as it is, and stable for one subscription. */
                assert_int_equal(strspn(tok, url_chars), strlen(tok));
                assert_int_equal(ml_token_seal(secret, SECRET_LEN, ids[i], 0x1234abcd5678ef90ULL,
                                               EXP, again, sizeof(again)),
                                 0);
                assert_string_equal(tok, again);
                assert_hidden(tok, ids[i]);
        }
        /* Generation 0 (a record from before generations) works like any other. */
        assert_int_equal(
            ml_token_seal(secret, SECRET_LEN, "ana@example.org", 0, EXP, tok, sizeof(tok)), 0);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, tok, NOW, id, sizeof(id), &gen),
                         ML_TOKEN_OK);
        assert_true(gen == 0);
}

/* The expiry is inside the MAC: good up to the second it names, then expired; and expired is
 * told only of an authentic token. */
static void test_expiry(void **state)
{
        char tok[ML_TOKEN_SIZE], bad[ML_TOKEN_SIZE], id[ML_TOKEN_ID_MAX + 1];
        uint64_t gen;

        (void)state;
        assert_int_equal(
            ml_token_seal(secret, SECRET_LEN, "ana@example.org", 9, NOW + 10, tok, sizeof(tok)), 0);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, tok, NOW + 10, id, sizeof(id), &gen),
                         ML_TOKEN_OK);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, tok, NOW + 11, id, sizeof(id), &gen),
                         ML_TOKEN_EXPIRED);
        assert_string_equal(id, "");
        assert_int_equal(
            ml_token_open(other_secret, SECRET_LEN, tok, NOW + 11, id, sizeof(id), &gen),
            ML_TOKEN_FORGED);
        snprintf(bad, sizeof(bad), "%s", tok);
        bad[5] = bad[5] == 'A' ? 'B' : 'A';
        assert_int_not_equal(ml_token_open(secret, SECRET_LEN, bad, NOW + 11, id, sizeof(id), &gen),
                             ML_TOKEN_EXPIRED);
        assert_string_equal(ml_token_status_names[ML_TOKEN_EXPIRED], "expired");
}

/* A token of the previous format still opens, with no expiry. */
static void test_v2_still_opens(void **state)
{
        char id[ML_TOKEN_ID_MAX + 1];
        uint64_t gen = 0;

        (void)state;
        assert_int_equal(
            ml_token_open(secret, SECRET_LEN, V2_TOKEN, INT64_MAX, id, sizeof(id), &gen),
            ML_TOKEN_OK);
        assert_string_equal(id, "ana@example.org");
        assert_true(gen == 0x1234abcd5678ef90ULL);
        assert_int_equal(
            ml_token_open(other_secret, SECRET_LEN, V2_TOKEN, NOW, id, sizeof(id), &gen),
            ML_TOKEN_FORGED);
}

static void test_generation_bound(void **state)
{
        char a[ML_TOKEN_SIZE], b[ML_TOKEN_SIZE], id[ML_TOKEN_ID_MAX + 1];
        uint64_t gen;

        (void)state;
        assert_int_equal(ml_token_seal(secret, SECRET_LEN, "ana@example.org", 1, EXP, a, sizeof(a)),
                         0);
        assert_int_equal(ml_token_seal(secret, SECRET_LEN, "ana@example.org", 2, EXP, b, sizeof(b)),
                         0);
        assert_string_not_equal(a, b);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, a, NOW, id, sizeof(id), &gen),
                         ML_TOKEN_OK);
        assert_true(gen == 1);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, b, NOW, id, sizeof(id), &gen),
                         ML_TOKEN_OK);
        assert_true(gen == 2);
}

static void test_forged(void **state)
{
        char tok[ML_TOKEN_SIZE], bad[ML_TOKEN_SIZE], id[ML_TOKEN_ID_MAX + 1];
        unsigned char mac[32];
        unsigned int maclen = sizeof(mac);
        char old[512], a[256], b[64];
        uint64_t gen;
        size_t i, n;

        (void)state;
        assert_int_equal(
            ml_token_seal(secret, SECRET_LEN, "ana@example.org", 7, EXP, tok, sizeof(tok)), 0);
        n = strlen(tok);
        /* Another secret. */
        assert_int_equal(ml_token_open(other_secret, SECRET_LEN, tok, NOW, id, sizeof(id), &gen),
                         ML_TOKEN_FORGED);
        assert_string_equal(id, "");
        /* Any one character changed (the last one carries only 2..6 significant bits: a change
         * there is either malformed or forged, never accepted). */
        for (i = 0; i < n; i++) {
                ml_token_status_t st;

                snprintf(bad, sizeof(bad), "%s", tok);
                bad[i] = bad[i] == 'A' ? 'B' : 'A';
                st = ml_token_open(secret, SECRET_LEN, bad, NOW, id, sizeof(id), &gen);
                if (st == ML_TOKEN_OK)
                        fail_msg("token with character %zu changed was accepted", i);
        }
        /* Truncated, extended, padded, not base64url, empty, NULL. */
        snprintf(bad, sizeof(bad), "%.*s", (int)(n - 4), tok);
        assert_int_not_equal(ml_token_open(secret, SECRET_LEN, bad, NOW, id, sizeof(id), &gen),
                             ML_TOKEN_OK);
        snprintf(bad, sizeof(bad), "%sAAAA", tok);
        assert_int_not_equal(ml_token_open(secret, SECRET_LEN, bad, NOW, id, sizeof(id), &gen),
                             ML_TOKEN_OK);
        snprintf(bad, sizeof(bad), "%s==", tok);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, bad, NOW, id, sizeof(id), &gen),
                         ML_TOKEN_MALFORMED);
        snprintf(bad, sizeof(bad), "%s", tok);
        bad[3] = '+';
        assert_int_equal(ml_token_open(secret, SECRET_LEN, bad, NOW, id, sizeof(id), &gen),
                         ML_TOKEN_MALFORMED);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, "", NOW, id, sizeof(id), &gen),
                         ML_TOKEN_MALFORMED);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, NULL, NOW, id, sizeof(id), &gen),
                         ML_TOKEN_MALFORMED);
        /* A token of the first format, valid under the same secret: not accepted. */
        HMAC(EVP_sha256(), secret, (int)SECRET_LEN,
             (const unsigned char *)"unsubscribe\nana@example.org", 27, mac, &maclen);
        assert_true(nc_base64_encode((const unsigned char *)"ana@example.org", 15, a, sizeof(a)) >
                    0);
        assert_true(nc_base64_encode(mac, sizeof(mac), b, sizeof(b)) > 0);
        a[strcspn(a, "=")] = b[strcspn(b, "=")] = '\0';
        snprintf(old, sizeof(old), "%s.%s", a, b);
        assert_int_not_equal(ml_token_open(secret, SECRET_LEN, old, NOW, id, sizeof(id), &gen),
                             ML_TOKEN_OK);
        assert_string_equal(ml_token_status_names[ML_TOKEN_FORGED], "forged");
}

static void test_limits(void **state)
{
        char id[ML_TOKEN_ID_MAX + 2], tok[ML_TOKEN_SIZE], out[ML_TOKEN_ID_MAX + 1], small[40];
        uint64_t gen;

        (void)state;
        memset(id, 'a', ML_TOKEN_ID_MAX);
        id[ML_TOKEN_ID_MAX] = '\0';
        assert_int_equal(ml_token_seal(secret, SECRET_LEN, id, ~0ULL, EXP, tok, sizeof(tok)), 0);
        assert_true(strlen(tok) < ML_TOKEN_SIZE);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, tok, NOW, out, sizeof(out), &gen),
                         ML_TOKEN_OK);
        assert_string_equal(out, id);
        assert_true(gen == ~0ULL);
        /* An id too long, an output too small. */
        id[ML_TOKEN_ID_MAX] = 'a';
        id[ML_TOKEN_ID_MAX + 1] = '\0';
        assert_int_equal(ml_token_seal(secret, SECRET_LEN, id, 1, EXP, tok, sizeof(tok)), -1);
        assert_string_equal(tok, "");
        assert_int_equal(
            ml_token_seal(secret, SECRET_LEN, "ana@example.org", 1, EXP, small, sizeof(small)), -1);
        /* An id buffer too small for what the token holds. */
        assert_int_equal(
            ml_token_seal(secret, SECRET_LEN, "ana@example.org", 1, EXP, tok, sizeof(tok)), 0);
        assert_int_equal(ml_token_open(secret, SECRET_LEN, tok, NOW, out, 8, &gen),
                         ML_TOKEN_MALFORMED);
}

/* Timing: the tag is compared with CRYPTO_memcmp; a token differing in its first byte and one
 * differing in its last tag byte take the same path (decrypt, MAC, compare).  Checked by
 * reading the code, not timed here (timings on a shared machine prove nothing). */

static void test_generation_field(void **state)
{
        nc_config_t cfg;
        char err[512];
        json_t *in, *rec, *rec2;
        const char *g;
        size_t i;

        (void)state;
        nc_config_defaults(&cfg);
        in = json_pack("{s:s}", "email", "Ana@Example.org");
        rec = nc_subscriber_normalise(in, &cfg, 0, err, sizeof(err));
        if (!rec)
                fail_msg("%s", err);
        assert_null(json_object_get(rec, "generation"));
        assert_true(nc_subscriber_generation(rec) == 0);
        assert_int_equal(nc_subscriber_new_generation(rec, err, sizeof(err)), 0);
        g = json_string_value(json_object_get(rec, "generation"));
        assert_non_null(g);
        assert_int_equal(strlen(g), NC_SUBSCRIBER_GENERATION_LEN);
        for (i = 0; g[i]; i++)
                assert_true(isxdigit((unsigned char)g[i]) && !isupper((unsigned char)g[i]));
        assert_true(nc_subscriber_generation(rec) != 0);
        /* Read back, it is kept; a new one differs. */
        rec2 = nc_subscriber_normalise(rec, &cfg, 0, err, sizeof(err));
        if (!rec2)
                fail_msg("%s", err);
        assert_string_equal(json_string_value(json_object_get(rec2, "generation")), g);
        assert_int_equal(nc_subscriber_new_generation(rec2, err, sizeof(err)), 0);
        assert_true(nc_subscriber_generation(rec2) != nc_subscriber_generation(rec));
        json_decref(rec2);
        /* Not hex, wrong length, not a string: refused. */
        json_object_set_new(rec, "generation", json_string("0123456789ABCDEF"));
        assert_null(nc_subscriber_normalise(rec, &cfg, 0, err, sizeof(err)));
        assert_true(!strncmp(err, "generation: ", 12));
        json_object_set_new(rec, "generation", json_string("0123"));
        assert_null(nc_subscriber_normalise(rec, &cfg, 0, err, sizeof(err)));
        json_object_set_new(rec, "generation", json_integer(5));
        assert_null(nc_subscriber_normalise(rec, &cfg, 0, err, sizeof(err)));
        json_decref(rec);
        json_decref(in);
        nc_config_free(&cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_generation_bound),
            cmocka_unit_test(test_forged),           cmocka_unit_test(test_limits),
            cmocka_unit_test(test_generation_field), cmocka_unit_test(test_expiry),
            cmocka_unit_test(test_v2_still_opens),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
