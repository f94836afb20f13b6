#include "nc_tail.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nc_time.h"
#include "nc_util.h"

struct nc_tail {
        rd_kafka_t *rk;
        rd_kafka_queue_t *q; /* its consumer queue */
        char *name, *topic;
        int nparts;         /* 0 = not known yet */
        unsigned char *eof; /* per partition: its end was reached since the start */
        int eof_n;          /* how many of them */
        int running;
        int64_t started_ms;
};

nc_tail_t *nc_tail_new(const nc_config_t *cfg, const nc_tail_opts_t *o, char *errstr,
                       size_t errstr_size)
{
        /* From the beginning where a partition holds fewer than RECENT records (librdkafka's
         * default would skip them all); polled by our loop, not waited on at the broker. */
        static const nc_kafka_setting_t set[] = {{"auto.offset.reset", "earliest"},
                                                 {"enable.auto.offset.store", "false"},
                                                 {"fetch.wait.max.ms", "100"},
                                                 {NULL, NULL}};
        nc_kafka_setting_t *all;
        nc_kafka_opts_t ko = {
            .name = o->name,
            .group_id = o->group_id,
            .partition_eof = 1,
            .read_uncommitted = o->read_uncommitted,
            .defaults = o->defaults,
        };
        size_t n = 0, i;
        nc_tail_t *t;
        rd_kafka_t *rk;

        /* Ours first, then the caller's: a later setting of the same key wins. */
        for (i = 0; o->set && o->set[i].key; i++)
                ;
        all = nc_xcalloc(sizeof(set) / sizeof(set[0]) + i, sizeof(*all));
        for (i = 0; set[i].key; i++)
                all[n++] = set[i];
        for (i = 0; o->set && o->set[i].key; i++)
                all[n++] = o->set[i];
        ko.set = all;
        rk = nc_kafka_reader_new(cfg, &ko, errstr, errstr_size);
        free(all);
        if (!rk)
                return NULL;
        t = nc_xcalloc(1, sizeof(*t));
        t->rk = rk;
        t->q = rd_kafka_queue_get_consumer(rk);
        t->name = nc_xstrdup(o->name ? o->name : "tail reader");
        t->topic = nc_xstrdup(o->topic);
        return t;
}

void nc_tail_wake_fd(nc_tail_t *t, int fd, const void *payload, size_t len)
{
        rd_kafka_queue_io_event_enable(t->q, fd, payload, len);
}

int nc_tail_partitions(nc_tail_t *t, int timeout_ms, char *errstr, size_t errstr_size)
{
        int64_t deadline = nc_time_now_ms() + timeout_ms;
        rd_kafka_resp_err_t err;

        while (t->nparts <= 0) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(t->rk, t->topic, NULL);
                int64_t left = deadline - nc_time_now_ms();

                err = rd_kafka_metadata(t->rk, 0, rkt, &md, left > 0 ? (int)left : 1);
                rd_kafka_topic_destroy(rkt);
                if (!err &&
                    (md->topic_cnt != 1 || md->topics[0].err || !md->topics[0].partition_cnt))
                        err = md->topic_cnt == 1 && md->topics[0].err
                                  ? md->topics[0].err
                                  : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
                if (!err) {
                        t->nparts = md->topics[0].partition_cnt;
                        t->eof = nc_xcalloc((size_t)t->nparts, 1);
                }
                if (md)
                        rd_kafka_metadata_destroy(md);
                if (err && nc_time_now_ms() + 100 >= deadline)
                        return nc_err(errstr, errstr_size, "%s: topic %s: %s", t->name, t->topic,
                                      rd_kafka_err2str(err));
                /* A topic created a moment ago is not known to every broker at once. */
                if (err)
                        usleep(100 * 1000);
        }
        return t->nparts;
}

int nc_tail_start(nc_tail_t *t, int64_t recent, int timeout_ms, char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_resp_err_t err;
        int p;

        if (nc_tail_partitions(t, timeout_ms, errstr, errstr_size) < 0) {
                nc_tail_stop(t);
                return -1;
        }
        parts = rd_kafka_topic_partition_list_new(t->nparts);
        for (p = 0; p < t->nparts; p++)
                rd_kafka_topic_partition_list_add(parts, t->topic, p)->offset =
                    RD_KAFKA_OFFSET_TAIL(recent > 0 ? recent : 1);
        /* A new assignment: librdkafka drops what the last one left queued (op versions), so
         * an end reported before this start cannot count after it. */
        memset(t->eof, 0, (size_t)t->nparts);
        t->eof_n = 0;
        err = rd_kafka_assign(t->rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (err) {
                nc_tail_stop(t);
                return nc_err(errstr, errstr_size, "%s: assign %s: %s", t->name, t->topic,
                              rd_kafka_err2str(err));
        }
        t->running = 1;
        t->started_ms = nc_time_now_ms();
        return 0;
}

void nc_tail_stop(nc_tail_t *t)
{
        if (t->running)
                rd_kafka_assign(t->rk, NULL);
        t->running = 0;
}

size_t nc_tail_poll(nc_tail_t *t, size_t max, nc_tail_fn *fn, void *opaque)
{
        rd_kafka_message_t *batch[500];
        size_t handed = 0, want;
        ssize_t n, i;

        if (!t || !t->running)
                return 0;
        do {
                want = sizeof(batch) / sizeof(batch[0]);
                if (max && max - handed < want)
                        want = max - handed;
                n = rd_kafka_consume_batch_queue(t->q, 0, batch, want);
                for (i = 0; i < n; i++) {
                        rd_kafka_message_t *r = batch[i];

                        if (r->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                fn(r, opaque);
                                handed++;
                        } else if (r->partition >= 0 && r->partition < t->nparts &&
                                   !t->eof[r->partition]) {
                                t->eof[r->partition] = 1;
                                t->eof_n++;
                        }
                        rd_kafka_message_destroy(r);
                }
        } while (n == (ssize_t)want && (!max || handed < max));
        return handed;
}

int nc_tail_running(const nc_tail_t *t)
{
        return t && t->running;
}

int nc_tail_caught_up(const nc_tail_t *t)
{
        return t && t->nparts > 0 && t->eof_n == t->nparts;
}

int64_t nc_tail_started_ms(const nc_tail_t *t)
{
        return t ? t->started_ms : 0;
}

void nc_tail_free(nc_tail_t *t)
{
        if (!t)
                return;
        nc_tail_stop(t);
        rd_kafka_queue_destroy(t->q);
        /* Never joined a group: nothing to leave or commit. */
        rd_kafka_destroy_flags(t->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        free(t->eof);
        free(t->name);
        free(t->topic);
        free(t);
}
