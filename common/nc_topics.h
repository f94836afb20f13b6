/* Every topic the programs use, in one place: its kind, name, partitions, cleanup policy and
 * retention, from the configuration ([noticecast] topic_prefix and categories, [topics], the
 * [webhooks] retry schedule).  `noticecast topics create` creates them all; the daemons only
 * check that those they use exist (nc_kafka_topics_require).  Pure: no I/O. */
#ifndef NC_TOPICS_H
#define NC_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#include "nc_config.h"

/* One topic to create or to look for. */
typedef struct nc_topic_spec {
        char name[256];
        nc_topic_kind_t kind;
        int partitions;
        int compact;          /* cleanup.policy=compact (else delete) */
        int64_t retention_ms; /* retention.ms: -1 forever; 0 = none set (the compacted kinds) */
        int64_t delete_retention_ms; /* delete.retention.ms (how long a tombstone stays
                                      * readable); 0 = the broker's default (24 h) */
} nc_topic_spec_t;

/* A set of kinds: bit (1u << kind). */
#define NC_TOPICS_KIND(k) (1u << (k))
#define NC_TOPICS_ALL     ((1u << NC_TOPIC_KINDS) - 1)
/* What each daemon reads or writes. */
#define NC_TOPICS_WEBHOOKS                                                                         \
        (NC_TOPICS_KIND(NC_TOPIC_NOTICES) | NC_TOPICS_KIND(NC_TOPIC_DLQ) |                         \
         NC_TOPICS_KIND(NC_TOPIC_DELIVERIES) | NC_TOPICS_KIND(NC_TOPIC_WEBHOOKS_RETRY))
#define NC_TOPICS_MAILER                                                                           \
        (NC_TOPICS_KIND(NC_TOPIC_NOTICES) | NC_TOPICS_KIND(NC_TOPIC_SUBSCRIBERS) |                 \
         NC_TOPICS_KIND(NC_TOPIC_DLQ) | NC_TOPICS_KIND(NC_TOPIC_DELIVERIES) |                      \
         NC_TOPICS_KIND(NC_TOPIC_MAILER_PLAN) | NC_TOPICS_KIND(NC_TOPIC_MAILER_JOBS))

/* "notices", "webhooks.retry", ...: the kind as its topics are named. */
const char *nc_topics_kind_name(nc_topic_kind_t kind);

/* The name of the one topic of KIND (not NOTICES nor WEBHOOKS_RETRY, which have several). */
void nc_topics_name(const nc_config_t *cfg, nc_topic_kind_t kind, char *buf, size_t size);
/* <prefix>webhooks.retry.<step>: the retry tier of a step of STEP_MS ("5m"). */
void nc_topics_retry_name(const nc_config_t *cfg, int64_t step_ms, char *buf, size_t size);

/* Fills SPECS (capacity MAX) with every topic of the KINDS (NC_TOPICS_* bits), in the order
 * of nc_topic_kind_t; returns how many there are.  More than MAX: SPECS (which may then be
 * NULL) was too small, and the count is an upper bound to allocate by. */
size_t nc_topics_specs(const nc_config_t *cfg, unsigned kinds, nc_topic_spec_t *specs, size_t max);

/* delete.retention.ms of the subscribers topic: 7 days.  [mailer] confirm_expiry must not be
 * longer (the mailer refuses to start with the sign-up pages then). */
#define NC_TOPICS_SUBSCRIBERS_TOMBSTONE_MS (7LL * 86400000)

/* "delete" or "compact". */
const char *nc_topics_policy(const nc_topic_spec_t *t);
/* The retention as configured: "30d", "36h", "forever", "-" (none: compacted). */
void nc_topics_retention_format(int64_t ms, char *buf, size_t size);

#endif
