/* Tiny logging API in the style of OpenSMTPD's log.h: one logfmt line per event on stderr.
 *
 *   ts=2026-11-26T19:45:00.123Z level=warn prog=noticecast msg="broker down" error="..."
 *
 * log_warn() appends the current errno as error=..., log_warnx() doesn't; fatal()/fatalx()
 * log and exit.  The format string writes the message text; nc_log_kv() adds key=value pairs
 * with correct logfmt quoting, and nc_log_f() does the same with a formatted message and
 * fields that may be numbers (what a record is about goes in fields, not in msg, so that
 * a log query can select on it: partner, notice_id, topic, partition, offset; see
 * docs/monitoring.md).  Secrets must never be passed to these functions. */
#ifndef NC_LOG_H
#define NC_LOG_H

#include <stdarg.h>

enum nc_log_level { NC_LOG_DEBUG = 0, NC_LOG_INFO, NC_LOG_WARN, NC_LOG_ERROR, NC_LOG_QUIET };

#define NC_PRINTF(f, a) __attribute__((format(printf, f, a)))

void nc_log_init(const char *progname, enum nc_log_level level);
void nc_log_set_level(enum nc_log_level level);
enum nc_log_level nc_log_get_level(void);
/* -v lowers the threshold by one level, -q raises it. */
void nc_log_adjust(int delta);

void log_debug(const char *fmt, ...) NC_PRINTF(1, 2);
void log_info(const char *fmt, ...) NC_PRINTF(1, 2);
void log_warn(const char *fmt, ...) NC_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) NC_PRINTF(1, 2);
void log_error(const char *fmt, ...) NC_PRINTF(1, 2);
__attribute__((noreturn)) void fatal(const char *fmt, ...) NC_PRINTF(1, 2);
__attribute__((noreturn)) void fatalx(const char *fmt, ...) NC_PRINTF(1, 2);

/* Structured event: msg is free text, then NULL-terminated key, value pairs of strings.
 *   nc_log_kv(NC_LOG_INFO, "published", "id", id, "topic", topic, NULL); */
void nc_log_kv(enum nc_log_level level, const char *msg, ...) __attribute__((sentinel));

/* The fields of one nc_log_f() line, in the order they are added.  Owned by the caller (on
 * its stack); string values are not copied, so they must live until the line is written.
 *   nc_log_fields_t f = {0};
 *   nc_log_field(&f, "partner", id);
 *   nc_log_field_int(&f, "offset", off);
 *   nc_log_f(NC_LOG_WARN, &f, "answered %ld", status); */
#define NC_LOG_FIELDS_MAX 12
typedef struct nc_log_fields {
        int n;
        const char *key[NC_LOG_FIELDS_MAX];
        const char *val[NC_LOG_FIELDS_MAX];
        char num[NC_LOG_FIELDS_MAX][24]; /* the text of integer values */
} nc_log_fields_t;

/* Adds KEY=VAL; a NULL VAL adds nothing.  KEY must be a logfmt key ([a-z_][a-z0-9_]*) other
 * than ts, level, prog, msg and error, which the line itself writes: another key, or a field
 * beyond NC_LOG_FIELDS_MAX, is left out. */
void nc_log_field(nc_log_fields_t *f, const char *key, const char *val);
void nc_log_field_int(nc_log_fields_t *f, const char *key, long long val);
/* One line: msg from FMT, then F's fields (F may be NULL). */
void nc_log_f(enum nc_log_level level, const nc_log_fields_t *f, const char *fmt, ...)
    NC_PRINTF(3, 4);

#endif
