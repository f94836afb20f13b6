/* noticecast-mailer: delivery policy (ml_policy.h). */
#include "ml_policy.h"

#include "nc_log.h"
#include "smtp.h"

/* The one name table of the outcomes: EVENT is the deliveries topic's type, LABEL the
 * metric's. */
static void ml_outcome_names(ml_outcome_t o, const char **event, const char **label)
{
        switch (o) {
        case ML_OUTCOME_SENT:
                *event = "mail.sent";
                *label = "sent";
                return;
        case ML_OUTCOME_BOUNCE:
                *event = "mail.bounce";
                *label = "bounce";
                return;
        case ML_OUTCOME_FAILED:
                *event = "mail.failed";
                *label = "failed";
                return;
        case ML_OUTCOME_SKIPPED:
                *event = "mail.skipped";
                *label = "skipped";
                return;
        }
        fatalx("%s: unknown mail outcome %d", __func__, (int)o);
}

const char *ml_outcome_event(ml_outcome_t o)
{
        const char *event, *label;

        ml_outcome_names(o, &event, &label);
        return event;
}

const char *ml_outcome_label(ml_outcome_t o)
{
        const char *event, *label;

        ml_outcome_names(o, &event, &label);
        return label;
}

const char *ml_verdict_name(ml_verdict_t v)
{
        switch (v) {
        case ML_VERDICT_SENT:
                return "sent";
        case ML_VERDICT_BOUNCE:
                return "bounce";
        case ML_VERDICT_RETRY:
                return "retry";
        case ML_VERDICT_FAILED:
                return "failed";
        case ML_VERDICT_LEAVE:
                return "leave";
        }
        fatalx("%s: unknown verdict %d", __func__, (int)v);
}

int ml_policy_attempts_exhausted(int attempt, const ml_retry_schedule_t *rs)
{
        return attempt < 1 || (size_t)attempt > rs->n;
}

ml_verdict_t ml_policy_smtp(const ml_smtp_result_t *r, int attempt, const ml_retry_schedule_t *rs,
                            int stopping, int64_t *delay_ms)
{
        *delay_ms = 0;
        if (r->status == ML_STATUS_NOT_BUILT)
                return ML_VERDICT_FAILED;
        if (stopping && ml_smtp_status_temporary(r->status))
                return ML_VERDICT_LEAVE;
        if (r->status >= 200 && r->status < 300)
                return ML_VERDICT_SENT;
        if (r->status >= 500)
                return ML_VERDICT_BOUNCE;
        /* 4xx (throttling, greylisting, a 421 ending the session), no connection, or a code
         * no relay should send: tried again while the schedule lasts. */
        if (ml_policy_attempts_exhausted(attempt, rs))
                return ML_VERDICT_FAILED;
        *delay_ms = rs->ms[attempt - 1];
        return ML_VERDICT_RETRY;
}

int ml_policy_bounce(int bounces, int64_t last_s, int64_t now_s, int64_t window_s,
                     int suppress_after, int *suppress)
{
        /* A count without a time (kept before bounced_at existed) goes on. */
        int n = (bounces <= 0 || (last_s > 0 && now_s - last_s > window_s)) ? 1 : bounces + 1;

        if (n > 255)
                n = 255;
        *suppress = n >= suppress_after;
        return n;
}
