/* Unit tests for common/nc_track.c: offsets are stored only past the settled prefix of a
 * partition, in order, never for a revoked partition; revoked tracks are freed once empty.
 * A real librdkafka consumer without brokers: assign() and offsets_store() are local. */
#include "nc_test.h"

#include <stdlib.h>
#include <string.h>

#include "nc_track.h"

typedef struct {
        nc_track_msg_t tm;
        int id;
} item_t;

typedef struct {
        nc_track_t base;
        int extra_freed;
} my_track_t;

static int released[16], nreleased;

static void release(nc_track_msg_t *m, void *opaque)
{
        (void)opaque;
        released[nreleased++] = ((item_t *)m)->id;
        free(m);
}

static rd_kafka_t *consumer(void)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *l;
        char err[256];
        rd_kafka_t *rk;

        assert_int_equal(rd_kafka_conf_set(conf, "group.id", "t", err, sizeof(err)), 0);
        assert_int_equal(
            rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, sizeof(err)), 0);
        /* No broker: nothing may try to reach one, now or when the handle is destroyed. */
        assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)),
                         0);
        assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)), 0);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        assert_non_null(rk);
        l = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(l, "n", 0);
        rd_kafka_topic_partition_list_add(l, "n", 1);
        assert_int_equal(rd_kafka_assign(rk, l), 0);
        rd_kafka_topic_partition_list_destroy(l);
        return rk;
}

/* Without a broker a consumer close would wait for the group coordinator for ever. */
static void destroy(rd_kafka_t *rk)
{
        rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

static item_t *item(int id)
{
        item_t *it = calloc(1, sizeof(*it));

        it->id = id;
        return it;
}

static void test_settled_prefix(void **state)
{
        nc_track_t *list = NULL, *t, *t1;
        rd_kafka_t *rk = consumer();
        item_t *a = item(10), *b = item(11), *c = item(12);
        int created = 0;

        (void)state;
        nreleased = 0;
        t = nc_track_get(&list, "n", 0, sizeof(nc_track_t), &created);
        assert_int_equal(created, 1);
        assert_int_equal(t->stored, -1);
        created = 0;
        assert_ptr_equal(nc_track_get(&list, "n", 0, 0, &created), t);
        assert_int_equal(created, 0);
        t1 = nc_track_get(&list, "n", 1, sizeof(nc_track_t), NULL);
        assert_ptr_not_equal(t1, t);

        nc_track_append(t, &a->tm, 10);
        nc_track_append(t, &b->tm, 11);
        nc_track_append(t, &c->tm, 12);
        /* The middle one settles first: nothing can be stored yet. */
        nc_track_settle(t, &b->tm, release, NULL);
        assert_int_equal(nreleased, 0);
        assert_int_equal(nc_tracks_store(list, rk), 0);
        assert_int_equal(t->stored, -1);
        /* The first one: both go, and the offset after the second is stored. */
        nc_track_settle(t, &a->tm, release, NULL);
        assert_int_equal(nreleased, 2);
        assert_int_equal(released[0], 10);
        assert_int_equal(released[1], 11);
        assert_int_equal(t->stored, -1); /* not before nc_tracks_store */
        assert_int_equal(nc_tracks_store(list, rk), 0);
        assert_int_equal(t->stored, 12);
        assert_int_equal(t1->stored, -1); /* nothing settled there */
        assert_ptr_equal(t->head, &c->tm);
        nc_track_settle(t, &c->tm, release, NULL);
        assert_int_equal(nc_tracks_store(list, rk), 0);
        assert_int_equal(t->stored, 13);
        assert_null(t->head);
        assert_null(t->tail);

        nc_tracks_free(&list, release, NULL, NULL);
        assert_null(list);
        destroy(rk);
}

static int busy_flag;

static int busy(const nc_track_t *t)
{
        (void)t;
        return busy_flag;
}

static void free_extra(nc_track_t *t)
{
        ((my_track_t *)t)->extra_freed++;
}

static void test_revoked(void **state)
{
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        nc_track_t *list = NULL, *t, *t2;
        rd_kafka_t *rk = consumer();
        item_t *a = item(20), *b = item(21);

        (void)state;
        nreleased = 0;
        t = nc_track_get(&list, "n", 1, sizeof(my_track_t), NULL);
        nc_track_append(t, &a->tm, 20);
        rd_kafka_topic_partition_list_add(l, "n", 1);
        nc_tracks_revoke(list, l);
        rd_kafka_topic_partition_list_destroy(l);
        assert_int_equal(t->revoked, 1);
        /* The partition comes back (to us again): a new track, the old one drains apart. */
        t2 = nc_track_get(&list, "n", 1, sizeof(my_track_t), NULL);
        assert_ptr_not_equal(t2, t);
        nc_track_append(t2, &b->tm, 21);
        /* Not empty: kept. */
        nc_tracks_gc(&list, NULL, free_extra);
        assert_non_null(list);
        nc_track_settle(t, &a->tm, release, NULL);
        assert_int_equal(nreleased, 1);
        assert_int_equal(nc_tracks_store(list, rk), 0);
        assert_int_equal(t->stored, -1); /* revoked: no longer ours to store */
        /* Empty, but claimed by the daemon: kept; then freed. */
        busy_flag = 1;
        nc_tracks_gc(&list, busy, free_extra);
        assert_ptr_equal(list->next, t);
        busy_flag = 0;
        nc_tracks_gc(&list, busy, free_extra);
        assert_ptr_equal(list, t2);
        assert_null(list->next);
        nc_track_settle(t2, &b->tm, release, NULL);
        assert_int_equal(nc_tracks_store(list, rk), 0);
        assert_int_equal(t2->stored, 22);
        nc_tracks_free(&list, release, NULL, free_extra);
        destroy(rk);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_settled_prefix),
            cmocka_unit_test(test_revoked),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
