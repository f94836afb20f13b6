/* Least-privilege Kafka ACLs: which topics, consumer groups, transactional ids and cluster
 * operations each noticecast program needs, derived from its configuration (pure: no broker),
 * and the one place where an authorization error becomes a message naming what is missing.
 *
 * The roles:
 *   cli       `noticecast` publish, withdraw, subscribers add/remove/import/list, dlq
 *             list/replay, deliveries.  Not `topics create`: creating topics is a deployment
 *             step, done once by an administrator (the admin role), so an everyday CLI
 *             principal cannot create, or misconfigure, topics under the prefix.
 *   webhooks  `noticecast-webhooks`.
 *   mailer    `noticecast-mailer`.
 *   inbound   `noticecast inbound`, run by the MTA for every bounce and complaint that comes
 *             back: it only writes its event (and, for unreadable mail, a DLQ record), so a
 *             program fed mail from the Internet holds no other right.
 *   admin     `noticecast topics create` (and `acls --apply` needs ALTER on the cluster,
 *             which only a super user or a cluster administrator should hold).
 * The daemons never create topics: `topics create` makes all of them.
 *
 * Names are literal where the programs use a known name, prefixed where they make one up
 * (transactional ids with a UUID, the webhooks id readers' groups) or where the set is open
 * (every notice topic when [noticecast] categories is empty). */
#ifndef NC_ACL_H
#define NC_ACL_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "nc_config.h"

typedef enum nc_acl_role {
        NC_ACL_ROLE_CLI,
        NC_ACL_ROLE_WEBHOOKS,
        NC_ACL_ROLE_MAILER,
        NC_ACL_ROLE_INBOUND,
        NC_ACL_ROLE_ADMIN,
        NC_ACL_ROLE_N
} nc_acl_role_t;

typedef enum nc_acl_resource {
        NC_ACL_TOPIC,
        NC_ACL_GROUP,
        NC_ACL_TXN_ID,
        NC_ACL_CLUSTER,
        NC_ACL_RESOURCE_N
} nc_acl_resource_t;

typedef enum nc_acl_pattern { NC_ACL_LITERAL, NC_ACL_PREFIXED, NC_ACL_PATTERN_N } nc_acl_pattern_t;

typedef enum nc_acl_op {
        NC_ACL_READ,
        NC_ACL_WRITE,
        NC_ACL_DESCRIBE,
        NC_ACL_CREATE,
        NC_ACL_IDEMPOTENT_WRITE,
        NC_ACL_OP_N
} nc_acl_op_t;

/* One ALLOW binding (noticecast never needs a DENY). */
typedef struct nc_acl {
        nc_acl_resource_t resource;
        nc_acl_pattern_t pattern;
        char name[256];
        nc_acl_op_t op;
} nc_acl_t;

/* Kafka's names (kafka-acls.sh spells them so): "TOPIC", "PREFIXED", "IDEMPOTENT_WRITE";
 * the role's: "cli".  The lower-case words for messages: "topic", "transactional id". */
const char *nc_acl_role_name(nc_acl_role_t r);
const char *nc_acl_resource_name(nc_acl_resource_t r);
const char *nc_acl_resource_word(nc_acl_resource_t r);
const char *nc_acl_pattern_name(nc_acl_pattern_t p);
const char *nc_acl_op_name(nc_acl_op_t o);
/* NAME as a role; 0, or -1 if there is none of that name. */
int nc_acl_role_parse(const char *name, nc_acl_role_t *r);

/* Fills ACLS (capacity MAX) with what ROLE needs under CFG, without duplicates, in a stable
 * order.  Returns the count, or -1 with errstr if MAX is too small or a name too long. */
int nc_acl_list(const nc_config_t *cfg, nc_acl_role_t role, nc_acl_t *acls, size_t max,
                char *errstr, size_t errstr_size);

/* librdkafka's resource type, pattern type and operation for an ACL. */
rd_kafka_ResourceType_t nc_acl_rd_resource(nc_acl_resource_t r);
rd_kafka_ResourcePatternType_t nc_acl_rd_pattern(nc_acl_pattern_t p);
rd_kafka_AclOperation_t nc_acl_rd_op(nc_acl_op_t o);

/* ---- authorization errors ---------------------------------------------------------------
 * The resource an authorization error is about (TOPIC_/GROUP_/TRANSACTIONAL_ID_/
 * CLUSTER_AUTHORIZATION_FAILED), or -1 if ERR is not one. */
int nc_acl_denied_resource(rd_kafka_resp_err_t err);
/* If ERR is an authorization error, writes "not authorized to OP RESOURCE NAME (grant it:
 * noticecast acls --role ROLE --principal PRINCIPAL --apply)" into BUF and returns 1; else
 * returns 0 and leaves BUF alone.  NAME is ignored for the cluster; PRINCIPAL NULL gives
 * "User:NAME". */
int nc_acl_denied_message(rd_kafka_resp_err_t err, const char *op, const char *name,
                          nc_acl_role_t role, const char *principal, char *buf, size_t size);

#endif
