/* noticecast-webhooks: internal types.
 *
 * One single-threaded event loop drives everything: the Kafka consumer (notice topics and the
 * retry tiers), a Kafka producer (retry tiers, DLQ, delivery events) and a libcurl multi
 * handle.  Work flows like this:
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
 * crash at any moment repeats at most the deliveries that were in flight. */
#ifndef WH_H
#define WH_H

#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <sys/queue.h>

#include "nc_config.h"
#include "nc_metrics.h"
#include "nc_sign.h"
#include "nc_track.h"

struct wh;
struct wh_track;
struct wh_partner;

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
        char *std_body;   /* the "standard" payload, built once and shared by partners */
        size_t std_body_len;

        /* Retry records only. */
        int is_retry;
        char partner[64];
        int attempt; /* attempt number to make now */
        int64_t due_ms;
        char src_topic[256]; /* where the notice was first read, for DLQ headers */
        int32_t src_partition;
        int64_t src_offset;
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
        char *body; /* NULL until the first attempt; may point to msg->std_body */
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

/* A record produced by the daemon whose acknowledgement settles something. */
typedef struct wh_produce {
        wh_job_t *job; /* job to settle, or NULL */
        wh_msg_t *msg; /* message to settle directly (DLQ of invalid input), or NULL */
        /* Kept to produce again if the brokers refused it (we never drop a record). */
        const char *topic; /* not owned: one of wh_t's topic names */
        char *key;
        void *value;
        size_t value_len;
        rd_kafka_headers_t *hdrs; /* until produced; taken back from a failed delivery */
} wh_produce_t;

typedef struct wh {
        nc_config_t cfg;
        const char *config_path;
        nc_strlist_t xprops;
        const char *brokers;

        rd_kafka_t *consumer;
        rd_kafka_t *producer;
        rd_kafka_queue_t *cq; /* consumer queue */
        CURLM *multi;
        int epfd;              /* the wake pipe and libcurl's sockets */
        int64_t curl_timer_ms; /* when libcurl wants to be called for its timeouts, -1 = no */
        int wake_pipe[2];

        wh_partner_t *partners;
        nc_track_t *tracks; /* wh_track_t */
        size_t outstanding; /* unsettled messages: consumption pauses above a bound */
        int consuming_paused;
        int64_t next_timer_ms;
        int ready;
        int stopping;

        char retry_topics[16][256]; /* one per schedule entry (same delay = same topic) */
        char dlq_topic[256];
        char events_topic[256];
        char notice_regex[300];

        nc_metrics_t *metrics;
        nc_metric_t *m_deliveries, *m_latency, *m_backlog, *m_lag, *m_dlq, *m_inflight;
        struct nc_httpd *httpd;
} wh_t;

/* wh_kafka.c */
int wh_kafka_start(wh_t *w, char *errstr, size_t errstr_size);
void wh_kafka_poll(wh_t *w);
void wh_kafka_stop(wh_t *w);
void wh_msg_settle_one(wh_t *w, wh_msg_t *m);
void wh_produce_record(wh_t *w, wh_produce_t *pr);
wh_produce_t *wh_dlq_record(wh_t *w, wh_msg_t *m, const char *partner, const char *reason);
wh_produce_t *wh_retry_record(wh_t *w, wh_msg_t *m, const char *partner, int next_attempt,
                              int64_t due_ms, int tier);
wh_produce_t *wh_event_record(wh_t *w, const wh_job_t *j, const char *outcome, long status,
                              const char *error, double latency_ms);
void wh_timers(wh_t *w, int64_t now);

/* wh_deliver.c */
int wh_partners_apply(wh_t *w, const nc_config_t *cfg, char *errstr, size_t errstr_size);
void wh_dispatch(wh_t *w, wh_msg_t *m);
void wh_deliver_pump(wh_t *w);
void wh_deliver_completed(wh_t *w);
void wh_job_settle_one(wh_t *w, wh_job_t *j);
void wh_partners_free(wh_t *w);
/* Shutdown: drops queued and running jobs without settling them (they will be resent). */
void wh_deliver_abandon(wh_t *w);
size_t wh_in_flight(const wh_t *w);

#endif
