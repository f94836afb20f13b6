/* Mustache template rendering (https://mustache.github.io/mustache.5.html) over jansson data.
 *
 * Implements the core of the official Mustache spec: interpolation, sections, inverted
 * sections, comments, partials (with standalone indentation) and set-delimiter tags.  The
 * optional lambdas and inheritance modules are not supported.
 *
 * Semantics worth knowing when writing templates:
 *  - falsey values are false, null, missing keys and empty arrays.  Everything else is
 *    truthy, including "", 0 and {} (as in the spec's reference implementation).
 *  - numbers print as integers, or as the shortest decimal that reads back as the same
 *    double (1.21 -> "1.21", 3.0 -> "3").  true/false print as "true"/"false", null as "",
 *    arrays and objects as compact JSON.
 *  - HTML escaping (on by default) turns & " < > ' into entities; {{{x}}} and {{& x}} never
 *    escape; escape_html = 0 disables it everywhere (plain-text mail bodies, subjects).
 *  - a partial the callback does not know renders as the empty string (spec behaviour).
 *
 * Limits, each of which makes rendering fail with an error instead of exhausting memory or
 * stack: sections nested deeper than NC_MUSTACHE_MAX_NESTING in one template, partials
 * nested deeper than NC_MUSTACHE_MAX_PARTIAL_DEPTH, and output larger than opts->max_output.
 */
#ifndef NC_MUSTACHE_H
#define NC_MUSTACHE_H

#include <stddef.h>

#include <jansson.h>

#define NC_MUSTACHE_MAX_NESTING       100
#define NC_MUSTACHE_MAX_PARTIAL_DEPTH 64
#define NC_MUSTACHE_MAX_OUTPUT        ((size_t)64 << 20)

/* Partials lookup: return the template text for NAME or NULL if there is no such partial.
 * The text is owned by the callee and must stay valid during the render call. */
typedef const char *(nc_mustache_partial_fn)(void *opaque, const char *name);

typedef struct nc_mustache_opts {
        nc_mustache_partial_fn *partial; /* NULL: no partials */
        void *opaque;                    /* passed to partial() */
        int escape_html;                 /* 1: HTML-escape {{x}} (the default only when opts is
                                          * NULL: a zeroed struct means plain text) */
        size_t max_output;               /* 0: NC_MUSTACHE_MAX_OUTPUT bytes */
} nc_mustache_opts_t;

/* Renders TEMPLATE with DATA (may be NULL: every name is then missing).  OPTS may be NULL.
 * Returns a malloc'd NUL-terminated string (caller frees) or NULL with errstr set, e.g.
 * "line 3: unclosed section 'items'". */
char *nc_mustache_render(const char *tmpl, const json_t *data, const nc_mustache_opts_t *opts,
                         char *errstr, size_t errstr_size);

/* Compile-once form, for rendering the same template many times. */
typedef struct nc_mustache_s nc_mustache_t;

/* Parses TMPL (copied).  Returns NULL with errstr set on a syntax error. */
nc_mustache_t *nc_mustache_compile(const char *tmpl, char *errstr, size_t errstr_size);

/* Same as nc_mustache_render() with a compiled template.  Partials are compiled on first
 * use and cached inside M; the cache is revalidated against the text the callback returns,
 * so partials may change between calls.  Because of that cache, M must not be rendered by
 * two threads at the same time (compile one per thread instead). */
char *nc_mustache_render_compiled(nc_mustache_t *m, const json_t *data,
                                  const nc_mustache_opts_t *opts, char *errstr, size_t errstr_size);

void nc_mustache_destroy(nc_mustache_t *m);

#endif
