/* noticecast-mailer: what came back by mail, applied to the subscribers.
 *
 * `noticecast inbound` (producer/cmd_inbound.c) turns each bounce, complaint or mailto
 * unsubscribe that the MTA hands it into one event on the deliveries topic, with the header
 * noticecast-source: inbound, naming the subscriber by a verified token: its VERP reference
 * (nc_verp.h), or its id and generation (an unsubscribe token).  It cannot act on them
 * itself: it runs once per mail, without the view of the subscribers that says who a
 * reference is and what a record holds.  The instance of the group <group>.inbound that owns
 * a deliveries partition reads those events and:
 *   mail.bounce        counts a hard bounce (ml_sub_bounced: bounce_suppress_after within
 *                      bounce_window suppresses), once per subscriber and message;
 *   mail.complaint     removes the subscriber (a tombstone), at once;
 *   mail.unsubscribed  the same, unless the token is of an earlier subscription;
 *   anything else      nothing (recorded by the event itself).
 * The offset of an event is stored only once what it caused is acknowledged (nc_track.h), so
 * a crash applies again at most what was in flight; a bounce applied twice that way is
 * counted once while this process remembers it. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "mailer.h"
#include "nc_daemon.h"
#include "nc_kafka.h"
#include "nc_log.h"
#include "nc_metrics.h"
#include "nc_util.h"

#define SEEN_KEEP 100000 /* bounces remembered for the once-per-message rule */
#define POLL_MAX  500    /* events taken per loop turn */

typedef struct in_msg {
        nc_track_msg_t tm; /* first: its place in the partition's track */
        nc_track_t *part;
        int holds; /* records produced for it not acknowledged yet, plus one while applied */
        int failed;
} in_msg_t;

struct ml_inbound {
        rd_kafka_t *consumer, *producer;
        nc_kafka_rebalance_t rb;
        nc_track_t *parts;
        GHashTable *seen; /* "ref/message" of bounces counted */
        GQueue *seen_order;
        nc_metric_t *m_events;
        char denied[512];
};

/* What an event led to: the action label of noticecast_mail_inbound_total. */
typedef enum in_action {
        IN_COUNTED,   /* a hard bounce counted */
        IN_REMOVED,   /* the subscriber removed */
        IN_RECORDED,  /* nothing to do: delayed, ignored */
        IN_UNKNOWN,   /* no current subscriber of that token */
        IN_STALE,     /* a token of an earlier subscription */
        IN_DUPLICATE, /* that message's bounce was counted already */
        IN_MALFORMED, /* not an event we can read */
} in_action_t;

static const char *in_action_name(in_action_t a)
{
        switch (a) {
        case IN_COUNTED:
                return "counted";
        case IN_REMOVED:
                return "removed";
        case IN_RECORDED:
                return "recorded";
        case IN_UNKNOWN:
                return "unknown_subscriber";
        case IN_STALE:
                return "stale";
        case IN_DUPLICATE:
                return "duplicate";
        case IN_MALFORMED:
                return "malformed";
        }
        fatalx("in_action_name: unknown action %d", (int)a);
}

static void msg_release(nc_track_msg_t *tm, void *opaque)
{
        (void)opaque;
        free(tm);
}

static void msg_unhold(in_msg_t *im)
{
        if (--im->holds > 0)
                return;
        if (im->failed)
                return; /* left unsettled: a restart applies it again */
        nc_track_settle(im->part, &im->tm, msg_release, NULL);
}

static void inbound_dr(rd_kafka_t *rk, const rd_kafka_message_t *r, void *opaque)
{
        in_msg_t *im = r->_private;

        (void)rk;
        (void)opaque;
        if (!im)
                return;
        if (r->err) {
                log_warnx("inbound: writing to %s failed: %s; applied again after a restart",
                          rd_kafka_topic_name(r->rkt), rd_kafka_err2str(r->err));
                im->failed = 1;
        }
        msg_unhold(im);
}

/* VALUE (NULL: a tombstone) for ID on the subscribers topic, acknowledged to IM. */
static void produce_sub(ml_t *m, in_msg_t *im, const char *id, json_t *value, const char *event)
{
        char *v = value ? json_dumps(value, JSON_COMPACT) : NULL;
        rd_kafka_resp_err_t err;

        im->holds++;
        err = rd_kafka_producev(
            m->inbound->producer, RD_KAFKA_V_TOPIC(m->topic_subs), RD_KAFKA_V_KEY(id, strlen(id)),
            RD_KAFKA_V_VALUE(v, v ? strlen(v) : 0), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_HEADER("noticecast-event", event, -1), RD_KAFKA_V_OPAQUE(im),
            RD_KAFKA_V_END);
        if (err) {
                log_warnx("inbound: produce to %s: %s", m->topic_subs, rd_kafka_err2str(err));
                free(v);
                im->failed = 1;
                im->holds--;
        }
}

/* The subscriber EV names by a verified token, or NULL; *STALE when it names an earlier
 * subscription of a current subscriber. */
static const ml_sub_t *resolve(const ml_t *m, const json_t *ev, int *stale)
{
        const char *id = json_string_value(json_object_get(ev, "subscriber"));
        const char *ref = json_string_value(json_object_get(ev, "subscriber_ref"));
        const char *gen = json_string_value(json_object_get(ev, "generation"));
        const ml_sub_t *s = NULL;

        *stale = 0;
        if (id) {
                s = ml_store_sub(m, id);
                if (s && gen && s->gen && strtoull(gen, NULL, 16) != s->gen) {
                        *stale = 1;
                        return NULL;
                }
                return s;
        }
        if (ref && strlen(ref) == 16)
                return ml_store_sub_by_ref(m, strtoull(ref, NULL, 16));
        return NULL;
}

/* 1 the first time this subscriber's bounce of this message is seen (and remembered). */
static int first_bounce(ml_inbound_t *ib, const ml_sub_t *s, const json_t *ev)
{
        const char *msg = json_string_value(json_object_get(ev, "message_ref"));
        char *key;

        if (!msg)
                return 1; /* no message named: nothing to tell copies apart by */
        key = g_strdup_printf("%016" PRIx64 "/%s", s->ref, msg);
        if (g_hash_table_contains(ib->seen, key)) {
                g_free(key);
                return 0;
        }
        g_hash_table_add(ib->seen, key);
        g_queue_push_tail(ib->seen_order, key);
        if (g_queue_get_length(ib->seen_order) > SEEN_KEEP)
                g_hash_table_remove(ib->seen, g_queue_pop_head(ib->seen_order));
        return 1;
}

static in_action_t apply(ml_t *m, const rd_kafka_message_t *r, in_msg_t *im, char *type,
                         size_t type_size)
{
        ml_inbound_t *ib = m->inbound;
        const char *t, *why;
        const ml_sub_t *s;
        in_action_t a = IN_RECORDED;
        nc_log_fields_t f = {0};
        json_t *ev = r->payload ? json_loadb(r->payload, r->len, 0, NULL) : NULL;
        int stale;

        snprintf(type, type_size, "other");
        if (!ev || !(t = json_string_value(json_object_get(ev, "type")))) {
                json_decref(ev);
                return IN_MALFORMED;
        }
        if (!strcmp(t, "mail.bounce") || !strcmp(t, "mail.complaint") ||
            !strcmp(t, "mail.unsubscribed") || !strcmp(t, "mail.delayed") ||
            !strcmp(t, "mail.ignored"))
                snprintf(type, type_size, "%s", t + 5); /* a bounded label */
        if (strcmp(t, "mail.bounce") && strcmp(t, "mail.complaint") &&
            strcmp(t, "mail.unsubscribed")) {
                json_decref(ev);
                return IN_RECORDED;
        }
        s = resolve(m, ev, &stale);
        nc_log_field(&f, "event", t);
        nc_log_field(&f, "kind", json_string_value(json_object_get(ev, "kind")));
        if (!s) {
                nc_log_f(NC_LOG_INFO, &f, "inbound: %s",
                         stale ? "token of an earlier subscription: "
                                 "nothing done"
                               : "no such subscriber now: nothing "
                                 "done");
                json_decref(ev);
                return stale ? IN_STALE : IN_UNKNOWN;
        }
        nc_log_field(&f, "subscriber", s->id);
        if (!strcmp(t, "mail.bounce")) {
                const char *st = json_string_value(json_object_get(ev, "status"));
                const char *diag = json_string_value(json_object_get(ev, "diagnostic"));
                char reason[300];
                json_t *rec;

                if (!first_bounce(ib, s, ev)) {
                        nc_log_f(NC_LOG_INFO, &f,
                                 "inbound: bounce of that message already "
                                 "counted");
                        json_decref(ev);
                        return IN_DUPLICATE;
                }
                snprintf(reason, sizeof(reason), "%s%s%.250s", st ? st : "5.0.0", diag ? " " : "",
                         diag ? diag : "");
                rec = ml_sub_bounced(m, s, reason);
                nc_log_field(&f, "status", st);
                nc_log_f(NC_LOG_INFO, &f, "inbound: hard bounce counted");
                produce_sub(m, im, s->id, rec, "subscriber.updated");
                json_decref(rec);
                a = IN_COUNTED;
        } else {
                why = !strcmp(t, "mail.complaint") ? "complaint" : "unsubscribe by mail";
                nc_log_field(&f, "feedback_type",
                             json_string_value(json_object_get(ev, "feedback_type")));
                nc_log_f(NC_LOG_WARN, &f, "inbound: %s: subscriber removed", why);
                produce_sub(m, im, s->id, NULL, "subscriber.removed");
                a = IN_REMOVED;
        }
        json_decref(ev);
        return a;
}

int ml_inbound_start(ml_t *m, char *errstr, size_t errstr_size)
{
        static const nc_kafka_setting_t linger[] = {{"linger.ms", "5"}, {NULL, NULL}};
        ml_inbound_t *ib = nc_xcalloc(1, sizeof(*ib));
        char group[512];
        rd_kafka_topic_partition_list_t *topics;
        rd_kafka_resp_err_t err;

        m->inbound = ib;
        ib->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        ib->seen_order = g_queue_new();
        ib->rb.tracks = &ib->parts;
        ib->rb.opaque = m;
        if (m->metrics)
                ib->m_events = nc_metrics_counter(
                    m->metrics, "noticecast_mail_inbound_total",
                    "Events of `noticecast inbound` applied, by type and what they led to.");
        if (!(ib->producer =
                  nc_kafka_idempotent_producer_new(&m->cfg,
                                                   &(nc_kafka_opts_t){.name = "inbound producer",
                                                                      .defaults = linger,
                                                                      .dr_msg_cb = inbound_dr,
                                                                      .opaque = m},
                                                   errstr, errstr_size)))
                return -1;
        snprintf(group, sizeof(group), "%s.inbound", m->cfg.mailer.group_id);
        if (!(ib->consumer =
                  nc_kafka_group_consumer_new(&m->cfg,
                                              &(nc_kafka_opts_t){.name = "inbound consumer",
                                                                 .group_id = group,
                                                                 .commit_interval_ms = 1000,
                                                                 .rebalance = &ib->rb},
                                              errstr, errstr_size)))
                return -1;
        topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, m->topic_events, RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(ib->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err)
                return nc_err(errstr, errstr_size, "inbound consumer: subscribe to %s: %s",
                              m->topic_events, rd_kafka_err2str(err));
        return 0;
}

rd_kafka_t *ml_inbound_consumer(const ml_t *m)
{
        return m->inbound ? m->inbound->consumer : NULL;
}

const char *ml_inbound_denied(const ml_t *m)
{
        return m->inbound ? m->inbound->denied : "";
}

int ml_inbound_poll(ml_t *m)
{
        ml_inbound_t *ib = m->inbound;
        int n = 0;

        if (!ib)
                return 0;
        rd_kafka_poll(ib->producer, 0);
        /* A reference names no one until the view has every subscriber. */
        while (m->store.caught_up && !m->stopping && n < POLL_MAX) {
                rd_kafka_message_t *r = rd_kafka_consumer_poll(ib->consumer, 0);
                char src[32], type[32], l[NC_METRICS_LABELS_SIZE];
                in_msg_t *im;
                in_action_t a;

                if (!r)
                        break;
                n++;
                if (r->err) {
                        if (r->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                            !nc_kafka_consumer_denied(&m->cfg, ib->consumer, r, "inbound",
                                                      ib->denied, sizeof(ib->denied)))
                                log_warnx("inbound: %s", rd_kafka_message_errstr(r));
                        rd_kafka_message_destroy(r);
                        continue;
                }
                nc_kafka_denied_clear(ib->denied);
                im = nc_xcalloc(1, sizeof(*im));
                im->part = nc_track_get(&ib->parts, rd_kafka_topic_name(r->rkt), r->partition,
                                        sizeof(nc_track_t), NULL);
                nc_track_append(im->part, &im->tm, r->offset);
                im->holds = 1;
                /* The mailer's own outcomes are on this topic too: only the inbound ones. */
                if (nc_kafka_header(r, "noticecast-source", src, sizeof(src)) &&
                    !strcmp(src, "inbound")) {
                        a = apply(m, r, im, type, sizeof(type));
                        if (ib->m_events && nc_metrics_labels(l, sizeof(l), "type", type, "action",
                                                              in_action_name(a), NULL) == 0)
                                nc_metrics_inc(ib->m_events, l, 1);
                }
                rd_kafka_message_destroy(r);
                msg_unhold(im);
        }
        nc_tracks_store(ib->parts, ib->consumer);
        nc_tracks_gc(&ib->parts, NULL, NULL);
        return n == POLL_MAX;
}

void ml_inbound_stop(ml_t *m)
{
        ml_inbound_t *ib = m->inbound;

        if (!ib)
                return;
        if (ib->producer) {
                if (rd_kafka_flush(ib->producer, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                        log_warnx("inbound: %d records not acknowledged at exit: applied again "
                                  "after the restart",
                                  rd_kafka_outq_len(ib->producer));
        }
        if (ib->consumer) {
                nc_tracks_store(ib->parts, ib->consumer);
                if (nc_kafka_consumer_close_bounded(ib->consumer, 10000) == 0)
                        rd_kafka_destroy(ib->consumer);
                else
                        rd_kafka_destroy_flags(ib->consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        }
        if (ib->producer)
                rd_kafka_destroy(ib->producer);
        nc_tracks_free(&ib->parts, msg_release, NULL, NULL);
        g_hash_table_destroy(ib->seen);
        g_queue_free(ib->seen_order);
        free(ib);
        m->inbound = NULL;
}
