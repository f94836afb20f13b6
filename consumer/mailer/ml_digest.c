#include "ml_digest.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ml_mail.h"
#include "nc_mustache.h"
#include "nc_notice.h"

#define SUFFIX        ".mustache"
#define MAX_PARTIALS  64
#define SUBJECT_BYTES 2000 /* after collapsing; ml_mail folds and encodes it */

static const char *const required[] = {"subject", "text", "html"};

/* Per-subscriber values stand in the cached renders as sentinels: U+E000, the variable's
 * digit, '&', U+E001.  The '&' tells where the value was HTML-escaped ("&amp;" then). */
#define PUA_OPEN   "\xEE\x80\x80" /* U+E000 */
#define PUA_CLOSE  "\xEE\x80\x81" /* U+E001 */
#define CACHE_SIZE 16             /* digests (notice sets) per language */

struct dpieces {
        size_t nhole;
        char **lit;     /* nhole + 1, NUL-terminated */
        size_t *len;    /* of lit[i] */
        unsigned *hole; /* value index (ML_DIGEST_V_*) of each hole */
};

/* One (language, notice set, urgent, period, which values are present) rendered once. */
struct dentry {
        atomic_int refs;
        int cached; /* in its language's cache (else freed by the last release) */
        uint64_t used;
        /* key */
        int urgent;
        unsigned flags;
        char period[12];
        size_t n;
        json_t **notices; /* references held */
        /* value */
        int direct; /* sentinels unusable (a template or notice has U+E000): no pieces */
        struct dpieces subject, text, html;
        ml_mail_body_t *tbody, *hbody;
};

/* The templates of one language. */
struct nc_tlang {
        char *lang;
        nc_mustache_t *tpl[3]; /* subject, text, html (same order as required[]) */
        char *pname[MAX_PARTIALS];
        char *ptext[MAX_PARTIALS];
        size_t pn;
        /* nc_mustache_render_compiled() caches partials inside the compiled template, so
         * one language renders in one thread at a time.  The lock guards the cache too. */
        pthread_mutex_t lock;
        int pua; /* a template contains U+E000: never cached */
        struct dentry *cache[CACHE_SIZE];
        uint64_t tick;
};

struct ml_templates {
        struct nc_tlang *v;
        size_t n;
        size_t def;  /* index of the default language */
        int nocache; /* ml_templates_set_cache(t, 0) */
};

static void dentry_free(struct dentry *e);

/* ---- loading ---------------------------------------------------------------------------- */

static const char *partial_cb(void *opaque, const char *name)
{
        const struct nc_tlang *l = opaque;

        for (size_t i = 0; i < l->pn; i++)
                if (!strcmp(l->pname[i], name))
                        return l->ptext[i];
        return NULL;
}

static void tlang_free(struct nc_tlang *l)
{
        for (size_t i = 0; i < CACHE_SIZE; i++)
                dentry_free(l->cache[i]);
        for (size_t i = 0; i < 3; i++)
                nc_mustache_destroy(l->tpl[i]);
        for (size_t i = 0; i < l->pn; i++) {
                free(l->pname[i]);
                free(l->ptext[i]);
        }
        free(l->lang);
        pthread_mutex_destroy(&l->lock);
}

/* Reads PATH: a template must be UTF-8 and not absurdly large. */
static char *read_template(const char *path, char *errstr, size_t errstr_size)
{
        size_t len = 0;
        char *s = nc_file_read(path, &len, errstr, errstr_size);

        if (!s)
                return NULL;
        if (len > NC_TEMPLATE_MAX_BYTES) {
                nc_err(errstr, errstr_size, "%s: is larger than %zu bytes", path,
                       NC_TEMPLATE_MAX_BYTES);
        } else if (strlen(s) != len) {
                nc_err(errstr, errstr_size, "%s: contains a NUL byte", path);
        } else if (!nc_utf8_valid(s, len)) {
                nc_err(errstr, errstr_size, "%s: is not valid UTF-8", path);
        } else {
                return s;
        }
        free(s);
        return NULL;
}

/* A language code becomes a directory name: letters, digits, '-' and '_' only. */
static int lang_ok(const char *lang)
{
        if (!*lang || strlen(lang) > 35)
                return 0;
        for (const char *p = lang; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                        return 0;
        return 1;
}

static int is_required(const char *name)
{
        for (size_t i = 0; i < 3; i++)
                if (!strcmp(name, required[i]))
                        return 1;
        return 0;
}

static int load_partials(struct nc_tlang *l, const char *ldir, char *errstr, size_t errstr_size)
{
        DIR *d = opendir(ldir);
        struct dirent *de;
        int rc = 0;

        if (!d)
                return nc_err(errstr, errstr_size, "%s: %s", ldir, strerror(errno));
        while (rc == 0 && (de = readdir(d))) {
                size_t n = strlen(de->d_name), sl = strlen(SUFFIX);
                char path[4096], name[256], err[512];
                nc_mustache_t *m;
                char *text;

                if (de->d_name[0] == '.' || n <= sl || strcmp(de->d_name + n - sl, SUFFIX))
                        continue;
                if (n - sl >= sizeof(name))
                        continue;
                memcpy(name, de->d_name, n - sl);
                name[n - sl] = '\0';
                if (is_required(name))
                        continue;
                if ((size_t)snprintf(path, sizeof(path), "%s/%s", ldir, de->d_name) >=
                    sizeof(path)) {
                        rc = nc_err(errstr, errstr_size, "%s: path too long", ldir);
                        break;
                }
                if (l->pn == MAX_PARTIALS) {
                        rc = nc_err(errstr, errstr_size, "%s: more than %d partials", ldir,
                                    MAX_PARTIALS);
                        break;
                }
                if (!(text = read_template(path, errstr, errstr_size))) {
                        rc = -1;
                        break;
                }
                /* Compiled once here only to report syntax errors now; the templates that
                 * use it compile and cache it on first use. */
                if (!(m = nc_mustache_compile(text, err, sizeof(err)))) {
                        rc = nc_err(errstr, errstr_size, "%s: %s", path, err);
                        free(text);
                        break;
                }
                nc_mustache_destroy(m);
                l->pua |= strstr(text, PUA_OPEN) != NULL;
                l->pname[l->pn] = nc_xstrdup(name);
                l->ptext[l->pn++] = text;
        }
        closedir(d);
        return rc;
}

static int load_lang(struct nc_tlang *l, const char *dir, const char *lang, char *errstr,
                     size_t errstr_size)
{
        char ldir[4096], path[4096], err[512];

        l->lang = nc_xstrdup(lang);
        pthread_mutex_init(&l->lock, NULL);
        if (!lang_ok(lang))
                return nc_err(errstr, errstr_size, "%s: not a usable language code", lang);
        if ((size_t)snprintf(ldir, sizeof(ldir), "%s/%s", dir, lang) >= sizeof(ldir) - 64)
                return nc_err(errstr, errstr_size, "%s: path too long", dir);
        for (size_t i = 0; i < 3; i++) {
                char *text;

                if ((size_t)snprintf(path, sizeof(path), "%s/%s" SUFFIX, ldir, required[i]) >=
                    sizeof(path))
                        return nc_err(errstr, errstr_size, "%s: path too long", dir);
                if (!(text = read_template(path, errstr, errstr_size)))
                        return -1;
                l->pua |= strstr(text, PUA_OPEN) != NULL;
                l->tpl[i] = nc_mustache_compile(text, err, sizeof(err));
                free(text);
                if (!l->tpl[i])
                        return nc_err(errstr, errstr_size, "%s: %s", path, err);
        }
        return load_partials(l, ldir, errstr, errstr_size);
}

ml_templates_t *ml_templates_load(const char *dir, const nc_strlist_t *languages,
                                  const char *default_lang, char *errstr, size_t errstr_size)
{
        ml_templates_t *t;
        size_t i;

        if (!languages || languages->n == 0) {
                nc_err(errstr, errstr_size, "templates: no languages configured");
                return NULL;
        }
        if (!default_lang || !nc_strlist_has(languages, default_lang)) {
                nc_err(errstr, errstr_size,
                       "templates: the default language '%s' is not one of the languages",
                       default_lang ? default_lang : "");
                return NULL;
        }
        t = nc_xcalloc(1, sizeof(*t));
        t->v = nc_xcalloc(languages->n, sizeof(*t->v));
        for (i = 0; i < languages->n; i++) {
                const char *lang = languages->v[i];
                int dup = 0;

                for (size_t j = 0; j < t->n; j++)
                        dup |= !strcmp(t->v[j].lang, lang);
                if (dup)
                        continue;
                if (load_lang(&t->v[t->n++], dir, lang, errstr, errstr_size) < 0) {
                        ml_templates_free(t);
                        return NULL;
                }
                if (!strcmp(lang, default_lang))
                        t->def = t->n - 1;
        }
        return t;
}

void ml_templates_free(ml_templates_t *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n; i++)
                tlang_free(&t->v[i]);
        free(t->v);
        free(t);
}

static struct nc_tlang *find_lang(const ml_templates_t *t, const char *lang)
{
        for (size_t i = 0; lang && i < t->n; i++)
                if (!strcmp(t->v[i].lang, lang))
                        return &t->v[i];
        return NULL;
}

int ml_templates_has(const ml_templates_t *t, const char *lang)
{
        return find_lang(t, lang) != NULL;
}

/* ---- data for the templates ------------------------------------------------------------- */

/* Text of FIELD in LANG with nc_notice_text()'s fallback; *USED gets the language the text
 * is actually in.  A plain string (not normalised) counts as the notice's own language. */
static const char *field_text(const json_t *n, const char *field, const char *lang,
                              const char **used)
{
        json_t *m = json_object_get(n, field);
        const char *s;

        *used = json_string_value(json_object_get(n, "lang"));
        if (json_is_string(m))
                return json_string_value(m);
        if (!json_is_object(m) || !(s = nc_notice_text(n, field, lang)))
                return NULL;
        /* nc_notice_text returns a pointer into the map: find the key it came from. */
        for (void *it = json_object_iter(m); it; it = json_object_iter_next(m, it)) {
                if (json_string_value(json_object_iter_value(it)) == s) {
                        *used = json_object_iter_key(it);
                        break;
                }
        }
        return s;
}

static int http_url(const char *s)
{
        return s && ((!strncasecmp(s, "https://", 8) && s[8]) ||
                     (!strncasecmp(s, "http://", 7) && s[7]));
}

/* Splits BODY on blank lines (lines of only blanks) into a list of paragraphs, each without
 * leading or trailing blank lines; single line breaks inside a paragraph stay. */
static json_t *paragraphs(const char *body)
{
        json_t *a = json_array();
        const char *p = body;

        while (p && *p) {
                const char *start, *end, *line = p;

                /* Skip blank lines. */
                while (*line) {
                        const char *q = line + strspn(line, " \t\r");

                        if (*q != '\n')
                                break;
                        line = q + 1;
                }
                if (!*line || !line[strspn(line, " \t\r\n")])
                        break;
                start = line;
                /* The paragraph runs until a blank line or the end. */
                end = start;
                for (;;) {
                        const char *nl = strchr(end, '\n'), *q;

                        if (!nl) {
                                end += strlen(end);
                                p = end;
                                break;
                        }
                        q = nl + 1 + strspn(nl + 1, " \t\r");
                        if (*q == '\n' || !*q) {
                                p = nl + 1;
                                end = nl;
                                break;
                        }
                        end = nl + 1;
                }
                while (end > start && strchr(" \t\r\n", end[-1]))
                        end--;
                json_array_append_new(a, json_stringn(start, (size_t)(end - start)));
        }
        return a;
}

static json_t *notice_data(const json_t *n, size_t index, const char *tlang, char *errstr,
                           size_t errstr_size)
{
        const char *title, *summary, *body, *tl, *sl, *bl, *s;
        const char *id = json_string_value(json_object_get(n, "id"));
        json_t *d, *v;
        int fallback;

        if (!json_is_object(n)) {
                nc_err(errstr, errstr_size, "notices[%zu]: is not an object", index);
                return NULL;
        }
        if (!(title = field_text(n, "title", tlang, &tl))) {
                nc_err(errstr, errstr_size, "notices[%zu] (%s): has no title", index,
                       id ? id : "no id");
                return NULL;
        }
        summary = field_text(n, "summary", tlang, &sl);
        body = field_text(n, "body", tlang, &bl);
        d = json_object();
        if (id)
                json_object_set_new(d, "id", json_string(id));
        if ((s = json_string_value(json_object_get(n, "category"))))
                json_object_set_new(d, "category", json_string(s));
        json_object_set_new(d, "index", json_integer((json_int_t)index + 1));
        s = json_string_value(json_object_get(n, "priority"));
        json_object_set_new(d, "urgent", json_boolean(s && !strcmp(s, "urgent")));
        s = json_string_value(json_object_get(n, "supersedes"));
        json_object_set_new(d, "correction", json_boolean(s && *s));
        /* A *_lang is "" (lang="": unknown) only for a notice without "lang". */
        json_object_set_new(d, "title", json_string(title));
        json_object_set_new(d, "title_lang", json_string(tl ? tl : ""));
        json_object_set_new(d, "lang", json_string(tl ? tl : ""));
        fallback = tl && strcmp(tl, tlang);
        if (summary && *summary) {
                json_object_set_new(d, "summary", json_string(summary));
                json_object_set_new(d, "summary_lang", json_string(sl ? sl : ""));
                fallback |= sl && strcmp(sl, tlang);
        }
        v = paragraphs(body);
        if (json_array_size(v)) {
                json_object_set_new(d, "paragraphs", v);
                json_object_set_new(d, "body_lang", json_string(bl ? bl : ""));
                fallback |= bl && strcmp(bl, tlang);
        } else {
                json_decref(v);
        }
        json_object_set_new(d, "fallback", json_boolean(fallback));
        /* Only web links: a javascript: or data: URL must never become an href. */
        s = json_string_value(json_object_get(n, "url"));
        if (http_url(s))
                json_object_set_new(d, "url", json_string(s));
        v = json_object_get(n, "source");
        s = json_is_object(v) ? nc_notice_text(n, "source", tlang) : json_string_value(v);
        if (s && *s)
                json_object_set_new(d, "source", json_string(s));
        /* The date as the publisher wrote it: its own offset decides the calendar day. */
        s = json_string_value(json_object_get(n, "published_at"));
        if (s && strlen(s) >= 10 && s[4] == '-' && s[7] == '-' && strspn(s, "0123456789") == 4 &&
            strspn(s + 5, "0123456789") == 2 && strspn(s + 8, "0123456789") == 2)
                json_object_set_new(d, "date", json_stringn(s, 10));
        return d;
}

/* Subject: control characters (C0, DEL, C1, U+2028/2029) and blank runs become one space,
 * no blanks at either end.  Works in place on valid UTF-8. */
static void collapse_line(char *s)
{
        size_t i = 0, o = 0;
        int blank = 1; /* drops leading blanks */

        while (s[i]) {
                const unsigned char *p = (const unsigned char *)s + i;
                size_t n = 0;

                if (p[0] < 0x20 || p[0] == 0x7f || p[0] == ' ')
                        n = 1;
                else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
                        n = 2;
                else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
                        n = 3;
                if (n) {
                        if (!blank)
                                s[o++] = ' ';
                        blank = 1;
                        i += n;
                } else {
                        s[o++] = s[i++];
                        blank = 0;
                }
        }
        if (o > 0 && s[o - 1] == ' ')
                o--;
        s[o] = '\0';
}

/* Cuts S to at most MAX bytes on a UTF-8 character boundary. */
static void utf8_cut(char *s, size_t max)
{
        size_t n = strlen(s);

        if (n <= max)
                return;
        while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
                max--;
        while (max > 0 && s[max - 1] == ' ')
                max--;
        s[max] = '\0';
}

/* ---- rendering -------------------------------------------------------------------------- */

static const char *const periods[] = {"immediate", "daily", "weekly"};

/* The data for the templates (see ml_digest.h) with the given per-subscriber values (NULL:
 * absent); NULL with errstr set when a notice is unusable. */
static json_t *build_data(const struct nc_tlang *l, const char *name, const char *email,
                          const char *unsub, const char *manage, const json_t *notices, int urgent,
                          const char *period, char *errstr, size_t errstr_size)
{
        size_t i, count = json_array_size(notices);
        json_t *data = json_object(), *list;

        json_object_set_new(data, "lang", json_string(l->lang));
        if (name)
                json_object_set_new(data, "name", json_string(name));
        if (email)
                json_object_set_new(data, "email", json_string(email));
        json_object_set_new(data, "count", json_integer((json_int_t)count));
        json_object_set_new(data, "single", json_boolean(count == 1));
        json_object_set_new(data, "multiple", json_boolean(count > 1));
        json_object_set_new(data, "urgent", json_boolean(urgent));
        json_object_set_new(data, "period", json_string(period));
        for (i = 0; i < 3; i++)
                json_object_set_new(data, periods[i], json_boolean(!strcmp(period, periods[i])));
        json_object_set_new(data, "digest", json_boolean(strcmp(period, "immediate") != 0));
        if (unsub)
                json_object_set_new(data, "unsubscribe_url", json_string(unsub));
        if (manage)
                json_object_set_new(data, "manage_url", json_string(manage));
        list = json_array();
        json_object_set_new(data, "notices", list);
        for (i = 0; i < count; i++) {
                json_t *d =
                    notice_data(json_array_get(notices, i), i, l->lang, errstr, errstr_size);

                if (!d) {
                        json_decref(data);
                        return NULL;
                }
                json_array_append_new(list, d);
        }
        json_object_set(data, "first", json_array_get(list, 0));
        return data;
}

/* Renders subject, text and html into R (all or none).  SUBJECT_VALUE: what {{subject}} is in
 * text and html; NULL = the rendered subject (collapsed and cut).  The caller holds l->lock. */
static int render3(struct nc_tlang *l, json_t *data, const char *subject_value, char *r[3],
                   char *errstr, size_t errstr_size)
{
        nc_mustache_opts_t opts = {partial_cb, l, 0, 0};
        char err[512];
        size_t i;

        for (i = 0; i < 3; i++) {
                opts.escape_html = i == 2; /* html only */
                r[i] = nc_mustache_render_compiled(l->tpl[i], data, &opts, err, sizeof(err));
                if (!r[i]) {
                        nc_err(errstr, errstr_size, "%s/%s" SUFFIX ": %s", l->lang, required[i],
                               err);
                        break;
                }
                if (i == 0) {
                        collapse_line(r[0]);
                        if (!subject_value)
                                utf8_cut(r[0], SUBJECT_BYTES);
                        json_object_set_new(data, "subject",
                                            json_string(subject_value ? subject_value : r[0]));
                }
        }
        if (i == 3)
                return 0;
        while (i > 0)
                free(r[--i]);
        return -1;
}

/* ---- the cache of rendered digests -------------------------------------------------------- */

static void dpieces_free(struct dpieces *p)
{
        for (size_t i = 0; p->lit && i <= p->nhole; i++)
                free(p->lit[i]);
        free(p->lit);
        free(p->len);
        free(p->hole);
        memset(p, 0, sizeof(*p));
}

static void dentry_free(struct dentry *e)
{
        if (!e)
                return;
        for (size_t i = 0; i < e->n; i++)
                json_decref(e->notices[i]);
        free(e->notices);
        dpieces_free(&e->subject);
        dpieces_free(&e->text);
        dpieces_free(&e->html);
        ml_mail_body_free(e->tbody);
        ml_mail_body_free(e->hbody);
        free(e);
}

static void dentry_release(struct dentry *e)
{
        if (e && atomic_fetch_sub(&e->refs, 1) == 1 && !e->cached)
                dentry_free(e);
}

/* Splits a render at its sentinels.  -1 if it has a U+E000 that is not one of ours (then the
 * pieces cannot be trusted). */
static int split(const char *s, struct dpieces *p)
{
        size_t cap = 8, ol = strlen(PUA_OPEN), cl = strlen(PUA_CLOSE);
        const char *lit = s, *q;

        memset(p, 0, sizeof(*p));
        p->lit = nc_xmalloc(cap * sizeof(*p->lit));
        p->len = nc_xmalloc(cap * sizeof(*p->len));
        p->hole = nc_xmalloc(cap * sizeof(*p->hole));
        for (q = strstr(s, PUA_OPEN);; q = strstr(q, PUA_OPEN)) {
                size_t n = q ? (size_t)(q - lit) : strlen(lit), skip = 0;
                unsigned v = 0;

                if (q) {
                        const char *a = q + ol + 1;
                        int esc = -1;

                        if (q[ol] >= '0' && q[ol] <= '4') {
                                if (!strncmp(a, "&" PUA_CLOSE, 1 + cl))
                                        esc = 0;
                                else if (!strncmp(a, "&amp;" PUA_CLOSE, 5 + cl))
                                        esc = 1;
                        }
                        if (esc < 0) {
                                p->lit[p->nhole] = NULL;
                                dpieces_free(p);
                                return -1;
                        }
                        v = (unsigned)(q[ol] - '0') * 2 + (unsigned)esc;
                        skip = ol + 1 + (esc ? 5 : 1) + cl;
                }
                if (p->nhole + 1 >= cap) {
                        cap *= 2;
                        p->lit = nc_xrealloc(p->lit, cap * sizeof(*p->lit));
                        p->len = nc_xrealloc(p->len, cap * sizeof(*p->len));
                        p->hole = nc_xrealloc(p->hole, cap * sizeof(*p->hole));
                }
                p->lit[p->nhole] = nc_xmalloc(n + 1);
                memcpy(p->lit[p->nhole], lit, n);
                p->lit[p->nhole][n] = '\0';
                p->len[p->nhole] = n;
                if (!q)
                        return 0;
                p->hole[p->nhole++] = v;
                lit = q + skip;
                q = lit;
        }
}

/* Key flags: which per-subscriber values are present (their presence can change the render;
 * their content cannot: no lambdas, and every string is truthy). */
#define F_NAME   1u
#define F_EMAIL  2u
#define F_UNSUB  4u
#define F_MANAGE 8u

/* 1 if any string in V contains U+E000. */
static int has_pua(const json_t *v)
{
        const char *k;
        json_t *x;
        size_t i;

        switch (json_typeof(v)) {
        case JSON_STRING:
                return strstr(json_string_value(v), PUA_OPEN) != NULL;
        case JSON_OBJECT:
                json_object_foreach((json_t *)v, k, x)
                        if (strstr(k, PUA_OPEN) || has_pua(x))
                                return 1;
                return 0;
        case JSON_ARRAY:
                json_array_foreach(v, i, x)
                        if (has_pua(x))
                                return 1;
                return 0;
        default:
                return 0;
        }
}

static int dentry_matches(const struct dentry *e, const json_t *notices, int urgent, unsigned flags,
                          const char *period)
{
        if (!e || e->urgent != urgent || e->flags != flags || e->n != json_array_size(notices) ||
            strcmp(e->period, period))
                return 0;
        for (size_t i = 0; i < e->n; i++)
                if (e->notices[i] != json_array_get(notices, i))
                        return 0;
        return 1;
}

/* Renders the digest with sentinels in place of the values.  The caller holds l->lock.
 * NULL with errstr set if a notice is unusable or a template fails. */
static struct dentry *dentry_make(struct nc_tlang *l, const json_t *notices, int urgent,
                                  unsigned flags, const char *period, char *errstr,
                                  size_t errstr_size)
{
        /* name, email, unsubscribe URL, manage URL, subject: ML_DIGEST_NVALUES / 2 */
        static const char *const sentinel[5] = {PUA_OPEN "0&" PUA_CLOSE, PUA_OPEN "1&" PUA_CLOSE,
                                                PUA_OPEN "2&" PUA_CLOSE, PUA_OPEN "3&" PUA_CLOSE,
                                                PUA_OPEN "4&" PUA_CLOSE};
        struct dentry *e = nc_xcalloc(1, sizeof(*e));
        char *r[3] = {NULL, NULL, NULL}, err[256];
        json_t *data;
        size_t i;

        e->urgent = urgent;
        e->flags = flags;
        snprintf(e->period, sizeof(e->period), "%s", period);
        e->n = json_array_size(notices);
        e->notices = nc_xcalloc(e->n, sizeof(*e->notices));
        for (i = 0; i < e->n; i++) {
                e->notices[i] = json_incref(json_array_get(notices, i));
                e->direct |= has_pua(e->notices[i]);
        }
        if (e->direct)
                return e;
        data =
            build_data(l, flags & F_NAME ? sentinel[0] : NULL, flags & F_EMAIL ? sentinel[1] : NULL,
                       flags & F_UNSUB ? sentinel[2] : NULL, flags & F_MANAGE ? sentinel[3] : NULL,
                       notices, urgent, period, errstr, errstr_size);
        if (!data || render3(l, data, sentinel[4], r, errstr, errstr_size) < 0) {
                json_decref(data);
                dentry_free(e);
                return NULL;
        }
        json_decref(data);
        if (split(r[0], &e->subject) < 0 || split(r[1], &e->text) < 0 ||
            split(r[2], &e->html) < 0 ||
            !(e->tbody = ml_mail_body_new((const char *const *)e->text.lit, e->text.len,
                                          e->text.hole, e->text.nhole, err, sizeof(err))) ||
            !(e->hbody = ml_mail_body_new((const char *const *)e->html.lit, e->html.len,
                                          e->html.hole, e->html.nhole, err, sizeof(err))))
                e->direct = 1;
        for (i = 0; i < 3; i++)
                free(r[i]);
        return e;
}

/* The cached entry for this digest (a reference: dentry_release it), made if needed. */
static struct dentry *dentry_get(struct nc_tlang *l, const json_t *notices, int urgent,
                                 unsigned flags, const char *period, char *errstr,
                                 size_t errstr_size)
{
        struct dentry *e = NULL;
        size_t i, victim = CACHE_SIZE;

        pthread_mutex_lock(&l->lock);
        l->tick++;
        for (i = 0; i < CACHE_SIZE; i++) {
                if (dentry_matches(l->cache[i], notices, urgent, flags, period)) {
                        e = l->cache[i];
                        break;
                }
        }
        if (!e && (e = dentry_make(l, notices, urgent, flags, period, errstr, errstr_size))) {
                /* An empty slot, else the least recently used entry nobody is using. */
                for (i = 0; i < CACHE_SIZE; i++) {
                        if (!l->cache[i]) {
                                victim = i;
                                break;
                        }
                        if (atomic_load(&l->cache[i]->refs) == 0 &&
                            (victim == CACHE_SIZE || l->cache[i]->used < l->cache[victim]->used))
                                victim = i;
                }
                if (victim < CACHE_SIZE) {
                        dentry_free(l->cache[victim]);
                        l->cache[victim] = e;
                        e->cached = 1;
                }
        }
        if (e) {
                e->used = l->tick;
                atomic_fetch_add(&e->refs, 1);
        }
        pthread_mutex_unlock(&l->lock);
        return e;
}

/* ---- rendering -------------------------------------------------------------------------- */

static char *html_escape(const char *s)
{
        size_t n = 0;
        char *r, *o;

        for (const char *p = s; *p; p++)
                n += *p == '&'                ? 5
                     : *p == '"'              ? 6
                     : *p == '<' || *p == '>' ? 4
                     : *p == '\''             ? 5
                                              : 1;
        r = o = nc_xmalloc(n + 1);
        for (const char *p = s; *p; p++) {
                switch (*p) {
                case '&':
                        o = stpcpy(o, "&amp;");
                        break;
                case '"':
                        o = stpcpy(o, "&quot;");
                        break;
                case '<':
                        o = stpcpy(o, "&lt;");
                        break;
                case '>':
                        o = stpcpy(o, "&gt;");
                        break;
                case '\'':
                        o = stpcpy(o, "&#39;");
                        break;
                default:
                        *o++ = *p;
                }
        }
        *o = '\0';
        return r;
}

/* P with its holes filled from VALS. */
static char *join(const struct dpieces *p, const char *const *vals)
{
        size_t n = 0, i;
        char *r, *o;

        for (i = 0; i <= p->nhole; i++)
                n += p->len[i] + (i < p->nhole ? strlen(vals[p->hole[i]]) : 0);
        r = o = nc_xmalloc(n + 1);
        for (i = 0; i <= p->nhole; i++) {
                memcpy(o, p->lit[i], p->len[i]);
                o += p->len[i];
                if (i < p->nhole)
                        o = stpcpy(o, vals[p->hole[i]]);
        }
        *o = '\0';
        return r;
}

void ml_templates_set_cache(ml_templates_t *t, int on)
{
        if (t)
                t->nocache = !on;
}

void ml_digest_parts_free(ml_digest_parts_t *p)
{
        if (!p)
                return;
        free(p->subject);
        free(p->text_str);
        free(p->html_str);
        for (size_t i = 0; i < ML_DIGEST_NVALUES; i++)
                free(p->own_[i]);
        dentry_release(p->entry_);
        memset(p, 0, sizeof(*p));
}

int ml_digest_render_parts(const ml_templates_t *t, const json_t *subscriber, const json_t *notices,
                           int urgent, const char *unsubscribe_url, const char *manage_url,
                           const char *period, ml_digest_parts_t *out, char *errstr,
                           size_t errstr_size)
{
        struct nc_tlang *l;
        const char *sl, *name, *email, *unsub, *manage;
        struct dentry *e = NULL;
        unsigned flags;
        json_t *data;
        char *r[3];
        size_t i;
        int known = 0, direct;

        memset(out, 0, sizeof(*out));
        if (!t)
                return nc_err(errstr, errstr_size, "templates: not loaded");
        if (!json_is_object(subscriber))
                return nc_err(errstr, errstr_size, "subscriber: is not an object");
        if (!json_is_array(notices))
                return nc_err(errstr, errstr_size, "notices: is not an array");
        if (json_array_size(notices) == 0)
                return nc_err(errstr, errstr_size,
                              "notices: is empty (an empty digest is never sent)");
        if (!period)
                period = "immediate";
        for (i = 0; i < 3; i++)
                known |= !strcmp(period, periods[i]);
        if (!known)
                return nc_err(errstr, errstr_size, "period: '%s' is not immediate, daily or weekly",
                              period);

        sl = json_string_value(json_object_get(subscriber, "lang"));
        if (!(l = find_lang(t, sl)))
                l = &t->v[t->def];
        name = json_string_value(json_object_get(subscriber, "name"));
        if (name && !*name)
                name = NULL;
        email = json_string_value(json_object_get(subscriber, "email"));
        unsub = http_url(unsubscribe_url) ? unsubscribe_url : NULL;
        manage = http_url(manage_url) ? manage_url : NULL;
        flags = (name ? F_NAME : 0) | (email ? F_EMAIL : 0) | (unsub ? F_UNSUB : 0) |
                (manage ? F_MANAGE : 0);

        /* A value ending in CR would join the LF after it differently in ml_mail_build. */
        direct = t->nocache || l->pua || (name && name[strlen(name) - 1] == '\r') ||
                 (email && *email && email[strlen(email) - 1] == '\r');
        if (!direct) {
                if (!(e = dentry_get(l, notices, urgent, flags, period, errstr, errstr_size)))
                        return -1;
                direct = e->direct;
        }
        if (!direct) {
                const char *raw[ML_DIGEST_NVALUES / 2] = {name ? name : "", email ? email : "",
                                                          unsub ? unsub : "", manage ? manage : "",
                                                          ""};

                out->entry_ = e;
                /* The subject template is rendered without escaping: only raw holes. */
                out->subject = join(&e->subject,
                                    (const char *const[]){raw[0], raw[0], raw[1], raw[1], raw[2],
                                                          raw[2], raw[3], raw[3], raw[4], raw[4]});
                collapse_line(out->subject);
                utf8_cut(out->subject, SUBJECT_BYTES);
                raw[4] = out->subject;
                for (i = 0; i < ML_DIGEST_NVALUES / 2; i++) {
                        out->vals[2 * i] = raw[i];
                        out->own_[2 * i + 1] = html_escape(raw[i]);
                        out->vals[2 * i + 1] = out->own_[2 * i + 1];
                }
                out->text = e->tbody;
                out->html = e->hbody;
                return 0;
        }
        dentry_release(e);

        /* In full, for this subscriber alone. */
        data =
            build_data(l, name, email, unsub, manage, notices, urgent, period, errstr, errstr_size);
        if (!data)
                return -1;
        pthread_mutex_lock(&l->lock);
        i = render3(l, data, NULL, r, errstr, errstr_size) == 0;
        pthread_mutex_unlock(&l->lock);
        json_decref(data);
        if (!i)
                return -1;
        out->subject = r[0];
        out->text_str = r[1];
        out->html_str = r[2];
        return 0;
}

int ml_digest_render(const ml_templates_t *t, const json_t *subscriber, const json_t *notices,
                     int urgent, const char *unsubscribe_url, const char *manage_url,
                     const char *period, ml_digest_out_t *out, char *errstr, size_t errstr_size)
{
        ml_digest_parts_t p;
        const struct dentry *e;

        memset(out, 0, sizeof(*out));
        if (ml_digest_render_parts(t, subscriber, notices, urgent, unsubscribe_url, manage_url,
                                   period, &p, errstr, errstr_size) < 0)
                return -1;
        e = p.entry_;
        out->subject = p.subject;
        p.subject = NULL;
        if (p.text) {
                out->text = join(&e->text, p.vals);
                out->html = join(&e->html, p.vals);
        } else {
                out->text = p.text_str;
                out->html = p.html_str;
                p.text_str = p.html_str = NULL;
        }
        ml_digest_parts_free(&p);
        return 0;
}

void ml_digest_out_free(ml_digest_out_t *o)
{
        if (!o)
                return;
        free(o->subject);
        free(o->text);
        free(o->html);
        o->subject = o->text = o->html = NULL;
}
