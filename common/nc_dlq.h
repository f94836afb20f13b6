/* Dead letter queue records, as both daemons write them, and the bounded key sets that make
 * DLQ writes idempotent.  Owned by the webhooks daemon's maintainers; the mailer's planner
 * uses the record helpers too.
 *
 * A DLQ entry is normally a copy of the record it quarantines (its value and notice headers)
 * plus noticecast-dlq-* headers saying where it came from and why.  A record too large to be
 * copied (over nc_dlq_copy_max() bytes, or refused by the brokers as too large or invalid) is
 * quarantined as a *reference* instead: the same headers plus noticecast-dlq-reference: 1 and
 * noticecast-dlq-size, and as value a small JSON object (nc_dlq_reference_value) naming the
 * source topic, partition, offset and size, the reason and a bounded prefix of the bytes.  The
 * original stays readable on its own topic for that topic's retention.
 *
 * Every entry carries noticecast-dlq-key (nc_dlq_key): stage, the consumed record's topic,
 * partition and offset, and the partner.  noticecast-webhooks follows the DLQ's recent entries
 * and does not write a key that is already there, so a record read again after a restart or a
 * rebalance is not quarantined twice (see wh.h).  The mailer's planner needs no such check: it
 * writes its DLQ records in the same transaction as its consumer offsets. */
#ifndef NC_DLQ_H
#define NC_DLQ_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the original record kept in a reference. */
#define NC_DLQ_PREFIX_MAX 1024
/* Room left for the key, the headers and the record's framing when deciding to copy. */
#define NC_DLQ_HEADROOM 16384
/* Copies stay below this even when message.max.bytes is larger: the brokers' default
 * max.message.bytes (1,048,588) would refuse more. */
#define NC_DLQ_COPY_LIMIT 1000000
/* Longest noticecast-dlq-key. */
#define NC_DLQ_KEY_SIZE 512

/* What to do with a record the brokers (or librdkafka) would not take. */
enum nc_produce_verdict {
        NC_PRODUCE_RETRY = 0, /* transient: produce it again after a backoff */
        NC_PRODUCE_REFUSED,   /* permanent for these bytes (too large, invalid): change them */
};
extern const char *const nc_produce_verdict_names[];

enum nc_produce_verdict nc_produce_classify(rd_kafka_resp_err_t err);

/* Delay before trying a refused produce again after ATTEMPT failures (1, 2, ...): 100 ms
 * doubling up to 5 s. */
int64_t nc_produce_backoff_ms(int attempt);

/* Largest value a DLQ copy may have, given the producer's message.max.bytes (NULL or not a
 * number: librdkafka's default, 1,000,000). */
size_t nc_dlq_copy_max(const char *message_max_bytes);

/* The idempotency key "STAGE/TOPIC/PARTITION/OFFSET/PARTNER" (PARTNER may be NULL: ""). */
void nc_dlq_key(char *buf, size_t size, const char *stage, const char *topic, int32_t partition,
                int64_t offset, const char *partner);

/* A 64-bit digest of DATA (truncated SHA-256), never 0. */
uint64_t nc_key_hash(const void *data, size_t len);

/* Where a quarantined record came from, for the headers and references. */
typedef struct nc_dlq_source {
        const char *stage;  /* "webhooks", "mailer" */
        const char *topic;  /* the notice's original topic */
        int32_t partition;  /* ... partition */
        int64_t offset;     /* ... offset */
        const char *reason; /* why it is quarantined */
        const char *key;    /* nc_dlq_key() */
} nc_dlq_source_t;

/* Adds noticecast-dlq-reason, -stage, -source-topic, -source-partition, -source-offset, -time
 * and -key to H; with SIZE > 0 also noticecast-dlq-reference: 1 and noticecast-dlq-size. */
void nc_dlq_add_headers(rd_kafka_headers_t *h, const nc_dlq_source_t *src, size_t size);

/* The value of a reference (malloc'd JSON, *LEN set):
 *   {"type":"noticecast.dlq.reference","stage","topic","partition","offset","size",
 *    "key","reason","prefix","prefix_bytes"}
 * PREFIX is the first NC_DLQ_PREFIX_MAX bytes of VALUE as text (bytes that are not UTF-8
 * become '?', a character cut at the end is left out); KEY is the record's key, the same way
 * (NULL = JSON null). */
char *nc_dlq_reference_value(const nc_dlq_source_t *src, const void *key, size_t key_len,
                             const void *value, size_t value_len, size_t *len);

/* A bounded set of 64-bit digests: when full, adding forgets the oldest member (FIFO). */
typedef struct nc_keyset {
        uint64_t *slots; /* open addressing, linear probing; 0 = empty */
        size_t mask;     /* slots - 1 (a power of two), 0 before the first add */
        size_t n, max;
        uint64_t *ring; /* members in insertion order, for forgetting the oldest */
        size_t ring_cap, ring_head;
} nc_keyset_t;

void nc_keyset_init(nc_keyset_t *s, size_t max);
/* 1 if H was added, 0 if it was there already. */
int nc_keyset_add(nc_keyset_t *s, uint64_t h);
int nc_keyset_has(const nc_keyset_t *s, uint64_t h);
void nc_keyset_free(nc_keyset_t *s);

#endif
