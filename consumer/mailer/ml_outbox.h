/* noticecast-mailer: the emails of the public pages (sign-up confirmations), sent by a
 * thread of their own, so that the HTTP thread never waits for the relay.
 *
 * They are not jobs: nothing is written to Kafka before a citizen confirms, so a message
 * queued here lives in memory only.  A restart loses what is queued (the citizen asks
 * again: the page says the link comes "in a few minutes").  The queue is bounded
 * (ML_OUTBOX_MAX): beyond it a message is dropped with a log line and counted.  A temporary
 * failure is tried again twice (after 2 s and 10 s), a permanent one is logged. */
#ifndef ML_OUTBOX_H
#define ML_OUTBOX_H

#include <stddef.h>

#include "mailer.h"

#define ML_OUTBOX_MAX 1000

/* Starts the thread with the [smtp] settings of M.  Returns 0, or -1 with errstr. */
int ml_outbox_start(ml_t *m, char *errstr, size_t errstr_size);
/* Queues DATA (a whole message, ml_mail_build) for RCPT; DATA is now owned by the outbox.
 * Returns 0, or -1 if it was dropped (full, or stopping). */
int ml_outbox_send(const char *rcpt, char *data, size_t len);
/* Sends what is queued, for at most [mailer] shutdown_timeout, then stops the thread. */
void ml_outbox_stop(void);

#endif
