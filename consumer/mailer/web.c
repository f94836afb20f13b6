/* noticecast-mailer: self-service sign-up pages on the public listener.
 *
 *   GET  /subscribe        the form (email, name, lang, categories, regions, frequency, tz,
 *                          send_at; honeypot "website"), in the language of ?lang=, else of
 *                          Accept-Language, else [noticecast] default_language
 *   POST /subscribe        validated with the CLI's nc_subscriber_normalise(): errors go back
 *                          next to their field; else the "check your inbox" page
 *   GET  /confirm?token=   a button; POST (CSRF) writes the subscription and answers once
 *                          Kafka acknowledged it
 *   GET  /manage?token=    the preference centre of one subscription (the link in every
 *                          email): the same form, filled in; POST (CSRF) action=save writes
 *                          the changed record (same generation), action=unsubscribe a
 *                          tombstone, answered once Kafka acknowledged it
 *   GET  /assets/site.css  the stylesheet (the public CSP forbids inline styles)
 *
 * Texts are templates, <templates>/<lang>/pages/<page>.mustache, loaded once at start so that
 * a missing or broken file stops the mailer with its name; the stylesheet is
 * <templates>/site.css.  Handlers run on the HTTP thread: they read only what is loaded here
 * and the configuration, both read-only after start.  Rendering a compiled template is not
 * thread-safe (nc_mustache.h): the HTTP thread renders, and so does the producer's poller
 * thread for the deferred answers, under render_lock. */
#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ml_mail.h"
#include "ml_outbox.h"
#include "ml_ratelimit.h"
#include "ml_webtoken.h"
#include "unsub_token.h"
#include "nc_sign.h"

#include "nc_log.h"
#include "nc_mustache.h"
#include "nc_subscriber.h"
#include "nc_time.h"
#include "nc_topics.h"
#include "nc_util.h"
#include "web.h"

#define WEB_LANGS_MAX 16

/* The pages and the sign-up email's parts, in the order of page_names[].  The email parts
 * are plain text but the HTML one. */
enum {
        PAGE_SUBSCRIBE,
        PAGE_INBOX,
        PAGE_CONFIRM,
        PAGE_MESSAGE,
        PAGE_EMAIL_SUBJECT,
        PAGE_EMAIL_TEXT,
        PAGE_EMAIL_HTML,
        PAGE_MANAGE,
        PAGE_ERRORS,
        PAGE_LABELS,
        PAGE_UNSUBSCRIBE,
        PAGES_N
};
static const char *const page_names[PAGES_N] = {
    "subscribe",  "inbox",  "confirm", "message", "email.subject", "email.text",
    "email.html", "manage", "errors",  "labels",  "unsubscribe"};

/* How long a form's CSRF field stays good: a citizen may take a while to fill it in. */
#define CSRF_TTL_S  (2 * 3600)
#define CSRF_COOKIE "nc_csrf"
#define RL_CAPACITY 100000

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

/* The templates of every language and the stylesheet: loaded whole, then taken at once. */
struct web_pages {
        nc_mustache_t *page[WEB_LANGS_MAX][PAGES_N];
        char *fields[WEB_LANGS_MAX]; /* pages/fields.mustache: the partial "fields", the form's
                                      * choices shared by /subscribe and /manage */
        char *css;
        size_t css_len;
};

static struct {
        ml_t *m;
        size_t n;
        char *lang[WEB_LANGS_MAX];
        struct web_pages *pages; /* swapped by ml_web_reload, under render_lock */
        ml_wt_keys_t keys;
        char base[1024];         /* public_url, without a trailing '/' */
        int secure_cookie;       /* the base is https: the cookie is Secure */
        ml_ratelimit_t *rl_ip;   /* POST /subscribe per client address */
        ml_ratelimit_t *rl_addr; /* confirmation emails per address */
        int links;               /* keys and base loaded: manage links can be made */
} W;

static pthread_mutex_t render_lock = PTHREAD_MUTEX_INITIALIZER;

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

static int page_lang_default(void)
{
        int i = lang_index(W.m->cfg.default_language, strlen(W.m->cfg.default_language));

        return i < 0 ? 0 : i;
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
        return page_lang_default();
}

static const char *partial(void *opaque, const char *name)
{
        return !strcmp(name, "fields") ? opaque : NULL;
}

/* PAGE of LANG with DATA: HTML-escaped unless a plain-text email part.  NULL (logged) on a
 * rendering error. */
static char *render_str(int lang, int page, const json_t *data)
{
        nc_mustache_opts_t opts = {partial, NULL,
                                   page != PAGE_EMAIL_SUBJECT && page != PAGE_EMAIL_TEXT &&
                                       page != PAGE_ERRORS && page != PAGE_LABELS,
                                   0};
        char err[512], *out;

        pthread_mutex_lock(&render_lock);
        opts.opaque = W.pages->fields[lang];
        out = nc_mustache_render_compiled(W.pages->page[lang][page], data, &opts, err, sizeof(err));
        pthread_mutex_unlock(&render_lock);
        if (!out)
                log_warnx("page %s/pages/%s.mustache: %s", W.lang[lang], page_names[page], err);
        return out;
}

static int render(nc_httpd_resp_t *resp, int status, int lang, int page, const json_t *data)
{
        resp->content_type = "text/html; charset=utf-8";
        resp->body = render_str(lang, page, data);
        if (!resp->body) {
                resp->content_type = NULL;
                resp->body = nc_xstrdup("internal error\n");
                return 500;
        }
        resp->body_len = 0;
        return status;
}

/* ---- the form ---------------------------------------------------------------------------- */

/* The text of SECTION of the plain-text template PAGE (one section per key: labels, errors)
 * in LANG, without its trailing newline; FALLBACK when the template has no such section. */
static json_t *section_text(int lang, int page, const char *section, const char *fallback)
{
        json_t *d = json_pack("{s:b}", section, 1), *out;
        char *s = render_str(lang, page, d);
        size_t n = s ? strlen(s) : 0;

        json_decref(d);
        while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
                s[--n] = '\0';
        out = json_string(n ? s : fallback);
        free(s);
        return out;
}

/* What the page calls category or region KEY in LANG (pages/labels.mustache), else KEY
 * itself: a ministry adds its own categories and regions there. */
static json_t *label(int lang, const char *key)
{
        return section_text(lang, PAGE_LABELS, key, key);
}

/* A checkbox of a group is on when nothing was posted yet (all by default), when LIST is
 * empty (a record's "none" means all) or when LIST has VALUE. */
static int checked(const json_t *list, const char *value)
{
        size_t j;
        json_t *c;

        if (!json_array_size(list))
                return 1;
        json_array_foreach(list, j, c)
                if (json_is_string(c) && !strcmp(json_string_value(c), value))
                        return 1;
        return 0;
}

/* What the form shows: VALUES holds what was posted (NULL: the defaults), ERRORS the field
 * errors ("err_<field>"). */
static json_t *form_data(int lang, const json_t *values, const json_t *errors, const char *csrf)
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
        json_object_set_new(d, "csrf", json_string(csrf));
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
        for (size_t i = 0; i < cfg->categories.n; i++)
                json_array_append_new(a, json_pack("{s:s, s:o, s:b}", "name", cfg->categories.v[i],
                                                   "label", label(lang, cfg->categories.v[i]),
                                                   "checked", checked(cats, cfg->categories.v[i])));
        json_object_set_new(d, "categories", a);
        a = json_array();
        for (size_t i = 0; i < cfg->mailer.signup_regions.n; i++) {
                const char *code = cfg->mailer.signup_regions.v[i];
                int on = checked(regs, code);

                json_array_append_new(a, json_pack("{s:s, s:o, s:b}", "code", code, "label",
                                                   label(lang, code), "checked", on));
        }
        /* A record's own regions (set by an admin) stay on offer, so that saving the
         * preference centre keeps them. */
        {
                size_t j;
                json_t *r;

                json_array_foreach(regs, j, r) {
                        int offered = 0;

                        for (size_t i = 0; i < cfg->mailer.signup_regions.n; i++)
                                offered |= !strcmp(cfg->mailer.signup_regions.v[i],
                                                   json_string_value(r) ?: "");
                        if (!offered && json_is_string(r))
                                json_array_append_new(
                                    a, json_pack("{s:O, s:o, s:b}", "code", r, "label",
                                                 label(lang, json_string_value(r)), "checked", 1));
                }
        }
        json_object_set_new(d, "has_regions", json_boolean(json_array_size(a) > 0));
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

/* ---- CSRF: a nonce in a cookie, its sealed copy in the form ------------------------------ */

/* The nonce of the request's cookie if it looks like one of ours, else a new one; *FRESH says
 * which (a fresh one is set in the answer). */
static int csrf_nonce(const nc_httpd_req_t *req, char *nonce, size_t size, int *fresh)
{
        const char *c = nc_httpd_req_cookie(req, CSRF_COOKIE);

        *fresh = 0;
        if (c && strlen(c) == 24 &&
            strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789-_") == 24) {
                snprintf(nonce, size, "%s", c);
                return 0;
        }
        *fresh = 1;
        return ml_wt_nonce(nonce, size);
}

/* The hidden field for a form of this answer (and the cookie it needs, set on RESP). */
static int csrf_field(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, char *field, size_t size)
{
        char nonce[32], cookie[128];
        int fresh;

        if (csrf_nonce(req, nonce, sizeof(nonce), &fresh) != 0 ||
            ml_wt_csrf(&W.keys, nonce, nc_time_now_ms() / 1000 + CSRF_TTL_S, field, size) != 0)
                return -1;
        if (fresh) {
                snprintf(cookie, sizeof(cookie), "%s=%s; Path=/; HttpOnly; SameSite=Strict%s",
                         CSRF_COOKIE, nonce, W.secure_cookie ? "; Secure" : "");
                resp->set_cookie = nc_xstrdup(cookie);
        }
        return 0;
}

/* 1 if the POST carries a good CSRF field for its cookie. */
static int csrf_ok(const nc_httpd_req_t *req)
{
        char *field = nc_httpd_req_form(req, "csrf");
        ml_wt_status_t st = ml_wt_csrf_check(&W.keys, nc_httpd_req_cookie(req, CSRF_COOKIE), field,
                                             nc_time_now_ms() / 1000);

        free(field);
        if (st != ML_WT_OK)
                log_info("form refused: CSRF field %s", ml_wt_status_name(st));
        return st == ML_WT_OK;
}

/* The message page: KIND is the section of message.mustache to show; MANAGE_URL (may be
 * NULL) a link to the preference centre. */
static int message_link(nc_httpd_resp_t *resp, int status, int lang, const char *kind,
                        const char *manage_url)
{
        json_t *d = json_pack("{s:s, s:b, s:b}", "lang", W.lang[lang], kind, 1, "signup", W.links);
        int rc;

        if (manage_url && *manage_url)
                json_object_set_new(d, "manage_url", json_string(manage_url));
        rc = render(resp, status, lang, PAGE_MESSAGE, d);
        json_decref(d);
        return rc;
}

static int message(nc_httpd_resp_t *resp, int status, int lang, const char *kind)
{
        return message_link(resp, status, lang, kind, NULL);
}

static int internal_error(nc_httpd_resp_t *resp, int lang)
{
        return message(resp, 500, lang, "error");
}

/* What nc_subscriber_check() found wrong, as the form's errors: "err_<field>" goes next to
 * its field, with the message of pages/errors.mustache in the page's language (the template
 * names the field).  ERR is the CLI's English text, logged only. */
static json_t *field_error(int lang, nc_subscriber_err_t why, const char *err)
{
        const char *field;
        json_t *errors = json_object();
        char key[64];

        switch (why) {
        case NC_SUB_EMAIL_MISSING:
        case NC_SUB_EMAIL_INVALID:
        case NC_SUB_MALFORMED: /* not from our form: shown at the top field */
                field = "email";
                break;
        case NC_SUB_NAME_INVALID:
                field = "name";
                break;
        case NC_SUB_LANG_UNKNOWN:
                field = "lang";
                break;
        case NC_SUB_FREQUENCY_INVALID:
                field = "frequency";
                break;
        case NC_SUB_TZ_UNKNOWN:
                field = "tz";
                break;
        case NC_SUB_SEND_AT_INVALID:
                field = "send_at";
                break;
        case NC_SUB_CATEGORY_UNKNOWN:
                field = "categories";
                break;
        case NC_SUB_REGION_INVALID:
                field = "regions";
                break;
        case NC_SUB_OK:
        default:
                fatalx("field_error: %s", nc_subscriber_err_name(why));
        }
        log_debug("form refused: %s", err);
        snprintf(key, sizeof(key), "err_%s", field);
        json_object_set_new(errors, key,
                            section_text(lang, PAGE_ERRORS, nc_subscriber_err_name(why), err));
        return errors;
}

/* ---- links ------------------------------------------------------------------------------- */

/* The subscription a confirmation link makes always has the same generation, derived from
 * the link: confirming twice writes nothing new, and the view can tell a link whose
 * subscription was since removed. */
static uint64_t confirm_generation(const char *token)
{
        unsigned char h[SHA256_DIGEST_LENGTH];
        uint64_t g = 0;

        SHA256((const unsigned char *)token, strlen(token), h);
        for (int i = 0; i < 8; i++)
                g = g << 8 | h[i];
        return g ? g : 1;
}

/* A manage token's payload: the generation (16 hex digits), then the subscriber's id.  The
 * generation binds the link to one subscription: once the address unsubscribed and signed up
 * again, the links of before open nothing. */
#define MANAGE_GEN_LEN 16

int ml_web_manage_url(const char *id, uint64_t gen, char *out, size_t size)
{
        char payload[ML_WT_PAYLOAD_MAX + 1], tok[ML_WT_TOKEN_SIZE];
        int n;

        if (size)
                out[0] = '\0';
        if (!W.links)
                return -1;
        n = snprintf(payload, sizeof(payload), "%016" PRIx64 "%s", gen, id);
        if (n < 0 || (size_t)n >= sizeof(payload) ||
            ml_wt_seal(&W.keys, ML_WT_MANAGE,
                       nc_time_now_ms() / 1000 + W.m->cfg.mailer.manage_expiry_ms / 1000, payload,
                       (size_t)n, tok, sizeof(tok)) != 0)
                return -1;
        n = snprintf(out, size, "%s/manage?token=%s", W.base, tok);
        if (n < 0 || (size_t)n >= size) {
                if (size)
                        out[0] = '\0';
                return -1;
        }
        return 0;
}

/* ---- the sign-up email ------------------------------------------------------------------- */

/* Builds and queues the email of a sign-up to REC's address: a confirmation link, or (KNOWN:
 * the address is subscribed already, generation GEN) a note saying so with the link of its
 * preference centre.  Both carry a manage link: the confirmation's opens the preference
 * centre of the subscription it will make, once confirmed. */
static void signup_email(int lang, const json_t *rec, int known, uint64_t gen)
{
        const char *email = json_string_value(json_object_get(rec, "email"));
        const char *name = json_string_value(json_object_get(rec, "name"));
        const char *id = json_string_value(json_object_get(rec, "id"));
        char tok[ML_WT_TOKEN_SIZE], url[ML_WT_TOKEN_SIZE + 1100], unsub[ML_TOKEN_SIZE + 1100];
        char manage[ML_WT_TOKEN_SIZE + 1100];
        char msgid[ML_MAIL_MSGID_SIZE], what[64], err[512], *payload, *parts[3] = {0};
        int64_t now = nc_time_now_ms();
        json_t *d, *req;
        ml_mail_t mail;
        size_t len;
        char *data;

        d = json_pack("{s:s, s:b, s:b, s:I}", "lang", W.lang[lang], "confirm", !known, "known",
                      known, "expiry_hours",
                      (json_int_t)(W.m->cfg.mailer.confirm_expiry_ms / 3600000));
        if (name && *name)
                json_object_set_new(d, "name", json_string(name));
        /* Every message carries List-Unsubscribe (ml_mail.h); before confirmation its page
         * says "you are not subscribed", which is true. */
        {
                char t[ML_TOKEN_SIZE];

                ml_unsub_token(W.m, id, t, sizeof(t));
                snprintf(unsub, sizeof(unsub), "%s?token=%s", W.m->cfg.mailer.unsubscribe_url, t);
        }
        if (known) {
                json_object_set_new(d, "unsubscribe_url", json_string(unsub));
                if (ml_web_manage_url(id, gen, manage, sizeof(manage)) == 0)
                        json_object_set_new(d, "manage_url", json_string(manage));
        } else {
                /* The token carries the request itself: nothing is stored before it comes
                 * back. */
                req = json_deep_copy(rec);
                json_object_del(req, "id");
                json_object_del(req, "updated_at");
                json_object_del(req, "generation");
                payload = json_dumps(req, JSON_COMPACT);
                json_decref(req);
                if (!payload || ml_wt_seal(&W.keys, ML_WT_CONFIRM,
                                           now / 1000 + W.m->cfg.mailer.confirm_expiry_ms / 1000,
                                           payload, strlen(payload), tok, sizeof(tok)) != 0) {
                        log_warnx("sign-up email not sent: the request does not fit in a token");
                        free(payload);
                        json_decref(d);
                        return;
                }
                free(payload);
                snprintf(url, sizeof(url), "%s/confirm?token=%s", W.base, tok);
                json_object_set_new(d, "confirm_url", json_string(url));
                if (ml_web_manage_url(id, confirm_generation(tok), manage, sizeof(manage)) == 0)
                        json_object_set_new(d, "manage_url", json_string(manage));
        }
        for (int i = 0; i < 3; i++)
                if (!(parts[i] = render_str(lang, PAGE_EMAIL_SUBJECT + i, d)))
                        goto out;
        /* A subject is one line. */
        for (char *c = parts[0]; *c; c++)
                if (*c == '\r' || *c == '\n')
                        *c = ' ';
        snprintf(what, sizeof(what), "signup-%lld", (long long)now);
        ml_mail_message_id(email, what, W.m->cfg.mailer.message_id_domain, msgid, sizeof(msgid));
        memset(&mail, 0, sizeof(mail));
        mail.from_name = W.m->cfg.mailer.from_name;
        mail.from_addr = W.m->cfg.mailer.from_address;
        mail.to_name = name && *name ? name : NULL;
        mail.to_addr = email;
        mail.subject = parts[0];
        mail.text = parts[1];
        mail.html = parts[2];
        mail.message_id = msgid;
        mail.date_ms = now;
        mail.list_id = W.m->cfg.mailer.list_id;
        mail.unsubscribe_https = unsub;
        mail.unsubscribe_mailto = W.m->cfg.mailer.unsubscribe_mailto;
        if ((data = ml_mail_build(&mail, &len, err, sizeof(err))))
                ml_outbox_send(email, data, len); /* now owned by the outbox */
        else
                log_warnx("sign-up email not built: %s", err);
out:
        for (int i = 0; i < 3; i++)
                free(parts[i]);
        json_decref(d);
}

/* ---- /subscribe -------------------------------------------------------------------------- */

static int get_subscribe(const nc_httpd_req_t *req, nc_httpd_resp_t *resp)
{
        int lang = page_lang(req, NULL), status;
        char csrf[ML_WT_TOKEN_SIZE];
        json_t *d;

        if (csrf_field(req, resp, csrf, sizeof(csrf)) != 0)
                return internal_error(resp, lang);
        d = form_data(lang, NULL, NULL, csrf);
        status = render(resp, 200, lang, PAGE_SUBSCRIBE, d);
        json_decref(d);
        return status;
}

static int inbox(nc_httpd_resp_t *resp, int lang)
{
        json_t *d = json_pack("{s:s}", "lang", W.lang[lang]);
        int status = render(resp, 200, lang, PAGE_INBOX, d);

        json_decref(d);
        return status;
}

static int post_subscribe(const nc_httpd_req_t *req, nc_httpd_resp_t *resp)
{
        json_t *in = form_input(req), *rec, *d;
        char err[512], ip[64], csrf[ML_WT_TOKEN_SIZE], *hp = nc_httpd_req_form(req, "website");
        const char *chosen = json_string_value(json_object_get(in, "lang")), *id;
        int lang = page_lang(req, chosen), status, known, suppressed;
        nc_subscriber_err_t why;
        uint64_t gen, removed;

        if (!csrf_ok(req)) {
                free(hp);
                json_decref(in);
                return message(resp, 403, lang, "csrf");
        }
        if (hp && hp[0]) {
                /* A bot: the same page as everyone, and nothing else. */
                log_info("sign-up with the honeypot field filled in ignored");
                free(hp);
                json_decref(in);
                return inbox(resp, lang);
        }
        free(hp);
        rec = nc_subscriber_check(in, &W.m->cfg, nc_time_now_ms(), &why, err, sizeof(err));
        if (!rec) {
                json_t *errors = field_error(lang, why, err);

                if (csrf_field(req, resp, csrf, sizeof(csrf)) != 0)
                        csrf[0] = '\0';
                d = form_data(lang, in, errors, csrf);
                status = render(resp, 400, lang, PAGE_SUBSCRIBE, d);
                json_decref(errors);
                json_decref(d);
                json_decref(in);
                return status;
        }
        json_decref(in);
        lang = page_lang(req, json_string_value(json_object_get(rec, "lang")));
        id = json_string_value(json_object_get(rec, "id"));
        /* Limits: whoever asks, the page is the same; only the email is held back. */
        if (nc_httpd_req_client_ip(req, ip, sizeof(ip)) != 0)
                snprintf(ip, sizeof(ip), "?");
        if (!ml_ratelimit_take(W.rl_ip, ip, nc_time_now_ms())) {
                log_info("sign-up from %s over [mailer] signup_rate_ip: no email", ip);
        } else if (!ml_ratelimit_take(W.rl_addr, id, nc_time_now_ms())) {
                log_info("sign-up over [mailer] signup_rate_address: no email");
        } else {
                known = ml_store_sub_state(W.m, id, &gen, &suppressed, &removed);
                if (known < 0) {
                        json_decref(rec);
                        return message(resp, 503, lang, "loading");
                }
                /* A suppressed address confirms again like a new one. */
                signup_email(lang, rec, known == 1 && !suppressed, gen);
        }
        json_decref(rec);
        return inbox(resp, lang);
}

/* ---- /confirm ---------------------------------------------------------------------------- */

/* A record of a page not written for sure (O is NOT_SAVED or UNCONFIRMED): logged, and the
 * page says so. */
static int not_written(nc_httpd_resp_t *resp, int lang, ml_public_outcome_t o, const char *what,
                       const char *id, const char *why)
{
        int saved_maybe = o == ML_PUBLIC_UNCONFIRMED;

        log_warnx("%s of %s %s: %s; the page said so", what, id,
                  saved_maybe ? "may or may not be saved" : "not saved", why);
        return message(resp, 503, lang, saved_maybe ? "unconfirmed" : "not_saved");
}

struct confirm_wait {
        int lang;
        char id[300];
        char manage_url[ML_WT_TOKEN_SIZE + 1100];
};

static void confirm_done(void *arg, nc_httpd_deferred_t *d, ml_public_outcome_t o, const char *why)
{
        struct confirm_wait *w = arg;
        nc_httpd_resp_t resp = {NULL, NULL, 0, NULL, NULL};
        int status;

        switch (o) {
        case ML_PUBLIC_WRITTEN:
                log_info("subscribed %s (confirmed sign-up)", w->id);
                status = message_link(&resp, 200, w->lang, "confirmed", w->manage_url);
                break;
        case ML_PUBLIC_NOT_SAVED:
        case ML_PUBLIC_UNCONFIRMED:
                status = not_written(&resp, w->lang, o, "sign-up", w->id, why);
                break;
        default:
                fatalx("confirm_done: outcome %d", (int)o);
        }
        nc_httpd_deferred_reply(d, status, &resp);
        free(w);
}

static int handle_confirm(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *method = nc_httpd_req_method(req), *token = nc_httpd_req_query(req, "token");
        char payload[ML_WT_PAYLOAD_MAX + 1], err[512], why[256], hex[32], csrf[ML_WT_TOKEN_SIZE];
        int lang = page_lang(req, NULL), known, suppressed, status;
        uint64_t gen, removed, want;
        json_t *in, *rec, *d;
        ml_wt_status_t st;
        struct confirm_wait *w;
        char *value;
        size_t len;

        (void)opaque;
        if (strcmp(method, "GET") && strcmp(method, "HEAD") && strcmp(method, "POST"))
                return message(resp, 405, lang, "invalid");
        st = ml_wt_open(&W.keys, ML_WT_CONFIRM, nc_time_now_ms() / 1000, token, payload,
                        sizeof(payload), &len, NULL);
        if (st == ML_WT_EXPIRED)
                return message(resp, 410, lang, "expired");
        if (st != ML_WT_OK) {
                log_info("confirmation link refused: %s", ml_wt_status_name(st));
                return message(resp, 403, lang, "invalid");
        }
        in = json_loadb(payload, len, 0, NULL);
        rec =
            in ? nc_subscriber_normalise(in, &W.m->cfg, nc_time_now_ms(), err, sizeof(err)) : NULL;
        json_decref(in);
        if (!rec) {
                /* Ours, but no longer valid here (a category removed since, say). */
                log_warnx("confirmation link of a request no longer valid: %s", in ? err : "");
                return message(resp, 400, lang, "invalid");
        }
        lang = page_lang(req, json_string_value(json_object_get(rec, "lang")));
        known = ml_store_sub_state(W.m, json_string_value(json_object_get(rec, "id")), &gen,
                                   &suppressed, &removed);
        want = confirm_generation(token);
        if (known < 0) {
                json_decref(rec);
                return message(resp, 503, lang, "loading");
        }
        if (known == 1 && gen == want) {
                json_decref(rec);
                return message(resp, 200, lang, "already");
        }
        if (removed == want) {
                /* This link's subscription was made and then ended: it cannot make it
                 * again. */
                json_decref(rec);
                log_info("confirmation link of a subscription since removed refused");
                return message(resp, 410, lang, "used");
        }
        if (strcmp(method, "POST")) {
                if (csrf_field(req, resp, csrf, sizeof(csrf)) != 0) {
                        json_decref(rec);
                        return internal_error(resp, lang);
                }
                d = json_pack("{s:s, s:s, s:s, s:O}", "lang", W.lang[lang], "token", token, "csrf",
                              csrf, "email", json_object_get(rec, "email"));
                status = render(resp, 200, lang, PAGE_CONFIRM, d);
                json_decref(d);
                json_decref(rec);
                return status;
        }
        if (!csrf_ok(req)) {
                json_decref(rec);
                return message(resp, 403, lang, "csrf");
        }
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)want);
        json_object_set_new(rec, "generation", json_string(hex));
        value = json_dumps(rec, JSON_COMPACT);
        w = nc_xcalloc(1, sizeof(*w));
        w->lang = lang;
        snprintf(w->id, sizeof(w->id), "%s", json_string_value(json_object_get(rec, "id")));
        ml_web_manage_url(w->id, want, w->manage_url, sizeof(w->manage_url));
        json_decref(rec);
        {
                nc_httpd_deferred_t *dr = nc_httpd_req_defer(req);

                if (ml_public_write(W.m, w->id, value, "subscriber.updated", dr, confirm_done, w,
                                    why, sizeof(why)) != 0)
                        confirm_done(w, dr, ML_PUBLIC_NOT_SAVED, why); /* now owned by it */
        }
        free(value);
        return NC_HTTPD_DEFERRED;
}

/* ---- /manage ----------------------------------------------------------------------------- */

/* The subscription a manage link names, as its current record; NULL when the answer is made
 * already (in RESP, its status in *STATUS).  *LANG becomes the subscriber's language. */
static json_t *manage_open(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, int *lang, int *status)
{
        char payload[ML_WT_PAYLOAD_MAX + 1], hex[MANAGE_GEN_LEN + 1], *end;
        ml_wt_status_t st;
        uint64_t gen;
        json_t *rec;
        size_t len;
        int rc;

        st = ml_wt_open(&W.keys, ML_WT_MANAGE, nc_time_now_ms() / 1000,
                        nc_httpd_req_query(req, "token"), payload, sizeof(payload), &len, NULL);
        if (st == ML_WT_EXPIRED) {
                *status = message(resp, 410, *lang, "link_expired");
                return NULL;
        }
        if (st != ML_WT_OK || len <= MANAGE_GEN_LEN) {
                log_info("manage link refused: %s", ml_wt_status_name(st));
                *status = message(resp, 403, *lang, "invalid");
                return NULL;
        }
        memcpy(hex, payload, MANAGE_GEN_LEN);
        hex[MANAGE_GEN_LEN] = '\0';
        gen = strtoull(hex, &end, 16);
        rec = ml_store_sub_copy(W.m, payload + MANAGE_GEN_LEN, &rc);
        if (rc < 0) {
                *status = message(resp, 503, *lang, "loading");
                return NULL;
        }
        if (!rec || *end || nc_subscriber_generation(rec) != gen) {
                /* Unsubscribed since, or subscribed again (links of before open nothing). */
                json_decref(rec);
                *status = message(resp, 410, *lang, "not_subscribed");
                return NULL;
        }
        *lang = page_lang(req, json_string_value(json_object_get(rec, "lang")));
        return rec;
}

/* The preference centre: the form filled in with VALUES (a record, or what was posted), the
 * field ERRORS (may be NULL), CSRF the form's field; SAVED shows "your choices are saved". */
static int manage_page(nc_httpd_resp_t *resp, int status, int lang, const char *token,
                       const json_t *values, const json_t *errors, const char *csrf, int saved,
                       int suppressed)
{
        json_t *d = form_data(lang, values, errors, csrf);
        int rc;

        json_object_set_new(d, "token", json_string(token));
        json_object_set_new(d, "saved", json_boolean(saved));
        json_object_set_new(d, "suppressed", json_boolean(suppressed));
        rc = render(resp, status, lang, PAGE_MANAGE, d);
        json_decref(d);
        return rc;
}

struct manage_wait {
        int lang;
        char id[300];
        char token[ML_WT_TOKEN_SIZE];
        char nonce[32]; /* the visitor's CSRF cookie, for the form of the answer */
        json_t *rec;    /* the record written; NULL: a tombstone (unsubscribe) */
};

static void manage_done(void *arg, nc_httpd_deferred_t *d, ml_public_outcome_t o, const char *why)
{
        struct manage_wait *w = arg;
        nc_httpd_resp_t resp = {NULL, NULL, 0, NULL, NULL};
        char csrf[ML_WT_TOKEN_SIZE];
        int status;

        switch (o) {
        case ML_PUBLIC_WRITTEN:
                log_info("%s %s (preference centre)", w->rec ? "preferences of" : "unsubscribed",
                         w->id);
                if (!w->rec) {
                        status = message(&resp, 200, w->lang, "unsubscribed");
                } else if (ml_wt_csrf(&W.keys, w->nonce, nc_time_now_ms() / 1000 + CSRF_TTL_S, csrf,
                                      sizeof(csrf)) != 0) {
                        status = internal_error(&resp, w->lang);
                } else {
                        status = manage_page(&resp, 200, w->lang, w->token, w->rec, NULL, csrf, 1,
                                             json_is_true(json_object_get(w->rec, "suppressed")));
                }
                break;
        case ML_PUBLIC_NOT_SAVED:
        case ML_PUBLIC_UNCONFIRMED:
                status = not_written(&resp, w->lang, o, "change", w->id, why);
                break;
        default:
                fatalx("manage_done: outcome %d", (int)o);
        }
        nc_httpd_deferred_reply(d, status, &resp);
        json_decref(w->rec);
        free(w);
}

/* The record a POST of the preference centre makes of REC (NULL: errors, in *ERRORS, with
 * the posted values in *POSTED).  The address, the generation and the bounce counters are
 * the subscription's, whatever was posted: suppression ends only by signing up again. */
static json_t *manage_record(const nc_httpd_req_t *req, int lang, const json_t *rec,
                             json_t **posted, json_t **errors)
{
        static const char *const kept[] = {"generation", "bounces", "suppressed"};
        json_t *in = form_input(req), *out;
        nc_subscriber_err_t why;
        char err[512];

        json_object_set(in, "email", json_object_get(rec, "email"));
        out = nc_subscriber_check(in, &W.m->cfg, nc_time_now_ms(), &why, err, sizeof(err));
        if (!out) {
                *errors = field_error(lang, why, err);
                *posted = in;
                return NULL;
        }
        json_decref(in);
        for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
                json_t *v = json_object_get(rec, kept[i]);

                if (v)
                        json_object_set(out, kept[i], v);
                else
                        json_object_del(out, kept[i]);
        }
        return out;
}

static int handle_manage(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, void *opaque)
{
        const char *method = nc_httpd_req_method(req);
        char csrf[ML_WT_TOKEN_SIZE], why[256], *action, *value;
        int lang = page_lang(req, NULL), status, suppressed;
        json_t *rec, *next, *posted = NULL, *errors = NULL;
        struct manage_wait *w;
        nc_httpd_deferred_t *dr;

        (void)opaque;
        if (strcmp(method, "GET") && strcmp(method, "HEAD") && strcmp(method, "POST"))
                return message(resp, 405, lang, "invalid");
        if (!(rec = manage_open(req, resp, &lang, &status)))
                return status;
        suppressed = json_is_true(json_object_get(rec, "suppressed"));
        if (strcmp(method, "POST")) {
                if (csrf_field(req, resp, csrf, sizeof(csrf)) != 0)
                        status = internal_error(resp, lang);
                else
                        status = manage_page(resp, 200, lang, nc_httpd_req_query(req, "token"), rec,
                                             NULL, csrf, 0, suppressed);
                json_decref(rec);
                return status;
        }
        if (!csrf_ok(req)) {
                json_decref(rec);
                return message(resp, 403, lang, "csrf");
        }
        action = nc_httpd_req_form(req, "action");
        next = NULL;
        if (!action || (strcmp(action, "save") && strcmp(action, "unsubscribe"))) {
                free(action);
                json_decref(rec);
                return message(resp, 400, lang, "invalid");
        }
        if (!strcmp(action, "save") && !(next = manage_record(req, lang, rec, &posted, &errors))) {
                if (csrf_field(req, resp, csrf, sizeof(csrf)) != 0)
                        csrf[0] = '\0';
                json_object_set(posted, "email", json_object_get(rec, "email"));
                status = manage_page(resp, 400, lang, nc_httpd_req_query(req, "token"), posted,
                                     errors, csrf, 0, suppressed);
                json_decref(posted);
                json_decref(errors);
                json_decref(rec);
                free(action);
                return status;
        }
        free(action);
        w = nc_xcalloc(1, sizeof(*w));
        w->rec = next; /* now owned by w */
        w->lang = next ? page_lang(req, json_string_value(json_object_get(next, "lang"))) : lang;
        snprintf(w->id, sizeof(w->id), "%s", json_string_value(json_object_get(rec, "id")));
        snprintf(w->token, sizeof(w->token), "%s", nc_httpd_req_query(req, "token"));
        snprintf(w->nonce, sizeof(w->nonce), "%s", nc_httpd_req_cookie(req, CSRF_COOKIE));
        json_decref(rec);
        value = next ? json_dumps(next, JSON_COMPACT) : NULL;
        dr = nc_httpd_req_defer(req);
        if (ml_public_write(W.m, w->id, value, next ? "subscriber.updated" : "subscriber.removed",
                            dr, manage_done, w, why, sizeof(why)) != 0)
                manage_done(w, dr, ML_PUBLIC_NOT_SAVED, why); /* now owned by it */
        free(value);
        return NC_HTTPD_DEFERRED;
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
        pthread_mutex_lock(&render_lock);
        resp->body = nc_xmalloc(W.pages->css_len + 1);
        memcpy(resp->body, W.pages->css, W.pages->css_len + 1);
        resp->body_len = W.pages->css_len;
        pthread_mutex_unlock(&render_lock);
        return 200;
}

/* ---- start and stop ---------------------------------------------------------------------- */

static void pages_free(struct web_pages *w)
{
        if (!w)
                return;
        for (size_t i = 0; i < WEB_LANGS_MAX; i++) {
                for (int p = 0; p < PAGES_N; p++)
                        nc_mustache_destroy(w->page[i][p]);
                free(w->fields[i]);
        }
        free(w->css);
        free(w);
}

/* Every page of every language in W.lang, and the stylesheet; NULL with errstr naming the file
 * that is missing or broken. */
static struct web_pages *pages_load(const ml_t *m, char *errstr, size_t errstr_size)
{
        struct web_pages *w = nc_xcalloc(1, sizeof(*w));
        const char *dir = m->cfg.mailer.templates;
        char path[4096], err[512];

        for (size_t i = 0; i < W.n; i++) {
                for (int p = 0; p < PAGES_N; p++) {
                        char *text;

                        snprintf(path, sizeof(path), "%s/%s/pages/%s.mustache", dir, W.lang[i],
                                 page_names[p]);
                        if (!(text = nc_file_read(path, NULL, err, sizeof(err)))) {
                                nc_err(errstr, errstr_size, "%s", err);
                                goto fail;
                        }
                        w->page[i][p] = nc_mustache_compile(text, err, sizeof(err));
                        free(text);
                        if (!w->page[i][p]) {
                                nc_err(errstr, errstr_size, "%s: %s", path, err);
                                goto fail;
                        }
                }
                snprintf(path, sizeof(path), "%s/%s/pages/fields.mustache", dir, W.lang[i]);
                if (!(w->fields[i] = nc_file_read(path, NULL, err, sizeof(err)))) {
                        nc_err(errstr, errstr_size, "%s", err);
                        goto fail;
                }
        }
        snprintf(path, sizeof(path), "%s/site.css", dir);
        if (!(w->css = nc_file_read(path, &w->css_len, err, sizeof(err)))) {
                nc_err(errstr, errstr_size, "%s", err);
                goto fail;
        }
        return w;
fail:
        pages_free(w);
        return NULL;
}

static int load(const ml_t *m, char *errstr, size_t errstr_size)
{
        if (m->cfg.languages.n > WEB_LANGS_MAX)
                return nc_err(errstr, errstr_size, "sign-up pages: more than %d languages",
                              WEB_LANGS_MAX);
        for (size_t i = 0; i < m->cfg.languages.n; i++)
                W.lang[i] = nc_xstrdup(m->cfg.languages.v[i]);
        W.n = m->cfg.languages.n;
        W.pages = pages_load(m, errstr, errstr_size);
        return W.pages ? 0 : -1;
}

void ml_web_reload(void)
{
        struct web_pages *w, *old;
        char err[1024];

        if (!W.pages)
                return; /* the pages are off */
        if (!(w = pages_load(W.m, err, sizeof(err)))) {
                log_warnx("reload: sign-up pages: %s; keeping the current ones", err);
                return;
        }
        pthread_mutex_lock(&render_lock);
        old = W.pages;
        W.pages = w;
        pthread_mutex_unlock(&render_lock);
        pages_free(old);
        log_info("reload: sign-up pages re-read from %s", W.m->cfg.mailer.templates);
}

int ml_web_links_init(ml_t *m, char *errstr, size_t errstr_size)
{
        const nc_mailer_config_t *mc = &m->cfg.mailer;
        const char *base = mc->public_url;
        char err[512];
        size_t n;

        if (!mc->signup_secret_file.n)
                return 0;
        W.m = m;
        if (ml_wt_keys_load(&W.keys, (const char *const *)mc->signup_secret_file.v,
                            (int)mc->signup_secret_file.n, err, sizeof(err)) != 0)
                return nc_err(errstr, errstr_size, "[mailer] signup_secret_file: %s", err);
        if (base && *base) {
                snprintf(W.base, sizeof(W.base), "%s", base);
        } else {
                /* The unsubscribe URL's scheme and authority: where /unsubscribe is, the
                 * other pages are. */
                const char *u = mc->unsubscribe_url, *p = strstr(u, "://");

                n = p ? (size_t)(strcspn(p + 3, "/?#") + (size_t)(p + 3 - u)) : strlen(u);
                snprintf(W.base, sizeof(W.base), "%.*s", (int)n, u);
        }
        n = strlen(W.base);
        while (n && W.base[n - 1] == '/')
                W.base[--n] = '\0';
        W.secure_cookie = !strncmp(W.base, "https://", 8);
        W.links = 1;
        return 0;
}

/* The limits and the outbox: what the flow needs besides the templates and the links. */
static int setup(ml_t *m, char *errstr, size_t errstr_size)
{
        const nc_mailer_config_t *mc = &m->cfg.mailer;
        int64_t window;
        char err[512];
        int max;

        if (ml_web_links_init(m, errstr, errstr_size) != 0)
                return -1;
        if (mc->confirm_expiry_ms > NC_TOPICS_SUBSCRIBERS_TOMBSTONE_MS)
                return nc_err(errstr, errstr_size,
                              "[mailer] confirm_expiry: at most 168h (the subscribers topic keeps "
                              "an unsubscribe's tombstone for 7 days: a replayed link of an ended "
                              "subscription must still be told apart)");
        if (ml_ratelimit_parse(mc->signup_rate_ip, &max, &window, err, sizeof(err)) != 0)
                return nc_err(errstr, errstr_size, "[mailer] signup_rate_ip: %s", err);
        W.rl_ip = ml_ratelimit_new(max, window, RL_CAPACITY);
        if (ml_ratelimit_parse(mc->signup_rate_address, &max, &window, err, sizeof(err)) != 0)
                return nc_err(errstr, errstr_size, "[mailer] signup_rate_address: %s", err);
        W.rl_addr = ml_ratelimit_new(max, window, RL_CAPACITY);
        return ml_outbox_start(m, errstr, errstr_size);
}

int ml_web_page(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, int status, const char *lang_code,
                const char *kind, const char *token)
{
        int lang;
        json_t *d;

        if (req)
                lang = page_lang(req, lang_code);
        else if (!lang_code || (lang = lang_index(lang_code, strlen(lang_code))) < 0)
                lang = page_lang_default();
        if (strcmp(kind, "unsubscribe"))
                return message(resp, status, lang, kind);
        d = json_pack("{s:s, s:s}", "lang", W.lang[lang], "token", token ? token : "");
        status = render(resp, status, lang, PAGE_UNSUBSCRIBE, d);
        json_decref(d);
        return status;
}

int ml_web_start(ml_t *m, nc_httpd_t *public, char *errstr, size_t errstr_size)
{
        if (!public)
                return 0;
        W.m = m;
        /* The unsubscribe pages are templates too: loaded with or without the sign-up. */
        if (load(m, errstr, errstr_size) != 0) {
                ml_web_stop();
                return -1;
        }
        if (nc_httpd_add_route(public, "/assets/site.css", handle_css, m) != 0) {
                ml_web_stop();
                return nc_err(errstr, errstr_size, "cannot add the stylesheet's route");
        }
        if (!m->cfg.mailer.signup_secret_file.n) {
                log_info("no [mailer] signup_secret_file: the sign-up pages are off");
                return 0;
        }
        if (setup(m, errstr, errstr_size) != 0) {
                ml_web_stop();
                return -1;
        }
        if (nc_httpd_add_route(public, "/subscribe", handle_subscribe, m) != 0 ||
            nc_httpd_add_route(public, "/confirm", handle_confirm, m) != 0 ||
            nc_httpd_add_route(public, "/manage", handle_manage, m) != 0) {
                ml_web_stop();
                return nc_err(errstr, errstr_size, "cannot add the sign-up routes");
        }
        nc_log_kv(NC_LOG_INFO, "sign-up pages", "paths", "/subscribe /confirm /manage", "links",
                  W.base, NULL);
        return 0;
}

void ml_web_stop(void)
{
        ml_outbox_stop();
        for (size_t i = 0; i < W.n; i++)
                free(W.lang[i]);
        pages_free(W.pages);
        ml_ratelimit_free(W.rl_ip);
        ml_ratelimit_free(W.rl_addr);
        ml_wt_keys_clear(&W.keys);
        memset(&W, 0, sizeof(W));
}
