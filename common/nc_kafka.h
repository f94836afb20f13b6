/* Kafka helpers shared by the CLI and the daemons (librdkafka). */
#ifndef NC_KAFKA_H
#define NC_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "nc_acl.h"
#include "nc_config.h"
#include "nc_health.h"
#include "nc_topics.h"
#include "nc_track.h"

/* A new librdkafka configuration with every [kafka] property (and -X overrides) applied and
 * librdkafka's log lines routed to our logfmt logger.  NULL with errstr on failure. */
rd_kafka_conf_t *nc_kafka_conf_new(const nc_config_t *cfg, char *errstr, size_t errstr_size);

/* Sets KEY to VALUE in CONF unless the configuration ([kafka] or -X) set KEY or its
 * librdkafka alias (linger.ms = queue.buffering.max.ms, compression.type = compression.codec):
 * a daemon's own default never overrides the operator.  A value librdkafka refuses is logged;
 * the factory below checks it instead. */
void nc_kafka_conf_default(rd_kafka_conf_t *conf, const nc_config_t *cfg, const char *key,
                           const char *value);

/* ---- broker connectivity ----------------------------------------------------------------
 * Every client made from nc_kafka_conf_new() (so every client of the factory) reports to one
 * tracker per process: ALL_BROKERS_DOWN from any of them, and a probe thread that asks the
 * cluster for its brokers (a metadata request without topics) every second.  Transitions are
 * logged once each: msg="kafka unreachable" error=... when an outage is confirmed (about a
 * second after a client noticed it, two seconds at most otherwise), msg="kafka reconnected"
 * outage=12.3s when a probe succeeds again.  While the tracker runs, of librdkafka's
 * warnings and errors about broker connections (and of all of them during an outage) only the
 * first of a burst is logged at its level; the rest go to debug, and their count is in the
 * "kafka reconnected" line (librdkafka_lines_not_logged=N), or in a "librdkafka warnings
 * ended" line when no outage was confirmed.  A burst ends at a successful probe 3 s after its
 * last line.
 * Fatal librdkafka errors are always logged.  Without the tracker (the CLI), librdkafka's
 * lines pass as they are.  Times are nc_time_now_ms(). */

/* Starts the tracker (one per process; a second call does nothing).  0, or -1 with errstr. */
int nc_kafka_conn_start(const nc_config_t *cfg, char *errstr, size_t errstr_size);
/* Stops it (waits for a probe in progress: PROBE_TIMEOUT_MS, 1 s, at most). */
void nc_kafka_conn_stop(void);
/* The brokers as last seen, and since when (*SINCE_MS may be NULL).  UNKNOWN until the first
 * probe answered or two failed; any thread. */
nc_health_kafka_t nc_kafka_conn_state(int64_t *since_ms);
/* 1 if the brokers are reachable now: the noticecast_kafka_broker_up gauge. */
int nc_kafka_broker_up(void);

/* ---- the client factory: one function per role ------------------------------------------
 * Each builds its configuration from nc_kafka_conf_new() ([kafka] + -X, checked), then the
 * role's required settings, then the caller's SET (which win over [kafka], as a daemon's
 * settings always did) and DEFAULTS (which yield to it: nc_kafka_conf_default), checking
 * every one; a failure names the property.  A required setting that [kafka] or -X set to
 * something else is refused, not silently replaced: acks=0 on an idempotent producer would
 * otherwise look accepted.  The configuration is owned by the client it creates (or
 * destroyed on failure): the caller never frees it. */

/* One librdkafka property; a list of them ends with {NULL, NULL}. */
typedef struct nc_kafka_setting {
        const char *key;
        const char *value;
} nc_kafka_setting_t;

/* What a rebalance means to a daemon: nc_kafka_rebalance_cb() assigns and revokes, and calls
 * these around it (each may be NULL).  Must outlive the consumer. */
typedef void(nc_kafka_parts_fn)(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                                void *opaque);
typedef struct nc_kafka_rebalance {
        nc_kafka_parts_fn *assigning; /* before the assignment: may set start offsets */
        nc_kafka_parts_fn *assigned;  /* after it (e.g. to pause partitions) */
        nc_kafka_parts_fn *revoking;  /* before the partitions are given up */
        /* A tracked consumer's work (nc_track.h): what is settled is stored before the
         * revocation, so that it is committed with it, and the rest is marked revoked. */
        nc_track_t **tracks;
        void *opaque; /* passed to the functions above */
} nc_kafka_rebalance_t;

/* The rebalance callback of every group consumer the factory builds with a REBALANCE: its
 * OPAQUE is the nc_kafka_rebalance_t.  Anything but an assignment unassigns. */
void nc_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque);

typedef struct nc_kafka_opts {
        const char *name; /* for errors: "planner consumer"; NULL = the role's name */
        /* Consumers: group.id.  The group-less reader never joins nor commits: its id only
         * satisfies librdkafka and yields to [kafka] group.id. */
        const char *group_id;
        /* The transactional producer: transactional.id (NULL = a fresh one per client,
         * unless [kafka]/-X pins one) and transaction.timeout.ms (0 = librdkafka's). */
        const char *transactional_id;
        int transaction_timeout_ms;
        /* The tracked group consumer: the interval at which stored offsets are committed
         * (auto.commit.interval.ms); 0 = never automatically, the caller commits (e.g. with
         * its transactions). */
        int commit_interval_ms;
        int partition_eof;                  /* consumers: enable.partition.eof=true */
        int read_uncommitted;               /* the reader: isolation.level=read_uncommitted */
        const nc_kafka_setting_t *set;      /* win over [kafka]; NULL or {NULL, NULL}-ended */
        const nc_kafka_setting_t *defaults; /* yield to [kafka] */
        /* Producers: the delivery report callback (opaque = OPAQUE). */
        void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
        /* The tracked group consumer: installs nc_kafka_rebalance_cb with this as its
         * opaque (OPAQUE is then unused). */
        const nc_kafka_rebalance_t *rebalance;
        void *opaque;
} nc_kafka_opts_t;

/* Transactional: idempotent, acks=all, transactional.id; init_transactions is the
 * caller's. */
rd_kafka_t *nc_kafka_txn_producer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o,
                                      char *errstr, size_t errstr_size);
/* Idempotent (enable.idempotence=true, acks=all): an acknowledged record is durable. */
rd_kafka_t *nc_kafka_idempotent_producer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o,
                                             char *errstr, size_t errstr_size);
/* Plain: nothing required beyond the caller's settings (also the admin client). */
rd_kafka_t *nc_kafka_producer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o, char *errstr,
                                  size_t errstr_size);
/* Group member whose offsets the caller stores (enable.auto.offset.store=false) once the
 * work is settled; read_committed; auto.offset.reset=earliest; see commit_interval_ms.  Its
 * messages are polled from the consumer queue (rd_kafka_poll_set_consumer is done). */
rd_kafka_t *nc_kafka_group_consumer_new(const nc_config_t *cfg, const nc_kafka_opts_t *o,
                                        char *errstr, size_t errstr_size);
/* Group-less reader: assign() only, never commits (enable.auto.commit=false); read_committed
 * unless o->read_uncommitted.  rd_kafka_poll_set_consumer is done.  It never joined a group:
 * destroy it with RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE, or close it first. */
rd_kafka_t *nc_kafka_reader_new(const nc_config_t *cfg, const nc_kafka_opts_t *o, char *errstr,
                                size_t errstr_size);

/* "^<topic_prefix, regex-escaped>notices\\..+": every notice topic, for a subscription.
 * Returns 0, or -1 if SIZE is too small. */
int nc_kafka_notice_regex(const nc_config_t *cfg, char *buf, size_t size);

/* One message of a transactional batch. */
typedef struct nc_kafka_msg {
        const char *topic;
        const char *key;
        void *value; /* NULL = tombstone */
        size_t value_len;
        /* 1: VALUE is malloc'd and handed to librdkafka (no copy); it is set to NULL once
         * librdkafka owns it, so the caller frees only what is left. */
        int give_value;
        const char *event; /* "noticecast-event" header, or NULL */
        /* Headers to send instead of the standard ones (copied; e.g. a DLQ replay). */
        const rd_kafka_headers_t *headers;
        /* Filled in on success: */
        int32_t partition;
        int64_t offset;
} nc_kafka_msg_t;

/* Produces MSGS as ONE Kafka transaction with an idempotent, acks=all producer: either all
 * of them are committed or none is visible to read_committed consumers.  Headers
 * content-type: application/json and noticecast-schema: 1 are added to every message.
 * TIMEOUT_MS bounds the whole operation.  Returns 0, or -1 with errstr (the transaction was
 * aborted or never began). */
int nc_kafka_produce_txn(const nc_config_t *cfg, nc_kafka_msg_t *msgs, size_t n, int timeout_ms,
                         char *errstr, size_t errstr_size);

/* The same in two steps, so that the producer gets ready while the caller still works:
 * prepare() creates it and, in a thread, initialises transactions and learns the leaders of
 * TOPICS (all within TIMEOUT_MS, counted from now); run() waits for that and produces MSGS as
 * one transaction; free() abandons a preparation that is no longer needed. */
typedef struct nc_kafka_txn nc_kafka_txn_t;
nc_kafka_txn_t *nc_kafka_txn_prepare(const nc_config_t *cfg, const char *const *topics,
                                     size_t ntopics, int timeout_ms, char *errstr,
                                     size_t errstr_size);
int nc_kafka_txn_run(nc_kafka_txn_t *t, nc_kafka_msg_t *msgs, size_t n, char *errstr,
                     size_t errstr_size);
void nc_kafka_txn_free(nc_kafka_txn_t *t);

/* ---- topics (nc_topics.h says which) ----------------------------------------------------- */

/* Creates TOPICS (with [topics] replication_factor, and min.insync.replicas=2 from 3 replicas
 * on); an existing topic is left as it is and is not an error.  Per-topic results are
 * reported through REPORT (may be NULL): created = 1 new, 0 already there.  Returns once the
 * leader of every partition of the topics it created serves it (a client may use them at
 * once), within TIMEOUT_MS in all. */
typedef void(nc_kafka_topic_report_fn)(const char *topic, int created, void *opaque);
int nc_kafka_create_topics(const nc_config_t *cfg, const nc_topic_spec_t *topics, size_t n,
                           int timeout_ms, nc_kafka_topic_report_fn *report, void *opaque,
                           char *errstr, size_t errstr_size);

/* Checks that every topic of KINDS (NC_TOPICS_WEBHOOKS, ...) exists, from the metadata of all
 * topics (asking for a topic by name may create it on a broker with auto.create.topics.enable).
 * Returns 0 if they all do; 1 if some do not, with ERRSTR naming them all and saying to run
 * `noticecast topics create` (the daemons' start step, for nc_daemon_retry); -1 with errstr
 * if the brokers did not answer within TIMEOUT_MS. */
int nc_kafka_topics_require(const nc_config_t *cfg, unsigned kinds, int timeout_ms, char *errstr,
                            size_t errstr_size);

/* Reads TOPIC from the beginning to its current end (high watermarks at start, committed
 * data only) without a consumer group, calling FN for each message.  FN returns 0 to go
 * on.  Returns 0, or -1 with errstr (e.g. unknown topic, timeout). */
typedef int(nc_kafka_read_fn)(const rd_kafka_message_t *msg, void *opaque);
int nc_kafka_read_topic(const nc_config_t *cfg, const char *topic, int timeout_ms,
                        nc_kafka_read_fn *fn, void *opaque, char *errstr, size_t errstr_size);

/* Waits (up to TIMEOUT_MS) until every topic of NAMES shows up with partitions in RK's view
 * of the cluster metadata: a topic created a moment ago is not visible everywhere at once,
 * and a consumer subscribing before that would leave it out until its next metadata refresh.
 * Returns 0, or -1 if some topic did not appear in time. */
int nc_kafka_wait_topics(rd_kafka_t *rk, const char *const *names, size_t n, int timeout_ms);

/* Closes consumer RK (revokes its assignment, commits what auto-commit would, leaves the
 * group), waiting at most TIMEOUT_MS: a broker that is away cannot hold up a daemon's exit.
 * Rebalance events met on the way are answered by unassigning.  Returns 0 if it closed in
 * time, -1 if not: then destroy RK with RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE (destroying
 * its messages and queues first, as always). */
int nc_kafka_consumer_close_bounded(rd_kafka_t *rk, int timeout_ms);

/* Value of header NAME as a NUL-terminated copy in BUF, or NULL. */
const char *nc_kafka_header(const rd_kafka_message_t *msg, const char *name, char *buf,
                            size_t size);

/* ---- authorization ---------------------------------------------------------------------
 * A function that fails because the principal lacks an ACL returns NC_KAFKA_DENIED (instead
 * of -1), its errstr naming the operation and the resource (nc_acl_denied_message): the CLI
 * exits 77, not 69. */
#define NC_KAFKA_DENIED (-2)

/* The role this process plays, for the "grant it: noticecast acls --role ROLE" hint (default
 * cli).  Call once at start. */
void nc_kafka_acl_role(nc_acl_role_t role);
/* nc_acl_denied_message() for this process: its role and its principal (User:<[kafka]
 * sasl.username>).  1 if ERR is an authorization error (BUF filled), else 0. */
int nc_kafka_denied(const nc_config_t *cfg, rd_kafka_resp_err_t err, const char *op,
                    const char *name, char *buf, size_t size);
/* The same for a consumer's error message M (topic, or RK's group.id for a group error). */
int nc_kafka_denied_msg(const nc_config_t *cfg, rd_kafka_t *rk, const rd_kafka_message_t *m,
                        char *buf, size_t size);

/* A daemon's consumer error M of client RK: if it is an authorization error, logs it once at
 * error level ("WHO: not authorized to read group G (grant it: ...)"; again only when the
 * message changes or after nc_kafka_denied_clear), keeps it in DENIED (SIZE bytes: the
 * daemon's /readyz reason) and returns 1; otherwise 0 (the caller deals with it).  librdkafka
 * keeps retrying: once the ACL is granted the consumer goes on by itself. */
int nc_kafka_consumer_denied(const nc_config_t *cfg, rd_kafka_t *rk, const rd_kafka_message_t *m,
                             const char *who, char *denied, size_t size);
/* The consumer made progress (an assignment): forget what DENIED held. */
void nc_kafka_denied_clear(char *denied);

/* One ALLOW binding to create, and what became of it. */
typedef struct nc_kafka_acl {
        rd_kafka_ResourceType_t resource;
        rd_kafka_ResourcePatternType_t pattern;
        const char *name, *principal, *host;
        rd_kafka_AclOperation_t op;
} nc_kafka_acl_t;
typedef struct nc_kafka_acl_result {
        char error[512]; /* "" = created (or there already) */
        int denied;      /* the broker refused: no ALTER on the cluster */
        int unsupported; /* this librdkafka cannot express it (TRANSACTIONAL_ID before 2.x) */
} nc_kafka_acl_result_t;

/* Creates ACLS (CreateAcls), filling RES[i] for each.  0 once the broker answered (see RES),
 * -1 (unreachable, timed out) or NC_KAFKA_DENIED with errstr. */
int nc_kafka_create_acls(const nc_config_t *cfg, const nc_kafka_acl_t *acls, size_t n,
                         nc_kafka_acl_result_t *res, int timeout_ms, char *errstr,
                         size_t errstr_size);

#endif
