/* Reading notices from files: one object, an array of objects, or NDJSON (one object per
 * line; blank lines allowed).  Each value keeps the line it starts on so errors can say
 * "file:line: field: message" even for the 40,000th notice of a batch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static size_t skip_ws(const char *buf, size_t len, size_t pos, int *line)
{
        while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\r' ||
                             buf[pos] == '\n')) {
                if (buf[pos] == '\n')
                        (*line)++;
                pos++;
        }
        return pos;
}

static void count_lines(const char *buf, size_t from, size_t to, int *line)
{
        const char *p = buf + from, *end = buf + to;

        while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                (*line)++;
                p++;
        }
}

/* Finds the first invalid UTF-8 sequence and the line it is on. */
static int check_utf8(const char *buf, size_t len, int *bad_line, size_t *bad_col)
{
        size_t i = 0, line_start = 0;
        int line = 1;

        if (nc_utf8_valid(buf, len))
                return 0;
        while (i < len) {
                size_t n = 1;
                unsigned char c = (unsigned char)buf[i];

                if (c == '\n') {
                        line++;
                        line_start = i + 1;
                }
                if (c >= 0x80) {
                        n = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
                        if ((c & 0xc0) == 0x80 || (c & 0xf8) == 0xf8 || i + n > len ||
                            !nc_utf8_valid(buf + i, n))
                                break;
                }
                i += n;
        }
        *bad_line = line;
        *bad_col = i - line_start + 1;
        return -1;
}

static void add_item(nc_input_t *in, const char *file, int line, json_t *json)
{
        nc_input_item_t *it;

        if (in->n == in->cap) {
                in->cap = in->cap ? in->cap * 2 : 64;
                in->items = nc_xrealloc(in->items, in->cap * sizeof(*in->items));
        }
        it = &in->items[in->n++];
        memset(it, 0, sizeof(*it));
        it->file = file;
        it->line = line;
        it->json = json;
        if (in->hook)
                in->hook(in, it);
}

static const char *add_file(nc_input_t *in, const char *name)
{
        in->files = nc_xrealloc(in->files, (in->nfiles + 1) * sizeof(*in->files));
        return in->files[in->nfiles++] = nc_xstrdup(name);
}

void nc_input_add(nc_input_t *in, const char *origin, json_t *json)
{
        add_item(in, add_file(in, origin), 1, json);
}

/* Decodes one value at POS; returns bytes consumed or 0 with errstr set. */
static size_t decode_one(nc_input_t *in, const char *file, const char *buf, size_t len,
                         size_t pos, int line, char *errstr, size_t errstr_size)
{
        json_error_t jerr;
        json_t *v;

        v = json_loadb(buf + pos, len - pos, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES,
                       &jerr);
        if (!v) {
                nc_err(errstr, errstr_size, "%s:%d: invalid JSON: %s", file,
                       line + (jerr.line > 0 ? jerr.line - 1 : 0), jerr.text);
                return 0;
        }
        if (!json_is_object(v)) {
                json_decref(v);
                nc_err(errstr, errstr_size, "%s:%d: notice: must be a JSON object", file, line);
                return 0;
        }
        add_item(in, file, line, v);
        return (size_t)jerr.position; /* bytes read, with JSON_DISABLE_EOF_CHECK */
}

int nc_input_read(nc_input_t *in, const char *path, char *errstr, size_t errstr_size)
{
        const char *file;
        size_t len, pos, used, col;
        int line = 1, bad_line, array;
        char *buf;

        if (!(buf = nc_file_read(path, &len, errstr, errstr_size)))
                return -2;
        file = add_file(in, strcmp(path, "-") ? path : "<stdin>");
        if (check_utf8(buf, len, &bad_line, &col) != 0) {
                free(buf);
                return nc_err(errstr, errstr_size, "%s:%d: not valid UTF-8 (at column %zu)",
                              file, bad_line, col);
        }
        if (memchr(buf, '\0', len)) {
                free(buf);
                return nc_err(errstr, errstr_size, "%s: contains a NUL byte", file);
        }
        pos = skip_ws(buf, len, 0, &line);
        if (pos == len) {
                free(buf);
                return nc_err(errstr, errstr_size, "%s: is empty, expected JSON notices", file);
        }
        array = buf[pos] == '[';
        if (array)
                pos = skip_ws(buf, len, pos + 1, &line);
        while (pos < len) {
                if (array && buf[pos] == ']') {
                        pos = skip_ws(buf, len, pos + 1, &line);
                        array = 0;
                        if (pos < len) {
                                free(buf);
                                return nc_err(errstr, errstr_size,
                                              "%s:%d: unexpected text after the array", file,
                                              line);
                        }
                        break;
                }
                if (!(used = decode_one(in, file, buf, len, pos, line, errstr, errstr_size))) {
                        free(buf);
                        return -1;
                }
                count_lines(buf, pos, pos + used, &line);
                pos = skip_ws(buf, len, pos + used, &line);
                if (array) {
                        if (pos < len && buf[pos] == ',')
                                pos = skip_ws(buf, len, pos + 1, &line);
                        else if (pos >= len || buf[pos] != ']') {
                                free(buf);
                                return nc_err(errstr, errstr_size,
                                              "%s:%d: invalid JSON: expected ',' or ']' in the "
                                              "array",
                                              file, line);
                        }
                }
        }
        free(buf);
        if (array)
                return nc_err(errstr, errstr_size, "%s:%d: invalid JSON: the array is not closed",
                              file, line);
        return 0;
}

void nc_input_free(nc_input_t *in)
{
        size_t i;

        for (i = 0; i < in->n; i++) {
                json_decref(in->items[i].json);
                free(in->items[i].value);
        }
        for (i = 0; i < in->nfiles; i++)
                free(in->files[i]);
        free(in->items);
        free(in->files);
        memset(in, 0, sizeof(*in));
}
