/* Least-privilege ACLs per role (see nc_acl.h): one table per role, one line per need. */
#include "nc_acl.h"

#include <stdio.h>
#include <string.h>

#include "nc_topics.h"
#include "nc_util.h"

/* How a rule's name is made from the configuration. */
enum name_kind {
        N_NOTICES,      /* every notice topic: literal per category, else prefixed */
        N_TOPIC,        /* the one topic of kind KIND, literal */
        N_TOPIC_PREFIX, /* <topic_prefix>, prefixed (cluster when the prefix is empty) */
        N_RETRY_ALL,    /* every webhooks retry tier, literal */
        N_RETRY_FIRST,  /* the first tier: where `dlq replay` sends a failed delivery */
        N_WH_GROUP,     /* [webhooks] group_id<arg>: literal ("") or prefixed (".") */
        N_ML_GROUP,     /* [mailer] group_id<arg>, prefixed */
        N_READER_GROUP, /* a group-less reader's id ARG, unless [kafka] group.id replaces it */
        N_OP_GROUP,     /* [kafka] group.id if set (readers yield to it), else nothing */
        N_CLI_TXN,      /* "noticecast-cli-" prefixed, or [kafka] transactional.id literal */
        N_ML_TXN,       /* [mailer] group_id.planner-<host>-<uuid>: prefixed */
        N_CLUSTER,
};

struct rule {
        enum name_kind kind;
        const char *arg;
        nc_topic_kind_t topic; /* N_TOPIC's */
        nc_acl_op_t op;
};

#define T(k) NULL, NC_TOPIC_##k /* an N_TOPIC rule's topic */
#define NT   0                  /* no topic */

/* Read implies Describe and Write implies Describe (Kafka's own rule): neither is listed.
 * A group-less reader (assign only) still looks its group's coordinator up: that needs
 * Describe on the group, not Read. */
static const struct rule cli_rules[] = {
    {N_NOTICES, NULL, NT, NC_ACL_WRITE},     /* publish, withdraw, dlq replay */
    {N_TOPIC, T(SUBSCRIBERS), NC_ACL_WRITE}, /* subscribers add/remove/import */
    {N_TOPIC, T(SUBSCRIBERS), NC_ACL_READ},  /* subscribers list, import's diff */
    {N_TOPIC, T(DLQ), NC_ACL_READ},          /* dlq list/replay */
    {N_TOPIC, T(DELIVERIES), NC_ACL_READ},   /* deliveries */
    {N_TOPIC, T(MAILER_JOBS), NC_ACL_WRITE}, /* dlq replay of a mail job */
    {N_RETRY_FIRST, NULL, NT, NC_ACL_WRITE}, /* dlq replay of a failed delivery */
    {N_READER_GROUP, "noticecast-reader", NT, NC_ACL_DESCRIBE}, /* nc_kafka_read_topic */
    {N_CLI_TXN, NULL, NT, NC_ACL_WRITE},                        /* every write is one transaction */
};

static const struct rule webhooks_rules[] = {
    {N_NOTICES, NULL, NT, NC_ACL_READ},
    {N_RETRY_ALL, NULL, NT, NC_ACL_READ},
    {N_RETRY_ALL, NULL, NT, NC_ACL_WRITE},
    {N_TOPIC, T(DLQ), NC_ACL_READ}, /* the recent entries: not quarantined twice */
    {N_TOPIC, T(DLQ), NC_ACL_WRITE},
    {N_TOPIC, T(DELIVERIES), NC_ACL_READ}, /* what was delivered already */
    {N_TOPIC, T(DELIVERIES), NC_ACL_WRITE},
    {N_WH_GROUP, "", NT, NC_ACL_READ},  /* the consumer */
    {N_WH_GROUP, ".", NT, NC_ACL_READ}, /* .reader (the tails), .ids.<host>-<pid>-<random> */
    {N_OP_GROUP, NULL, NT, NC_ACL_DESCRIBE},
    {N_CLUSTER, NULL, NT, NC_ACL_IDEMPOTENT_WRITE}, /* brokers before 2.8; later ones need Write */
};

static const struct rule mailer_rules[] = {
    {N_NOTICES, NULL, NT, NC_ACL_READ},
    {N_TOPIC, T(SUBSCRIBERS), NC_ACL_READ},
    {N_TOPIC, T(SUBSCRIBERS), NC_ACL_WRITE}, /* /unsubscribe tombstones */
    {N_TOPIC, T(MAILER_JOBS), NC_ACL_READ},
    {N_TOPIC, T(MAILER_JOBS), NC_ACL_WRITE},
    {N_TOPIC, T(MAILER_PLAN), NC_ACL_READ},
    {N_TOPIC, T(MAILER_PLAN), NC_ACL_WRITE},
    {N_TOPIC, T(DELIVERIES), NC_ACL_READ}, /* the senders' catch-up */
    {N_TOPIC, T(DELIVERIES), NC_ACL_WRITE},
    {N_TOPIC, T(DLQ), NC_ACL_WRITE},
    {N_ML_GROUP, ".", NT, NC_ACL_READ}, /* .planner, .senders, .senders-catchup */
    {N_READER_GROUP, "noticecast-mailer-view", NT, NC_ACL_DESCRIBE},
    {N_READER_GROUP, "noticecast-reader", NT, NC_ACL_DESCRIBE}, /* the planner's marker */
    {N_OP_GROUP, NULL, NT, NC_ACL_DESCRIBE},
    {N_ML_TXN, NULL, NT, NC_ACL_WRITE},
    {N_CLUSTER, NULL, NT, NC_ACL_IDEMPOTENT_WRITE},
};

static const struct rule inbound_rules[] = {
    {N_TOPIC, T(DELIVERIES), NC_ACL_WRITE}, /* its event (a plain producer: no idempotence) */
    {N_TOPIC, T(DLQ), NC_ACL_WRITE},        /* unreadable mail, quarantined */
};

static const struct rule admin_rules[] = {
    {N_TOPIC_PREFIX, NULL, NT, NC_ACL_CREATE},
};

static const struct {
        const char *name;
        const struct rule *rules;
        size_t n;
} roles[NC_ACL_ROLE_N] = {
#define ROLE(e, s, t) [e] = {s, t, sizeof(t) / sizeof(t[0])}
    ROLE(NC_ACL_ROLE_CLI, "cli", cli_rules),
    ROLE(NC_ACL_ROLE_WEBHOOKS, "webhooks", webhooks_rules),
    ROLE(NC_ACL_ROLE_MAILER, "mailer", mailer_rules),
    ROLE(NC_ACL_ROLE_INBOUND, "inbound", inbound_rules),
    ROLE(NC_ACL_ROLE_ADMIN, "admin", admin_rules),
#undef ROLE
};

/* ---- names: every enum in one place ---------------------------------------------------- */

static const struct {
        const char *name, *word;
        rd_kafka_ResourceType_t rd;
} resources[NC_ACL_RESOURCE_N] = {
    [NC_ACL_TOPIC] = {"TOPIC", "topic", RD_KAFKA_RESOURCE_TOPIC},
    [NC_ACL_GROUP] = {"GROUP", "group", RD_KAFKA_RESOURCE_GROUP},
    /* Kafka's code 5; librdkafka names it from 2.x on, and 2.0 refuses it (cmd_acls.c). */
    [NC_ACL_TXN_ID] = {"TRANSACTIONAL_ID", "transactional id", (rd_kafka_ResourceType_t)5},
    [NC_ACL_CLUSTER] = {"CLUSTER", "cluster", RD_KAFKA_RESOURCE_BROKER},
};

static const struct {
        const char *name;
        rd_kafka_ResourcePatternType_t rd;
} patterns[NC_ACL_PATTERN_N] = {
    [NC_ACL_LITERAL] = {"LITERAL", RD_KAFKA_RESOURCE_PATTERN_LITERAL},
    [NC_ACL_PREFIXED] = {"PREFIXED", RD_KAFKA_RESOURCE_PATTERN_PREFIXED},
};

static const struct {
        const char *name;
        rd_kafka_AclOperation_t rd;
} ops[NC_ACL_OP_N] = {
    [NC_ACL_READ] = {"READ", RD_KAFKA_ACL_OPERATION_READ},
    [NC_ACL_WRITE] = {"WRITE", RD_KAFKA_ACL_OPERATION_WRITE},
    [NC_ACL_DESCRIBE] = {"DESCRIBE", RD_KAFKA_ACL_OPERATION_DESCRIBE},
    [NC_ACL_CREATE] = {"CREATE", RD_KAFKA_ACL_OPERATION_CREATE},
    [NC_ACL_IDEMPOTENT_WRITE] = {"IDEMPOTENT_WRITE", RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE},
};

/* The error each resource's denial comes as. */
static const rd_kafka_resp_err_t denials[NC_ACL_RESOURCE_N] = {
    [NC_ACL_TOPIC] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    [NC_ACL_GROUP] = RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
    [NC_ACL_TXN_ID] = RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    [NC_ACL_CLUSTER] = RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED,
};

const char *nc_acl_role_name(nc_acl_role_t r)
{
        return r < NC_ACL_ROLE_N ? roles[r].name : "?";
}

const char *nc_acl_resource_name(nc_acl_resource_t r)
{
        return r < NC_ACL_RESOURCE_N ? resources[r].name : "?";
}

const char *nc_acl_resource_word(nc_acl_resource_t r)
{
        return r < NC_ACL_RESOURCE_N ? resources[r].word : "?";
}

const char *nc_acl_pattern_name(nc_acl_pattern_t p)
{
        return p < NC_ACL_PATTERN_N ? patterns[p].name : "?";
}

const char *nc_acl_op_name(nc_acl_op_t o)
{
        return o < NC_ACL_OP_N ? ops[o].name : "?";
}

rd_kafka_ResourceType_t nc_acl_rd_resource(nc_acl_resource_t r)
{
        return resources[r].rd;
}

rd_kafka_ResourcePatternType_t nc_acl_rd_pattern(nc_acl_pattern_t p)
{
        return patterns[p].rd;
}

rd_kafka_AclOperation_t nc_acl_rd_op(nc_acl_op_t o)
{
        return ops[o].rd;
}

int nc_acl_role_parse(const char *name, nc_acl_role_t *r)
{
        int i;

        for (i = 0; i < NC_ACL_ROLE_N; i++)
                if (!strcmp(name, roles[i].name)) {
                        *r = (nc_acl_role_t)i;
                        return 0;
                }
        return -1;
}

/* ---- building the list ----------------------------------------------------------------- */

struct out {
        nc_acl_t *v;
        size_t n, max;
        int overflow;
};

static void add(struct out *o, nc_acl_resource_t res, nc_acl_pattern_t pat, nc_acl_op_t op,
                const char *fmt, const char *a, const char *b)
{
        nc_acl_t acl = {.resource = res, .pattern = pat, .op = op};
        size_t i;
        int n = snprintf(acl.name, sizeof(acl.name), fmt, a ? a : "", b ? b : "");

        if (n < 0 || (size_t)n >= sizeof(acl.name)) {
                o->overflow = 1;
                return;
        }
        for (i = 0; i < o->n; i++)
                if (o->v[i].resource == res && o->v[i].pattern == pat && o->v[i].op == op &&
                    !strcmp(o->v[i].name, acl.name))
                        return;
        if (o->n == o->max) {
                o->overflow = 1;
                return;
        }
        o->v[o->n++] = acl;
}

static void add_retry(struct out *o, const nc_config_t *cfg, size_t i, nc_acl_op_t op)
{
        char name[256];

        nc_topics_retry_name(cfg, cfg->webhooks.retry_ms[i], name, sizeof(name));
        add(o, NC_ACL_TOPIC, NC_ACL_LITERAL, op, "%s%s", name, NULL);
}

static void add_notices(struct out *o, const nc_config_t *cfg, nc_acl_op_t op)
{
        size_t i;

        if (!cfg->categories.n)
                add(o, NC_ACL_TOPIC, NC_ACL_PREFIXED, op, "%snotices.%s", cfg->topic_prefix, "");
        for (i = 0; i < cfg->categories.n; i++)
                add(o, NC_ACL_TOPIC, NC_ACL_LITERAL, op, "%snotices.%s", cfg->topic_prefix,
                    cfg->categories.v[i]);
}

static void add_rule(struct out *o, const nc_config_t *cfg, const struct rule *r)
{
        const char *op_group = nc_config_kafka_get(cfg, "group.id");
        const char *tid = nc_config_kafka_get(cfg, "transactional.id");
        char name[256];
        size_t i;

        switch (r->kind) {
        case N_NOTICES:
                return add_notices(o, cfg, r->op);
        case N_TOPIC:
                nc_topics_name(cfg, r->topic, name, sizeof(name));
                return add(o, NC_ACL_TOPIC, NC_ACL_LITERAL, r->op, "%s%s", name, NULL);
        case N_TOPIC_PREFIX:
                if (!cfg->topic_prefix[0]) /* a prefixed pattern cannot be empty */
                        return add(o, NC_ACL_CLUSTER, NC_ACL_LITERAL, r->op, "kafka-cluster%s%s",
                                   NULL, NULL);
                return add(o, NC_ACL_TOPIC, NC_ACL_PREFIXED, r->op, "%s%s", cfg->topic_prefix,
                           NULL);
        case N_RETRY_ALL:
                for (i = 0; i < cfg->webhooks.retry_n; i++)
                        add_retry(o, cfg, i, r->op);
                return;
        case N_RETRY_FIRST:
                if (cfg->webhooks.retry_n)
                        add_retry(o, cfg, 0, r->op);
                return;
        case N_WH_GROUP:
                return add(o, NC_ACL_GROUP, r->arg[0] ? NC_ACL_PREFIXED : NC_ACL_LITERAL, r->op,
                           "%s%s", cfg->webhooks.group_id, r->arg);
        case N_ML_GROUP:
                return add(o, NC_ACL_GROUP, NC_ACL_PREFIXED, r->op, "%s%s", cfg->mailer.group_id,
                           r->arg);
        case N_READER_GROUP:
                return add(o, NC_ACL_GROUP, NC_ACL_LITERAL, r->op, "%s%s",
                           op_group ? op_group : r->arg, NULL);
        case N_OP_GROUP:
                if (op_group)
                        add(o, NC_ACL_GROUP, NC_ACL_LITERAL, r->op, "%s%s", op_group, NULL);
                return;
        case N_CLI_TXN:
                return add(o, NC_ACL_TXN_ID, tid ? NC_ACL_LITERAL : NC_ACL_PREFIXED, r->op, "%s%s",
                           tid ? tid : "noticecast-cli-", NULL);
        case N_ML_TXN:
                return add(o, NC_ACL_TXN_ID, NC_ACL_PREFIXED, r->op, "%s%s", cfg->mailer.group_id,
                           ".planner-");
        case N_CLUSTER:
                return add(o, NC_ACL_CLUSTER, NC_ACL_LITERAL, r->op, "kafka-cluster%s%s", NULL,
                           NULL);
        }
}

int nc_acl_list(const nc_config_t *cfg, nc_acl_role_t role, nc_acl_t *acls, size_t max,
                char *errstr, size_t errstr_size)
{
        struct out o = {.v = acls, .max = max};
        size_t i;

        if (role >= NC_ACL_ROLE_N)
                return nc_err(errstr, errstr_size, "no such role");
        for (i = 0; i < roles[role].n; i++)
                add_rule(&o, cfg, &roles[role].rules[i]);
        if (o.overflow)
                return nc_err(errstr, errstr_size,
                              "role %s: more than %zu ACLs, or a name over 255 bytes",
                              roles[role].name, max);
        return (int)o.n;
}

/* ---- authorization errors -------------------------------------------------------------- */

int nc_acl_denied_resource(rd_kafka_resp_err_t err)
{
        int i;

        for (i = 0; i < NC_ACL_RESOURCE_N; i++)
                if (denials[i] == err)
                        return i;
        return -1;
}

int nc_acl_denied_message(rd_kafka_resp_err_t err, const char *op, const char *name,
                          nc_acl_role_t role, const char *principal, char *buf, size_t size)
{
        int res = nc_acl_denied_resource(err);

        if (res < 0)
                return 0;
        snprintf(buf, size,
                 "not authorized to %s %s%s%s (grant it: noticecast acls --role %s --principal "
                 "%s --apply)",
                 op, nc_acl_resource_word((nc_acl_resource_t)res),
                 res == NC_ACL_CLUSTER || !name ? "" : " ",
                 res == NC_ACL_CLUSTER || !name ? "" : name, nc_acl_role_name(role),
                 principal ? principal : "User:NAME");
        return 1;
}
