/* Tiny logging API in the style of OpenSMTPD's log.h: one logfmt line per event on stderr.
 *
 *   ts=2026-11-26T19:45:00.123Z level=warn prog=noticecast msg="broker down" error="..."
 *
 * log_warn() appends the current errno as error=..., log_warnx() doesn't; fatal()/fatalx()
 * log and exit.  The format string writes the message text; nc_log_kv() adds key=value pairs
 * with correct logfmt quoting.  Secrets must never be passed to these functions. */
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

#endif
