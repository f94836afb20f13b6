/* noticecast-mailer: internal types.
 *
 * Every instance keeps two read-only views, fed by plain (group-less) consumers:
 *   - the subscribers (the compacted <prefix>subscribers topic, followed live);
 *   - the notices of the last eight days (the notice topics), with withdrawals and
 *     corrections applied.
 * Planning happens once, in the consumer group <group>.planner:
 *   - each notice is read by exactly one instance, which turns it into one job per
 *     "immediate" subscriber (and per subscriber of the category when it is urgent);
 *   - the instance that owns partition 0 of <prefix>mailer.plan plans the digests, minute
 *     by minute, remembering the last planned minute in that (compacted) topic.
 *   Jobs and the progress marker (consumer offsets or the planned minute) are written in one
 *   Kafka transaction, so a crash re-plans exactly what was not committed.
 * Sending scales out: the jobs topic is consumed by the group <group>.senders; worker
 * threads render, build and send the messages in SMTP sessions of many messages (a session
 * a relay ends early is continued in a new one); a job's offset is stored only once its
 * outcome (sent, bounced, given up) has been recorded, a given-up job also in the DLQ.  A job
 * read again (rebalance, outage, restart) whose mail.sent is known is not sent twice. */
#ifndef MAILER_H
#define MAILER_H

#include <glib.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "nc_track.h"
#include "nc_config.h"
#include "nc_httpd.h"
#include "nc_kafka.h"
#include "nc_metrics.h"
#include "nc_tail.h"
#include "nc_verp.h"

#include "ml_queue.h"

struct ml_templates; /* ml_digest.h */

/* The VERP delimiter ([mailer] verp_delimiter, read by `noticecast inbound` too). */
#define ML_VERP_DELIMITER(m) ((m)->cfg.mailer.verp_delimiter[0])
#define ML_FREQ_IMMEDIATE    0
#define ML_FREQ_DAILY        1
#define ML_FREQ_WEEKLY       2

/* A subscriber, compact: a million of them must fit in a few hundred MiB. */
typedef struct ml_sub {
        char *id; /* one allocation: id \0 email \0 name \0 bounce_reason \0 */
        const char *email;
        const char *name;
        const char *bounce_reason; /* of the last hard bounce counted; "" = none */
        uint32_t bounced_at;       /* its time, unix seconds; 0 = none */
        uint8_t lang;              /* index into cfg languages */
        uint8_t freq;
        uint8_t bounces;
        uint8_t suppressed;
        uint16_t tz;       /* index into the zone table */
        uint16_t send_min; /* minutes after local midnight */
        uint32_t cats;     /* bit i = category i; 0 = every category */
        uint16_t nregions;
        uint16_t *regions; /* two ASCII letters each; NULL = every region */
        uint64_t gen;      /* subscription generation (nc_subscriber.h), in unsubscribe tokens */
        uint64_t ref;      /* VERP subscriber reference of id (nc_verp.h): key of store.refs */
} ml_sub_t;

/* A notice of the last days, as the digests need it. */
typedef struct ml_notice {
        char id[40];
        json_t *data;  /* normalised notice */
        int64_t ts_ms; /* when it was published through noticecast (Kafka timestamp) */
        int cat;       /* category index */
        int urgent;
        int withdrawn;
        char superseded_by[40];
} ml_notice_t;

typedef struct ml_store {
        GHashTable *subs;    /* id -> ml_sub_t */
        GHashTable *removed; /* id -> generation (uint64_t) of a subscription since removed */
        GHashTable *refs;    /* VERP subscriber reference (nc_verp.h) -> ml_sub_t */
        GHashTable *notices; /* id -> ml_notice_t */
        GPtrArray *zones;    /* zone names; index = ml_sub_t.tz */
        GHashTable *zone_ix; /* name -> index + 1 */
        GHashTable *zone_tz; /* index -> GTimeZone */
        rd_kafka_t *rk;      /* group-less reader */
        int caught_up;
        size_t eof_needed, eof_seen;
        GHashTable *eof_parts; /* "topic/partition" seen at EOF once */
        char subs_topic[256];
} ml_store_t;

/* One email to send, resolved by the main thread for a worker. */
typedef struct ml_unit {
        struct ml_job *job;
        json_t *subscriber;
        json_t *notices; /* newest first */
        int urgent;
        char period[16];
        char message_id[128];
        char unsub_url[1024];
        char manage_url[1024];   /* "" when the sign-up pages are off */
        char envelope_from[320]; /* the VERP address (nc_verp.h), or envelope_from itself */
        /* result, filled by the worker */
        int status;    /* SMTP code, 0 = not attempted, or an ml_status_sentinel (ml_policy.h) */
        int attempted; /* the relay dealt with it itself (smtp.h) */
        int deferred;  /* its reply was its domain deferring mail (ml_domain.h) */
        char reply[256];
        struct ml_unit *next;
        struct ml_queue_domain *qdom; /* its recipient domain in the queue (ml_queue.c) */
} ml_unit_t;

/* A consumed job (jobs topic), tracked until its outcome is recorded. */
typedef struct ml_job {
        nc_track_msg_t tm; /* first: its place in the partition's track, offset order */
        rd_kafka_message_t *rkm;
        json_t *doc;
        nc_track_t *part;
        int attempt;
        int64_t not_before_ms; /* 4xx backoff */
        int64_t first_try_ms;
        struct ml_job *wait_next; /* in the waiting list */
        int waiting;
        int acks;       /* records produced for it (outcome, DLQ) not acknowledged yet, plus
                         * holds; it is settled when this drops to 0 */
        int ack_failed; /* one of them failed: left unsettled, so a restart sends it again */
        int final;      /* its final outcome was recorded (sent, bounce, failed, skipped) */
        int mid_owner;  /* this copy of the job holds its Message-ID in ml_t.mids */
} ml_job_t;

typedef struct ml {
        nc_config_t cfg;
        int64_t clock_offset_ms; /* test-only: shifts the planner's clock */
        int oneshot;             /* --preview: fail at once instead of waiting for brokers */

        ml_store_t store;

        rd_kafka_t *planner;             /* consumer, group <group>.planner */
        rd_kafka_t *planner_txp;         /* transactional producer */
        nc_kafka_rebalance_t planner_rb; /* planner's rebalance hooks (planner.c) */
        int plan_owner;
        /* A consumer's missing ACL (nc_kafka_consumer_denied), for /readyz; "" = none. */
        char view_denied[512], planner_denied[512], sender_denied[512];
        int64_t planned_minute; /* last digest minute planned, -1 = unknown */
        int planner_dirty;      /* notices consumed since the last transaction */

        rd_kafka_t *sender;               /* consumer, group <group>.senders */
        nc_kafka_rebalance_t sender_rb;   /* its rebalance hooks and tracks (sender.c) */
        rd_kafka_t *events;               /* idempotent producer: events, subscriber updates */
        rd_kafka_t *unsub_p;              /* producer used by the HTTP thread */
        nc_track_t *parts;                /* jobs consumed, per partition (nc_track.h) */
        ml_job_t *waiting, *waiting_tail; /* FIFO: in backoff, rate-limited, or waiting for
                                           * a notice; kept in arrival order so the
                                           * committed offset keeps moving */
        size_t outstanding;
        /* Message-IDs of the jobs this process is sending or has sent (sender.c, "Sent once"):
         * a job read again after a rebalance (the broker was away longer than the session
         * timeout, so the offsets of what was sent meanwhile were never committed) is not sent
         * a second time. */
        GHashTable *mids;    /* Message-ID -> state */
        GQueue *mids_done;   /* Message-IDs sent and recorded, oldest first (for the cap) */
        size_t dups_skipped; /* such jobs seen this loop turn (logged once per turn) */
        /* At each assignment, the newly assigned jobs partitions are paused while the recent
         * mail.sent events of the deliveries topic are read into mids (sender.c). */
        nc_tail_t *scan; /* tail reader of the deliveries topic; NULL = no catch-up */
        int scan_nparts; /* its partitions */
        size_t scan_learned;
        rd_kafka_topic_partition_list_t *paused; /* jobs partitions waiting for the scan */
        double tokens;
        int64_t tokens_ms;

        ml_domain_limits_t domains;       /* [smtp] domain_* (ml_domain.h), parsed at load */
        ml_queue_t q;                     /* ml_queue.h */
        ml_unit_t *pend_head, *pend_tail; /* prepared this poll, not yet in q (main thread) */
        size_t pend_n;
        pthread_t *workers;
        struct ml_smtp_cancel *cancels; /* one per worker: ends its sessions at shutdown */
        int nworkers;
        int wake_pipe[2]; /* the daemon skeleton's (nc_daemon.h), copied */

        unsigned char unsub_key[64];
        size_t unsub_key_len;
        nc_verp_keys_t verp_keys;   /* from the unsubscribe secret (nc_verp.h) */
        struct ml_inbound *inbound; /* inbound.c: bounces and complaints that came back */

        char topic_jobs[256], topic_plan[256], topic_events[256], topic_dlq[256];
        char topic_subs[256];
        char notice_regex[512]; /* fits every prefix a topic name can have (249 bytes) */

        nc_metrics_t *metrics;
        nc_metric_t *m_sent, *m_jobs, *m_subs, *m_notices, *m_queue, *m_dlq;
        nc_metric_t *m_deferrals; /* {domain}: the configured domains and "other" */
        /* ml_metrics_init (sender.c) */
        nc_metric_t *m_txn, *m_lag, *m_planned, *m_plan_ts, *m_digest_ts;
        int64_t lag_ms; /* when m_lag was last set */
        struct nc_httpd *httpd;
        int stopping;
} ml_t;

/* After the metrics of main.c: build info, process, SMTP transaction latency, consumer
 * lag, planner progress, and every outcome series at 0 (so that alerts have series to match
 * from the start). */
void ml_metrics_init(ml_t *m);
/* Sets noticecast_mail_consumer_lag{consumer=NAME} for RK, from librdkafka's cache. */
void ml_metrics_lag(ml_t *m, rd_kafka_t *rk, const char *name);

/* store.c */
int ml_store_start(ml_t *m, char *errstr, size_t errstr_size);
/* Returns 1 when it stopped at a full batch (more is already waiting). */
int ml_store_poll(ml_t *m, int timeout_ms);
void ml_store_stop(ml_t *m);
const ml_sub_t *ml_store_sub(const ml_t *m, const char *id);
/* For the HTTP thread (the rest of the store is the main thread's), the sign-up pages: the
 * generation of subscriber ID, whether it is suppressed (bounces), and the generation of its
 * subscription removed last (0: none seen since the view started).  Returns 1 (found), 0
 * (not subscribed) or -1 (the view is still loading). */
int ml_store_sub_state(const ml_t *m, const char *id, uint64_t *gen, int *suppressed,
                       uint64_t *removed_gen);
/* For the HTTP thread: a copy of subscriber ID's full record (ml_sub_record), or NULL; *RC
 * as ml_store_sub_state returns. */
json_t *ml_store_sub_copy(const ml_t *m, const char *id, int *rc);
/* A subscriber's bounce counters, as its record keeps them. */
typedef struct ml_bounce_state {
        int bounces;
        int suppressed;
        int64_t at_s;       /* the last bounce counted, unix seconds; 0 = none */
        const char *reason; /* its status and diagnostic; NULL or "" = none */
} ml_bounce_state_t;
/* The full record of S (as the CLI writes it) with the bounce counters B (NULL: S's own),
 * updated now. */
json_t *ml_sub_record(const ml_t *m, const ml_sub_t *s, const ml_bounce_state_t *b);
/* Main thread: one more hard bounce of S (at the SMTP session, or a DSN that came back),
 * REASON its status and text: S's record with the counters of ml_policy_bounce() (suppressed
 * once they reach bounce_suppress_after; a suppression stays), for the caller to write; the
 * view has them at once (ml_store_sub_bounced). */
json_t *ml_sub_bounced(ml_t *m, const ml_sub_t *s, const char *reason);
/* Main thread: the subscriber whose VERP reference is REF, or NULL. */
const ml_sub_t *ml_store_sub_by_ref(const ml_t *m, uint64_t ref);
/* Main thread: sets S's bounce counters in the view at once, before its record comes back
 * from the topic, so that a second bounce right behind the first counts from it. */
void ml_store_sub_bounced(ml_t *m, const char *id, const ml_bounce_state_t *b);
/* S's generation as its record spells it, in BUF; NULL if it has none (kept as such). */
const char *ml_sub_generation(const ml_sub_t *s, char *buf, size_t size);
const ml_notice_t *ml_store_notice(const ml_t *m, const char *id);
/* Walks over every subscriber / notice of the view, in no order (main thread; the store must
 * not change during the walk):
 *     ml_store_iter_t it;
 *     for (ml_store_subs_begin(m, &it); (s = ml_store_subs_next(&it));) … */
typedef struct ml_store_iter {
        GHashTableIter it;
} ml_store_iter_t;
void ml_store_subs_begin(const ml_t *m, ml_store_iter_t *it);
const ml_sub_t *ml_store_subs_next(ml_store_iter_t *it);
void ml_store_notices_begin(const ml_t *m, ml_store_iter_t *it);
const ml_notice_t *ml_store_notices_next(ml_store_iter_t *it);
/* Zones known to the view (the bound of ml_sub_t.tz). */
size_t ml_store_zone_count(const ml_t *m);
/* The name of zone index TZ ("Europe/Paris"). */
const char *ml_store_zone_name(const ml_t *m, int tz);
/* The latest version of a notice (following corrections), or NULL if withdrawn/unknown. */
const ml_notice_t *ml_store_latest(const ml_t *m, const char *id);
json_t *ml_sub_json(const ml_t *m, const ml_sub_t *s);
int ml_sub_matches(const ml_t *m, const ml_sub_t *s, const ml_notice_t *n);
/* UTC offset in seconds of zone index TZ at Unix time T. */
int ml_zone_offset(ml_t *m, int tz, int64_t t);
int ml_notice_from_json(const ml_t *m, json_t *data, int64_t ts_ms, ml_notice_t *out);

/* planner.c */
/* The planner's clock: now, shifted by --clock-offset (tests); the store's notice history
 * follows it too. */
int64_t ml_now(const ml_t *m);
/* 1 if the notice or withdrawal N read from R names another category than R's topic. */
int ml_category_mismatch(const ml_t *m, const rd_kafka_message_t *r, const json_t *n, char *reason,
                         size_t size);
int ml_planner_start(ml_t *m, char *errstr, size_t errstr_size);
int ml_planner_poll(ml_t *m);
void ml_planner_stop(ml_t *m);
/* The digest a subscriber would get for the window ending at END_MS (for --preview too). */
json_t *ml_digest_notices(ml_t *m, const ml_sub_t *s, int64_t start_ms, int64_t end_ms);

/* sender.c */
int ml_sender_start(ml_t *m, char *errstr, size_t errstr_size);
int ml_sender_poll(ml_t *m);
/* Graceful stop, first step: sets m->stopping; no new job, no new SMTP session; messages not
 * handed to a session yet are dropped (their jobs stay uncommitted).  Sessions running go on;
 * poll until ml_sender_busy() is 0 or the deadline. */
void ml_sender_quiesce(ml_t *m);
/* Then: sessions still running at DEADLINE_MS (nc_time_now_ms clock; 0 = now) are ended,
 * their outcomes recorded (flushed for at most a few seconds past the deadline), offsets
 * committed, and everything released.  Jobs waiting for a retry stay uncommitted. */
void ml_sender_stop(ml_t *m, int64_t deadline_ms);
size_t ml_sender_busy(ml_t *m);
/* The envelope sender of the message MESSAGE_ID to subscriber ID: its VERP address when
 * [mailer] verp is on, else envelope_from (or from_address). */
void ml_envelope_from(const ml_t *m, const char *id, const char *message_id, char *out,
                      size_t size);

char *ml_render_message(ml_t *m, ml_unit_t *u, const struct ml_templates *templates, size_t *len,
                        char *errstr, size_t errstr_size);

/* sender.c: the session settings from [smtp]; PASSWORD read by the caller, CANCEL (may be
 * NULL) ends its sessions from another thread. */
struct ml_smtp_config;
void ml_sender_smtp_config(const ml_t *m, const char *password, struct ml_smtp_cancel *cancel,
                           struct ml_smtp_config *sc);

/* inbound.c: the events of `noticecast inbound` applied (group <group>.inbound). */
typedef struct ml_inbound ml_inbound_t;
int ml_inbound_start(ml_t *m, char *errstr, size_t errstr_size);
/* Returns 1 when it stopped at a full batch. */
int ml_inbound_poll(ml_t *m);
void ml_inbound_stop(ml_t *m);
rd_kafka_t *ml_inbound_consumer(const ml_t *m);
/* Its consumer's missing ACL, for /readyz; "" = none. */
const char *ml_inbound_denied(const ml_t *m);

/* unsub.c */
/* How a record written for a public page ended (ml_public_write). */
typedef enum ml_public_outcome {
        ML_PUBLIC_WRITTEN,     /* acknowledged by all in-sync replicas */
        ML_PUBLIC_NOT_SAVED,   /* never written, and never will be */
        ML_PUBLIC_UNCONFIRMED, /* the broker's answer never came: maybe written */
} ml_public_outcome_t;
/* Called once, on the poller thread, with the page's deferred request D (to answer) and ARG;
 * WHY is librdkafka's reason when not written. */
typedef void ml_public_done_fn(void *arg, nc_httpd_deferred_t *d, ml_public_outcome_t o,
                               const char *why);
/* Writes VALUE (a subscriber record; NULL = a tombstone) for ID on the subscribers topic with
 * the "noticecast-event" header EVENT, from the HTTP thread; DONE gets the outcome.  Returns
 * 0, or -1 with WHY if it was not queued (then DONE is not called: the caller answers D and
 * keeps ARG). */
int ml_public_write(ml_t *m, const char *id, const char *value, const char *event,
                    nc_httpd_deferred_t *d, ml_public_done_fn *done, void *arg, char *why,
                    size_t why_size);
/* The token for subscriber ID's current subscription (unsub_token.h), at least ML_TOKEN_SIZE
 * bytes; main thread (it reads the view). */
void ml_unsub_token(const ml_t *m, const char *id, char *out, size_t size);
/* Starts the public listener ([mailer] public_listen; "" = none) that will serve
 * /unsubscribe; before ml_unsub_start().  -1 with errstr if it cannot listen. */
int ml_unsub_listen(ml_t *m, char *errstr, size_t errstr_size);
/* The unsubscribe producer and its thread; routes /unsubscribe on the public listener. */
int ml_unsub_start(ml_t *m, char *errstr, size_t errstr_size);
/* Before nc_httpd_stop(): refuses new unsubscribes, waits (bounded) for the acknowledgements
 * of those in flight so that every page shown tells the truth, then frees the producer and
 * stops the public listener. */
void ml_unsub_stop(ml_t *m);

#endif
