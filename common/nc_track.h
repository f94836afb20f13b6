/* Offsets of consumed partitions, stored only past finished work.
 *
 * A daemon appends every message it consumes to the track of its partition, in offset order,
 * and settles it once everything the message caused is durable (delivered, parked, recorded).
 * The offset after the longest settled prefix is then stored (rd_kafka_offsets_store, once per
 * loop turn for every partition: nc_tracks_store), so the automatic commit never passes a
 * message whose work is unfinished: after a crash only what was in progress is read again.
 * Both daemons use this with enable.auto.offset.store=false.
 *
 * Tracks of a partition revoked by a rebalance stop storing offsets (they are no longer ours)
 * but stay until their last message is settled; nc_tracks_gc frees them between loop turns. */
#ifndef NC_TRACK_H
#define NC_TRACK_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/* Embedded in the daemon's message struct. */
typedef struct nc_track_msg {
        struct nc_track_msg *next;
        int64_t offset;
        int settled;
} nc_track_msg_t;

/* Embedded first in the daemon's per-partition struct (nc_track_get allocates that size). */
typedef struct nc_track {
        char topic[256];
        int32_t partition;
        int revoked;
        nc_track_msg_t *head, *tail;
        int64_t to_store; /* offset after the settled prefix, not yet stored; -1 = none */
        int64_t stored;   /* last offset stored, -1 = none */
        struct nc_track *next;
} nc_track_t;

/* The live track of TOPIC [PARTITION] in LIST; when there is none, a zeroed one of SIZE bytes
 * (at least sizeof(nc_track_t)) is added and *CREATED (if not NULL) set to 1. */
nc_track_t *nc_track_get(nc_track_t **list, const char *topic, int32_t partition, size_t size,
                         int *created);

/* Appends M, consumed at OFFSET (offsets must come in order, as a partition delivers them). */
void nc_track_append(nc_track_t *t, nc_track_msg_t *m, int64_t offset);

/* Marks M (of track T) settled, then takes the settled prefix off T, handing each message
 * to RELEASE (which frees it); the offset after it is stored by the next nc_tracks_store. */
void nc_track_settle(nc_track_t *t, nc_track_msg_t *m,
                     void (*release)(nc_track_msg_t *m, void *opaque), void *opaque);

/* Stores, in one call to RK, the offsets settled since the last call on every track that is
 * not revoked.  Call it every loop turn, before a revocation and before the final commit.
 * Returns 0 or the error of rd_kafka_offsets_store (the offsets are then tried again next
 * time). */
rd_kafka_resp_err_t nc_tracks_store(nc_track_t *list, rd_kafka_t *rk);

/* Marks the tracks of PARTS revoked (in a rebalance callback, after nc_tracks_store). */
void nc_tracks_revoke(nc_track_t *list, const rd_kafka_topic_partition_list_t *parts);

/* Frees the revoked tracks that hold no message and that BUSY (may be NULL) does not claim;
 * FREE_EXTRA (may be NULL) frees what the daemon's struct owns before the struct itself. */
void nc_tracks_gc(nc_track_t **list, int (*busy)(const nc_track_t *t),
                  void (*free_extra)(nc_track_t *t));

/* Frees every track and, through RELEASE, every message still on them (at exit). */
void nc_tracks_free(nc_track_t **list, void (*release)(nc_track_msg_t *m, void *opaque),
                    void *opaque, void (*free_extra)(nc_track_t *t));

#endif
