/* noticecast-webhooks: internal types.
 *
 * One single-threaded event loop drives everything: the Kafka consumer (notice topics and the
 * retry tiers), a Kafka producer (retry tiers, DLQ, delivery events), two group-less readers
 * (the DLQ's recent entries and the notice topics' ids, see below) and a libcurl multi handle.
 * Work flows like this:
 *
 *   Kafka message --> wh_msg (tracked per partition, in offset order)
 *        |                 `--> one wh_job per matching partner --> partner queue --> curl
 *        |                                                                    |
 *        `-- invalid --> DLQ                  2xx: delivered / 5xx...: park in a retry tier /
 *                                              4xx, exhausted: DLQ   (each also records an event)
 *
 * A wh_msg is settled when all its jobs are settled, and a job is settled only once every
 * record it produced (retry, DLQ, delivery event) was acknowledged by the brokers.  The
 * consumer offset of a partition is stored only up to the oldest unsettled message, so a
 * crash at any moment repeats at most the deliveries that were in flight.
 *
 * Producing never blocks or sleeps: a record librdkafka or the brokers would not take waits
 * in W->PRQ and is produced again from the loop after a backoff (nc_produce_backoff_ms); a
 * retry or DLQ record refused for good (too large, invalid) becomes a DLQ *reference*
 * (nc_dlq.h), as does an input record too large to be copied (over nc_dlq_copy_max()).
 *
 * Idempotent DLQ writes.  Kafka does not deduplicate across producer sessions, so the daemon
 * remembers which DLQ entries exist: every entry carries noticecast-dlq-key =
 * webhooks/<chain topic>/<partition>/<offset>/<partner>, where the chain is the record a
 * delivery's attempts started from (the notice record, or a replayed record; retry records
 * carry it along in noticecast-chain).  A group-less reader (nc_tail.h) follows the DLQ from
 * its last WH_DLQ_RECENT entries per partition (and then live, so entries written by other
 * instances count too) into a bounded key set; a DLQ record whose key is in the set is not written
 * again, and no DLQ record is written before that reader has reached the end of every DLQ
 * partition once.  So a record read again after a restart or a rebalance (its offset was not
 * committed yet) does not get a second entry, while a replayed delivery that fails again
 * does (its chain is the replayed record).  We chose this over a transactional producer:
 * committing offsets in transactions would serialise the loop on commits (the mailer's
 * planner does that, see consumer/mailer/planner.c).  Not covered: two instances handling the
 * same record at the same moment (a rebalance while the old owner still finishes it).
 *
 * Deliveries are not repeated.  A (notice, partner, event) — its webhook-id — that was
 * delivered is not sent again: the daemon remembers the webhook-ids it delivered (at once,
 * before the delivery event is acknowledged: the brokers may be away) and those a third
 * group-less reader (nc_tail.h) finds recorded as delivered on <prefix>deliveries (its last
 * WH_DELIVERED_RECENT events per partition at start, then live, so other instances' count
 * too).  Nothing is consumed before that reader has reached the end once.  So after an
 * outage longer than the session timeout, or a rebalance, the notices read again from the
 * last committed offsets are not delivered twice; the events of what was delivered meanwhile
 * are written when the brokers are back.
 *
 * Withdrawals.  A notice.withdrawn is forwarded only for a notice that was published in that
 * category: a second group-less reader (a consumer group of its own per process, so it gets
 * every partition) reads the notice topics from the beginning, and then live, into a set of
 * (category, id) digests (bounded by WH_IDS_MAX, in practice by the topics' 30-day retention).
 * A withdrawal waits (unsettled) until that reader has read past it on its partition; an
 * unknown one goes to the DLQ with the reason.  A notice whose category is not its topic's
 * goes to the DLQ.
 *
 * Shutdown (SIGTERM): consumption stops; deliveries go on until shutdown_timeout minus a
 * reserve; then every job still queued or running is parked in the first retry tier, due at
 * once, with the same attempt (and so the same webhook-id), so that the notice offsets behind
 * them can be committed: after a restart nothing a partner already has is sent again.  Held
 * retry records stay uncommitted and are read again.  The process exits within
 * shutdown_timeout plus the group leave (bounded). */
#ifndef WH_H
#define WH_H

#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/queue.h>

#include "nc_config.h"
#include "nc_dlq.h"
#include "nc_kafka.h"
#include "nc_log.h"
#include "nc_metrics.h"
#include "nc_sign.h"
#include "nc_tail.h"
#include "nc_track.h"
#include "wh_policy.h"

struct wh;
struct wh_track;
struct wh_partner;

/* DLQ entries read back per partition at start (the window of idempotency). */
#define WH_DLQ_RECENT 20000
/* Keys remembered (the oldest are forgotten first). */
#define WH_DLQ_SEEN_MAX 1000000
/* (category, id) digests of published notices remembered. */
#define WH_IDS_MAX 4000000
/* Delivery events read back per partition of <prefix>deliveries at start, and webhook-ids
 * remembered as delivered. */
#define WH_DELIVERED_RECENT 100000
#define WH_DELIVERED_MAX    4000000

/* A consumed Kafka message being worked on. */
typedef struct wh_msg {
        nc_track_msg_t tm;       /* first: its place in the track, offset order */
        rd_kafka_message_t *rkm; /* owned until settled */
        struct wh_track *track;
        int pending; /* unsettled jobs and produces */

        /* Decoded content. */
        json_t *data; /* normalised notice, or the withdrawal event */
        char id[64];
        char category[64];
        const char *event; /* NC_EVENT_PUBLISHED or NC_EVENT_WITHDRAWN */
        int withdrawn;
        int64_t event_ms; /* event time: the original message's timestamp */
        /* The body of a shared format (wh_format.h), built once for all its partners. */
        const struct wh_format *shared_format;
        char *shared_body;
        size_t shared_body_len;

        /* Retry records only. */
        int is_retry;
        char partner[64];
        int attempt; /* attempt number to make now */
        int64_t due_ms;
        char src_topic[256]; /* where the notice was first read, for DLQ headers */
        int32_t src_partition;
        int64_t src_offset;

        /* The record this delivery chain started from (idempotency key of its DLQ entry). */
        char chain_topic[256];
        int32_t chain_partition;
        int64_t chain_offset;
        struct wh_msg *wait_next; /* withdrawal waiting for the id reader */
} wh_msg_t;

/* Per assigned topic-partition: messages in offset order, plus held retry records. */
typedef struct wh_track {
        nc_track_t base; /* first: topic, partition, the messages, revoked */
        int retry_tier;  /* 1 if this is a retry tier topic */
        /* Retry records waiting for their due time (FIFO, due times roughly ordered). */
        wh_msg_t **held;
        size_t held_n, held_cap, held_first;
        int paused;
} wh_track_t;

/* An easy handle set up for one partner, with its request headers allocated once: the
 * webhook-id, -timestamp and -signature lines are rewritten in place for every request. */
typedef struct wh_conn {
        CURL *easy;
        struct curl_slist *hdrs;
        char *h_id, *h_ts, *h_sig; /* the data of three of HDRS' nodes */
} wh_conn_t;

/* One delivery of one message to one partner (one HTTP attempt at a time). */
typedef struct wh_job {
        wh_msg_t *msg;
        struct wh_partner *partner;
        int attempt;
        char webhook_id[NC_WEBHOOK_ID_SIZE];
        char *body; /* NULL until the first attempt; may point to msg->shared_body */
        size_t body_len;
        int body_owned;
        wh_conn_t *conn; /* while a request runs */
        char errbuf[CURL_ERROR_SIZE];
        char response[256]; /* start of the response body, for DLQ reasons */
        size_t response_len;
        int64_t retry_after_ms; /* -1 = none */
        int64_t start_ms;
        int pending_produces; /* retry/DLQ/event records not yet acknowledged */
        int outcome_done;
        TAILQ_ENTRY(wh_job) link;
} wh_job_t;

TAILQ_HEAD(wh_job_list, wh_job);

/* Runtime state of a partner; the configuration part is replaced on reload. */
typedef struct wh_partner {
        nc_partner_t cfg;           /* deep copy */
        nc_signer_t signer;         /* keyed with the partner's secrets */
        int disabled;               /* answered 410 Gone: off until the next reload */
        int removed;                /* no longer in the configuration: finishes what it has */
        struct wh_job_list queue;   /* waiting */
        struct wh_job_list running; /* HTTP request in progress */
        int queued;
        int in_flight;
        double tokens; /* rate limit bucket */
        int64_t tokens_ms;
        wh_conn_t **idle; /* handles configured for this partner, ready for a request */
        size_t idle_n, idle_cap;
        struct wh_partner *next;
} wh_partner_t;

enum wh_rec_kind { WH_REC_EVENT = 0, WH_REC_RETRY, WH_REC_DLQ };

/* A record produced by the daemon whose acknowledgement settles something. */
typedef struct wh_produce {
        wh_job_t *job; /* job to settle, or NULL */
        wh_msg_t *msg; /* message to settle directly (DLQ of invalid input), or NULL */
        enum wh_rec_kind kind;
        /* Kept to produce again if the brokers refused it (we never drop a record). */
        const char *topic; /* not owned: one of wh_t's topic names */
        char *key;
        void *value;
        size_t value_len;
        rd_kafka_headers_t *hdrs; /* until produced; taken back from a failed delivery */
        /* DLQ records: what is needed to write it again as a reference. */
        char *partner, *reason, *dlq_key;
        int reference;  /* this is a reference already */
        int checked;    /* looked up in the DLQ key set */
        int attempts;   /* refused produces so far */
        int64_t due_ms; /* when to produce again */
        TAILQ_ENTRY(wh_produce) link;
} wh_produce_t;

TAILQ_HEAD(wh_produce_list, wh_produce);

/* Where the id reader is on one notice partition. */
typedef struct wh_idpart {
        char topic[256];
        int32_t partition;
        int64_t pos; /* next offset it will read */
        int eof;     /* reached the end once */
} wh_idpart_t;

typedef struct wh {
        nc_config_t cfg;

        rd_kafka_t *consumer;
        rd_kafka_t *producer;
        rd_kafka_queue_t *cq;           /* consumer queue */
        nc_kafka_rebalance_t rebalance; /* the consumer's (nc_kafka_rebalance_cb) */
        CURLM *multi;
        int epfd;              /* the wake pipe and libcurl's sockets */
        int64_t curl_timer_ms; /* when libcurl wants to be called for its timeouts, -1 = no */
        int wake_pipe[2];      /* the daemon skeleton's (nc_daemon.h), copied */

        wh_partner_t *partners;
        nc_track_t *tracks; /* wh_track_t */
        size_t outstanding; /* unsettled messages: consumption pauses above a bound */
        int consuming_paused;
        int64_t next_timer_ms;
        int ready;
        char denied[512]; /* the consumer's missing ACL, for /readyz ("" = none seen) */
        int stopping;

        /* Records to produce again (refused, queue full, waiting for the DLQ reader). */
        struct wh_produce_list prq;
        int64_t prq_due_ms;
        size_t produces; /* records not yet acknowledged (in librdkafka or in PRQ) */
        size_t dlq_copy_max;

        /* DLQ reader: the keys of the DLQ's recent entries. */
        nc_tail_t *dlq_tail;
        int dlq_synced; /* it was caught up once (nc_tail.h) */
        nc_keyset_t dlq_seen;

        /* Id reader: which notices were published. */
        rd_kafka_t *id_reader;
        rd_kafka_queue_t *id_q;
        nc_kafka_rebalance_t id_rebalance; /* its rebalance (nc_kafka_rebalance_cb) */
        wh_idpart_t *idparts;
        size_t idparts_n, idparts_cap;
        int ids_assigned, ids_synced;
        nc_keyset_t ids;
        wh_msg_t *wait_head, *wait_tail; /* withdrawals waiting for the id reader */

        /* Events reader: which (notice, partner, event) were delivered: webhook-ids recorded
         * as delivered on <prefix>deliveries, and those delivered by this process. */
        nc_tail_t *ev_tail;
        int ev_synced; /* it was caught up once */
        nc_keyset_t delivered;

        /* Retry tiers: consumed records not settled, and (from the stats thread) the records
         * not consumed yet. */
        size_t retry_outstanding;
        pthread_t stats_thread;
        int stats_started;
        pthread_mutex_t stats_lock;
        pthread_cond_t stats_cond;
        int stats_stop;
        int64_t retry_lag; /* -1 = not known yet */

        char retry_topics[16][256]; /* one per schedule entry (same delay = same topic) */
        char dlq_topic[256];
        char events_topic[256];
        char notice_regex[600];

        nc_metrics_t *metrics;
        nc_metric_t *m_deliveries, *m_latency, *m_backlog, *m_lag, *m_dlq, *m_inflight, *m_skipped;
        nc_metric_t *m_attempts, *m_deferred, *m_disabled; /* wh_metrics_init */
        struct nc_httpd *httpd;
} wh_t;

/* Modules.  wh_kafka.c (Kafka side) hands each message to wh_deliver.c (HTTP side) with
 * wh_dispatch(); wh_deliver.c hands the records an attempt produced to the Kafka side with
 * wh_produce_record() (a message it cannot take, wh_msg_quarantine()).  The only calls back are the
 * two settle calls: an acknowledged record settles its job (wh_job_settle_one), a settled job its
 * message (wh_msg_settle_one).  Both build their records with wh_record.c, a leaf that calls
 * neither; wh_policy.c (what an attempt's result calls for) and wh_format.c (payload formats) are
 * leaves too. */

/* wh_kafka.c */
int wh_kafka_start(wh_t *w, char *errstr, size_t errstr_size);
void wh_kafka_poll(wh_t *w);
/* Commits what is settled and leaves the group, giving up at DEADLINE_MS (wall clock). */
void wh_kafka_stop(wh_t *w, int64_t deadline_ms);
/* Deliveries waiting in the retry tiers: consumed and unsettled, plus not consumed yet. */
size_t wh_retry_backlog(wh_t *w);
void wh_msg_settle_one(wh_t *w, wh_msg_t *m);
/* Produces PR; its acknowledgement settles PR->job or PR->msg (PR is owned from now on). */
void wh_produce_record(wh_t *w, wh_produce_t *pr);
/* M goes to the DLQ (for PARTNER only, or NULL: for every partner) with REASON; M settles
 * once that record is acknowledged. */
void wh_msg_quarantine(wh_t *w, wh_msg_t *m, const char *partner, const char *reason);
void wh_timers(wh_t *w, int64_t now);

/* wh_record.c: records to produce (wh_produce_record), and what delivery events say. */
wh_produce_t *wh_dlq_record(wh_t *w, wh_msg_t *m, const char *partner, const char *reason);
wh_produce_t *wh_retry_record(wh_t *w, wh_msg_t *m, const char *partner, int next_attempt,
                              int64_t due_ms, int tier);
wh_produce_t *wh_event_record(wh_t *w, const wh_job_t *j, enum wh_outcome outcome, long status,
                              const char *error, double latency_ms);
/* Retry or DLQ record PR was refused for good (WHY): it becomes a DLQ reference to its
 * message (a retry record: the partner's delivery ends in the DLQ). */
void wh_record_as_reference(wh_t *w, wh_produce_t *pr, const char *why);
void wh_record_free(wh_produce_t *pr);
/* Fields of a log line about M (and PARTNER, may be NULL): partner, notice_id, topic,
 * partition, offset (where the notice was first read). */
void wh_log_fields(nc_log_fields_t *f, const wh_msg_t *m, const char *partner);
/* "event", "retry", "DLQ" (for logs); fatalx() on an unknown kind. */
const char *wh_rec_kind_name(enum wh_rec_kind k);
/* If the delivery event PAYLOAD (LEN bytes) says "delivered": 1 and its webhook-id in BUF. */
int wh_event_delivered_id(const void *payload, size_t len, char *buf, size_t size);
/* Whether WEBHOOK_ID is known as delivered; remember it as delivered. */
int wh_delivered_has(const wh_t *w, const char *webhook_id);
void wh_delivered_add(wh_t *w, const char *webhook_id);

/* wh_deliver.c */
/* After the metrics of main.c: build info, process, the attempt counters, and every
 * partner's outcome series at 0 (so that alerts have series to match from the start). */
void wh_metrics_init(wh_t *w);
/* Counts a delivery to PARTNER that reached its final OUTCOME (delivered, dlq, disabled), or
 * that was parked without an attempt (deferred); other outcomes are not counted here. */
void wh_delivery_count(wh_t *w, const char *partner, enum wh_outcome outcome);
int wh_partners_apply(wh_t *w, const nc_config_t *cfg, char *errstr, size_t errstr_size);
void wh_dispatch(wh_t *w, wh_msg_t *m);
void wh_deliver_pump(wh_t *w);
void wh_deliver_completed(wh_t *w);
void wh_job_settle_one(wh_t *w, wh_job_t *j);
void wh_partners_free(wh_t *w);
/* Shutdown: parks every queued and running job in the first retry tier (same attempt). */
size_t wh_deliver_park_all(wh_t *w);
/* Shutdown: drops queued and running jobs without settling them (they will be resent). */
void wh_deliver_abandon(wh_t *w);
size_t wh_in_flight(const wh_t *w);
/* Size of a partner's token bucket for RATE requests/s (0 = no limit). */
double wh_rate_burst(double rate);

#endif
