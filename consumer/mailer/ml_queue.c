/* noticecast-mailer: main thread / SMTP workers queue, per recipient domain (ml_queue.h). */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mailer.h"
#include "smtp.h"

#define SWEEP_MS 10000 /* how often domains left without mail are looked at */

/* One recipient domain: its units waiting (FIFO) and its sending state. */
struct ml_queue_domain {
        char *name;
        const ml_domain_limit_t *limit;
        int configured; /* a [smtp] domain_limits line: kept for good */
        ml_domain_state_t st;
        ml_unit_t *head, *tail;
        size_t n;
        struct ml_queue_domain *next, *prev; /* the ring, while it has units */
        int in_ring;
};

typedef struct ml_queue_domain qdom_t;

/* The workers wait on the monotonic clock: a change of the wall clock moves no backoff. */
static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void qdom_free(void *p)
{
        qdom_t *d = p;

        g_free(d->name);
        g_free(d);
}

static qdom_t *qdom_get(ml_queue_t *q, const char *name)
{
        qdom_t *d = g_hash_table_lookup(q->domains, name);

        if (d)
                return d;
        d = g_new0(qdom_t, 1);
        d->name = g_strdup(name);
        d->limit = ml_domain_limit_for(q->limits, name);
        d->configured = d->limit->domain != NULL;
        g_hash_table_insert(q->domains, d->name, d);
        return d;
}

static void ring_add(ml_queue_t *q, qdom_t *d)
{
        if (d->in_ring)
                return;
        d->in_ring = 1;
        if (!q->ring) {
                d->next = d->prev = d;
                q->ring = d;
                return;
        }
        /* Before the cursor: the last to be looked at, after those already waiting. */
        d->next = q->ring;
        d->prev = q->ring->prev;
        d->prev->next = d;
        q->ring->prev = d;
}

static void ring_del(ml_queue_t *q, qdom_t *d)
{
        if (!d->in_ring)
                return;
        d->in_ring = 0;
        if (d->next == d) {
                q->ring = NULL;
        } else {
                d->prev->next = d->next;
                d->next->prev = d->prev;
                if (q->ring == d)
                        q->ring = d->next;
        }
        d->next = d->prev = NULL;
}

/* An unconfigured domain without mail whose state says nothing any more is forgotten:
 * domains are unbounded, the table must not be. */
static void qdom_forget_if_idle(ml_queue_t *q, qdom_t *d, int64_t now)
{
        if (!d->configured && d->n == 0 && ml_domain_idle(&d->st, d->limit, q->limits, now))
                g_hash_table_remove(q->domains, d->name);
}

static void sweep(ml_queue_t *q, int64_t now)
{
        GHashTableIter it;
        gpointer v;

        if (now - q->swept_ms < SWEEP_MS)
                return;
        q->swept_ms = now;
        g_hash_table_iter_init(&it, q->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                qdom_t *d = v;

                if (!d->configured && d->n == 0 && ml_domain_idle(&d->st, d->limit, q->limits, now))
                        g_hash_table_iter_remove(&it);
        }
}

void ml_queue_init(ml_queue_t *q, int wake_fd, const ml_domain_limits_t *limits)
{
        pthread_condattr_t ca;

        pthread_mutex_init(&q->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cond, &ca);
        pthread_condattr_destroy(&ca);
        q->wake_fd = wake_fd;
        q->limits = limits;
        q->domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, qdom_free);
        /* The configured domains are known from the start (for their metric series too). */
        for (size_t i = 0; i < limits->n; i++)
                qdom_get(q, limits->v[i].domain);
}

void ml_queue_destroy(ml_queue_t *q)
{
        if (!q->wake_fd) /* never started */
                return;
        g_hash_table_destroy(q->domains);
        q->domains = NULL;
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
}

/* The unit's recipient domain, lower case, in BUF. */
static const char *unit_domain(const ml_unit_t *u, char *buf, size_t size)
{
        const char *email = json_string_value(json_object_get(u->subscriber, "email"));

        snprintf(buf, size, "%s", ml_domain_of(email));
        nc_str_lower(buf);
        return buf;
}

static void fifo_append(qdom_t *d, ml_unit_t *u)
{
        u->next = NULL;
        if (d->tail)
                d->tail->next = u;
        else
                d->head = u;
        d->tail = u;
        d->n++;
}

void ml_queue_push(ml_queue_t *q, ml_unit_t *head, ml_unit_t *tail, size_t n, size_t batch,
                   size_t nworkers)
{
        size_t wake, groups = 0;
        qdom_t *last = NULL;
        char name[256];
        ml_unit_t *u, *next;

        (void)tail;
        pthread_mutex_lock(&q->lock);
        for (u = head; u; u = next) {
                qdom_t *d = qdom_get(q, unit_domain(u, name, sizeof(name)));

                next = u->next;
                u->qdom = d;
                fifo_append(d, u);
                ring_add(q, d);
                groups += d != last;
                last = d;
        }
        q->todo_n += n;
        wake = (q->todo_n + batch - 1) / batch;
        if (wake < groups) /* a session per domain */
                wake = groups;
        if (wake > nworkers)
                wake = nworkers;
        while (wake--)
                pthread_cond_signal(&q->cond);
        sweep(q, mono_ms());
        pthread_mutex_unlock(&q->lock);
}

/* The next domain, round robin, that may have a session now; else NULL and *WAKE = when one
 * may (INT64_MAX: when a session ends or units come). */
static qdom_t *pick(ml_queue_t *q, int64_t now, int64_t *wake)
{
        qdom_t *d = q->ring;

        *wake = INT64_MAX;
        if (!d)
                return NULL;
        do {
                if (ml_domain_session_allowed(&d->st, d->limit)) {
                        int64_t at = ml_domain_next_eligible(&d->st, d->limit, now);

                        if (at <= now) {
                                q->ring = d->next; /* the others first next time */
                                return d;
                        }
                        if (at < *wake)
                                *wake = at;
                }
                d = d->next;
        } while (d != q->ring);
        return NULL;
}

static void wait_until(ml_queue_t *q, int64_t at)
{
        struct timespec ts;

        if (at == INT64_MAX) {
                pthread_cond_wait(&q->cond, &q->lock);
                return;
        }
        ts.tv_sec = (time_t)(at / 1000);
        ts.tv_nsec = (long)(at % 1000) * 1000000;
        pthread_cond_timedwait(&q->cond, &q->lock, &ts);
}

size_t ml_queue_take(ml_queue_t *q, ml_unit_t **units, size_t max, unsigned *gen)
{
        size_t n = 0, k;
        int64_t now, wake;
        qdom_t *d;

        pthread_mutex_lock(&q->lock);
        for (;;) {
                if (q->stop)
                        goto out;
                now = mono_ms();
                if ((d = pick(q, now, &wake)))
                        break;
                wait_until(q, wake);
        }
        *gen = q->templates_gen;
        k = ml_domain_take(&d->st, d->limit, d->n < max ? d->n : max, now);
        while (n < k) {
                units[n] = d->head;
                d->head = units[n]->next;
                units[n]->next = NULL;
                n++;
        }
        d->n -= n;
        if (!d->head) {
                d->tail = NULL;
                ring_del(q, d);
        }
        d->st.busy++;
        q->todo_n -= n;
        q->busy += n;
out:
        pthread_mutex_unlock(&q->lock);
        return n;
}

/* "4.7.0" from a reply that starts with an enhanced status, else "". */
static void reply_status(const char *reply, char *out, size_t size)
{
        size_t len = strspn(reply, "0123456789.");

        if (len < 5 || len >= size || reply[1] != '.')
                len = 0;
        memcpy(out, reply, len);
        out[len] = '\0';
}

void ml_queue_done(ml_queue_t *q, ml_unit_t **units, size_t n, ml_queue_session_t *s)
{
        qdom_t *d = n ? units[0]->qdom : NULL;
        ml_unit_t *back = NULL, *back_last = NULL;
        int deferred = 0, delivered = 0;
        int64_t now = mono_ms();

        memset(s, 0, sizeof(*s));
        for (size_t i = 0; i < n; i++) {
                if (units[i]->deferred && !deferred) {
                        deferred = 1;
                        s->code = units[i]->status;
                        reply_status(units[i]->reply, s->status, sizeof(s->status));
                }
                delivered |= units[i]->status >= 200 && units[i]->status < 300;
        }
        pthread_mutex_lock(&q->lock);
        for (size_t i = 0; i < n; i++) {
                ml_unit_t *u = units[i];

                /* Cut off by the deferral before the relay saw it: it waits for the domain's
                 * backoff, uncharged, in its place (at the front, in order). */
                if (deferred && !q->stop && !u->deferred && !u->attempted &&
                    ml_smtp_status_temporary(u->status)) {
                        u->next = NULL;
                        if (back_last)
                                back_last->next = u;
                        else
                                back = u;
                        back_last = u;
                        s->requeued++;
                        continue;
                }
                u->next = q->done_head;
                q->done_head = u;
        }
        q->busy -= n;
        if (d) {
                d->st.busy--;
                s->event = ml_domain_session_end(&d->st, q->limits, deferred, delivered, now);
                snprintf(s->domain, sizeof(s->domain), "%s", d->name);
                s->deferrals = d->st.deferrals;
                s->backoff_ms = d->st.until_ms - now;
                if (back) {
                        back_last->next = d->head;
                        d->head = back;
                        if (!d->tail)
                                d->tail = back_last;
                        d->n += s->requeued;
                        q->todo_n += s->requeued;
                }
                if (d->n) {
                        ring_add(q, d);
                        /* Its sessions limit or backoff changed: waiting workers look again. */
                        pthread_cond_broadcast(&q->cond);
                } else {
                        qdom_forget_if_idle(q, d, now);
                }
        }
        pthread_mutex_unlock(&q->lock);
        if (write(q->wake_fd, "w", 1) < 0) {
                /* the main loop polls with a short timeout anyway */
        }
}

ml_unit_t *ml_queue_take_done(ml_queue_t *q)
{
        ml_unit_t *done;

        pthread_mutex_lock(&q->lock);
        done = q->done_head;
        q->done_head = NULL;
        pthread_mutex_unlock(&q->lock);
        return done;
}

void ml_queue_counts(ml_queue_t *q, size_t *queued, size_t *busy, int *done)
{
        pthread_mutex_lock(&q->lock);
        if (queued)
                *queued = q->todo_n;
        if (busy)
                *busy = q->busy;
        if (done)
                *done = q->done_head != NULL;
        pthread_mutex_unlock(&q->lock);
}

/* Takes D's units for which KEEP is 0 (all with KEEP NULL) onto *OUT; returns how many. */
static size_t fifo_remove_if(qdom_t *d, int (*keep)(const ml_unit_t *, void *), void *arg,
                             ml_unit_t **out)
{
        ml_unit_t **pp, *u;
        size_t n = 0;

        d->tail = NULL;
        for (pp = &d->head; (u = *pp);) {
                if (keep && keep(u, arg)) {
                        d->tail = u;
                        pp = &u->next;
                        continue;
                }
                *pp = u->next;
                u->next = *out;
                *out = u;
                n++;
        }
        d->n -= n;
        return n;
}

/* Every domain's units for which KEEP is 0 (all with KEEP NULL), under the lock. */
static ml_unit_t *remove_if_locked(ml_queue_t *q, int (*keep)(const ml_unit_t *, void *), void *arg)
{
        ml_unit_t *out = NULL;
        GHashTableIter it;
        gpointer v;

        g_hash_table_iter_init(&it, q->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                qdom_t *d = v;

                if (!d->n)
                        continue;
                q->todo_n -= fifo_remove_if(d, keep, arg, &out);
                if (!d->n)
                        ring_del(q, d);
        }
        return out;
}

ml_unit_t *ml_queue_remove_if(ml_queue_t *q, int (*keep)(const ml_unit_t *, void *), void *arg)
{
        ml_unit_t *out;

        pthread_mutex_lock(&q->lock);
        out = remove_if_locked(q, keep, arg);
        pthread_mutex_unlock(&q->lock);
        return out;
}

ml_unit_t *ml_queue_stop(ml_queue_t *q)
{
        ml_unit_t *todo;

        pthread_mutex_lock(&q->lock);
        todo = remove_if_locked(q, NULL, NULL);
        q->stop = 1;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
        return todo;
}

void ml_queue_reload_templates(ml_queue_t *q)
{
        pthread_mutex_lock(&q->lock);
        q->templates_gen++;
        pthread_mutex_unlock(&q->lock);
}
