#include "nc_csv.h"

#include <stdlib.h>
#include <string.h>

#include "nc_util.h"

struct buf {
        char *s;
        size_t n, cap;
};

static void buf_put(struct buf *b, char c)
{
        if (b->n + 1 >= b->cap) {
                b->cap = b->cap ? b->cap * 2 : 64;
                b->s = nc_xrealloc(b->s, b->cap);
        }
        b->s[b->n++] = c;
        b->s[b->n] = '\0';
}

static void row_add_field(nc_csv_row_t *row, struct buf *b)
{
        row->fields = nc_xrealloc(row->fields, (row->n + 1) * sizeof(*row->fields));
        row->fields[row->n++] = nc_xstrdup(b->s ? b->s : "");
        b->n = 0;
        if (b->s)
                b->s[0] = '\0';
}

static void csv_add_row(nc_csv_t *csv, nc_csv_row_t *row)
{
        /* A record that is one empty field is a blank line. */
        if (row->n == 1 && row->fields[0][0] == '\0') {
                free(row->fields[0]);
                free(row->fields);
        } else {
                if (csv->n == csv->cap) {
                        csv->cap = csv->cap ? csv->cap * 2 : 64;
                        csv->rows = nc_xrealloc(csv->rows, csv->cap * sizeof(*csv->rows));
                }
                csv->rows[csv->n++] = *row;
        }
        memset(row, 0, sizeof(*row));
}

int nc_csv_parse(const char *text, size_t len, nc_csv_t *csv, char *errstr, size_t errstr_size)
{
        nc_csv_row_t row = {0};
        struct buf b = {0};
        int line = 1, quoted = 0, was_quoted = 0, quote_line = 0;
        size_t i = 0;

        memset(csv, 0, sizeof(*csv));
        /* A UTF-8 byte order mark is common in spreadsheets' CSV exports. */
        if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
                i = 3;
        row.line = 1;
        for (; i < len; i++) {
                char c = text[i];

                if (c == '\0') {
                        nc_err(errstr, errstr_size, "%d: NUL byte in the file", line);
                        goto fail;
                }
                if (quoted) {
                        if (c == '"' && i + 1 < len && text[i + 1] == '"') {
                                buf_put(&b, '"');
                                i++;
                        } else if (c == '"') {
                                quoted = 0;
                        } else {
                                if (c == '\n')
                                        line++;
                                buf_put(&b, c);
                        }
                        continue;
                }
                if (c == '"') {
                        if (b.n > 0 || was_quoted) {
                                nc_err(errstr, errstr_size,
                                       "%d: stray '\"' inside an unquoted field", line);
                                goto fail;
                        }
                        quoted = was_quoted = 1;
                        quote_line = line;
                } else if (c == ',') {
                        row_add_field(&row, &b);
                        was_quoted = 0;
                } else if (c == '\r' && i + 1 < len && text[i + 1] == '\n') {
                        continue;
                } else if (c == '\n') {
                        row_add_field(&row, &b);
                        csv_add_row(csv, &row);
                        was_quoted = 0;
                        row.line = ++line;
                } else {
                        if (was_quoted) {
                                nc_err(errstr, errstr_size,
                                       "%d: text after the closing quote of a field", line);
                                goto fail;
                        }
                        buf_put(&b, c);
                }
        }
        if (quoted) {
                nc_err(errstr, errstr_size, "%d: quoted field is never closed", quote_line);
                goto fail;
        }
        if (b.n > 0 || row.n > 0 || was_quoted) {
                row_add_field(&row, &b);
                csv_add_row(csv, &row);
        }
        free(b.s);
        return 0;
fail:
        for (i = 0; i < row.n; i++)
                free(row.fields[i]);
        free(row.fields);
        free(b.s);
        nc_csv_free(csv);
        return -1;
}

void nc_csv_free(nc_csv_t *csv)
{
        size_t i, j;

        for (i = 0; i < csv->n; i++) {
                for (j = 0; j < csv->rows[i].n; j++)
                        free(csv->rows[i].fields[j]);
                free(csv->rows[i].fields);
        }
        free(csv->rows);
        memset(csv, 0, sizeof(*csv));
}
