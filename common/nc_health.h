/* What /readyz and /healthz answer: pure policy, no I/O, no clock (the caller passes "now").
 *
 * Readiness: a daemon is ready when it can make progress.  Two things decide it:
 *   - the brokers: a Kafka outage shorter than the grace does not count (a broker restart, a
 *     leader election); beyond it the daemon is not ready, with "kafka unreachable for N s";
 *     brokers never reached since the start are never ready;
 *   - the daemon's own condition (webhooks: consuming with its partitions assigned; mailer:
 *     view caught up, planner and sender running), with its reason when it is not met.
 * The brokers come first in the reason: they are usually why the rest cannot progress.
 *
 * Liveness: the main loop stamps a heartbeat on every turn; a heartbeat older than the bound
 * means the loop is stuck (or blocked in a call that should not block), and /healthz says
 * 503 so that the supervisor restarts the process.  No heartbeat yet (start-up, before the
 * loop) is alive: start-up waits log their own progress. */
#ifndef NC_HEALTH_H
#define NC_HEALTH_H

#include <stddef.h>
#include <stdint.h>

/* The brokers as the connectivity tracker (nc_kafka.h) last saw them. */
typedef enum nc_health_kafka {
        NC_HEALTH_KAFKA_UNKNOWN, /* not reached yet since the start */
        NC_HEALTH_KAFKA_UP,
        NC_HEALTH_KAFKA_DOWN,
} nc_health_kafka_t;

/* Default grace for a Kafka outage, and the default liveness bound. */
#define NC_HEALTH_GRACE_MS_DEFAULT 5000
#define NC_HEALTH_LIVE_MS_DEFAULT  30000

typedef struct nc_health_in {
        nc_health_kafka_t kafka;
        int64_t kafka_since_ms;      /* when KAFKA took its current value (same clock as NOW_MS) */
        int64_t grace_ms;            /* an outage this short does not make the daemon unready */
        int progress;                /* the daemon's own condition is met */
        const char *progress_reason; /* why not, when !PROGRESS (NULL: "starting") */
        int64_t now_ms;
} nc_health_in_t;

/* Outcomes, with one name table (nc_health_verdict_name). */
typedef enum nc_health_verdict {
        NC_HEALTH_READY,
        NC_HEALTH_KAFKA_NEVER,  /* brokers not reached since the start */
        NC_HEALTH_KAFKA_OUTAGE, /* brokers unreachable beyond the grace */
        NC_HEALTH_NO_PROGRESS,  /* the daemon's own condition is not met */
        NC_HEALTH_VERDICT_N
} nc_health_verdict_t;

const char *nc_health_verdict_name(nc_health_verdict_t v);

/* The readiness verdict; REASON (SIZE > 0) gets "" when ready, else the text after
 * "not ready: " ("kafka unreachable for 12 s", "view loading"). */
nc_health_verdict_t nc_health_ready(const nc_health_in_t *in, char *reason, size_t size);

/* Liveness: 1 if a heartbeat AGE_MS old (< 0: no heartbeat yet) is within BOUND_MS, else 0
 * with REASON ("main loop stalled for 31 s"). */
int nc_health_live(int64_t age_ms, int64_t bound_ms, char *reason, size_t size);

#endif
