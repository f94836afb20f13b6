#include "nc_config.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifndef NC_SYSCONFDIR
#define NC_SYSCONFDIR "/etc"
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

static void set_str(char **dst, const char *v)
{
        free(*dst);
        *dst = nc_xstrdup(v);
}

void nc_config_defaults(nc_config_t *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->topic_prefix = nc_xstrdup("noticecast.");
        nc_strlist_split(&cfg->categories, "news, press, tenders, alerts");
        nc_strlist_split(&cfg->languages, "en, es, pt, ko");
        cfg->default_language = nc_xstrdup("en");
        cfg->default_timezone = nc_xstrdup("UTC");
        cfg->partitions = 3;
        cfg->replication_factor = 1;
        cfg->producer_timeout_ms = 30000;
        cfg->title_max = 300;
        cfg->summary_max = 2000;
        cfg->body_max = 65536;
        cfg->notice_max = 256 * 1024;
        cfg->webhooks.group_id = nc_xstrdup("noticecast-webhooks");
        cfg->webhooks.listen = nc_xstrdup("127.0.0.1:9464");
        nc_duration_parse("5s", &cfg->webhooks.retry_ms[0]);
        {
                /* Standard Webhooks / Svix schedule */
                static const char *const sched[] = {"5s", "5m", "30m", "2h", "5h", "10h", "10h"};
                size_t i;

                for (i = 0; i < 7; i++)
                        nc_duration_parse(sched[i], &cfg->webhooks.retry_ms[i]);
                cfg->webhooks.retry_n = 7;
        }
        cfg->webhooks.retry_after_max_ms = 3600 * 1000;
        cfg->mailer.group_id = nc_xstrdup("noticecast-mailer");
        cfg->mailer.listen = nc_xstrdup("127.0.0.1:9465");
        cfg->mailer.from_name = nc_xstrdup("noticecast");
        cfg->mailer.from_address = nc_xstrdup("notices@localhost");
        cfg->mailer.list_id = nc_xstrdup("notices.localhost");
        cfg->mailer.unsubscribe_url = nc_xstrdup("http://127.0.0.1:9465/unsubscribe");
        cfg->mailer.templates = nc_xstrdup(NC_SYSCONFDIR "/noticecast/templates");
        cfg->mailer.message_id_domain = nc_xstrdup("localhost");
        cfg->mailer.weekly_day = 1;
        cfg->mailer.max_notices = 50;
        cfg->mailer.bounce_suppress_after = 3;
        {
                static const char *const sched[] = {"1m", "5m", "15m", "1h", "4h"};

                for (size_t i = 0; i < 5; i++)
                        nc_duration_parse(sched[i], &cfg->mailer.retry_ms[i]);
                cfg->mailer.retry_n = 5;
        }
        cfg->mailer.shutdown_timeout_ms = 30 * 1000;
        cfg->smtp.host = nc_xstrdup("localhost");
        cfg->smtp.port = 25;
        cfg->smtp.starttls = 1;
        cfg->smtp.sessions = 4;
        cfg->smtp.batch = 200;
        cfg->smtp.timeout_ms = 30000;
        cfg->webhooks.max_pending = 10000;
        cfg->webhooks.shutdown_timeout_ms = 30 * 1000;
        /* Defaults that make the producer safe: the brief's delivery contract needs these. */
        nc_config_set_kafka(cfg, "bootstrap.servers", "localhost:9092", "default", NULL, 0);
}

void nc_config_free(nc_config_t *cfg)
{
        size_t i;

        free(cfg->path);
        free(cfg->topic_prefix);
        nc_strlist_clear(&cfg->categories);
        nc_strlist_clear(&cfg->languages);
        free(cfg->default_language);
        free(cfg->default_timezone);
        for (i = 0; i < cfg->kafka_n; i++) {
                free(cfg->kafka[i].key);
                free(cfg->kafka[i].value);
                free(cfg->kafka[i].origin);
        }
        free(cfg->kafka);
        free(cfg->webhooks.group_id);
        free(cfg->webhooks.listen);
        for (i = 0; i < cfg->partners_n; i++) {
                nc_partner_t *p = &cfg->partners[i];

                free(p->id);
                free(p->url);
                free(p->secret_file);
                nc_strlist_clear(&p->categories);
                nc_strlist_clear(&p->regions);
                free(p->ca_file);
                free(p->client_cert);
                free(p->client_key);
        }
        free(cfg->partners);
        free(cfg->mailer.group_id);
        free(cfg->mailer.listen);
        free(cfg->mailer.from_name);
        free(cfg->mailer.from_address);
        free(cfg->mailer.envelope_from);
        free(cfg->mailer.list_id);
        free(cfg->mailer.unsubscribe_url);
        free(cfg->mailer.unsubscribe_mailto);
        free(cfg->mailer.unsubscribe_secret_file);
        free(cfg->mailer.templates);
        free(cfg->mailer.message_id_domain);
        free(cfg->smtp.host);
        free(cfg->smtp.username);
        free(cfg->smtp.password_file);
        free(cfg->smtp.ca_file);
        free(cfg->smtp.helo);
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

int nc_config_set_kafka(nc_config_t *cfg, const char *key, const char *value, const char *origin,
                        char *errstr, size_t errstr_size)
{
        char kerr[300];
        size_t i;

        if (kafka_check(key, value, kerr, sizeof(kerr)) != 0)
                return nc_err(errstr, errstr_size, "%s: %s", origin, kerr);
        for (i = 0; i < cfg->kafka_n; i++) {
                if (!strcmp(cfg->kafka[i].key, key)) {
                        set_str(&cfg->kafka[i].value, value);
                        set_str(&cfg->kafka[i].origin, origin);
                        return 0;
                }
        }
        if (cfg->kafka_n == cfg->kafka_cap) {
                cfg->kafka_cap = cfg->kafka_cap ? cfg->kafka_cap * 2 : 16;
                cfg->kafka = nc_xrealloc(cfg->kafka, cfg->kafka_cap * sizeof(*cfg->kafka));
        }
        cfg->kafka[cfg->kafka_n].key = nc_xstrdup(key);
        cfg->kafka[cfg->kafka_n].value = nc_xstrdup(value);
        cfg->kafka[cfg->kafka_n].origin = nc_xstrdup(origin);
        cfg->kafka_n++;
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

int nc_duration_parse(const char *s, int64_t *ms)
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
        else
                return -1;
        if (v > 30.0 * 24 * 3600 * 1000)
                return -1;
        *ms = (int64_t)v;
        return 0;
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

static int parse_int(const char *v, long min, long max, long *out)
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

#define FAIL(...)                                                                                  \
        do {                                                                                       \
                if (!ctx->err[0]) {                                                                \
                        snprintf(ctx->err, sizeof(ctx->err), __VA_ARGS__);                         \
                        ctx->err_line = ctx->line;                                                 \
                }                                                                                  \
                return 0;                                                                          \
        } while (0)

static int set_list(struct parse_ctx *ctx, nc_strlist_t *l, const char *name, const char *v)
{
        nc_strlist_t tmp = {0};
        size_t i;

        nc_strlist_split(&tmp, v);
        for (i = 0; i < tmp.n; i++) {
                if (!ident_ok(tmp.v[i], 0)) {
                        snprintf(ctx->err, sizeof(ctx->err),
                                 "%s: '%s' must be lower-case letters, digits, '-' or '_'", name,
                                 tmp.v[i]);
                        ctx->err_line = ctx->line;
                        nc_strlist_clear(&tmp);
                        return 0;
                }
        }
        if (tmp.n == 0) {
                snprintf(ctx->err, sizeof(ctx->err), "%s: must not be empty", name);
                ctx->err_line = ctx->line;
                return 0;
        }
        nc_strlist_clear(l);
        *l = tmp;
        return 1;
}

static int handle_noticecast(struct parse_ctx *ctx, const char *name, const char *v)
{
        nc_config_t *cfg = ctx->cfg;

        if (!strcmp(name, "topic_prefix")) {
                if (*v && !ident_ok(v, 1))
                        FAIL("topic_prefix: '%s' may only contain letters, digits, '.', '-', '_'",
                             v);
                set_str(&cfg->topic_prefix, v);
        } else if (!strcmp(name, "categories")) {
                if (!ctx->err[0] && !set_list(ctx, &cfg->categories, name, v))
                        return 0;
        } else if (!strcmp(name, "languages")) {
                if (!ctx->err[0] && !set_list(ctx, &cfg->languages, name, v))
                        return 0;
        } else if (!strcmp(name, "default_language")) {
                set_str(&cfg->default_language, v);
        } else if (!strcmp(name, "default_timezone")) {
                if (!nc_tz_valid(v))
                        FAIL("default_timezone: '%s' is not a known IANA time zone", v);
                set_str(&cfg->default_timezone, v);
        } else {
                FAIL("unknown key '%s' in section [noticecast]", name);
        }
        return 1;
}

static int handle_int(struct parse_ctx *ctx, const char *section, const char *name, const char *v,
                      long min, long max, long *out);

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

static int handle_webhooks(struct parse_ctx *ctx, const char *name, const char *v)
{
        nc_webhooks_config_t *w = &ctx->cfg->webhooks;
        int64_t ms;
        long n;

        if (!strcmp(name, "group_id")) {
                if (!*v)
                        FAIL("webhooks.group_id: must not be empty");
                set_str(&w->group_id, v);
        } else if (!strcmp(name, "listen")) {
                set_str(&w->listen, v);
        } else if (!strcmp(name, "retry_schedule")) {
                nc_strlist_t l = {0};
                size_t i;

                nc_strlist_split(&l, v);
                if (l.n == 0 || l.n > sizeof(w->retry_ms) / sizeof(w->retry_ms[0])) {
                        nc_strlist_clear(&l);
                        FAIL("webhooks.retry_schedule: needs 1 to 16 durations");
                }
                for (i = 0; i < l.n; i++) {
                        if (nc_duration_parse(l.v[i], &ms) != 0 || ms < 100) {
                                snprintf(ctx->err, sizeof(ctx->err),
                                         "webhooks.retry_schedule: '%s' is not a duration like "
                                         "5s, 5m or 2h (at least 100ms)",
                                         l.v[i]);
                                ctx->err_line = ctx->line;
                                nc_strlist_clear(&l);
                                return 0;
                        }
                        w->retry_ms[i] = ms;
                }
                w->retry_n = l.n;
                nc_strlist_clear(&l);
        } else if (!strcmp(name, "retry_after_max") || !strcmp(name, "shutdown_timeout")) {
                if (nc_duration_parse(v, &ms) != 0)
                        FAIL("webhooks.%s: '%s' is not a duration like 30s, 5m or 1h", name, v);
                if (name[0] == 'r')
                        w->retry_after_max_ms = ms;
                else
                        w->shutdown_timeout_ms = ms;
        } else if (!strcmp(name, "max_pending")) {
                if (!handle_int(ctx, "webhooks", name, v, 1, 10000000, &n))
                        return 0;
                w->max_pending = (int)n;
        } else {
                FAIL("unknown key '%s' in section [webhooks]", name);
        }
        return 1;
}

static int handle_mailer(struct parse_ctx *ctx, const char *name, const char *v)
{
        static const char *const days[] = {"sunday",   "monday", "tuesday", "wednesday",
                                           "thursday", "friday", "saturday"};
        nc_mailer_config_t *m = &ctx->cfg->mailer;
        char **str = !strcmp(name, "group_id")                  ? &m->group_id
                     : !strcmp(name, "listen")                  ? &m->listen
                     : !strcmp(name, "from_name")               ? &m->from_name
                     : !strcmp(name, "from_address")            ? &m->from_address
                     : !strcmp(name, "envelope_from")           ? &m->envelope_from
                     : !strcmp(name, "list_id")                 ? &m->list_id
                     : !strcmp(name, "unsubscribe_url")         ? &m->unsubscribe_url
                     : !strcmp(name, "unsubscribe_mailto")      ? &m->unsubscribe_mailto
                     : !strcmp(name, "unsubscribe_secret_file") ? &m->unsubscribe_secret_file
                     : !strcmp(name, "templates")               ? &m->templates
                     : !strcmp(name, "message_id_domain")       ? &m->message_id_domain
                                                                : NULL;
        int64_t ms;
        long n;
        int i;

        if (str) {
                /* Everything here ends up in headers or URLs: one line, no controls. */
                for (const char *p = v; *p; p++)
                        if ((unsigned char)*p < 0x20 || *p == 0x7f)
                                FAIL("mailer.%s: contains a control character", name);
                if (!strcmp(name, "from_address") || !strcmp(name, "envelope_from") ||
                    !strcmp(name, "unsubscribe_mailto")) {
                        char e[256];

                        if (nc_email_valid(v, e, sizeof(e)) != 0)
                                FAIL("mailer.%s: %s", name, e);
                }
                if (!strcmp(name, "unsubscribe_url") && strncmp(v, "https://", 8) &&
                    strncmp(v, "http://", 7))
                        FAIL("mailer.unsubscribe_url: must start with https:// or http://");
                set_str(str, v);
        } else if (!strcmp(name, "weekly_day")) {
                for (i = 0; i < 7 && strcmp(v, days[i]); i++)
                        ;
                if (i == 7)
                        FAIL("mailer.weekly_day: '%s' must be a day name like monday", v);
                m->weekly_day = i;
        } else if (!strcmp(name, "max_notices")) {
                if (!handle_int(ctx, "mailer", name, v, 1, 1000, &n))
                        return 0;
                m->max_notices = (int)n;
        } else if (!strcmp(name, "bounce_suppress_after")) {
                if (!handle_int(ctx, "mailer", name, v, 1, 1000, &n))
                        return 0;
                m->bounce_suppress_after = (int)n;
        } else if (!strcmp(name, "retry_schedule")) {
                nc_strlist_t l = {0};
                size_t k;

                nc_strlist_split(&l, v);
                if (l.n == 0 || l.n > sizeof(m->retry_ms) / sizeof(m->retry_ms[0])) {
                        nc_strlist_clear(&l);
                        FAIL("mailer.retry_schedule: needs 1 to 16 durations");
                }
                for (k = 0; k < l.n; k++) {
                        if (nc_duration_parse(l.v[k], &ms) != 0) {
                                snprintf(ctx->err, sizeof(ctx->err),
                                         "mailer.retry_schedule: '%s' is not a duration", l.v[k]);
                                ctx->err_line = ctx->line;
                                nc_strlist_clear(&l);
                                return 0;
                        }
                        m->retry_ms[k] = ms;
                }
                m->retry_n = l.n;
                nc_strlist_clear(&l);
        } else if (!strcmp(name, "shutdown_timeout")) {
                if (nc_duration_parse(v, &ms) != 0)
                        FAIL("mailer.shutdown_timeout: '%s' is not a duration", v);
                m->shutdown_timeout_ms = ms;
        } else {
                FAIL("unknown key '%s' in section [mailer]", name);
        }
        return 1;
}

static int handle_smtp(struct parse_ctx *ctx, const char *name, const char *v)
{
        nc_smtp_settings_t *s = &ctx->cfg->smtp;
        char *end;
        long n;

        if (!strcmp(name, "host") || !strcmp(name, "username") || !strcmp(name, "password_file") ||
            !strcmp(name, "ca_file") || !strcmp(name, "helo")) {
                char **dst = name[0] == 'h'   ? (name[1] == 'o' ? &s->host : &s->helo)
                             : name[0] == 'u' ? &s->username
                             : name[0] == 'p' ? &s->password_file
                                              : &s->ca_file;
                set_str(dst, v);
        } else if (!strcmp(name, "port")) {
                if (!handle_int(ctx, "smtp", name, v, 1, 65535, &n))
                        return 0;
                s->port = (int)n;
        } else if (!strcmp(name, "starttls")) {
                if (!strcmp(v, "off"))
                        s->starttls = 0;
                else if (!strcmp(v, "optional"))
                        s->starttls = 1;
                else if (!strcmp(v, "required"))
                        s->starttls = 2;
                else
                        FAIL("smtp.starttls: '%s' must be required, optional or off", v);
        } else if (!strcmp(name, "sessions")) {
                if (!handle_int(ctx, "smtp", name, v, 1, 64, &n))
                        return 0;
                s->sessions = (int)n;
        } else if (!strcmp(name, "batch")) {
                if (!handle_int(ctx, "smtp", name, v, 1, 10000, &n))
                        return 0;
                s->batch = (int)n;
        } else if (!strcmp(name, "timeout_ms")) {
                if (!handle_int(ctx, "smtp", name, v, 100, 600000, &n))
                        return 0;
                s->timeout_ms = (int)n;
        } else if (!strcmp(name, "rate_limit")) {
                errno = 0;
                s->rate_limit = strtod(v, &end);
                if (errno || end == v || *end || s->rate_limit < 0)
                        FAIL("smtp.rate_limit: '%s' must be messages per second (0 = no limit)", v);
        } else if (!strcmp(name, "allow_plaintext_auth")) {
                int b;

                if (parse_bool(v, &b) != 0)
                        FAIL("smtp.allow_plaintext_auth: '%s' must be true or false", v);
                s->allow_plaintext_auth = b;
        } else {
                FAIL("unknown key '%s' in section [smtp]", name);
        }
        return 1;
}

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
        p->timeout_ms = 10000;
        p->max_in_flight = 4;
        p->tls_verify = 1;
        p->enabled = 1;
        return p;
}

static int handle_partner(struct parse_ctx *ctx, const char *id, const char *name, const char *v)
{
        nc_partner_t *p;
        char *end;
        long n;
        int b;

        if (!ident_ok(id, 0))
                FAIL("[partner.%s]: the id may only contain a-z, 0-9, '-' and '_'", id);
        p = partner_get(ctx, id);
        if (p->line != ctx->section_line)
                FAIL("[partner.%s]: defined twice (first at line %d)", id, p->line);
        if (!strcmp(name, "url")) {
                if (strncmp(v, "https://", 8) && strncmp(v, "http://", 7))
                        FAIL("partner.%s.url: must start with https:// or http://", id);
                set_str(&p->url, v);
        } else if (!strcmp(name, "secret_file")) {
                set_str(&p->secret_file, v);
                p->secret_file_line = ctx->line;
        } else if (!strcmp(name, "categories")) {
                nc_strlist_clear(&p->categories);
                nc_strlist_split(&p->categories, v);
        } else if (!strcmp(name, "regions")) {
                nc_strlist_clear(&p->regions);
                nc_strlist_split(&p->regions, v);
                for (size_t i = 0; i < p->regions.n; i++)
                        nc_str_upper(p->regions.v[i]);
        } else if (!strcmp(name, "format")) {
                if (!strcmp(v, "standard"))
                        p->format = NC_FORMAT_STANDARD;
                else if (!strcmp(v, "cloudevents"))
                        p->format = NC_FORMAT_CLOUDEVENTS;
                else
                        FAIL("partner.%s.format: '%s' must be standard or cloudevents", id, v);
        } else if (!strcmp(name, "timeout_ms")) {
                if (!handle_int(ctx, "partner", name, v, 100, 600000, &n))
                        return 0;
                p->timeout_ms = (int)n;
        } else if (!strcmp(name, "max_in_flight")) {
                if (!handle_int(ctx, "partner", name, v, 1, 1024, &n))
                        return 0;
                p->max_in_flight = (int)n;
        } else if (!strcmp(name, "rate_limit")) {
                errno = 0;
                p->rate_limit = strtod(v, &end);
                if (errno || end == v || *end || p->rate_limit < 0)
                        FAIL("partner.%s.rate_limit: '%s' must be requests per second (0 = no "
                             "limit)",
                             id, v);
        } else if (!strcmp(name, "ca_file")) {
                set_str(&p->ca_file, v);
        } else if (!strcmp(name, "client_cert")) {
                set_str(&p->client_cert, v);
        } else if (!strcmp(name, "client_key")) {
                set_str(&p->client_key, v);
        } else if (!strcmp(name, "tls_verify") || !strcmp(name, "enabled")) {
                if (parse_bool(v, &b) != 0)
                        FAIL("partner.%s.%s: '%s' must be true or false", id, name, v);
                if (name[0] == 't')
                        p->tls_verify = b;
                else
                        p->enabled = b;
        } else {
                FAIL("unknown key '%s' in section [partner.%s]", name, id);
        }
        return 1;
}

static int handle_int(struct parse_ctx *ctx, const char *section, const char *name, const char *v,
                      long min, long max, long *out)
{
        if (parse_int(v, min, max, out) != 0)
                FAIL("%s.%s: '%s' is not an integer between %ld and %ld", section, name, v, min,
                     max);
        return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
        struct parse_ctx *ctx = user;
        nc_config_t *cfg = ctx->cfg;
        char origin[PATH_MAX + 32], kerr[512];
        long n;

        if (!strcmp(section, "noticecast"))
                return handle_noticecast(ctx, name, value);
        if (!strcmp(section, "webhooks"))
                return handle_webhooks(ctx, name, value);
        if (!strcmp(section, "mailer"))
                return handle_mailer(ctx, name, value);
        if (!strcmp(section, "smtp"))
                return handle_smtp(ctx, name, value);
        if (!strncmp(section, "partner.", 8))
                return handle_partner(ctx, section + 8, name, value);
        if (!strcmp(section, "kafka")) {
                if (kafka_check(name, value, kerr, sizeof(kerr)) != 0)
                        FAIL("%s", kerr);
                snprintf(origin, sizeof(origin), "%s:%d", ctx->path, ctx->line);
                nc_config_set_kafka(cfg, name, value, origin, NULL, 0);
                return 1;
        }
        if (!strcmp(section, "topics")) {
                if (!strcmp(name, "partitions")) {
                        if (!handle_int(ctx, section, name, value, 1, 10000, &n))
                                return 0;
                        cfg->partitions = (int)n;
                } else if (!strcmp(name, "replication_factor")) {
                        if (!handle_int(ctx, section, name, value, 1, 32, &n))
                                return 0;
                        cfg->replication_factor = (int)n;
                } else {
                        FAIL("unknown key '%s' in section [topics]", name);
                }
                return 1;
        }
        if (!strcmp(section, "producer")) {
                if (!strcmp(name, "timeout_ms")) {
                        if (!handle_int(ctx, section, name, value, 100, 3600000, &n))
                                return 0;
                        cfg->producer_timeout_ms = (int)n;
                } else {
                        FAIL("unknown key '%s' in section [producer]", name);
                }
                return 1;
        }
        if (!strcmp(section, "limits")) {
                size_t *dst = !strcmp(name, "title_max_bytes")     ? &cfg->title_max
                              : !strcmp(name, "summary_max_bytes") ? &cfg->summary_max
                              : !strcmp(name, "body_max_bytes")    ? &cfg->body_max
                              : !strcmp(name, "notice_max_bytes")  ? &cfg->notice_max
                                                                   : NULL;
                if (!dst)
                        FAIL("unknown key '%s' in section [limits]", name);
                /* 900 KiB cap: stays under Kafka's default 1 MiB message.max.bytes. */
                if (!handle_int(ctx, section, name, value, 16, 900 * 1024, &n))
                        return 0;
                *dst = (size_t)n;
                return 1;
        }
        if (!*section)
                FAIL("key '%s' outside of any section", name);
        FAIL("unknown section [%s]", section);
}

static const char *const known_sections[] = {"noticecast", "kafka",  "topics", "producer", "limits",
                                             "webhooks",   "mailer", "smtp",   NULL};

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
        int first;
        size_t i;

        if (!close)
                FAIL(SYNTAX_ERROR);
        rest = trim(close + 1, end);
        if (*rest && *rest != ';' && *rest != '#')
                FAIL("syntax error (text after ']')");
        name = trim(s + 1, close);
        if (strncmp(name, "partner.", 8)) {
                for (i = 0; known_sections[i]; i++)
                        if (!strcmp(name, known_sections[i]))
                                break;
                if (!known_sections[i])
                        FAIL("unknown section [%s]", name);
        } else if (!ident_ok(name + 8, 0)) {
                FAIL("[%s]: the id may only contain a-z, 0-9, '-' and '_'", name);
        }
        if ((first = seen_line(&ini->sections, name)) != 0)
                FAIL("section [%s] already defined at line %d", name, first);
        seen_add(&ini->sections, name, ctx->line);
        seen_clear(&ini->keys);
        free(ini->section);
        ini->section = nc_xstrdup(name);
        ctx->section_line = ctx->line;
        /* A partner exists from its header on, so one whose keys are all commented out is
         * reported (url is required) rather than silently ignored. */
        if (!strncmp(name, "partner.", 8))
                partner_get(ctx, name + 8);
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

static int config_check(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        const char *where = cfg->path ? cfg->path : "built-in defaults";

        size_t i, j;

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
