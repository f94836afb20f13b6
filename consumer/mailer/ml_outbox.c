#include "ml_outbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nc_log.h"
#include "nc_time.h"
#include "nc_util.h"
#include "smtp.h"

static const int64_t retry_ms[] = {2000, 10000};
#define TRIES ((int)(sizeof(retry_ms) / sizeof(retry_ms[0])) + 1)

struct item {
        char *rcpt, *data;
        size_t len;
        int tries;
        int64_t not_before_ms;
        struct item *next;
};

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct item *head, *tail;
        size_t n, dropped;
        int running, stopping;
        int64_t deadline_ms; /* while stopping: give up what is left after it */
        pthread_t thread;
        ml_t *m;
        char *password;
} O = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL, NULL};

static void item_free(struct item *it)
{
        free(it->rcpt);
        free(it->data);
        free(it);
}

/* Under the lock: waits until a message may be sent (the first due one is taken out) or
 * until stopping with nothing left to do. */
static struct item *next_due(void)
{
        for (;;) {
                int64_t now = nc_time_now_ms(), wake = -1;
                struct item **pp;

                for (pp = &O.head; *pp; pp = &(*pp)->next) {
                        struct item *it = *pp;

                        if (it->not_before_ms <= now) {
                                *pp = it->next;
                                if (O.tail == it) {
                                        struct item *t = O.head;

                                        while (t && t->next)
                                                t = t->next;
                                        O.tail = t;
                                }
                                O.n--;
                                return it;
                        }
                        if (wake < 0 || it->not_before_ms < wake)
                                wake = it->not_before_ms;
                }
                if (O.stopping && (!O.head || now >= O.deadline_ms))
                        return NULL;
                if (O.stopping && (wake < 0 || wake > O.deadline_ms))
                        wake = O.deadline_ms;
                if (wake < 0) {
                        pthread_cond_wait(&O.cond, &O.lock);
                } else {
                        struct timespec ts;

                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_sec += (wake - now) / 1000;
                        ts.tv_nsec += (long)((wake - now) % 1000) * 1000000L;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        pthread_cond_timedwait(&O.cond, &O.lock, &ts);
                }
        }
}

static void send_one(struct item *it)
{
        ml_smtp_config_t sc;
        ml_smtp_msg_t msg;
        char err[512];

        ml_sender_smtp_config(O.m, O.password, NULL, &sc);
        memset(&msg, 0, sizeof(msg));
        msg.mail_from = O.m->cfg.mailer.envelope_from;
        msg.rcpt = it->rcpt;
        msg.data = it->data;
        msg.len = it->len;
        err[0] = '\0';
        ml_smtp_send_session(&sc, &msg, 1, err, sizeof(err));
        it->tries++;
        if (msg.status >= 200 && msg.status < 300) {
                log_info("sign-up email sent (%d)", msg.status);
                item_free(it);
                return;
        }
        if (!ml_smtp_status_temporary(msg.status) || it->tries >= TRIES) {
                /* The address is not logged: the page never tells whether it is known. */
                log_warnx("sign-up email not sent after %d attempt(s): %d %s", it->tries,
                          msg.status, msg.reply[0] ? msg.reply : err);
                item_free(it);
                return;
        }
        it->not_before_ms = nc_time_now_ms() + retry_ms[it->tries - 1];
        pthread_mutex_lock(&O.lock);
        it->next = O.head;
        O.head = it;
        if (!O.tail)
                O.tail = it;
        O.n++;
        pthread_mutex_unlock(&O.lock);
}

static void *outbox_main(void *arg)
{
        (void)arg;
        for (;;) {
                struct item *it;

                pthread_mutex_lock(&O.lock);
                it = next_due();
                pthread_mutex_unlock(&O.lock);
                if (!it)
                        break;
                send_one(it);
        }
        return NULL;
}

int ml_outbox_start(ml_t *m, char *errstr, size_t errstr_size)
{
        char err[512];

        O.m = m;
        if (m->cfg.smtp.password_file) {
                size_t plen;

                if (!(O.password =
                          nc_secret_file_read(m->cfg.smtp.password_file, &plen, err, sizeof(err))))
                        return nc_err(errstr, errstr_size, "%s", err);
        }
        if (pthread_create(&O.thread, NULL, outbox_main, NULL) != 0)
                return nc_err(errstr, errstr_size, "cannot start the sign-up email thread");
        O.running = 1;
        return 0;
}

int ml_outbox_send(const char *rcpt, char *data, size_t len)
{
        struct item *it;

        pthread_mutex_lock(&O.lock);
        if (!O.running || O.stopping || O.n >= ML_OUTBOX_MAX) {
                O.dropped++;
                pthread_mutex_unlock(&O.lock);
                log_warnx("sign-up email dropped: %s (%zu so far)",
                          O.running && !O.stopping ? "the queue is full" : "stopping", O.dropped);
                free(data);
                return -1;
        }
        it = nc_xcalloc(1, sizeof(*it));
        it->rcpt = nc_xstrdup(rcpt);
        it->data = data; /* now owned by the outbox */
        it->len = len;
        if (O.tail)
                O.tail->next = it;
        else
                O.head = it;
        O.tail = it;
        O.n++;
        pthread_cond_signal(&O.cond);
        pthread_mutex_unlock(&O.lock);
        return 0;
}

void ml_outbox_stop(void)
{
        struct item *it;

        if (!O.running)
                return;
        pthread_mutex_lock(&O.lock);
        O.stopping = 1;
        O.deadline_ms = nc_time_now_ms() + O.m->cfg.mailer.shutdown_timeout_ms;
        pthread_cond_signal(&O.cond);
        pthread_mutex_unlock(&O.lock);
        pthread_join(O.thread, NULL);
        O.running = 0;
        while ((it = O.head)) {
                O.head = it->next;
                item_free(it);
                log_warnx("sign-up email not sent: stopping");
        }
        O.tail = NULL;
        O.n = 0;
        if (O.password) {
                memset(O.password, 0, strlen(O.password));
                free(O.password);
                O.password = NULL;
        }
}
