/* A tail reader: the last records of every partition of one topic, then what comes live.
 *
 * A group-less consumer (nc_kafka_reader_new: assign() only, it never joins a group nor
 * commits) that, on each nc_tail_start(), is assigned every partition of its topic from RECENT
 * records before the partition's end (from the beginning if it holds fewer), and reads on from
 * there until stopped.  What it reads is handed to the caller's function by nc_tail_poll(),
 * from the caller's loop: nothing is read in a callback of librdkafka's.
 *
 * Caught up: every partition of the topic reported its end (librdkafka's end-of-partition
 * event) at least once since the last nc_tail_start().  The end is the high watermark with
 * o->read_uncommitted; with read_committed it is the last stable offset, which an open
 * transaction of another producer holds back (what follows it is read once the transaction
 * ends, possibly after "caught up").  So once caught up, every record within the window (the
 * last RECENT of each partition) that was there when the reader reached that partition's end
 * has been handed to the caller; records appended later are read on, live, without changing
 * the state.  Giving up on catching up after a while is the caller's (nc_tail_started_ms()).
 *
 * Restart: nc_tail_start() again (e.g. on each assignment of another consumer, whose work
 * must wait for a fresh catch-up) reassigns from the tail and clears "caught up"; a reader
 * that only needs the catch-up may nc_tail_stop() once caught up.
 *
 * Threading: not thread-safe; one thread (the owner's loop) calls every function.  The wake
 * fd is written by librdkafka's threads, which is librdkafka's business.
 *
 * Ownership: nc_tail_t owns its client and queue; the caller owns the configuration it passed
 * (not kept), and the messages handed to FN stay the reader's (destroyed after FN returns). */
#ifndef NC_TAIL_H
#define NC_TAIL_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "nc_config.h"
#include "nc_kafka.h"

typedef struct nc_tail nc_tail_t;

typedef struct nc_tail_opts {
        const char *name;  /* for logs and errors: "dlq reader" */
        const char *topic; /* copied */
        /* Only satisfies librdkafka (nothing joins or commits); yields to [kafka] group.id. */
        const char *group_id;
        int read_uncommitted; /* see "caught up" above */
        /* Extra properties, as in nc_kafka_opts_t (set: win over [kafka]; defaults: yield). */
        const nc_kafka_setting_t *set;
        const nc_kafka_setting_t *defaults;
} nc_tail_opts_t;

/* Builds the reader (nothing is assigned yet, no broker is needed).  NULL with errstr naming
 * the reader and the property on a configuration error. */
nc_tail_t *nc_tail_new(const nc_config_t *cfg, const nc_tail_opts_t *o, char *errstr,
                       size_t errstr_size);

/* Writes PAYLOAD (LEN bytes) to FD whenever the reader's queue turns non-empty, so that a
 * loop blocked in poll/epoll on FD's other end wakes up for it.  Optional. */
void nc_tail_wake_fd(nc_tail_t *t, int fd, const void *payload, size_t len);

/* Learns how many partitions the topic has (metadata, asked again until the topic shows up,
 * for at most TIMEOUT_MS; kept once known).
 * Returns the count (> 0), or -1 with errstr (unknown topic, no broker). */
int nc_tail_partitions(nc_tail_t *t, int timeout_ms, char *errstr, size_t errstr_size);

/* (Re)starts: assigns every partition from RECENT (> 0) records before its end, and clears
 * "caught up" (librdkafka purges what the earlier assignment left queued).  Learns the
 * partitions first if nc_tail_partitions() was not called (TIMEOUT_MS).  Returns 0, or -1
 * with errstr (the reader is then stopped). */
int nc_tail_start(nc_tail_t *t, int64_t recent, int timeout_ms, char *errstr, size_t errstr_size);

/* Stops reading (unassigns); nc_tail_start() resumes. */
void nc_tail_stop(nc_tail_t *t);

/* Hands FN, in offset order per partition, each record and each error the reader met
 * (m->err set; the end-of-partition events are kept to itself): at most MAX of them (0 = all
 * that are there), without waiting.  Returns how many it handed over. */
typedef void(nc_tail_fn)(const rd_kafka_message_t *m, void *opaque);
size_t nc_tail_poll(nc_tail_t *t, size_t max, nc_tail_fn *fn, void *opaque);

/* Whether it is running (started, not stopped); whether it was caught up since the last
 * start (it stays so once it was). */
int nc_tail_running(const nc_tail_t *t);
int nc_tail_caught_up(const nc_tail_t *t);
/* Wall-clock ms of the last start (0 = never): e.g. to give up on catching up. */
int64_t nc_tail_started_ms(const nc_tail_t *t);

/* Stops and frees T (NULL is fine): no group to leave, so this never waits for a broker. */
void nc_tail_free(nc_tail_t *t);

#endif
