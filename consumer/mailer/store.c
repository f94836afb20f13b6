/* noticecast-mailer: the subscribers and recent notices every instance keeps in memory. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailer.h"
#include "ml_policy.h"
#include "nc_daemon.h"
#include "nc_kafka.h"
#include "nc_log.h"
#include "nc_notice.h"
#include "nc_subscriber.h"
#include "nc_time.h"
#include "nc_util.h"

#define NOTICE_HISTORY_MS (8LL * 24 * 3600 * 1000) /* a weekly digest plus a day of slack */

/* The HTTP thread looks subscribers up (ml_store_sub_state, ml_store_sub_copy); only the main
 * thread changes the table, under the write lock, and it reads without one.  One view per process.
 */
static pthread_rwlock_t subs_lock = PTHREAD_RWLOCK_INITIALIZER;

static void sub_free(gpointer p)
{
        ml_sub_t *s = p;

        free(s->id);
        free(s->regions);
        free(s);
}

static void notice_free(gpointer p)
{
        ml_notice_t *n = p;

        json_decref(n->data);
        free(n);
}

static int index_of(const nc_strlist_t *l, const char *s)
{
        for (size_t i = 0; i < l->n; i++)
                if (!strcmp(l->v[i], s))
                        return (int)i;
        return -1;
}

static int zone_index(ml_t *m, const char *name)
{
        ml_store_t *st = &m->store;
        gpointer v = g_hash_table_lookup(st->zone_ix, name);

        if (v)
                return GPOINTER_TO_INT(v) - 1;
        g_ptr_array_add(st->zones, g_strdup(name));
        g_hash_table_insert(st->zone_ix, g_strdup(name), GINT_TO_POINTER(st->zones->len));
        return (int)st->zones->len - 1;
}

int ml_zone_offset(ml_t *m, int tz, int64_t t)
{
        ml_store_t *st = &m->store;
        GTimeZone *z = g_hash_table_lookup(st->zone_tz, GINT_TO_POINTER(tz + 1));
        gint interval;

        if (!z) {
                z = g_time_zone_new_identifier(g_ptr_array_index(st->zones, tz));
                if (!z)
                        z = g_time_zone_new_utc(); /* validated at input; cannot normally happen */
                g_hash_table_insert(st->zone_tz, GINT_TO_POINTER(tz + 1), z);
        }
        interval = g_time_zone_find_interval(z, G_TIME_TYPE_UNIVERSAL, t);
        return interval < 0 ? 0 : g_time_zone_get_offset(z, interval);
}

/* Compact form of a normalised subscriber record. */
static ml_sub_t *sub_from_json(ml_t *m, const json_t *rec)
{
        const char *id = json_string_value(json_object_get(rec, "id"));
        const char *email = json_string_value(json_object_get(rec, "email"));
        const char *name = json_string_value(json_object_get(rec, "name"));
        const char *freq = json_string_value(json_object_get(rec, "frequency"));
        const char *send_at = json_string_value(json_object_get(rec, "send_at"));
        const char *reason = json_string_value(json_object_get(rec, "bounce_reason"));
        const char *at = json_string_value(json_object_get(rec, "bounced_at"));
        size_t li = strlen(id) + 1, le = strlen(email) + 1, ln = strlen(name ? name : "") + 1, i;
        size_t lr = strlen(reason ? reason : "") + 1;
        ml_sub_t *s = nc_xcalloc(1, sizeof(*s));
        int64_t at_ms;
        json_t *v;

        s->id = nc_xmalloc(li + le + ln + lr);
        memcpy(s->id, id, li);
        memcpy(s->id + li, email, le);
        memcpy(s->id + li + le, name ? name : "", ln);
        memcpy(s->id + li + le + ln, reason ? reason : "", lr);
        s->email = s->id + li;
        s->name = s->id + li + le;
        s->bounce_reason = s->id + li + le + ln;
        if (at && nc_time_parse_rfc3339(at, &at_ms, NULL, 0) == 0 && at_ms > 0)
                s->bounced_at = (uint32_t)(at_ms / 1000);
        s->lang =
            (uint8_t)index_of(&m->cfg.languages, json_string_value(json_object_get(rec, "lang")));
        s->freq = !strcmp(freq, "immediate") ? ML_FREQ_IMMEDIATE
                  : !strcmp(freq, "weekly")  ? ML_FREQ_WEEKLY
                                             : ML_FREQ_DAILY;
        s->tz = (uint16_t)zone_index(m, json_string_value(json_object_get(rec, "tz")));
        s->send_min = (uint16_t)(((send_at[0] - '0') * 10 + (send_at[1] - '0')) * 60 +
                                 (send_at[3] - '0') * 10 + (send_at[4] - '0'));
        s->bounces = (uint8_t)json_integer_value(json_object_get(rec, "bounces"));
        s->gen = nc_subscriber_generation(rec);
        s->ref = nc_verp_subscriber_ref(&m->verp_keys, s->id);
        s->suppressed = json_is_true(json_object_get(rec, "suppressed"));
        json_array_foreach(json_object_get(rec, "categories"), i, v) {
                int c = index_of(&m->cfg.categories, json_string_value(v));

                if (c >= 0 && c < 32)
                        s->cats |= 1u << c;
        }
        if ((s->nregions = (uint16_t)json_array_size(json_object_get(rec, "regions")))) {
                s->regions = nc_xcalloc(s->nregions, sizeof(*s->regions));
                json_array_foreach(json_object_get(rec, "regions"), i, v) {
                        const char *r = json_string_value(v);

                        s->regions[i] = (uint16_t)((unsigned char)r[0] << 8 | (unsigned char)r[1]);
                }
        }
        return s;
}

json_t *ml_sub_json(const ml_t *m, const ml_sub_t *s)
{
        return json_pack("{s:s, s:s, s:s, s:s}", "id", s->id, "email", s->email, "name", s->name,
                         "lang", m->cfg.languages.v[s->lang]);
}

int ml_sub_matches(const ml_t *m, const ml_sub_t *s, const ml_notice_t *n)
{
        json_t *regions, *r;
        size_t i;
        int k;

        (void)m;
        if (s->suppressed)
                return 0;
        if (s->cats && (n->cat < 0 || !(s->cats & (1u << n->cat))))
                return 0;
        regions = json_object_get(n->data, "regions");
        if (!s->regions || !json_array_size(regions))
                return 1;
        json_array_foreach(regions, i, r) {
                const char *c = json_string_value(r);
                uint16_t code = (uint16_t)((unsigned char)c[0] << 8 | (unsigned char)c[1]);

                for (k = 0; k < s->nregions; k++)
                        if (s->regions[k] == code)
                                return 1;
        }
        return 0;
}

int ml_notice_from_json(const ml_t *m, json_t *data, int64_t ts_ms, ml_notice_t *out)
{
        const char *prio = json_string_value(json_object_get(data, "priority"));
        const char *sup = json_string_value(json_object_get(data, "supersedes"));

        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", nc_notice_id(data));
        out->data = data;
        out->ts_ms = ts_ms;
        out->cat = index_of(&m->cfg.categories, nc_notice_category(data));
        out->urgent = prio && !strcmp(prio, "urgent");
        (void)sup;
        return 0;
}

const ml_sub_t *ml_store_sub(const ml_t *m, const char *id)
{
        return g_hash_table_lookup(m->store.subs, id);
}

const char *ml_sub_generation(const ml_sub_t *s, char *buf, size_t size)
{
        if (!s->gen)
                return NULL;
        snprintf(buf, size, "%016" PRIx64, s->gen);
        return buf;
}

int ml_store_sub_state(const ml_t *m, const char *id, uint64_t *gen, int *suppressed,
                       uint64_t *removed_gen)
{
        const ml_sub_t *s;
        const uint64_t *r;
        int rc = -1;

        *gen = 0;
        *suppressed = 0;
        *removed_gen = 0;
        pthread_rwlock_rdlock(&subs_lock);
        if (m->store.caught_up && m->store.subs) {
                s = g_hash_table_lookup(m->store.subs, id);
                rc = s != NULL;
                if (s) {
                        *gen = s->gen;
                        *suppressed = s->suppressed;
                }
                if ((r = g_hash_table_lookup(m->store.removed, id)))
                        *removed_gen = *r;
        }
        pthread_rwlock_unlock(&subs_lock);
        return rc;
}

json_t *ml_sub_record(const ml_t *m, const ml_sub_t *s, const ml_bounce_state_t *b)
{
        static const char *const freqs[] = {"immediate", "daily", "weekly"};
        const ml_bounce_state_t own = {s->bounces, s->suppressed, s->bounced_at, s->bounce_reason};
        json_t *cats = json_array(), *regs = json_array(), *rec;
        char send_at[8], ts[40], gen[24], at[40];
        int i;

        if (!b)
                b = &own;
        for (i = 0; i < 32 && (size_t)i < m->cfg.categories.n; i++)
                if (s->cats & (1u << i))
                        json_array_append_new(cats, json_string(m->cfg.categories.v[i]));
        for (i = 0; i < s->nregions; i++) {
                char r[3] = {(char)(s->regions[i] >> 8), (char)(s->regions[i] & 0xff), 0};

                json_array_append_new(regs, json_string(r));
        }
        snprintf(send_at, sizeof(send_at), "%02d:%02d", s->send_min / 60, s->send_min % 60);
        rec = json_pack(
            "{s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:s, s:i, s:b, s:s?}", "id", s->id,
            "email", s->email, "name", s->name, "lang", m->cfg.languages.v[s->lang], "categories",
            cats, "regions", regs, "frequency", freqs[s->freq], "tz", ml_store_zone_name(m, s->tz),
            "send_at", send_at, "updated_at",
            nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)), "bounces", b->bounces,
            "suppressed", b->suppressed, "generation", ml_sub_generation(s, gen, sizeof(gen)));
        if (rec && b->bounces > 0 && b->at_s > 0)
                json_object_set_new(
                    rec, "bounced_at",
                    json_string(nc_time_format_rfc3339(b->at_s * 1000, at, sizeof(at))));
        if (rec && b->bounces > 0 && b->reason && b->reason[0]) {
                /* Cut to what a record may hold, on a character boundary. */
                char r[NC_SUBSCRIBER_BOUNCE_REASON_MAX + 1];
                size_t n = strlen(b->reason);

                if (n > NC_SUBSCRIBER_BOUNCE_REASON_MAX) {
                        n = NC_SUBSCRIBER_BOUNCE_REASON_MAX;
                        while (n && ((unsigned char)b->reason[n] & 0xc0) == 0x80)
                                n--;
                }
                memcpy(r, b->reason, n);
                r[n] = '\0';
                json_object_set_new(rec, "bounce_reason", json_string(r));
        }
        return rec;
}

json_t *ml_sub_bounced(ml_t *m, const ml_sub_t *s, const char *reason)
{
        int64_t now_s = nc_time_now_ms() / 1000;
        ml_bounce_state_t b = {0, 0, now_s, reason};

        b.bounces = ml_policy_bounce(s->bounces, s->bounced_at, now_s,
                                     m->cfg.mailer.bounce_window_ms / 1000,
                                     m->cfg.mailer.bounce_suppress_after, &b.suppressed);
        b.suppressed |= s->suppressed; /* only a new opt-in ends it */
        if (b.suppressed && !s->suppressed) {
                nc_log_fields_t f = {0};

                nc_log_field(&f, "subscriber", s->id);
                nc_log_field_int(&f, "bounces", b.bounces);
                nc_log_f(NC_LOG_WARN, &f, "subscriber suppressed after %d hard bounces", b.bounces);
        }
        {
                json_t *rec = ml_sub_record(m, s, &b);

                ml_store_sub_bounced(m, s->id, &b);
                return rec;
        }
}

const ml_sub_t *ml_store_sub_by_ref(const ml_t *m, uint64_t ref)
{
        return m->store.refs ? g_hash_table_lookup(m->store.refs, &ref) : NULL;
}

void ml_store_sub_bounced(ml_t *m, const char *id, const ml_bounce_state_t *b)
{
        ml_sub_t *s;

        pthread_rwlock_wrlock(&subs_lock);
        if ((s = g_hash_table_lookup(m->store.subs, id))) {
                s->bounces = (uint8_t)(b->bounces > 255 ? 255 : b->bounces);
                s->suppressed = (uint8_t)(b->suppressed != 0);
                s->bounced_at = (uint32_t)b->at_s;
                /* The reason is not kept here (it lives in the allocation): the record read
                 * back brings it. */
        }
        pthread_rwlock_unlock(&subs_lock);
}

json_t *ml_store_sub_copy(const ml_t *m, const char *id, int *rc)
{
        const ml_sub_t *s;
        json_t *rec = NULL;

        *rc = -1;
        pthread_rwlock_rdlock(&subs_lock);
        if (m->store.caught_up && m->store.subs) {
                s = g_hash_table_lookup(m->store.subs, id);
                *rc = s != NULL;
                if (s)
                        rec = ml_sub_record(m, s, NULL);
        }
        pthread_rwlock_unlock(&subs_lock);
        return rec;
}

const ml_notice_t *ml_store_notice(const ml_t *m, const char *id)
{
        return g_hash_table_lookup(m->store.notices, id);
}

void ml_store_subs_begin(const ml_t *m, ml_store_iter_t *it)
{
        g_hash_table_iter_init(&it->it, m->store.subs);
}

const ml_sub_t *ml_store_subs_next(ml_store_iter_t *it)
{
        gpointer k, v;

        return g_hash_table_iter_next(&it->it, &k, &v) ? v : NULL;
}

void ml_store_notices_begin(const ml_t *m, ml_store_iter_t *it)
{
        g_hash_table_iter_init(&it->it, m->store.notices);
}

const ml_notice_t *ml_store_notices_next(ml_store_iter_t *it)
{
        gpointer k, v;

        return g_hash_table_iter_next(&it->it, &k, &v) ? v : NULL;
}

size_t ml_store_zone_count(const ml_t *m)
{
        return m->store.zones->len;
}

const char *ml_store_zone_name(const ml_t *m, int tz)
{
        return g_ptr_array_index(m->store.zones, tz);
}

const ml_notice_t *ml_store_latest(const ml_t *m, const char *id)
{
        const ml_notice_t *n = ml_store_notice(m, id);
        int hops = 0;

        while (n && n->superseded_by[0] && hops++ < 32)
                n = ml_store_notice(m, n->superseded_by);
        return n && !n->withdrawn ? n : NULL;
}

/* ---- applying records ------------------------------------------------------------------ */

/* Under the write lock: the subscriber of ID out of the view and its reference index. */
static void subs_remove(ml_t *m, const char *id)
{
        ml_sub_t *old = g_hash_table_lookup(m->store.subs, id);

        if (old && g_hash_table_lookup(m->store.refs, &old->ref) == old)
                g_hash_table_remove(m->store.refs, &old->ref);
        g_hash_table_remove(m->store.subs, id);
}

/* Under the write lock: S (now owned by the view) in place of the record of its id. */
static void subs_put(ml_t *m, ml_sub_t *s)
{
        subs_remove(m, s->id);
        g_hash_table_replace(m->store.subs, s->id, s);
        g_hash_table_replace(m->store.refs, &s->ref, s);
}

static void apply_subscriber(ml_t *m, const rd_kafka_message_t *r)
{
        char id[300], err[512];
        json_t *in, *rec;

        if (!r->key || r->key_len == 0 || r->key_len >= sizeof(id))
                return;
        memcpy(id, r->key, r->key_len);
        id[r->key_len] = '\0';
        if (!r->payload) {
                const ml_sub_t *gone;

                pthread_rwlock_wrlock(&subs_lock);
                /* Remembered, so that a confirmation link of that subscription cannot bring
                 * it back (web.c): as long as the tombstone is on the topic. */
                if ((gone = g_hash_table_lookup(m->store.subs, id)) && gone->gen)
                        g_hash_table_replace(m->store.removed, g_strdup(id),
                                             g_memdup2(&gone->gen, sizeof(gone->gen)));
                subs_remove(m, id);
                pthread_rwlock_unlock(&subs_lock);
                return;
        }
        in = json_loadb(r->payload, r->len, 0, NULL);
        rec = in ? nc_subscriber_normalise(in, &m->cfg, 0, err, sizeof(err)) : NULL;
        json_decref(in);
        if (!rec || strcmp(json_string_value(json_object_get(rec, "id")), id)) {
                /* The planner (which sees each record once) sends it to the DLQ. */
                log_debug("subscriber record for %s skipped: %s", id, rec ? "key mismatch" : err);
                pthread_rwlock_wrlock(&subs_lock);
                subs_remove(m, id);
                pthread_rwlock_unlock(&subs_lock);
                json_decref(rec);
                return;
        }
        /* sub_from_json may add a zone: the HTTP thread reads zone names too
         * (ml_store_sub_copy). */
        pthread_rwlock_wrlock(&subs_lock);
        {
                ml_sub_t *s = sub_from_json(m, rec);

                subs_put(m, s);
        }
        pthread_rwlock_unlock(&subs_lock);
        json_decref(rec);
}

static void apply_notice(ml_t *m, const rd_kafka_message_t *r)
{
        char event[64], err[512];
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(r, &tstype);
        json_t *v, *n;

        if (!nc_kafka_header(r, "noticecast-event", event, sizeof(event)) || !r->payload)
                return;
        if (!(v = json_loadb(r->payload, r->len, 0, NULL)))
                return;
        /* A notice or withdrawal on another category's topic is not part of the view (the
         * planner quarantines it): digests of that topic's subscribers must not carry it. */
        if (ml_category_mismatch(m, r, v, err, sizeof(err))) {
                json_decref(v);
                return;
        }
        if (!strcmp(event, NC_EVENT_WITHDRAWN)) {
                ml_notice_t *old;

                if (nc_notice_withdrawal_check(v, &m->cfg, err, sizeof(err)) == 0 &&
                    (old = g_hash_table_lookup(m->store.notices,
                                               json_string_value(json_object_get(v, "id")))))
                        old->withdrawn = 1;
                json_decref(v);
                return;
        }
        n = nc_notice_normalise(v, &m->cfg, NC_NOTICE_STORED, 0, err, sizeof(err));
        json_decref(v);
        if (!n)
                return; /* the planner quarantines it */
        {
                ml_notice_t *rec = nc_xcalloc(1, sizeof(*rec));
                const char *sup = json_string_value(json_object_get(n, "supersedes"));
                ml_notice_t *old;

                ml_notice_from_json(m, n, ts, rec);
                if (sup && (old = g_hash_table_lookup(m->store.notices, sup)))
                        snprintf(old->superseded_by, sizeof(old->superseded_by), "%s", rec->id);
                g_hash_table_replace(m->store.notices, rec->id, rec);
        }
}

/* ---- the reader ------------------------------------------------------------------------ */

static int assign_all(ml_t *m, char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(64);
        const struct rd_kafka_metadata *md = NULL;
        int64_t since = ml_now(m) - NOTICE_HISTORY_MS;
        rd_kafka_resp_err_t err;
        char topic[256];
        size_t c;
        int i, rc = -1;

        for (c = 0; c <= m->cfg.categories.n; c++) {
                rd_kafka_topic_t *rkt;
                int np;

                if (c < m->cfg.categories.n)
                        nc_config_notice_topic(&m->cfg, m->cfg.categories.v[c], topic,
                                               sizeof(topic));
                else
                        snprintf(topic, sizeof(topic), "%s", m->topic_subs);
                rkt = rd_kafka_topic_new(m->store.rk, topic, NULL);
                err = rd_kafka_metadata(m->store.rk, 0, rkt, &md, 10000);
                rd_kafka_topic_destroy(rkt);
                if (err || md->topic_cnt != 1 || md->topics[0].err) {
                        nc_err(errstr, errstr_size,
                               "topic %s: %s (run `noticecast topics "
                               "create`)",
                               topic, rd_kafka_err2str(err ? err : md->topics[0].err));
                        goto out;
                }
                np = md->topics[0].partition_cnt;
                for (i = 0; i < np; i++)
                        rd_kafka_topic_partition_list_add(parts, topic, i)->offset =
                            c < m->cfg.categories.n ? since : RD_KAFKA_OFFSET_BEGINNING;
                rd_kafka_metadata_destroy(md);
                md = NULL;
        }
        /* Notice topics start a week back (by timestamp); the subscribers from the start. */
        {
                rd_kafka_topic_partition_list_t *times = rd_kafka_topic_partition_list_copy(parts);

                for (i = 0; i < times->cnt; i++)
                        if (times->elems[i].offset == RD_KAFKA_OFFSET_BEGINNING)
                                times->elems[i].offset = 0; /* timestamp 0: the first */
                err = rd_kafka_offsets_for_times(m->store.rk, times, 10000);
                if (!err) {
                        for (i = 0; i < times->cnt; i++)
                                parts->elems[i].offset =
                                    times->elems[i].err || times->elems[i].offset < 0
                                        ? RD_KAFKA_OFFSET_END
                                        : times->elems[i].offset;
                        /* An empty partition has no offset for any time: start at its end. */
                }
                rd_kafka_topic_partition_list_destroy(times);
                if (err) {
                        nc_err(errstr, errstr_size, "offsets for times: %s", rd_kafka_err2str(err));
                        goto out;
                }
        }
        m->store.eof_needed = (size_t)parts->cnt;
        if ((err = rd_kafka_assign(m->store.rk, parts))) {
                nc_err(errstr, errstr_size, "assign: %s", rd_kafka_err2str(err));
                goto out;
        }
        rc = 0;
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_partition_list_destroy(parts);
        return rc;
}

static int assign_step(void *m, char *errstr, size_t errstr_size)
{
        return assign_all(m, errstr, errstr_size);
}

int ml_store_start(ml_t *m, char *errstr, size_t errstr_size)
{
        static const nc_kafka_setting_t set[] = {{"fetch.wait.max.ms", "100"}, {NULL, NULL}};

        m->store.subs = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, sub_free);
        m->store.removed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        m->store.refs = g_hash_table_new(g_int64_hash, g_int64_equal);
        m->store.notices = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, notice_free);
        m->store.zones = g_ptr_array_new_with_free_func(g_free);
        m->store.zone_ix = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m->store.zone_tz = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                                 (GDestroyNotify)g_time_zone_unref);
        m->store.eof_parts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        /* Never commits: the view is rebuilt from the topics at every start. */
        if (!(m->store.rk =
                  nc_kafka_reader_new(&m->cfg,
                                      &(nc_kafka_opts_t){.name = "view reader",
                                                         .group_id = "noticecast-mailer-view",
                                                         .partition_eof = 1,
                                                         .set = set},
                                      errstr, errstr_size)))
                return -1;
        /* Right after the topics were created (or while a broker restarts) metadata and
         * offsets can fail for a while ("Not leader for partition", timeouts). */
        return m->oneshot ? assign_all(m, errstr, errstr_size)
                          : nc_daemon_retry("view", assign_step, m, errstr, errstr_size);
}

int ml_store_poll(ml_t *m, int timeout_ms)
{
        rd_kafka_message_t *batch[1000];
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(m->store.rk);
        ssize_t n, i;

        n = rd_kafka_consume_batch_queue(q, timeout_ms, batch, sizeof(batch) / sizeof(*batch));
        rd_kafka_queue_destroy(q);
        for (i = 0; i < n; i++) {
                rd_kafka_message_t *r = batch[i];

                if (r->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        char key[300];

                        /* EOF comes again each time a partition is caught up; count each once. */
                        snprintf(key, sizeof(key), "%s/%d", rd_kafka_topic_name(r->rkt),
                                 (int)r->partition);
                        if (!m->store.caught_up &&
                            g_hash_table_add(m->store.eof_parts, g_strdup(key)) &&
                            ++m->store.eof_seen >= m->store.eof_needed) {
                                pthread_rwlock_wrlock(&subs_lock);
                                m->store.caught_up = 1;
                                pthread_rwlock_unlock(&subs_lock);
                                log_info("view loaded: %u subscribers, %u recent notices",
                                         g_hash_table_size(m->store.subs),
                                         g_hash_table_size(m->store.notices));
                        }
                } else if (r->err) {
                        if (!nc_kafka_consumer_denied(&m->cfg, m->store.rk, r, "view",
                                                      m->view_denied, sizeof(m->view_denied)))
                                log_warnx("view: %s", rd_kafka_message_errstr(r));
                } else if (!strcmp(rd_kafka_topic_name(r->rkt), m->topic_subs)) {
                        nc_kafka_denied_clear(m->view_denied);
                        apply_subscriber(m, r);
                } else {
                        nc_kafka_denied_clear(m->view_denied);
                        apply_notice(m, r);
                }
                rd_kafka_message_destroy(r);
        }
        if (m->m_subs) {
                nc_metrics_set(m->m_subs, NULL, g_hash_table_size(m->store.subs));
                nc_metrics_set(m->m_notices, NULL, g_hash_table_size(m->store.notices));
        }
        return n == (ssize_t)(sizeof(batch) / sizeof(*batch)); /* more is waiting */
}

void ml_store_stop(ml_t *m)
{
        if (m->store.rk) {
                rd_kafka_assign(m->store.rk, NULL);
                rd_kafka_consumer_close(m->store.rk);
                rd_kafka_destroy(m->store.rk);
                m->store.rk = NULL;
        }
        if (m->store.subs) {
                pthread_rwlock_wrlock(&subs_lock);
                g_hash_table_destroy(m->store.refs);
                m->store.refs = NULL;
                g_hash_table_destroy(m->store.subs);
                g_hash_table_destroy(m->store.removed);
                m->store.subs = NULL;
                m->store.removed = NULL;
                pthread_rwlock_unlock(&subs_lock);
                g_hash_table_destroy(m->store.notices);
                g_hash_table_destroy(m->store.zone_tz);
                g_hash_table_destroy(m->store.zone_ix);
                g_hash_table_destroy(m->store.eof_parts);
                g_ptr_array_free(m->store.zones, TRUE);
                m->store.subs = NULL;
        }
}
