#include "nc_health.h"

#include <stdio.h>

static const char *const verdict_names[NC_HEALTH_VERDICT_N] = {
    [NC_HEALTH_READY] = "ready",
    [NC_HEALTH_KAFKA_NEVER] = "kafka_never_reached",
    [NC_HEALTH_KAFKA_OUTAGE] = "kafka_unreachable",
    [NC_HEALTH_NO_PROGRESS] = "no_progress",
};

const char *nc_health_verdict_name(nc_health_verdict_t v)
{
        return (unsigned)v < NC_HEALTH_VERDICT_N ? verdict_names[v] : "unknown";
}

nc_health_verdict_t nc_health_ready(const nc_health_in_t *in, char *reason, size_t size)
{
        /* A stamp taken after NOW (another thread's later clock reading): it just changed. */
        int64_t down_ms = in->now_ms > in->kafka_since_ms ? in->now_ms - in->kafka_since_ms : 0;
        char none[1];

        if (!reason || !size) {
                reason = none;
                size = sizeof(none);
        }
        reason[0] = '\0';
        if (in->kafka == NC_HEALTH_KAFKA_UNKNOWN) {
                snprintf(reason, size, "kafka not reached yet");
                return NC_HEALTH_KAFKA_NEVER;
        }
        if (in->kafka == NC_HEALTH_KAFKA_DOWN && down_ms >= in->grace_ms) {
                /* Whole seconds, rounded down. */
                snprintf(reason, size, "kafka unreachable for %lld s", (long long)(down_ms / 1000));
                return NC_HEALTH_KAFKA_OUTAGE;
        }
        if (!in->progress) {
                snprintf(reason, size, "%s",
                         in->progress_reason ? in->progress_reason : "starting");
                return NC_HEALTH_NO_PROGRESS;
        }
        return NC_HEALTH_READY;
}

int nc_health_live(int64_t age_ms, int64_t bound_ms, char *reason, size_t size)
{
        if (reason && size)
                reason[0] = '\0';
        if (age_ms < 0 || age_ms <= bound_ms)
                return 1;
        if (reason && size)
                snprintf(reason, size, "main loop stalled for %lld s", (long long)(age_ms / 1000));
        return 0;
}
