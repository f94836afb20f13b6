/* Email content for a subscriber: subject, plain text and HTML rendered from the Mustache
 * templates in config/templates/<lang>/.  ml_mail builds the message from them.
 *
 * Template set, per language directory:
 *   subject.mustache, text.mustache, html.mustache   required
 *   <name>.mustache                                  any other file: the partial {{> name}}
 *                                                    (e.g. notice.html.mustache is
 *                                                    {{> notice.html}})
 *
 * Data given to the templates (config/templates/README.md has the same list):
 *   lang             template language ("en")
 *   subject          the rendered subject (text and html only, e.g. for <title>)
 *   name, email      the subscriber's (name is absent when empty)
 *   count            number of notices (>= 1)
 *   single/multiple  count == 1 / count > 1
 *   urgent           the message is an urgent alert
 *   period           "immediate", "daily" or "weekly"; also one of immediate/daily/weekly
 *                    set to true, and digest = daily or weekly
 *   unsubscribe_url  absent unless it is an http(s) URL
 *   notices          newest first, each:
 *     id, category, index (1-based), urgent, correction (it supersedes another notice),
 *     title, title_lang, summary, summary_lang, paragraphs (the body split on blank lines,
 *     a list of strings: {{#paragraphs}}{{.}}{{/paragraphs}}), body_lang,
 *     lang (= title_lang), fallback (some text is not in the template language),
 *     url (absent unless http(s)), source, date ("YYYY-MM-DD" of published_at, as written)
 *   first            notices[0], for one-notice subjects: {{#first}}{{title}}{{/first}}
 * Texts are in the subscriber's language, else the notice's own language (nc_notice_text);
 * the *_lang keys say which one each text is in, for lang="" attributes in HTML.
 *
 * Escaping: subject and text are rendered without escaping and html with HTML escaping, so
 * every value from a notice or subscriber is escaped in HTML ({{{x}}} must not be used with
 * such values).  The subject has control characters and blank runs collapsed to one space.
 *
 * Threads: a template set is immutable after loading, except for the partial cache inside
 * each compiled template, which a mutex per language guards; ml_digest_render() may be
 * called from several threads on the same set.  Reload (SIGHUP) = load a new set, swap the
 * pointer, free the old one once no render uses it. */
#ifndef ML_DIGEST_H
#define ML_DIGEST_H

#include <stddef.h>

#include <jansson.h>

#include "ml_mail.h"
#include "nc_util.h"

/* Largest template file accepted (each of subject/text/html and every partial). */
#define NC_TEMPLATE_MAX_BYTES ((size_t)1 << 20)

typedef struct ml_templates ml_templates_t; /* all languages, compiled once */

/* Loads DIR/<lang>/ for every language in LANGUAGES; DEFAULT_LANG must be one of them.
 * Every template and partial is compiled here, so a syntax error is reported at load (and a
 * reload keeps the old set) rather than at the first send.  Errors name the file:
 * "config/templates/ko/html.mustache: No such file or directory",
 * "config/templates/es/text.mustache: line 3: unclosed section 'notices'". */
ml_templates_t *ml_templates_load(const char *dir, const nc_strlist_t *languages,
                                  const char *default_lang, char *errstr, size_t errstr_size);
void ml_templates_free(ml_templates_t *t);
/* 1 if T has templates for LANG. */
int ml_templates_has(const ml_templates_t *t, const char *lang);

typedef struct ml_digest_out {
        char *subject, *text, *html; /* malloc'd, UTF-8 */
} ml_digest_out_t;

/* Renders the message for SUBSCRIBER (subscriber JSON) and NOTICES (array of normalised
 * notices, newest first; must not be empty: an empty digest is never sent).  URGENT marks an
 * urgent alert; UNSUBSCRIBE_URL and MANAGE_URL (the preference centre's link) may be NULL
 * (previews, sign-up pages off); PERIOD is "daily", "weekly" or
 * "immediate" (NULL = "immediate").  The templates are those of the subscriber's language if
 * loaded, else of the default language.  Returns 0 and fills OUT (free with
 * ml_digest_out_free), or -1 with errstr set and OUT all NULL. */
int ml_digest_render(const ml_templates_t *t, const json_t *subscriber, const json_t *notices,
                     int urgent, const char *unsubscribe_url, const char *manage_url,
                     const char *period, ml_digest_out_t *out, char *errstr, size_t errstr_size);
void ml_digest_out_free(ml_digest_out_t *o);

/* ---- rendering once for many subscribers ----------------------------------------------
 *
 * Most subscribers of a digest share its language and notices; only their name, email,
 * unsubscribe and manage URLs (and a subject that uses them) differ.  Each language keeps a small
 * cache (16 digests, least recently used out) keyed by the notice objects themselves (pointer
 * identity: the cache holds references), urgent, period, and which of those values are
 * present.  An entry is rendered once with sentinels (U+E000 <digit> '&' U+E001) in
 * place of those values; where a sentinel lands (HTML-escaped or not) becomes a hole.  A
 * subscriber's message is then the entry's pieces with the subscriber's values (escaped where
 * the template escaped them), and equals what a full render gives: templates have no lambdas
 * and every string is truthy, so a value's content cannot change the render around it.  A
 * template or notice that contains U+E000 itself is rendered in full, per subscriber. */

/* Values of the holes: name, email, unsubscribe URL, manage URL, subject, each twice (raw, then
 * HTML-escaped). */
#define ML_DIGEST_NVALUES 10

typedef struct ml_digest_parts {
        char *subject; /* malloc'd, final (collapsed, cut) */
        /* Either prepared bodies with their values ... */
        const ml_mail_body_t *text, *html; /* owned by the cache entry held below */
        const char *vals[ML_DIGEST_NVALUES];
        /* ... or, when text is NULL, the rendered bodies (malloc'd). */
        char *text_str, *html_str;
        /* private */
        void *entry_;
        char *own_[ML_DIGEST_NVALUES];
} ml_digest_parts_t;

/* As ml_digest_render(), but the bodies as prepared bodies for ml_mail_build_bodies() (with
 * P->vals) when the digest could be cached.  Free with ml_digest_parts_free(). */
int ml_digest_render_parts(const ml_templates_t *t, const json_t *subscriber, const json_t *notices,
                           int urgent, const char *unsubscribe_url, const char *manage_url,
                           const char *period, ml_digest_parts_t *p, char *errstr,
                           size_t errstr_size);
void ml_digest_parts_free(ml_digest_parts_t *p);

/* Turns the cache of T off (0) or on (1, the default): for tests and comparisons. */
void ml_templates_set_cache(ml_templates_t *t, int on);

#endif
