#include "nc_metrics.h"

#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "nc_log.h"
#include "nc_util.h"

/* Hash buckets per metric: a handful of series per chain at the series cap. */
#define SERIES_HASH 256

const double nc_metrics_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                             0.5,   1,    2.5,   5,    10};
const size_t nc_metrics_latency_nbuckets =
    sizeof(nc_metrics_latency_buckets) / sizeof(nc_metrics_latency_buckets[0]);

enum metric_type { M_COUNTER, M_GAUGE, M_HISTOGRAM };

static const char *const type_names[] = {"counter", "gauge", "histogram"};

struct series {
        struct series *hnext; /* hash chain */
        struct series *next;  /* order of first use, for rendering */
        char *labels;
        double value; /* counter, gauge; the sum for histograms */
        uint64_t count;
        uint64_t *buckets; /* histograms: nbounds + 1 counts, not cumulative */
};

struct nc_metric {
        nc_metrics_t *reg;
        struct nc_metric *next;
        char *name, *help;
        enum metric_type type;
        double *bounds;
        size_t nbounds;
        struct series *hash[SERIES_HASH];
        struct series *first, *last;
        size_t nseries;
        int full_warned;
};

struct collector {
        struct collector *next;
        void (*fn)(nc_metrics_t *r, void *opaque);
        void *opaque;
};

struct nc_metrics {
        pthread_mutex_t lock; /* updates come from the main loop, rendering from HTTP */
        nc_metric_t *first, *last;
        struct collector *collectors; /* set up before the HTTP thread starts */
        struct process_metrics *process;
};

static int is_name_start(char c, int colon)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static int is_name_char(char c, int colon)
{
        return is_name_start(c, colon) || (c >= '0' && c <= '9');
}

/* Metric names may contain ':', label names may not. */
static int name_valid(const char *s, int colon)
{
        if (!is_name_start(*s, colon))
                return 0;
        while (*++s)
                if (!is_name_char(*s, colon))
                        return 0;
        return 1;
}

/* Checks a label string against the grammar nc_metrics_labels() produces. */
static int labels_valid(const char *s, enum metric_type type)
{
        int pairs = 0;

        if (*s == '\0')
                return 1;
        for (;;) {
                const char *name = s;

                if (!is_name_start(*s, 0))
                        return 0;
                while (is_name_char(*s, 0))
                        s++;
                /* "le" is the bucket label of histograms. */
                if (type == M_HISTOGRAM && s - name == 2 && !strncmp(name, "le", 2))
                        return 0;
                if (*s++ != '=' || *s++ != '"')
                        return 0;
                for (; *s != '"'; s++) {
                        if (*s == '\0' || *s == '\n')
                                return 0;
                        if (*s == '\\' && *++s != '\\' && *s != '"' && *s != 'n')
                                return 0;
                }
                s++;
                if (++pairs > NC_METRICS_MAX_LABELS)
                        return 0;
                if (*s == '\0')
                        return 1;
                if (*s++ != ',')
                        return 0;
        }
}

nc_metrics_t *nc_metrics_new(void)
{
        nc_metrics_t *r = nc_xcalloc(1, sizeof(*r));

        pthread_mutex_init(&r->lock, NULL);
        return r;
}

void nc_metrics_free(nc_metrics_t *r)
{
        nc_metric_t *m, *mnext;
        struct series *s, *snext;

        if (!r)
                return;
        while (r->collectors) {
                struct collector *c = r->collectors;

                r->collectors = c->next;
                free(c);
        }
        free(r->process);
        for (m = r->first; m; m = mnext) {
                mnext = m->next;
                for (s = m->first; s; s = snext) {
                        snext = s->next;
                        free(s->labels);
                        free(s->buckets);
                        free(s);
                }
                free(m->name);
                free(m->help);
                free(m->bounds);
                free(m);
        }
        pthread_mutex_destroy(&r->lock);
        free(r);
}

static nc_metric_t *metric_add(nc_metrics_t *r, enum metric_type type, const char *name,
                               const char *help, const double *bounds, size_t nbounds)
{
        nc_metric_t *m;
        size_t i;

        if (!name_valid(name, 1))
                fatalx("metrics: invalid metric name \"%s\"", name);
        if (type == M_HISTOGRAM) {
                for (i = 0; i < nbounds; i++)
                        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                                fatalx("metrics: %s: buckets must be finite and increasing", name);
        }
        pthread_mutex_lock(&r->lock);
        for (m = r->first; m; m = m->next) {
                if (strcmp(m->name, name))
                        continue;
                if (m->type != type)
                        fatalx("metrics: %s registered as %s and as %s", name, type_names[m->type],
                               type_names[type]);
                pthread_mutex_unlock(&r->lock);
                return m;
        }
        m = nc_xcalloc(1, sizeof(*m));
        m->reg = r;
        m->name = nc_xstrdup(name);
        m->help = nc_xstrdup(help ? help : "");
        m->type = type;
        if (type == M_HISTOGRAM) {
                m->nbounds = nbounds;
                m->bounds = nc_xmalloc((nbounds ? nbounds : 1) * sizeof(double));
                if (nbounds)
                        memcpy(m->bounds, bounds, nbounds * sizeof(double));
        }
        if (r->last)
                r->last->next = m;
        else
                r->first = m;
        r->last = m;
        pthread_mutex_unlock(&r->lock);
        return m;
}

nc_metric_t *nc_metrics_counter(nc_metrics_t *r, const char *name, const char *help)
{
        return metric_add(r, M_COUNTER, name, help, NULL, 0);
}

nc_metric_t *nc_metrics_gauge(nc_metrics_t *r, const char *name, const char *help)
{
        return metric_add(r, M_GAUGE, name, help, NULL, 0);
}

nc_metric_t *nc_metrics_histogram(nc_metrics_t *r, const char *name, const char *help,
                                  const double *bounds, size_t nbounds)
{
        return metric_add(r, M_HISTOGRAM, name, help, bounds, nbounds);
}

static unsigned hash_str(const char *s)
{
        uint32_t h = 2166136261u; /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 16777619u;
        return h % SERIES_HASH;
}

/* Finds or creates the series for LABELS; NULL when the labels are malformed or the metric
 * is full.  Called with the registry locked. */
static struct series *series_get(nc_metric_t *m, const char *labels)
{
        unsigned h;
        struct series *s;

        if (!labels)
                labels = "";
        h = hash_str(labels);
        for (s = m->hash[h]; s; s = s->hnext)
                if (!strcmp(s->labels, labels))
                        return s;
        /* Only new label sets are checked, so the common path stays a lookup. */
        if (!labels_valid(labels, m->type)) {
                log_warnx("metrics: %s: malformed labels, update dropped", m->name);
                return NULL;
        }
        if (m->nseries >= NC_METRICS_MAX_SERIES) {
                if (!m->full_warned)
                        log_warnx("metrics: %s: more than %d label sets, new ones dropped", m->name,
                                  NC_METRICS_MAX_SERIES);
                m->full_warned = 1;
                return NULL;
        }
        s = nc_xcalloc(1, sizeof(*s));
        s->labels = nc_xstrdup(labels);
        if (m->type == M_HISTOGRAM)
                s->buckets = nc_xcalloc(m->nbounds + 1, sizeof(*s->buckets));
        s->hnext = m->hash[h];
        m->hash[h] = s;
        if (m->last)
                m->last->next = s;
        else
                m->first = s;
        m->last = s;
        m->nseries++;
        return s;
}

void nc_metrics_inc(nc_metric_t *m, const char *labels, double v)
{
        struct series *s;

        if (m->type == M_HISTOGRAM)
                fatalx("metrics: %s is a histogram, use nc_metrics_observe", m->name);
        if (m->type == M_COUNTER && !(v >= 0))
                return;
        pthread_mutex_lock(&m->reg->lock);
        s = series_get(m, labels);
        if (s)
                s->value += v;
        pthread_mutex_unlock(&m->reg->lock);
}

void nc_metrics_set(nc_metric_t *m, const char *labels, double v)
{
        struct series *s;

        if (m->type != M_GAUGE)
                fatalx("metrics: %s is a %s, only gauges can be set", m->name, type_names[m->type]);
        pthread_mutex_lock(&m->reg->lock);
        s = series_get(m, labels);
        if (s)
                s->value = v;
        pthread_mutex_unlock(&m->reg->lock);
}

void nc_metrics_observe(nc_metric_t *m, const char *labels, double v)
{
        struct series *s;
        size_t i;

        if (m->type != M_HISTOGRAM)
                fatalx("metrics: %s is a %s, not a histogram", m->name, type_names[m->type]);
        /* First bucket whose upper bound holds V; NaN and values above all bounds land in the
         * implicit +Inf bucket. */
        for (i = 0; i < m->nbounds && !(v <= m->bounds[i]); i++)
                ;
        pthread_mutex_lock(&m->reg->lock);
        s = series_get(m, labels);
        if (s) {
                s->buckets[i]++;
                s->count++;
                s->value += v;
        }
        pthread_mutex_unlock(&m->reg->lock);
}

void nc_metrics_touch(nc_metric_t *m, const char *labels)
{
        pthread_mutex_lock(&m->reg->lock);
        series_get(m, labels);
        pthread_mutex_unlock(&m->reg->lock);
}

/* Shortest of %.15g / %.17g that reads back as V, so 0.1 prints as 0.1 yet nothing is lost. */
static void put_double(FILE *f, double v)
{
        char b[32];

        if (isnan(v)) {
                fputs("NaN", f);
        } else if (isinf(v)) {
                fputs(v > 0 ? "+Inf" : "-Inf", f);
        } else {
                snprintf(b, sizeof(b), "%.15g", v);
                if (strtod(b, NULL) != v)
                        snprintf(b, sizeof(b), "%.17g", v);
                fputs(b, f);
        }
}

/* HELP text escapes backslash and newline only. */
static void put_help(FILE *f, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

/* NAME{LABELS} or NAME{LABELS,le="B"}, braces left out when empty. */
static void put_sample_name(FILE *f, const char *name, const char *suffix, const char *labels,
                            const double *le)
{
        fprintf(f, "%s%s", name, suffix);
        if (!*labels && !le)
                return;
        fprintf(f, "{%s", labels);
        if (le) {
                fprintf(f, "%sle=\"", *labels ? "," : "");
                put_double(f, *le);
                fputc('"', f);
        }
        fputc('}', f);
}

static void render_metric(FILE *f, const nc_metric_t *m)
{
        const struct series *s;
        const double inf = INFINITY;
        size_t i;

        fprintf(f, "# HELP %s ", m->name);
        put_help(f, m->help);
        fprintf(f, "\n# TYPE %s %s\n", m->name, type_names[m->type]);
        for (s = m->first; s; s = s->next) {
                uint64_t cum = 0;

                if (m->type != M_HISTOGRAM) {
                        put_sample_name(f, m->name, "", s->labels, NULL);
                        fputc(' ', f);
                        put_double(f, s->value);
                        fputc('\n', f);
                        continue;
                }
                for (i = 0; i <= m->nbounds; i++) {
                        cum += s->buckets[i];
                        put_sample_name(f, m->name, "_bucket", s->labels,
                                        i < m->nbounds ? &m->bounds[i] : &inf);
                        fprintf(f, " %llu\n", (unsigned long long)cum);
                }
                put_sample_name(f, m->name, "_sum", s->labels, NULL);
                fputc(' ', f);
                put_double(f, s->value);
                fputc('\n', f);
                put_sample_name(f, m->name, "_count", s->labels, NULL);
                fprintf(f, " %llu\n", (unsigned long long)s->count);
        }
}

char *nc_metrics_render(nc_metrics_t *r)
{
        const nc_metric_t *m;
        char *buf = NULL;
        size_t len = 0;
        FILE *f;
        const struct collector *c;

        for (c = r->collectors; c; c = c->next)
                c->fn(r, c->opaque);
        if (!(f = open_memstream(&buf, &len)))
                return NULL;
        pthread_mutex_lock(&r->lock);
        for (m = r->first; m; m = m->next)
                render_metric(f, m);
        pthread_mutex_unlock(&r->lock);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* The escape for C inside a label value, or NULL when it stands for itself. */
static const char *label_escape(char c)
{
        switch (c) {
        case '\\':
                return "\\\\";
        case '"':
                return "\\\"";
        case '\n':
                return "\\n";
        default:
                return NULL;
        }
}

int nc_metrics_labels(char *out, size_t out_size, ...)
{
        const char *key, *val;
        size_t pos = 0;
        int pairs = 0, ok = out_size > 0;
        va_list ap;

        va_start(ap, out_size);
        while (ok && (key = va_arg(ap, const char *)) != NULL) {
                val = va_arg(ap, const char *);
                if (!name_valid(key, 0) || !val || ++pairs > NC_METRICS_MAX_LABELS) {
                        ok = 0;
                        break;
                }
                /* key="value" plus a comma before all but the first; checked as we go. */
                if (pos + (pairs > 1) + strlen(key) + 2 >= out_size) {
                        ok = 0;
                        break;
                }
                if (pairs > 1)
                        out[pos++] = ',';
                memcpy(out + pos, key, strlen(key));
                pos += strlen(key);
                out[pos++] = '=';
                out[pos++] = '"';
                for (; *val && ok; val++) {
                        const char *esc = label_escape(*val);
                        size_t n = esc ? 2 : 1;

                        if (pos + n >= out_size) {
                                ok = 0;
                                break;
                        }
                        if (esc)
                                memcpy(out + pos, esc, 2);
                        else
                                out[pos] = *val;
                        pos += n;
                }
                if (!ok || pos + 1 >= out_size) {
                        ok = 0;
                        break;
                }
                out[pos++] = '"';
        }
        va_end(ap);
        if (!ok) {
                if (out_size > 0)
                        out[0] = '\0';
                return -1;
        }
        out[pos] = '\0';
        return 0;
}

void nc_metrics_on_render(nc_metrics_t *r, void (*fn)(nc_metrics_t *r, void *opaque), void *opaque)
{
        struct collector *c = nc_xcalloc(1, sizeof(*c)), **pp;

        c->fn = fn;
        c->opaque = opaque;
        for (pp = &r->collectors; *pp; pp = &(*pp)->next)
                ;
        *pp = c;
}

/* ---- what every daemon exports ----------------------------------------------------------- */

struct process_metrics {
        nc_metric_t *cpu, *rss, *vsize, *fds, *max_fds, *start;
        double boot_time; /* /proc/stat btime, read once */
};

/* Sets the value of a series whatever its type: for collectors that read a counter's total
 * from the system (process_cpu_seconds_total) rather than count it themselves. */
static void series_put(nc_metric_t *m, const char *labels, double v)
{
        struct series *s;

        pthread_mutex_lock(&m->reg->lock);
        if ((s = series_get(m, labels)) && m->type != M_HISTOGRAM)
                s->value = v;
        pthread_mutex_unlock(&m->reg->lock);
}

static double read_boot_time(void)
{
        FILE *f = fopen("/proc/stat", "re");
        char line[256];
        double bt = 0;

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (!strncmp(line, "btime ", 6)) {
                        bt = strtod(line + 6, NULL);
                        break;
                }
        fclose(f);
        return bt;
}

/* Descriptors open, not counting the one that lists them; -1 when /proc/self/fd is not
 * readable. */
static long count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        long n = 0;

        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n > 0 ? n - 1 : 0;
}

static void process_collect(nc_metrics_t *r, void *opaque)
{
        struct process_metrics *p = opaque;
        char buf[1024], *s;
        unsigned long long utime, stime, start, vsize;
        long long rss;
        long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE), fds;
        struct rlimit rl;
        size_t n;
        FILE *f;

        (void)r;
        if ((f = fopen("/proc/self/stat", "re"))) {
                n = fread(buf, 1, sizeof(buf) - 1, f);
                buf[n] = '\0';
                fclose(f);
                /* The command name (field 2) may hold blanks and parentheses: fields are
                 * counted from the last ')'.  After it: state (3) ... utime (14), stime (15),
                 * starttime (22), vsize (23), rss (24). */
                if ((s = strrchr(buf, ')')) && ticks > 0 &&
                    sscanf(s + 1,
                           " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                           "%*d %*d %llu %llu %lld",
                           &utime, &stime, &start, &vsize, &rss) == 5) {
                        series_put(p->cpu, NULL, (double)(utime + stime) / (double)ticks);
                        series_put(p->rss, NULL, (double)rss * (double)page);
                        series_put(p->vsize, NULL, (double)vsize);
                        if (p->boot_time > 0)
                                series_put(p->start, NULL,
                                           p->boot_time + (double)start / (double)ticks);
                }
        }
        if ((fds = count_fds()) >= 0)
                series_put(p->fds, NULL, (double)fds);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
                series_put(p->max_fds, NULL,
                           rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

void nc_metrics_standard(nc_metrics_t *r, const char *program, const char *version)
{
        struct process_metrics *p;
        char l[NC_METRICS_LABELS_SIZE];
        nc_metric_t *bi = nc_metrics_gauge(r, "noticecast_build_info",
                                           "Always 1: the program and version of this process.");

        if (nc_metrics_labels(l, sizeof(l), "program", program, "version", version, NULL) == 0)
                nc_metrics_set(bi, l, 1);
        if (r->process)
                return;
        p = r->process = nc_xcalloc(1, sizeof(*p));
        p->cpu = nc_metrics_counter(r, "process_cpu_seconds_total",
                                    "Total user and system CPU time spent in seconds.");
        p->rss =
            nc_metrics_gauge(r, "process_resident_memory_bytes", "Resident memory size in bytes.");
        p->vsize =
            nc_metrics_gauge(r, "process_virtual_memory_bytes", "Virtual memory size in bytes.");
        p->fds = nc_metrics_gauge(r, "process_open_fds", "Number of open file descriptors.");
        p->max_fds =
            nc_metrics_gauge(r, "process_max_fds", "Maximum number of open file descriptors.");
        p->start = nc_metrics_gauge(r, "process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds.");
        p->boot_time = read_boot_time();
        nc_metrics_on_render(r, process_collect, p);
}

long long nc_metrics_consumer_lag(struct rd_kafka_s *rk)
{
        rd_kafka_topic_partition_list_t *parts;
        int64_t lo, hi;
        long long lag = 0;
        int i;

        if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return -1;
        if (parts->cnt == 0) {
                rd_kafka_topic_partition_list_destroy(parts);
                return -1;
        }
        rd_kafka_position(rk, parts);
        for (i = 0; i < parts->cnt; i++) {
                rd_kafka_topic_partition_t *p = &parts->elems[i];

                if (p->offset < 0 ||
                    rd_kafka_get_watermark_offsets(rk, p->topic, p->partition, &lo, &hi) != 0)
                        continue;
                if (hi > p->offset)
                        lag += hi - p->offset;
        }
        rd_kafka_topic_partition_list_destroy(parts);
        return lag;
}
