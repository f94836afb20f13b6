/* Unit tests for consumer/mailer/ml_ratelimit.c (limits of the public sign-up pages). */
#include "nc_test.h"

#include <string.h>

#include "../../consumer/mailer/ml_ratelimit.c"

static void test_limit_and_window(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(3, 1000, 10);

        (void)state;
        assert_non_null(rl);
        assert_int_equal(ml_ratelimit_take(rl, "a", 0), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 100), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 200), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 300), 0);
        /* Another key counts on its own. */
        assert_int_equal(ml_ratelimit_take(rl, "b", 300), 1);
        /* Sliding: the event at 0 leaves the window at 1000, the one at 100 at 1100. */
        assert_int_equal(ml_ratelimit_take(rl, "a", 999), 0);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1000), 1);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1001), 0);
        assert_int_equal(ml_ratelimit_take(rl, "a", 1100), 1);
        assert_int_equal(ml_ratelimit_limited(rl), 3);
        ml_ratelimit_free(rl);
}

static void test_flood_counts(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(3, 24 * 3600 * 1000LL, 100);
        int allowed = 0;

        (void)state;
        for (int i = 0; i < 1000; i++)
                allowed += ml_ratelimit_take(rl, "flood@example.org", 5000 + i * 60);
        assert_int_equal(allowed, 3);
        assert_int_equal(ml_ratelimit_limited(rl), 997);
        ml_ratelimit_free(rl);
}

static void test_capacity(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(1, 1000, 2);

        (void)state;
        assert_int_equal(ml_ratelimit_take(rl, "a", 0), 1);
        assert_int_equal(ml_ratelimit_take(rl, "b", 10), 1);
        /* Full of keys still counting: a new key is refused, not the old ones forgotten. */
        assert_int_equal(ml_ratelimit_take(rl, "c", 20), 0);
        assert_int_equal(ml_ratelimit_take(rl, "a", 30), 0);
        /* Once "a" has left the window its place is reused. */
        assert_int_equal(ml_ratelimit_take(rl, "c", 1000), 1);
        assert_int_equal(ml_ratelimit_take(rl, "b", 500), 0);
        ml_ratelimit_free(rl);
}

static void test_unlimited_and_parse(void **state)
{
        ml_ratelimit_t *rl = ml_ratelimit_new(0, 0, 0);
        int64_t w = -1;
        char err[256];
        int max = -1;

        (void)state;
        for (int i = 0; i < 100; i++)
                assert_int_equal(ml_ratelimit_take(rl, "a", i), 1);
        ml_ratelimit_free(rl);
        assert_null(ml_ratelimit_new(-1, 10, 10));
        assert_null(ml_ratelimit_new(3, 0, 10));
        assert_int_equal(ml_ratelimit_parse("3/24h", &max, &w, err, sizeof(err)), 0);
        assert_int_equal(max, 3);
        assert_int_equal(w, 24 * 3600 * 1000LL);
        assert_int_equal(ml_ratelimit_parse("10/1m", &max, &w, err, sizeof(err)), 0);
        assert_int_equal(w, 60000);
        assert_int_equal(ml_ratelimit_parse("0", &max, &w, err, sizeof(err)), 0);
        assert_int_equal(max, 0);
        assert_int_equal(ml_ratelimit_parse("3", &max, &w, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "N/DURATION"));
        assert_int_equal(ml_ratelimit_parse("3/often", &max, &w, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "'often' is not a duration"));
        assert_int_equal(ml_ratelimit_parse("-1/1h", &max, &w, err, sizeof(err)), -1);
        assert_int_equal(ml_ratelimit_parse("", &max, &w, err, sizeof(err)), -1);
        assert_int_equal(ml_ratelimit_parse("x3/1h", &max, &w, err, sizeof(err)), -1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_limit_and_window),
            cmocka_unit_test(test_flood_counts),
            cmocka_unit_test(test_capacity),
            cmocka_unit_test(test_unlimited_and_parse),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
