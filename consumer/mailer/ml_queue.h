/* noticecast-mailer: the queue between the main thread and the SMTP workers.
 *
 * The main thread pushes the units it prepared in one poll (ml_queue_push) and takes back
 * the finished ones (ml_queue_take_done); a worker takes up to a batch (ml_queue_take),
 * sends it, and hands it back (ml_queue_done), which wakes the main loop through WAKE_FD.
 * Every function takes the lock itself: no caller touches the fields. */
#ifndef ML_QUEUE_H
#define ML_QUEUE_H

#include <pthread.h>
#include <stddef.h>

struct ml_unit;

typedef struct ml_queue {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct ml_unit *todo_head, *todo_tail;
        struct ml_unit *done_head;
        size_t todo_n, busy;
        int stop;
        int wake_fd;            /* 0 = not initialised */
        unsigned templates_gen; /* bumped by a reload: workers load the templates again */
} ml_queue_t;

void ml_queue_init(ml_queue_t *q, int wake_fd);
void ml_queue_destroy(ml_queue_t *q);

/* Main thread: appends the list HEAD..TAIL (N units, linked by next) under one lock and
 * wakes one idle worker per BATCH units queued, at most NWORKERS (rather than one signal per
 * message, and a worker woken by the first message starting a session of a few). */
void ml_queue_push(ml_queue_t *q, struct ml_unit *head, struct ml_unit *tail, size_t n,
                   size_t batch, size_t nworkers);
/* Worker: waits for work and takes up to MAX units into UNITS (now owned by the worker);
 * *GEN = the templates generation.  Returns 0 once the queue is stopped and empty. */
size_t ml_queue_take(ml_queue_t *q, struct ml_unit **units, size_t max, unsigned *gen);
/* Worker: hands the N units back, finished (now owned by the main thread). */
void ml_queue_done(ml_queue_t *q, struct ml_unit **units, size_t n);
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
