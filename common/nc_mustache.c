/* Mustache renderer: a one-pass compiler to a flat node array, and a renderer over jansson.
 *
 * Compiling: the template is scanned once for the opening delimiter; text between tags
 * becomes TEXT nodes that point into a private copy of the source, tags become nodes with
 * their (pre-split) names in a string pool.  Sections are not a tree but a node followed by
 * its children, with `end` pointing past them, so compiling needs no recursion and
 * rendering a section is rendering a range.  Standalone lines (a section, comment, partial
 * or delimiter tag alone on a line) are removed while compiling, so the renderer never
 * looks at whitespace rules.
 *
 * Partial indentation: the spec defines it textually ("prepend the whitespace to each line
 * of the partial before rendering").  Re-indenting and recompiling the partial for every
 * indentation would defeat caching, so instead every node that starts a source line carries
 * a `bol` flag, and the renderer writes the current indentation before such nodes and after
 * each inner newline of TEXT nodes.  Newlines coming from interpolated data are not
 * indented, exactly as with textual indentation.
 */
#include "nc_mustache.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_util.h"

/* Sections plus partials active at once while rendering; bounds C recursion even in the
 * pathological case of deeply nested sections in deeply nested partials. */
#define NC_MUSTACHE_MAX_DEPTH 1024

/* Error messages quote names; keep them to a readable length. */
#define NC_MUSTACHE_NAME_QUOTE 64

enum nc_mustache_type {
        NC_MUSTACHE_TEXT,
        NC_MUSTACHE_VAR,
        NC_MUSTACHE_SECTION,
        NC_MUSTACHE_INVERTED,
        NC_MUSTACHE_PARTIAL,
};

struct nc_mustache_node {
        unsigned char type;       /* enum nc_mustache_type */
        unsigned char escape;     /* VAR: {{x}} (HTML-escaped) rather than {{{x}}} or {{&x}} */
        unsigned char bol;        /* starts a source line: partial indentation goes first */
        unsigned char standalone; /* PARTIAL: alone on its line, whitespace is indentation */
        unsigned nparts;          /* VAR/SECTION/INVERTED: name parts, 0 for "." */
        size_t off, len;          /* TEXT: slice of src; others: name (parts) in pool */
        size_t end;               /* SECTION/INVERTED: index of the first node after it */
        size_t ind_off, ind_len;  /* standalone PARTIAL: its indentation, slice of src */
};

/* One compiled template (the main one or a partial). */
struct nc_mustache_tpl {
        char *src;
        size_t srclen;
        struct nc_mustache_node *nodes;
        size_t nnodes, nodecap;
        char *pool; /* NUL-terminated names; dotted names are stored part after part */
        size_t poollen, poolcap;
};

/* A compiled partial, cached by name for the lifetime of the nc_mustache_t. */
struct nc_mustache_pentry {
        char *name;
        struct nc_mustache_tpl *tpl;
        int active; /* renders of tpl in progress: it must not be replaced meanwhile */
};

struct nc_mustache_s {
        struct nc_mustache_tpl root;
        struct nc_mustache_pentry **slots; /* open addressing, nslots is a power of two */
        size_t nslots, nused;
};

struct nc_mustache_ctx {
        const json_t *v;
        const struct nc_mustache_ctx *up;
};

struct nc_mustache_state {
        nc_mustache_t *m;
        nc_mustache_partial_fn *partial;
        void *opaque;
        int escape;
        size_t max_out;
        char *out;
        size_t len, cap;
        char *ind; /* indentation of the standalone partials being rendered, outermost first */
        size_t indlen, indcap;
        int pdepth, depth;
        char *errstr;
        size_t errstr_size;
};

/* A section or inverted section waiting for its closing tag. */
struct nc_mustache_open {
        size_t node;
        size_t name_off, name_len; /* as written, in src */
        size_t pos;                /* tag position, for error messages */
};

/* 1-based line of byte POS, only computed for error messages. */
static size_t nc_mustache_line(const char *src, size_t pos)
{
        size_t line = 1;

        for (size_t i = 0; i < pos; i++)
                if (src[i] == '\n')
                        line++;
        return line;
}

static int nc_mustache_blank(char c)
{
        return c == ' ' || c == '\t';
}

static int nc_mustache_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int nc_mustache_quote_len(size_t len)
{
        return len > NC_MUSTACHE_NAME_QUOTE ? NC_MUSTACHE_NAME_QUOTE : (int)len;
}

static void nc_mustache_tpl_free(struct nc_mustache_tpl *t)
{
        if (!t)
                return;
        free(t->src);
        free(t->nodes);
        free(t->pool);
        memset(t, 0, sizeof(*t));
}

static struct nc_mustache_node *nc_mustache_node_add(struct nc_mustache_tpl *t, int type)
{
        struct nc_mustache_node *n;

        if (t->nnodes == t->nodecap) {
                size_t cap = t->nodecap ? t->nodecap * 2 : 16;
                struct nc_mustache_node *nodes = realloc(t->nodes, cap * sizeof(*nodes));

                if (!nodes)
                        return NULL;
                t->nodes = nodes;
                t->nodecap = cap;
        }
        n = &t->nodes[t->nnodes++];
        memset(n, 0, sizeof(*n));
        n->type = (unsigned char)type;
        return n;
}

/* Appends S[0..len) plus a NUL to the pool; returns its offset or SIZE_MAX. */
static size_t nc_mustache_pool_add(struct nc_mustache_tpl *t, const char *s, size_t len)
{
        size_t off = t->poollen;

        if (nc_buf_reserve(&t->pool, &t->poolcap, t->poollen, len + 1, 64) != 0)
                return SIZE_MAX;
        memcpy(t->pool + off, s, len);
        t->pool[off + len] = '\0';
        t->poollen += len + 1;
        return off;
}

/* Finds the closing delimiter at or after FROM; with LEAD ('}' of a triple mustache, '=' of
 * a delimiter tag) it must directly follow that character, and the LEAD's index is
 * returned.  SIZE_MAX if the tag is not closed. */
static size_t nc_mustache_find_close(const char *src, size_t len, size_t from, char lead,
                                     const char *ctag, size_t clen)
{
        size_t at = from + (lead ? 1 : 0);

        while (at <= len) {
                const char *hit = memmem(src + at, len - at, ctag, clen);
                size_t i;

                if (!hit)
                        return SIZE_MAX;
                i = (size_t)(hit - src);
                if (!lead)
                        return i;
                if (src[i - 1] == lead)
                        return i - 1;
                at = i + 1;
        }
        return SIZE_MAX;
}

/* Checks a tag name (non-empty, no whitespace) and, for dotted names, splits it into the
 * pool.  Partial names (SPLIT = 0) are stored whole: they may contain dots. */
static int nc_mustache_name(struct nc_mustache_tpl *t, struct nc_mustache_node *n, size_t off,
                            size_t len, int split, char *errstr, size_t errstr_size)
{
        const char *s = t->src + off;

        if (len == 0)
                return nc_err(errstr, errstr_size, "line %zu: empty tag name",
                              nc_mustache_line(t->src, off));
        for (size_t i = 0; i < len; i++)
                if (nc_mustache_space(s[i]))
                        return nc_err(errstr, errstr_size, "line %zu: invalid tag name '%.*s'",
                                      nc_mustache_line(t->src, off), nc_mustache_quote_len(len), s);
        if (!split) {
                n->off = nc_mustache_pool_add(t, s, len);
                n->len = len;
                if (n->off == SIZE_MAX)
                        return nc_err(errstr, errstr_size, "out of memory");
                return 0;
        }
        n->len = len;
        n->nparts = 0;
        if (len == 1 && s[0] == '.')
                return 0; /* implicit iterator: the top of the context stack */
        n->off = t->poollen;
        for (size_t start = 0; start <= len;) {
                const char *dot = memchr(s + start, '.', len - start);
                size_t plen = dot ? (size_t)(dot - (s + start)) : len - start;

                if (plen == 0)
                        return nc_err(errstr, errstr_size, "line %zu: invalid tag name '%.*s'",
                                      nc_mustache_line(t->src, off), nc_mustache_quote_len(len), s);
                if (nc_mustache_pool_add(t, s + start, plen) == SIZE_MAX)
                        return nc_err(errstr, errstr_size, "out of memory");
                n->nparts++;
                start += plen + 1;
        }
        return 0;
}

/* The compiler's state while it scans one template. */
struct nc_mustache_parser {
        struct nc_mustache_tpl *t;
        const char *src; /* t->src */
        size_t len;
        const char *otag, *ctag; /* current delimiters ({{ }} until a {{= =}} tag) */
        size_t olen, clen;
        struct nc_mustache_open open[NC_MUSTACHE_MAX_NESTING];
        size_t nopen;
        char *errstr;
        size_t errstr_size;
};

/* One tag, as found by nc_mustache_scan_tag and nc_mustache_standalone. */
struct nc_mustache_tag {
        char type;      /* '!', '#', '^', '/', '>', '=', '{', '&', or 0 for {{x}} */
        size_t p;       /* position of the opening delimiter */
        size_t cs, ce;  /* content between the delimiters, blanks trimmed */
        size_t tag_end; /* just past the closing delimiter */
        int standalone; /* alone on its line: the line goes, from bol to eol */
        size_t bol, eol;
        int tag_bol; /* not standalone and starts a source line */
};

/* Adds a node of TYPE; NULL with errstr set if out of memory. */
static struct nc_mustache_node *nc_mustache_parser_node(struct nc_mustache_parser *ps, int type)
{
        struct nc_mustache_node *n = nc_mustache_node_add(ps->t, type);

        if (!n)
                nc_err(ps->errstr, ps->errstr_size, "out of memory");
        return n;
}

/* Adds src[from..to) as a TEXT node, if it is not empty. */
static int nc_mustache_add_text(struct nc_mustache_parser *ps, size_t from, size_t to)
{
        struct nc_mustache_node *n;

        if (to <= from)
                return 0;
        if (!(n = nc_mustache_parser_node(ps, NC_MUSTACHE_TEXT)))
                return -1;
        n->off = from;
        n->len = to - from;
        n->bol = from == 0 || ps->src[from - 1] == '\n';
        return 0;
}

/* Adds an empty TEXT node carrying only a line start, for tags that start a line, render
 * nothing and are not standalone: partial indentation must still be written there. */
static int nc_mustache_add_bol(struct nc_mustache_parser *ps)
{
        struct nc_mustache_node *n = nc_mustache_parser_node(ps, NC_MUSTACHE_TEXT);

        if (!n)
                return -1;
        n->bol = 1;
        return 0;
}

/* Reads the tag whose opening delimiter is at P: its type, content and end. */
static int nc_mustache_scan_tag(struct nc_mustache_parser *ps, size_t p,
                                struct nc_mustache_tag *tag)
{
        const char *src = ps->src;
        size_t q = p + ps->olen, cend;
        char lead;

        memset(tag, 0, sizeof(*tag));
        tag->p = p;
        tag->bol = SIZE_MAX;
        if (q < ps->len && src[q] != '\0' && strchr("!#^/>={&", src[q]))
                tag->type = src[q++];
        lead = tag->type == '{' ? '}' : tag->type == '=' ? '=' : 0;
        cend = nc_mustache_find_close(src, ps->len, q, lead, ps->ctag, ps->clen);
        if (cend == SIZE_MAX)
                return nc_err(ps->errstr, ps->errstr_size, "line %zu: unclosed tag",
                              nc_mustache_line(src, p));
        tag->tag_end = cend + (tag->type == '{' || tag->type == '=' ? 1 : 0) + ps->clen;
        tag->cs = q;
        tag->ce = cend;
        while (tag->cs < tag->ce && nc_mustache_space(src[tag->cs]))
                tag->cs++;
        while (tag->ce > tag->cs && nc_mustache_space(src[tag->ce - 1]))
                tag->ce--;
        return 0;
}

/* Standalone: only blanks before the tag on its line (and no other tag, so not before SEG
 * unless LINE_CLEAN: SEG starts a line), only blanks after it up to the end of the line or
 * template.  Interpolations are never standalone. */
static void nc_mustache_standalone(const struct nc_mustache_parser *ps, size_t seg, int line_clean,
                                   struct nc_mustache_tag *tag)
{
        const char *src = ps->src;
        size_t i = tag->p, j;

        if (!tag->type || tag->type == '{' || tag->type == '&')
                return;
        while (i > seg && src[i - 1] != '\n')
                i--;
        if (i > seg || line_clean)
                tag->bol = i;
        for (i = tag->bol; i != SIZE_MAX && i < tag->p; i++)
                if (!nc_mustache_blank(src[i]))
                        tag->bol = SIZE_MAX;
        if (tag->bol == SIZE_MAX)
                return;
        j = tag->tag_end;
        while (j < ps->len && nc_mustache_blank(src[j]))
                j++;
        if (j == ps->len)
                tag->eol = ps->len;
        else if (src[j] == '\n')
                tag->eol = j + 1;
        else if (src[j] == '\r' && j + 1 < ps->len && src[j + 1] == '\n')
                tag->eol = j + 2;
        tag->standalone = tag->eol != 0;
}

/* {{=<% %>=}}: two delimiters, separated by blanks, neither containing any. */
static int nc_mustache_set_delimiters(struct nc_mustache_parser *ps,
                                      const struct nc_mustache_tag *tag)
{
        const char *src = ps->src;
        size_t cs = tag->cs, ce = tag->ce, a = cs, b;

        while (a < ce && !nc_mustache_space(src[a]))
                a++;
        b = a;
        while (b < ce && nc_mustache_space(src[b]))
                b++;
        for (size_t i = b; i < ce; i++)
                if (nc_mustache_space(src[i]))
                        b = ce;
        if (a == cs || b == ce)
                return nc_err(
                    ps->errstr, ps->errstr_size, "line %zu: invalid set delimiters tag '%.*s'",
                    nc_mustache_line(src, tag->p), nc_mustache_quote_len(ce - cs), src + cs);
        ps->otag = src + cs;
        ps->olen = a - cs;
        ps->ctag = src + b;
        ps->clen = ce - b;
        return 0;
}

/* {{#name}} or {{^name}}: a section node, left open until its closing tag. */
static int nc_mustache_open_section(struct nc_mustache_parser *ps,
                                    const struct nc_mustache_tag *tag)
{
        struct nc_mustache_open *o;
        struct nc_mustache_node *n;

        if (ps->nopen == NC_MUSTACHE_MAX_NESTING)
                return nc_err(ps->errstr, ps->errstr_size,
                              "line %zu: sections nested deeper than %d",
                              nc_mustache_line(ps->src, tag->p), NC_MUSTACHE_MAX_NESTING);
        n = nc_mustache_parser_node(ps,
                                    tag->type == '#' ? NC_MUSTACHE_SECTION : NC_MUSTACHE_INVERTED);
        if (!n)
                return -1;
        n->bol = (unsigned char)tag->tag_bol;
        if (nc_mustache_name(ps->t, n, tag->cs, tag->ce - tag->cs, 1, ps->errstr, ps->errstr_size))
                return -1;
        o = &ps->open[ps->nopen++];
        o->node = ps->t->nnodes - 1;
        o->name_off = tag->cs;
        o->name_len = tag->ce - tag->cs;
        o->pos = tag->p;
        return 0;
}

/* {{/name}}: closes the innermost open section, which must have that name. */
static int nc_mustache_close_section(struct nc_mustache_parser *ps,
                                     const struct nc_mustache_tag *tag)
{
        const char *src = ps->src;
        size_t cs = tag->cs, ce = tag->ce, line = nc_mustache_line(src, tag->p);
        const struct nc_mustache_open *o;

        if (cs == ce)
                return nc_err(ps->errstr, ps->errstr_size, "line %zu: empty tag name", line);
        if (ps->nopen == 0)
                return nc_err(ps->errstr, ps->errstr_size,
                              "line %zu: closing tag '%.*s' without an open section", line,
                              nc_mustache_quote_len(ce - cs), src + cs);
        o = &ps->open[ps->nopen - 1];
        if (o->name_len != ce - cs || memcmp(src + o->name_off, src + cs, ce - cs) != 0)
                return nc_err(ps->errstr, ps->errstr_size,
                              "line %zu: closing tag '%.*s' does not match "
                              "section '%.*s' opened on line %zu",
                              line, nc_mustache_quote_len(ce - cs), src + cs,
                              nc_mustache_quote_len(o->name_len), src + o->name_off,
                              nc_mustache_line(src, o->pos));
        /* The indentation before a non-standalone closing tag is inside the section:
         * written once per iteration. */
        if (tag->tag_bol && nc_mustache_add_bol(ps))
                return -1;
        ps->t->nodes[o->node].end = ps->t->nnodes;
        ps->nopen--;
        return 0;
}

/* {{> name}}: a standalone partial keeps its indentation, to prefix its every line. */
static int nc_mustache_add_partial(struct nc_mustache_parser *ps, const struct nc_mustache_tag *tag)
{
        struct nc_mustache_node *n = nc_mustache_parser_node(ps, NC_MUSTACHE_PARTIAL);

        if (!n)
                return -1;
        n->bol = (unsigned char)tag->tag_bol;
        n->standalone = (unsigned char)tag->standalone;
        if (tag->standalone) {
                n->ind_off = tag->bol;
                n->ind_len = tag->p - tag->bol;
        }
        return nc_mustache_name(ps->t, n, tag->cs, tag->ce - tag->cs, 0, ps->errstr,
                                ps->errstr_size);
}

/* {{x}}, {{{x}}}, {{&x}}: only the first is HTML-escaped. */
static int nc_mustache_add_var(struct nc_mustache_parser *ps, const struct nc_mustache_tag *tag)
{
        struct nc_mustache_node *n = nc_mustache_parser_node(ps, NC_MUSTACHE_VAR);

        if (!n)
                return -1;
        n->bol = (unsigned char)tag->tag_bol;
        n->escape = tag->type == 0;
        return nc_mustache_name(ps->t, n, tag->cs, tag->ce - tag->cs, 1, ps->errstr,
                                ps->errstr_size);
}

/* The node(s) of one tag. */
static int nc_mustache_add_tag(struct nc_mustache_parser *ps, const struct nc_mustache_tag *tag)
{
        switch (tag->type) {
        case '!':
                return tag->tag_bol ? nc_mustache_add_bol(ps) : 0;
        case '=':
                if (nc_mustache_set_delimiters(ps, tag))
                        return -1;
                return tag->tag_bol ? nc_mustache_add_bol(ps) : 0;
        case '#':
        case '^':
                return nc_mustache_open_section(ps, tag);
        case '/':
                return nc_mustache_close_section(ps, tag);
        case '>':
                return nc_mustache_add_partial(ps, tag);
        default: /* variable: {{x}}, {{{x}}}, {{&x}} */
                return nc_mustache_add_var(ps, tag);
        }
}

/* Compiles TEXT[0..len) into T (which owns a copy of it).  On error T may be partly filled
 * and must still be freed by the caller. */
static int nc_mustache_parse(struct nc_mustache_tpl *t, const char *text, size_t len, char *errstr,
                             size_t errstr_size)
{
        struct nc_mustache_parser ps = {.t = t,
                                        .len = len,
                                        .otag = "{{",
                                        .ctag = "}}",
                                        .olen = 2,
                                        .clen = 2,
                                        .errstr = errstr,
                                        .errstr_size = errstr_size};
        size_t pos = 0, seg = 0; /* scan position; start of the pending text */
        int line_clean = 1;      /* seg starts a line (template start, after standalone) */
        const char *hit;
        char *src;

        src = t->src = malloc(len + 1);
        if (!src)
                return nc_err(errstr, errstr_size, "out of memory");
        memcpy(src, text, len);
        src[len] = '\0';
        t->srclen = len;
        ps.src = src;

        while ((hit = memmem(src + pos, len - pos, ps.otag, ps.olen)) != NULL) {
                struct nc_mustache_tag tag;

                if (nc_mustache_scan_tag(&ps, (size_t)(hit - src), &tag))
                        return -1;
                nc_mustache_standalone(&ps, seg, line_clean, &tag);
                /* The text before the tag (minus the indentation of a standalone line). */
                if (nc_mustache_add_text(&ps, seg, tag.standalone ? tag.bol : tag.p))
                        return -1;
                tag.tag_bol = !tag.standalone && (tag.p == 0 || src[tag.p - 1] == '\n');
                if (nc_mustache_add_tag(&ps, &tag))
                        return -1;
                pos = seg = tag.standalone ? tag.eol : tag.tag_end;
                line_clean = tag.standalone;
        }

        if (ps.nopen > 0) {
                const struct nc_mustache_open *o = &ps.open[ps.nopen - 1];

                return nc_err(errstr, errstr_size, "line %zu: unclosed section '%.*s'",
                              nc_mustache_line(src, o->pos), nc_mustache_quote_len(o->name_len),
                              src + o->name_off);
        }
        return nc_mustache_add_text(&ps, seg, len);
}

/* ---- partial cache ---------------------------------------------------------------------- */

static size_t nc_mustache_hash(const char *s)
{
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return (size_t)h;
}

/* Returns the cache entry for NAME, creating it (without a template) if needed. */
static struct nc_mustache_pentry *nc_mustache_cache_get(nc_mustache_t *m, const char *name)
{
        struct nc_mustache_pentry *e;
        size_t i;

        if (m->nslots == 0 || (m->nused + 1) * 2 > m->nslots) {
                size_t nslots = m->nslots ? m->nslots * 2 : 16;
                struct nc_mustache_pentry **slots = calloc(nslots, sizeof(*slots));

                if (!slots)
                        return NULL;
                for (size_t k = 0; k < m->nslots; k++) {
                        if (!m->slots[k])
                                continue;
                        i = nc_mustache_hash(m->slots[k]->name) & (nslots - 1);
                        while (slots[i])
                                i = (i + 1) & (nslots - 1);
                        slots[i] = m->slots[k];
                }
                free(m->slots);
                m->slots = slots;
                m->nslots = nslots;
        }
        i = nc_mustache_hash(name) & (m->nslots - 1);
        while (m->slots[i]) {
                if (strcmp(m->slots[i]->name, name) == 0)
                        return m->slots[i];
                i = (i + 1) & (m->nslots - 1);
        }
        e = calloc(1, sizeof(*e));
        if (!e)
                return NULL;
        e->name = strdup(name);
        if (!e->name) {
                free(e);
                return NULL;
        }
        m->slots[i] = e;
        m->nused++;
        return e;
}

/* ---- rendering -------------------------------------------------------------------------- */

static int nc_mustache_put(struct nc_mustache_state *st, const char *s, size_t n)
{
        if (n == 0)
                return 0;
        if (n > st->max_out - st->len)
                return nc_err(st->errstr, st->errstr_size, "output exceeds %zu bytes", st->max_out);
        if (nc_buf_reserve(&st->out, &st->cap, st->len, n + 1, 256) != 0)
                return nc_err(st->errstr, st->errstr_size, "out of memory");
        memcpy(st->out + st->len, s, n);
        st->len += n;
        return 0;
}

static int nc_mustache_put_escaped(struct nc_mustache_state *st, const char *s, size_t n)
{
        size_t run = 0;

        for (size_t i = 0; i < n; i++) {
                const char *rep;

                switch (s[i]) {
                case '&':
                        rep = "&amp;";
                        break;
                case '"':
                        rep = "&quot;";
                        break;
                case '<':
                        rep = "&lt;";
                        break;
                case '>':
                        rep = "&gt;";
                        break;
                case '\'':
                        rep = "&#39;";
                        break;
                default:
                        continue;
                }
                if (nc_mustache_put(st, s + run, i - run) || nc_mustache_put(st, rep, strlen(rep)))
                        return -1;
                run = i + 1;
        }
        return nc_mustache_put(st, s + run, n - run);
}

/* Shortest "%g" form that reads back as the same double: 1.21 rather than 1.210000. */
static void nc_mustache_fmt_real(double d, char *buf, size_t size)
{
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        return;
        }
}

static int nc_mustache_put_value(struct nc_mustache_state *st, const json_t *v, int escape)
{
        char buf[64];
        const char *s = buf;
        size_t n;
        char *dump;
        int rc;

        switch (json_typeof(v)) {
        case JSON_STRING:
                s = json_string_value(v);
                n = json_string_length(v);
                break;
        case JSON_INTEGER:
                n = (size_t)snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                                     json_integer_value(v));
                break;
        case JSON_REAL:
                nc_mustache_fmt_real(json_real_value(v), buf, sizeof(buf));
                n = strlen(buf);
                break;
        case JSON_TRUE:
                s = "true";
                n = 4;
                break;
        case JSON_FALSE:
                s = "false";
                n = 5;
                break;
        case JSON_NULL:
                return 0;
        default: /* object or array: compact JSON beats printing nothing when debugging */
                dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!dump)
                        return nc_err(st->errstr, st->errstr_size, "out of memory");
                rc = escape ? nc_mustache_put_escaped(st, dump, strlen(dump))
                            : nc_mustache_put(st, dump, strlen(dump));
                free(dump);
                return rc;
        }
        return escape ? nc_mustache_put_escaped(st, s, n) : nc_mustache_put(st, s, n);
}

/* Template text; inside an indented partial every inner line start gets the indentation
 * (a final newline does not: the next node, if any, starts that line itself). */
static int nc_mustache_put_text(struct nc_mustache_state *st, const char *s, size_t n,
                                size_t ind_from)
{
        while (n > 0 && st->indlen > ind_from) {
                const char *nl = memchr(s, '\n', n);
                size_t k;

                if (!nl || (size_t)(nl - s) == n - 1)
                        break;
                k = (size_t)(nl - s) + 1;
                if (nc_mustache_put(st, s, k) ||
                    nc_mustache_put(st, st->ind + ind_from, st->indlen - ind_from))
                        return -1;
                s += k;
                n -= k;
        }
        return nc_mustache_put(st, s, n);
}

static const json_t *nc_mustache_lookup(const struct nc_mustache_tpl *t,
                                        const struct nc_mustache_node *n,
                                        const struct nc_mustache_ctx *ctx)
{
        const char *part = t->pool + n->off;
        const json_t *v = NULL;

        if (n->nparts == 0)
                return ctx ? ctx->v : NULL;
        /* The first part is looked up through the context stack, the rest only inside
         * what the first one found ("Dotted Names - Context Precedence"). */
        for (; ctx && !v; ctx = ctx->up)
                if (json_is_object(ctx->v))
                        v = json_object_get(ctx->v, part);
        for (unsigned i = 1; v && i < n->nparts; i++) {
                part += strlen(part) + 1;
                v = json_is_object(v) ? json_object_get(v, part) : NULL;
        }
        return v;
}

static int nc_mustache_truthy(const json_t *v)
{
        return v && !json_is_null(v) && !json_is_false(v) &&
               !(json_is_array(v) && json_array_size(v) == 0);
}

static int nc_mustache_render_nodes(struct nc_mustache_state *st, const struct nc_mustache_tpl *t,
                                    size_t from, size_t to, const struct nc_mustache_ctx *ctx,
                                    size_t ind_from);

static int nc_mustache_enter(struct nc_mustache_state *st)
{
        if (++st->depth > NC_MUSTACHE_MAX_DEPTH)
                return nc_err(st->errstr, st->errstr_size,
                              "sections and partials nested deeper than %d", NC_MUSTACHE_MAX_DEPTH);
        return 0;
}

static int nc_mustache_render_section(struct nc_mustache_state *st, const struct nc_mustache_tpl *t,
                                      size_t i, const struct nc_mustache_ctx *ctx, size_t ind_from)
{
        const struct nc_mustache_node *n = &t->nodes[i];
        const json_t *v = nc_mustache_lookup(t, n, ctx);
        struct nc_mustache_ctx sub;
        int rc = 0;

        if (nc_mustache_enter(st)) {
                rc = -1;
        } else if (n->type == NC_MUSTACHE_INVERTED) {
                if (!nc_mustache_truthy(v))
                        rc = nc_mustache_render_nodes(st, t, i + 1, n->end, ctx, ind_from);
        } else if (json_is_array(v)) {
                sub.up = ctx;
                for (size_t k = 0; k < json_array_size(v) && rc == 0; k++) {
                        sub.v = json_array_get(v, k);
                        rc = nc_mustache_render_nodes(st, t, i + 1, n->end, &sub, ind_from);
                }
        } else if (nc_mustache_truthy(v)) {
                sub.v = v;
                sub.up = ctx;
                rc = nc_mustache_render_nodes(st, t, i + 1, n->end, &sub, ind_from);
        }
        st->depth--;
        return rc;
}

static int nc_mustache_render_partial(struct nc_mustache_state *st, const struct nc_mustache_tpl *t,
                                      const struct nc_mustache_node *n,
                                      const struct nc_mustache_ctx *ctx, size_t ind_from)
{
        const char *name = t->pool + n->off;
        const char *text = st->partial ? st->partial(st->opaque, name) : NULL;
        struct nc_mustache_tpl *pt, *tmp = NULL;
        struct nc_mustache_pentry *e;
        size_t len, saved = st->indlen, sub_from;
        char err[256];
        int rc;

        if (!text)
                return 0; /* unknown partials render as nothing, like missing names */
        if (st->pdepth >= NC_MUSTACHE_MAX_PARTIAL_DEPTH)
                return nc_err(st->errstr, st->errstr_size,
                              "partial '%.*s' nested deeper than %d levels",
                              nc_mustache_quote_len(n->len), name, NC_MUSTACHE_MAX_PARTIAL_DEPTH);
        e = nc_mustache_cache_get(st->m, name);
        if (!e)
                return nc_err(st->errstr, st->errstr_size, "out of memory");
        /* The callback may hand out different text over time: reuse only an identical one. */
        len = strlen(text);
        if (!e->tpl || e->tpl->srclen != len || memcmp(e->tpl->src, text, len) != 0) {
                pt = calloc(1, sizeof(*pt));
                if (!pt)
                        return nc_err(st->errstr, st->errstr_size, "out of memory");
                if (nc_mustache_parse(pt, text, len, err, sizeof(err))) {
                        nc_mustache_tpl_free(pt);
                        free(pt);
                        return nc_err(st->errstr, st->errstr_size, "partial '%.*s': %s",
                                      nc_mustache_quote_len(n->len), name, err);
                }
                if (e->active) {
                        tmp = pt; /* the cached one is being rendered further up */
                } else {
                        nc_mustache_tpl_free(e->tpl);
                        free(e->tpl);
                        e->tpl = pt;
                }
        }
        pt = tmp ? tmp : e->tpl;

        /* Standalone: the partial's lines get the enclosing indentation plus this tag's.
         * Inline: no indentation at all, the partial continues the current line. */
        sub_from = n->standalone ? ind_from : st->indlen;
        if (n->standalone && n->ind_len > 0) {
                if (st->indcap - st->indlen < n->ind_len) {
                        size_t cap = st->indcap ? st->indcap : 64;
                        char *ind;

                        while (cap - st->indlen < n->ind_len)
                                cap *= 2;
                        ind = realloc(st->ind, cap);
                        if (!ind) {
                                if (tmp) {
                                        nc_mustache_tpl_free(tmp);
                                        free(tmp);
                                }
                                return nc_err(st->errstr, st->errstr_size, "out of memory");
                        }
                        st->ind = ind;
                        st->indcap = cap;
                }
                memcpy(st->ind + st->indlen, t->src + n->ind_off, n->ind_len);
                st->indlen += n->ind_len;
        }

        e->active++;
        st->pdepth++;
        rc = nc_mustache_enter(st);
        if (rc == 0)
                rc = nc_mustache_render_nodes(st, pt, 0, pt->nnodes, ctx, sub_from);
        st->depth--;
        st->pdepth--;
        e->active--;
        st->indlen = saved;
        if (tmp) {
                nc_mustache_tpl_free(tmp);
                free(tmp);
        }
        return rc;
}

static int nc_mustache_render_nodes(struct nc_mustache_state *st, const struct nc_mustache_tpl *t,
                                    size_t from, size_t to, const struct nc_mustache_ctx *ctx,
                                    size_t ind_from)
{
        for (size_t i = from; i < to; i++) {
                const struct nc_mustache_node *n = &t->nodes[i];
                const json_t *v;

                if (n->bol && st->indlen > ind_from &&
                    nc_mustache_put(st, st->ind + ind_from, st->indlen - ind_from))
                        return -1;
                switch (n->type) {
                case NC_MUSTACHE_TEXT:
                        if (nc_mustache_put_text(st, t->src + n->off, n->len, ind_from))
                                return -1;
                        break;
                case NC_MUSTACHE_VAR:
                        v = nc_mustache_lookup(t, n, ctx);
                        if (v && nc_mustache_put_value(st, v, n->escape && st->escape))
                                return -1;
                        break;
                case NC_MUSTACHE_SECTION:
                case NC_MUSTACHE_INVERTED:
                        if (nc_mustache_render_section(st, t, i, ctx, ind_from))
                                return -1;
                        i = n->end - 1;
                        break;
                case NC_MUSTACHE_PARTIAL:
                        if (nc_mustache_render_partial(st, t, n, ctx, ind_from))
                                return -1;
                        break;
                }
        }
        return 0;
}

/* ---- public API ------------------------------------------------------------------------- */

nc_mustache_t *nc_mustache_compile(const char *tmpl, char *errstr, size_t errstr_size)
{
        nc_mustache_t *m;

        if (!tmpl) {
                nc_err(errstr, errstr_size, "no template");
                return NULL;
        }
        m = calloc(1, sizeof(*m));
        if (!m) {
                nc_err(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (nc_mustache_parse(&m->root, tmpl, strlen(tmpl), errstr, errstr_size)) {
                nc_mustache_destroy(m);
                return NULL;
        }
        return m;
}

void nc_mustache_destroy(nc_mustache_t *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->nslots; i++) {
                struct nc_mustache_pentry *e = m->slots[i];

                if (!e)
                        continue;
                nc_mustache_tpl_free(e->tpl);
                free(e->tpl);
                free(e->name);
                free(e);
        }
        free(m->slots);
        nc_mustache_tpl_free(&m->root);
        free(m);
}

char *nc_mustache_render_compiled(nc_mustache_t *m, const json_t *data,
                                  const nc_mustache_opts_t *opts, char *errstr, size_t errstr_size)
{
        struct nc_mustache_state st;
        struct nc_mustache_ctx root = {data, NULL};
        int rc;

        if (!m) {
                nc_err(errstr, errstr_size, "no template");
                return NULL;
        }
        memset(&st, 0, sizeof(st));
        st.m = m;
        st.escape = 1;
        st.max_out = NC_MUSTACHE_MAX_OUTPUT;
        if (opts) {
                st.partial = opts->partial;
                st.opaque = opts->opaque;
                st.escape = opts->escape_html != 0;
                if (opts->max_output)
                        st.max_out = opts->max_output;
        }
        st.errstr = errstr;
        st.errstr_size = errstr_size;

        /* Output is usually about the template's size: start there to skip most regrowth. */
        st.cap = m->root.srclen + 256;
        st.out = malloc(st.cap);
        if (!st.out) {
                nc_err(errstr, errstr_size, "out of memory");
                return NULL;
        }
        rc = nc_mustache_render_nodes(&st, &m->root, 0, m->root.nnodes, data ? &root : NULL, 0);
        free(st.ind);
        if (rc) {
                free(st.out);
                return NULL;
        }
        st.out[st.len] = '\0'; /* nc_mustache_put() always leaves room for it */
        return st.out;
}

char *nc_mustache_render(const char *tmpl, const json_t *data, const nc_mustache_opts_t *opts,
                         char *errstr, size_t errstr_size)
{
        nc_mustache_t *m = nc_mustache_compile(tmpl, errstr, errstr_size);
        char *out;

        if (!m)
                return NULL;
        out = nc_mustache_render_compiled(m, data, opts, errstr, errstr_size);
        nc_mustache_destroy(m);
        return out;
}
