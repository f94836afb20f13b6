/* Small string, UTF-8 and file helpers shared by every program. */
#ifndef NC_UTIL_H
#define NC_UTIL_H

#include <stddef.h>
#include <stdio.h>

#include "nc_log.h"

/* sysexits(3) codes used by every program. */
enum {
        NC_EX_OK = 0,
        NC_EX_USAGE = 64,
        NC_EX_DATAERR = 65,
        NC_EX_NOINPUT = 66,
        NC_EX_UNAVAILABLE = 69,
        NC_EX_SOFTWARE = 70,
        NC_EX_IOERR = 74,
        NC_EX_CONFIG = 78,
};

/* A growable list of strings (owned copies). */
typedef struct nc_strlist {
        char **v;
        size_t n, cap;
} nc_strlist_t;

void nc_strlist_add(nc_strlist_t *l, const char *s);
int nc_strlist_has(const nc_strlist_t *l, const char *s);
void nc_strlist_clear(nc_strlist_t *l);
/* Splits S on commas, semicolons and blanks into L (empty items skipped). */
void nc_strlist_split(nc_strlist_t *l, const char *s);

/* snprintf into errstr; always returns -1 so callers can `return nc_err(...)`. */
int nc_err(char *errstr, size_t errstr_size, const char *fmt, ...) NC_PRINTF(3, 4);

void *nc_xmalloc(size_t n);
void *nc_xcalloc(size_t n, size_t m);
void *nc_xrealloc(void *p, size_t n);
char *nc_xstrdup(const char *s);

/* Reads a whole file ("-" = stdin) into a NUL-terminated malloc'd buffer. */
char *nc_file_read(const char *path, size_t *lenp, char *errstr, size_t errstr_size);

/* 1 if S[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int nc_utf8_valid(const char *s, size_t len);
/* Number of code points in a valid UTF-8 string. */
size_t nc_utf8_len(const char *s);
/* Returns the first control character (C0, DEL, C1 and U+2028/2029 line separators) in S
 * that is not in ALLOWED, or -1 if none. */
long nc_utf8_find_control(const char *s, const char *allowed);

/* Trims ASCII blanks in place; returns S. */
char *nc_str_trim(char *s);
void nc_str_lower(char *s);
void nc_str_upper(char *s);

/* Validates a mailbox address (addr-spec only, ASCII, no display name). */
int nc_email_valid(const char *s, char *errstr, size_t errstr_size);

/* 1 if NAME is a known IANA time zone (checked against the system's zoneinfo). */
int nc_tz_valid(const char *name);

#endif
