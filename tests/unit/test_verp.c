/* Unit tests for common/nc_verp.c: VERP envelope senders (bounces+<token>@domain). */
#include "nc_test.h"

#include <ctype.h>
#include <string.h>

#include "nc_verp.h"

static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
static const unsigned char other[] = "fedcba9876543210fedcba9876543210";
#define BASE "bounces@mail.example.gov"
#define SUB  "ana@example.org"
#define MID  "<n-2026-0001.ana@mail.example.gov>"

/* The address this format gives SUB and MID under SECRET (computed apart from this code, with
 * Python's hmac, hashlib and base64.b32encode): pinned, because DSNs of messages
 * already sent come back to it for days, and must still verify after a change of code. */
#define KNOWN "bounces+afw6blvwxouhruguwdpc4vl64n24qinx@mail.example.gov"

static void keys(nc_verp_keys_t *k, const unsigned char *s)
{
        nc_verp_derive(s, 32, k);
}

static void test_round_trip(void **state)
{
        nc_verp_keys_t k;
        char addr[128];
        uint64_t sr = 0;
        uint32_t mr = 0;

        (void)state;
        keys(&k, secret);
        assert_int_equal(nc_verp_address(&k, BASE, '+', SUB, MID, addr, sizeof(addr)), 0);
        assert_string_equal(addr, KNOWN);
        /* Within RFC 5321's 64 octets of local part. */
        assert_true(strchr(addr, '@') - addr <= 64);
        assert_int_equal(nc_verp_parse(&k, BASE, '+', addr, &sr, &mr), NC_VERP_OK);
        assert_true(sr == nc_verp_subscriber_ref(&k, SUB));
        assert_true(mr == nc_verp_message_ref(MID));
        /* The Message-ID with or without its brackets names the same message. */
        assert_true(nc_verp_message_ref("n-2026-0001.ana@mail.example.gov") == mr);
        /* Angle brackets, upper case (an MTA that folds local parts) and a trailing CRLF. */
        {
                char up[160];
                size_t i;

                snprintf(up, sizeof(up), "<%s>\r\n", addr);
                for (i = 0; up[i]; i++)
                        up[i] = (char)toupper((unsigned char)up[i]);
                assert_int_equal(nc_verp_parse(&k, BASE, '+', up, &sr, &mr), NC_VERP_OK);
        }
}

static void test_other_subscribers(void **state)
{
        nc_verp_keys_t k, k2;

        (void)state;
        keys(&k, secret);
        keys(&k2, other);
        assert_true(nc_verp_subscriber_ref(&k, SUB) !=
                    nc_verp_subscriber_ref(&k, "bo@example.org"));
        /* The reference is keyed: another secret, another reference (no dictionary of
         * addresses can be matched against it). */
        assert_true(nc_verp_subscriber_ref(&k, SUB) != nc_verp_subscriber_ref(&k2, SUB));
        assert_true(nc_verp_message_ref(MID) != nc_verp_message_ref("<other@x>"));
}

static void test_forged(void **state)
{
        nc_verp_keys_t k, k2;
        char addr[128], bad[128];
        const char *tok;

        (void)state;
        keys(&k, secret);
        keys(&k2, other);
        nc_verp_address(&k, BASE, '+', SUB, MID, addr, sizeof(addr));
        /* Made with another secret. */
        assert_int_equal(nc_verp_parse(&k2, BASE, '+', addr, NULL, NULL), NC_VERP_FORGED);
        /* Every single character changed somewhere in the token. */
        tok = strchr(addr, '+') + 1;
        for (size_t i = 0; i < NC_VERP_TOKEN_LEN; i++) {
                strcpy(bad, addr);
                bad[(tok - addr) + i] = tok[i] == 'a' ? 'b' : 'a';
                nc_verp_status_t st = nc_verp_parse(&k, BASE, '+', bad, NULL, NULL);

                /* The first character carries the version bits. */
                assert_true(st == NC_VERP_FORGED || (i < 2 && st == NC_VERP_MALFORMED));
        }
}

static void test_not_ours(void **state)
{
        nc_verp_keys_t k;
        char addr[128], bad[160];

        (void)state;
        keys(&k, secret);
        nc_verp_address(&k, BASE, '+', SUB, MID, addr, sizeof(addr));
        assert_int_equal(nc_verp_parse(&k, BASE, '+', "bounces@mail.example.gov", NULL, NULL),
                         NC_VERP_NONE);
        assert_int_equal(nc_verp_parse(&k, BASE, '+', "postmaster@mail.example.gov", NULL, NULL),
                         NC_VERP_NONE);
        /* Another domain, another delimiter. */
        snprintf(bad, sizeof(bad), "%.*s@evil.example", (int)(strchr(addr, '@') - addr), addr);
        assert_int_equal(nc_verp_parse(&k, BASE, '+', bad, NULL, NULL), NC_VERP_NONE);
        assert_int_equal(nc_verp_parse(&k, BASE, '-', addr, NULL, NULL), NC_VERP_NONE);
        /* Of the base, but not a token. */
        assert_int_equal(nc_verp_parse(&k, BASE, '+', "bounces+x@mail.example.gov", NULL, NULL),
                         NC_VERP_MALFORMED);
        assert_int_equal(nc_verp_parse(&k, BASE, '+',
                                       "bounces+11111111111111111111111111111111@mail.example.gov",
                                       NULL, NULL),
                         NC_VERP_MALFORMED);
        assert_int_equal(nc_verp_parse(&k, "no-at-sign", '+', addr, NULL, NULL), NC_VERP_NONE);
        /* Too small a buffer: nothing half-written. */
        assert_int_equal(nc_verp_address(&k, BASE, '+', SUB, MID, addr, 20), -1);
        assert_string_equal(addr, "");
}

static void test_find(void **state)
{
        nc_verp_keys_t k;
        char addr[128], text[1024];
        uint64_t sr = 0;

        (void)state;
        keys(&k, secret);
        nc_verp_address(&k, BASE, '+', SUB, MID, addr, sizeof(addr));
        /* In a header of a returned message, after a forged candidate. */
        snprintf(text, sizeof(text),
                 "Return-Path: <bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@mail.example.gov>\n"
                 "X-Original: \"%s\" (quoted)\n",
                 addr);
        assert_int_equal(nc_verp_find(&k, BASE, '+', text, &sr, NULL), NC_VERP_OK);
        assert_true(sr == nc_verp_subscriber_ref(&k, SUB));
        assert_int_equal(
            nc_verp_find(&k, BASE, '+', "nothing here bounces@mail.example.gov", NULL, NULL),
            NC_VERP_NONE);
        assert_int_equal(
            nc_verp_find(&k, BASE, '+',
                         "To: bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@mail.example.gov", NULL,
                         NULL),
            NC_VERP_MALFORMED);
}

static void test_names(void **state)
{
        (void)state;
        assert_string_equal(nc_verp_status_name(NC_VERP_OK), "ok");
        assert_string_equal(nc_verp_status_name(NC_VERP_FORGED), "forged");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip), cmocka_unit_test(test_other_subscribers),
            cmocka_unit_test(test_forged),     cmocka_unit_test(test_not_ours),
            cmocka_unit_test(test_find),       cmocka_unit_test(test_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
