/* Unit tests for common/nc_acl.c: each role's ACLs under a configuration (exact tables),
 * literal versus prefixed names, the [kafka] group.id / transactional.id overrides, no
 * duplicates, Create for the admin role only, the names of the enums, and the message of an
 * authorization error. */
#include "nc_test.h"

#include <string.h>
#include <unistd.h>

#include "nc_acl.h"

#define MAX 128

static void load(nc_config_t *cfg, const char *text)
{
        char path[] = "/tmp/nc-test-acl-XXXXXX", err[1024];
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        if (nc_config_load(cfg, path, 1, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        unlink(path);
}

static const char base[] = "[noticecast]\n"
                           "topic_prefix = p.\n"
                           "categories = news, alerts\n"
                           "[kafka]\n"
                           "bootstrap.servers = 127.0.0.1:9\n"
                           "[webhooks]\n"
                           "group_id = wg\n"
                           "retry_schedule = 5s, 5m, 5m\n"
                           "[mailer]\n"
                           "group_id = mg\n";

/* "OP RESOURCE PATTERN NAME" per ACL, one per line. */
static void render(const nc_acl_t *v, int n, char *buf, size_t size)
{
        size_t o = 0;
        int i;

        buf[0] = '\0';
        for (i = 0; i < n && o < size; i++)
                o += (size_t)snprintf(buf + o, size - o, "%s %s %s %s\n", nc_acl_op_name(v[i].op),
                                      nc_acl_resource_name(v[i].resource),
                                      nc_acl_pattern_name(v[i].pattern), v[i].name);
}

static void check_role(const char *conf, nc_acl_role_t role, const char *want)
{
        nc_config_t cfg;
        nc_acl_t v[MAX];
        char err[256], got[8192];
        int n;

        load(&cfg, conf);
        n = nc_acl_list(&cfg, role, v, MAX, err, sizeof(err));
        if (n < 0)
                fail_msg("%s", err);
        render(v, n, got, sizeof(got));
        assert_string_equal(got, want);
        nc_config_free(&cfg);
}

/* The CLI's topics other than the notice topics (under base's prefix and retry schedule). */
#define CLI_TOPICS                                                                                 \
        "WRITE TOPIC LITERAL p.subscribers\n"                                                      \
        "READ TOPIC LITERAL p.subscribers\n"                                                       \
        "READ TOPIC LITERAL p.dlq\n"                                                               \
        "READ TOPIC LITERAL p.deliveries\n"                                                        \
        "WRITE TOPIC LITERAL p.mailer.jobs\n"                                                      \
        "WRITE TOPIC LITERAL p.webhooks.retry.5s\n"

static void test_cli(void **state)
{
        (void)state;
        check_role(base, NC_ACL_ROLE_CLI,
                   "WRITE TOPIC LITERAL p.notices.news\n"
                   "WRITE TOPIC LITERAL p.notices.alerts\n" CLI_TOPICS
                   "DESCRIBE GROUP LITERAL noticecast-reader\n"
                   "WRITE TRANSACTIONAL_ID PREFIXED noticecast-cli-\n");
}

/* A step given twice is one retry tier: one ACL each. */
static void test_webhooks(void **state)
{
        (void)state;
        check_role(base, NC_ACL_ROLE_WEBHOOKS,
                   "READ TOPIC LITERAL p.notices.news\n"
                   "READ TOPIC LITERAL p.notices.alerts\n"
                   "READ TOPIC LITERAL p.webhooks.retry.5s\n"
                   "READ TOPIC LITERAL p.webhooks.retry.5m\n"
                   "WRITE TOPIC LITERAL p.webhooks.retry.5s\n"
                   "WRITE TOPIC LITERAL p.webhooks.retry.5m\n"
                   "READ TOPIC LITERAL p.dlq\n"
                   "WRITE TOPIC LITERAL p.dlq\n"
                   "READ TOPIC LITERAL p.deliveries\n"
                   "WRITE TOPIC LITERAL p.deliveries\n"
                   "READ GROUP LITERAL wg\n"
                   "READ GROUP PREFIXED wg.\n"
                   "IDEMPOTENT_WRITE CLUSTER LITERAL kafka-cluster\n");
}

static void test_mailer(void **state)
{
        (void)state;
        check_role(base, NC_ACL_ROLE_MAILER,
                   "READ TOPIC LITERAL p.notices.news\n"
                   "READ TOPIC LITERAL p.notices.alerts\n"
                   "READ TOPIC LITERAL p.subscribers\n"
                   "WRITE TOPIC LITERAL p.subscribers\n"
                   "READ TOPIC LITERAL p.mailer.jobs\n"
                   "WRITE TOPIC LITERAL p.mailer.jobs\n"
                   "READ TOPIC LITERAL p.mailer.plan\n"
                   "WRITE TOPIC LITERAL p.mailer.plan\n"
                   "READ TOPIC LITERAL p.deliveries\n"
                   "WRITE TOPIC LITERAL p.deliveries\n"
                   "WRITE TOPIC LITERAL p.dlq\n"
                   "READ GROUP PREFIXED mg.\n"
                   "DESCRIBE GROUP LITERAL noticecast-mailer-view\n"
                   "DESCRIBE GROUP LITERAL noticecast-reader\n"
                   "WRITE TRANSACTIONAL_ID PREFIXED mg.planner-\n"
                   "IDEMPOTENT_WRITE CLUSTER LITERAL kafka-cluster\n");
}

static void test_inbound(void **state)
{
        (void)state;
        check_role(base, NC_ACL_ROLE_INBOUND,
                   "WRITE TOPIC LITERAL p.deliveries\nWRITE TOPIC LITERAL p.dlq\n");
}

static void test_admin(void **state)
{
        (void)state;
        check_role(base, NC_ACL_ROLE_ADMIN, "CREATE TOPIC PREFIXED p.\n");
}

/* No categories (not something a file can say today; the policy still covers it): every
 * notice topic, present and future, by prefix. */
static void test_all_categories_prefixed(void **state)
{
        nc_config_t cfg;
        nc_acl_t v[MAX];
        char err[256];
        int n, i, found = 0;

        (void)state;
        load(&cfg, "[noticecast]\ntopic_prefix = q.\n[kafka]\nbootstrap.servers = x:9\n");
        nc_strlist_clear(&cfg.categories);
        n = nc_acl_list(&cfg, NC_ACL_ROLE_CLI, v, MAX, err, sizeof(err));
        assert_true(n > 0);
        for (i = 0; i < n; i++) {
                if (strncmp(v[i].name, "q.notices.", 10))
                        continue;
                found++;
                assert_int_equal(v[i].pattern, NC_ACL_PREFIXED);
                assert_string_equal(v[i].name, "q.notices.");
        }
        assert_int_equal(found, 1);
        nc_config_free(&cfg);
}

/* Readers yield to [kafka] group.id; a pinned transactional.id is one literal id. */
static void test_kafka_overrides(void **state)
{
        (void)state;
        check_role("[noticecast]\ntopic_prefix = p.\ncategories = news\n[kafka]\n"
                   "bootstrap.servers = x:9\ngroup.id = ops\ntransactional.id = cli-1\n",
                   NC_ACL_ROLE_CLI,
                   "WRITE TOPIC LITERAL p.notices.news\n" CLI_TOPICS "DESCRIBE GROUP LITERAL ops\n"
                   "WRITE TRANSACTIONAL_ID LITERAL cli-1\n");
}

/* Only the admin role may create topics (the daemons never do); no role lists an ACL twice. */
static void test_create_and_duplicates(void **state)
{
        nc_config_t cfg;
        nc_acl_t v[MAX];
        char err[256];
        int r, n, i, j;

        (void)state;
        load(&cfg, base);
        for (r = 0; r < NC_ACL_ROLE_N; r++) {
                n = nc_acl_list(&cfg, (nc_acl_role_t)r, v, MAX, err, sizeof(err));
                assert_true(n > 0);
                for (i = 0; i < n; i++) {
                        assert_true((v[i].op == NC_ACL_CREATE) == (r == NC_ACL_ROLE_ADMIN));
                        for (j = i + 1; j < n; j++)
                                assert_false(v[i].resource == v[j].resource &&
                                             v[i].pattern == v[j].pattern && v[i].op == v[j].op &&
                                             !strcmp(v[i].name, v[j].name));
                }
        }
        nc_config_free(&cfg);
}

static void test_too_many(void **state)
{
        nc_config_t cfg;
        nc_acl_t v[3];
        char err[256] = "";

        (void)state;
        load(&cfg, base);
        assert_int_equal(nc_acl_list(&cfg, NC_ACL_ROLE_MAILER, v, 3, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "mailer"));
        nc_config_free(&cfg);
}

static void test_names(void **state)
{
        nc_acl_role_t r;

        (void)state;
        assert_int_equal(nc_acl_role_parse("webhooks", &r), 0);
        assert_int_equal(r, NC_ACL_ROLE_WEBHOOKS);
        assert_string_equal(nc_acl_role_name(r), "webhooks");
        assert_int_equal(nc_acl_role_parse("Webhooks", &r), -1);
        assert_int_equal(nc_acl_role_parse("", &r), -1);
        assert_string_equal(nc_acl_resource_name(NC_ACL_TXN_ID), "TRANSACTIONAL_ID");
        assert_string_equal(nc_acl_resource_word(NC_ACL_TXN_ID), "transactional id");
        assert_string_equal(nc_acl_op_name(NC_ACL_IDEMPOTENT_WRITE), "IDEMPOTENT_WRITE");
        assert_string_equal(nc_acl_pattern_name(NC_ACL_PREFIXED), "PREFIXED");
        assert_int_equal(nc_acl_rd_resource(NC_ACL_CLUSTER), RD_KAFKA_RESOURCE_BROKER);
        assert_int_equal(nc_acl_rd_resource(NC_ACL_TXN_ID), 5); /* Kafka's code */
        assert_int_equal(nc_acl_rd_op(NC_ACL_WRITE), RD_KAFKA_ACL_OPERATION_WRITE);
        assert_int_equal(nc_acl_rd_pattern(NC_ACL_LITERAL), RD_KAFKA_RESOURCE_PATTERN_LITERAL);
}

static void test_denied_message(void **state)
{
        char buf[512] = "untouched";

        (void)state;
        assert_int_equal(nc_acl_denied_message(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                               "write", "t.notices.news", NC_ACL_ROLE_CLI,
                                               "User:cli", buf, sizeof(buf)),
                         1);
        assert_string_equal(buf, "not authorized to write topic t.notices.news (grant it: "
                                 "noticecast acls --role cli --principal User:cli --apply)");
        nc_acl_denied_message(RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED, "read", "wg",
                              NC_ACL_ROLE_WEBHOOKS, NULL, buf, sizeof(buf));
        assert_string_equal(buf, "not authorized to read group wg (grant it: noticecast acls "
                                 "--role webhooks --principal User:NAME --apply)");
        nc_acl_denied_message(RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "write",
                              "mg.planner-x", NC_ACL_ROLE_MAILER, "User:m", buf, sizeof(buf));
        assert_non_null(strstr(buf, "not authorized to write transactional id mg.planner-x ("));
        nc_acl_denied_message(RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, "write", "ignored",
                              NC_ACL_ROLE_MAILER, "User:m", buf, sizeof(buf));
        assert_non_null(strstr(buf, "not authorized to write cluster (grant it:"));
        strcpy(buf, "untouched");
        assert_int_equal(nc_acl_denied_message(RD_KAFKA_RESP_ERR__TRANSPORT, "write", "t",
                                               NC_ACL_ROLE_CLI, "User:c", buf, sizeof(buf)),
                         0);
        assert_string_equal(buf, "untouched");
        assert_int_equal(nc_acl_denied_resource(RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED),
                         NC_ACL_GROUP);
        assert_int_equal(nc_acl_denied_resource(RD_KAFKA_RESP_ERR_NO_ERROR), -1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_cli),
            cmocka_unit_test(test_webhooks),
            cmocka_unit_test(test_mailer),
            cmocka_unit_test(test_inbound),
            cmocka_unit_test(test_admin),
            cmocka_unit_test(test_all_categories_prefixed),
            cmocka_unit_test(test_kafka_overrides),
            cmocka_unit_test(test_create_and_duplicates),
            cmocka_unit_test(test_too_many),
            cmocka_unit_test(test_names),
            cmocka_unit_test(test_denied_message),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
