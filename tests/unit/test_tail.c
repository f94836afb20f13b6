/* Unit tests for common/nc_tail.c without a broker: the reader builds, its settings are
 * checked and name it, and with no broker to ask it neither starts nor claims to be caught
 * up.  Reading and "caught up" are exercised with a real broker by the webhooks tests
 * (tests/integration/test_2*_webhooks_*.py). */
#include "nc_test.h"

#include <string.h>
#include <unistd.h>

#include "nc_tail.h"

static void cfg_init(nc_config_t *cfg)
{
        char err[512];

        nc_config_defaults(cfg);
        assert_int_equal(
            nc_config_set_kafka(cfg, "log_level", "0", "test.conf:1", err, sizeof(err)), 0);
        /* Nothing listens there: no test may find a broker. */
        assert_int_equal(
            nc_config_set_kafka(cfg, "bootstrap.servers", "127.0.0.1:1", "-X", err, sizeof(err)),
            0);
}

static void never(const rd_kafka_message_t *m, void *opaque)
{
        (void)m;
        (void)opaque;
        fail_msg("no record can be read without a broker");
}

static void test_builds_stopped(void **state)
{
        nc_config_t cfg;
        char err[512] = "";
        nc_tail_t *t;
        int fds[2] = {-1, -1};

        (void)state;
        cfg_init(&cfg);
        t = nc_tail_new(&cfg, &(nc_tail_opts_t){.name = "dlq reader", .topic = "t"}, err,
                        sizeof(err));
        assert_non_null(t);
        assert_int_equal(pipe(fds), 0);
        nc_tail_wake_fd(t, fds[1], "r", 1);
        assert_false(nc_tail_running(t));
        assert_false(nc_tail_caught_up(t));
        assert_int_equal(nc_tail_started_ms(t), 0);
        assert_int_equal(nc_tail_poll(t, 0, never, NULL), 0);
        nc_tail_stop(t); /* stopping a stopped reader is fine */
        nc_tail_free(t);
        nc_tail_free(NULL);
        close(fds[0]);
        close(fds[1]);
        nc_config_free(&cfg);
}

static void test_bad_setting_named(void **state)
{
        const nc_kafka_setting_t set[] = {{"fetch.wait.max.ms", "banana"}, {NULL, NULL}};
        nc_config_t cfg;
        char err[512] = "";

        (void)state;
        cfg_init(&cfg);
        assert_null(
            nc_tail_new(&cfg, &(nc_tail_opts_t){.name = "events reader", .topic = "t", .set = set},
                        err, sizeof(err)));
        assert_non_null(strstr(err, "events reader"));
        assert_non_null(strstr(err, "fetch.wait.max.ms"));
        nc_config_free(&cfg);
}

static void test_no_broker(void **state)
{
        nc_config_t cfg;
        char err[512] = "";
        nc_tail_t *t;

        (void)state;
        cfg_init(&cfg);
        t = nc_tail_new(&cfg, &(nc_tail_opts_t){.name = "dlq reader", .topic = "x.dlq"}, err,
                        sizeof(err));
        assert_non_null(t);
        assert_int_equal(nc_tail_partitions(t, 200, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "dlq reader: topic x.dlq: "));
        err[0] = '\0';
        assert_int_equal(nc_tail_start(t, 10, 200, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "dlq reader: topic x.dlq: "));
        assert_false(nc_tail_running(t));
        assert_false(nc_tail_caught_up(t));
        nc_tail_free(t);
        nc_config_free(&cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_builds_stopped),
            cmocka_unit_test(test_bad_setting_named),
            cmocka_unit_test(test_no_broker),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
