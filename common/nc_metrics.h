/* A small thread-safe Prometheus metrics registry, rendered in the text exposition format
 * 0.0.4 (what /metrics serves).
 *
 *   nc_metrics_t *r = nc_metrics_new();
 *   nc_metric_t *sent = nc_metrics_counter(r, "noticecast_webhooks_total", "Webhook attempts.");
 *   char l[NC_METRICS_LABELS_SIZE];
 *
 *   if (nc_metrics_labels(l, sizeof(l), "partner", id, "outcome", "ok", NULL) == 0)
 *           nc_metrics_inc(sent, l, 1);
 *
 * A series is a metric plus one label string, created on first use.  Label strings are the
 * inside of the braces, `partner="pe",outcome="ok"`, with at most NC_METRICS_MAX_LABELS pairs;
 * build them with nc_metrics_labels(), which escapes values, whenever a value comes from data.
 * A malformed label string is logged and the update dropped.  Misuse that can only be a
 * programming error (bad metric name, same name with another type, wrong update for the type,
 * bad buckets) is fatal. */
#ifndef NC_METRICS_H
#define NC_METRICS_H

#include <stddef.h>

#define NC_METRICS_MAX_LABELS 3
/* Enough for three pairs with values of ordinary length. */
#define NC_METRICS_LABELS_SIZE 512
/* Series per metric beyond which new label sets are dropped (with one warning): guards
 * memory against labels fed from unbounded data. */
#define NC_METRICS_MAX_SERIES 2000

typedef struct nc_metrics nc_metrics_t;
typedef struct nc_metric nc_metric_t;

nc_metrics_t *nc_metrics_new(void);
/* Frees the registry and all its metrics. */
void nc_metrics_free(nc_metrics_t *r);

/* Registering a name again returns the existing metric when the type matches (the buckets of
 * the first registration stay), so reload code can re-register freely.  Metrics are rendered
 * in registration order, series in order of first use. */
nc_metric_t *nc_metrics_counter(nc_metrics_t *r, const char *name, const char *help);
nc_metric_t *nc_metrics_gauge(nc_metrics_t *r, const char *name, const char *help);
/* BOUNDS: the upper bounds of the buckets, finite and strictly increasing; +Inf is implied. */
nc_metric_t *nc_metrics_histogram(nc_metrics_t *r, const char *name, const char *help,
                                  const double *bounds, size_t nbounds);

/* Upper bounds for request latencies in seconds, 5 ms to 10 s. */
extern const double nc_metrics_latency_buckets[];
extern const size_t nc_metrics_latency_nbuckets;

/* LABELS may be NULL or "" for the series without labels.  Counters only go up: inc ignores
 * negative and NaN values for them; on gauges it adds V (which may be negative). */
void nc_metrics_inc(nc_metric_t *m, const char *labels, double v);
void nc_metrics_set(nc_metric_t *m, const char *labels, double v);
void nc_metrics_observe(nc_metric_t *m, const char *labels, double v);
/* Creates the series LABELS of M (any type) at 0 if it does not exist yet: a histogram then
 * shows its empty buckets, _sum and _count 0. */
void nc_metrics_touch(nc_metric_t *m, const char *labels);

/* The whole registry as exposition text (malloc'd, NUL-terminated; the caller frees it).
 * A metric with no series yet shows only its # HELP and # TYPE lines; call
 * nc_metrics_inc(m, NULL, 0) at startup to show an unlabelled 0. */
char *nc_metrics_render(nc_metrics_t *r);

/* Builds a label string from NULL-terminated key, value pairs, escaping backslash, double
 * quote and newline in values.  Returns 0, or -1 (OUT set to "") when a key is not a valid
 * label name, there are more than NC_METRICS_MAX_LABELS pairs or OUT_SIZE is too small. */
int nc_metrics_labels(char *out, size_t out_size, ...) __attribute__((sentinel));

/* FN(R, OPAQUE) runs at the start of every nc_metrics_render(), before the registry is
 * locked (it may update metrics): for values read when asked for rather than kept up to
 * date.  It runs in the rendering thread (the HTTP server's). */
void nc_metrics_on_render(nc_metrics_t *r, void (*fn)(nc_metrics_t *r, void *opaque), void *opaque);

/* What every daemon exports, whatever it does (docs/monitoring.md):
 *   noticecast_build_info{program,version} 1
 *   process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 *   process_open_fds, process_max_fds, process_start_time_seconds
 * the process_* ones read from /proc/self at every render (left out if it cannot be read). */
void nc_metrics_standard(nc_metrics_t *r, const char *program, const char *version);

/* Messages on RK's assigned partitions not read yet: the sum of (high watermark - position)
 * from librdkafka's cache (no request to the brokers: callable from the main loop).
 * Partitions with no position or no watermark yet count 0; -1 if RK has no assignment. */
struct rd_kafka_s;
long long nc_metrics_consumer_lag(struct rd_kafka_s *rk);

#endif
