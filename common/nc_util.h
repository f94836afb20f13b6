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
        NC_EX_TEMPFAIL = 75, /* an MTA keeps the message and tries again */
        NC_EX_NOPERM = 77,
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
/* Makes room for NEED more bytes after LEN in *BUF of capacity *CAP (doubling, from INITIAL):
 * 0, or -1 when out of memory (the buffer is then unchanged).  For buffers whose caller
 * reports the failure (a renderer's output) rather than aborting as nc_xrealloc does. */
int nc_buf_reserve(char **buf, size_t *cap, size_t len, size_t need, size_t initial);

/* Reads a whole file ("-" = stdin) into a NUL-terminated malloc'd buffer. */
char *nc_file_read(const char *path, size_t *lenp, char *errstr, size_t errstr_size);

/* Secret files (partner webhook secrets, the SMTP password, the unsubscribe key, TLS and
 * Kafka private keys) must be accessible by their owner only: a file with any group or other
 * permission bit (mode & 077, as ssh does for private keys) is refused -- chmod 600 or 400. */
#define NC_SECRET_FILE_MAX (64 * 1024)
/* 1 if MODE (st_mode) is acceptable for a secret file. */
int nc_secret_mode_ok(unsigned mode);
/* Opens PATH for reading and checks the mode of what was opened (fstat, no race with a
 * rename).  Returns the stream, or NULL with errstr naming the file (and its mode). */
FILE *nc_secret_fopen(const char *path, char *errstr, size_t errstr_size);
/* The same check for a secret file that a library reads itself (curl's client key,
 * librdkafka's ssl.key.location).  Returns 0 or -1 with errstr. */
int nc_secret_file_check(const char *path, char *errstr, size_t errstr_size);
/* Reads a whole secret file (at most NC_SECRET_FILE_MAX bytes) into a NUL-terminated malloc'd
 * buffer, unbuffered and without realloc, so no stray copy is left in freed memory.  The
 * caller wipes and frees it.  Returns NULL with errstr on error. */
char *nc_secret_file_read(const char *path, size_t *lenp, char *errstr, size_t errstr_size);

/* 1 if S[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int nc_utf8_valid(const char *s, size_t len);
/* Number of code points in a valid UTF-8 string. */
size_t nc_utf8_len(const char *s);
/* Returns the first control character (C0, DEL, C1 and U+2028/2029 line separators) in S
 * that is not in ALLOWED, or -1 if none. */
long nc_utf8_find_control(const char *s, const char *allowed);

/* One field of a tab-separated listing (`subscribers list`, `dlq list`): an escaped copy of
 * S[0..LEN) that can neither split a row or a column nor drive a terminal.  \ \t \n \r are
 * written as such (\\ for a backslash), other C0 controls and DEL as \xHH, bytes that are
 * not UTF-8 as \xHH (>= \x80), C1 controls, U+2028/2029 and bidi controls as \uHHHH.  At most
 * MAX_CHARS characters are written (an escape counts as its length); a longer field is cut
 * there and ends with "…" (U+2026).  OUT needs NC_TSV_FIELD_SIZE(MAX_CHARS) bytes.  Returns
 * OUT. */
#define NC_TSV_FIELD_MAX             200
#define NC_TSV_FIELD_SIZE(max_chars) ((max_chars)*4 + 8)
char *nc_tsv_escape(const char *s, size_t len, size_t max_chars, char *out, size_t out_size);

/* Trims ASCII blanks in place; returns S. */
char *nc_str_trim(char *s);
void nc_str_lower(char *s);
void nc_str_upper(char *s);

/* Validates a mailbox address (addr-spec only, ASCII, no display name). */
int nc_email_valid(const char *s, char *errstr, size_t errstr_size);

/* 1 if NAME is a known IANA time zone (checked against the system's zoneinfo). */
int nc_tz_valid(const char *name);

#endif
