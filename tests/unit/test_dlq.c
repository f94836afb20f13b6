/* Unit tests for common/nc_dlq.c: which produce errors are permanent, the backoff, the copy
 * limit, the idempotency key, reference values (bounded, valid JSON whatever the bytes) and
 * the bounded key set (membership, forgetting the oldest, deletion keeping probe chains). */
#include "nc_test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nc_dlq.h"

static void test_classify(void **state)
{
        (void)state;
        assert_int_equal(nc_produce_classify(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE),
                         NC_PRODUCE_REFUSED);
        assert_int_equal(nc_produce_classify(RD_KAFKA_RESP_ERR_INVALID_RECORD), NC_PRODUCE_REFUSED);
        assert_int_equal(nc_produce_classify(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE),
                         NC_PRODUCE_REFUSED);
        assert_int_equal(nc_produce_classify(RD_KAFKA_RESP_ERR__QUEUE_FULL), NC_PRODUCE_RETRY);
        assert_int_equal(nc_produce_classify(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), NC_PRODUCE_RETRY);
        assert_int_equal(nc_produce_classify(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART),
                         NC_PRODUCE_RETRY);
        assert_int_equal(nc_produce_classify(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS),
                         NC_PRODUCE_RETRY);
        assert_string_equal(nc_produce_verdict_names[NC_PRODUCE_REFUSED], "refused");
        assert_string_equal(nc_produce_verdict_names[NC_PRODUCE_RETRY], "retry");
}

static void test_backoff(void **state)
{
        (void)state;
        assert_int_equal(nc_produce_backoff_ms(1), 100);
        assert_int_equal(nc_produce_backoff_ms(2), 200);
        assert_int_equal(nc_produce_backoff_ms(4), 800);
        assert_int_equal(nc_produce_backoff_ms(7), 5000);
        assert_int_equal(nc_produce_backoff_ms(1000), 5000);
        assert_int_equal(nc_produce_backoff_ms(0), 100);
}

static void test_copy_max(void **state)
{
        (void)state;
        assert_int_equal(nc_dlq_copy_max(NULL), 1000000 - NC_DLQ_HEADROOM);
        assert_int_equal(nc_dlq_copy_max("junk"), 1000000 - NC_DLQ_HEADROOM);
        assert_int_equal(nc_dlq_copy_max("500000"), 500000 - NC_DLQ_HEADROOM);
        /* a larger producer limit does not make copies the brokers would refuse */
        assert_int_equal(nc_dlq_copy_max("2000000"), NC_DLQ_COPY_LIMIT - NC_DLQ_HEADROOM);
        assert_int_equal(nc_dlq_copy_max("1000"), NC_DLQ_HEADROOM);
        /* the 1,000,294-byte notice of issue 8 is never copied */
        assert_true(1000294 > nc_dlq_copy_max("2000000"));
}

static void test_key(void **state)
{
        char k[NC_DLQ_KEY_SIZE];

        (void)state;
        nc_dlq_key(k, sizeof(k), "webhooks", "nc.notices.news", 2, 12345, "pe-pcm");
        assert_string_equal(k, "webhooks/nc.notices.news/2/12345/pe-pcm");
        nc_dlq_key(k, sizeof(k), "mailer", "t", 0, 0, NULL);
        assert_string_equal(k, "mailer/t/0/0/");
        assert_true(nc_key_hash("a", 1) != nc_key_hash("b", 1));
        assert_true(nc_key_hash("a", 1) == nc_key_hash("a", 1));
        assert_true(nc_key_hash("", 0) != 0);
}

static void test_reference_value(void **state)
{
        nc_dlq_source_t src = {.stage = "webhooks",
                               .topic = "nc.notices.news",
                               .partition = 1,
                               .offset = 42,
                               .reason = "invalid notice: body.en: too long",
                               .key = "webhooks/nc.notices.news/1/42/"};
        size_t big = 1000294, len;
        char *value = malloc(big), *ref;
        json_t *o;

        (void)state;
        /* start with a character the prefix limit cuts (é = c3 a9 at bytes 1023-1024) */
        memset(value, 'x', big);
        value[0] = '{';
        value[NC_DLQ_PREFIX_MAX - 1] = (char)0xc3;
        value[NC_DLQ_PREFIX_MAX] = (char)0xa9;
        value[10] = (char)0xff; /* not UTF-8 */
        value[11] = '\0';       /* kept, escaped */
        ref = nc_dlq_reference_value(&src, "k\xff", 2, value, big, &len);
        assert_true(len < 4096);
        o = json_loadb(ref, len, JSON_ALLOW_NUL, NULL);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "type")),
                            "noticecast.dlq.reference");
        assert_string_equal(json_string_value(json_object_get(o, "topic")), "nc.notices.news");
        assert_int_equal(json_integer_value(json_object_get(o, "partition")), 1);
        assert_int_equal(json_integer_value(json_object_get(o, "offset")), 42);
        assert_int_equal(json_integer_value(json_object_get(o, "size")), big);
        assert_int_equal(json_integer_value(json_object_get(o, "prefix_bytes")), NC_DLQ_PREFIX_MAX);
        assert_string_equal(json_string_value(json_object_get(o, "key")), "k?");
        assert_string_equal(json_string_value(json_object_get(o, "reason")), src.reason);
        /* 1023 bytes: the cut é left out, 0xff replaced, the NUL kept */
        assert_int_equal(json_string_length(json_object_get(o, "prefix")), NC_DLQ_PREFIX_MAX - 1);
        assert_int_equal(json_string_value(json_object_get(o, "prefix"))[10], '?');
        assert_int_equal(json_string_value(json_object_get(o, "prefix"))[11], '\0');
        json_decref(o);
        free(ref);

        /* a short value is kept whole; no key is null */
        ref = nc_dlq_reference_value(&src, NULL, 0, "{\"a\":\"\xc3\xa9\"}", 10, &len);
        o = json_loads(ref, 0, NULL);
        assert_non_null(o);
        assert_true(json_is_null(json_object_get(o, "key")));
        assert_string_equal(json_string_value(json_object_get(o, "prefix")),
                            "{\"a\":\"\xc3\xa9\"}");
        assert_int_equal(json_integer_value(json_object_get(o, "prefix_bytes")), 10);
        json_decref(o);
        free(ref);
        free(value);
}

static void test_headers(void **state)
{
        nc_dlq_source_t src = {"mailer", "t", 3, 7, "why", "mailer/t/3/7/"};
        rd_kafka_headers_t *h = rd_kafka_headers_new(8);
        const void *v;
        size_t n;

        (void)state;
        nc_dlq_add_headers(h, &src, 0);
        assert_int_equal(rd_kafka_header_get_last(h, "noticecast-dlq-reference", &v, &n),
                         RD_KAFKA_RESP_ERR__NOENT);
        assert_int_equal(rd_kafka_header_get_last(h, "noticecast-dlq-key", &v, &n), 0);
        assert_memory_equal(v, "mailer/t/3/7/", n);
        assert_int_equal(rd_kafka_header_get_last(h, "noticecast-dlq-source-offset", &v, &n), 0);
        assert_memory_equal(v, "7", n);
        rd_kafka_headers_destroy(h);

        h = rd_kafka_headers_new(8);
        nc_dlq_add_headers(h, &src, 1000294);
        assert_int_equal(rd_kafka_header_get_last(h, "noticecast-dlq-reference", &v, &n), 0);
        assert_memory_equal(v, "1", n);
        assert_int_equal(rd_kafka_header_get_last(h, "noticecast-dlq-size", &v, &n), 0);
        assert_memory_equal(v, "1000294", n);
        rd_kafka_headers_destroy(h);
}

static void test_keyset_basic(void **state)
{
        nc_keyset_t s;
        uint64_t i;

        (void)state;
        nc_keyset_init(&s, 100000);
        assert_false(nc_keyset_has(&s, 5));
        for (i = 1; i <= 20000; i++)
                assert_int_equal(nc_keyset_add(&s, i * 0x9e3779b97f4a7c15ULL), 1);
        for (i = 1; i <= 20000; i++) {
                assert_true(nc_keyset_has(&s, i * 0x9e3779b97f4a7c15ULL));
                assert_int_equal(nc_keyset_add(&s, i * 0x9e3779b97f4a7c15ULL), 0);
        }
        assert_false(nc_keyset_has(&s, 12345));
        assert_int_equal(s.n, 20000);
        nc_keyset_free(&s);
}

/* When full, the oldest are forgotten, in order, and everything younger stays findable even
 * with colliding home slots (small values all hash near each other). */
static void test_keyset_evicts_oldest(void **state)
{
        nc_keyset_t s;
        uint64_t i;

        (void)state;
        nc_keyset_init(&s, 100);
        for (i = 1; i <= 100; i++)
                nc_keyset_add(&s, i);
        for (i = 101; i <= 1000; i++) {
                assert_int_equal(nc_keyset_add(&s, i), 1);
                assert_false(nc_keyset_has(&s, i - 100));
                for (uint64_t j = i - 99; j <= i; j++)
                        assert_true(nc_keyset_has(&s, j));
        }
        assert_int_equal(s.n, 100);
        nc_keyset_free(&s);

        /* keys crowding one probe chain, across the table's wrap-around */
        nc_keyset_init(&s, 20);
        for (i = 0; i < 500; i++) {
                uint64_t h = ((i % 7) + 60) | (i << 40); /* homes 60..66 of a 64-slot table */

                nc_keyset_add(&s, h);
                for (uint64_t j = i >= 19 ? i - 19 : 0; j <= i; j++)
                        assert_true(nc_keyset_has(&s, ((j % 7) + 60) | (j << 40)));
        }
        nc_keyset_free(&s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_classify),        cmocka_unit_test(test_backoff),
            cmocka_unit_test(test_copy_max),        cmocka_unit_test(test_key),
            cmocka_unit_test(test_reference_value), cmocka_unit_test(test_headers),
            cmocka_unit_test(test_keyset_basic),    cmocka_unit_test(test_keyset_evicts_oldest),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
