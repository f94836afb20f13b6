/* RFC 4180 CSV reader that remembers the line each record starts on, for file:line errors. */
#ifndef NC_CSV_H
#define NC_CSV_H

#include <stddef.h>

typedef struct nc_csv_row {
        int line; /* 1-based line where the record starts */
        char **fields;
        size_t n;
} nc_csv_row_t;

typedef struct nc_csv {
        nc_csv_row_t *rows;
        size_t n, cap;
} nc_csv_t;

/* Parses TEXT (NUL-terminated, LEN bytes).  Returns 0, or -1 with errstr "LINE: message"
 * (unterminated quote, stray quote, NUL byte).  Blank lines are skipped. */
int nc_csv_parse(const char *text, size_t len, nc_csv_t *csv, char *errstr, size_t errstr_size);
void nc_csv_free(nc_csv_t *csv);

#endif
