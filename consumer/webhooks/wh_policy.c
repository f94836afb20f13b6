/* noticecast-webhooks: delivery policy (see wh_policy.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nc_log.h"
#include "nc_util.h"
#include "wh_policy.h"

const char *wh_outcome_name(enum wh_outcome o)
{
        switch (o) {
        case WH_OUTCOME_DELIVERED:
                return "delivered";
        case WH_OUTCOME_RETRY:
                return "retry";
        case WH_OUTCOME_DLQ:
                return "dlq";
        case WH_OUTCOME_DISABLED:
                return "disabled";
        case WH_OUTCOME_DEFERRED:
                return "deferred";
        }
        fatalx("wh_outcome_name: unknown outcome %d", (int)o);
}

enum wh_outcome wh_policy_classify(CURLcode res, long status)
{
        if (res != CURLE_OK)
                return WH_OUTCOME_RETRY; /* no answer: timeout, refused, TLS, reset, ... */
        if (status >= 200 && status < 300)
                return WH_OUTCOME_DELIVERED;
        if (status == 408 || status == 429 || status >= 500)
                return WH_OUTCOME_RETRY;
        if (status == 410)
                return WH_OUTCOME_DISABLED;
        /* 3xx (a redirect is an answer, not a hop), other 4xx: sending it again would not
         * help; it waits in the DLQ for a replay. */
        return WH_OUTCOME_DLQ;
}

int64_t wh_policy_jitter(int64_t ms, uint32_t rnd)
{
        return ms + (int64_t)((double)ms * 0.2 * (rnd / 4294967296.0));
}

wh_decision_t wh_policy_retry(const nc_webhooks_config_t *wc, int attempt, int64_t retry_after_ms,
                              uint32_t rnd)
{
        wh_decision_t d = {.outcome = WH_OUTCOME_RETRY};
        int tier = attempt - 1; /* after attempt k, wait retry_ms[k-1] */

        /* retry_n is at most the array's size; said again for the compiler's bounds check */
        if (tier < 0 || (size_t)tier >= wc->retry_n ||
            (size_t)tier >= sizeof(wc->retry_ms) / sizeof(wc->retry_ms[0])) {
                d.outcome = WH_OUTCOME_DLQ;
                d.exhausted = 1;
                return d;
        }
        d.tier = tier;
        d.delay_ms = wh_policy_jitter(wc->retry_ms[tier], rnd);
        if (retry_after_ms >= 0) {
                int64_t ra = retry_after_ms < wc->retry_after_max_ms ? retry_after_ms
                                                                     : wc->retry_after_max_ms;

                if (ra > d.delay_ms)
                        d.delay_ms = ra;
        }
        return d;
}

wh_decision_t wh_policy_decide(const nc_webhooks_config_t *wc, CURLcode res, long status,
                               int attempt, int64_t retry_after_ms, uint32_t rnd)
{
        wh_decision_t d = {.outcome = wh_policy_classify(res, status)};

        if (d.outcome == WH_OUTCOME_RETRY)
                d = wh_policy_retry(wc, attempt, retry_after_ms, rnd);
        return d;
}

int64_t wh_policy_retry_after(const char *value, size_t len, int64_t now_ms)
{
        char val[128], *end;
        long secs;
        time_t t;

        if (len >= sizeof(val))
                len = sizeof(val) - 1;
        memcpy(val, value, len);
        val[len] = '\0';
        nc_str_trim(val);
        secs = strtol(val, &end, 10);
        if (end != val && !*end && secs >= 0)
                return secs > INT64_MAX / 1000 ? INT64_MAX : (int64_t)secs * 1000;
        if ((t = curl_getdate(val, NULL)) <= 0)
                return -1;
        return (int64_t)t * 1000 > now_ms ? (int64_t)t * 1000 - now_ms : 0;
}

void wh_policy_http_error(long status, char *response, char *buf, size_t size)
{
        /* Keep the start of the body: agencies often explain a 400 there. */
        for (char *c = response; *c; c++)
                if (!isprint((unsigned char)*c))
                        *c = ' ';
        if (status >= 300 && status < 400)
                snprintf(buf, size, "unexpected status %ld (redirects are not followed)", status);
        else
                snprintf(buf, size, "HTTP %ld%s%.200s", status, response[0] ? ": " : "", response);
}
