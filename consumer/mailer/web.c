/* noticecast-mailer: self-service sign-up pages on the public listener.
 *
 *   GET  /subscribe        the form (email, name, lang, categories, regions, frequency, tz,
 *                          send_at; honeypot "website"), in the language of ?lang=, else of
 *                          Accept-Language, else [noticecast] default_language
 *   POST /subscribe        validated with the CLI's nc_subscriber_normalise(): errors go back
 *                          next to their field; else the "check your inbox" page
 *   GET  /assets/site.css  the stylesheet (the public CSP forbids inline styles)
 *
 * Texts are templates, <templates>/<lang>/pages/<page>.mustache, loaded once at start so that
 * a missing or broken file stops the mailer with its name; the stylesheet is
 * <templates>/site.css.  Handlers run on the HTTP thread: they read only what is loaded here
 * and the configuration, both read-only after start.  Rendering a compiled template is not
 * thread-safe (nc_mustache.h), but there is one HTTP thread. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "nc_log.h"
#include "nc_mustache.h"
#include "nc_subscriber.h"
#include "nc_time.h"
#include "nc_util.h"
#include "web.h"

#define WEB_LANGS_MAX 16

/* The pages, in the order of page_names[]. */
enum { PAGE_SUBSCRIBE, PAGE_INBOX, PAGES_N };
static const char *const page_names[PAGES_N] = {"subscribe", "inbox"};

/* What the form offers as time zones: the capitals and large cities of the languages'
 * countries plus one per UTC offset region, not the whole tz database (a select of 600
 * entries is unusable). */
static const char *const zones[] = {
    "UTC",
    "Africa/Johannesburg",
    "Africa/Lagos",
    "Africa/Luanda",
    "Africa/Maputo",
    "America/Argentina/Buenos_Aires",
    "America/Bogota",
    "America/Chicago",
    "America/Denver",
    "America/Guatemala",
    "America/La_Paz",
    "America/Lima",
    "America/Los_Angeles",
    "America/Mexico_City",
    "America/New_York",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/Toronto",
    "Asia/Kolkata",
    "Asia/Seoul",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Atlantic/Azores",
    "Australia/Sydney",
    "Europe/Berlin",
    "Europe/Lisbon",
    "Europe/London",
    "Europe/Madrid",
    "Europe/Paris",
    "Pacific/Auckland",
};

/* A language's own name, for the language picker; an unknown code shows as itself. */
static const struct {
        const char *code, *label, *tz;
} lang_info[] = {
    {"en", "English", NULL}, /* NULL: [noticecast] default_timezone */
    {"es", "Español", "America/Lima"},
    {"pt", "Português", "America/Sao_Paulo"},
    {"ko", "한국어", "Asia/Seoul"},
};

static struct {
        const ml_t *m;
        size_t n;
        char *lang[WEB_LANGS_MAX];
        nc_mustache_t *page[WEB_LANGS_MAX][PAGES_N];
        char *css;
        size_t css_len;
} W;

static const char *lang_label(const char *code)
{
        for (size_t i = 0; i < sizeof(lang_info) / sizeof(lang_info[0]); i++)
                if (!strcmp(lang_info[i].code, code))
                        return lang_info[i].label;
        return code;
}

static const char *lang_tz(const ml_t *m, const char *code)
{
        for (size_t i = 0; i < sizeof(lang_info) / sizeof(lang_info[0]); i++)
                if (!strcmp(lang_info[i].code, code) && lang_info[i].tz)
                        return lang_info[i].tz;
        return m->cfg.default_timezone;
}

static int lang_index(const char *code, size_t len)
{
        for (size_t i = 0; i < W.n; i++)
                if (strlen(W.lang[i]) == len && !strncasecmp(W.lang[i], code, len))
                        return (int)i;
        return -1;
}

/* ?lang=, else the first Accept-Language range whose primary tag we have (q-values are
 * ignored: browsers list ranges best first), else the default language. */
static int page_lang(const nc_httpd_req_t *req, const char *form_lang)
{
        const char *q = form_lang ? form_lang : nc_httpd_req_query(req, "lang");
        const char *al = nc_httpd_req_header(req, "Accept-Language");
        int i;

        if (q && (i = lang_index(q, strlen(q))) >= 0)
                return i;
        while (al && *al) {
                size_t n;

                al += strspn(al, " \t,");
                n = strcspn(al, "-;, \t");
                if (n && (i = lang_index(al, n)) >= 0)
                        return i;
                al += strcspn(al, ",");
        }
        i = lang_index(W.m->cfg.default_language, strlen(W.m->cfg.default_language));
        return i < 0 ? 0 : i;
}

static int render(nc_httpd_resp_t *resp, int status, int lang, int page, const json_t *data)
{
        nc_mustache_opts_t opts = {NULL, NULL, 1, 0};
        char err[512];

        resp->content_type = "text/html; charset=utf-8";
        resp->body = nc_mustache_render_compiled(W.page[lang][page], data, &opts, err, sizeof(err));
        if (!resp->body) {
                log_warnx("page %s/pages/%s.mustache: %s", W.lang[lang], page_names[page], err);
                resp->content_type = NULL;
                resp->body = nc_xstrdup("internal error\n");
                return 500;
        }
        resp->body_len = 0;
        return status;
}

/* ---- the form ---------------------------------------------------------------------------- */

/* What the form shows: VALUES holds what was posted (NULL: the defaults), ERRORS the field
 * errors ("err_<field>"). */
static json_t *form_data(int lang, const json_t *values, const json_t *errors)
{
        const nc_config_t *cfg = &W.m->cfg;
        const json_t *cats = json_object_get(values, "categories");
        const json_t *regs = json_object_get(values, "regions");
        const char *chosen = values ? json_string_value(json_object_get(values, "lang")) : NULL;
        const char *tz = values ? json_string_value(json_object_get(values, "tz")) : NULL;
        const char *freq = values ? json_string_value(json_object_get(values, "frequency")) : NULL;
        const char *send_at = values ? json_string_value(json_object_get(values, "send_at")) : NULL;
        json_t *d = json_object(), *a;
        const char *k;
        json_t *v;

        if (!chosen)
                chosen = W.lang[lang];
        if (!tz)
                tz = lang_tz(W.m, W.lang[lang]);
        if (!freq)
                freq = "daily";
        json_object_set_new(d, "lang", json_string(W.lang[lang]));
        json_object_set_new(d, "csrf", json_string(""));
        json_object_set_new(
            d, "email",
            json_string(values ? json_string_value(json_object_get(values, "email")) ?: "" : ""));
        json_object_set_new(
            d, "name",
            json_string(values ? json_string_value(json_object_get(values, "name")) ?: "" : ""));
        a = json_array();
        for (size_t i = 0; i < W.n; i++)
                json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "code", W.lang[i], "label",
                                                   lang_label(W.lang[i]), "selected",
                                                   !strcmp(W.lang[i], chosen)));
        json_object_set_new(d, "languages", a);
        a = json_array();
        for (size_t i = 0; i < cfg->categories.n; i++) {
                int on = 1;

                if (cats) {
                        size_t j;
                        json_t *c;

                        on = 0;
                        json_array_foreach(cats, j, c)
                                if (json_is_string(c) &&
                                    !strcmp(json_string_value(c), cfg->categories.v[i]))
                                        on = 1;
                }
                json_array_append_new(
                    a, json_pack("{s:s, s:b}", "name", cfg->categories.v[i], "checked", on));
        }
        json_object_set_new(d, "categories", a);
        a = json_array();
        for (size_t i = 0; i < cfg->mailer.signup_regions.n; i++) {
                const char *code = cfg->mailer.signup_regions.v[i];
                int on = 1;

                if (regs) {
                        size_t j;
                        json_t *c;

                        on = 0;
                        json_array_foreach(regs, j, c)
                                if (json_is_string(c) && !strcmp(json_string_value(c), code))
                                        on = 1;
                }
                json_array_append_new(a, json_pack("{s:s, s:b}", "code", code, "checked", on));
        }
        json_object_set_new(d, "has_regions", json_boolean(cfg->mailer.signup_regions.n > 0));
        json_object_set_new(d, "regions", a);
        json_object_set_new(d, "freq_immediate", json_boolean(!strcmp(freq, "immediate")));
        json_object_set_new(d, "freq_daily", json_boolean(!strcmp(freq, "daily")));
        json_object_set_new(d, "freq_weekly", json_boolean(!strcmp(freq, "weekly")));
        a = json_array();
        for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
                json_array_append_new(a, json_pack("{s:s, s:b}", "name", zones[i], "selected",
                                                   !strcmp(zones[i], tz)));
        {
                /* The default zone of the configuration may be one the list lacks. */
                int found = 0;
                size_t j;
                json_t *z;

                json_array_foreach(a, j, z)
                        found |= json_is_true(json_object_get(z, "selected"));
                if (!found)
                        json_array_insert_new(a, 0,
                                              json_pack("{s:s, s:b}", "name", tz, "selected", 1));
        }
        json_object_set_new(d, "zones", a);
        json_object_set_new(d, "send_at", json_string(send_at ? send_at : "08:00"));
        json_object_foreach((json_t *)errors, k, v)
                json_object_set(d, k, v);
        return d;
}

/* The posted form as the input of nc_subscriber_normalise() (empty fields left out, so that
 * its defaults apply). */
static json_t *form_input(const nc_httpd_req_t *req)
{
        static const char *const fields[] = {"email", "name", "lang", "frequency", "tz", "send_at"};
        static const char *const lists[] = {"categories", "regions"};
        json_t *in = json_object();
        const char *body = nc_httpd_req_body(req, NULL);

        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                char *v = nc_httpd_req_form(req, fields[i]);

                if (v && v[0])
                        json_object_set_new(in, fields[i], json_string(v));
                free(v);
        }
        /* Checkbox groups: every "name=value" of the body.  Values are identifiers and
         * region codes (no escapes needed); anything else fails validation. */
        for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
                json_t *a = json_array();
                size_t klen = strlen(lists[i]);
                const char *p = body;

                while (p && *p) {
                        size_t n = strcspn(p, "&");

                        if (n > klen && !strncmp(p, lists[i], klen) && p[klen] == '=')
                                json_array_append_new(a, json_stringn(p + klen + 1, n - klen - 1));
                        p += n;
                        p += *p == '&';
                }
                json_object_set_new(in, lists[i], a);
        }
        return in;
}

static int get_subscribe(const nc_httpd_req_t *req, nc_httpd_resp_t *resp)
{
        int lang = page_lang(req, NULL), status;
        json_t *d = form_data(lang, NULL, NULL);

        status = render(resp, 200, lang, PAGE_SUBSCRIBE, d);
        json_decref(d);
        return status;
}

static int post_subscribe(const nc_httpd_req_t *req, nc_httpd_resp_t *resp)
{
        json_t *in = form_input(req), *rec, *d;
        char err[512], *hp = nc_httpd_req_form(req, "website");
        const char *chosen = json_string_value(json_object_get(in, "lang"));
        int lang = page_lang(req, chosen), status;

        if (hp && hp[0]) {
                /* A bot: the same page as everyone, and nothing else. */
                log_info("sign-up with the honeypot field filled in ignored");
                free(hp);
                json_decref(in);
                d = json_pack("{s:s}", "lang", W.lang[lang]);
                status = render(resp, 200, lang, PAGE_INBOX, d);
                json_decref(d);
                return status;
        }
        free(hp);
        rec = nc_subscriber_normalise(in, &W.m->cfg, nc_time_now_ms(), err, sizeof(err));
        if (!rec) {
                /* "field: message" goes next to the field; the template names the field in
                 * the page's language. */
                char key[64], *colon = strchr(err, ':');
                json_t *errors = json_object();

                if (colon && (size_t)(colon - err) < 40) {
                        snprintf(key, sizeof(key), "err_%.*s", (int)(colon - err), err);
                        json_object_set_new(errors, key,
                                            json_string(colon + 1 + (colon[1] == ' ')));
                } else {
                        json_object_set_new(errors, "err_email", json_string(err));
                }
                d = form_data(lang, in, errors);
                status = render(resp, 400, lang, PAGE_SUBSCRIBE, d);
                json_decref(errors);
                json_decref(d);
                json_decref(in);
                return status;
        }
        json_decref(rec);
        json_decref(in);
        d = json_pack("{s:s}", "lang", W.lang[lang]);
        status = render(resp, 200, lang, PAGE_INBOX, d);
        json_decref(d);
        return status;
}

static int handle_subscribe(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *method = nc_httpd_req_method(req);

        (void)opaque;
        if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
                return get_subscribe(req, resp);
        if (!strcmp(method, "POST"))
                return post_subscribe(req, resp);
        resp->body = nc_xstrdup("method not allowed\n");
        return 405;
}

static int handle_css(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *method = nc_httpd_req_method(req);

        (void)opaque;
        if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
                resp->body = nc_xstrdup("method not allowed\n");
                return 405;
        }
        resp->content_type = "text/css; charset=utf-8";
        resp->body = nc_xmalloc(W.css_len + 1);
        memcpy(resp->body, W.css, W.css_len + 1);
        resp->body_len = W.css_len;
        return 200;
}

/* ---- start and stop ---------------------------------------------------------------------- */

static int load(const ml_t *m, char *errstr, size_t errstr_size)
{
        const char *dir = m->cfg.mailer.templates;
        char path[4096], err[512];

        if (m->cfg.languages.n > WEB_LANGS_MAX)
                return nc_err(errstr, errstr_size, "sign-up pages: more than %d languages",
                              WEB_LANGS_MAX);
        for (size_t i = 0; i < m->cfg.languages.n; i++) {
                W.lang[i] = nc_xstrdup(m->cfg.languages.v[i]);
                W.n = i + 1;
                for (int p = 0; p < PAGES_N; p++) {
                        char *text;

                        snprintf(path, sizeof(path), "%s/%s/pages/%s.mustache", dir, W.lang[i],
                                 page_names[p]);
                        if (!(text = nc_file_read(path, NULL, err, sizeof(err))))
                                return nc_err(errstr, errstr_size, "%s", err);
                        W.page[i][p] = nc_mustache_compile(text, err, sizeof(err));
                        free(text);
                        if (!W.page[i][p])
                                return nc_err(errstr, errstr_size, "%s: %s", path, err);
                }
        }
        snprintf(path, sizeof(path), "%s/site.css", dir);
        if (!(W.css = nc_file_read(path, &W.css_len, err, sizeof(err))))
                return nc_err(errstr, errstr_size, "%s", err);
        return 0;
}

int ml_web_start(ml_t *m, nc_httpd_t *public, char *errstr, size_t errstr_size)
{
        if (!public)
                return 0;
        if (!m->cfg.mailer.signup_secret_file.n) {
                log_info("no [mailer] signup_secret_file: the sign-up pages are off");
                return 0;
        }
        W.m = m;
        if (load(m, errstr, errstr_size) != 0) {
                ml_web_stop();
                return -1;
        }
        if (nc_httpd_add_route(public, "/subscribe", handle_subscribe, m) != 0 ||
            nc_httpd_add_route(public, "/assets/site.css", handle_css, m) != 0) {
                ml_web_stop();
                return nc_err(errstr, errstr_size, "cannot add the sign-up routes");
        }
        log_info("sign-up pages on the public listener: /subscribe");
        return 0;
}

void ml_web_stop(void)
{
        for (size_t i = 0; i < W.n; i++) {
                for (int p = 0; p < PAGES_N; p++)
                        nc_mustache_destroy(W.page[i][p]);
                free(W.lang[i]);
        }
        free(W.css);
        memset(&W, 0, sizeof(W));
}
