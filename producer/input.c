/* Reading notices from files: one object, an array of objects, or NDJSON (one object per
 * line; blank lines allowed).  Each value keeps the line it starts on so errors can say
 * "file:line: field: message" even for the 40,000th notice of a batch. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "cli.h"

static size_t skip_ws(const char *buf, size_t len, size_t pos, int *line)
{
        while (pos < len &&
               (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\r' || buf[pos] == '\n')) {
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

/* True if the value at POS, which the parser read past the end of its line, is an unclosed
 * NDJSON record: only blank lines follow its line, or one of the N lines after it starts
 * with '{' (the next record). */
static int line_unclosed(const char *buf, size_t len, size_t pos, int n)
{
        const char *p = memchr(buf + pos, '\n', len - pos), *end = buf + len;
        int ignored = 0;

        if (p == NULL)
                return 0;
        if (skip_ws(buf, len, (size_t)(p - buf), &ignored) == len)
                return 1;
        while (n-- > 0 && p != NULL && ++p < end) {
                if (*p == '{')
                        return 1;
                p = memchr(p, '\n', (size_t)(end - p));
        }
        return 0;
}

/* Decodes one value at POS; returns bytes consumed or 0 with errstr set. */
static size_t decode_one(nc_input_t *in, const char *file, const char *buf, size_t len, size_t pos,
                         int line, char *errstr, size_t errstr_size)
{
        json_error_t jerr;
        json_t *v;

        v = json_loadb(buf + pos, len - pos, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES,
                       &jerr);
        if (!v) {
                /* In NDJSON each line is one value: blame the line that did not close it, not
                 * the next record the parser stumbled on. */
                if (jerr.line > 1 && line_unclosed(buf, len, pos, jerr.line - 1))
                        nc_err(errstr, errstr_size,
                               "%s:%d: invalid JSON: the value does not end on its line", file,
                               line);
                else
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

/* Parses the values of buf[pos..end) (no array): one object after another, NDJSON included. */
static int parse_stream(nc_input_t *in, const char *file, const char *buf, size_t pos, size_t end,
                        int line, char *errstr, size_t errstr_size)
{
        size_t used;

        pos = skip_ws(buf, end, pos, &line);
        while (pos < end) {
                if (!(used = decode_one(in, file, buf, end, pos, line, errstr, errstr_size)))
                        return -1;
                count_lines(buf, pos, pos + used, &line);
                pos = skip_ws(buf, end, pos + used, &line);
        }
        return 0;
}

/* The second half of a large NDJSON file, parsed by a thread of its own. */
struct half {
        nc_input_t in;
        const char *file, *buf;
        size_t pos, end;
        int line, rc;
        char err[1024];
};

static void *parse_half(void *arg)
{
        struct half *h = arg;

        h->rc =
            parse_stream(&h->in, h->file, h->buf, h->pos, h->end, h->line, h->err, sizeof(h->err));
        return NULL;
}

#define SPLIT_MIN_BYTES (1 << 20) /* below this, a thread costs more than it saves */

/* Looks for a place near the middle where a line starts with '{' after a line that ended
 * with '}': in NDJSON, the start of a notice.  Returns 0 if there is none. */
static size_t split_point(const char *buf, size_t len)
{
        const char *p = buf + len / 2, *end = buf + len;

        while ((p = memchr(p, '\n', (size_t)(end - p))) && p + 1 < end) {
                const char *q = p;

                while (q > buf && (q[-1] == '\r' || q[-1] == ' ' || q[-1] == '\t'))
                        q--;
                if (p[1] == '{' && q > buf && q[-1] == '}')
                        return (size_t)(p + 1 - buf);
                p++;
        }
        return 0;
}

/* Two threads when it pays: the halves are independent NDJSON streams.  If either half fails
 * (a real error, or a split inside a multi-line value), everything is parsed again in order,
 * so results and messages are exactly those of one thread. */
static int parse_parallel(nc_input_t *in, const char *file, const char *buf, size_t len, size_t pos,
                          int line, char *errstr, size_t errstr_size)
{
        struct half h = {.file = file, .buf = buf, .end = len};
        size_t cut =
            len >= SPLIT_MIN_BYTES && sysconf(_SC_NPROCESSORS_ONLN) > 1 ? split_point(buf, len) : 0;
        size_t first_n = in->n, i;
        pthread_t t;
        int rc;

        if (cut <= pos || in->nfiles == 0)
                return parse_stream(in, file, buf, pos, len, line, errstr, errstr_size);
        h.pos = cut;
        h.line = line;
        count_lines(buf, pos, cut, &h.line);
        h.in.hook = in->hook;
        h.in.opaque = in->opaque;
        if (pthread_create(&t, NULL, parse_half, &h) != 0)
                return parse_stream(in, file, buf, pos, len, line, errstr, errstr_size);
        rc = parse_stream(in, file, buf, pos, cut, line, errstr, errstr_size);
        pthread_join(t, NULL);
        if (rc == 0 && h.rc == 0) {
                if (in->n + h.in.n > in->cap) {
                        in->cap = in->n + h.in.n;
                        in->items = nc_xrealloc(in->items, in->cap * sizeof(*in->items));
                }
                memcpy(in->items + in->n, h.in.items, h.in.n * sizeof(*h.in.items));
                in->n += h.in.n;
                free(h.in.items); /* the items moved; their contents are now IN's */
                return 0;
        }
        nc_input_free(&h.in);
        for (i = first_n; i < in->n; i++) {
                json_decref(in->items[i].json);
                free(in->items[i].value);
                free(in->items[i].error);
        }
        in->n = first_n;
        return parse_stream(in, file, buf, pos, len, line, errstr, errstr_size);
}

int nc_input_read(nc_input_t *in, const char *path, char *errstr, size_t errstr_size)
{
        const char *file;
        size_t len, pos, used, col;
        int line = 1, bad_line, rc;
        char *buf;

        if (!(buf = nc_file_read(path, &len, errstr, errstr_size)))
                return -2;
        file = add_file(in, strcmp(path, "-") ? path : "<stdin>");
        if (check_utf8(buf, len, &bad_line, &col) != 0) {
                free(buf);
                return nc_err(errstr, errstr_size, "%s:%d: not valid UTF-8 (at column %zu)", file,
                              bad_line, col);
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
        if (buf[pos] != '[') {
                rc = parse_parallel(in, file, buf, len, pos, line, errstr, errstr_size);
                free(buf);
                return rc;
        }
        pos = skip_ws(buf, len, pos + 1, &line);
        while (pos < len) {
                if (buf[pos] == ']') {
                        pos = skip_ws(buf, len, pos + 1, &line);
                        free(buf);
                        if (pos < len)
                                return nc_err(errstr, errstr_size,
                                              "%s:%d: unexpected text after the array", file, line);
                        return 0;
                }
                if (!(used = decode_one(in, file, buf, len, pos, line, errstr, errstr_size))) {
                        free(buf);
                        return -1;
                }
                count_lines(buf, pos, pos + used, &line);
                pos = skip_ws(buf, len, pos + used, &line);
                if (pos < len && buf[pos] == ',') {
                        pos = skip_ws(buf, len, pos + 1, &line);
                } else if (pos >= len || buf[pos] != ']') {
                        free(buf);
                        return nc_err(errstr, errstr_size,
                                      "%s:%d: invalid JSON: expected ',' or ']' in the array", file,
                                      line);
                }
        }
        free(buf);
        return nc_err(errstr, errstr_size, "%s:%d: invalid JSON: the array is not closed", file,
                      line);
}

void nc_input_free(nc_input_t *in)
{
        size_t i;

        for (i = 0; i < in->n; i++) {
                json_decref(in->items[i].json);
                free(in->items[i].value);
                free(in->items[i].error);
        }
        for (i = 0; i < in->nfiles; i++)
                free(in->files[i]);
        free(in->items);
        free(in->files);
        memset(in, 0, sizeof(*in));
}
