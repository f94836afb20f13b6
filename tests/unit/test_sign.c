/* Unit tests for common/nc_sign.c: Standard Webhooks secrets, signatures and message ids.
 *
 * Expected signatures come from the published svix / Standard Webhooks test vector and from
 * the reference Python library (standardwebhooks 1.1.0, Webhook.sign), cross-checked with
 * `openssl dgst -sha256 -mac HMAC`. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "nc_log.h"
#include "nc_sign.h"

/* The Standard Webhooks / svix known-answer vector; the key is 24 bytes. */
#define KAT_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define KAT_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define KAT_TS     INT64_C(1614265330)
#define KAT_BODY   "{\"test\": 2432232314}"
#define KAT_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/* Keys 1..32 (one '=' of padding) and (7i+3) mod 256 for 64 bytes (two '='). */
#define S32 "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
#define S64                                                                                        \
        "whsec_AwoRGB8mLTQ7QklQV15lbHN6gYiPlp2kq7K5wMfO1dzj6vH4/wYNFBsiKTA3PkVMU1phaG92fYSLkpmgp"  \
        "661vA=="
#define PY_ID "msg_0123456789abcdef0123456789abcdef"
#define PY_TS INT64_C(1700000000)
#define PY_BODY                                                                                    \
        "{\"type\":\"notice.published\",\"timestamp\":\"2023-11-14T22:13:20Z\",\"data\":{\"id\":"  \
        "\"x\"}}"
#define PY_SIG_KAT "v1,+pad9/9RLpAZ/pDndufRlHMAGCCPdDsi+54E5aZV+pQ="
#define PY_SIG_32  "v1,HpxN25IZ3xVu5twOxtKKRseniCZe78EGEowdGz0bt6Y="
#define PY_SIG_64  "v1,qQIov4jbCrTf827xOWQU7ZnsEJwumr+LpyAot7iOYOw="

static void sign_one(const char *secret, const char *id, int64_t ts, const char *body,
                     const char *expect)
{
        char err[256] = "", sig[NC_WEBHOOK_SIG_SIZE];
        nc_secrets_t s;

        nc_secrets_init(&s);
        if (nc_secrets_add(&s, secret, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        assert_int_equal(nc_webhook_sign(&s, id, ts, body, strlen(body), sig, sizeof(sig)), 0);
        assert_string_equal(sig, expect);
        nc_secrets_clear(&s);
        assert_int_equal(s.n, 0);
}

static void test_kat(void **state)
{
        unsigned char key[NC_WHSEC_MAX];
        char err[256] = "";
        size_t len = 0;

        (void)state;
        sign_one(KAT_SECRET, KAT_ID, KAT_TS, KAT_BODY, KAT_SIG);
        /* The whsec_ prefix is optional. */
        sign_one(KAT_SECRET + 6, KAT_ID, KAT_TS, KAT_BODY, KAT_SIG);
        assert_int_equal(nc_whsec_decode(KAT_SECRET, key, sizeof(key), &len, err, sizeof(err)), 0);
        assert_int_equal(len, 24);
        assert_int_equal(key[0], 0x31);
        assert_int_equal(key[23], 0xb0);
}

static void test_python_vectors(void **state)
{
        char sig[NC_WEBHOOK_SIG_SIZE];
        nc_secrets_t s;

        (void)state;
        sign_one(KAT_SECRET, PY_ID, PY_TS, PY_BODY, PY_SIG_KAT);
        sign_one(S32, PY_ID, PY_TS, PY_BODY, PY_SIG_32);
        sign_one(S64, PY_ID, PY_TS, PY_BODY, PY_SIG_64);
        sign_one(S32, "msg_x", PY_TS, "", "v1,kC/XkoA8E7+NgWjzh5/TLLln41kgjRf541n/IT1wPrk=");

        /* Several secrets: one signature each, in order, separated by single spaces. */
        nc_secrets_init(&s);
        assert_int_equal(nc_secrets_add(&s, S32, NULL, 0), 0);
        assert_int_equal(nc_secrets_add(&s, S64, NULL, 0), 0);
        assert_int_equal(nc_secrets_add(&s, KAT_SECRET, NULL, 0), 0);
        assert_int_equal(
            nc_webhook_sign(&s, PY_ID, PY_TS, PY_BODY, strlen(PY_BODY), sig, sizeof(sig)), 0);
        assert_string_equal(sig, PY_SIG_32 " " PY_SIG_64 " " PY_SIG_KAT);
        nc_secrets_clear(&s);
}

/* A keyed signer is reused for many requests: each signature must come out as if signed
 * afresh, whatever was signed before, with every secret of a rotation. */
static void test_signer_reuse(void **state)
{
        char sig[NC_WEBHOOK_SIG_SIZE];
        nc_secrets_t s;
        nc_signer_t sg;
        int round;

        (void)state;
        nc_secrets_init(&s);
        assert_int_equal(nc_signer_init(&sg, &s, NULL, 0), -1); /* no secret */
        assert_int_equal(nc_secrets_add(&s, S32, NULL, 0), 0);
        assert_int_equal(nc_secrets_add(&s, S64, NULL, 0), 0);
        assert_int_equal(nc_secrets_add(&s, KAT_SECRET, NULL, 0), 0);
        assert_int_equal(nc_signer_init(&sg, &s, NULL, 0), 0);
        nc_secrets_clear(&s); /* the signer keeps what it needs */
        for (round = 0; round < 3; round++) {
                assert_int_equal(nc_signer_sign(&sg, "msg_x", PY_TS, "", 0, sig, sizeof(sig)), 0);
                assert_int_equal(
                    strncmp(sig, "v1,kC/XkoA8E7+NgWjzh5/TLLln41kgjRf541n/IT1wPrk= ", 48), 0);
                assert_int_equal(
                    nc_signer_sign(&sg, PY_ID, PY_TS, PY_BODY, strlen(PY_BODY), sig, sizeof(sig)),
                    0);
                assert_string_equal(sig, PY_SIG_32 " " PY_SIG_64 " " PY_SIG_KAT);
        }
        nc_signer_free(&sg);
        assert_int_equal(sg.n, 0);
}

static void test_sign_limits(void **state)
{
        char sig[NC_WEBHOOK_SIG_SIZE];
        nc_secrets_t s;
        int i;

        (void)state;
        nc_secrets_init(&s);
        /* No secret: nothing to sign with. */
        assert_int_equal(nc_webhook_sign(&s, KAT_ID, KAT_TS, "", 0, sig, sizeof(sig)), -1);
        for (i = 0; i < NC_SECRETS_MAX; i++)
                assert_int_equal(nc_secrets_add(&s, S64, NULL, 0), 0);
        assert_int_equal(nc_secrets_add(&s, S64, NULL, 0), -1);
        /* The documented size holds a full set ... */
        assert_int_equal(nc_webhook_sign(&s, KAT_ID, KAT_TS, "x", 1, sig, sizeof(sig)), 0);
        assert_int_equal(strlen(sig), NC_SECRETS_MAX * 48 - 1);
        /* ... one byte less does not, and the output is left empty. */
        assert_int_equal(nc_webhook_sign(&s, KAT_ID, KAT_TS, "x", 1, sig, strlen(sig)), -1);
        assert_string_equal(sig, "");
        nc_secrets_clear(&s);
        nc_secrets_init(&s);
        assert_int_equal(nc_secrets_add(&s, KAT_SECRET, NULL, 0), 0);
        assert_int_equal(nc_webhook_sign(&s, KAT_ID, KAT_TS, KAT_BODY, strlen(KAT_BODY), sig,
                                         strlen(KAT_SIG) + 1),
                         0);
        assert_string_equal(sig, KAT_SIG);
        assert_int_equal(
            nc_webhook_sign(&s, KAT_ID, KAT_TS, KAT_BODY, strlen(KAT_BODY), sig, strlen(KAT_SIG)),
            -1);
        nc_secrets_clear(&s);
}

/* "whsec_" + base64 of N bytes of 0xa5. */
static void make_secret(size_t n, char *out, size_t out_size)
{
        unsigned char key[128];

        assert_true(n <= sizeof(key) && out_size > 6);
        memset(key, 0xa5, n);
        memcpy(out, "whsec_", 6);
        assert_true(nc_base64_encode(key, n, out + 6, out_size - 6) > 0);
}

static void test_secret_length(void **state)
{
        static const struct {
                size_t n;
                int ok;
        } cases[] = {{1, 0},  {16, 0}, {23, 0}, {24, 1}, {25, 1},
                     {32, 1}, {63, 1}, {64, 1}, {65, 0}, {96, 0}};
        unsigned char key[NC_WHSEC_MAX];
        char secret[256], err[256], expect[128];
        size_t i, len;

        (void)state;
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                make_secret(cases[i].n, secret, sizeof(secret));
                err[0] = '\0';
                len = 0;
                if (cases[i].ok) {
                        if (nc_whsec_decode(secret, key, sizeof(key), &len, err, sizeof(err)) < 0)
                                fail_msg("%zu bytes: %s", cases[i].n, err);
                        assert_int_equal(len, cases[i].n);
                        assert_int_equal(key[0], 0xa5);
                        assert_int_equal(key[len - 1], 0xa5);
                        continue;
                }
                assert_int_equal(nc_whsec_decode(secret, key, sizeof(key), &len, err, sizeof(err)),
                                 -1);
                snprintf(expect, sizeof(expect), "secret: decodes to %zu bytes, expected 24 to 64",
                         cases[i].n);
                assert_string_equal(err, expect);
        }
        /* A key that is valid but larger than the caller's buffer is refused, not truncated. */
        make_secret(32, secret, sizeof(secret));
        assert_int_equal(nc_whsec_decode(secret, key, 31, &len, err, sizeof(err)), -1);
}

static void test_bad_base64(void **state)
{
        static const char *const bad[] = {
            "",
            "whsec_",
            "whsec_!fKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  /* character outside the alphabet */
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",   /* 31 characters */
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", /* padding where none belongs */
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw====",
            "whsec_MfKQ9r8GKYqrTwjU=D8ILPZIo2LaLaSw", /* '=' in the middle */
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS ", /* blank inside */
            " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-w",                 /* URL-safe alphabet */
            "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",      /* padding missing */
            "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyB=",     /* non-zero pad bits */
            "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=AAAA", /* data after '=' */
            "whsec_whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        };
        unsigned char key[NC_WHSEC_MAX];
        char err[256];
        size_t i, len;

        (void)state;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                if (nc_whsec_decode(bad[i], key, sizeof(key), &len, err, sizeof(err)) != -1)
                        fail_msg("accepted \"%s\"", bad[i]);
                assert_true(!strncmp(err, "secret: ", 8));
                /* The error never quotes the secret. */
                if (strlen(bad[i]) > 12 && strstr(err, bad[i] + 8))
                        fail_msg("error reveals the secret: %s", err);
        }
}

static void test_base64(void **state)
{
        unsigned char in[70], out[70], *exact;
        char enc[128], ref[128];
        size_t n, len;
        int k;

        (void)state;
        for (n = 0; n < sizeof(in); n++)
                in[n] = (unsigned char)(n * 37 + 11);
        for (n = 0; n <= sizeof(in); n++) {
                k = nc_base64_encode(in, n, enc, sizeof(enc));
                assert_int_equal(k, (int)((n + 2) / 3 * 4));
                assert_int_equal(strlen(enc), (size_t)k);
                /* The same as OpenSSL's encoder. */
                assert_int_equal(EVP_EncodeBlock((unsigned char *)ref, in, (int)n), k);
                assert_string_equal(enc, ref);
                /* Output exactly as large as the data: no padding bytes written past it. */
                exact = malloc(n ? n : 1);

                assert_non_null(exact);
                assert_int_equal(nc_base64_decode(enc, (size_t)k, exact, n, &len), 0);
                assert_int_equal(len, n);
                assert_memory_equal(exact, in, n);
                if (n > 0)
                        assert_int_equal(nc_base64_decode(enc, (size_t)k, out, n - 1, &len), -1);
                free(exact);
                /* Encode needs room for the NUL too. */
                assert_int_equal(nc_base64_encode(in, n, enc, (size_t)k), -1);
        }
        assert_int_equal(nc_base64_encode((const unsigned char *)"foobar", 6, enc, sizeof(enc)), 8);
        assert_string_equal(enc, "Zm9vYmFy");
        assert_int_equal(nc_base64_decode("Zm8=", 4, out, sizeof(out), &len), 0);
        assert_int_equal(len, 2);
        assert_memory_equal(out, "fo", 2);
        assert_int_equal(nc_base64_decode("Zm9=", 4, out, sizeof(out), &len), -1);
        assert_int_equal(nc_base64_decode("Zg==", 4, out, sizeof(out), &len), 0);
        assert_int_equal(nc_base64_decode("Zh==", 4, out, sizeof(out), &len), -1);
        assert_int_equal(nc_base64_decode("Z===", 4, out, sizeof(out), &len), -1);
        assert_int_equal(nc_base64_decode("====", 4, out, sizeof(out), &len), -1);
}

/* RFC 4648 §10 vectors, the URL alphabet, no padding, and the strict decoder. */
static void test_base64url(void **state)
{
        static const char *const vec[][2] = {
            {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
            {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
        static const char *const bad[] = {"Zg==", "Zm8=", "Z",   "Zm9vY", "Zh",
                                          "Zm9",  "+/8",  "Zg=", "Zm 8",  "Zm8\n"};
        static const unsigned char high[] = {0xfb, 0xff};
        unsigned char out[16];
        char enc[32];
        size_t i, len;

        (void)state;
        for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
                size_t n = strlen(vec[i][0]);

                assert_int_equal(
                    nc_base64url_encode((const unsigned char *)vec[i][0], n, enc, sizeof(enc)),
                    (int)strlen(vec[i][1]));
                assert_string_equal(enc, vec[i][1]);
                assert_int_equal(nc_base64url_decode(enc, strlen(enc), out, n, &len), 0);
                assert_int_equal(len, n);
                assert_memory_equal(out, vec[i][0], n);
                if (n > 0)
                        assert_int_equal(nc_base64url_decode(enc, strlen(enc), out, n - 1, &len),
                                         -1);
                assert_int_equal(nc_base64url_encode((const unsigned char *)vec[i][0], n, enc,
                                                     strlen(vec[i][1])),
                                 -1);
        }
        assert_int_equal(nc_base64url_encode(high, 2, enc, sizeof(enc)), 3);
        assert_string_equal(enc, "-_8");
        assert_int_equal(nc_base64url_decode("-_8", 3, out, sizeof(out), &len), 0);
        assert_int_equal(len, 2);
        assert_memory_equal(out, high, 2);
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (nc_base64url_decode(bad[i], strlen(bad[i]), out, sizeof(out), &len) != -1)
                        fail_msg("base64url accepted \"%s\"", bad[i]);
}

static char tmp_path[64];

static void write_file(const char *text, mode_t mode)
{
        FILE *f;
        int fd;

        strcpy(tmp_path, "/tmp/nc_test_sign.XXXXXX");
        fd = mkstemp(tmp_path);
        assert_true(fd >= 0);
        f = fdopen(fd, "w");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(tmp_path, mode), 0);
}

static void test_file(void **state)
{
        char sig[NC_WEBHOOK_SIG_SIZE], err[256] = "";
        nc_secrets_t s;

        (void)state;
        write_file("# partner pe, rotated 2026-11\n"
                   "\n"
                   "   " S32 "  \r\n"
                   "\t# the old key, remove after the partner switched\n" S64 "\n"
                   "   \n" KAT_SECRET, /* last line without newline */
                   0600);
        nc_secrets_init(&s);
        if (nc_secrets_load_file(&s, tmp_path, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        assert_int_equal(s.n, 3);
        assert_int_equal(s.len[0], 32);
        assert_int_equal(s.len[1], 64);
        assert_int_equal(s.len[2], 24);
        assert_int_equal(
            nc_webhook_sign(&s, PY_ID, PY_TS, PY_BODY, strlen(PY_BODY), sig, sizeof(sig)), 0);
        assert_string_equal(sig, PY_SIG_32 " " PY_SIG_64 " " PY_SIG_KAT);
        unlink(tmp_path);

        /* Owner read-only loads. */
        write_file(KAT_SECRET "\n", 0400);
        assert_int_equal(nc_secrets_load_file(&s, tmp_path, err, sizeof(err)), 0);
        assert_int_equal(s.n, 1);
        assert_int_equal(
            nc_webhook_sign(&s, KAT_ID, KAT_TS, KAT_BODY, strlen(KAT_BODY), sig, sizeof(sig)), 0);
        assert_string_equal(sig, KAT_SIG);
        unlink(tmp_path);

        /* A file group or others may read is refused, naming the file and its mode; the keys
         * loaded before stay. */
        {
                static const mode_t loose[] = {0644, 0640, 0604, 0660, 0610};

                for (size_t i = 0; i < sizeof(loose) / sizeof(loose[0]); i++) {
                        char expect[256];

                        write_file(S32 "\n", loose[i]);
                        assert_int_equal(nc_secrets_load_file(&s, tmp_path, err, sizeof(err)), -1);
                        snprintf(expect, sizeof(expect),
                                 "%s: secret file is accessible by group or others (mode %04o)",
                                 tmp_path, (unsigned)loose[i]);
                        if (strncmp(err, expect, strlen(expect)) != 0)
                                fail_msg("mode %04o: \"%s\"", (unsigned)loose[i], err);
                        assert_int_equal(s.n, 1);
                        assert_int_equal(s.len[0], 24);
                        unlink(tmp_path);
                }
        }
        nc_secrets_clear(&s);
}

static void expect_file_error(const char *text, const char *expect_suffix)
{
        char err[256] = "", expect[256];
        nc_secrets_t s;

        write_file(text, 0600);
        /* A failed load leaves the previous keys in place. */
        nc_secrets_init(&s);
        assert_int_equal(nc_secrets_add(&s, KAT_SECRET, NULL, 0), 0);
        assert_int_equal(nc_secrets_load_file(&s, tmp_path, err, sizeof(err)), -1);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.len[0], 24);
        snprintf(expect, sizeof(expect), "%s%s", tmp_path, expect_suffix);
        assert_string_equal(err, expect);
        if (strstr(err, "MfKQ9r8") || strstr(err, "AQIDBAUG"))
                fail_msg("error reveals the secret: %s", err);
        unlink(tmp_path);
        nc_secrets_clear(&s);
}

static void test_file_errors(void **state)
{
        char nine[1024] = "", err[256];
        nc_secrets_t s;
        int i;

        (void)state;
        expect_file_error("", ":1: no secret in file (need at least one)");
        expect_file_error("# nothing yet\n\n  \n", ":3: no secret in file (need at least one)");
        expect_file_error(S32 "\nwhsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La\n",
                          ":2: secret: decodes to 21 bytes, expected 24 to 64");
        expect_file_error("# c\nwhsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS\n",
                          ":2: secret: not valid base64 (31 characters after the whsec_ prefix)");
        expect_file_error(S32 " " S32 "\n",
                          ":1: secret: not valid base64 (95 characters after the whsec_ prefix)");
        for (i = 0; i < NC_SECRETS_MAX + 1; i++)
                strcat(nine, S32 "\n");
        expect_file_error(nine, ":9: more than 8 secrets");
        memset(nine, 'A', 400);
        nine[400] = '\0';
        expect_file_error(nine, ":1: line too long");

        nc_secrets_init(&s);
        assert_int_equal(nc_secrets_load_file(&s, "/nonexistent/nc/secret", err, sizeof(err)), -1);
        assert_string_equal(err, "/nonexistent/nc/secret: No such file or directory");
}

static int is_lower_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void test_webhook_id(void **state)
{
        const char *n1 = "0190d7a2-0000-7000-8000-000000000001";
        const char *n2 = "0190d7a2-0000-7000-8000-000000000002";
        char a[NC_WEBHOOK_ID_SIZE], b[NC_WEBHOOK_ID_SIZE];
        int i;

        (void)state;
        /* sha256("<n1>\npe\nnotice.published"), first 16 bytes, from Python's hashlib. */
        nc_webhook_id(n1, "pe", "notice.published", a);
        assert_string_equal(a, "msg_692d877c3a4f8970b4fbafc59a230fee");
        assert_int_equal(strlen(a), 36);
        assert_true(!strncmp(a, "msg_", 4));
        for (i = 4; i < 36; i++)
                assert_true(is_lower_hex(a[i]));

        /* Stable: the same inputs give the same id every time. */
        nc_webhook_id(n1, "pe", "notice.published", b);
        assert_string_equal(a, b);
        /* Different notice, partner or event type: different id. */
        nc_webhook_id(n2, "pe", "notice.published", b);
        assert_string_not_equal(a, b);
        nc_webhook_id(n1, "pf", "notice.published", b);
        assert_string_not_equal(a, b);
        nc_webhook_id(n1, "pe", "notice.withdrawn", b);
        assert_string_not_equal(a, b);
        /* The separator keeps field boundaries apart. */
        nc_webhook_id("ab", "c", "e", a);
        nc_webhook_id("a", "bc", "e", b);
        assert_string_not_equal(a, b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_kat),
            cmocka_unit_test(test_signer_reuse),
            cmocka_unit_test(test_python_vectors),
            cmocka_unit_test(test_sign_limits),
            cmocka_unit_test(test_secret_length),
            cmocka_unit_test(test_bad_base64),
            cmocka_unit_test(test_base64),
            cmocka_unit_test(test_base64url),
            cmocka_unit_test(test_file),
            cmocka_unit_test(test_file_errors),
            cmocka_unit_test(test_webhook_id),
        };

        /* The group-readable warning goes to stderr; keep the test output readable. */
        nc_log_init("test_sign", NC_LOG_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
