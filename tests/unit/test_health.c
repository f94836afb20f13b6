/* Unit tests for common/nc_health.c: every readiness case (brokers unknown, up, down within
 * and beyond the grace, the daemon's own condition, their order) and liveness bounds. */
#include "nc_test.h"

#include <string.h>

#include "nc_health.h"

#define NOW 1000000

static nc_health_in_t in_ready(void)
{
        nc_health_in_t in = {.kafka = NC_HEALTH_KAFKA_UP,
                             .kafka_since_ms = NOW - 60000,
                             .grace_ms = 5000,
                             .progress = 1,
                             .progress_reason = NULL,
                             .now_ms = NOW};
        return in;
}

static void expect(const nc_health_in_t *in, nc_health_verdict_t want, const char *text)
{
        char reason[128] = "garbage";

        assert_int_equal(nc_health_ready(in, reason, sizeof(reason)), want);
        assert_string_equal(reason, text);
}

static void test_up_and_progressing(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        expect(&in, NC_HEALTH_READY, "");
        in.kafka_since_ms = NOW; /* reconnected this very moment */
        expect(&in, NC_HEALTH_READY, "");
}

static void test_unknown_is_never_ready(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        in.kafka = NC_HEALTH_KAFKA_UNKNOWN;
        in.kafka_since_ms = NOW; /* no grace for brokers never reached */
        expect(&in, NC_HEALTH_KAFKA_NEVER, "kafka not reached yet");
        in.progress = 0;
        in.progress_reason = "view loading";
        expect(&in, NC_HEALTH_KAFKA_NEVER, "kafka not reached yet");
}

static void test_down_within_grace(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        in.kafka = NC_HEALTH_KAFKA_DOWN;
        in.kafka_since_ms = NOW;
        expect(&in, NC_HEALTH_READY, "");
        in.kafka_since_ms = NOW - 4999;
        expect(&in, NC_HEALTH_READY, "");
}

static void test_down_beyond_grace(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        in.kafka = NC_HEALTH_KAFKA_DOWN;
        in.kafka_since_ms = NOW - 5000; /* the grace is over at exactly 5 s */
        expect(&in, NC_HEALTH_KAFKA_OUTAGE, "kafka unreachable for 5 s");
        in.kafka_since_ms = NOW - 12999;
        expect(&in, NC_HEALTH_KAFKA_OUTAGE, "kafka unreachable for 12 s");
}

static void test_zero_grace(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        in.kafka = NC_HEALTH_KAFKA_DOWN;
        in.grace_ms = 0;
        in.kafka_since_ms = NOW;
        expect(&in, NC_HEALTH_KAFKA_OUTAGE, "kafka unreachable for 0 s");
}

static void test_since_after_now(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        /* The tracker stamped the change after the caller read its clock. */
        in.kafka = NC_HEALTH_KAFKA_DOWN;
        in.kafka_since_ms = NOW + 50;
        expect(&in, NC_HEALTH_READY, "");
        in.grace_ms = 0;
        expect(&in, NC_HEALTH_KAFKA_OUTAGE, "kafka unreachable for 0 s");
}

static void test_no_progress(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        in.progress = 0;
        expect(&in, NC_HEALTH_NO_PROGRESS, "starting");
        in.progress_reason = "planner not running";
        expect(&in, NC_HEALTH_NO_PROGRESS, "planner not running");
        /* Within the grace, the daemon's own reason is what stops it. */
        in.kafka = NC_HEALTH_KAFKA_DOWN;
        in.kafka_since_ms = NOW - 1000;
        expect(&in, NC_HEALTH_NO_PROGRESS, "planner not running");
}

static void test_outage_reason_first(void **state)
{
        nc_health_in_t in = in_ready();

        (void)state;
        in.progress = 0;
        in.progress_reason = "view loading";
        in.kafka = NC_HEALTH_KAFKA_DOWN;
        in.kafka_since_ms = NOW - 40000;
        expect(&in, NC_HEALTH_KAFKA_OUTAGE, "kafka unreachable for 40 s");
}

static void test_reason_optional_and_truncated(void **state)
{
        nc_health_in_t in = in_ready();
        char small[8];

        (void)state;
        in.kafka = NC_HEALTH_KAFKA_DOWN;
        in.kafka_since_ms = NOW - 12000;
        assert_int_equal(nc_health_ready(&in, NULL, 0), NC_HEALTH_KAFKA_OUTAGE);
        assert_int_equal(nc_health_ready(&in, small, sizeof(small)), NC_HEALTH_KAFKA_OUTAGE);
        assert_string_equal(small, "kafka u");
}

static void test_verdict_names(void **state)
{
        (void)state;
        assert_string_equal(nc_health_verdict_name(NC_HEALTH_READY), "ready");
        assert_string_equal(nc_health_verdict_name(NC_HEALTH_KAFKA_NEVER), "kafka_never_reached");
        assert_string_equal(nc_health_verdict_name(NC_HEALTH_KAFKA_OUTAGE), "kafka_unreachable");
        assert_string_equal(nc_health_verdict_name(NC_HEALTH_NO_PROGRESS), "no_progress");
        assert_string_equal(nc_health_verdict_name(NC_HEALTH_VERDICT_N), "unknown");
}

static void test_live(void **state)
{
        char reason[64] = "garbage";

        (void)state;
        assert_int_equal(nc_health_live(-1, 30000, reason, sizeof(reason)), 1); /* no beat yet */
        assert_string_equal(reason, "");
        assert_int_equal(nc_health_live(0, 30000, reason, sizeof(reason)), 1);
        assert_int_equal(nc_health_live(30000, 30000, reason, sizeof(reason)), 1);
        assert_string_equal(reason, "");
        assert_int_equal(nc_health_live(30001, 30000, reason, sizeof(reason)), 0);
        assert_string_equal(reason, "main loop stalled for 30 s");
        assert_int_equal(nc_health_live(95500, 30000, reason, sizeof(reason)), 0);
        assert_string_equal(reason, "main loop stalled for 95 s");
        assert_int_equal(nc_health_live(95500, 30000, NULL, 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_up_and_progressing),
            cmocka_unit_test(test_unknown_is_never_ready),
            cmocka_unit_test(test_down_within_grace),
            cmocka_unit_test(test_down_beyond_grace),
            cmocka_unit_test(test_zero_grace),
            cmocka_unit_test(test_since_after_now),
            cmocka_unit_test(test_no_progress),
            cmocka_unit_test(test_outage_reason_first),
            cmocka_unit_test(test_reason_optional_and_truncated),
            cmocka_unit_test(test_verdict_names),
            cmocka_unit_test(test_live),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
