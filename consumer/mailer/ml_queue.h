/* noticecast-mailer: the queue between the main thread and the SMTP workers.
 *
 * The main thread pushes the units it prepared in one poll (ml_queue_push) and takes back
 * the finished ones (ml_queue_take_done); a worker takes up to a batch (ml_queue_take),
 * sends it, and hands it back (ml_queue_done), which wakes the main loop through WAKE_FD.
 * Every function takes the lock itself: no caller touches the fields.
 *
 * Units wait per recipient domain (ml_domain.h), each domain a FIFO, and a worker takes the
 * units of ONE domain: the first, round robin, whose sessions limit, rate and backoff allow a
 * session now.  A domain that is backed off or at its limits is skipped, never waited for:
 * its units stay here, in memory (their jobs hold back their partitions' committed offsets)
 * while the workers send the other domains' mail.  When a session ends with a deferral, the
 * units of it that were never attempted go back to the front of their domain's FIFO,
 * uncharged, and only the deferred one goes back to the main thread (an attempt like any
 * 4xx). */
#ifndef ML_QUEUE_H
#define ML_QUEUE_H

#include <glib.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ml_domain.h"

struct ml_unit;
struct ml_queue_domain; /* ml_queue.c */

typedef struct ml_queue {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* on CLOCK_MONOTONIC: workers wait for a backoff or a rate */
        GHashTable *domains; /* name -> struct ml_queue_domain: with units, or state to keep */
        struct ml_queue_domain *ring; /* the domains with units waiting, next to look at */
        struct ml_unit *done_head;
        size_t todo_n, busy;
        int stop;
        int wake_fd;            /* 0 = not initialised */
        unsigned templates_gen; /* bumped by a reload: workers load the templates again */
        const ml_domain_limits_t *limits;
        int64_t swept_ms;
} ml_queue_t;

/* LIMITS must outlive the queue. */
void ml_queue_init(ml_queue_t *q, int wake_fd, const ml_domain_limits_t *limits);
void ml_queue_destroy(ml_queue_t *q);

/* Main thread: appends the list HEAD..TAIL (N units, linked by next) to their domains under
 * one lock and wakes one idle worker per BATCH units or per domain, at most NWORKERS. */
void ml_queue_push(ml_queue_t *q, struct ml_unit *head, struct ml_unit *tail, size_t n,
                   size_t batch, size_t nworkers);
/* Worker: waits for work and takes up to MAX units of one domain into UNITS (now owned by
 * the worker); *GEN = the templates generation.  Returns 0 once the queue is stopped. */
size_t ml_queue_take(ml_queue_t *q, struct ml_unit **units, size_t max, unsigned *gen);

/* What became of the domain at the end of a session (for the worker's log and metric). */
typedef struct ml_queue_session {
        ml_domain_event_t event;
        char domain[256];
        int deferrals;      /* in a row, ML_DOMAIN_BACKED_OFF */
        int64_t backoff_ms; /* ML_DOMAIN_BACKED_OFF */
        int code;           /* the deferral's reply code and enhanced status ("4.7.0") */
        char status[16];
        size_t requeued; /* units of the session never attempted, back in the domain's FIFO */
} ml_queue_session_t;

/* Worker: hands the N units of one take back, finished (now owned by the main thread), but
 * for those put back in their domain's FIFO after a deferral; *S says what it did. */
void ml_queue_done(ml_queue_t *q, struct ml_unit **units, size_t n, ml_queue_session_t *s);
/* Main thread: the finished units (a list linked by next, newest first), or NULL. */
struct ml_unit *ml_queue_take_done(ml_queue_t *q);

/* Units waiting for a worker (*QUEUED), in sessions now (*BUSY), and whether finished ones
 * wait to be taken (*DONE); any may be NULL. */
void ml_queue_counts(ml_queue_t *q, size_t *queued, size_t *busy, int *done);
/* Main thread: takes the units not started yet for which KEEP(u, ARG) is 0 out of the queue
 * and returns them (a list linked by next, now owned by the caller), or NULL. */
struct ml_unit *ml_queue_remove_if(ml_queue_t *q, int (*keep)(const struct ml_unit *, void *),
                                   void *arg);
/* Stops the workers once idle (ml_queue_take returns 0) and returns the units not started
 * yet (a list, now owned by the caller). */
struct ml_unit *ml_queue_stop(ml_queue_t *q);
/* After a reload: the workers load the templates again before their next batch. */
void ml_queue_reload_templates(ml_queue_t *q);

#endif
