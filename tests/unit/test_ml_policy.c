/* Unit tests for consumer/mailer/ml_policy.c: what the mailer does with each SMTP result, the
 * retry schedule, and the outcome names. */
#include "nc_test.h"

#include <string.h>

#include "../../consumer/mailer/ml_policy.c"

static const int64_t sched_ms[] = {1000, 5000, 60000};
static const ml_retry_schedule_t sched = {sched_ms, 3};

static ml_verdict_t verdict(int status, int attempted, int attempt, int stopping, int64_t *delay)
{
        const ml_smtp_result_t r = {status, attempted, ""};

        return ml_policy_smtp(&r, attempt, &sched, stopping, delay);
}

static void test_2xx_sent(void **state)
{
        int64_t d = -1;

        (void)state;
        assert_int_equal(verdict(250, 1, 1, 0, &d), ML_VERDICT_SENT);
        assert_int_equal(d, 0);
        assert_int_equal(verdict(251, 1, 3, 0, &d), ML_VERDICT_SENT);
        /* Accepted while stopping is still sent (and recorded), at any attempt. */
        assert_int_equal(verdict(250, 1, 4, 1, &d), ML_VERDICT_SENT);
}

static void test_5xx_bounce(void **state)
{
        int64_t d = -1;
        const ml_smtp_result_t r = {550, 1, "5.1.1 <x@example.org>: unknown"};

        (void)state;
        assert_int_equal(ml_policy_smtp(&r, 1, &sched, 0, &d), ML_VERDICT_BOUNCE);
        assert_int_equal(d, 0);
        assert_int_equal(verdict(554, 1, 1, 1, &d), ML_VERDICT_BOUNCE);
        /* Not retried, even at the last attempt: a bounce, not a failure. */
        assert_int_equal(verdict(552, 1, 4, 0, &d), ML_VERDICT_BOUNCE);
}

static void test_421_retry(void **state)
{
        int64_t d = -1;

        (void)state;
        /* A 421 ends the session: given to messages that had no reply of their own. */
        assert_int_equal(verdict(421, 0, 1, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(d, 1000);
        assert_int_equal(verdict(421, 1, 2, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(d, 5000);
}

static void test_45x_retry(void **state)
{
        static const int codes[] = {450, 451, 452};
        int64_t d;

        (void)state;
        for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++) {
                const ml_smtp_result_t r = {codes[i], 1, "4.7.1 greylisted"};

                d = -1;
                assert_int_equal(ml_policy_smtp(&r, 3, &sched, 0, &d), ML_VERDICT_RETRY);
                assert_int_equal(d, 60000);
        }
}

static void test_other_4xx_retry(void **state)
{
        int64_t d = -1;

        (void)state;
        assert_int_equal(verdict(454, 1, 1, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(d, 1000);
        assert_int_equal(verdict(499, 1, 2, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(d, 5000);
}

static void test_not_attempted_retry(void **state)
{
        int64_t d = -1;

        (void)state;
        /* No connection, or the connection dropped before its reply. */
        assert_int_equal(verdict(0, 0, 1, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(d, 1000);
        assert_int_equal(verdict(0, 1, 3, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(d, 60000);
}

static void test_not_built_failed(void **state)
{
        int64_t d = -1;

        (void)state;
        assert_int_equal(verdict(ML_STATUS_NOT_BUILT, 0, 1, 0, &d), ML_VERDICT_FAILED);
        assert_int_equal(d, 0);
        /* Not left for a restart either: it would not build then. */
        assert_int_equal(verdict(ML_STATUS_NOT_BUILT, 0, 1, 1, &d), ML_VERDICT_FAILED);
}

static void test_last_attempt_failed(void **state)
{
        int64_t d = -1;

        (void)state;
        /* Three retries: the fourth attempt is the last. */
        assert_int_equal(verdict(451, 1, 3, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(verdict(451, 1, 4, 0, &d), ML_VERDICT_FAILED);
        assert_int_equal(d, 0);
        assert_int_equal(verdict(421, 0, 4, 0, &d), ML_VERDICT_FAILED);
        assert_int_equal(verdict(0, 0, 9, 0, &d), ML_VERDICT_FAILED);
        assert_false(ml_policy_attempts_exhausted(1, &sched));
        assert_false(ml_policy_attempts_exhausted(3, &sched));
        assert_true(ml_policy_attempts_exhausted(4, &sched));
        /* An empty schedule: the first temporary result fails the job. */
        {
                const ml_retry_schedule_t none = {sched_ms, 0};
                const ml_smtp_result_t r = {450, 1, ""};

                assert_int_equal(ml_policy_smtp(&r, 1, &none, 0, &d), ML_VERDICT_FAILED);
        }
}

static void test_stopping_leave(void **state)
{
        int64_t d = -1;

        (void)state;
        /* Temporary results while stopping: not charged, left for a restart. */
        assert_int_equal(verdict(0, 0, 1, 1, &d), ML_VERDICT_LEAVE);
        assert_int_equal(verdict(421, 0, 4, 1, &d), ML_VERDICT_LEAVE);
        assert_int_equal(verdict(451, 1, 2, 1, &d), ML_VERDICT_LEAVE);
        assert_int_equal(d, 0);
}

static void test_odd_codes(void **state)
{
        int64_t d = -1;

        (void)state;
        /* A 3xx as a final reply is no success: retried like a temporary failure, but not
         * left for a restart when stopping (ml_smtp_status_temporary() says no). */
        assert_int_equal(verdict(354, 1, 1, 0, &d), ML_VERDICT_RETRY);
        assert_int_equal(verdict(354, 1, 1, 1, &d), ML_VERDICT_RETRY);
        assert_int_equal(verdict(354, 1, 4, 0, &d), ML_VERDICT_FAILED);
}

static void test_outcome_names(void **state)
{
        (void)state;
        assert_string_equal(ml_outcome_event(ML_OUTCOME_SENT), "mail.sent");
        assert_string_equal(ml_outcome_event(ML_OUTCOME_BOUNCE), "mail.bounce");
        assert_string_equal(ml_outcome_event(ML_OUTCOME_FAILED), "mail.failed");
        assert_string_equal(ml_outcome_event(ML_OUTCOME_SKIPPED), "mail.skipped");
        assert_string_equal(ml_outcome_label(ML_OUTCOME_SENT), "sent");
        assert_string_equal(ml_outcome_label(ML_OUTCOME_BOUNCE), "bounce");
        assert_string_equal(ml_outcome_label(ML_OUTCOME_FAILED), "failed");
        assert_string_equal(ml_outcome_label(ML_OUTCOME_SKIPPED), "skipped");
        assert_string_equal(ml_verdict_name(ML_VERDICT_RETRY), "retry");
}

static void test_bounce_window(void **state)
{
        const int64_t day = 86400, now = 1800000000, win = 30 * day;
        int sup = -1;

        (void)state;
        assert_int_equal(ml_policy_bounce(0, 0, now, win, 3, &sup), 1);
        assert_false(sup);
        assert_int_equal(ml_policy_bounce(1, now - day, now, win, 3, &sup), 2);
        assert_false(sup);
        assert_int_equal(ml_policy_bounce(2, now - win, now, win, 3, &sup), 3);
        assert_true(sup);
        /* The last bounce a second too old: counting starts again. */
        assert_int_equal(ml_policy_bounce(2, now - win - 1, now, win, 3, &sup), 1);
        assert_false(sup);
        /* A count kept without a time goes on. */
        assert_int_equal(ml_policy_bounce(2, 0, now, win, 3, &sup), 3);
        assert_true(sup);
        assert_int_equal(ml_policy_bounce(255, now, now, win, 3, &sup), 255);
        assert_int_equal(ml_policy_bounce(0, 0, now, win, 1, &sup), 1);
        assert_true(sup);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_2xx_sent),
            cmocka_unit_test(test_5xx_bounce),
            cmocka_unit_test(test_bounce_window),
            cmocka_unit_test(test_421_retry),
            cmocka_unit_test(test_45x_retry),
            cmocka_unit_test(test_other_4xx_retry),
            cmocka_unit_test(test_not_attempted_retry),
            cmocka_unit_test(test_not_built_failed),
            cmocka_unit_test(test_last_attempt_failed),
            cmocka_unit_test(test_stopping_leave),
            cmocka_unit_test(test_odd_codes),
            cmocka_unit_test(test_outcome_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
