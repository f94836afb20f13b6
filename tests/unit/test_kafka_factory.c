/* Unit tests for the Kafka client factory of common/nc_kafka.c: every role builds without a
 * broker, [kafka] and -X apply, a bad value fails naming its property, a role's required
 * settings cannot be changed by the operator, defaults yield to the operator; the rebalance
 * helper and the notice-topic regex. */
#include "nc_test.h"

#include <stdlib.h>
#include <string.h>

#include "nc_kafka.h"

static void cfg_init(nc_config_t *cfg)
{
        char err[512];

        nc_config_defaults(cfg);
        /* No broker: nothing may try to reach one, and librdkafka stays quiet. */
        assert_int_equal(
            nc_config_set_kafka(cfg, "log_level", "0", "test.conf:1", err, sizeof(err)), 0);
}

static void set_x(nc_config_t *cfg, const char *key, const char *value)
{
        char err[512];

        assert_int_equal(nc_config_set_kafka(cfg, key, value, "-X", err, sizeof(err)), 0);
}

static void assert_prop(rd_kafka_t *rk, const char *key, const char *want)
{
        char buf[256];
        size_t n = sizeof(buf);

        assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(rk), key, buf, &n), RD_KAFKA_CONF_OK);
        assert_string_equal(buf, want);
}

/* Never subscribed: a close would wait for a group coordinator that is not there. */
static void consumer_destroy(rd_kafka_t *rk)
{
        rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)m;
        (void)opaque;
}

static void test_roles_build(void **state)
{
        const nc_kafka_setting_t set[] = {{"fetch.wait.max.ms", "100"}, {NULL, NULL}};
        nc_config_t cfg;
        char err[512] = "";
        rd_kafka_t *rk;

        (void)state;
        cfg_init(&cfg);
        set_x(&cfg, "client.id", "from-x");

        rk = nc_kafka_txn_producer_new(
            &cfg, &(nc_kafka_opts_t){.transaction_timeout_ms = 60000, .dr_msg_cb = dr}, err,
            sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "enable.idempotence", "true");
        assert_prop(rk, "transaction.timeout.ms", "60000");
        assert_prop(rk, "client.id", "from-x"); /* -X applies */
        {
                char tid[128];
                size_t n = sizeof(tid);

                assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(rk), "transactional.id", tid, &n),
                                 RD_KAFKA_CONF_OK);
                assert_true(!strncmp(tid, "noticecast-cli-", 15));
        }
        rd_kafka_destroy(rk);

        rk = nc_kafka_txn_producer_new(&cfg, &(nc_kafka_opts_t){.transactional_id = "g-h-1"}, err,
                                       sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "transactional.id", "g-h-1");
        rd_kafka_destroy(rk);

        rk = nc_kafka_idempotent_producer_new(&cfg, NULL, err, sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "enable.idempotence", "true");
        assert_prop(rk, "acks", "-1");
        rd_kafka_destroy(rk);

        rk = nc_kafka_producer_new(
            &cfg,
            &(nc_kafka_opts_t){.set = (const nc_kafka_setting_t[]){{"enable.idempotence", "false"},
                                                                   {"linger.ms", "0"},
                                                                   {NULL, NULL}}},
            err, sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "enable.idempotence", "false");
        assert_prop(rk, "linger.ms", "0");
        rd_kafka_destroy(rk);

        rk = nc_kafka_group_consumer_new(
            &cfg,
            &(nc_kafka_opts_t){.group_id = "g.senders", .commit_interval_ms = 500, .set = set}, err,
            sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "group.id", "g.senders");
        assert_prop(rk, "enable.auto.offset.store", "false");
        assert_prop(rk, "enable.auto.commit", "true");
        assert_prop(rk, "auto.commit.interval.ms", "500");
        assert_prop(rk, "isolation.level", "read_committed");
        assert_prop(rk, "auto.offset.reset", "smallest");
        assert_prop(rk, "fetch.wait.max.ms", "100");
        consumer_destroy(rk);

        /* Offsets committed by the caller (its transactions): no automatic commit. */
        rk = nc_kafka_group_consumer_new(&cfg, &(nc_kafka_opts_t){.group_id = "g.planner"}, err,
                                         sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "enable.auto.commit", "false");
        consumer_destroy(rk);

        rk = nc_kafka_reader_new(&cfg, &(nc_kafka_opts_t){.partition_eof = 1}, err, sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "group.id", "noticecast-reader");
        assert_prop(rk, "enable.auto.commit", "false");
        assert_prop(rk, "enable.partition.eof", "true");
        assert_prop(rk, "isolation.level", "read_committed");
        consumer_destroy(rk);

        rk = nc_kafka_reader_new(&cfg, &(nc_kafka_opts_t){.read_uncommitted = 1}, err, sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "isolation.level", "read_uncommitted");
        consumer_destroy(rk);
        nc_config_free(&cfg);
}

/* A value librdkafka refuses, whether it came from [kafka]/-X or from the daemon. */
static void test_bad_values(void **state)
{
        nc_config_t cfg;
        char err[512] = "";
        size_t i;

        (void)state;
        cfg_init(&cfg);
        /* nc_config_set_kafka() checks -X already; a value that got past it (an older
         * librdkafka's probe, a hand-built config) is caught again here, with its origin. */
        set_x(&cfg, "queue.buffering.max.messages", "1000");
        for (i = 0; i < cfg.kafka_n; i++)
                if (!strcmp(cfg.kafka[i].key, "queue.buffering.max.messages")) {
                        free(cfg.kafka[i].value);
                        cfg.kafka[i].value = strdup("many");
                }
        assert_null(nc_kafka_producer_new(&cfg, NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "-X"));
        assert_non_null(strstr(err, "queue.buffering.max.messages"));
        nc_config_free(&cfg);

        cfg_init(&cfg);
        err[0] = '\0';
        assert_null(nc_kafka_group_consumer_new(
            &cfg,
            &(nc_kafka_opts_t){
                .name = "planner consumer",
                .group_id = "g",
                .set = (const nc_kafka_setting_t[]){{"fetch.wait.max.ms", "soon"}, {NULL, NULL}}},
            err, sizeof(err)));
        assert_non_null(strstr(err, "planner consumer"));
        assert_non_null(strstr(err, "fetch.wait.max.ms"));

        err[0] = '\0';
        assert_null(nc_kafka_producer_new(
            &cfg,
            &(nc_kafka_opts_t){.defaults =
                                   (const nc_kafka_setting_t[]){{"linger.ms", "-5"}, {NULL, NULL}}},
            err, sizeof(err)));
        assert_non_null(strstr(err, "linger.ms"));

        err[0] = '\0';
        assert_null(nc_kafka_group_consumer_new(&cfg, NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "group.id"));
        nc_config_free(&cfg);
}

/* What a role needs is not the operator's to change: refused, naming property and origin. */
static void test_required_refused(void **state)
{
        static const struct {
                const char *key, *value;
                int role; /* 0 idempotent, 1 transactional, 2 group consumer, 3 reader */
        } cases[] = {
            {"acks", "0", 0},
            {"request.required.acks", "1", 0},
            {"enable.idempotence", "false", 0},
            {"acks", "1", 1},
            {"enable.auto.offset.store", "true", 2},
            {"isolation.level", "read_uncommitted", 2},
            {"enable.auto.commit", "true", 3},
        };
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                nc_kafka_opts_t o = {.group_id = "g"};
                nc_config_t cfg;
                char err[512] = "";
                rd_kafka_t *rk = NULL;

                cfg_init(&cfg);
                set_x(&cfg, cases[i].key, cases[i].value);
                switch (cases[i].role) {
                case 0:
                        rk = nc_kafka_idempotent_producer_new(&cfg, &o, err, sizeof(err));
                        break;
                case 1:
                        rk = nc_kafka_txn_producer_new(&cfg, &o, err, sizeof(err));
                        break;
                case 2:
                        rk = nc_kafka_group_consumer_new(&cfg, &o, err, sizeof(err));
                        break;
                case 3:
                        rk = nc_kafka_reader_new(&cfg, &o, err, sizeof(err));
                        break;
                }
                if (rk)
                        fail_msg("%s=%s accepted", cases[i].key, cases[i].value);
                assert_non_null(strstr(err, cases[i].key));
                assert_non_null(strstr(err, "-X"));
                nc_config_free(&cfg);
        }
}

/* The operator may repeat a required value, in any spelling librdkafka accepts. */
static void test_required_same_value(void **state)
{
        nc_config_t cfg;
        char err[512] = "";
        rd_kafka_t *rk;

        (void)state;
        cfg_init(&cfg);
        set_x(&cfg, "acks", "-1");
        set_x(&cfg, "enable.idempotence", "true");
        rk = nc_kafka_idempotent_producer_new(&cfg, NULL, err, sizeof(err));
        if (!rk)
                fail_msg("%s", err);
        rd_kafka_destroy(rk);
        nc_config_free(&cfg);
}

/* A daemon's defaults yield to [kafka]; its settings win over it (as before the factory). */
static void test_defaults_and_settings(void **state)
{
        nc_kafka_opts_t o = {
            .set = (const nc_kafka_setting_t[]){{"fetch.wait.max.ms", "100"}, {NULL, NULL}},
            .defaults = (const nc_kafka_setting_t[]){{"linger.ms", "50"},
                                                     {"compression.type", "lz4"},
                                                     {NULL, NULL}},
        };
        nc_config_t cfg;
        char err[512] = "";
        rd_kafka_t *rk;

        (void)state;
        cfg_init(&cfg);
        rk = nc_kafka_idempotent_producer_new(&cfg, &o, err, sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "linger.ms", "50");
        assert_prop(rk, "compression.type", "lz4");
        rd_kafka_destroy(rk);

        set_x(&cfg, "queue.buffering.max.ms", "7"); /* linger.ms under its other name */
        set_x(&cfg, "compression.codec", "zstd");
        set_x(&cfg, "fetch.wait.max.ms", "900");
        rk = nc_kafka_idempotent_producer_new(&cfg, &o, err, sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "linger.ms", "7");
        assert_prop(rk, "compression.type", "zstd");
        assert_prop(rk, "fetch.wait.max.ms", "100");
        rd_kafka_destroy(rk);

        /* The reader's group.id only satisfies librdkafka: the operator's is kept. */
        set_x(&cfg, "group.id", "ops-reader");
        rk = nc_kafka_reader_new(&cfg, &(nc_kafka_opts_t){.group_id = "mine"}, err, sizeof(err));
        assert_non_null(rk);
        assert_prop(rk, "group.id", "ops-reader");
        consumer_destroy(rk);
        nc_config_free(&cfg);
}

static char calls[64];

static void hook_assigning(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        (void)rk;
        assert_ptr_equal(opaque, calls);
        strcat(calls, "a");
        parts->elems[0].offset = 5; /* may set start offsets */
}

static void hook_assigned(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        rd_kafka_topic_partition_list_t *now = NULL;

        (void)parts;
        (void)opaque;
        assert_int_equal(rd_kafka_assignment(rk, &now), 0);
        strcat(calls, now->cnt == 1 ? "A" : "?");
        rd_kafka_topic_partition_list_destroy(now);
}

static void hook_revoking(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        rd_kafka_topic_partition_list_t *now = NULL;

        (void)parts;
        (void)opaque;
        assert_int_equal(rd_kafka_assignment(rk, &now), 0);
        strcat(calls, now->cnt == 1 ? "r" : "?"); /* still assigned */
        rd_kafka_topic_partition_list_destroy(now);
}

static void test_rebalance(void **state)
{
        nc_track_t *tracks = NULL, *t;
        nc_kafka_rebalance_t rb = {hook_assigning, hook_assigned, hook_revoking, &tracks, calls};
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1), *now;
        nc_config_t cfg;
        char err[512] = "";
        rd_kafka_t *rk;

        (void)state;
        cfg_init(&cfg);
        rk = nc_kafka_group_consumer_new(
            &cfg, &(nc_kafka_opts_t){.group_id = "g", .rebalance = &rb}, err, sizeof(err));
        assert_non_null(rk);
        assert_ptr_equal(rd_kafka_opaque(rk), &rb);
        rd_kafka_topic_partition_list_add(parts, "n", 0);
        t = nc_track_get(&tracks, "n", 0, sizeof(*t), NULL);
        nc_kafka_rebalance_cb(rk, RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, parts, &rb);
        nc_kafka_rebalance_cb(rk, RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS, parts, &rb);
        assert_string_equal(calls, "aAr");
        assert_true(t->revoked);
        assert_int_equal(rd_kafka_assignment(rk, &now), 0);
        assert_int_equal(now->cnt, 0);
        rd_kafka_topic_partition_list_destroy(now);
        rd_kafka_topic_partition_list_destroy(parts);
        nc_tracks_gc(&tracks, NULL, NULL);
        assert_null(tracks);
        consumer_destroy(rk);
        nc_config_free(&cfg);
}

static void test_notice_regex(void **state)
{
        nc_config_t cfg;
        char buf[128];

        (void)state;
        nc_config_defaults(&cfg);
        free(cfg.topic_prefix);
        cfg.topic_prefix = strdup("acme.prod+1.");
        assert_int_equal(nc_kafka_notice_regex(&cfg, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "^acme\\.prod\\+1\\.notices\\..+");
        assert_int_equal(nc_kafka_notice_regex(&cfg, buf, 10), -1);
        nc_config_free(&cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_roles_build),
            cmocka_unit_test(test_bad_values),
            cmocka_unit_test(test_required_refused),
            cmocka_unit_test(test_required_same_value),
            cmocka_unit_test(test_defaults_and_settings),
            cmocka_unit_test(test_rebalance),
            cmocka_unit_test(test_notice_regex),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
