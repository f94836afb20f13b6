/* Unit tests for common/nc_metrics.c: Prometheus text exposition of counters, gauges and
 * histograms, label escaping, and updates from several threads. */
#include "nc_test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nc_log.h"
#include "nc_metrics.h"

static void assert_render(nc_metrics_t *r, const char *expect)
{
        char *text = nc_metrics_render(r);

        assert_non_null(text);
        assert_string_equal(text, expect);
        free(text);
}

static void test_counter(void **state)
{
        nc_metrics_t *r = nc_metrics_new();
        nc_metric_t *c = nc_metrics_counter(r, "noticecast_webhooks_total", "Webhook attempts.");

        (void)state;
        /* Registered but unused: only the header lines. */
        assert_render(r, "# HELP noticecast_webhooks_total Webhook attempts.\n"
                         "# TYPE noticecast_webhooks_total counter\n");
        nc_metrics_inc(c, "partner=\"pe\",outcome=\"ok\"", 1);
        nc_metrics_inc(c, "partner=\"pe\",outcome=\"error\"", 1);
        nc_metrics_inc(c, "partner=\"pe\",outcome=\"ok\"", 2);
        nc_metrics_inc(c, NULL, 0);
        /* Counters never go down. */
        nc_metrics_inc(c, "partner=\"pe\",outcome=\"ok\"", -5);
        nc_metrics_inc(c, "partner=\"pe\",outcome=\"ok\"", NAN);
        /* Registering the name again gives the same metric. */
        assert_ptr_equal(nc_metrics_counter(r, "noticecast_webhooks_total", "ignored"), c);
        nc_metrics_inc(c, "", 0.5);
        assert_render(r, "# HELP noticecast_webhooks_total Webhook attempts.\n"
                         "# TYPE noticecast_webhooks_total counter\n"
                         "noticecast_webhooks_total{partner=\"pe\",outcome=\"ok\"} 3\n"
                         "noticecast_webhooks_total{partner=\"pe\",outcome=\"error\"} 1\n"
                         "noticecast_webhooks_total 0.5\n");
        nc_metrics_free(r);
}

static void test_gauge(void **state)
{
        nc_metrics_t *r = nc_metrics_new();
        nc_metric_t *g = nc_metrics_gauge(r, "noticecast_inflight", "Requests in flight.");
        nc_metric_t *h = nc_metrics_gauge(r, "noticecast:odd_values", "Line one\nback\\slash");

        (void)state;
        nc_metrics_set(g, "partner=\"pe\"", 3);
        nc_metrics_inc(g, "partner=\"pe\"", -1);
        nc_metrics_inc(g, "partner=\"pf\"", -2.5);
        nc_metrics_set(h, "v=\"tenth\"", 0.1);
        nc_metrics_set(h, "v=\"third\"", 1.0 / 3);
        nc_metrics_set(h, "v=\"big\"", 1e21);
        nc_metrics_set(h, "v=\"inf\"", INFINITY);
        nc_metrics_set(h, "v=\"-inf\"", -INFINITY);
        nc_metrics_set(h, "v=\"nan\"", NAN);
        nc_metrics_set(h, "v=\"int\"", 1234567890123.0);
        assert_render(r, "# HELP noticecast_inflight Requests in flight.\n"
                         "# TYPE noticecast_inflight gauge\n"
                         "noticecast_inflight{partner=\"pe\"} 2\n"
                         "noticecast_inflight{partner=\"pf\"} -2.5\n"
                         "# HELP noticecast:odd_values Line one\\nback\\\\slash\n"
                         "# TYPE noticecast:odd_values gauge\n"
                         "noticecast:odd_values{v=\"tenth\"} 0.1\n"
                         "noticecast:odd_values{v=\"third\"} 0.33333333333333331\n"
                         "noticecast:odd_values{v=\"big\"} 1e+21\n"
                         "noticecast:odd_values{v=\"inf\"} +Inf\n"
                         "noticecast:odd_values{v=\"-inf\"} -Inf\n"
                         "noticecast:odd_values{v=\"nan\"} NaN\n"
                         "noticecast:odd_values{v=\"int\"} 1234567890123\n");
        nc_metrics_free(r);
}

static void test_histogram(void **state)
{
        static const double bounds[] = {0.125, 0.5, 1};
        nc_metrics_t *r = nc_metrics_new();
        nc_metric_t *h =
            nc_metrics_histogram(r, "noticecast_webhook_seconds", "Latency.", bounds, 3);
        nc_metric_t *d;

        (void)state;
        nc_metrics_observe(h, "partner=\"pe\"", 0.0625);
        nc_metrics_observe(h, "partner=\"pe\"", 0.125); /* bounds are inclusive (le) */
        nc_metrics_observe(h, "partner=\"pe\"", 0.25);
        nc_metrics_observe(h, "partner=\"pe\"", 2);
        nc_metrics_observe(h, NULL, 1);
        assert_render(r, "# HELP noticecast_webhook_seconds Latency.\n"
                         "# TYPE noticecast_webhook_seconds histogram\n"
                         "noticecast_webhook_seconds_bucket{partner=\"pe\",le=\"0.125\"} 2\n"
                         "noticecast_webhook_seconds_bucket{partner=\"pe\",le=\"0.5\"} 3\n"
                         "noticecast_webhook_seconds_bucket{partner=\"pe\",le=\"1\"} 3\n"
                         "noticecast_webhook_seconds_bucket{partner=\"pe\",le=\"+Inf\"} 4\n"
                         "noticecast_webhook_seconds_sum{partner=\"pe\"} 2.4375\n"
                         "noticecast_webhook_seconds_count{partner=\"pe\"} 4\n"
                         "noticecast_webhook_seconds_bucket{le=\"0.125\"} 0\n"
                         "noticecast_webhook_seconds_bucket{le=\"0.5\"} 0\n"
                         "noticecast_webhook_seconds_bucket{le=\"1\"} 1\n"
                         "noticecast_webhook_seconds_bucket{le=\"+Inf\"} 1\n"
                         "noticecast_webhook_seconds_sum 1\n"
                         "noticecast_webhook_seconds_count 1\n");
        nc_metrics_free(r);

        /* The stock latency buckets. */
        r = nc_metrics_new();
        d = nc_metrics_histogram(r, "lat", "", nc_metrics_latency_buckets,
                                 nc_metrics_latency_nbuckets);
        nc_metrics_observe(d, NULL, 0.004);
        nc_metrics_observe(d, NULL, 11);
        assert_render(r, "# HELP lat \n"
                         "# TYPE lat histogram\n"
                         "lat_bucket{le=\"0.005\"} 1\n"
                         "lat_bucket{le=\"0.01\"} 1\n"
                         "lat_bucket{le=\"0.025\"} 1\n"
                         "lat_bucket{le=\"0.05\"} 1\n"
                         "lat_bucket{le=\"0.1\"} 1\n"
                         "lat_bucket{le=\"0.25\"} 1\n"
                         "lat_bucket{le=\"0.5\"} 1\n"
                         "lat_bucket{le=\"1\"} 1\n"
                         "lat_bucket{le=\"2.5\"} 1\n"
                         "lat_bucket{le=\"5\"} 1\n"
                         "lat_bucket{le=\"10\"} 1\n"
                         "lat_bucket{le=\"+Inf\"} 2\n"
                         "lat_sum 11.004\n"
                         "lat_count 2\n");
        nc_metrics_free(r);
}

static void test_labels(void **state)
{
        char l[NC_METRICS_LABELS_SIZE], small[16];
        nc_metrics_t *r;
        nc_metric_t *c;

        (void)state;
        assert_int_equal(nc_metrics_labels(l, sizeof(l), NULL), 0);
        assert_string_equal(l, "");
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "partner", "pe", NULL), 0);
        assert_string_equal(l, "partner=\"pe\"");
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "path", "C:\\dir \"x\"\nend", "_k2", "",
                                           "k3", "ü", NULL),
                         0);
        assert_string_equal(l, "path=\"C:\\\\dir \\\"x\\\"\\nend\",_k2=\"\",k3=\"ü\"");

        /* Refused: bad label names, a fourth pair, a missing value, no room. */
        strcpy(l, "junk");
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "1a", "x", NULL), -1);
        assert_string_equal(l, "");
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "a-b", "x", NULL), -1);
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "a:b", "x", NULL), -1);
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "", "x", NULL), -1);
        assert_int_equal(
            nc_metrics_labels(l, sizeof(l), "a", "1", "b", "2", "c", "3", "d", "4", NULL), -1);
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "a", NULL, NULL), -1);
        /* a="0123456789" is 14 characters: 15 bytes fit, 14 do not. */
        assert_int_equal(nc_metrics_labels(small, 15, "a", "0123456789", NULL), 0);
        assert_string_equal(small, "a=\"0123456789\"");
        assert_int_equal(nc_metrics_labels(small, 14, "a", "0123456789", NULL), -1);
        assert_string_equal(small, "");
        assert_int_equal(nc_metrics_labels(small, 15, "a", "012345678\"", NULL), -1);
        assert_int_equal(nc_metrics_labels(small, 16, "a", "012345678\"", NULL), 0);
        assert_string_equal(small, "a=\"012345678\\\"\"");

        /* Escaped strings go through to the output untouched; malformed ones are dropped. */
        r = nc_metrics_new();
        c = nc_metrics_counter(r, "x_total", "X.");
        assert_int_equal(nc_metrics_labels(l, sizeof(l), "v", "a\"b\\c\nd", NULL), 0);
        nc_metrics_inc(c, l, 1);
        nc_metrics_inc(c, "v=unquoted", 1);
        nc_metrics_inc(c, "v=\"open", 1);
        nc_metrics_inc(c, "v=\"raw\nnewline\"", 1);
        nc_metrics_inc(c, "v=\"bad\\escape\"", 1);
        nc_metrics_inc(c, "v=\"trailing\\\"", 1);
        nc_metrics_inc(c, "v=\"x\",", 1);
        nc_metrics_inc(c, "v=\"x\"w=\"y\"", 1);
        nc_metrics_inc(c, "a=\"1\",b=\"2\",c=\"3\",d=\"4\"", 1);
        nc_metrics_inc(c, "{v=\"x\"}", 1);
        assert_render(r, "# HELP x_total X.\n"
                         "# TYPE x_total counter\n"
                         "x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
        nc_metrics_free(r);

        /* "le" belongs to the histogram itself. */
        r = nc_metrics_new();
        c = nc_metrics_histogram(r, "h", "H.", nc_metrics_latency_buckets, 1);
        nc_metrics_observe(c, "le=\"1\"", 1);
        nc_metrics_observe(c, "a=\"1\",le=\"1\"", 1);
        assert_render(r, "# HELP h H.\n# TYPE h histogram\n");
        nc_metrics_free(r);
}

static void test_series_cap(void **state)
{
        nc_metrics_t *r = nc_metrics_new();
        nc_metric_t *c = nc_metrics_counter(r, "many_total", "Many.");
        char l[64], *text, *p;
        int i, lines = 0;

        (void)state;
        for (i = 0; i < NC_METRICS_MAX_SERIES + 50; i++) {
                snprintf(l, sizeof(l), "id=\"%d\"", i);
                nc_metrics_inc(c, l, 1);
                nc_metrics_inc(c, l, 1);
        }
        /* Existing series still count once the cap is reached. */
        nc_metrics_inc(c, "id=\"7\"", 1);
        text = nc_metrics_render(r);
        assert_non_null(text);
        for (p = text; (p = strchr(p, '\n')) != NULL; p++)
                lines++;
        assert_int_equal(lines, 2 + NC_METRICS_MAX_SERIES);
        assert_non_null(strstr(text, "\nmany_total{id=\"7\"} 3\n"));
        assert_non_null(strstr(text, "\nmany_total{id=\"1999\"} 2\n"));
        assert_null(strstr(text, "id=\"2000\""));
        free(text);
        nc_metrics_free(r);
}

#define THREAD_N 100000

struct worker {
        nc_metric_t *c, *h;
        const char *labels;
};

static void *work(void *arg)
{
        const struct worker *w = arg;
        int i;

        for (i = 0; i < THREAD_N; i++) {
                nc_metrics_inc(w->c, "shared=\"yes\"", 1);
                nc_metrics_inc(w->c, w->labels, 1);
                nc_metrics_observe(w->h, NULL, 0.5);
        }
        return NULL;
}

static void test_threads(void **state)
{
        nc_metrics_t *r = nc_metrics_new();
        struct worker w[2];
        pthread_t t[2];
        char *text;
        int i;

        (void)state;
        for (i = 0; i < 2; i++) {
                w[i].c = nc_metrics_counter(r, "ops_total", "Operations.");
                w[i].h =
                    nc_metrics_histogram(r, "op_seconds", "Op latency.", nc_metrics_latency_buckets,
                                         nc_metrics_latency_nbuckets);
                w[i].labels = i ? "thread=\"1\"" : "thread=\"0\"";
        }
        for (i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
        /* Render concurrently with the updates, as the HTTP thread does. */
        for (i = 0; i < 20; i++) {
                text = nc_metrics_render(r);
                assert_non_null(text);
                free(text);
        }
        for (i = 0; i < 2; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        text = nc_metrics_render(r);
        assert_non_null(text);
        assert_non_null(strstr(text, "\nops_total{shared=\"yes\"} 200000\n"));
        assert_non_null(strstr(text, "\nops_total{thread=\"0\"} 100000\n"));
        assert_non_null(strstr(text, "\nops_total{thread=\"1\"} 100000\n"));
        assert_non_null(strstr(text, "\nop_seconds_bucket{le=\"0.25\"} 0\n"));
        assert_non_null(strstr(text, "\nop_seconds_bucket{le=\"0.5\"} 200000\n"));
        assert_non_null(strstr(text, "\nop_seconds_bucket{le=\"+Inf\"} 200000\n"));
        assert_non_null(strstr(text, "\nop_seconds_sum 100000\n"));
        assert_non_null(strstr(text, "\nop_seconds_count 200000\n"));
        free(text);
        nc_metrics_free(r);
}

static void test_touch(void **state)
{
        nc_metrics_t *r = nc_metrics_new();
        const double b[] = {1, 2};
        nc_metric_t *h = nc_metrics_histogram(r, "t_seconds", "T.", b, 2);
        nc_metric_t *c = nc_metrics_counter(r, "t_total", "T.");

        (void)state;
        nc_metrics_touch(h, NULL);
        nc_metrics_touch(c, "k=\"v\"");
        nc_metrics_inc(c, "k=\"v\"", 2);
        nc_metrics_touch(c, "k=\"v\""); /* an existing series keeps its value */
        assert_render(r, "# HELP t_seconds T.\n"
                         "# TYPE t_seconds histogram\n"
                         "t_seconds_bucket{le=\"1\"} 0\n"
                         "t_seconds_bucket{le=\"2\"} 0\n"
                         "t_seconds_bucket{le=\"+Inf\"} 0\n"
                         "t_seconds_sum 0\n"
                         "t_seconds_count 0\n"
                         "# HELP t_total T.\n"
                         "# TYPE t_total counter\n"
                         "t_total{k=\"v\"} 2\n");
        nc_metrics_free(r);
}

static void count_renders(nc_metrics_t *r, void *opaque)
{
        nc_metrics_inc(nc_metrics_counter(r, "renders_total", "Renders."), NULL, 1);
        (*(int *)opaque)++;
}

/* The value of sample NAME (a line "NAME VALUE") in TEXT; NAN if absent. */
static double sample(const char *text, const char *name)
{
        const char *p = text;
        size_t n = strlen(name);

        while ((p = strstr(p, name))) {
                if ((p == text || p[-1] == '\n') && p[n] == ' ')
                        return strtod(p + n + 1, NULL);
                p += n;
        }
        return NAN;
}

static void test_standard(void **state)
{
        nc_metrics_t *r = nc_metrics_new();
        int calls = 0;
        char *text;

        (void)state;
        nc_metrics_standard(r, "noticecast-test", "1.2.3");
        nc_metrics_on_render(r, count_renders, &calls);
        text = nc_metrics_render(r);
        assert_non_null(text);
        assert_int_equal(calls, 1);
        assert_non_null(strstr(
            text, "\nnoticecast_build_info{program=\"noticecast-test\",version=\"1.2.3\"} 1\n"));
        /* The collector ran before the registry was rendered: its update is in this text. */
        assert_true(sample(text, "renders_total") == 1);
        assert_true(sample(text, "process_resident_memory_bytes") > 0);
        assert_true(sample(text, "process_virtual_memory_bytes") >=
                    sample(text, "process_resident_memory_bytes"));
        assert_true(sample(text, "process_open_fds") >= 3);
        assert_true(sample(text, "process_max_fds") >= sample(text, "process_open_fds"));
        assert_true(sample(text, "process_cpu_seconds_total") >= 0);
        /* Started in the last hour (and not in the future). */
        assert_true(sample(text, "process_start_time_seconds") > (double)time(NULL) - 3600);
        assert_true(sample(text, "process_start_time_seconds") <= (double)time(NULL) + 1);
        assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
        free(text);
        /* Called again (a reload): nothing registered twice. */
        nc_metrics_standard(r, "noticecast-test", "1.2.3");
        text = nc_metrics_render(r);
        assert_int_equal(calls, 2);
        assert_non_null(strstr(text, "\nrenders_total 2\n"));
        assert_null(strstr(strstr(text, "# TYPE process_open_fds") + 1, "# TYPE process_open_fds"));
        free(text);
        nc_metrics_free(r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_counter),    cmocka_unit_test(test_gauge),
            cmocka_unit_test(test_histogram),  cmocka_unit_test(test_labels),
            cmocka_unit_test(test_series_cap), cmocka_unit_test(test_threads),
            cmocka_unit_test(test_touch),      cmocka_unit_test(test_standard),
        };

        /* Dropped updates warn on stderr; keep the test output readable. */
        nc_log_init("test_metrics", NC_LOG_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
