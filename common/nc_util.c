#include "nc_util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void *nc_xmalloc(size_t n)
{
        void *p = malloc(n ? n : 1);

        if (!p)
                fatal("out of memory");
        return p;
}

void *nc_xcalloc(size_t n, size_t m)
{
        void *p = calloc(n ? n : 1, m ? m : 1);

        if (!p)
                fatal("out of memory");
        return p;
}

void *nc_xrealloc(void *p, size_t n)
{
        void *q = realloc(p, n ? n : 1);

        if (!q)
                fatal("out of memory");
        return q;
}

int nc_buf_reserve(char **buf, size_t *cap, size_t len, size_t need, size_t initial)
{
        size_t c = *cap ? *cap : initial;
        char *p;

        if (*cap - len >= need)
                return 0;
        if (need > SIZE_MAX / 2 - len)
                return -1;
        while (c - len < need)
                c *= 2;
        if (!(p = realloc(*buf, c)))
                return -1;
        *buf = p;
        *cap = c;
        return 0;
}

char *nc_xstrdup(const char *s)
{
        char *p = strdup(s);

        if (!p)
                fatal("out of memory");
        return p;
}

int nc_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
        va_list ap;

        if (errstr && errstr_size) {
                va_start(ap, fmt);
                vsnprintf(errstr, errstr_size, fmt, ap);
                va_end(ap);
        }
        return -1;
}

void nc_strlist_add(nc_strlist_t *l, const char *s)
{
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 8;
                l->v = nc_xrealloc(l->v, l->cap * sizeof(*l->v));
        }
        l->v[l->n++] = nc_xstrdup(s);
}

int nc_strlist_has(const nc_strlist_t *l, const char *s)
{
        size_t i;

        for (i = 0; i < l->n; i++)
                if (!strcmp(l->v[i], s))
                        return 1;
        return 0;
}

void nc_strlist_clear(nc_strlist_t *l)
{
        size_t i;

        for (i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = l->cap = 0;
}

void nc_strlist_split(nc_strlist_t *l, const char *s)
{
        char *copy = nc_xstrdup(s), *save = NULL, *tok;

        for (tok = strtok_r(copy, ",; \t", &save); tok; tok = strtok_r(NULL, ",; \t", &save))
                nc_strlist_add(l, tok);
        free(copy);
}

char *nc_file_read(const char *path, size_t *lenp, char *errstr, size_t errstr_size)
{
        FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
        char *buf = NULL;
        size_t len = 0, cap = 0, n;

        if (!f) {
                nc_err(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return NULL;
        }
        do {
                if (cap - len < 65536) {
                        cap = cap ? cap * 2 : 65536 * 2;
                        buf = nc_xrealloc(buf, cap + 1);
                }
                n = fread(buf + len, 1, cap - len, f);
                len += n;
        } while (n > 0);
        if (ferror(f)) {
                nc_err(errstr, errstr_size, "%s: read error: %s", path, strerror(errno));
                free(buf);
                buf = NULL;
        } else {
                buf[len] = '\0';
                if (lenp)
                        *lenp = len;
        }
        if (f != stdin)
                fclose(f);
        return buf;
}

int nc_secret_mode_ok(unsigned mode)
{
        return (mode & 077) == 0;
}

FILE *nc_secret_fopen(const char *path, char *errstr, size_t errstr_size)
{
        FILE *f = fopen(path, "r");
        struct stat st;

        if (!f) {
                nc_err(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return NULL;
        }
        if (fstat(fileno(f), &st) != 0) {
                nc_err(errstr, errstr_size, "%s: %s", path, strerror(errno));
                fclose(f);
                return NULL;
        }
        if (!nc_secret_mode_ok((unsigned)st.st_mode)) {
                nc_err(errstr, errstr_size,
                       "%s: secret file is accessible by group or others (mode %04o); "
                       "refused: chmod 600 it",
                       path, (unsigned)(st.st_mode & 07777));
                fclose(f);
                return NULL;
        }
        return f;
}

int nc_secret_file_check(const char *path, char *errstr, size_t errstr_size)
{
        FILE *f = nc_secret_fopen(path, errstr, errstr_size);

        if (!f)
                return -1;
        fclose(f);
        return 0;
}

char *nc_secret_file_read(const char *path, size_t *lenp, char *errstr, size_t errstr_size)
{
        FILE *f = nc_secret_fopen(path, errstr, errstr_size);
        char *buf;
        size_t len;

        if (!f)
                return NULL;
        setvbuf(f, NULL, _IONBF, 0);
        buf = nc_xmalloc(NC_SECRET_FILE_MAX + 2);
        len = fread(buf, 1, NC_SECRET_FILE_MAX + 1, f);
        if (ferror(f) || len > NC_SECRET_FILE_MAX) {
                if (ferror(f))
                        nc_err(errstr, errstr_size, "%s: read error: %s", path, strerror(errno));
                else
                        nc_err(errstr, errstr_size, "%s: secret file is larger than %d bytes", path,
                               NC_SECRET_FILE_MAX);
                memset(buf, 0, NC_SECRET_FILE_MAX + 2);
                free(buf);
                fclose(f);
                return NULL;
        }
        fclose(f);
        buf[len] = '\0';
        if (lenp)
                *lenp = len;
        return buf;
}

/* Decodes one code point; returns its length or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t left, uint32_t *cp)
{
        uint32_t c = s[0], min;
        size_t n, i;

        if (c < 0x80) {
                *cp = c;
                return 1;
        } else if ((c & 0xe0) == 0xc0) {
                n = 2, c &= 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
                n = 3, c &= 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
                n = 4, c &= 0x07, min = 0x10000;
        } else {
                return 0;
        }
        if (n > left)
                return 0;
        for (i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                c = (c << 6) | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *cp = c;
        return n;
}

int nc_utf8_valid(const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *)s;
        uint32_t cp;
        size_t i = 0, n;

        while (i < len) {
                n = utf8_decode(p + i, len - i, &cp);
                if (!n)
                        return 0;
                i += n;
        }
        return 1;
}

size_t nc_utf8_len(const char *s)
{
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char)*s & 0xc0) != 0x80)
                        n++;
        return n;
}

long nc_utf8_find_control(const char *s, const char *allowed)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t len = strlen(s), i = 0, n;
        uint32_t cp;

        while (i < len) {
                /* Fast path: printable ASCII is by far the most common case. */
                if (p[i] >= 0x20 && p[i] < 0x7f) {
                        i++;
                        continue;
                }
                n = utf8_decode(p + i, len - i, &cp);
                if (!n)
                        return (long)p[i];
                if ((cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 ||
                     cp == 0x2029) &&
                    !(cp < 0x80 && allowed && strchr(allowed, (int)cp)))
                        return (long)cp;
                i += n;
        }
        return -1;
}

static int bidi_control(uint32_t cp)
{
        return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
               (cp >= 0x2066 && cp <= 0x2069);
}

char *nc_tsv_escape(const char *s, size_t len, size_t max_chars, char *out, size_t out_size)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0, o = 0, chars = 0;

        if (!out_size)
                return out;
        while (i < len) {
                char unit[8];
                size_t n, ulen, uchars;
                uint32_t cp;

                n = utf8_decode(p + i, len - i, &cp);
                if (!n) {
                        ulen = (size_t)snprintf(unit, sizeof(unit), "\\x%02X", p[i]);
                        n = 1;
                } else if (cp == '\\' || cp == '\t' || cp == '\n' || cp == '\r') {
                        unit[0] = '\\';
                        unit[1] = cp == '\\' ? '\\' : cp == '\t' ? 't' : cp == '\n' ? 'n' : 'r';
                        ulen = 2;
                } else if (cp < 0x20 || cp == 0x7f) {
                        ulen = (size_t)snprintf(unit, sizeof(unit), "\\x%02X", (unsigned)cp);
                } else if ((cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029 ||
                           bidi_control(cp)) {
                        ulen = (size_t)snprintf(unit, sizeof(unit), "\\u%04X", (unsigned)cp);
                } else {
                        memcpy(unit, p + i, n);
                        ulen = n;
                }
                uchars = unit[0] == '\\' ? ulen : 1;
                /* Room for this unit, then the marker and the NUL if anything follows. */
                if (chars + uchars > max_chars || o + ulen + 4 > out_size) {
                        if (o + 4 <= out_size) {
                                memcpy(out + o, "\xe2\x80\xa6", 3);
                                o += 3;
                        }
                        break;
                }
                memcpy(out + o, unit, ulen);
                o += ulen;
                chars += uchars;
                i += n;
        }
        out[o] = '\0';
        return out;
}

char *nc_str_trim(char *s)
{
        char *e;

        while (*s == ' ' || *s == '\t')
                memmove(s, s + 1, strlen(s));
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
                *--e = '\0';
        return s;
}

void nc_str_lower(char *s)
{
        for (; *s; s++)
                *s = (char)tolower((unsigned char)*s);
}

void nc_str_upper(char *s)
{
        for (; *s; s++)
                *s = (char)toupper((unsigned char)*s);
}

int nc_email_valid(const char *s, char *errstr, size_t errstr_size)
{
        const char *at = strrchr(s, '@'), *p;
        size_t len = strlen(s);

        if (len == 0)
                return nc_err(errstr, errstr_size, "is empty");
        if (len > 254)
                return nc_err(errstr, errstr_size, "is longer than 254 characters");
        if (!at || at == s || !at[1])
                return nc_err(errstr, errstr_size, "'%s' is not an email address", s);
        if ((size_t)(at - s) > 64)
                return nc_err(errstr, errstr_size, "local part is longer than 64 characters");
        for (p = s; *p; p++) {
                unsigned char c = (unsigned char)*p;

                /* Printable ASCII without specials that would need quoting in a header. */
                if (c <= ' ' || c >= 0x7f || strchr("\"(),:;<>[\\]", c) || (c == '@' && p != at))
                        return nc_err(errstr, errstr_size,
                                      "'%s' is not an email address (bad character)", s);
        }
        if (!strchr(at + 1, '.') || at[1] == '.' || s[len - 1] == '.' || strstr(s, ".."))
                return nc_err(errstr, errstr_size, "'%s' has an invalid domain", s);
        return 0;
}

int nc_tz_valid(const char *name)
{
        const char *dir = getenv("TZDIR");
        char path[512];
        struct stat st;

        if (!strcmp(name, "UTC"))
                return 1;
        if (!*name || name[0] == '/' || strstr(name, "..") || strlen(name) > 64)
                return 0;
        for (const char *p = name; *p; p++)
                if (!isalnum((unsigned char)*p) && !strchr("/_-+", *p))
                        return 0;
        snprintf(path, sizeof(path), "%s/%s", dir ? dir : "/usr/share/zoneinfo", name);
        return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
