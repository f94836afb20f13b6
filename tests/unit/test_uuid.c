/* Unit tests for common/nc_uuid.c: UUIDv7 generation (RFC 9562) and validation. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_uuid.h"

/* 2017-06-20T00:00:00Z, the day of the example notice. */
#define MS_2017_06_20 INT64_C(1497916800000)
#define UNIQUE_N      10000

static int is_lower_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void assert_canonical(const char *s)
{
        int i;

        assert_int_equal(strlen(s), 36);
        for (i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23)
                        assert_int_equal(s[i], '-');
                else if (!is_lower_hex(s[i]))
                        fail_msg("%s: character %d ('%c') is not lower-case hex", s, i, s[i]);
        }
        assert_true(nc_uuid_valid(s));
}

static void test_format(void **state)
{
        static const int64_t ms[] = {0, 1, MS_2017_06_20, INT64_C(0xffffffffffff)};
        char id[NC_UUID_STRLEN];
        size_t i;
        int k;

        (void)state;
        for (i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
                for (k = 0; k < 50; k++) {
                        memset(id, 'X', sizeof(id));
                        assert_int_equal(nc_uuid_v7(ms[i], id), 0);
                        assert_canonical(id);
                }
        }
}

static void test_version_nibble(void **state)
{
        char id[NC_UUID_STRLEN];
        int k;

        (void)state;
        for (k = 0; k < 200; k++) {
                assert_int_equal(nc_uuid_v7(MS_2017_06_20 + k, id), 0);
                assert_int_equal(id[14], '7');
                assert_int_equal(nc_uuid_version(id), 7);
        }
        /* Other versions are read back too (v4 and the RFC 9562 v7 example, upper case). */
        assert_int_equal(nc_uuid_version("919108f7-52d1-4320-9bac-f847db4148a8"), 4);
        assert_int_equal(nc_uuid_version("017F22E2-79B0-7CC3-98C4-DC0C0C07398F"), 7);
        assert_int_equal(nc_uuid_version("00000000-0000-f000-8000-000000000000"), 15);
}

static void test_variant_bits(void **state)
{
        char id[NC_UUID_STRLEN];
        int k, seen[4] = {0};

        (void)state;
        /* Variant 10xx: the 17th hex digit is 8, 9, a or b. */
        for (k = 0; k < 400; k++) {
                const char *p;

                assert_int_equal(nc_uuid_v7(MS_2017_06_20, id), 0);
                p = id[19] ? strchr("89ab", id[19]) : NULL;
                if (!p)
                        fail_msg("%s: variant digit '%c' is not 8, 9, a or b", id, id[19]);
                seen[p - "89ab"]++;
        }
        /* The two low bits of that digit are random: all four values show up in 400 ids. */
        for (k = 0; k < 4; k++)
                assert_true(seen[k] > 0);
}

static void test_embedded_timestamp(void **state)
{
        static const int64_t ms[] = {
            0,
            1,
            255,
            256,
            INT64_C(1497225600000),
            MS_2017_06_20,
            MS_2017_06_20 + 999,
            INT64_C(1645557742000),
            INT64_C(0xffffffffffff),
        };
        char id[NC_UUID_STRLEN], hex[16];
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
                assert_int_equal(nc_uuid_v7(ms[i], id), 0);
                assert_int_equal(nc_uuid_v7_time(id), ms[i]);
                /* Big-endian 48-bit milliseconds in the first 12 hex digits. */
                snprintf(hex, sizeof(hex), "%012llx", (unsigned long long)ms[i]);
                assert_memory_equal(id, hex, 8);
                assert_memory_equal(id + 9, hex + 8, 4);
        }
        /* RFC 9562 appendix A.6 test vector: 2022-02-22T19:22:22Z. */
        assert_int_equal(nc_uuid_v7_time("017F22E2-79B0-7CC3-98C4-DC0C0C07398F"),
                         INT64_C(1645557742000));
        assert_int_equal(nc_uuid_v7_time("015cc2cc-7c00-7a3b-8c4d-5e6f70819203"), MS_2017_06_20);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp((const char *)a, (const char *)b);
}

static void test_unique(void **state)
{
        char(*ids)[NC_UUID_STRLEN] = calloc(UNIQUE_N, NC_UUID_STRLEN);
        int i;

        (void)state;
        assert_non_null(ids);
        /* All in the same millisecond, so only the 74 random bits tell them apart. */
        for (i = 0; i < UNIQUE_N; i++)
                assert_int_equal(nc_uuid_v7(MS_2017_06_20, ids[i]), 0);
        qsort(ids, UNIQUE_N, NC_UUID_STRLEN, cmp_str);
        for (i = 1; i < UNIQUE_N; i++)
                if (!strcmp(ids[i - 1], ids[i]))
                        fail_msg("duplicate UUID %s", ids[i]);
        free(ids);
}

static void test_monotone_by_time(void **state)
{
        char prev[NC_UUID_STRLEN], cur[NC_UUID_STRLEN];
        int64_t ms = MS_2017_06_20 - 300;
        int i;

        (void)state;
        assert_int_equal(nc_uuid_v7(ms, prev), 0);
        /* Step by one millisecond across several byte carries, then by larger jumps. */
        for (i = 0; i < 1000; i++) {
                ms += i < 600 ? 1 : 86400000;
                assert_int_equal(nc_uuid_v7(ms, cur), 0);
                if (strcmp(prev, cur) >= 0)
                        fail_msg("%s (earlier) does not sort before %s (ms %lld)", prev, cur,
                                 (long long)ms);
                memcpy(prev, cur, sizeof(prev));
        }
        /* Carry through a whole byte of the timestamp. */
        assert_int_equal(nc_uuid_v7(INT64_C(0x00ffffffff), prev), 0);
        assert_int_equal(nc_uuid_v7(INT64_C(0x0100000000), cur), 0);
        assert_true(strcmp(prev, cur) < 0);
}

static void test_valid_accepts(void **state)
{
        (void)state;
        assert_true(nc_uuid_valid("015cc2cc-7c00-7a3b-8c4d-5e6f70819203"));
        assert_true(nc_uuid_valid("017F22E2-79B0-7CC3-98C4-DC0C0C07398F"));
        assert_true(nc_uuid_valid("00000000-0000-0000-0000-000000000000"));
        assert_true(nc_uuid_valid("ffffffff-ffff-ffff-ffff-ffffffffffff"));
}

static void test_valid_rejects(void **state)
{
        static const char *const bad[] = {
            "",
            "015cc2cc",
            "015cc2cc-7c00-7a3b-8c4d-5e6f7081920",   /* 35 characters */
            "015cc2cc-7c00-7a3b-8c4d-5e6f708192030", /* 37 characters */
            "015cc2cc7c007a3b8c4d5e6f70819203",      /* no hyphens */
            "015cc2cc-7c00-7a3b-8c4d5-e6f70819203",  /* hyphen moved */
            "015cc2cc-7c00-7a3b-8c4d-5e6f7081920g",  /* not hex */
            "015cc2cz-7c00-7a3b-8c4d-5e6f70819203",
            "015cc2cc 7c00-7a3b-8c4d-5e6f70819203", /* space for a hyphen */
            "{015cc2cc-7c00-7a3b-8c4d-5e6f70819203}",
            "015cc2cc-7c00-7a3b-8c4d-5e6f7081920\xc3\xa9",
            " 015cc2cc-7c00-7a3b-8c4d-5e6f7081920",
            "015cc2cc-7c00-7a3b-8c4d-5e6f70819203\n",
            "urn:uuid:015cc2cc-7c00-7a3b-8c4d-5e6f70819203",
        };
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (nc_uuid_valid(bad[i]))
                        fail_msg("nc_uuid_valid accepted \"%s\"", bad[i]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_format),        cmocka_unit_test(test_version_nibble),
            cmocka_unit_test(test_variant_bits),  cmocka_unit_test(test_embedded_timestamp),
            cmocka_unit_test(test_unique),        cmocka_unit_test(test_monotone_by_time),
            cmocka_unit_test(test_valid_accepts), cmocka_unit_test(test_valid_rejects),
        };

        return cmocka_run_group_tests_name("nc_uuid", tests, NULL, NULL);
}
