#include "nc_config.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nc_region.h"

#ifndef NC_SYSCONFDIR
#define NC_SYSCONFDIR "/etc"
#endif
/* $(PREFIX)/share from config.mk: where `make install` puts the email templates. */
#ifndef NC_DATADIR
#define NC_DATADIR "/usr/local/share"
#endif

const char *nc_config_path(const char *cli_path, int *explicit_path)
{
        const char *env = getenv("NOTICECAST_CONFIG");

        *explicit_path = 1;
        if (cli_path)
                return cli_path;
        if (env && *env)
                return env;
        *explicit_path = 0;
        return NC_SYSCONFDIR "/noticecast/noticecast.conf";
}

/* Wipes the secret S in place (before it is freed), so no copy is left in freed memory. */
static void secret_wipe(char *s)
{
        if (s)
                explicit_bzero(s, strlen(s));
}

static void set_str(char **dst, const char *v)
{
        free(*dst);
        *dst = nc_xstrdup(v);
}

/* ---- the key table ---------------------------------------------------------------------- */

/* How a value is read.  Every type is parsed by key_set() alone, for the file and for the
 * defaults alike. */
enum key_type {
        K_STR,       /* char *; CHECK may refuse the value */
        K_FILE,      /* char * path; the line it was set on goes to the int at AUX */
        K_IDENTS,    /* nc_strlist_t of lower-case identifiers, not empty */
        K_LIST,      /* nc_strlist_t, checked after parsing (partner categories) */
        K_REGIONS,   /* nc_strlist_t of ISO 3166-1 codes, normalised by nc_region_list_add */
        K_INT,       /* int in [MIN, MAX] */
        K_SIZE,      /* size_t in [MIN, MAX] */
        K_RATE,      /* double per second, >= 0 (0 = no limit) */
        K_BOOL,      /* int 0/1 */
        K_DURATION,  /* int64_t milliseconds */
        K_LIFETIME,  /* int64_t milliseconds, 1h to 10 years; days allowed ("365d") */
        K_SCHEDULE,  /* int64_t[NC_RETRY_MAX] of >= 100 ms; the count goes to the size_t at AUX */
        K_ENUM,      /* int, by the name table NAMES */
        K_RETENTION, /* int64_t ms, -1 = "forever"; the line it was set on goes to the int at AUX */
};

#define NC_RETRY_MAX    16
#define NC_RETRY_MIN_MS 100

struct enum_name {
        const char *name;
        int value;
};

static const struct enum_name starttls_names[] = {
    {"off", 0}, {"optional", 1}, {"required", 2}, {NULL, 0}};
static const struct enum_name format_names[] = {
    {"standard", NC_FORMAT_STANDARD}, {"cloudevents", NC_FORMAT_CLOUDEVENTS}, {NULL, 0}};
static const struct enum_name weekday_names[] = {{"sunday", 0},    {"monday", 1},   {"tuesday", 2},
                                                 {"wednesday", 3}, {"thursday", 4}, {"friday", 5},
                                                 {"saturday", 6},  {NULL, 0}};

_Static_assert(sizeof(enum nc_webhook_format) == sizeof(int), "K_ENUM stores an int");

/* Extra checks of a string value; they write the reason to ERR and return -1. */
typedef int (*key_check_fn)(const char *v, char *err, size_t err_size);

static int check_nonempty(const char *v, char *err, size_t err_size)
{
        return *v ? 0 : nc_err(err, err_size, "must not be empty");
}

/* Topic-name-safe identifier: Kafka allows [a-zA-Z0-9._-]; categories are lower-case. */
static int ident_ok(const char *s, int allow_dot_upper)
{
        if (!*s || strlen(s) > 64)
                return 0;
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;

                if (!(islower(c) || isdigit(c) || c == '-' || c == '_' ||
                      (allow_dot_upper && (c == '.' || isupper(c)))))
                        return 0;
        }
        return 1;
}

static int check_topic_prefix(const char *v, char *err, size_t err_size)
{
        if (*v && !ident_ok(v, 1))
                return nc_err(err, err_size, "'%s' may only contain letters, digits, '.', '-', '_'",
                              v);
        return 0;
}

static int check_tz(const char *v, char *err, size_t err_size)
{
        return nc_tz_valid(v) ? 0 : nc_err(err, err_size, "'%s' is not a known IANA time zone", v);
}

static int check_http_url(const char *v, char *err, size_t err_size)
{
        if (strncmp(v, "https://", 8) && strncmp(v, "http://", 7))
                return nc_err(err, err_size, "must start with https:// or http://");
        return 0;
}

/* What ends up in mail headers or URLs: one line, no controls (the parser already refused
 * all of them but the tab). */
static int check_header(const char *v, char *err, size_t err_size)
{
        for (const char *p = v; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return nc_err(err, err_size, "contains a control character");
        return 0;
}

static int check_header_email(const char *v, char *err, size_t err_size)
{
        if (check_header(v, err, err_size) != 0)
                return -1;
        return nc_email_valid(v, err, err_size);
}

/* One of the characters Postfix, Exim and qmail use as recipient delimiter. */
static int check_verp_delimiter(const char *v, char *err, size_t err_size)
{
        if (strlen(v) != 1 || !strchr("+-=", v[0]))
                return nc_err(err, err_size, "'%s' must be one of + - =", v);
        return 0;
}

static int check_header_url(const char *v, char *err, size_t err_size)
{
        if (check_header(v, err, err_size) != 0)
                return -1;
        return check_http_url(v, err, err_size);
}

/* One line per key (redis config.c style).  SECTION "partner" means every [partner.ID];
 * OFFSET is then into nc_partner_t, else into nc_config_t.  DEF is the default, written as in
 * the file and parsed by the same code; NULL leaves the field empty/0. */
struct key {
        const char *section, *name;
        enum key_type type;
        size_t offset;
        long min, max; /* K_INT, K_SIZE */
        const char *def;
        key_check_fn check;            /* K_STR, K_FILE */
        const struct enum_name *names; /* K_ENUM */
        size_t aux;                    /* K_FILE, K_SCHEDULE */
};

#define C(f) offsetof(nc_config_t, f)
#define P(f) offsetof(nc_partner_t, f)
#define STR(s, k, f, def, check)                                                                   \
        {                                                                                          \
                s, k, K_STR, C(f), 0, 0, def, check, NULL, 0                                       \
        }
#define INT(s, k, t, f, min, max, def)                                                             \
        {                                                                                          \
                s, k, t, C(f), min, max, def, NULL, NULL, 0                                        \
        }
#define TYPED(s, k, t, f, def)                                                                     \
        {                                                                                          \
                s, k, t, C(f), 0, 0, def, NULL, NULL, 0                                            \
        }
#define ENUM(s, k, f, names, def)                                                                  \
        {                                                                                          \
                s, k, K_ENUM, C(f), 0, 0, def, NULL, names, 0                                      \
        }
#define SCHEDULE(s, f, def)                                                                        \
        {                                                                                          \
                s, "retry_schedule", K_SCHEDULE, C(f.retry_ms), 0, 0, def, NULL, NULL,             \
                    C(f.retry_n)                                                                   \
        }
/* [topics] <kind>_partitions (default: [topics] partitions) and <kind>_retention. */
#define TOPIC_PARTITIONS(k, kind)                                                                  \
        {                                                                                          \
                "topics", k "_partitions", K_INT, C(topic[kind].partitions), 1, 10000, NULL, NULL, \
                    NULL, 0                                                                        \
        }
#define TOPIC_RETENTION(k, kind, def)                                                              \
        {                                                                                          \
                "topics", k "_retention", K_RETENTION, C(topic[kind].retention_ms), 0, 0, def,     \
                    NULL, NULL, C(topic[kind].retention_line)                                      \
        }
#define PSTR(k, f, check)                                                                          \
        {                                                                                          \
                "partner", k, K_STR, P(f), 0, 0, NULL, check, NULL, 0                              \
        }
#define PTYPED(k, t, f, min, max, def)                                                             \
        {                                                                                          \
                "partner", k, t, P(f), min, max, def, NULL, NULL, 0                                \
        }

/* 900 KiB cap on [limits]: stays under Kafka's default 1 MiB message.max.bytes. */
static const struct key keys[] = {
    STR("noticecast", "topic_prefix", topic_prefix, "noticecast.", check_topic_prefix),
    TYPED("noticecast", "categories", K_IDENTS, categories, "news, press, tenders, alerts"),
    TYPED("noticecast", "languages", K_IDENTS, languages, "en, es, pt, ko"),
    STR("noticecast", "default_language", default_language, "en", NULL),
    STR("noticecast", "default_timezone", default_timezone, "UTC", check_tz),
    INT("topics", "partitions", K_INT, partitions, 1, 10000, "3"),
    INT("topics", "replication_factor", K_INT, replication_factor, 1, 32, "1"),
    /* Digests look back a week: notices are kept longer than that. */
    TOPIC_PARTITIONS("notices", NC_TOPIC_NOTICES),
    TOPIC_RETENTION("notices", NC_TOPIC_NOTICES, "30d"),
    TOPIC_PARTITIONS("subscribers", NC_TOPIC_SUBSCRIBERS), /* compacted: no retention */
    TOPIC_PARTITIONS("dlq", NC_TOPIC_DLQ),
    TOPIC_RETENTION("dlq", NC_TOPIC_DLQ, "forever"), /* kept until replayed */
    TOPIC_PARTITIONS("deliveries", NC_TOPIC_DELIVERIES),
    TOPIC_RETENTION("deliveries", NC_TOPIC_DELIVERIES, "90d"), /* the agencies' audit trail */
    /* Longer than the whole retry schedule, so that a parked retry outlives any outage. */
    TOPIC_PARTITIONS("webhooks_retry", NC_TOPIC_WEBHOOKS_RETRY),
    TOPIC_RETENTION("webhooks_retry", NC_TOPIC_WEBHOOKS_RETRY, "7d"),
    /* mailer.plan: one partition, compacted, no key (nc_topics.c says why). */
    TOPIC_PARTITIONS("mailer_jobs", NC_TOPIC_MAILER_JOBS),
    TOPIC_RETENTION("mailer_jobs", NC_TOPIC_MAILER_JOBS, "7d"),
    INT("producer", "timeout_ms", K_INT, producer_timeout_ms, 100, 3600000, "30000"),
    INT("limits", "title_max_bytes", K_SIZE, title_max, 16, 900 * 1024, "300"),
    INT("limits", "summary_max_bytes", K_SIZE, summary_max, 16, 900 * 1024, "2000"),
    INT("limits", "body_max_bytes", K_SIZE, body_max, 16, 900 * 1024, "65536"),
    INT("limits", "notice_max_bytes", K_SIZE, notice_max, 16, 900 * 1024, "262144"),

    STR("webhooks", "group_id", webhooks.group_id, "noticecast-webhooks", check_nonempty),
    STR("webhooks", "listen", webhooks.listen, "127.0.0.1:9464", NULL),
    TYPED("webhooks", "kafka_grace", K_DURATION, webhooks.kafka_grace_ms, "5s"),
    /* Standard Webhooks / Svix schedule */
    SCHEDULE("webhooks", webhooks, "5s, 5m, 30m, 2h, 5h, 10h, 10h"),
    TYPED("webhooks", "retry_after_max", K_DURATION, webhooks.retry_after_max_ms, "1h"),
    INT("webhooks", "max_pending", K_INT, webhooks.max_pending, 1, 10000000, "10000"),
    TYPED("webhooks", "shutdown_timeout", K_DURATION, webhooks.shutdown_timeout_ms, "30s"),

    STR("mailer", "group_id", mailer.group_id, "noticecast-mailer", check_header),
    STR("mailer", "listen", mailer.listen, "127.0.0.1:9465", check_header),
    STR("mailer", "public_listen", mailer.public_listen, "127.0.0.1:9466", check_header),
    TYPED("mailer", "kafka_grace", K_DURATION, mailer.kafka_grace_ms, "5s"),
    STR("mailer", "from_name", mailer.from_name, "noticecast", check_header),
    STR("mailer", "from_address", mailer.from_address, "notices@localhost", check_header_email),
    STR("mailer", "envelope_from", mailer.envelope_from, NULL, check_header_email),
    STR("mailer", "verp_delimiter", mailer.verp_delimiter, "+", check_verp_delimiter),
    STR("mailer", "list_id", mailer.list_id, "notices.localhost", check_header),
    STR("mailer", "unsubscribe_url", mailer.unsubscribe_url, "http://127.0.0.1:9466/unsubscribe",
        check_header_url),
    STR("mailer", "unsubscribe_mailto", mailer.unsubscribe_mailto, NULL, check_header_email),
    STR("mailer", "unsubscribe_secret_file", mailer.unsubscribe_secret_file, NULL, check_header),
    TYPED("mailer", "unsubscribe_expiry", K_LIFETIME, mailer.unsubscribe_expiry_ms, "365d"),
    STR("mailer", "templates", mailer.templates, NC_DATADIR "/noticecast/templates", check_header),
    STR("mailer", "message_id_domain", mailer.message_id_domain, "localhost", check_header),
    ENUM("mailer", "weekly_day", mailer.weekly_day, weekday_names, "monday"),
    INT("mailer", "max_notices", K_INT, mailer.max_notices, 1, 1000, "50"),
    INT("mailer", "bounce_suppress_after", K_INT, mailer.bounce_suppress_after, 1, 1000, "3"),
    TYPED("mailer", "bounce_window", K_LIFETIME, mailer.bounce_window_ms, "30d"),
    TYPED("mailer", "verp", K_BOOL, mailer.verp, "true"),
    SCHEDULE("mailer", mailer, "1m, 5m, 15m, 1h, 4h"),
    TYPED("mailer", "shutdown_timeout", K_DURATION, mailer.shutdown_timeout_ms, "30s"),
    /* Sign-up pages; public_url unset: derived from unsubscribe_url (its path dropped). */
    STR("mailer", "public_url", mailer.public_url, NULL, check_header_url),
    TYPED("mailer", "signup_secret_file", K_LIST, mailer.signup_secret_file, NULL),
    TYPED("mailer", "confirm_expiry", K_DURATION, mailer.confirm_expiry_ms, "48h"),
    TYPED("mailer", "manage_expiry", K_DURATION, mailer.manage_expiry_ms, "720h"),
    STR("mailer", "signup_rate_ip", mailer.signup_rate_ip, "10/1h", check_header),
    STR("mailer", "signup_rate_address", mailer.signup_rate_address, "3/24h", check_header),
    TYPED("mailer", "signup_regions", K_LIST, mailer.signup_regions, NULL),

    STR("smtp", "host", smtp.host, "localhost", NULL),
    INT("smtp", "port", K_INT, smtp.port, 1, 65535, "25"),
    ENUM("smtp", "starttls", smtp.starttls, starttls_names, "optional"),
    STR("smtp", "username", smtp.username, NULL, NULL),
    STR("smtp", "password_file", smtp.password_file, NULL, NULL),
    STR("smtp", "ca_file", smtp.ca_file, NULL, NULL),
    STR("smtp", "helo", smtp.helo, NULL, NULL),
    INT("smtp", "sessions", K_INT, smtp.sessions, 1, 64, "4"),
    INT("smtp", "batch", K_INT, smtp.batch, 1, 10000, "200"),
    TYPED("smtp", "rate_limit", K_RATE, smtp.rate_limit, "0"),
    INT("smtp", "timeout_ms", K_INT, smtp.timeout_ms, 100, 600000, "30000"),
    TYPED("smtp", "allow_plaintext_auth", K_BOOL, smtp.allow_plaintext_auth, "false"),
    /* Per recipient domain; the syntax is checked by the mailer (ml_domain_limits_parse). */
    STR("smtp", "domain_limits", smtp.domain_limits, NULL, check_header),
    STR("smtp", "domain_limit_default", smtp.domain_limit_default, "0 4", check_header),
    TYPED("smtp", "domain_backoff", K_DURATION, smtp.domain_backoff_ms, "30s"),
    TYPED("smtp", "domain_backoff_max", K_DURATION, smtp.domain_backoff_max_ms, "15m"),

    PSTR("url", url, check_http_url),
    {"partner", "secret_file", K_FILE, P(secret_file), 0, 0, NULL, NULL, NULL, P(secret_file_line)},
    PTYPED("categories", K_LIST, categories, 0, 0, NULL),
    PTYPED("regions", K_REGIONS, regions, 0, 0, NULL),
    {"partner", "format", K_ENUM, P(format), 0, 0, "standard", NULL, format_names, 0},
    PTYPED("timeout_ms", K_INT, timeout_ms, 100, 600000, "10000"),
    PTYPED("max_in_flight", K_INT, max_in_flight, 1, 1024, "4"),
    PTYPED("rate_limit", K_RATE, rate_limit, 0, 0, "0"),
    PSTR("ca_file", ca_file, NULL),
    PSTR("client_cert", client_cert, NULL),
    PSTR("client_key", client_key, NULL),
    PTYPED("tls_verify", K_BOOL, tls_verify, 0, 0, "true"),
    PTYPED("enabled", K_BOOL, enabled, 0, 0, "true"),
};

#define KEYS_N (sizeof(keys) / sizeof(keys[0]))

static int parse_long(const char *v, long min, long max, long *out)
{
        char *end;
        long n;

        errno = 0;
        n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < min || n > max)
                return -1;
        *out = n;
        return 0;
}

static int parse_bool(const char *v, int *out)
{
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
                *out = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
                *out = 0;
        else
                return -1;
        return 0;
}

static int parse_enum(const struct enum_name *names, const char *v, int *out, char *err,
                      size_t err_size)
{
        size_t len = 0;
        int i;

        for (i = 0; names[i].name; i++) {
                if (!strcmp(v, names[i].name)) {
                        *out = names[i].value;
                        return 0;
                }
        }
        len = (size_t)snprintf(err, err_size, "'%s' must be one of", v);
        for (i = 0; names[i].name && len < err_size; i++)
                len += (size_t)snprintf(err + len, err_size - len, "%s %s", i ? "," : "",
                                        names[i].name);
        return -1;
}

/* Retry delays "5s, 5m, 2h": 1 to NC_RETRY_MAX of them, each at least NC_RETRY_MIN_MS (a
 * shorter one would hammer a partner or a relay that is down). */
static int parse_schedule(const char *v, int64_t *ms, size_t *n, char *err, size_t err_size)
{
        nc_strlist_t l = {0};
        int rc = 0;

        nc_strlist_split(&l, v);
        if (l.n == 0 || l.n > NC_RETRY_MAX)
                rc = nc_err(err, err_size, "needs 1 to %d durations", NC_RETRY_MAX);
        for (size_t i = 0; rc == 0 && i < l.n; i++)
                if (nc_duration_parse(l.v[i], &ms[i]) != 0 || ms[i] < NC_RETRY_MIN_MS)
                        rc = nc_err(err, err_size,
                                    "'%s' is not a duration like 5s, 5m or 2h (at least %dms)",
                                    l.v[i], NC_RETRY_MIN_MS);
        if (rc == 0)
                *n = l.n;
        nc_strlist_clear(&l);
        return rc;
}

static int parse_idents(nc_strlist_t *dst, const char *v, char *err, size_t err_size)
{
        nc_strlist_t tmp = {0};

        nc_strlist_split(&tmp, v);
        for (size_t i = 0; i < tmp.n; i++) {
                if (!ident_ok(tmp.v[i], 0)) {
                        nc_err(err, err_size, "'%s' must be lower-case letters, digits, '-' or '_'",
                               tmp.v[i]);
                        nc_strlist_clear(&tmp);
                        return -1;
                }
        }
        if (tmp.n == 0)
                return nc_err(err, err_size, "must not be empty");
        nc_strlist_clear(dst);
        *dst = tmp;
        return 0;
}

static int parse_regions(nc_strlist_t *dst, const char *v, char *err, size_t err_size)
{
        nc_strlist_t words = {0}, codes = {0};
        int rc = 0;

        nc_strlist_split(&words, v);
        for (size_t i = 0; rc == 0 && i < words.n; i++)
                rc = nc_region_list_add(&codes, words.v[i], err, err_size);
        nc_strlist_clear(&words);
        if (rc != 0) {
                nc_strlist_clear(&codes);
                return -1;
        }
        nc_strlist_clear(dst);
        *dst = codes;
        return 0;
}

/* Checks programs added to keys whose syntax is theirs (nc_config_add_check). */
static struct {
        const char *section, *name;
        nc_config_check_fn *fn;
} added_checks[8];

void nc_config_add_check(const char *section, const char *key, nc_config_check_fn *fn)
{
        for (size_t i = 0; i < sizeof(added_checks) / sizeof(added_checks[0]); i++) {
                if (!added_checks[i].fn || (!strcmp(added_checks[i].section, section) &&
                                            !strcmp(added_checks[i].name, key))) {
                        added_checks[i].section = section;
                        added_checks[i].name = key;
                        added_checks[i].fn = fn;
                        return;
                }
        }
        fatalx("nc_config_add_check: too many checks (%s %s)", section, key);
}

static int added_check(const struct key *k, const char *v, char *err, size_t err_size)
{
        for (size_t i = 0; i < sizeof(added_checks) / sizeof(added_checks[0]) && added_checks[i].fn;
             i++)
                if (!strcmp(added_checks[i].section, k->section) &&
                    !strcmp(added_checks[i].name, k->name))
                        return added_checks[i].fn(v, err, err_size);
        return 0;
}

/* Sets K's field in BASE (nc_config_t, or nc_partner_t for [partner.ID]) from V.  LINE is
 * where V came from, 0 for a default: K's CHECK is skipped then, as the local defaults
 * ("notices@localhost") are not all what a production file may say.  Returns 0, or -1 with
 * the reason in ERR. */
static int key_set(const struct key *k, void *base, const char *v, int line, char *err,
                   size_t err_size)
{
        char *field = (char *)base + k->offset, *end;
        long n;
        double d;
        int64_t ms;

        switch (k->type) {
        case K_STR:
        case K_FILE:
                if (line && k->check && k->check(v, err, err_size) != 0)
                        return -1;
                if (line && added_check(k, v, err, err_size) != 0)
                        return -1;
                set_str((char **)field, v);
                if (k->type == K_FILE)
                        *(int *)((char *)base + k->aux) = line;
                return 0;
        case K_IDENTS:
                return parse_idents((nc_strlist_t *)field, v, err, err_size);
        case K_LIST:
                nc_strlist_clear((nc_strlist_t *)field);
                nc_strlist_split((nc_strlist_t *)field, v);
                return 0;
        case K_REGIONS:
                return parse_regions((nc_strlist_t *)field, v, err, err_size);
        case K_INT:
        case K_SIZE:
                if (parse_long(v, k->min, k->max, &n) != 0)
                        return nc_err(err, err_size, "'%s' is not an integer between %ld and %ld",
                                      v, k->min, k->max);
                if (k->type == K_INT)
                        *(int *)field = (int)n;
                else
                        *(size_t *)field = (size_t)n;
                return 0;
        case K_RATE:
                errno = 0;
                d = strtod(v, &end);
                if (errno || end == v || *end || d < 0)
                        return nc_err(err, err_size,
                                      "'%s' must be a rate per second (0 = no limit)", v);
                *(double *)field = d;
                return 0;
        case K_BOOL:
                if (parse_bool(v, (int *)field) != 0)
                        return nc_err(err, err_size, "'%s' must be true or false", v);
                return 0;
        case K_DURATION:
                if (nc_duration_parse(v, &ms) != 0)
                        return nc_err(err, err_size, "'%s' is not a duration like 30s, 5m or 1h",
                                      v);
                *(int64_t *)field = ms;
                return 0;
        case K_SCHEDULE:
                return parse_schedule(v, (int64_t *)field, (size_t *)((char *)base + k->aux), err,
                                      err_size);
        case K_ENUM:
                return parse_enum(k->names, v, (int *)field, err, err_size);
        case K_LIFETIME:
                if (nc_lifetime_parse(v, &ms) != 0)
                        return nc_err(err, err_size,
                                      "'%s' is not a lifetime like 720h or 365d (1h to 10 years)",
                                      v);
                *(int64_t *)field = ms;
                return 0;
        case K_RETENTION:
                if (nc_retention_parse(v, &ms) != 0)
                        return nc_err(err, err_size,
                                      "'%s' is not a retention like 36h, 30d or forever (at least "
                                      "1m)",
                                      v);
                *(int64_t *)field = ms;
                *(int *)((char *)base + k->aux) = line;
                return 0;
        }
        fatalx("config: key type %d", (int)k->type);
}

/* Frees K's field in BASE (strings and lists; other types own nothing). */
static void key_free(const struct key *k, void *base)
{
        char *field = (char *)base + k->offset;

        switch (k->type) {
        case K_STR:
        case K_FILE:
                free(*(char **)field);
                *(char **)field = NULL;
                return;
        case K_IDENTS:
        case K_LIST:
        case K_REGIONS:
                nc_strlist_clear((nc_strlist_t *)field);
                return;
        case K_INT:
        case K_SIZE:
        case K_RATE:
        case K_BOOL:
        case K_DURATION:
        case K_LIFETIME:
        case K_SCHEDULE:
        case K_ENUM:
        case K_RETENTION:
                return;
        }
}

/* Sets the defaults of SECTION's keys in BASE; a default that does not parse is a bug. */
static void section_defaults(const char *section, void *base)
{
        char err[256];

        for (size_t i = 0; i < KEYS_N; i++)
                if (!strcmp(keys[i].section, section) && keys[i].def &&
                    key_set(&keys[i], base, keys[i].def, 0, err, sizeof(err)) != 0)
                        fatalx("config: default of %s.%s: %s", section, keys[i].name, err);
}

static const struct key *key_find(const char *section, const char *name)
{
        for (size_t i = 0; i < KEYS_N; i++)
                if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
                        return &keys[i];
        return NULL;
}

/* The sections: fixed ones whose keys are in the table, [partner.ID] (one nc_partner_t per
 * ID, keys under section "partner"), and [kafka], passed through to librdkafka. */
enum section_kind { SEC_KEYS, SEC_PER_ID, SEC_KAFKA };

static const struct section {
        const char *name; /* for SEC_PER_ID the prefix before ".ID" */
        enum section_kind kind;
        int bare; /* errors name the key alone ("categories: ..."), not "section.key: ..." */
} sections[] = {
    {"noticecast", SEC_KEYS, 1}, {"kafka", SEC_KAFKA, 0}, {"topics", SEC_KEYS, 0},
    {"producer", SEC_KEYS, 0},   {"limits", SEC_KEYS, 0}, {"webhooks", SEC_KEYS, 0},
    {"mailer", SEC_KEYS, 0},     {"smtp", SEC_KEYS, 0},   {"partner", SEC_PER_ID, 0},
};

/* The section NAME ("smtp", "partner.pe") belongs to; *ID is set for SEC_PER_ID. */
static const struct section *section_find(const char *name, const char **id)
{
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
                const struct section *s = &sections[i];
                size_t len = strlen(s->name);

                if (s->kind != SEC_PER_ID && !strcmp(name, s->name))
                        return s;
                if (s->kind == SEC_PER_ID && !strncmp(name, s->name, len) && name[len] == '.') {
                        *id = name + len + 1;
                        return s;
                }
        }
        return NULL;
}

void nc_config_defaults(nc_config_t *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
                if (sections[i].kind == SEC_KEYS)
                        section_defaults(sections[i].name, cfg);
        /* [kafka] is librdkafka's; this one default makes a local setup work out of the box. */
        nc_config_set_kafka(cfg, "bootstrap.servers", "localhost:9092", "default", NULL, 0);
}

void nc_config_partner_free(nc_partner_t *p)
{
        free(p->id);
        for (size_t i = 0; i < KEYS_N; i++)
                if (!strcmp(keys[i].section, "partner"))
                        key_free(&keys[i], p);
        memset(p, 0, sizeof(*p));
}

void nc_config_free(nc_config_t *cfg)
{
        size_t i;

        free(cfg->path);
        for (i = 0; i < KEYS_N; i++)
                if (strcmp(keys[i].section, "partner"))
                        key_free(&keys[i], cfg);
        for (i = 0; i < cfg->kafka_n; i++) {
                free(cfg->kafka[i].key);
                if (cfg->kafka[i].from_file)
                        secret_wipe(cfg->kafka[i].value);
                free(cfg->kafka[i].value);
                free(cfg->kafka[i].origin);
        }
        free(cfg->kafka);
        for (i = 0; i < cfg->partners_n; i++)
                nc_config_partner_free(&cfg->partners[i]);
        free(cfg->partners);
        memset(cfg, 0, sizeof(*cfg));
}

/* Validates KEY=VALUE against librdkafka now, so "-n" catches typos in property names. */
static int kafka_check(const char *key, const char *value, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *probe;
        char kerr[256];
        int ok;

        /* librdkafka takes an empty broker list and then waits forever for a broker. */
        if ((!strcmp(key, "bootstrap.servers") || !strcmp(key, "metadata.broker.list")) &&
            !value[strspn(value, " \t,")])
                return nc_err(errstr, errstr_size,
                              "kafka: %s: must not be empty (host:port[,host:port...])", key);
        probe = rd_kafka_conf_new();
        ok = rd_kafka_conf_set(probe, key, value, kerr, sizeof(kerr)) == RD_KAFKA_CONF_OK;

        rd_kafka_conf_destroy(probe);
        if (!ok)
                return nc_err(errstr, errstr_size, "kafka: %s", kerr);
        /* Private keys librdkafka reads itself follow the secret file rule (nc_util.h). */
        if (*value &&
            (!strcmp(key, "ssl.key.location") || !strcmp(key, "ssl.keystore.location") ||
             !strcmp(key, "sasl.kerberos.keytab")) &&
            nc_secret_file_check(value, kerr, sizeof(kerr)) != 0)
                return nc_err(errstr, errstr_size, "kafka: %s: %s", key, kerr);
        return 0;
}

/* Properties whose value is a secret even when written inline: never shown in a message. */
static int kafka_secret_key(const char *key)
{
        static const char *const secret[] = {"sasl.password", "ssl.key.password",
                                             "ssl.keystore.password",
                                             "sasl.oauthbearer.client.secret"};

        for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
                if (!strcmp(key, secret[i]))
                        return 1;
        return 0;
}

const char *nc_config_kafka_shown(const nc_kafka_prop_t *p)
{
        return p->from_file || kafka_secret_key(p->key) ? "(redacted)" : p->value;
}

/* The source of ORIGIN: "file" of "file:line", or ORIGIN itself ("-X", "-b", "default"). */
static size_t origin_source_len(const char *origin)
{
        const char *colon = strrchr(origin, ':');

        return colon ? (size_t)(colon - origin) : strlen(origin);
}

static int origin_same_source(const char *a, const char *b)
{
        size_t n = origin_source_len(a);

        return n == origin_source_len(b) && !strncmp(a, b, n);
}

/* Reads KEY_file's PATH for kafka_set(): the content less one trailing newline, or NULL with
 * an error that names KEY and the file but never holds any of the content. */
static char *kafka_file_value(const char *key, const char *base, const char *path, char *errstr,
                              size_t errstr_size)
{
        rd_kafka_conf_t *probe;
        rd_kafka_conf_res_t res;
        char serr[400];
        size_t len = 0;
        char *text;

        if (!*path) {
                nc_err(errstr, errstr_size, "kafka: %s: expected the path of a secret file", key);
                return NULL;
        }
        if (!(text = nc_secret_file_read(path, &len, serr, sizeof(serr)))) {
                nc_err(errstr, errstr_size, "kafka: %s: %s", key, serr);
                return NULL;
        }
        if (len > 0 && text[len - 1] == '\n')
                text[--len] = '\0';
        if (len > 0 && text[len - 1] == '\r')
                text[--len] = '\0';
        /* librdkafka's message for a bad value quotes the value: say it without that. */
        probe = rd_kafka_conf_new();
        res = rd_kafka_conf_set(probe, base, text, serr, sizeof(serr));
        rd_kafka_conf_destroy(probe);
        if (res == RD_KAFKA_CONF_UNKNOWN || strlen(text) != len) {
                if (res == RD_KAFKA_CONF_UNKNOWN)
                        nc_err(errstr, errstr_size, "kafka: %s: no librdkafka property %s", key,
                               base);
                else
                        nc_err(errstr, errstr_size, "kafka: %s: %s contains a NUL byte", key, path);
                secret_wipe(text);
                free(text);
                return NULL;
        }
        if (res != RD_KAFKA_CONF_OK) {
                nc_err(errstr, errstr_size, "kafka: %s: the content of %s is not a valid %s", key,
                       path, base);
                secret_wipe(text);
                free(text);
                return NULL;
        }
        return text;
}

/* nc_config_set_kafka() without the ORIGIN prefix on errors (the file parser adds its own). */
static int kafka_set(nc_config_t *cfg, const char *key, const char *value, const char *origin,
                     char *errstr, size_t errstr_size)
{
        size_t klen = strlen(key), sfx = sizeof("_file") - 1;
        int from_file = klen > sfx && !strcmp(key + klen - sfx, "_file");
        char *base = from_file ? nc_xstrdup(key) : NULL, *secret = NULL;
        nc_kafka_prop_t *p = NULL;
        size_t i;

        if (from_file) {
                base[klen - sfx] = '\0';
                if (!(secret = kafka_file_value(key, base, value, errstr, errstr_size))) {
                        free(base);
                        return -1;
                }
                key = base;
                value = secret;
        } else if (kafka_check(key, value, errstr, errstr_size) != 0) {
                return -1;
        }
        for (i = 0; i < cfg->kafka_n && !p; i++)
                if (!strcmp(cfg->kafka[i].key, key))
                        p = &cfg->kafka[i];
        if (p && p->from_file != from_file && origin_same_source(p->origin, origin)) {
                nc_err(errstr, errstr_size, "kafka: %s and %s_file are both set (the other at %s)",
                       key, key, p->origin);
                if (secret)
                        secret_wipe(secret);
                free(secret);
                free(base);
                return -1;
        }
        if (!p) {
                if (cfg->kafka_n == cfg->kafka_cap) {
                        cfg->kafka_cap = cfg->kafka_cap ? cfg->kafka_cap * 2 : 16;
                        cfg->kafka = nc_xrealloc(cfg->kafka, cfg->kafka_cap * sizeof(*cfg->kafka));
                }
                p = &cfg->kafka[cfg->kafka_n++];
                memset(p, 0, sizeof(*p));
                p->key = nc_xstrdup(key);
        }
        if (p->value && p->from_file)
                secret_wipe(p->value);
        set_str(&p->value, value);
        set_str(&p->origin, origin);
        p->from_file = from_file;
        if (secret)
                secret_wipe(secret);
        free(secret);
        free(base);
        return 0;
}

int nc_config_set_kafka(nc_config_t *cfg, const char *key, const char *value, const char *origin,
                        char *errstr, size_t errstr_size)
{
        char kerr[600];

        if (kafka_set(cfg, key, value, origin, kerr, sizeof(kerr)) != 0)
                return nc_err(errstr, errstr_size, "%s: %s", origin, kerr);
        return 0;
}

int nc_config_apply_overrides(nc_config_t *cfg, const nc_strlist_t *xprops, const char *brokers,
                              char *errstr, size_t errstr_size)
{
        size_t i;

        for (i = 0; i < xprops->n; i++) {
                char *kv = nc_xstrdup(xprops->v[i]), *eq = strchr(kv, '=');
                int rc;

                if (!eq || eq == kv) {
                        nc_err(errstr, errstr_size, "-X %s: expected key=value", kv);
                        free(kv);
                        return -1;
                }
                *eq = '\0';
                rc = nc_config_set_kafka(cfg, kv, eq + 1, "-X", errstr, errstr_size);
                free(kv);
                if (rc != 0)
                        return -1;
        }
        if (brokers)
                return nc_config_set_kafka(cfg, "bootstrap.servers", brokers, "-b", errstr,
                                           errstr_size);
        return 0;
}

int nc_config_cmdline_opt(int c, const char *arg, const char **config_path, nc_strlist_t *xprops,
                          const char **brokers)
{
        switch (c) {
        case 'C':
                *config_path = arg;
                return 1;
        case 'X':
                nc_strlist_add(xprops, arg);
                return 1;
        case 'b':
                *brokers = arg;
                return 1;
        case 'v':
                nc_log_adjust(-1);
                return 1;
        case 'q':
                nc_log_adjust(+1);
                return 1;
        default:
                return 0;
        }
}

const char *nc_config_kafka_get(const nc_config_t *cfg, const char *key)
{
        size_t i;

        for (i = 0; i < cfg->kafka_n; i++)
                if (!strcmp(cfg->kafka[i].key, key))
                        return cfg->kafka[i].value;
        return NULL;
}

int nc_config_has_category(const nc_config_t *cfg, const char *category)
{
        return nc_strlist_has(&cfg->categories, category);
}

int nc_config_has_language(const nc_config_t *cfg, const char *lang)
{
        return nc_strlist_has(&cfg->languages, lang);
}

void nc_config_topic(const nc_config_t *cfg, const char *suffix, char *buf, size_t size)
{
        snprintf(buf, size, "%s%s", cfg->topic_prefix, suffix);
}

void nc_config_notice_topic(const nc_config_t *cfg, const char *category, char *buf, size_t size)
{
        snprintf(buf, size, "%snotices.%s", cfg->topic_prefix, category);
}

/* "<number> <unit>" up to MAX_MS; days ("d") only if DAYS. */
static int span_parse(const char *s, int days, double max_ms, int64_t *ms)
{
        char *end;
        double v;
        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || v < 0)
                return -1;
        while (*end == ' ')
                end++;
        if (!strcmp(end, "ms"))
                v *= 1;
        else if (!strcmp(end, "s"))
                v *= 1000;
        else if (!strcmp(end, "m"))
                v *= 60 * 1000;
        else if (!strcmp(end, "h"))
                v *= 3600 * 1000;
        else if (days && !strcmp(end, "d"))
                v *= 24 * 3600 * 1000;
        else
                return -1;
        if (v > max_ms)
                return -1;
        *ms = (int64_t)v;
        return 0;
}

int nc_duration_parse(const char *s, int64_t *ms)
{
        return span_parse(s, 0, 30.0 * 24 * 3600 * 1000, ms);
}

/* 1 h to 10 years, in h (or s, m) or d: how long a link stays good. */
int nc_lifetime_parse(const char *s, int64_t *ms)
{
        if (span_parse(s, 1, 10.0 * 365 * 24 * 3600 * 1000, ms) != 0 || *ms < 3600000)
                return -1;
        return 0;
}

/* Up to 100 years; less than a minute is a typo (Kafka would delete nearly at once). */
int nc_retention_parse(const char *s, int64_t *ms)
{
        if (!strcmp(s, "forever")) {
                *ms = -1;
                return 0;
        }
        if (span_parse(s, 1, 100.0 * 365 * 24 * 3600 * 1000, ms) != 0 || *ms < 60000)
                return -1;
        return 0;
}

void nc_retention_format(int64_t ms, char *buf, size_t size)
{
        if (ms < 0)
                snprintf(buf, size, "forever");
        else if (ms > 0 && ms % (24 * 3600 * 1000) == 0)
                snprintf(buf, size, "%lldd", (long long)(ms / (24 * 3600 * 1000)));
        else
                nc_duration_format(ms, buf, size);
}

void nc_duration_format(int64_t ms, char *buf, size_t size)
{
        if (ms > 0 && ms % 3600000 == 0)
                snprintf(buf, size, "%lldh", (long long)(ms / 3600000));
        else if (ms > 0 && ms % 60000 == 0)
                snprintf(buf, size, "%lldm", (long long)(ms / 60000));
        else if (ms > 0 && ms % 1000 == 0)
                snprintf(buf, size, "%llds", (long long)(ms / 1000));
        else
                snprintf(buf, size, "%lldms", (long long)ms);
}

const nc_partner_t *nc_config_partner(const nc_config_t *cfg, const char *id)
{
        size_t i;

        for (i = 0; i < cfg->partners_n; i++)
                if (!strcmp(cfg->partners[i].id, id))
                        return &cfg->partners[i];
        return NULL;
}

/* ---- parsing ---------------------------------------------------------------------------- */

struct parse_ctx {
        nc_config_t *cfg;
        const char *path;
        int line;         /* line being parsed, counted by ini_parse() */
        int section_line; /* line of the last [section] header */
        char err[512];
        int err_line;
};

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                if (!ctx->err[0]) {                                                                \
                        snprintf(ctx->err, sizeof(ctx->err), __VA_ARGS__);                         \
                        ctx->err_line = ctx->line;                                                 \
                }                                                                                  \
                return 0;                                                                          \
        } while (0)

/* The partner ID, created with the table's defaults on its first use. */
static nc_partner_t *partner_get(struct parse_ctx *ctx, const char *id)
{
        nc_config_t *cfg = ctx->cfg;
        nc_partner_t *p;
        size_t i;

        for (i = 0; i < cfg->partners_n; i++)
                if (!strcmp(cfg->partners[i].id, id))
                        return &cfg->partners[i];
        cfg->partners = nc_xrealloc(cfg->partners, (cfg->partners_n + 1) * sizeof(*p));
        p = &cfg->partners[cfg->partners_n++];
        memset(p, 0, sizeof(*p));
        p->id = nc_xstrdup(id);
        p->line = ctx->section_line;
        section_defaults("partner", p);
        return p;
}

/* One key = value of SECTION, which ini_section() has already checked. */
static int handler(struct parse_ctx *ctx, const char *section, const char *name, const char *value)
{
        const char *id = NULL;
        const struct section *sec = section_find(section, &id);
        char origin[PATH_MAX + 32], err[400];
        const struct key *k;
        void *base = ctx->cfg;

        switch (sec->kind) {
        case SEC_KAFKA:
                snprintf(origin, sizeof(origin), "%s:%d", ctx->path, ctx->line);
                if (kafka_set(ctx->cfg, name, value, origin, err, sizeof(err)) != 0)
                        FAIL("%s", err);
                return 1;
        case SEC_PER_ID:
                base = partner_get(ctx, id);
                break;
        case SEC_KEYS:
                break;
        }
        if (!(k = key_find(sec->name, name)))
                FAIL("unknown key '%s' in section [%s]", name, section);
        if (key_set(k, base, value, ctx->line, err, sizeof(err)) != 0)
                FAIL("%s%s%s: %s", sec->bare ? "" : section, sec->bare ? "" : ".", name, err);
        return 1;
}

/* The INI syntax, parsed here line by line (lines up to NC_CONFIG_LINE_MAX bytes; a NUL
 * byte, another control character but tab, or invalid UTF-8 is an error of its line):
 *   [section]            each section at most once; "; comment" or "# comment" may follow
 *   key = value          (or "key: value"); each key at most once per section
 *   ; comment, # comment whole-line comments; " ;" (a ';' after a blank) starts a comment
 *                        at the end of a value, as inih did
 * Blanks around names and values are ignored; an indented line is an ordinary line (no
 * continuation lines); CRLF line ends and a UTF-8 byte order mark are accepted. */
#define NC_CONFIG_LINE_MAX 65536

static int is_blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static char *trim(char *s, char *end)
{
        while (s < end && is_blank(*s))
                s++;
        while (end > s && is_blank(end[-1]))
                end--;
        *end = '\0';
        return s;
}

/* Names and lines of the sections seen so far, and the keys of the current one. */
struct seen {
        char **name;
        int *line;
        size_t n, cap;
};

static void seen_add(struct seen *s, const char *name, int line)
{
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 16;
                s->name = nc_xrealloc(s->name, s->cap * sizeof(*s->name));
                s->line = nc_xrealloc(s->line, s->cap * sizeof(*s->line));
        }
        s->name[s->n] = nc_xstrdup(name);
        s->line[s->n++] = line;
}

static int seen_line(const struct seen *s, const char *name)
{
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->name[i], name))
                        return s->line[i];
        return 0;
}

static void seen_clear(struct seen *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->name[i]);
        free(s->name);
        free(s->line);
        memset(s, 0, sizeof(*s));
}

struct ini {
        struct parse_ctx *ctx;
        char *section; /* current one, NULL before the first header */
        struct seen sections, keys;
};

#define SYNTAX_ERROR "syntax error (expected [section] or key = value)"

static int ini_section(struct ini *ini, char *s, char *end)
{
        struct parse_ctx *ctx = ini->ctx;
        char *close = memchr(s, ']', (size_t)(end - s)), *name, *rest;
        const struct section *sec;
        const char *id = NULL;
        int first;

        if (!close)
                FAIL(SYNTAX_ERROR);
        rest = trim(close + 1, end);
        if (*rest && *rest != ';' && *rest != '#')
                FAIL("syntax error (text after ']')");
        name = trim(s + 1, close);
        if (!(sec = section_find(name, &id)))
                FAIL("unknown section [%s]", name);
        if (sec->kind == SEC_PER_ID && !ident_ok(id, 0))
                FAIL("[%s]: the id may only contain a-z, 0-9, '-' and '_'", name);
        if ((first = seen_line(&ini->sections, name)) != 0)
                FAIL("section [%s] already defined at line %d", name, first);
        seen_add(&ini->sections, name, ctx->line);
        seen_clear(&ini->keys);
        free(ini->section);
        ini->section = nc_xstrdup(name);
        ctx->section_line = ctx->line;
        /* A partner exists from its header on, so one whose keys are all commented out is
         * reported (url is required) rather than silently ignored. */
        if (sec->kind == SEC_PER_ID)
                partner_get(ctx, id);
        return 1;
}

static int ini_key(struct ini *ini, char *s, char *end)
{
        struct parse_ctx *ctx = ini->ctx;
        char *sep = s, *name, *value, *v;
        int first;

        while (sep < end && *sep != '=' && *sep != ':')
                sep++;
        if (sep == end)
                FAIL(SYNTAX_ERROR);
        name = trim(s, sep);
        if (!*name)
                FAIL("syntax error (no key before '%c')", *sep);
        /* A ';' after a blank starts a comment (inih's rule): "a;b" stays a value. */
        for (v = sep + 1; v < end; v++)
                if (*v == ';' && is_blank(v[-1]))
                        break;
        value = trim(sep + 1, v);
        if (!ini->section)
                FAIL("key '%s' outside of any section", name);
        if ((first = seen_line(&ini->keys, name)) != 0)
                FAIL("key '%s' already set at line %d in [%s]", name, first, ini->section);
        seen_add(&ini->keys, name, ctx->line);
        return handler(ctx, ini->section, name, value);
}

/* Parses TEXT (LEN bytes, NUL-terminated, modified in place).  Stops at the first error,
 * left in ctx->err / ctx->err_line. */
static void ini_parse(struct parse_ctx *ctx, char *text, size_t len)
{
        struct ini ini = {.ctx = ctx};
        char *p = text, *end = text + len;

        if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3))
                p += 3;
        while (p < end && !ctx->err[0]) {
                char *eol = memchr(p, '\n', (size_t)(end - p)), *lend = eol ? eol : end, *s;
                size_t n = (size_t)(lend - p);

                ctx->line++;
                if (n > NC_CONFIG_LINE_MAX) {
                        snprintf(ctx->err, sizeof(ctx->err), "line is longer than %d bytes",
                                 NC_CONFIG_LINE_MAX);
                        ctx->err_line = ctx->line;
                        break;
                }
                if (memchr(p, '\0', n)) {
                        snprintf(ctx->err, sizeof(ctx->err), "contains a NUL byte");
                        ctx->err_line = ctx->line;
                        break;
                }
                if (!nc_utf8_valid(p, n)) {
                        snprintf(ctx->err, sizeof(ctx->err), "not valid UTF-8");
                        ctx->err_line = ctx->line;
                        break;
                }
                s = trim(p, lend);
                /* Raw control characters (a stray CR mid-line, an escape sequence pasted from a
                 * terminal) would end up in URLs, headers or file names. */
                for (const char *c = s; *c; c++) {
                        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
                                snprintf(ctx->err, sizeof(ctx->err),
                                         "contains a control character (0x%02X)",
                                         (unsigned char)*c);
                                ctx->err_line = ctx->line;
                                break;
                        }
                }
                if (ctx->err[0])
                        break;
                if (*s == '[')
                        ini_section(&ini, s, s + strlen(s));
                else if (*s && *s != ';' && *s != '#')
                        ini_key(&ini, s, s + strlen(s));
                p = eol ? eol + 1 : end;
        }
        free(ini.section);
        seen_clear(&ini.sections);
        seen_clear(&ini.keys);
}

/* Retention KIND must be forever or at least MIN_MS (WHAT, WHY). */
static int retention_check(const nc_config_t *cfg, nc_topic_kind_t kind, const char *key,
                           int64_t min_ms, const char *what, const char *why, char *errstr,
                           size_t errstr_size)
{
        const nc_topic_settings_t *t = &cfg->topic[kind];
        char at[PATH_MAX + 32], have[32], need[32];

        if (t->retention_ms < 0 || t->retention_ms >= min_ms)
                return 0;
        if (t->retention_line)
                snprintf(at, sizeof(at), "%s:%d", cfg->path, t->retention_line);
        else
                snprintf(at, sizeof(at), "%s", cfg->path ? cfg->path : "built-in defaults");
        nc_retention_format(t->retention_ms, have, sizeof(have));
        nc_retention_format(min_ms, need, sizeof(need));
        return nc_err(errstr, errstr_size,
                      "%s: topics.%s_retention: %s%s is shorter than %s (%s): %s", at, key, have,
                      t->retention_line ? "" : " (the default)", what, need, why);
}

static int topics_check(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        int64_t longest = 0;
        size_t i;

        for (i = 0; i < cfg->webhooks.retry_n; i++)
                if (cfg->webhooks.retry_ms[i] > longest)
                        longest = cfg->webhooks.retry_ms[i];
        /* Longer than the step: a retry is read when it is due, not as it expires. */
        if (retention_check(cfg, NC_TOPIC_WEBHOOKS_RETRY, "webhooks_retry", 2 * longest,
                            "twice the longest [webhooks] retry_schedule step",
                            "a parked retry would be deleted before it is due", errstr,
                            errstr_size) != 0)
                return -1;
        return retention_check(cfg, NC_TOPIC_NOTICES, "notices", 7LL * 24 * 3600 * 1000, "a week",
                               "weekly digests would miss notices", errstr, errstr_size);
}

static int config_check(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        const char *where = cfg->path ? cfg->path : "built-in defaults";

        size_t i, j;

        if (topics_check(cfg, errstr, errstr_size) != 0)
                return -1;
        if (!nc_strlist_has(&cfg->languages, cfg->default_language))
                return nc_err(errstr, errstr_size,
                              "%s: noticecast.default_language '%s' is not in languages", where,
                              cfg->default_language);
        for (i = 0; i < cfg->partners_n; i++) {
                const nc_partner_t *p = &cfg->partners[i];

                if (!p->url)
                        return nc_err(errstr, errstr_size, "%s:%d: partner.%s: url is required",
                                      where, p->line, p->id);
                if (!p->secret_file)
                        return nc_err(errstr, errstr_size,
                                      "%s:%d: partner.%s: secret_file is required", where, p->line,
                                      p->id);
                if (!p->client_cert != !p->client_key)
                        return nc_err(errstr, errstr_size,
                                      "%s:%d: partner.%s: client_cert and client_key go together",
                                      where, p->line, p->id);
                for (j = 0; j < p->categories.n; j++)
                        if (!nc_config_has_category(cfg, p->categories.v[j]))
                                return nc_err(errstr, errstr_size,
                                              "%s:%d: partner.%s: category '%s' is not "
                                              "configured",
                                              where, p->line, p->id, p->categories.v[j]);
        }
        return 0;
}

int nc_config_load(nc_config_t *cfg, const char *path, int explicit_path, char *errstr,
                   size_t errstr_size)
{
        struct parse_ctx ctx = {.cfg = cfg, .path = path};
        char ferr[512];
        size_t len = 0;
        char *text;

        nc_config_defaults(cfg);
        text = nc_file_read(path, &len, ferr, sizeof(ferr));
        if (!text) {
                if (!explicit_path && errno == ENOENT) {
                        log_debug("no configuration file at %s: using built-in defaults", path);
                        return config_check(cfg, errstr, errstr_size);
                }
                nc_config_free(cfg);
                return nc_err(errstr, errstr_size, "%s", ferr);
        }
        cfg->path = nc_xstrdup(path);
        ini_parse(&ctx, text, len);
        free(text);
        if (ctx.err[0]) {
                nc_err(errstr, errstr_size, "%s:%d: %s", path, ctx.err_line, ctx.err);
                nc_config_free(cfg);
                return -1;
        }
        if (config_check(cfg, errstr, errstr_size) != 0) {
                nc_config_free(cfg);
                return -1;
        }
        return 0;
}

int nc_config_check_webhooks(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        if (cfg->partners_n == 0)
                return nc_err(errstr, errstr_size,
                              "%s: no [partner.<id>] section: every notice would be read, "
                              "committed and delivered nowhere (add a partner with url and "
                              "secret_file)",
                              cfg->path ? cfg->path : "built-in defaults");
        return 0;
}

int nc_config_check_mailer(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        char why[512];

        /* A from_address written in the file was checked when it was read; the built-in
         * default (notices@localhost) is not, and a relay refuses it for every message. */
        if (nc_email_valid(cfg->mailer.from_address, why, sizeof(why)) != 0)
                return nc_err(errstr, errstr_size,
                              "%s: mailer.from_address: %s: every message would end mail.failed "
                              "and never be retried (set from_address to an address of your "
                              "domain)",
                              cfg->path ? cfg->path : "built-in defaults", why);
        return 0;
}
