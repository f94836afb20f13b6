/* Unit tests for consumer/mailer/ml_domain.c: the [smtp] domain_limits parser, the
 * per-domain token bucket and sessions limit, the deferral test and the backoff. */
#include "nc_test.h"

#include <string.h>

#include "../../consumer/mailer/ml_domain.c"

#define S 1000LL

static ml_domain_limits_t parse_ok(const char *list, const char *def)
{
        ml_domain_limits_t l;
        char err[512] = "";

        if (ml_domain_limits_parse(list, def, 30 * S, 900 * S, &l, err, sizeof(err)) != 0)
                fail_msg("parse '%s' / '%s': %s", list ? list : "(null)", def, err);
        return l;
}

/* Parses and expects an error containing WANT. */
static void parse_bad(const char *list, const char *def, const char *want)
{
        ml_domain_limits_t l;
        char err[512] = "";

        assert_int_equal(ml_domain_limits_parse(list, def, 30 * S, 900 * S, &l, err, sizeof(err)),
                         -1);
        if (!strstr(err, want))
                fail_msg("error '%s' does not contain '%s'", err, want);
        assert_int_equal(l.n, 0);
        assert_null(l.v);
}

static void test_parse(void **state)
{
        ml_domain_limits_t l;

        (void)state;
        l = parse_ok("gmail.com 20/s 4, Outlook.COM 600/m 2,slow.test 0 1", "0 4");
        assert_int_equal(l.n, 3);
        assert_string_equal(l.v[0].domain, "gmail.com");
        assert_true(l.v[0].rate == 20);
        assert_int_equal(l.v[0].sessions, 4);
        assert_string_equal(l.v[1].domain, "outlook.com"); /* lower-cased */
        assert_true(l.v[1].rate == 10);
        assert_int_equal(l.v[1].sessions, 2);
        assert_true(l.v[2].rate == 0);
        assert_int_equal(l.v[2].sessions, 1);
        assert_null(l.def.domain);
        assert_true(l.def.rate == 0);
        assert_int_equal(l.def.sessions, 4);
        assert_ptr_equal(ml_domain_limit_for(&l, "outlook.com"), &l.v[1]);
        assert_ptr_equal(ml_domain_limit_for(&l, "example.org"), &l.def);
        assert_string_equal(ml_domain_label(&l, "gmail.com"), "gmail.com");
        assert_string_equal(ml_domain_label(&l, "mail.gmail.com"), "other"); /* exact only */
        ml_domain_limits_free(&l);

        l = parse_ok(NULL, "1000/h 0");
        assert_int_equal(l.n, 0);
        assert_true(l.def.rate > 0.277 && l.def.rate < 0.278);
        assert_int_equal(l.def.sessions, 0);
        ml_domain_limits_free(&l);
        l = parse_ok("", "5/10s 2");
        assert_true(l.def.rate == 0.5);
        ml_domain_limits_free(&l);
}

static void test_parse_errors(void **state)
{
        (void)state;
        parse_bad("gmail.com 20/s 4, outlook.com 10/x 2", "0 4",
                  "[smtp] domain_limits: entry 2 'outlook.com 10/x 2': '10/x' is not a rate");
        parse_bad("gmail.com 20/s", "0 4",
                  "entry 1 'gmail.com 20/s': expected DOMAIN RATE SESSIONS");
        parse_bad("gmail.com 20/s 4 9", "0 4", "expected DOMAIN RATE SESSIONS");
        parse_bad("gmail.com 20/s 65", "0 4", "'65' is not a number of sessions from 0 to 64");
        parse_bad("gmail.com 20/s -1", "0 4", "'-1' is not a number of sessions");
        parse_bad("a@gmail.com 20/s 1", "0 4", "'a@gmail.com' is not a domain name");
        parse_bad("gmail.com 1/s 1, GMAIL.com 2/s 2", "0 4",
                  "entry 2 'GMAIL.com 2/s 2': gmail.com "
                  "is listed twice");
        parse_bad("gmail.com 20 1", "0 4", "'20' is not a rate"); /* a unit, but for 0 */
        parse_bad("gmail.com 0/s 1", "0 4", "'0/s' is not a rate");
        parse_bad(NULL, "4", "[smtp] domain_limit_default: '4': expected RATE SESSIONS");
        parse_bad(NULL, "fast 4", "[smtp] domain_limit_default: 'fast' is not a rate");
        parse_bad(NULL, "0 x", "[smtp] domain_limit_default: 'x' is not a number of sessions");
}

static void test_parse_backoff(void **state)
{
        ml_domain_limits_t l;
        char err[256];

        (void)state;
        assert_int_equal(ml_domain_limits_parse(NULL, "0 4", 500, 900 * S, &l, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "domain_backoff must be at least 1s"));
        assert_int_equal(ml_domain_limits_parse(NULL, "0 4", 60 * S, 30 * S, &l, err, sizeof(err)),
                         -1);
        assert_int_equal(ml_domain_limits_parse(NULL, "0 4", 30 * S, 30 * S, &l, err, sizeof(err)),
                         0);
        ml_domain_limits_free(&l);
}

static void test_domain_of(void **state)
{
        (void)state;
        assert_string_equal(ml_domain_of("ana@Example.PE"), "Example.PE");
        assert_string_equal(ml_domain_of("\"a@b\"@c.test"), "c.test"); /* the last @ */
        assert_string_equal(ml_domain_of("nobody"), "");
        assert_string_equal(ml_domain_of(NULL), "");
}

static void test_is_deferral(void **state)
{
        (void)state;
        assert_true(ml_domain_is_deferral(421, 1, "4.7.0 Try again later"));
        assert_true(ml_domain_is_deferral(421, 1, "")); /* a 421 needs no enhanced status */
        assert_true(ml_domain_is_deferral(450, 1, "4.7.28 rate limited"));
        assert_true(ml_domain_is_deferral(451, 1, "4.7.650 throttled"));
        /* Not a deferral of the domain: another class, or not its recipient's reply. */
        assert_false(ml_domain_is_deferral(452, 1, "4.2.2 mailbox full"));
        assert_false(ml_domain_is_deferral(451, 1, "4.3.0 temporary failure"));
        assert_false(ml_domain_is_deferral(450, 1, "mailbox busy"));
        assert_false(ml_domain_is_deferral(450, 1, "4.7.x odd"));
        assert_false(ml_domain_is_deferral(421, 0, "4.3.2 service not available")); /* greeting */
        assert_false(ml_domain_is_deferral(451, 0, "4.7.1 sender rate limited"));   /* MAIL FROM */
        assert_false(ml_domain_is_deferral(550, 1, "5.7.1 refused"));
        assert_false(ml_domain_is_deferral(250, 1, "2.0.0 OK"));
        assert_false(ml_domain_is_deferral(0, 1, "connection lost"));
        assert_false(ml_domain_is_deferral(450, 1, NULL));
}

static void test_bucket(void **state)
{
        ml_domain_limit_t lim = {NULL, 2, 0}; /* 2/s: the bucket holds 2 */
        ml_domain_state_t st = {0};
        int64_t t = 1000000;

        (void)state;
        assert_true(ml_domain_next_eligible(&st, &lim, t) <= t);
        assert_int_equal(ml_domain_take(&st, &lim, 200, t), 2); /* a full bucket: 2 */
        assert_int_equal(ml_domain_take(&st, &lim, 200, t), 0);
        /* The next token in 500 ms. */
        assert_true(ml_domain_next_eligible(&st, &lim, t) > t);
        assert_true(ml_domain_next_eligible(&st, &lim, t) <= t + 501);
        assert_int_equal(ml_domain_take(&st, &lim, 200, t + 499), 0);
        assert_int_equal(ml_domain_take(&st, &lim, 200, t + 1000), 2); /* 1 s at 2/s */
        /* A long pause refills up to the bucket's size only. */
        assert_int_equal(ml_domain_take(&st, &lim, 200, t + 60000), 2);
        assert_int_equal(ml_domain_take(&st, &lim, 1, t + 70000), 1);
        assert_int_equal(ml_domain_take(&st, &lim, 5, t + 70000), 1);

        /* Below one a second: one at a time. */
        lim.rate = 0.5;
        memset(&st, 0, sizeof(st));
        assert_int_equal(ml_domain_take(&st, &lim, 10, t), 1);
        assert_int_equal(ml_domain_take(&st, &lim, 10, t + 1000), 0);
        assert_true(ml_domain_next_eligible(&st, &lim, t + 1000) > t + 1900);
        assert_int_equal(ml_domain_take(&st, &lim, 10, t + 2000), 1);

        /* No rate: everything, always. */
        lim.rate = 0;
        assert_int_equal(ml_domain_take(&st, &lim, 200, t), 200);
        assert_true(ml_domain_next_eligible(&st, &lim, t) <= t);
}

static void test_sessions(void **state)
{
        ml_domain_limit_t lim = {NULL, 0, 2};
        ml_domain_state_t st = {0};

        (void)state;
        assert_true(ml_domain_session_allowed(&st, &lim));
        st.busy = 1;
        assert_true(ml_domain_session_allowed(&st, &lim));
        st.busy = 2;
        assert_false(ml_domain_session_allowed(&st, &lim));
        lim.sessions = 0; /* no limit of its own */
        st.busy = 64;
        assert_true(ml_domain_session_allowed(&st, &lim));
        /* Backed off: one probe at a time, whatever the limit. */
        st.deferrals = 1;
        st.busy = 1;
        assert_false(ml_domain_session_allowed(&st, &lim));
        st.busy = 0;
        assert_true(ml_domain_session_allowed(&st, &lim));
}

static void test_backoff(void **state)
{
        ml_domain_limits_t l = parse_ok(NULL, "0 4");
        ml_domain_limit_t *lim = &l.def;
        ml_domain_state_t st = {0};
        int64_t t = 5000000;

        (void)state;
        assert_int_equal(ml_domain_backoff_delay(&l, 1), 30 * S);
        assert_int_equal(ml_domain_backoff_delay(&l, 2), 60 * S);
        assert_int_equal(ml_domain_backoff_delay(&l, 5), 480 * S);
        assert_int_equal(ml_domain_backoff_delay(&l, 6), 900 * S); /* 960 s, capped */
        assert_int_equal(ml_domain_backoff_delay(&l, 1000), 900 * S);

        /* A session without deferral or delivery changes nothing. */
        assert_int_equal(ml_domain_session_end(&st, &l, 0, 0, t), ML_DOMAIN_NONE);
        assert_int_equal(ml_domain_session_end(&st, &l, 0, 1, t), ML_DOMAIN_NONE);
        /* A deferral: 30 s without a session, then a probe. */
        assert_int_equal(ml_domain_session_end(&st, &l, 1, 1, t), ML_DOMAIN_BACKED_OFF);
        assert_int_equal(st.deferrals, 1);
        assert_int_equal(ml_domain_next_eligible(&st, lim, t), t + 30 * S);
        assert_int_equal(ml_domain_next_eligible(&st, lim, t + 30 * S), t + 30 * S);
        /* The probe defers again: 60 s. */
        t += 30 * S;
        assert_int_equal(ml_domain_session_end(&st, &l, 1, 0, t), ML_DOMAIN_BACKED_OFF);
        assert_int_equal(st.deferrals, 2);
        assert_int_equal(ml_domain_next_eligible(&st, lim, t + 1), t + 60 * S);
        /* A session that neither delivers nor defers (a 5xx, a lost connection): no reset. */
        assert_int_equal(ml_domain_session_end(&st, &l, 0, 0, t + 60 * S), ML_DOMAIN_NONE);
        assert_int_equal(st.deferrals, 2);
        /* A delivery resets it. */
        assert_int_equal(ml_domain_session_end(&st, &l, 0, 1, t + 60 * S), ML_DOMAIN_RECOVERED);
        assert_int_equal(st.deferrals, 0);
        assert_true(ml_domain_next_eligible(&st, lim, t + 60 * S) <= t + 60 * S);
        /* And the next deferral starts at 30 s again. */
        assert_int_equal(ml_domain_session_end(&st, &l, 1, 0, t + 61 * S), ML_DOMAIN_BACKED_OFF);
        assert_int_equal(st.until_ms, t + 91 * S);
        ml_domain_limits_free(&l);
}

static void test_backoff_and_rate(void **state)
{
        ml_domain_limits_t l = parse_ok("slow.test 1/s 2", "0 4");
        const ml_domain_limit_t *lim = ml_domain_limit_for(&l, "slow.test");
        ml_domain_state_t st = {0};
        int64_t t = 1000000;

        (void)state;
        assert_int_equal(ml_domain_take(&st, lim, 10, t), 1);
        ml_domain_session_end(&st, &l, 1, 0, t);
        /* The later of the two: the backoff here. */
        assert_int_equal(ml_domain_next_eligible(&st, lim, t + 10), t + 30 * S);
        ml_domain_limits_free(&l);
}

static void test_idle(void **state)
{
        ml_domain_limits_t l = parse_ok("r.test 1/s 1", "0 4");
        const ml_domain_limit_t *r = ml_domain_limit_for(&l, "r.test");
        ml_domain_state_t st = {0};
        int64_t t = 1000000;

        (void)state;
        assert_true(ml_domain_idle(&st, &l.def, &l, t));
        st.busy = 1;
        assert_false(ml_domain_idle(&st, &l.def, &l, t));
        st.busy = 0;
        /* Backed off: kept until a maximum backoff after it ended. */
        ml_domain_session_end(&st, &l, 1, 0, t);
        assert_false(ml_domain_idle(&st, &l.def, &l, t + 31 * S));
        assert_true(ml_domain_idle(&st, &l.def, &l, t + (30 + 900) * S));
        /* A bucket not full again: kept, or a new state would let a burst through. */
        memset(&st, 0, sizeof(st));
        assert_int_equal(ml_domain_take(&st, r, 1, t), 1);
        assert_false(ml_domain_idle(&st, r, &l, t + 500));
        assert_true(ml_domain_idle(&st, r, &l, t + 1000));
        ml_domain_limits_free(&l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse),
            cmocka_unit_test(test_parse_errors),
            cmocka_unit_test(test_parse_backoff),
            cmocka_unit_test(test_domain_of),
            cmocka_unit_test(test_is_deferral),
            cmocka_unit_test(test_bucket),
            cmocka_unit_test(test_sessions),
            cmocka_unit_test(test_backoff),
            cmocka_unit_test(test_backoff_and_rate),
            cmocka_unit_test(test_idle),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
