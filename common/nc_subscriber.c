#include "nc_subscriber.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "nc_log.h"
#include "nc_notice.h"
#include "nc_region.h"
#include "nc_time.h"
#include "nc_util.h"

#define NAME_MAX_BYTES 200

const char *const nc_subscriber_csv_columns[] = {
    "email", "name", "lang", "categories", "regions", "frequency", "tz", "send_at", NULL};

/* bounces, bounced_at, bounce_reason and suppressed are kept by the mailer (hard bounces
 * within [mailer] bounce_window). */
static const char *const record_fields[] = {"id",         "email",      "name",          "lang",
                                            "categories", "regions",    "frequency",     "tz",
                                            "send_at",    "updated_at", "generation",    "bounces",
                                            "suppressed", "bounced_at", "bounce_reason", NULL};

static int opt_string(const json_t *in, const char *field, const char **out, char *errstr,
                      size_t errstr_size)
{
        json_t *v = json_object_get(in, field);

        *out = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return nc_err(errstr, errstr_size, "%s: must be a string", field);
        *out = json_string_value(v);
        if (!**out)
                *out = NULL; /* an empty CSV cell means "use the default" */
        return 0;
}

static int valid_hhmm(const char *s)
{
        return strlen(s) == 5 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
               s[2] == ':' && isdigit((unsigned char)s[3]) && isdigit((unsigned char)s[4]) &&
               (s[0] - '0') * 10 + (s[1] - '0') < 24 && s[3] < '6';
}

static json_t *string_set(const json_t *v, const char *field, const nc_config_t *cfg, int regions,
                          nc_subscriber_err_t *why, char *errstr, size_t errstr_size)
{
        nc_strlist_t set = {0};
        json_t *out = NULL, *e;
        size_t i;
        char item[80], err[128];

        if (!json_is_array(v)) {
                nc_err(errstr, errstr_size, "%s: must be a list", field);
                return NULL;
        }
        json_array_foreach(v, i, e) {
                if (!json_is_string(e) || strlen(json_string_value(e)) >= sizeof(item)) {
                        nc_err(errstr, errstr_size, "%s[%zu]: must be a short string", field, i);
                        goto done;
                }
                strcpy(item, json_string_value(e));
                if (regions) {
                        if (nc_region_list_add(&set, item, err, sizeof(err)) != 0) {
                                *why = NC_SUB_REGION_INVALID;
                                nc_err(errstr, errstr_size, "%s: %s", field, err);
                                goto done;
                        }
                } else if (!nc_config_has_category(cfg, item)) {
                        *why = NC_SUB_CATEGORY_UNKNOWN;
                        nc_err(errstr, errstr_size, "%s: '%s' is not a configured category", field,
                               item);
                        goto done;
                } else if (!nc_strlist_has(&set, item)) {
                        nc_strlist_add(&set, item);
                }
        }
        out = json_array();
        for (i = 0; i < set.n; i++)
                json_array_append_new(out, json_string(set.v[i]));
done:
        nc_strlist_clear(&set);
        return out;
}

const char *nc_subscriber_err_name(nc_subscriber_err_t e)
{
        switch (e) {
        case NC_SUB_OK:
                return "ok";
        case NC_SUB_MALFORMED:
                return "malformed";
        case NC_SUB_EMAIL_MISSING:
                return "email_missing";
        case NC_SUB_EMAIL_INVALID:
                return "email_invalid";
        case NC_SUB_NAME_INVALID:
                return "name_invalid";
        case NC_SUB_LANG_UNKNOWN:
                return "lang_unknown";
        case NC_SUB_FREQUENCY_INVALID:
                return "frequency_invalid";
        case NC_SUB_TZ_UNKNOWN:
                return "tz_unknown";
        case NC_SUB_SEND_AT_INVALID:
                return "send_at_invalid";
        case NC_SUB_CATEGORY_UNKNOWN:
                return "category_unknown";
        case NC_SUB_REGION_INVALID:
                return "region_invalid";
        }
        fatalx("nc_subscriber_err_name: %d", (int)e);
}

json_t *nc_subscriber_normalise(const json_t *in, const nc_config_t *cfg, int64_t now_ms,
                                char *errstr, size_t errstr_size)
{
        nc_subscriber_err_t why;

        return nc_subscriber_check(in, cfg, now_ms, &why, errstr, errstr_size);
}

json_t *nc_subscriber_check(const json_t *in, const nc_config_t *cfg, int64_t now_ms,
                            nc_subscriber_err_t *why, char *errstr, size_t errstr_size)
{
        const char *email, *name, *lang, *freq, *tz, *send_at, *key;
        char id[256], ts[40], err[256];
        json_t *out = NULL, *v, *set, *empty;
        int i;

        *why = NC_SUB_MALFORMED; /* until it is known to be another */
        if (!json_is_object(in)) {
                nc_err(errstr, errstr_size, "subscriber: must be a JSON object");
                return NULL;
        }
        json_object_foreach((json_t *)in, key, v) {
                for (i = 0; record_fields[i]; i++)
                        if (!strcmp(key, record_fields[i]))
                                break;
                if (!record_fields[i]) {
                        nc_err(errstr, errstr_size, "%.64s: unknown field", key);
                        return NULL;
                }
        }
        if (opt_string(in, "email", &email, errstr, errstr_size) ||
            opt_string(in, "name", &name, errstr, errstr_size) ||
            opt_string(in, "lang", &lang, errstr, errstr_size) ||
            opt_string(in, "frequency", &freq, errstr, errstr_size) ||
            opt_string(in, "tz", &tz, errstr, errstr_size) ||
            opt_string(in, "send_at", &send_at, errstr, errstr_size))
                return NULL;
        if (!email) {
                *why = NC_SUB_EMAIL_MISSING;
                nc_err(errstr, errstr_size, "email: is required");
                return NULL;
        }
        if (nc_email_valid(email, err, sizeof(err)) != 0) {
                *why = NC_SUB_EMAIL_INVALID;
                nc_err(errstr, errstr_size, "email: %s", err);
                return NULL;
        }
        /* Display names end up in a To: header: one line, bounded. */
        if (name && nc_text_check_line("name", name, NAME_MAX_BYTES, errstr, errstr_size) != 0) {
                *why = NC_SUB_NAME_INVALID;
                return NULL;
        }
        if (lang && !nc_config_has_language(cfg, lang)) {
                *why = NC_SUB_LANG_UNKNOWN;
                nc_err(errstr, errstr_size, "lang: '%.16s' is not a configured language", lang);
                return NULL;
        }
        if (freq && strcmp(freq, "immediate") && strcmp(freq, "daily") && strcmp(freq, "weekly")) {
                *why = NC_SUB_FREQUENCY_INVALID;
                nc_err(errstr, errstr_size, "frequency: '%.32s' must be immediate, daily or weekly",
                       freq);
                return NULL;
        }
        if (tz && !nc_tz_valid(tz)) {
                *why = NC_SUB_TZ_UNKNOWN;
                nc_err(errstr, errstr_size, "tz: '%.64s' is not a known IANA time zone", tz);
                return NULL;
        }
        if (send_at && !valid_hhmm(send_at)) {
                *why = NC_SUB_SEND_AT_INVALID;
                nc_err(errstr, errstr_size, "send_at: '%.16s' must be HH:MM (00:00-23:59)",
                       send_at);
                return NULL;
        }

        snprintf(id, sizeof(id), "%s", email);
        nc_str_lower(id);
        empty = json_array();
        out = json_object();
        json_object_set_new(out, "id", json_string(id));
        json_object_set_new(out, "email", json_string(email));
        json_object_set_new(out, "name", json_string(name ? name : ""));
        json_object_set_new(out, "lang", json_string(lang ? lang : cfg->default_language));
        v = json_object_get(in, "categories");
        if (!(set = string_set(v ? v : empty, "categories", cfg, 0, why, errstr, errstr_size)))
                goto fail;
        json_object_set_new(out, "categories", set);
        v = json_object_get(in, "regions");
        if (!(set = string_set(v ? v : empty, "regions", cfg, 1, why, errstr, errstr_size)))
                goto fail;
        json_object_set_new(out, "regions", set);
        json_object_set_new(out, "frequency", json_string(freq ? freq : "daily"));
        json_object_set_new(out, "tz", json_string(tz ? tz : cfg->default_timezone));
        json_object_set_new(out, "send_at", json_string(send_at ? send_at : "08:00"));
        json_object_set_new(out, "updated_at",
                            json_string(nc_time_format_rfc3339(now_ms, ts, sizeof(ts))));
        v = json_object_get(in, "bounces");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
                nc_err(errstr, errstr_size, "bounces: must be a count");
                goto fail;
        }
        if (v && json_integer_value(v) > 0)
                json_object_set(out, "bounces", v);
        v = json_object_get(in, "suppressed");
        if (v && !json_is_boolean(v)) {
                nc_err(errstr, errstr_size, "suppressed: must be true or false");
                goto fail;
        }
        if (json_is_true(v))
                json_object_set(out, "suppressed", v);
        v = json_object_get(in, "bounced_at");
        if (v && !json_is_null(v)) {
                int64_t at;
                char terr[128];

                if (!json_is_string(v) ||
                    nc_time_parse_rfc3339(json_string_value(v), &at, terr, sizeof(terr)) != 0) {
                        nc_err(errstr, errstr_size, "bounced_at: must be an RFC 3339 time");
                        goto fail;
                }
                json_object_set(out, "bounced_at", v);
        }
        v = json_object_get(in, "bounce_reason");
        if (v && !json_is_null(v)) {
                if (!json_is_string(v) || json_string_length(v) > NC_SUBSCRIBER_BOUNCE_REASON_MAX) {
                        nc_err(errstr, errstr_size,
                               "bounce_reason: must be a string of at most %d "
                               "bytes",
                               NC_SUBSCRIBER_BOUNCE_REASON_MAX);
                        goto fail;
                }
                json_object_set(out, "bounce_reason", v);
        }
        v = json_object_get(in, "generation");
        if (v && !json_is_null(v)) {
                const char *g = json_string_value(v);
                size_t k;

                for (k = 0; g && k < NC_SUBSCRIBER_GENERATION_LEN; k++)
                        if (!isdigit((unsigned char)g[k]) && (g[k] < 'a' || g[k] > 'f'))
                                break;
                if (!g || k != NC_SUBSCRIBER_GENERATION_LEN || g[k]) {
                        nc_err(errstr, errstr_size, "generation: must be %d lower-case hex digits",
                               NC_SUBSCRIBER_GENERATION_LEN);
                        goto fail;
                }
                json_object_set(out, "generation", v);
        }
        json_decref(empty);
        *why = NC_SUB_OK;
        return out;
fail:
        json_decref(empty);
        json_decref(out);
        return NULL;
}

int nc_subscriber_new_generation(json_t *rec, char *errstr, size_t errstr_size)
{
        char hex[NC_SUBSCRIBER_GENERATION_LEN + 1];
        uint64_t g = 0;

        if (getrandom(&g, sizeof(g), 0) != (ssize_t)sizeof(g))
                return nc_err(errstr, errstr_size, "generation: no random bytes: %s",
                              strerror(errno));
        if (g == 0) /* 0 stands for "none" */
                g = 1;
        snprintf(hex, sizeof(hex), "%016" PRIx64, g);
        json_object_set_new(rec, "generation", json_string(hex));
        return 0;
}

uint64_t nc_subscriber_generation(const json_t *rec)
{
        const char *g = json_string_value(json_object_get(rec, "generation"));

        return g ? (uint64_t)strtoull(g, NULL, 16) : 0;
}

json_t *nc_subscriber_from_csv(char **header, size_t header_n, char **fields, size_t n,
                               char *errstr, size_t errstr_size)
{
        json_t *in;
        size_t i;

        if (n != header_n) {
                nc_err(errstr, errstr_size, "row: has %zu fields, the header has %zu", n, header_n);
                return NULL;
        }
        for (i = 0; i < header_n; i++) {
                size_t j;

                for (j = 0; nc_subscriber_csv_columns[j]; j++)
                        if (!strcmp(header[i], nc_subscriber_csv_columns[j]))
                                break;
                if (!nc_subscriber_csv_columns[j]) {
                        nc_err(errstr, errstr_size, "%.64s: unknown column", header[i]);
                        return NULL;
                }
        }
        in = json_object();
        for (i = 0; i < n; i++) {
                char *cell = nc_str_trim(fields[i]);

                if (!strcmp(header[i], "categories") || !strcmp(header[i], "regions")) {
                        nc_strlist_t l = {0};
                        json_t *arr = json_array();
                        size_t j;

                        nc_strlist_split(&l, cell);
                        for (j = 0; j < l.n; j++)
                                json_array_append_new(arr, json_string(l.v[j]));
                        nc_strlist_clear(&l);
                        json_object_set_new(in, header[i], arr);
                } else {
                        json_t *s = json_string(cell);

                        if (!s) {
                                nc_err(errstr, errstr_size, "%s: is not valid UTF-8", header[i]);
                                json_decref(in);
                                return NULL;
                        }
                        json_object_set_new(in, header[i], s);
                }
        }
        return in;
}
