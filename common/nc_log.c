#include "nc_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "noticecast";
static enum nc_log_level log_level = NC_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void nc_log_init(const char *progname, enum nc_log_level level)
{
        log_prog = progname;
        log_level = level;
}

void nc_log_set_level(enum nc_log_level level)
{
        log_level = level;
}

enum nc_log_level nc_log_get_level(void)
{
        return log_level;
}

void nc_log_adjust(int delta)
{
        int l = (int)log_level + delta;

        if (l < NC_LOG_DEBUG)
                l = NC_LOG_DEBUG;
        if (l > NC_LOG_QUIET)
                l = NC_LOG_QUIET;
        log_level = (enum nc_log_level)l;
}

/* logfmt value: bare when it has no space, quote, equals sign or control character. */
static void put_value(FILE *f, const char *v)
{
        const unsigned char *p;
        int bare = *v != '\0';

        for (p = (const unsigned char *)v; *p && bare; p++)
                if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
                        bare = 0;
        if (bare) {
                fputs(v, f);
                return;
        }
        fputc('"', f);
        for (p = (const unsigned char *)v; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p == '\r')
                        fputs("\\r", f);
                else if (*p == '\t')
                        fputs("\\t", f);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

static void put_head(FILE *f, enum nc_log_level level)
{
        struct timeval tv;
        struct tm tm;
        char ts[32];

        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(f, "ts=%s.%03ldZ level=%s prog=", ts, (long)(tv.tv_usec / 1000),
                level_names[level]);
        put_value(f, log_prog);
}

/* A line is composed in memory and written with one write(2): a reader of the log (a test,
 * a log shipper following the file) never sees half a line, and lines of several threads or
 * processes sharing the descriptor never interleave (a pipe keeps writes of up to PIPE_BUF
 * bytes whole). */
struct line {
        FILE *f;
        char *buf;
        size_t len;
};

static FILE *line_begin(struct line *l, enum nc_log_level level)
{
        l->buf = NULL;
        l->len = 0;
        l->f = open_memstream(&l->buf, &l->len);
        if (!l->f) {
                l->f = stderr; /* out of memory: write it piecewise rather than not at all */
                flockfile(stderr);
        }
        put_head(l->f, level);
        fputs(" msg=", l->f);
        return l->f;
}

static void line_end(struct line *l)
{
        const char *p;
        size_t left;

        fputc('\n', l->f);
        if (l->f == stderr) {
                funlockfile(stderr);
                return;
        }
        fclose(l->f);
        for (p = l->buf, left = l->len; left > 0;) {
                ssize_t n = write(STDERR_FILENO, p, left);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break; /* nowhere to report it */
                p += n;
                left -= (size_t)n;
        }
        free(l->buf);
}

static void vlog(enum nc_log_level level, int errnum, const char *fmt, va_list ap)
{
        char msg[2048];
        struct line l;
        FILE *f;

        if (level < log_level)
                return;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        f = line_begin(&l, level);
        put_value(f, msg);
        if (errnum) {
                fputs(" error=", f);
                put_value(f, strerror(errnum));
        }
        line_end(&l);
}

#define NC_LOG_FN(name, level, with_errno)                                                         \
        void name(const char *fmt, ...)                                                            \
        {                                                                                          \
                int saved = errno;                                                                 \
                va_list ap;                                                                        \
                va_start(ap, fmt);                                                                 \
                vlog(level, with_errno ? saved : 0, fmt, ap);                                      \
                va_end(ap);                                                                        \
                errno = saved;                                                                     \
        }

NC_LOG_FN(log_debug, NC_LOG_DEBUG, 0)
NC_LOG_FN(log_info, NC_LOG_INFO, 0)
NC_LOG_FN(log_warn, NC_LOG_WARN, 1)
NC_LOG_FN(log_warnx, NC_LOG_WARN, 0)
NC_LOG_FN(log_error, NC_LOG_ERROR, 0)

void fatal(const char *fmt, ...)
{
        int saved = errno;
        va_list ap;

        va_start(ap, fmt);
        vlog(NC_LOG_ERROR, saved, fmt, ap);
        va_end(ap);
        exit(70); /* EX_SOFTWARE */
}

void fatalx(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vlog(NC_LOG_ERROR, 0, fmt, ap);
        va_end(ap);
        exit(70);
}

void nc_log_kv(enum nc_log_level level, const char *msg, ...)
{
        const char *k, *v;
        struct line l;
        va_list ap;
        FILE *f;

        if (level < log_level)
                return;
        f = line_begin(&l, level);
        put_value(f, msg);
        va_start(ap, msg);
        while ((k = va_arg(ap, const char *)) != NULL) {
                v = va_arg(ap, const char *);
                fprintf(f, " %s=", k);
                put_value(f, v ? v : "");
        }
        va_end(ap);
        line_end(&l);
}

/* A key the line may carry: lower-case logfmt, and none of the keys every line has. */
static int field_key_ok(const char *k)
{
        static const char *const reserved[] = {"ts", "level", "prog", "msg", "error"};
        const char *p;
        size_t i;

        if (!k || !((*k >= 'a' && *k <= 'z') || *k == '_'))
                return 0;
        for (p = k; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
                        return 0;
        for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
                if (!strcmp(k, reserved[i]))
                        return 0;
        return 1;
}

void nc_log_field(nc_log_fields_t *f, const char *key, const char *val)
{
        if (!val || f->n >= NC_LOG_FIELDS_MAX || !field_key_ok(key))
                return;
        f->key[f->n] = key;
        f->val[f->n] = val;
        f->n++;
}

void nc_log_field_int(nc_log_fields_t *f, const char *key, long long val)
{
        if (f->n >= NC_LOG_FIELDS_MAX || !field_key_ok(key))
                return;
        snprintf(f->num[f->n], sizeof(f->num[f->n]), "%lld", val);
        f->key[f->n] = key;
        f->val[f->n] = f->num[f->n];
        f->n++;
}

void nc_log_f(enum nc_log_level level, const nc_log_fields_t *f, const char *fmt, ...)
{
        char msg[2048];
        struct line l;
        va_list ap;
        FILE *o;
        int i;

        if (level < log_level || level >= NC_LOG_QUIET)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        o = line_begin(&l, level);
        put_value(o, msg);
        for (i = 0; f && i < f->n; i++) {
                fprintf(o, " %s=", f->key[i]);
                put_value(o, f->val[i]);
        }
        line_end(&l);
}
