/* RFC 3339 timestamps. */
#ifndef NC_TIME_H
#define NC_TIME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Parses a full RFC 3339 date-time ("2017-06-20T09:00:00+09:00", fraction optional, 'Z' or
 * an offset required).  On success stores the instant in *ms (Unix milliseconds). */
int nc_time_parse_rfc3339(const char *s, int64_t *ms, char *errstr, size_t errstr_size);
/* Formats Unix milliseconds as UTC "YYYY-MM-DDTHH:MM:SS.mmmZ" (or without fraction when
 * millis is 0).  buf must hold 32 bytes. */
char *nc_time_format_rfc3339(int64_t ms, char *buf, size_t size);
int64_t nc_time_now_ms(void);

#endif
