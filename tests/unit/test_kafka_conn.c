/* Unit tests for the connectivity tracker of common/nc_kafka.c, without a broker: UNKNOWN
 * before any probe, DOWN within a few seconds when nothing listens at the bootstrap address
 * (with the time of the first evidence), one "kafka unreachable" line and one librdkafka line
 * however many clients and probes fail, stop and restart.  The way back up needs a broker: test_981
 * covers it. */
#include "nc_test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nc_kafka.h"
#include "nc_log.h"
#include "nc_time.h"

/* A loopback port nothing listens on (bound then closed). */
static int closed_port(void)
{
        struct sockaddr_in sin = {.sin_family = AF_INET};
        socklen_t len = sizeof(sin);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port;

        assert_true(fd >= 0);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
        port = ntohs(sin.sin_port);
        close(fd);
        return port;
}

static void cfg_init(nc_config_t *cfg)
{
        char err[512], bootstrap[64];

        nc_config_defaults(cfg);
        snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%d", closed_port());
        assert_int_equal(nc_config_set_kafka(cfg, "bootstrap.servers", bootstrap, "test.conf:1",
                                             err, sizeof(err)),
                         0);
}

/* Waits up to TIMEOUT_MS for the tracker to say WANT; returns the time it took. */
static int64_t wait_state(nc_health_kafka_t want, int64_t timeout_ms)
{
        int64_t t0 = nc_time_now_ms();

        while (nc_kafka_conn_state(NULL) != want) {
                struct timespec ts = {0, 50 * 1000 * 1000};

                if (nc_time_now_ms() - t0 > timeout_ms)
                        fail_msg("tracker still in state %d after %lld ms",
                                 nc_kafka_conn_state(NULL), (long long)timeout_ms);
                nanosleep(&ts, NULL);
        }
        return nc_time_now_ms() - t0;
}

/* Counts the "kafka unreachable" lines nc_log writes to stderr (redirected to a file). */
static int count_in(const char *path, const char *needle)
{
        char buf[65536];
        FILE *f = fopen(path, "r");
        size_t n;
        int count = 0;
        const char *p;

        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        for (p = buf; (p = strstr(p, needle)); p++)
                count++;
        return count;
}

static void test_down_without_broker(void **state)
{
        char err[512], path[] = "/tmp/test_kafka_conn.XXXXXX";
        int64_t t0, since = 0, took;
        nc_config_t cfg;
        rd_kafka_t *a, *b;
        int fd, saved;

        (void)state;
        cfg_init(&cfg);
        assert_int_equal(nc_kafka_conn_state(NULL), NC_HEALTH_KAFKA_UNKNOWN);
        assert_int_equal(nc_kafka_broker_up(), 0);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        fflush(stderr);
        saved = dup(2);
        dup2(fd, 2);
        t0 = nc_time_now_ms();
        assert_int_equal(nc_kafka_conn_start(&cfg, err, sizeof(err)), 0);
        assert_int_equal(nc_kafka_conn_start(&cfg, err, sizeof(err)), 0); /* once per process */
        /* Two more clients failing to connect: still one line. */
        a = nc_kafka_producer_new(&cfg, NULL, err, sizeof(err));
        b = nc_kafka_producer_new(&cfg, NULL, err, sizeof(err));
        assert_non_null(a);
        assert_non_null(b);
        took = wait_state(NC_HEALTH_KAFKA_DOWN, 8000);
        assert_int_equal(nc_kafka_conn_state(&since), NC_HEALTH_KAFKA_DOWN);
        assert_true(since >= t0 && since <= t0 + took);
        assert_int_equal(nc_kafka_broker_up(), 0);
        sleep(3); /* more failed probes and reconnects */
        assert_int_equal(nc_kafka_conn_state(NULL), NC_HEALTH_KAFKA_DOWN);
        rd_kafka_destroy(a);
        rd_kafka_destroy(b);
        nc_kafka_conn_stop();
        nc_kafka_conn_stop(); /* idempotent */
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        close(fd);
        assert_int_equal(count_in(path, "msg=\"kafka unreachable\""), 1);
        assert_int_equal(count_in(path, "kafka reconnected"), 0);
        /* Three clients reconnecting for ~6 s: the first line of the burst only. */
        assert_int_equal(count_in(path, "component=librdkafka"), 1);
        unlink(path);
        nc_config_free(&cfg);
        fprintf(stderr, "down after %lld ms\n", (long long)took);
}

static void test_restart(void **state)
{
        char err[512];
        nc_config_t cfg;

        (void)state;
        cfg_init(&cfg);
        /* A fresh start begins UNKNOWN again, then finds the brokers away. */
        assert_int_equal(nc_kafka_conn_start(&cfg, err, sizeof(err)), 0);
        assert_int_not_equal(nc_kafka_conn_state(NULL), NC_HEALTH_KAFKA_UP);
        wait_state(NC_HEALTH_KAFKA_DOWN, 8000);
        nc_kafka_conn_stop();
        nc_config_free(&cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_down_without_broker),
            cmocka_unit_test(test_restart),
        };

        nc_log_init("test_kafka_conn", NC_LOG_INFO);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
