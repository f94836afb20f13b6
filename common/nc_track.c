#include "nc_track.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_util.h"

nc_track_t *nc_track_get(nc_track_t **list, const char *topic, int32_t partition, size_t size,
                         int *created)
{
        nc_track_t *t;

        for (t = *list; t; t = t->next)
                if (t->partition == partition && !t->revoked && !strcmp(t->topic, topic))
                        return t;
        t = nc_xcalloc(1, size < sizeof(*t) ? sizeof(*t) : size);
        snprintf(t->topic, sizeof(t->topic), "%s", topic);
        t->partition = partition;
        t->to_store = t->stored = -1;
        t->next = *list;
        *list = t;
        if (created)
                *created = 1;
        return t;
}

void nc_track_append(nc_track_t *t, nc_track_msg_t *m, int64_t offset)
{
        m->next = NULL;
        m->offset = offset;
        m->settled = 0;
        if (t->tail)
                t->tail->next = m;
        else
                t->head = m;
        t->tail = m;
}

void nc_track_settle(nc_track_t *t, nc_track_msg_t *m,
                     void (*release)(nc_track_msg_t *m, void *opaque), void *opaque)
{
        m->settled = 1;
        while ((m = t->head) && m->settled) {
                t->to_store = m->offset + 1;
                t->head = m->next;
                if (!t->head)
                        t->tail = NULL;
                release(m, opaque);
        }
}

rd_kafka_resp_err_t nc_tracks_store(nc_track_t *list, rd_kafka_t *rk)
{
        rd_kafka_topic_partition_list_t *l = NULL;
        rd_kafka_resp_err_t err;
        nc_track_t *t;

        for (t = list; t; t = t->next)
                if (!t->revoked && t->to_store > t->stored) {
                        if (!l)
                                l = rd_kafka_topic_partition_list_new(4);
                        rd_kafka_topic_partition_list_add(l, t->topic, t->partition)->offset =
                            t->to_store;
                }
        if (!l)
                return RD_KAFKA_RESP_ERR_NO_ERROR;
        err = rd_kafka_offsets_store(rk, l);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                for (t = list; t; t = t->next)
                        if (!t->revoked && t->to_store > t->stored)
                                t->stored = t->to_store;
        rd_kafka_topic_partition_list_destroy(l);
        return err;
}

void nc_tracks_revoke(nc_track_t *list, const rd_kafka_topic_partition_list_t *parts)
{
        nc_track_t *t;
        int i;

        for (i = 0; i < parts->cnt; i++)
                for (t = list; t; t = t->next)
                        if (t->partition == parts->elems[i].partition &&
                            !strcmp(t->topic, parts->elems[i].topic))
                                t->revoked = 1;
}

void nc_tracks_gc(nc_track_t **list, int (*busy)(const nc_track_t *t),
                  void (*free_extra)(nc_track_t *t))
{
        nc_track_t **pp = list, *t;

        while ((t = *pp)) {
                if (t->revoked && !t->head && !(busy && busy(t))) {
                        *pp = t->next;
                        if (free_extra)
                                free_extra(t);
                        free(t);
                } else {
                        pp = &t->next;
                }
        }
}

void nc_tracks_free(nc_track_t **list, void (*release)(nc_track_msg_t *m, void *opaque),
                    void *opaque, void (*free_extra)(nc_track_t *t))
{
        nc_track_t *t, *next;
        nc_track_msg_t *m, *mn;

        for (t = *list; t; t = next) {
                next = t->next;
                for (m = t->head; m; m = mn) {
                        mn = m->next;
                        release(m, opaque);
                }
                if (free_extra)
                        free_extra(t);
                free(t);
        }
        *list = NULL;
}
