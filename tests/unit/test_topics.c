/* Unit tests for common/nc_topics.c: every topic kind, its name, partitions, policy and
 * retention, from a configuration (built-in defaults plus fields set here). */
#include "nc_test.h"

#include <string.h>

#include "nc_topics.h"

#define DAY (24LL * 3600 * 1000)

static void cfg_init(nc_config_t *cfg)
{
        nc_config_defaults(cfg);
        nc_strlist_clear(&cfg->categories);
        nc_strlist_split(&cfg->categories, "news, alerts");
}

static const nc_topic_spec_t *find(const nc_topic_spec_t *specs, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(specs[i].name, name))
                        return &specs[i];
        fail_msg("no topic %s", name);
        return NULL;
}

static void test_every_kind_defaults(void **state)
{
        nc_topic_spec_t specs[32];
        const nc_topic_spec_t *t;
        nc_config_t cfg;
        size_t n;

        (void)state;
        cfg_init(&cfg);
        /* 2 notices + subscribers + dlq + deliveries + 6 distinct retry steps + plan + jobs */
        n = nc_topics_specs(&cfg, NC_TOPICS_ALL, specs, 32);
        assert_int_equal(n, 13);
        assert_string_equal(specs[0].name, "noticecast.notices.news");
        assert_int_equal(specs[0].kind, NC_TOPIC_NOTICES);
        assert_int_equal(specs[0].partitions, 3);
        assert_int_equal(specs[0].retention_ms, 30 * DAY);
        assert_false(specs[0].compact);
        assert_string_equal(specs[1].name, "noticecast.notices.alerts");
        t = find(specs, n, "noticecast.subscribers");
        assert_true(t->compact);
        assert_int_equal(t->retention_ms, 0);
        assert_string_equal(nc_topics_policy(t), "compact");
        assert_int_equal(find(specs, n, "noticecast.dlq")->retention_ms, -1);
        assert_int_equal(find(specs, n, "noticecast.deliveries")->retention_ms, 90 * DAY);
        t = find(specs, n, "noticecast.webhooks.retry.10h");
        assert_int_equal(t->kind, NC_TOPIC_WEBHOOKS_RETRY);
        assert_int_equal(t->retention_ms, 7 * DAY);
        find(specs, n, "noticecast.webhooks.retry.5s");
        t = find(specs, n, "noticecast.mailer.plan");
        assert_int_equal(t->partitions, 1);
        assert_true(t->compact);
        t = find(specs, n, "noticecast.mailer.jobs");
        assert_int_equal(t->retention_ms, 7 * DAY);
        assert_string_equal(nc_topics_policy(t), "delete");
        nc_config_free(&cfg);
}

static void test_per_kind_settings(void **state)
{
        nc_topic_spec_t specs[32];
        nc_config_t cfg;
        size_t n;

        (void)state;
        cfg_init(&cfg);
        cfg.partitions = 5;
        cfg.topic[NC_TOPIC_NOTICES].partitions = 12;
        cfg.topic[NC_TOPIC_DELIVERIES].retention_ms = 2 * DAY;
        cfg.topic[NC_TOPIC_MAILER_PLAN].partitions = 8; /* never: the planner's election */
        cfg.topic[NC_TOPIC_SUBSCRIBERS].retention_ms = DAY;
        n = nc_topics_specs(&cfg, NC_TOPICS_ALL, specs, 32);
        assert_int_equal(find(specs, n, "noticecast.notices.alerts")->partitions, 12);
        assert_int_equal(find(specs, n, "noticecast.dlq")->partitions, 5);
        assert_int_equal(find(specs, n, "noticecast.deliveries")->retention_ms, 2 * DAY);
        assert_int_equal(find(specs, n, "noticecast.mailer.plan")->partitions, 1);
        assert_int_equal(find(specs, n, "noticecast.subscribers")->retention_ms, 0);
        nc_config_free(&cfg);
}

/* One retry tier per distinct step, named as the daemon names it. */
static void test_retry_tiers(void **state)
{
        nc_topic_spec_t specs[8];
        nc_config_t cfg;
        char name[256];

        (void)state;
        cfg_init(&cfg);
        free(cfg.topic_prefix);
        cfg.topic_prefix = nc_xstrdup("gov.");
        cfg.webhooks.retry_n = 4;
        cfg.webhooks.retry_ms[0] = 1000;
        cfg.webhooks.retry_ms[1] = 1000;
        cfg.webhooks.retry_ms[2] = 90000;
        cfg.webhooks.retry_ms[3] = 1000;
        assert_int_equal(nc_topics_specs(&cfg, NC_TOPICS_KIND(NC_TOPIC_WEBHOOKS_RETRY), specs, 8),
                         2);
        assert_string_equal(specs[0].name, "gov.webhooks.retry.1s");
        assert_string_equal(specs[1].name, "gov.webhooks.retry.90s");
        nc_topics_retry_name(&cfg, 90000, name, sizeof(name));
        assert_string_equal(name, "gov.webhooks.retry.90s");
        nc_topics_name(&cfg, NC_TOPIC_MAILER_JOBS, name, sizeof(name));
        assert_string_equal(name, "gov.mailer.jobs");
        nc_config_free(&cfg);
}

/* What each daemon checks for, and a count to allocate by. */
static void test_daemon_sets_and_count(void **state)
{
        nc_topic_spec_t specs[32];
        nc_config_t cfg;
        size_t n, i;

        (void)state;
        cfg_init(&cfg);
        n = nc_topics_specs(&cfg, NC_TOPICS_WEBHOOKS, specs, 32);
        assert_int_equal(n, 2 + 1 + 1 + 6);
        for (i = 0; i < n; i++) {
                assert_int_not_equal(specs[i].kind, NC_TOPIC_SUBSCRIBERS);
                assert_true(specs[i].kind != NC_TOPIC_MAILER_PLAN &&
                            specs[i].kind != NC_TOPIC_MAILER_JOBS);
        }
        n = nc_topics_specs(&cfg, NC_TOPICS_MAILER, specs, 32);
        assert_int_equal(n, 2 + 1 + 1 + 1 + 1 + 1);
        for (i = 0; i < n; i++)
                assert_int_not_equal(specs[i].kind, NC_TOPIC_WEBHOOKS_RETRY);
        assert_true(nc_topics_specs(&cfg, NC_TOPICS_ALL, NULL, 0) >= 13);
        assert_true(nc_topics_specs(&cfg, NC_TOPICS_ALL, specs, 3) >= 13);
        assert_string_equal(specs[2].name, "noticecast.subscribers");
        nc_config_free(&cfg);
}

static void test_names_and_formats(void **state)
{
        char buf[32];

        (void)state;
        assert_string_equal(nc_topics_kind_name(NC_TOPIC_WEBHOOKS_RETRY), "webhooks.retry");
        assert_string_equal(nc_topics_kind_name(NC_TOPIC_KINDS), "?");
        nc_topics_retention_format(0, buf, sizeof(buf));
        assert_string_equal(buf, "-");
        nc_topics_retention_format(-1, buf, sizeof(buf));
        assert_string_equal(buf, "forever");
        nc_topics_retention_format(30 * DAY, buf, sizeof(buf));
        assert_string_equal(buf, "30d");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_every_kind_defaults),
            cmocka_unit_test(test_per_kind_settings),
            cmocka_unit_test(test_retry_tiers),
            cmocka_unit_test(test_daemon_sets_and_count),
            cmocka_unit_test(test_names_and_formats),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
