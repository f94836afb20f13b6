#include "nc_notice.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "nc_region.h"
#include "nc_time.h"
#include "nc_uuid.h"
#include "nc_util.h"

#define URL_MAX    2048
#define SOURCE_MAX 300
#define REASON_MAX 1000
#define REGION_MAX 250

static const char *const notice_fields[] = {
    "id",      "category", "published_at", "priority", "lang",       "regions", "title",
    "summary", "body",     "url",          "source",   "supersedes", NULL};

static const char *describe_cp(long cp, char *buf, size_t size)
{
        if (cp == '\n')
                return "a line break (U+000A)";
        if (cp == '\r')
                return "a carriage return (U+000D)";
        if (cp == 0)
                return "a NUL character (U+0000)";
        snprintf(buf, size, "a control character (U+%04lX)", cp);
        return buf;
}

/* One check for both kinds of text: no control character but those in ALLOWED, at most MAX
 * bytes; HINT ends the control-character message ("" or "; it must be one line"). */
static int check_text(const char *field, const char *s, const char *allowed, const char *hint,
                      size_t max, char *errstr, size_t errstr_size)
{
        char cbuf[48];
        long cp;

        if ((cp = nc_utf8_find_control(s, allowed)) >= 0)
                return nc_err(errstr, errstr_size, "%s: contains %s%s", field,
                              describe_cp(cp, cbuf, sizeof(cbuf)), hint);
        if (strlen(s) > max)
                return nc_err(errstr, errstr_size, "%s: is %zu bytes long, the limit is %zu", field,
                              strlen(s), max);
        return 0;
}

int nc_text_check_line(const char *field, const char *s, size_t max, char *errstr,
                       size_t errstr_size)
{
        return check_text(field, s, NULL, "; it must be one line", max, errstr, errstr_size);
}

/* Multi-line text (body): LF and TAB are allowed; CRLF was already folded to LF. */
static int check_multiline(const char *field, const char *s, size_t max, char *errstr,
                           size_t errstr_size)
{
        return check_text(field, s, "\n\t", "", max, errstr, errstr_size);
}

static char *fold_crlf(const char *s)
{
        char *out = nc_xstrdup(s), *w = out;

        for (; *s; s++) {
                if (s[0] == '\r' && s[1] == '\n')
                        continue;
                *w++ = *s;
        }
        *w = '\0';
        return out;
}

static int is_blank(const char *s)
{
        for (; *s; s++)
                if (!isspace((unsigned char)*s))
                        return 0;
        return 1;
}

/* Normalises a language map ("text" or {"en": "text", ...}) into a fresh object. */
static json_t *lang_map(const json_t *v, const char *field, int multiline, size_t max,
                        const nc_config_t *cfg, const char *deflang, char *errstr,
                        size_t errstr_size)
{
        json_t *out = json_object(), *val;
        const char *lang;
        char sub[64];

        if (json_is_string(v)) {
                json_t *tmp = json_object();

                json_object_set(tmp, deflang, (json_t *)v);
                json_decref(out);
                out = lang_map(tmp, field, multiline, max, cfg, deflang, errstr, errstr_size);
                json_decref(tmp);
                return out;
        }
        if (!json_is_object(v)) {
                nc_err(errstr, errstr_size,
                       "%s: must be a string or an object of language to text, e.g. "
                       "{\"en\": \"...\"}",
                       field);
                goto fail;
        }
        if (json_object_size(v) == 0) {
                nc_err(errstr, errstr_size, "%s: needs at least one language", field);
                goto fail;
        }
        json_object_foreach((json_t *)v, lang, val) {
                snprintf(sub, sizeof(sub), "%s.%.16s", field, lang);
                if (!nc_config_has_language(cfg, lang)) {
                        nc_err(errstr, errstr_size, "%s: language '%s' is not configured", sub,
                               lang);
                        goto fail;
                }
                if (!json_is_string(val)) {
                        nc_err(errstr, errstr_size, "%s: must be a string", sub);
                        goto fail;
                }
                if (json_string_length(val) != strlen(json_string_value(val))) {
                        nc_err(errstr, errstr_size, "%s: contains a NUL character (U+0000)", sub);
                        goto fail;
                }
                if (is_blank(json_string_value(val))) {
                        nc_err(errstr, errstr_size, "%s: must not be empty", sub);
                        goto fail;
                }
                if (multiline && strchr(json_string_value(val), '\r')) {
                        char *folded = fold_crlf(json_string_value(val));

                        if (check_multiline(sub, folded, max, errstr, errstr_size) != 0) {
                                free(folded);
                                goto fail;
                        }
                        json_object_set_new(out, lang, json_string(folded));
                        free(folded);
                } else {
                        if ((multiline ? check_multiline : nc_text_check_line)(
                                sub, json_string_value(val), max, errstr, errstr_size) != 0)
                                goto fail;
                        json_object_set(out, lang, val);
                }
        }
        return out;
fail:
        json_decref(out);
        return NULL;
}

static int check_uuid(const char *field, const json_t *v, char *out, char *errstr,
                      size_t errstr_size)
{
        if (!json_is_string(v) || !nc_uuid_valid(json_string_value(v)))
                return nc_err(errstr, errstr_size,
                              "%s: must be a UUID like 0190f3c2-7a4e-7b1c-9d2e-3f4a5b6c7d8e",
                              field);
        strcpy(out, json_string_value(v));
        nc_str_lower(out);
        return 0;
}

static int check_url(const char *s, char *errstr, size_t errstr_size)
{
        const char *p;

        if (strncmp(s, "https://", 8) && strncmp(s, "http://", 7))
                return nc_err(errstr, errstr_size, "url: must start with https:// or http://");
        if (strlen(s) > URL_MAX)
                return nc_err(errstr, errstr_size, "url: longer than %d bytes", URL_MAX);
        for (p = s; *p; p++)
                if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
                        return nc_err(errstr, errstr_size,
                                      "url: contains a space, control or non-ASCII character "
                                      "(percent-encode it)");
        p = strstr(s, "://") + 3;
        if (!*p || *p == '/')
                return nc_err(errstr, errstr_size, "url: has no host");
        return 0;
}

static json_t *regions(const json_t *v, char *errstr, size_t errstr_size)
{
        nc_strlist_t codes = {0};
        json_t *out = NULL, *r;
        size_t i;
        char err[128];

        if (!json_is_array(v)) {
                nc_err(errstr, errstr_size, "regions: must be an array of ISO 3166-1 codes");
                return NULL;
        }
        if (json_array_size(v) > REGION_MAX) {
                nc_err(errstr, errstr_size, "regions: more than %d entries", REGION_MAX);
                return NULL;
        }
        json_array_foreach(v, i, r) {
                if (!json_is_string(r) || strlen(json_string_value(r)) != 2) {
                        nc_err(errstr, errstr_size,
                               "regions[%zu]: must be a two-letter ISO 3166-1 code like \"PE\"", i);
                        goto done;
                }
                if (nc_region_list_add(&codes, json_string_value(r), err, sizeof(err)) != 0) {
                        nc_err(errstr, errstr_size, "regions[%zu]: %s", i, err);
                        goto done;
                }
        }
        out = json_array();
        for (i = 0; i < codes.n; i++)
                json_array_append_new(out, json_string(codes.v[i]));
done:
        nc_strlist_clear(&codes);
        return out;
}

/* JSON allows "\u0000"; C strings don't.  A NUL would silently cut a field short. */
static int check_no_nul(const json_t *v, const char *field, char *errstr, size_t errstr_size)
{
        const char *key;
        char path[160];
        json_t *e;
        size_t i;

        if (json_is_string(v) && json_string_length(v) != strlen(json_string_value(v)))
                return nc_err(errstr, errstr_size, "%s: contains a NUL character (U+0000)", field);
        if (json_is_object(v)) {
                json_object_foreach((json_t *)v, key, e) {
                        snprintf(path, sizeof(path), "%s%s%.64s", field, *field ? "." : "", key);
                        if (check_no_nul(e, path, errstr, errstr_size) != 0)
                                return -1;
                }
        } else if (json_is_array(v)) {
                json_array_foreach(v, i, e)
                        if (check_no_nul(e, field, errstr, errstr_size) != 0)
                                return -1;
        }
        return 0;
}

static int check_known_fields(const json_t *in, const char *const *known, char *errstr,
                              size_t errstr_size)
{
        const char *key;
        json_t *v;
        int i;

        json_object_foreach((json_t *)in, key, v) {
                for (i = 0; known[i]; i++)
                        if (!strcmp(key, known[i]))
                                break;
                if (!known[i])
                        return nc_err(errstr, errstr_size, "%.64s: unknown field", key);
        }
        return 0;
}

static int check_category(const json_t *v, const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        if (!v)
                return nc_err(errstr, errstr_size, "category: is required");
        if (!json_is_string(v))
                return nc_err(errstr, errstr_size, "category: must be a string");
        if (!nc_config_has_category(cfg, json_string_value(v)))
                return nc_err(errstr, errstr_size, "category: '%.64s' is not configured",
                              json_string_value(v));
        return 0;
}

/* Each norm_* below checks its fields of IN and sets them in OUT; 0, or -1 with errstr set. */

/* id: generated for new notices (not when only checking), required when stored. */
static int norm_id(const json_t *in, json_t *out, enum nc_notice_mode mode, int64_t now_ms,
                   char *errstr, size_t errstr_size)
{
        char id[NC_UUID_STRLEN];
        json_t *v;

        if ((v = json_object_get(in, "id")) && !json_is_null(v)) {
                if (check_uuid("id", v, id, errstr, errstr_size) != 0)
                        return -1;
        } else if (mode == NC_NOTICE_STORED) {
                return nc_err(errstr, errstr_size, "id: is required");
        } else if (nc_uuid_v7(now_ms, id) != 0) {
                return nc_err(errstr, errstr_size, "id: cannot generate a UUID (no randomness)");
        }
        if ((v && !json_is_null(v)) || mode != NC_NOTICE_CHECK)
                json_object_set_new(out, "id", json_string(id));
        return 0;
}

/* published_at: kept as written (its offset is information), but validated */
static int norm_published_at(const json_t *in, json_t *out, enum nc_notice_mode mode,
                             int64_t now_ms, char *errstr, size_t errstr_size)
{
        char ts[40], detail[256];
        int64_t ms;
        json_t *v;

        if ((v = json_object_get(in, "published_at")) && !json_is_null(v)) {
                if (!json_is_string(v))
                        return nc_err(errstr, errstr_size, "published_at: must be a string");
                if (nc_time_parse_rfc3339(json_string_value(v), &ms, detail, sizeof(detail)) != 0)
                        return nc_err(errstr, errstr_size, "published_at: %s", detail);
                json_object_set(out, "published_at", v);
        } else if (mode == NC_NOTICE_STORED) {
                return nc_err(errstr, errstr_size, "published_at: is required");
        } else if (mode == NC_NOTICE_INPUT) {
                json_object_set_new(out, "published_at",
                                    json_string(nc_time_format_rfc3339(now_ms, ts, sizeof(ts))));
        }
        return 0;
}

static int norm_priority(const json_t *in, json_t *out, char *errstr, size_t errstr_size)
{
        json_t *v = json_object_get(in, "priority");

        if (v && !json_is_null(v)) {
                if (!json_is_string(v) || (strcmp(json_string_value(v), "normal") &&
                                           strcmp(json_string_value(v), "urgent")))
                        return nc_err(errstr, errstr_size,
                                      "priority: must be \"normal\" or \"urgent\"");
                json_object_set(out, "priority", v);
        } else {
                json_object_set_new(out, "priority", json_string("normal"));
        }
        return 0;
}

/* lang: the notice's default language (fallback for readers of other languages) */
static int norm_lang(const json_t *in, json_t *out, const nc_config_t *cfg, char *errstr,
                     size_t errstr_size)
{
        json_t *v = json_object_get(in, "lang"), *m;
        const char *lang;

        if (v && !json_is_null(v)) {
                if (!json_is_string(v) || !nc_config_has_language(cfg, json_string_value(v)))
                        return nc_err(errstr, errstr_size,
                                      "lang: must be one of the configured "
                                      "languages");
                lang = json_string_value(v);
        } else {
                m = json_object_get(in, "title");
                lang = cfg->default_language;
                if (json_is_object(m) && json_object_size(m) > 0 &&
                    !json_object_get(m, cfg->default_language))
                        lang = json_object_iter_key(json_object_iter(m));
        }
        json_object_set_new(out, "lang", json_string(lang));
        return 0;
}

/* After the regions: */
static int norm_texts(const json_t *in, json_t *out, const nc_config_t *cfg, const char *lang,
                      char *errstr, size_t errstr_size);
static int norm_links(const json_t *in, json_t *out, char *errstr, size_t errstr_size);
static int norm_supersedes(const json_t *in, json_t *out, char *errstr, size_t errstr_size);

json_t *nc_notice_normalise(const json_t *in, const nc_config_t *cfg, enum nc_notice_mode mode,
                            int64_t now_ms, char *errstr, size_t errstr_size)
{
        json_t *out = NULL, *v, *m;
        const char *lang;

        if (!json_is_object(in)) {
                nc_err(errstr, errstr_size, "notice: must be a JSON object");
                return NULL;
        }
        if (check_known_fields(in, notice_fields, errstr, errstr_size) != 0 ||
            check_no_nul(in, "", errstr, errstr_size) != 0)
                return NULL;
        out = json_object();

        if (norm_id(in, out, mode, now_ms, errstr, errstr_size) != 0)
                goto fail;
        v = json_object_get(in, "category");
        if (check_category(v, cfg, errstr, errstr_size) != 0)
                goto fail;
        json_object_set(out, "category", v);
        if (norm_published_at(in, out, mode, now_ms, errstr, errstr_size) != 0 ||
            norm_priority(in, out, errstr, errstr_size) != 0 ||
            norm_lang(in, out, cfg, errstr, errstr_size) != 0)
                goto fail;
        lang = json_string_value(json_object_get(out, "lang"));

        /* regions */
        v = json_object_get(in, "regions");
        if (v && !json_is_null(v)) {
                if (!(m = regions(v, errstr, errstr_size)))
                        goto fail;
                json_object_set_new(out, "regions", m);
        } else {
                json_object_set_new(out, "regions", json_array());
        }

        if (norm_texts(in, out, cfg, lang, errstr, errstr_size) != 0 ||
            norm_links(in, out, errstr, errstr_size) != 0 ||
            norm_supersedes(in, out, errstr, errstr_size) != 0)
                goto fail;
        return out;
fail:
        json_decref(out);
        return NULL;
}

/* title (required, with a LANG text), summary, body */
static int norm_texts(const json_t *in, json_t *out, const nc_config_t *cfg, const char *lang,
                      char *errstr, size_t errstr_size)
{
        json_t *v, *m;

        if (!(v = json_object_get(in, "title")) || json_is_null(v))
                return nc_err(errstr, errstr_size, "title: is required");
        if (!(m = lang_map(v, "title", 0, cfg->title_max, cfg, lang, errstr, errstr_size)))
                return -1;
        json_object_set_new(out, "title", m);
        if (!json_object_get(m, lang))
                return nc_err(errstr, errstr_size, "lang: the title has no '%s' text", lang);
        if ((v = json_object_get(in, "summary")) && !json_is_null(v)) {
                if (!(m = lang_map(v, "summary", 0, cfg->summary_max, cfg, lang, errstr,
                                   errstr_size)))
                        return -1;
                json_object_set_new(out, "summary", m);
        }
        if ((v = json_object_get(in, "body")) && !json_is_null(v)) {
                if (!(m = lang_map(v, "body", 1, cfg->body_max, cfg, lang, errstr, errstr_size)))
                        return -1;
                json_object_set_new(out, "body", m);
        }
        return 0;
}

/* url, source */
static int norm_links(const json_t *in, json_t *out, char *errstr, size_t errstr_size)
{
        json_t *v;

        if ((v = json_object_get(in, "url")) && !json_is_null(v)) {
                if (!json_is_string(v))
                        return nc_err(errstr, errstr_size, "url: must be a string");
                if (check_url(json_string_value(v), errstr, errstr_size) != 0)
                        return -1;
                json_object_set(out, "url", v);
        }
        if ((v = json_object_get(in, "source")) && !json_is_null(v)) {
                if (!json_is_string(v))
                        return nc_err(errstr, errstr_size, "source: must be a string");
                if (nc_text_check_line("source", json_string_value(v), SOURCE_MAX, errstr,
                                       errstr_size) != 0)
                        return -1;
                json_object_set(out, "source", v);
        }
        return 0;
}

/* supersedes: another notice's id, or null */
static int norm_supersedes(const json_t *in, json_t *out, char *errstr, size_t errstr_size)
{
        char id[NC_UUID_STRLEN];
        json_t *v;

        if ((v = json_object_get(in, "supersedes")) && !json_is_null(v)) {
                if (check_uuid("supersedes", v, id, errstr, errstr_size) != 0)
                        return -1;
                if (json_object_get(out, "id") &&
                    !strcmp(id, json_string_value(json_object_get(out, "id"))))
                        return nc_err(errstr, errstr_size,
                                      "supersedes: a notice cannot supersede "
                                      "itself");
                json_object_set_new(out, "supersedes", json_string(id));
        } else {
                json_object_set_new(out, "supersedes", json_null());
        }
        return 0;
}

char *nc_notice_serialise(const json_t *n, const nc_config_t *cfg, size_t *lenp, char *errstr,
                          size_t errstr_size)
{
        char *dump = json_dumps(n, JSON_COMPACT);
        size_t size = dump ? strlen(dump) : 0;

        if (!dump) {
                nc_err(errstr, errstr_size, "notice: cannot be serialised");
                return NULL;
        }
        if (size > cfg->notice_max) {
                free(dump);
                nc_err(errstr, errstr_size, "notice: is %zu bytes as JSON, the limit is %zu", size,
                       cfg->notice_max);
                return NULL;
        }
        if (lenp)
                *lenp = size;
        return dump;
}

json_t *nc_notice_withdrawal(const char *id, const char *category, const char *reason,
                             const nc_config_t *cfg, int64_t now_ms, char *errstr,
                             size_t errstr_size)
{
        json_t *ev = json_object();
        char ts[40], lower[NC_UUID_STRLEN];

        if (!nc_uuid_valid(id)) {
                json_decref(ev);
                nc_err(errstr, errstr_size,
                       "id: must be a UUID like 0190f3c2-7a4e-7b1c-9d2e-3f4a5b6c7d8e");
                return NULL;
        }
        snprintf(lower, sizeof(lower), "%s", id);
        nc_str_lower(lower);
        json_object_set_new(ev, "type", json_string(NC_EVENT_WITHDRAWN));
        json_object_set_new(ev, "id", json_string(lower));
        json_object_set_new(ev, "category", json_string(category));
        json_object_set_new(ev, "withdrawn_at",
                            json_string(nc_time_format_rfc3339(now_ms, ts, sizeof(ts))));
        json_object_set_new(ev, "reason", reason ? json_string(reason) : json_null());
        if (reason && !json_object_get(ev, "reason")) {
                json_decref(ev);
                nc_err(errstr, errstr_size, "reason: is not valid UTF-8");
                return NULL;
        }
        if (nc_notice_withdrawal_check(ev, cfg, errstr, errstr_size) != 0) {
                json_decref(ev);
                return NULL;
        }
        return ev;
}

int nc_notice_withdrawal_check(const json_t *ev, const nc_config_t *cfg, char *errstr,
                               size_t errstr_size)
{
        static const char *const fields[] = {"type",         "id",     "category",
                                             "withdrawn_at", "reason", NULL};
        char id[NC_UUID_STRLEN];
        json_t *v;
        int64_t ms;

        if (!json_is_object(ev))
                return nc_err(errstr, errstr_size, "withdrawal: must be a JSON object");
        if (check_known_fields(ev, fields, errstr, errstr_size) != 0)
                return -1;
        v = json_object_get(ev, "type");
        if (!json_is_string(v) || strcmp(json_string_value(v), NC_EVENT_WITHDRAWN))
                return nc_err(errstr, errstr_size, "type: must be \"%s\"", NC_EVENT_WITHDRAWN);
        if (check_uuid("id", json_object_get(ev, "id"), id, errstr, errstr_size) != 0)
                return -1;
        if (check_category(json_object_get(ev, "category"), cfg, errstr, errstr_size) != 0)
                return -1;
        v = json_object_get(ev, "withdrawn_at");
        if (!json_is_string(v) || nc_time_parse_rfc3339(json_string_value(v), &ms, NULL, 0) != 0)
                return nc_err(errstr, errstr_size, "withdrawn_at: must be an RFC 3339 time");
        v = json_object_get(ev, "reason");
        if (v && !json_is_null(v)) {
                if (!json_is_string(v))
                        return nc_err(errstr, errstr_size, "reason: must be a string");
                if (nc_text_check_line("reason", json_string_value(v), REASON_MAX, errstr,
                                       errstr_size) != 0)
                        return -1;
        }
        return 0;
}

const char *nc_notice_id(const json_t *n)
{
        return json_string_value(json_object_get(n, "id"));
}

const char *nc_notice_category(const json_t *n)
{
        return json_string_value(json_object_get(n, "category"));
}

const char *nc_notice_text(const json_t *n, const char *field, const char *lang)
{
        json_t *m = json_object_get(n, field);
        const char *s;

        if (!json_is_object(m))
                return NULL;
        if (lang && (s = json_string_value(json_object_get(m, lang))))
                return s;
        if ((s = json_string_value(
                 json_object_get(m, json_string_value(json_object_get(n, "lang"))))))
                return s;
        return json_string_value(json_object_get(m, json_object_iter_key(json_object_iter(m))));
}
