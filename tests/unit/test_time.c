/* Unit tests for common/nc_time.c: RFC 3339 parsing and formatting. */
#include "nc_test.h"

#include <string.h>

#include "nc_time.h"

#define MS_2017_06_20 INT64_C(1497916800000) /* 2017-06-20T00:00:00Z */

static int64_t parse_ok(const char *s)
{
        char err[256] = "";
        int64_t ms = -12345;

        if (nc_time_parse_rfc3339(s, &ms, err, sizeof(err)) != 0)
                fail_msg("'%s' rejected: %s", s, err);
        return ms;
}

/* Asserts S is rejected and the message quotes S and contains WHAT. */
static void parse_bad(const char *s, const char *what)
{
        char err[256] = "";
        int64_t ms = -12345;

        if (nc_time_parse_rfc3339(s, &ms, err, sizeof(err)) == 0)
                fail_msg("'%s' accepted as %lld", s, (long long)ms);
        assert_int_equal(ms, -12345); /* untouched on failure */
        if (what && !strstr(err, what))
                fail_msg("'%s': error \"%s\" does not mention \"%s\"", s, err, what);
}

static void test_utc_z(void **state)
{
        (void)state;
        assert_int_equal(parse_ok("2017-06-20T00:00:00Z"), MS_2017_06_20);
        assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
        assert_int_equal(parse_ok("2017-06-20T23:59:59Z"), MS_2017_06_20 + 86399000);
        assert_int_equal(parse_ok("2000-01-01T00:00:00Z"), INT64_C(946684800000));
        assert_int_equal(parse_ok("2038-01-19T03:14:08Z"), INT64_C(2147483648000));
}

static void test_offsets(void **state)
{
        (void)state;
        /* The example notice: 09:00 in Seoul is midnight UTC. */
        assert_int_equal(parse_ok("2017-06-20T09:00:00+09:00"), MS_2017_06_20);
        assert_int_equal(parse_ok("2017-06-19T19:00:00-05:00"), MS_2017_06_20); /* Lima */
        assert_int_equal(parse_ok("2017-06-19T21:00:00-03:00"), MS_2017_06_20); /* Brasília */
        assert_int_equal(parse_ok("2017-06-20T00:00:00+00:00"), MS_2017_06_20);
        assert_int_equal(parse_ok("2017-06-20T00:00:00-00:00"), MS_2017_06_20);
        assert_int_equal(parse_ok("2017-06-20T05:30:00+05:30"), MS_2017_06_20);
        assert_int_equal(parse_ok("2017-06-20T23:45:00+23:45"), MS_2017_06_20);
        /* Same wall clock, different offsets: nine hours apart. */
        assert_int_equal(parse_ok("2017-06-20T09:00:00Z") - parse_ok("2017-06-20T09:00:00+09:00"),
                         INT64_C(9) * 3600 * 1000);
}

static void test_bad_offsets(void **state)
{
        (void)state;
        parse_bad("2017-06-20T09:00:00+9:00", "bad UTC offset");
        parse_bad("2017-06-20T09:00:00+0900", "bad UTC offset");
        parse_bad("2017-06-20T09:00:00+24:00", "bad UTC offset");
        parse_bad("2017-06-20T09:00:00+09:60", "bad UTC offset");
        parse_bad("2017-06-20T09:00:00+09", "bad UTC offset");
        parse_bad("2017-06-20T09:00:00+", "bad UTC offset");
}

static void test_fractions(void **state)
{
        (void)state;
        assert_int_equal(parse_ok("2017-06-20T00:00:00.5Z"), MS_2017_06_20 + 500);
        assert_int_equal(parse_ok("2017-06-20T00:00:00.12Z"), MS_2017_06_20 + 120);
        assert_int_equal(parse_ok("2017-06-20T00:00:00.123Z"), MS_2017_06_20 + 123);
        assert_int_equal(parse_ok("2017-06-20T00:00:00.000Z"), MS_2017_06_20);
        assert_int_equal(parse_ok("2017-06-20T00:00:00.007Z"), MS_2017_06_20 + 7);
        /* Sub-millisecond digits are truncated, not rounded. */
        assert_int_equal(parse_ok("2017-06-20T00:00:00.123456789Z"), MS_2017_06_20 + 123);
        assert_int_equal(parse_ok("2017-06-20T00:00:00.9999Z"), MS_2017_06_20 + 999);
        assert_int_equal(parse_ok("2017-06-20T09:00:00.250+09:00"), MS_2017_06_20 + 250);
        parse_bad("2017-06-20T00:00:00.Z", "empty fraction");
        parse_bad("2017-06-20T00:00:00.+09:00", "empty fraction");
}

static void test_leap_years(void **state)
{
        (void)state;
        assert_int_equal(parse_ok("2016-02-29T00:00:00Z"), INT64_C(1456704000000));
        assert_int_equal(parse_ok("2000-02-29T12:00:00Z"), INT64_C(951825600000));
        assert_int_equal(parse_ok("2016-03-01T00:00:00Z") - parse_ok("2016-02-28T00:00:00Z"),
                         INT64_C(2) * 86400000);
        parse_bad("2017-02-29T00:00:00Z", "not a valid date");
        parse_bad("2100-02-29T00:00:00Z", "not a valid date"); /* divisible by 100 */
        parse_bad("2016-02-30T00:00:00Z", "not a valid date");
        parse_bad("2017-04-31T00:00:00Z", "not a valid date");
}

static void test_out_of_range_fields(void **state)
{
        (void)state;
        parse_bad("2017-13-01T00:00:00Z", "not a valid date");
        parse_bad("2017-00-01T00:00:00Z", "not a valid date");
        parse_bad("2017-06-00T00:00:00Z", "not a valid date");
        parse_bad("2017-06-20T24:00:00Z", "not a valid date");
        parse_bad("2017-06-20T23:60:00Z", "not a valid date");
        parse_bad("2017-06-20T23:59:61Z", "not a valid date");
        parse_bad("1969-12-31T23:59:59Z", "not a valid date");
        /* A leap second is accepted and clamped: Unix time has no slot for it. */
        assert_int_equal(parse_ok("2016-12-31T23:59:60Z"), parse_ok("2016-12-31T23:59:59Z"));
}

static void test_missing_offset(void **state)
{
        (void)state;
        parse_bad("2017-06-20T09:00:00", NULL);
        parse_bad("2017-06-20T09:00:00.123", "missing time zone");
        parse_bad("2017-06-20T09:00:00 KST", "missing time zone");
}

/* The commonest mistake, a local time with no offset at all, gets the precise message too. */
static void test_missing_offset_message(void **state)
{
        (void)state;
        parse_bad("2017-06-20T09:00:00", "missing time zone");
}

static void test_lowercase_t_z(void **state)
{
        (void)state;
        assert_int_equal(parse_ok("2017-06-20t00:00:00z"), MS_2017_06_20);
        assert_int_equal(parse_ok("2017-06-20t09:00:00+09:00"), MS_2017_06_20);
}

static void test_trailing_garbage(void **state)
{
        (void)state;
        parse_bad("2017-06-20T00:00:00Zx", "trailing characters");
        parse_bad("2017-06-20T00:00:00Z ", "trailing characters");
        parse_bad("2017-06-20T09:00:00+09:00\n", "trailing characters");
        parse_bad("2017-06-20T09:00:00+09:00:00", "trailing characters");
        parse_bad("2017-06-20T00:00:00ZZ", "trailing characters");
}

static void test_garbage(void **state)
{
        (void)state;
        parse_bad("", "is not an RFC 3339 date-time");
        parse_bad("yesterday", "'yesterday' is not an RFC 3339 date-time");
        parse_bad("2017-06-20", "is not an RFC 3339 date-time");
        parse_bad("2017/06/20T00:00:00Z", "is not an RFC 3339 date-time");
        parse_bad("20170620T000000Z", "is not an RFC 3339 date-time");
        parse_bad("2017-6-20T00:00:00Z", "is not an RFC 3339 date-time");
        parse_bad("2017-06-20X00:00:00Z", "is not an RFC 3339 date-time");
        parse_bad("2017-06-20T0:00:00Z+", "is not an RFC 3339 date-time");
        parse_bad("Tue, 20 Jun 2017 09:00:00 +0900", "is not an RFC 3339 date-time");
        parse_bad("-017-06-20T00:00:00Z", "is not an RFC 3339 date-time");
        /* A NULL errstr is allowed (callers that only want yes/no). */
        {
                int64_t ms;

                assert_int_equal(nc_time_parse_rfc3339("nope", &ms, NULL, 0), -1);
        }
}

static void test_format(void **state)
{
        char buf[32];

        (void)state;
        assert_string_equal(nc_time_format_rfc3339(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
        assert_string_equal(nc_time_format_rfc3339(MS_2017_06_20, buf, sizeof(buf)),
                            "2017-06-20T00:00:00Z");
        assert_string_equal(nc_time_format_rfc3339(MS_2017_06_20 + 123, buf, sizeof(buf)),
                            "2017-06-20T00:00:00.123Z");
        assert_string_equal(nc_time_format_rfc3339(MS_2017_06_20 + 5, buf, sizeof(buf)),
                            "2017-06-20T00:00:00.005Z");
        assert_string_equal(nc_time_format_rfc3339(MS_2017_06_20 + 86399999, buf, sizeof(buf)),
                            "2017-06-20T23:59:59.999Z");
        assert_string_equal(nc_time_format_rfc3339(INT64_C(951825600000), buf, sizeof(buf)),
                            "2000-02-29T12:00:00Z");
}

static void test_round_trip(void **state)
{
        static const int64_t ms[] = {0,
                                     1,
                                     999,
                                     MS_2017_06_20,
                                     MS_2017_06_20 + 1,
                                     MS_2017_06_20 + 86399999,
                                     INT64_C(951825600000),
                                     INT64_C(1456704000000) + 42,
                                     INT64_C(2147483648000),
                                     INT64_C(4102444799999)};
        static const char *const texts[][2] = {
            {"2017-06-20T09:00:00+09:00", "2017-06-20T00:00:00Z"},
            {"2017-06-19T19:00:00.5-05:00", "2017-06-20T00:00:00.500Z"},
            {"2017-06-20t00:00:00.123456z", "2017-06-20T00:00:00.123Z"},
            {"2016-02-29T23:30:00-01:00", "2016-03-01T00:30:00Z"},
        };
        char buf[32];
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
                nc_time_format_rfc3339(ms[i], buf, sizeof(buf));
                assert_int_equal(parse_ok(buf), ms[i]);
        }
        /* Parsing then formatting normalises to UTC with millisecond precision. */
        for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
                assert_string_equal(nc_time_format_rfc3339(parse_ok(texts[i][0]), buf, sizeof(buf)),
                                    texts[i][1]);
}

static void test_now(void **state)
{
        int64_t a, b;

        (void)state;
        a = nc_time_now_ms();
        b = nc_time_now_ms();
        assert_true(a > INT64_C(1577836800000)); /* after 2020-01-01 */
        assert_true(b >= a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_utc_z),          cmocka_unit_test(test_offsets),
            cmocka_unit_test(test_bad_offsets),    cmocka_unit_test(test_fractions),
            cmocka_unit_test(test_leap_years),     cmocka_unit_test(test_out_of_range_fields),
            cmocka_unit_test(test_missing_offset), cmocka_unit_test(test_missing_offset_message),
            cmocka_unit_test(test_lowercase_t_z),  cmocka_unit_test(test_trailing_garbage),
            cmocka_unit_test(test_garbage),        cmocka_unit_test(test_format),
            cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_now),
        };

        return cmocka_run_group_tests_name("nc_time", tests, NULL, NULL);
}
