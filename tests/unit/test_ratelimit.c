/* Unit tests for consumer/mailer/ml_ratelimit.c: the sliding window, separate keys, the
 * bounded table and the "N/DURATION" parser. */
#include "nc_test.h"

#include <stdio.h>
#include <string.h>

#include "../../consumer/mailer/ml_ratelimit.c"

/* Takes KEY at NOW until refused; returns how many were allowed (at most LIMIT tries). */
static int take_until_limited(ml_ratelimit_t *rl, const char *key, int64_t now, int limit)
{
        int n = 0;

        while (n < limit && ml_ratelimit_take(rl, key, now))
                n++;
        return n;
}

static void test_limit_and_window(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(3, 1000, 16);

        (void)state;
        assert_non_null(rl);
        assert_int_equal(ml_ratelimit_take(rl, "a", 0), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 100), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 200), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 300), 0);
        assert_int_equal(ml_ratelimit_take(rl, "a", 999), 0);
        assert_int_equal(ml_ratelimit_limited(rl), 2);
        /* The event of 0 leaves the window at 1000 exactly: one slot, not two. */
        assert_int_equal(ml_ratelimit_take(rl, "a", 1000), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1000), 0);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1099), 0);
        /* 100 leaves at 1100, 200 at 1200. */
        assert_int_equal(ml_ratelimit_take(rl, "a", 1100), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1199), 0);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1200), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1200), 0);
        assert_int_equal(ml_ratelimit_limited(rl), 6);
        /* Refusals are not counted as events: a whole window later, all three again. */
        assert_int_equal(take_until_limited(rl, "a", 2200, 10), 3);
        ml_ratelimit_free(rl);
}

static void test_keys_independent(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(2, 60000, 16);
        char key[32];
        int i;

        (void)state;
        assert_int_equal(take_until_limited(rl, "alice@example.org", 5, 10), 2);
        assert_int_equal(take_until_limited(rl, "bob@example.org", 5, 10), 2);
        /* Names differing in case or length are other keys. */
        assert_int_equal(take_until_limited(rl, "Alice@example.org", 5, 10), 2);
        assert_int_equal(take_until_limited(rl, "alice@example.or", 5, 10), 2);
        for (i = 0; i < 12; i++) {
                snprintf(key, sizeof(key), "10.0.0.%d", i);
                assert_int_equal(take_until_limited(rl, key, 10, 10), 2);
        }
        assert_int_equal(ml_ratelimit_limited(rl), 16);
        assert_int_equal(ml_ratelimit_take(rl, "alice@example.org", 59999), 0);
        ml_ratelimit_free(rl);
}

static void test_capacity(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(1, 1000, 3);

        (void)state;
        assert_int_equal(ml_ratelimit_take(rl, "a", 0), 1);
        assert_int_equal(ml_ratelimit_take(rl, "b", 100), 1);
        assert_int_equal(ml_ratelimit_take(rl, "c", 200), 1);
        /* Full of keys still limiting: a new key is refused, no old one forgotten. */
        assert_int_equal(ml_ratelimit_take(rl, "d", 300), 0);
        assert_int_equal(ml_ratelimit_take(rl, "a", 300), 0);
        assert_int_equal(ml_ratelimit_limited(rl), 2);
        /* At 1000 "a" is idle: "d" takes its place; "b" and "c" are still remembered. */
        assert_int_equal(ml_ratelimit_take(rl, "d", 1000), 1);
        assert_int_equal(ml_ratelimit_take(rl, "b", 1000), 0);
        assert_int_equal(ml_ratelimit_take(rl, "c", 1000), 0);
        /* "a" was forgotten, but the table is full again of limiting keys. */
        assert_int_equal(ml_ratelimit_take(rl, "a", 1050), 0);
        /* At 1150 only "b" is idle (100 + 1000): "a" gets it, then "e" finds none. */
        assert_int_equal(ml_ratelimit_take(rl, "a", 1150), 1);
        assert_int_equal(ml_ratelimit_take(rl, "e", 1150), 0);
        assert_int_equal(ml_ratelimit_take(rl, "d", 1150), 0);
        /* The idlest goes first: at 5000 all are idle, "c" (last 200) before "d" and "a". */
        assert_int_equal(ml_ratelimit_take(rl, "f", 5000), 1);
        assert_int_equal(ml_ratelimit_take(rl, "d", 5000), 1); /* still there */
        assert_int_equal(ml_ratelimit_take(rl, "a", 5000), 1); /* still there */
        assert_int_equal(ml_ratelimit_take(rl, "c", 5000), 0); /* forgotten; table full */
        assert_int_equal(ml_ratelimit_limited(rl), 8);
        ml_ratelimit_free(rl);
}

static void test_unlimited_and_args(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(0, 0, 0);
        int i;

        (void)state;
        assert_non_null(rl);
        for (i = 0; i < 1000; i++)
                assert_int_equal(ml_ratelimit_take(rl, "same", 0), 1);
        assert_int_equal(ml_ratelimit_limited(rl), 0);
        ml_ratelimit_free(rl);
        assert_null(ml_ratelimit_new(-1, 1000, 4));
        assert_null(ml_ratelimit_new(3, 0, 4));
        assert_null(ml_ratelimit_new(3, 1000, 0));
        ml_ratelimit_free(NULL);
}

static void expect_parse_error(const char *s, const char *words)
{
        char err[512] = "";
        int max = -7;
        int64_t win = -7;

        assert_int_equal(ml_ratelimit_parse(s, &max, &win, err, sizeof(err)), -1);
        if (!strstr(err, words) || !strstr(err, s))
                fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, err, words);
}

static void test_parse(void **state)
{
        char err[512] = "";
        int max = -1;
        int64_t win = -1;

        (void)state;
        assert_int_equal(ml_ratelimit_parse("5/1h", &max, &win, err, sizeof(err)), 0);
        assert_int_equal(max, 5);
        assert_int_equal(win, 3600000);
        assert_int_equal(ml_ratelimit_parse("3/24h", &max, &win, err, sizeof(err)), 0);
        assert_int_equal(max, 3);
        assert_int_equal(win, 24 * 3600000LL);
        assert_int_equal(ml_ratelimit_parse("10/30s", &max, &win, err, sizeof(err)), 0);
        assert_int_equal(max, 10);
        assert_int_equal(win, 30000);
        assert_int_equal(ml_ratelimit_parse("0", &max, &win, err, sizeof(err)), 0);
        assert_int_equal(max, 0);
        assert_int_equal(win, 0);

        expect_parse_error("5", "expected COUNT/DURATION");
        expect_parse_error("", "expected COUNT/DURATION");
        expect_parse_error("0/1h", "count must be");
        expect_parse_error("-1/1h", "count must be");
        expect_parse_error("x/1h", "count must be");
        expect_parse_error(" 5/1h", "count must be");
        expect_parse_error("5x/1h", "count must be");
        expect_parse_error("100001/1h", "count must be");
        expect_parse_error("5/", "bad duration");
        expect_parse_error("5/1", "bad duration"); /* a unit is required */
        expect_parse_error("5/1y", "bad duration");
        expect_parse_error("5/0s", "bad duration");
        expect_parse_error("5/31d", "bad duration");
        expect_parse_error("5/1h/2", "bad duration");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_limit_and_window),
            cmocka_unit_test(test_keys_independent),
            cmocka_unit_test(test_capacity),
            cmocka_unit_test(test_unlimited_and_args),
            cmocka_unit_test(test_parse),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
