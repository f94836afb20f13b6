#include "nc_dlq.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_time.h"
#include "nc_util.h"

const char *const nc_produce_verdict_names[] = {"retry", "refused"};

enum nc_produce_verdict nc_produce_classify(rd_kafka_resp_err_t err)
{
        switch (err) {
        /* These bytes will never be taken, however often they are sent. */
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR__BAD_MSG:
                return NC_PRODUCE_REFUSED;
        default:
                /* Timeouts, full queues, leaders moving, brokers away, missing topics or
                 * ACLs: an operator or the cluster can fix these, so keep trying. */
                return NC_PRODUCE_RETRY;
        }
}

int64_t nc_produce_backoff_ms(int attempt)
{
        int64_t ms = 100;

        while (--attempt > 0 && ms < 5000)
                ms *= 2;
        return ms < 5000 ? ms : 5000;
}

size_t nc_dlq_copy_max(const char *message_max_bytes)
{
        long long v = 1000000;
        char *end;

        if (message_max_bytes) {
                long long x = strtoll(message_max_bytes, &end, 10);

                if (end != message_max_bytes && !*end && x > 0)
                        v = x;
        }
        if (v > NC_DLQ_COPY_LIMIT)
                v = NC_DLQ_COPY_LIMIT;
        return v > 2 * NC_DLQ_HEADROOM ? (size_t)(v - NC_DLQ_HEADROOM) : NC_DLQ_HEADROOM;
}

void nc_dlq_key(char *buf, size_t size, const char *stage, const char *topic, int32_t partition,
                int64_t offset, const char *partner)
{
        snprintf(buf, size, "%s/%s/%d/%lld/%s", stage, topic, (int)partition, (long long)offset,
                 partner ? partner : "");
}

uint64_t nc_key_hash(const void *data, size_t len)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        uint64_t h = 0;
        int i;

        if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8)
                fatalx("SHA-256 unavailable");
        for (i = 0; i < 8; i++)
                h = h << 8 | md[i];
        return h ? h : 1;
}

static void hdr_int(rd_kafka_headers_t *h, const char *name, long long v)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%lld", v);
        rd_kafka_header_add(h, name, -1, buf, -1);
}

void nc_dlq_add_headers(rd_kafka_headers_t *h, const nc_dlq_source_t *src, size_t size)
{
        char ts[40];

        rd_kafka_header_add(h, "noticecast-dlq-reason", -1, src->reason, -1);
        rd_kafka_header_add(h, "noticecast-dlq-stage", -1, src->stage, -1);
        rd_kafka_header_add(h, "noticecast-dlq-source-topic", -1, src->topic, -1);
        hdr_int(h, "noticecast-dlq-source-partition", src->partition);
        hdr_int(h, "noticecast-dlq-source-offset", src->offset);
        rd_kafka_header_add(h, "noticecast-dlq-time", -1,
                            nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)), -1);
        if (src->key)
                rd_kafka_header_add(h, "noticecast-dlq-key", -1, src->key, -1);
        if (size > 0) {
                rd_kafka_header_add(h, "noticecast-dlq-reference", -1, "1", -1);
                hdr_int(h, "noticecast-dlq-size", (long long)size);
        }
}

/* Length of the UTF-8 sequence at P (at most N bytes), 0 if it is not one. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
        size_t len, i;
        uint32_t cp;

        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xc2 && p[0] <= 0xdf) {
                len = 2;
                cp = p[0] & 0x1f;
        } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                len = 3;
                cp = p[0] & 0x0f;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                len = 4;
                cp = p[0] & 0x07;
        } else {
                return 0;
        }
        if (len > n)
                return 0;
        for (i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        return len;
}

/* The first MAX bytes of P as a JSON string: invalid bytes become '?', and a sequence cut by
 * the limit is left out. */
static json_t *text_prefix(const void *data, size_t len, size_t max)
{
        const unsigned char *p = data;
        size_t n = len < max ? len : max, i = 0, o = 0;
        char *out = nc_xmalloc(n + 1);
        json_t *s;

        while (i < n) {
                size_t l = utf8_seq(p + i, n - i);

                if (l == 0) {
                        /* A valid sequence that the limit cut: leave it out. */
                        if (n < len && utf8_seq(p + i, len - i) > n - i)
                                break;
                        out[o++] = '?';
                        i++;
                        continue;
                }
                memcpy(out + o, p + i, l);
                o += l;
                i += l;
        }
        s = json_stringn(out, o);
        free(out);
        return s ? s : json_string("");
}

char *nc_dlq_reference_value(const nc_dlq_source_t *src, const void *key, size_t key_len,
                             const void *value, size_t value_len, size_t *len)
{
        json_t *o = json_object();
        char *s;

        json_object_set_new(o, "type", json_string("noticecast.dlq.reference"));
        json_object_set_new(o, "stage", json_string(src->stage));
        json_object_set_new(o, "topic", json_string(src->topic));
        json_object_set_new(o, "partition", json_integer(src->partition));
        json_object_set_new(o, "offset", json_integer(src->offset));
        json_object_set_new(o, "size", json_integer((json_int_t)value_len));
        json_object_set_new(o, "key", key ? text_prefix(key, key_len, 256) : json_null());
        json_object_set_new(o, "reason", text_prefix(src->reason, strlen(src->reason), 2048));
        json_object_set_new(o, "prefix",
                            text_prefix(value ? value : "", value_len, NC_DLQ_PREFIX_MAX));
        json_object_set_new(o, "prefix_bytes",
                            json_integer(value_len < NC_DLQ_PREFIX_MAX ? (json_int_t)value_len
                                                                       : NC_DLQ_PREFIX_MAX));
        s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!s)
                fatalx("out of memory");
        *len = strlen(s);
        return s;
}

/* ---- key sets -------------------------------------------------------------------------- */

void nc_keyset_init(nc_keyset_t *s, size_t max)
{
        memset(s, 0, sizeof(*s));
        s->max = max ? max : 1;
}

void nc_keyset_free(nc_keyset_t *s)
{
        free(s->slots);
        free(s->ring);
        memset(s, 0, sizeof(*s));
}

static size_t find_slot(const nc_keyset_t *s, uint64_t h)
{
        size_t i = (size_t)h & s->mask;

        while (s->slots[i] && s->slots[i] != h)
                i = (i + 1) & s->mask;
        return i;
}

int nc_keyset_has(const nc_keyset_t *s, uint64_t h)
{
        if (!s->mask || !h)
                return 0;
        return s->slots[find_slot(s, h)] == h;
}

static void table_grow(nc_keyset_t *s)
{
        size_t cap = s->mask ? (s->mask + 1) * 2 : 64, i, old = s->mask ? s->mask + 1 : 0;
        uint64_t *prev = s->slots;

        s->slots = nc_xcalloc(cap, sizeof(*s->slots));
        s->mask = cap - 1;
        for (i = 0; i < old; i++)
                if (prev[i])
                        s->slots[find_slot(s, prev[i])] = prev[i];
        free(prev);
}

/* Backward-shift deletion: keeps every probe chain unbroken without tombstones. */
static void table_remove(nc_keyset_t *s, uint64_t h)
{
        size_t i = find_slot(s, h), j = i, k;

        if (s->slots[i] != h)
                return;
        s->slots[i] = 0;
        for (;;) {
                j = (j + 1) & s->mask;
                if (!s->slots[j])
                        break;
                k = (size_t)s->slots[j] & s->mask; /* where it would like to be */
                /* Move it into the hole unless its home lies cyclically in (i, j]. */
                if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
                        s->slots[i] = s->slots[j];
                        s->slots[j] = 0;
                        i = j;
                }
        }
}

int nc_keyset_add(nc_keyset_t *s, uint64_t h)
{
        if (!h)
                h = 1;
        if (nc_keyset_has(s, h))
                return 0;
        if (s->n == s->max) {
                /* Full: forget the oldest member; its slot in the ring takes the new one. */
                table_remove(s, s->ring[s->ring_head]);
                s->ring[s->ring_head] = h;
                s->ring_head = (s->ring_head + 1) % s->max;
                s->slots[find_slot(s, h)] = h;
                return 1;
        }
        if (!s->mask || (s->n + 1) * 2 > s->mask + 1)
                table_grow(s);
        if (s->n == s->ring_cap) {
                s->ring_cap = s->ring_cap ? s->ring_cap * 2 : 64;
                if (s->ring_cap > s->max)
                        s->ring_cap = s->max;
                s->ring = nc_xrealloc(s->ring, s->ring_cap * sizeof(*s->ring));
        }
        s->ring[s->n++] = h; /* before the set is full, the ring is in order from 0 */
        s->slots[find_slot(s, h)] = h;
        return 1;
}
