/* noticecast-mailer: what becomes of a job after an SMTP attempt (pure, unit-tested in
 * tests/unit/test_ml_policy.c), and the names of its outcomes.
 *
 * sender.c asks ml_policy_smtp() what a worker's result means and does it; the classes come
 * from the relay's reply as ml_smtp_status_temporary() (smtp.h) defines them, so that the
 * retry decision and the SMTP module cannot disagree. */
#ifndef ML_POLICY_H
#define ML_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* A job's recorded outcome: one event type on the deliveries topic and one metric label
 * each (ml_outcome_event / ml_outcome_label).  Adding one: a line in ml_outcome_names() and
 * -Wswitch shows every switch that must handle it. */
typedef enum ml_outcome {
        ML_OUTCOME_SENT,    /* mail.sent: the relay accepted it */
        ML_OUTCOME_BOUNCE,  /* mail.bounce: permanent (5xx) for this recipient */
        ML_OUTCOME_FAILED,  /* mail.failed: given up (retries used up, not buildable): DLQ */
        ML_OUTCOME_SKIPPED, /* mail.skipped: nothing to send any more */
} ml_outcome_t;

/* "mail.sent", … (the event's type); fatalx() on a value outside the enum. */
const char *ml_outcome_event(ml_outcome_t o);
/* "sent", … (the outcome label of noticecast_mail_sent_total). */
const char *ml_outcome_label(ml_outcome_t o);

/* What ml_unit_t.status holds besides an SMTP code (0 = not attempted, as in smtp.h). */
enum ml_status_sentinel {
        ML_STATUS_IN_BATCH = -1,  /* worker-internal: built, handed to the SMTP session */
        ML_STATUS_NOT_BUILT = -2, /* the message could not be rendered or built */
};

/* A worker's result for one message. */
typedef struct ml_smtp_result {
        int status;           /* SMTP code, 0 = not attempted, or ML_STATUS_NOT_BUILT */
        int attempted;        /* the relay dealt with this message itself (smtp.h) */
        const char *enhanced; /* the reply's text, RFC 3463 status first ("4.7.1 …"), or "" */
} ml_smtp_result_t;

typedef enum ml_verdict {
        ML_VERDICT_SENT,   /* record mail.sent (and reset the bounce counter) */
        ML_VERDICT_BOUNCE, /* record mail.bounce (counts towards suppression) */
        ML_VERDICT_RETRY,  /* temporary: try again after the delay */
        ML_VERDICT_FAILED, /* record mail.failed, job to the DLQ */
        ML_VERDICT_LEAVE,  /* stopping: nothing recorded, no attempt charged; the job stays
                            * uncommitted and is sent again after a restart */
} ml_verdict_t;

/* The retry schedule of [mailer] retry_schedule: attempt N (1-based) that ends temporarily
 * is retried after ms[N - 1]; after n retries the job fails. */
typedef struct ml_retry_schedule {
        const int64_t *ms;
        size_t n;
} ml_retry_schedule_t;

/* Verdict for result R of attempt ATTEMPT (1 = first) of a job; for ML_VERDICT_RETRY,
 * *DELAY_MS = the wait before the next attempt (else 0).  STOPPING: the daemon is shutting
 * down (a temporary result is then left for a restart, not charged).
 *   not built                  failed (a template or data problem, never a bounce)
 *   2xx                        sent
 *   5xx                        bounce
 *   0 (not attempted), 4xx (421, 450/451/452 and the rest), other codes:
 *                              retry while the schedule lasts, then failed
 * The enhanced status does not change the class: its first digit repeats the code's. */
ml_verdict_t ml_policy_smtp(const ml_smtp_result_t *r, int attempt, const ml_retry_schedule_t *rs,
                            int stopping, int64_t *delay_ms);

/* 1 if attempt ATTEMPT was the last the schedule allows (a temporary result fails it). */
int ml_policy_attempts_exhausted(int attempt, const ml_retry_schedule_t *rs);

const char *ml_verdict_name(ml_verdict_t v);

/* One more hard bounce (at the SMTP session, or a DSN that came back) of a subscriber with
 * BOUNCES counted, the last at LAST_S (unix seconds; 0 = none), now NOW_S: returns the new
 * count, and *SUPPRESS = whether it reaches SUPPRESS_AFTER.  The count starts again at 1 when
 * the last bounce is more than WINDOW_S old (a count with no time goes on): a mailbox that bounced
 * twice last year and works since is not suppressed by one bad day.  (A relay's 250 says nothing
 * about the mailbox once bounces come back later, so acceptance does not reset the count when VERP
 * is on.)  The count stops at 255 (it is kept in a byte). */
int ml_policy_bounce(int bounces, int64_t last_s, int64_t now_s, int64_t window_s,
                     int suppress_after, int *suppress);

#endif
