/* noticecast-webhooks: what an attempt's result calls for, as pure functions (no state, no
 * clock, no randomness of their own: the caller passes the time and a random number), so that
 * tests/unit/test_wh_policy.c covers every class.
 *
 *   2xx                         delivered
 *   408, 429, 5xx, no answer    retry (Retry-After honoured up to retry_after_max_ms), or DLQ
 *   (curl error: timeout,       once the retry schedule is exhausted
 *   connect, TLS, ...)
 *   410 Gone                    disabled: this delivery to the DLQ, the partner off until a reload
 *   3xx (never followed), any   DLQ
 *   other 4xx, anything else */
#ifndef WH_POLICY_H
#define WH_POLICY_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "nc_config.h"

/* The outcome of one attempt, as delivery events ("outcome") and the deliveries metric
 * ("outcome" label) name it: wh_outcome_name() is the only name table. */
enum wh_outcome {
        WH_OUTCOME_DELIVERED = 0,
        WH_OUTCOME_RETRY,    /* parked in a retry tier for its next attempt */
        WH_OUTCOME_DLQ,      /* failed for good (or retries exhausted): quarantined */
        WH_OUTCOME_DISABLED, /* the partner answered 410 Gone (or had before): quarantined */
        WH_OUTCOME_DEFERRED, /* not attempted (backlog full, shutdown): parked, same attempt */
};

/* "delivered", "retry", ...; fatalx() on a value that is not one of the enum's. */
const char *wh_outcome_name(enum wh_outcome o);

/* What to do after an attempt. */
typedef struct wh_decision {
        enum wh_outcome outcome; /* DELIVERED, RETRY, DLQ or DISABLED (never DEFERRED) */
        int exhausted;           /* DLQ because the retry schedule ran out */
        int tier;                /* RETRY: the retry tier (index into retry_ms) */
        int64_t delay_ms;        /* RETRY: how long until the next attempt */
} wh_decision_t;

/* The class of a finished request: RES is libcurl's result, STATUS the HTTP status (looked
 * at only when RES is CURLE_OK).  Returns DELIVERED, RETRY, DLQ or DISABLED; RETRY says
 * nothing yet about the schedule (see wh_policy_retry). */
enum wh_outcome wh_policy_classify(CURLcode res, long status);

/* After failed attempt ATTEMPT (1 = the first) that may be retried: RETRY with the tier and
 * the delay of the next attempt (the tier's delay plus 0..20% jitter from RND, at least
 * RETRY_AFTER_MS capped at retry_after_max_ms; RETRY_AFTER_MS -1 = none), or DLQ with
 * exhausted set when the schedule has no entry left. */
wh_decision_t wh_policy_retry(const nc_webhooks_config_t *wc, int attempt, int64_t retry_after_ms,
                              uint32_t rnd);

/* wh_policy_classify, then wh_policy_retry for a RETRY. */
wh_decision_t wh_policy_decide(const nc_webhooks_config_t *wc, CURLcode res, long status,
                               int attempt, int64_t retry_after_ms, uint32_t rnd);

/* MS plus 0..20% of it, from RND (uniform over 32 bits): retries of many notices spread out
 * so that a recovering partner is not hit by the whole backlog in the same second. */
int64_t wh_policy_jitter(int64_t ms, uint32_t rnd);

/* A Retry-After header value (LEN bytes, not NUL-terminated, blanks around it allowed) in
 * ms from NOW_MS: delta-seconds, or an HTTP date (a past date is 0).  -1 when it is
 * neither.  Huge values saturate instead of overflowing (the cap applies later). */
int64_t wh_policy_retry_after(const char *value, size_t len, int64_t now_ms);

/* The error text of an answer that is not a 2xx (it goes into the delivery event and the DLQ
 * reason): for 3xx that redirects are not followed, else "HTTP <status>" and the start of
 * RESPONSE (its unprintable bytes become spaces, in place). */
void wh_policy_http_error(long status, char *response, char *buf, size_t size);

#endif
