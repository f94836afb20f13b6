/* noticecast-mailer: main thread / SMTP workers queue (ml_queue.h). */
#include <unistd.h>

#include "mailer.h"

void ml_queue_init(ml_queue_t *q, int wake_fd)
{
        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->cond, NULL);
        q->wake_fd = wake_fd;
}

void ml_queue_destroy(ml_queue_t *q)
{
        if (!q->wake_fd) /* never started */
                return;
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
}

void ml_queue_push(ml_queue_t *q, ml_unit_t *head, ml_unit_t *tail, size_t n, size_t batch,
                   size_t nworkers)
{
        size_t wake;

        pthread_mutex_lock(&q->lock);
        if (q->todo_tail)
                q->todo_tail->next = head;
        else
                q->todo_head = head;
        q->todo_tail = tail;
        q->todo_n += n;
        wake = (q->todo_n + batch - 1) / batch;
        if (wake > nworkers)
                wake = nworkers;
        while (wake--)
                pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

size_t ml_queue_take(ml_queue_t *q, ml_unit_t **units, size_t max, unsigned *gen)
{
        size_t n = 0;

        pthread_mutex_lock(&q->lock);
        while (!q->todo_head && !q->stop)
                pthread_cond_wait(&q->cond, &q->lock);
        *gen = q->templates_gen;
        while (q->todo_head && n < max) {
                units[n] = q->todo_head;
                q->todo_head = units[n]->next;
                units[n]->next = NULL;
                n++;
        }
        if (!q->todo_head)
                q->todo_tail = NULL;
        q->todo_n -= n;
        q->busy += n;
        pthread_mutex_unlock(&q->lock);
        return n;
}

void ml_queue_done(ml_queue_t *q, ml_unit_t **units, size_t n)
{
        pthread_mutex_lock(&q->lock);
        for (size_t i = 0; i < n; i++) {
                units[i]->next = q->done_head;
                q->done_head = units[i];
        }
        q->busy -= n;
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

ml_unit_t *ml_queue_remove_if(ml_queue_t *q, int (*keep)(const ml_unit_t *, void *), void *arg)
{
        ml_unit_t *out = NULL, **pp, *u;

        pthread_mutex_lock(&q->lock);
        q->todo_tail = NULL;
        for (pp = &q->todo_head; (u = *pp);) {
                if (keep(u, arg)) {
                        q->todo_tail = u;
                        pp = &u->next;
                        continue;
                }
                *pp = u->next;
                u->next = out;
                out = u;
                q->todo_n--;
        }
        pthread_mutex_unlock(&q->lock);
        return out;
}

ml_unit_t *ml_queue_stop(ml_queue_t *q)
{
        ml_unit_t *todo;

        pthread_mutex_lock(&q->lock);
        todo = q->todo_head;
        q->todo_head = q->todo_tail = NULL;
        q->todo_n = 0;
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
