/* Unit tests for consumer/webhooks/wh_policy.c: what an attempt's result calls for (every
 * class of answer and of curl error), the retry schedule and when it is exhausted,
 * Retry-After (seconds, HTTP dates) and its cap, and the outcome names. */
#include "nc_test.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../consumer/webhooks/wh_policy.c"

/* 1s, 10s, 60s; Retry-After capped at 5 minutes. */
static nc_webhooks_config_t schedule(void)
{
        nc_webhooks_config_t wc;

        memset(&wc, 0, sizeof(wc));
        wc.retry_ms[0] = 1000;
        wc.retry_ms[1] = 10000;
        wc.retry_ms[2] = 60000;
        wc.retry_n = 3;
        wc.retry_after_max_ms = 300000;
        return wc;
}

#define NOW_MS 1700000000000LL /* 2023-11-14T22:13:20Z */

static void test_outcome_names(void **state)
{
        (void)state;
        assert_string_equal(wh_outcome_name(WH_OUTCOME_DELIVERED), "delivered");
        assert_string_equal(wh_outcome_name(WH_OUTCOME_RETRY), "retry");
        assert_string_equal(wh_outcome_name(WH_OUTCOME_DLQ), "dlq");
        assert_string_equal(wh_outcome_name(WH_OUTCOME_DISABLED), "disabled");
        assert_string_equal(wh_outcome_name(WH_OUTCOME_DEFERRED), "deferred");
}

/* A value outside the enum is a bug: the process stops (fatalx, exit 70). */
static void test_outcome_name_unknown_is_fatal(void **state)
{
        int st = 0;
        pid_t pid;

        (void)state;
        fflush(NULL);
        if ((pid = fork()) == 0) {
                close(2);
                wh_outcome_name((enum wh_outcome)99);
                _exit(0);
        }
        assert_true(pid > 0);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 70);
}

static void test_classify_2xx(void **state)
{
        (void)state;
        assert_int_equal(wh_policy_classify(CURLE_OK, 200), WH_OUTCOME_DELIVERED);
        assert_int_equal(wh_policy_classify(CURLE_OK, 201), WH_OUTCOME_DELIVERED);
        assert_int_equal(wh_policy_classify(CURLE_OK, 202), WH_OUTCOME_DELIVERED);
        assert_int_equal(wh_policy_classify(CURLE_OK, 204), WH_OUTCOME_DELIVERED);
        assert_int_equal(wh_policy_classify(CURLE_OK, 299), WH_OUTCOME_DELIVERED);
}

/* Redirects are not followed: a 3xx is an answer, and a wrong one. */
static void test_classify_3xx(void **state)
{
        (void)state;
        assert_int_equal(wh_policy_classify(CURLE_OK, 300), WH_OUTCOME_DLQ);
        assert_int_equal(wh_policy_classify(CURLE_OK, 301), WH_OUTCOME_DLQ);
        assert_int_equal(wh_policy_classify(CURLE_OK, 302), WH_OUTCOME_DLQ);
        assert_int_equal(wh_policy_classify(CURLE_OK, 307), WH_OUTCOME_DLQ);
        assert_int_equal(wh_policy_classify(CURLE_OK, 308), WH_OUTCOME_DLQ);
}

static void test_classify_4xx_permanent(void **state)
{
        static const long codes[] = {400, 401, 403, 404, 405, 409, 413, 415, 422, 451, 499};

        (void)state;
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
                assert_int_equal(wh_policy_classify(CURLE_OK, codes[i]), WH_OUTCOME_DLQ);
}

static void test_classify_408_429_retry(void **state)
{
        (void)state;
        assert_int_equal(wh_policy_classify(CURLE_OK, 408), WH_OUTCOME_RETRY);
        assert_int_equal(wh_policy_classify(CURLE_OK, 429), WH_OUTCOME_RETRY);
}

static void test_classify_410_disables(void **state)
{
        (void)state;
        assert_int_equal(wh_policy_classify(CURLE_OK, 410), WH_OUTCOME_DISABLED);
}

static void test_classify_5xx_retry(void **state)
{
        static const long codes[] = {500, 501, 502, 503, 504, 507, 599};

        (void)state;
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
                assert_int_equal(wh_policy_classify(CURLE_OK, codes[i]), WH_OUTCOME_RETRY);
}

/* No final answer at all (status 0 or 1xx): nothing to retry on, it is not a success. */
static void test_classify_other_status(void **state)
{
        (void)state;
        assert_int_equal(wh_policy_classify(CURLE_OK, 0), WH_OUTCOME_DLQ);
        assert_int_equal(wh_policy_classify(CURLE_OK, 100), WH_OUTCOME_DLQ);
        assert_int_equal(wh_policy_classify(CURLE_OK, 199), WH_OUTCOME_DLQ);
}

/* No answer: retried whatever the (stale or zero) status says. */
static void test_classify_curl_errors(void **state)
{
        static const CURLcode errs[] = {
            CURLE_OPERATION_TIMEDOUT, /* timeout */
            CURLE_COULDNT_CONNECT,    /* connection refused */
            CURLE_COULDNT_RESOLVE_HOST,
            CURLE_PEER_FAILED_VERIFICATION, /* TLS: certificate not trusted */
            CURLE_SSL_CONNECT_ERROR,        /* TLS: handshake */
            CURLE_SSL_CERTPROBLEM,          /* mTLS: our client certificate */
            CURLE_GOT_NOTHING,
            CURLE_RECV_ERROR,
            CURLE_SEND_ERROR,
        };

        (void)state;
        for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
                assert_int_equal(wh_policy_classify(errs[i], 0), WH_OUTCOME_RETRY);
                assert_int_equal(wh_policy_classify(errs[i], 200), WH_OUTCOME_RETRY);
                assert_int_equal(wh_policy_classify(errs[i], 410), WH_OUTCOME_RETRY);
        }
}

static void test_jitter(void **state)
{
        (void)state;
        assert_int_equal(wh_policy_jitter(1000, 0), 1000);
        assert_int_equal(wh_policy_jitter(1000, 0x80000000u), 1100);
        assert_int_equal(wh_policy_jitter(1000, 0xffffffffu), 1199); /* below +20% */
        assert_int_equal(wh_policy_jitter(0, 0xffffffffu), 0);
}

/* After attempt k the delivery waits in tier k-1, for its delay plus jitter. */
static void test_retry_schedule(void **state)
{
        nc_webhooks_config_t wc = schedule();
        wh_decision_t d;

        (void)state;
        d = wh_policy_retry(&wc, 1, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_RETRY);
        assert_int_equal(d.exhausted, 0);
        assert_int_equal(d.tier, 0);
        assert_int_equal(d.delay_ms, 1000);
        d = wh_policy_retry(&wc, 2, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_RETRY);
        assert_int_equal(d.tier, 1);
        assert_int_equal(d.delay_ms, 10000);
        d = wh_policy_retry(&wc, 3, -1, 0x80000000u);
        assert_int_equal(d.outcome, WH_OUTCOME_RETRY);
        assert_int_equal(d.tier, 2);
        assert_int_equal(d.delay_ms, 66000);
}

/* The last attempt of the schedule failed: no tier left, the delivery goes to the DLQ. */
static void test_retry_last_attempt_exhausted(void **state)
{
        nc_webhooks_config_t wc = schedule();
        wh_decision_t d;

        (void)state;
        d = wh_policy_retry(&wc, 4, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
        assert_int_equal(d.exhausted, 1);
        d = wh_policy_retry(&wc, 40, 1000, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
        assert_int_equal(d.exhausted, 1);
        /* nonsense from a retry record's header: nothing to schedule either */
        d = wh_policy_retry(&wc, 0, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
        assert_int_equal(d.exhausted, 1);
        wc.retry_n = 0; /* no schedule: the first failure is the last */
        d = wh_policy_retry(&wc, 1, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
        assert_int_equal(d.exhausted, 1);
}

/* Retry-After lengthens the wait, never shortens it, and is capped. */
static void test_retry_after_and_cap(void **state)
{
        nc_webhooks_config_t wc = schedule();
        wh_decision_t d;

        (void)state;
        d = wh_policy_retry(&wc, 1, 30000, 0); /* longer than the tier: taken */
        assert_int_equal(d.tier, 0);
        assert_int_equal(d.delay_ms, 30000);
        d = wh_policy_retry(&wc, 2, 500, 0); /* shorter than the tier: the tier's */
        assert_int_equal(d.delay_ms, 10000);
        d = wh_policy_retry(&wc, 1, 0, 0);
        assert_int_equal(d.delay_ms, 1000);
        d = wh_policy_retry(&wc, 1, 3600000, 0); /* an hour: capped at 5 minutes */
        assert_int_equal(d.delay_ms, 300000);
        d = wh_policy_retry(&wc, 1, INT64_MAX, 0);
        assert_int_equal(d.delay_ms, 300000);
        wc.retry_after_max_ms = 0; /* cap 0: Retry-After is ignored */
        d = wh_policy_retry(&wc, 1, 30000, 0);
        assert_int_equal(d.delay_ms, 1000);
        wc.retry_after_max_ms = 300000;
        /* a cap below the tier's delay does not shorten the tier */
        wc.retry_after_max_ms = 500;
        d = wh_policy_retry(&wc, 3, 3600000, 0);
        assert_int_equal(d.delay_ms, 60000);
}

/* The whole decision, as job_done asks it. */
static void test_decide(void **state)
{
        nc_webhooks_config_t wc = schedule();
        wh_decision_t d;

        (void)state;
        d = wh_policy_decide(&wc, CURLE_OK, 204, 1, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DELIVERED);
        d = wh_policy_decide(&wc, CURLE_OK, 503, 1, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_RETRY);
        assert_int_equal(d.delay_ms, 1000);
        d = wh_policy_decide(&wc, CURLE_OK, 429, 2, 120000, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_RETRY);
        assert_int_equal(d.tier, 1);
        assert_int_equal(d.delay_ms, 120000);
        d = wh_policy_decide(&wc, CURLE_OK, 503, 4, -1, 0); /* last attempt */
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
        assert_int_equal(d.exhausted, 1);
        d = wh_policy_decide(&wc, CURLE_OPERATION_TIMEDOUT, 0, 4, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
        assert_int_equal(d.exhausted, 1);
        d = wh_policy_decide(&wc, CURLE_COULDNT_CONNECT, 0, 2, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_RETRY);
        assert_int_equal(d.tier, 1);
        /* permanent answers do not look at the schedule, even on the first attempt */
        d = wh_policy_decide(&wc, CURLE_OK, 400, 1, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
        assert_int_equal(d.exhausted, 0);
        d = wh_policy_decide(&wc, CURLE_OK, 410, 1, 5000, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DISABLED);
        assert_int_equal(d.exhausted, 0);
        d = wh_policy_decide(&wc, CURLE_OK, 302, 1, -1, 0);
        assert_int_equal(d.outcome, WH_OUTCOME_DLQ);
}

static int64_t ra(const char *v)
{
        return wh_policy_retry_after(v, strlen(v), NOW_MS);
}

static void test_retry_after_seconds(void **state)
{
        (void)state;
        assert_int_equal(ra("120"), 120000);
        assert_int_equal(ra(" 7\r\n"), 7000); /* as the header callback sees it */
        assert_int_equal(ra("0"), 0);
        assert_int_equal(ra("+3"), 3000);
        /* saturates rather than overflows; the cap applies afterwards */
        assert_int_equal(ra("99999999999999999999"), INT64_MAX);
        assert_int_equal(ra("9223372036854775"), 9223372036854775000LL);
        assert_int_equal(ra("9223372036854776"), INT64_MAX);
}

static void test_retry_after_http_date(void **state)
{
        (void)state;
        /* NOW_MS + 90 s, in the three forms RFC 9110 allows */
        assert_int_equal(ra("Tue, 14 Nov 2023 22:14:50 GMT"), 90000);
        assert_int_equal(ra("Tuesday, 14-Nov-23 22:14:50 GMT"), 90000);
        assert_int_equal(ra("Tue Nov 14 22:14:50 2023"), 90000);
        assert_int_equal(ra(" Tue, 14 Nov 2023 22:13:21 GMT\r\n"), 1000);
        /* a date in the past: at once (the tier's delay still applies) */
        assert_int_equal(ra("Tue, 14 Nov 2023 22:00:00 GMT"), 0);
        assert_int_equal(ra("Thu, 01 Jan 1998 00:00:00 GMT"), 0);
}

static void test_retry_after_invalid(void **state)
{
        (void)state;
        assert_int_equal(ra(""), -1);
        assert_int_equal(ra("   \r\n"), -1);
        assert_int_equal(ra("soon"), -1);
        assert_int_equal(ra("-5"), -1);
        assert_int_equal(ra("12abc"), -1);
}

/* Only the first 127 bytes of a value are looked at. */
static void test_retry_after_long_value(void **state)
{
        char v[300];

        (void)state;
        memset(v, '1', sizeof(v));
        assert_int_equal(wh_policy_retry_after(v, sizeof(v), NOW_MS), INT64_MAX);
        memset(v, ' ', sizeof(v));
        memcpy(v + 120, "5", 1);
        assert_int_equal(wh_policy_retry_after(v, sizeof(v), NOW_MS), 5000);
        memset(v, ' ', sizeof(v));
        memcpy(v + 200, "5", 1);
        assert_int_equal(wh_policy_retry_after(v, sizeof(v), NOW_MS), -1);
}

static void test_http_error(void **state)
{
        char resp[64], buf[512];

        (void)state;
        snprintf(resp, sizeof(resp), "bad\tfield\n\"title\"");
        wh_policy_http_error(422, resp, buf, sizeof(buf));
        assert_string_equal(buf, "HTTP 422: bad field \"title\"");
        assert_string_equal(resp, "bad field \"title\"");
        resp[0] = '\0';
        wh_policy_http_error(503, resp, buf, sizeof(buf));
        assert_string_equal(buf, "HTTP 503");
        snprintf(resp, sizeof(resp), "moved");
        wh_policy_http_error(301, resp, buf, sizeof(buf));
        assert_string_equal(buf, "unexpected status 301 (redirects are not followed)");
}

/* The start of a long body only. */
static void test_http_error_long_body(void **state)
{
        char resp[256], buf[512];

        (void)state;
        memset(resp, 'a', sizeof(resp) - 1);
        resp[sizeof(resp) - 1] = '\0';
        wh_policy_http_error(400, resp, buf, sizeof(buf));
        assert_int_equal(strlen(buf), strlen("HTTP 400: ") + 200);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_outcome_names),
            cmocka_unit_test(test_outcome_name_unknown_is_fatal),
            cmocka_unit_test(test_classify_2xx),
            cmocka_unit_test(test_classify_3xx),
            cmocka_unit_test(test_classify_4xx_permanent),
            cmocka_unit_test(test_classify_408_429_retry),
            cmocka_unit_test(test_classify_410_disables),
            cmocka_unit_test(test_classify_5xx_retry),
            cmocka_unit_test(test_classify_other_status),
            cmocka_unit_test(test_classify_curl_errors),
            cmocka_unit_test(test_jitter),
            cmocka_unit_test(test_retry_schedule),
            cmocka_unit_test(test_retry_last_attempt_exhausted),
            cmocka_unit_test(test_retry_after_and_cap),
            cmocka_unit_test(test_decide),
            cmocka_unit_test(test_retry_after_seconds),
            cmocka_unit_test(test_retry_after_http_date),
            cmocka_unit_test(test_retry_after_invalid),
            cmocka_unit_test(test_retry_after_long_value),
            cmocka_unit_test(test_http_error),
            cmocka_unit_test(test_http_error_long_body),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
