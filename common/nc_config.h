/* Configuration: one INI file (parsed by nc_config.c itself) plus -X/-b overrides from the
 * command line.
 *
 * Lookup order: -C FILE, else $NOTICECAST_CONFIG, else NC_SYSCONFDIR/noticecast/noticecast.conf.
 * Errors read "file:line: message"; unknown sections and keys are errors, so a typo never
 * silently falls back to a default, and so are a key set twice in a section, a section given
 * twice, a NUL byte, invalid UTF-8 and a line over 64 KiB.  [kafka] keys go straight to
 * librdkafka and are checked against it at load time (an empty bootstrap.servers is refused).
 * A [kafka] key KEY_file (or -X KEY_file=PATH) sets KEY to the content of the secret file PATH,
 * less one trailing newline; librdkafka has no property ending in "_file", so this is
 * unambiguous.  KEY and KEY_file from the same source (the file, or -X) are refused. */
#ifndef NC_CONFIG_H
#define NC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "nc_util.h"

/* One librdkafka property and where it came from (for error messages). */
typedef struct nc_kafka_prop {
        char *key;
        char *value;
        char *origin;  /* "file:line" or "-X" */
        int from_file; /* set by KEY_file: the value is a secret, never shown */
} nc_kafka_prop_t;

enum nc_webhook_format { NC_FORMAT_STANDARD = 0, NC_FORMAT_CLOUDEVENTS };

/* A [partner.<id>] section: one agency receiving signed webhooks. */
typedef struct nc_partner {
        char *id;
        int line; /* of the section header, for errors found after parsing */
        char *url;
        char *secret_file;
        int secret_file_line;
        nc_strlist_t categories; /* empty = all */
        nc_strlist_t regions;    /* empty = all */
        enum nc_webhook_format format;
        int timeout_ms;
        int max_in_flight;
        double rate_limit; /* requests per second, 0 = unlimited */
        char *ca_file;
        char *client_cert;
        char *client_key;
        int tls_verify;
        int enabled;
} nc_partner_t;

/* [webhooks]: the noticecast-webhooks daemon. */
typedef struct nc_webhooks_config {
        char *group_id;
        char *listen;           /* metrics/health address, "" = off */
        int64_t kafka_grace_ms; /* a Kafka outage this short leaves /readyz 200 */
        int64_t retry_ms[16];
        size_t retry_n;
        int64_t retry_after_max_ms;
        int max_pending;
        int64_t shutdown_timeout_ms;
} nc_webhooks_config_t;

/* [mailer]: the noticecast-mailer daemon. */
typedef struct nc_mailer_config {
        char *group_id;
        char *listen;           /* admin: metrics/health address, "" = off */
        char *public_listen;    /* public: /unsubscribe address, "" = off */
        int64_t kafka_grace_ms; /* a Kafka outage this short leaves /readyz 200 */
        char *from_name;
        char *from_address;
        char *envelope_from; /* default: from_address */
        /* Between envelope_from's local part and a VERP token (nc_verp.h): one of "+-=",
         * default "+" (the relay's recipient_delimiter, so bounces reach the base mailbox). */
        char *verp_delimiter;
        char *list_id;
        char *unsubscribe_url;    /* public base URL of /unsubscribe */
        char *unsubscribe_mailto; /* address, or NULL */
        char *unsubscribe_secret_file;
        int64_t unsubscribe_expiry_ms; /* lifetime of an email's unsubscribe link */
        char *templates;
        char *message_id_domain;
        int weekly_day; /* 0 = Sunday .. 6 = Saturday */
        int max_notices;
        int bounce_suppress_after; /* hard bounces within bounce_window suppress */
        int64_t bounce_window_ms;  /* a bounce later than this after the last restarts the count */
        int verp;                  /* a VERP envelope sender per message (nc_verp.h) */
        int64_t retry_ms[16];      /* 4xx backoff */
        size_t retry_n;
        int64_t shutdown_timeout_ms;
        /* Sign-up pages (consumer/mailer/web.c); off while signup_secret_file is empty. */
        char *public_url;                /* base URL of the public listener, for links */
        nc_strlist_t signup_secret_file; /* first seals, all open (rotation) */
        int64_t confirm_expiry_ms;
        int64_t manage_expiry_ms;
        char *signup_rate_ip;        /* "max/window", ml_ratelimit_parse() */
        char *signup_rate_address;   /* same */
        nc_strlist_t signup_regions; /* region codes offered, empty = all */
} nc_mailer_config_t;

/* [smtp]: the relay the mailer hands messages to. */
typedef struct nc_smtp_settings {
        char *host;
        int port;
        int starttls; /* 0 off, 1 optional, 2 required */
        char *username;
        char *password_file;
        char *ca_file;
        char *helo;
        int sessions;      /* parallel SMTP sessions */
        int batch;         /* messages per session */
        double rate_limit; /* messages per second, 0 = unlimited */
        int timeout_ms;
        int allow_plaintext_auth; /* AUTH without TLS (password in clear); default off */
        /* Per recipient domain (consumer/mailer/ml_domain.h parses and checks them). */
        char *domain_limits;        /* "DOMAIN RATE SESSIONS, ...", or NULL */
        char *domain_limit_default; /* "RATE SESSIONS" of every other domain */
        int64_t domain_backoff_ms;  /* first backoff of a domain that defers mail */
        int64_t domain_backoff_max_ms;
} nc_smtp_settings_t;

/* The kinds of topic the programs use (nc_topics.h builds their names and settings). */
typedef enum nc_topic_kind {
        NC_TOPIC_NOTICES,        /* <prefix>notices.<category>, one per category */
        NC_TOPIC_SUBSCRIBERS,    /* compacted */
        NC_TOPIC_DLQ,            /* quarantined input, kept until replayed */
        NC_TOPIC_DELIVERIES,     /* delivery events: the agencies' audit trail */
        NC_TOPIC_WEBHOOKS_RETRY, /* <prefix>webhooks.retry.<step>, one per distinct step */
        NC_TOPIC_MAILER_PLAN,    /* compacted, one partition: elects the digest planner */
        NC_TOPIC_MAILER_JOBS,
        NC_TOPIC_KINDS
} nc_topic_kind_t;

/* [topics] <kind>_partitions and <kind>_retention. */
typedef struct nc_topic_settings {
        int partitions;       /* 0: [topics] partitions */
        int64_t retention_ms; /* -1 forever; 0 for the compacted kinds (no retention) */
        int retention_line;   /* where retention was set, 0 for the default */
} nc_topic_settings_t;

typedef struct nc_config {
        char *path; /* file it was read from, or NULL for built-in defaults */

        /* [noticecast] */
        char *topic_prefix;
        nc_strlist_t categories;
        nc_strlist_t languages;
        char *default_language;
        char *default_timezone;

        /* [kafka] */
        nc_kafka_prop_t *kafka;
        size_t kafka_n, kafka_cap;

        /* [topics] */
        int partitions;
        int replication_factor;
        nc_topic_settings_t topic[NC_TOPIC_KINDS];

        /* [producer] */
        int producer_timeout_ms;

        /* [limits], in bytes of UTF-8 */
        size_t title_max;
        size_t summary_max;
        size_t body_max;
        size_t notice_max;

        nc_webhooks_config_t webhooks;
        nc_mailer_config_t mailer;
        nc_smtp_settings_t smtp;
        nc_partner_t *partners;
        size_t partners_n;
} nc_config_t;

/* Parses "500ms", "5s", "5m", "2h" (a unit is required).  Returns 0 or -1. */
int nc_duration_parse(const char *s, int64_t *ms);
/* Parses a retention: a duration as above, or in days ("30d"), or "forever" (-1).  0 or -1. */
int nc_retention_parse(const char *s, int64_t *ms);
/* "720h", "365d": 1 h to 10 years (a link's lifetime).  0, or -1 when out of range or unparsable.
 */
int nc_lifetime_parse(const char *s, int64_t *ms);
/* Formats a retention: "forever", "30d", or as nc_duration_format. */
void nc_retention_format(int64_t ms, char *buf, size_t size);
/* Formats MS as the shortest of "Nh", "Nm", "Ns", "Nms". */
void nc_duration_format(int64_t ms, char *buf, size_t size);
const nc_partner_t *nc_config_partner(const nc_config_t *cfg, const char *id);

/* Path chosen by the lookup order above; *explicit is set when it was asked for. */
const char *nc_config_path(const char *cli_path, int *explicit_path);

/* Loads PATH into a fresh CFG (defaults first).  A missing file is an error when EXPLICIT,
 * otherwise the built-in defaults are used.  Returns 0, or -1 with errstr set. */
int nc_config_load(nc_config_t *cfg, const char *path, int explicit_path, char *errstr,
                   size_t errstr_size);
/* Sets the built-in defaults (a usable local configuration): the key table's, in
 * nc_config.c, the only place a default is written. */
void nc_config_defaults(nc_config_t *cfg);
void nc_config_free(nc_config_t *cfg);
/* Frees what a partner owns (a copy of one made field by field, too) and zeroes it. */
void nc_config_partner_free(nc_partner_t *p);

/* What -n and start-up refuse beyond syntax: a configuration a daemon would run with but
 * lose work by.  The webhooks daemon without any [partner.<id>] reads, commits and drops
 * every notice; a mailer whose from_address has no valid domain fails every message for
 * good.  Return 0, or -1 with errstr naming the file and the key. */
int nc_config_check_webhooks(const nc_config_t *cfg, char *errstr, size_t errstr_size);
int nc_config_check_mailer(const nc_config_t *cfg, char *errstr, size_t errstr_size);

/* Applies "-X key=value" (librdkafka property) on top of the file; validated like [kafka]. */
int nc_config_set_kafka(nc_config_t *cfg, const char *key, const char *value, const char *origin,
                        char *errstr, size_t errstr_size);
/* Applies the command line on top of the file: each "key=value" of XPROPS (-X), then BROKERS
 * (-b, may be NULL) as bootstrap.servers.  Returns 0, or -1 with errstr. */
int nc_config_apply_overrides(nc_config_t *cfg, const nc_strlist_t *xprops, const char *brokers,
                              char *errstr, size_t errstr_size);
/* The command-line options every program shares (kcat style): -C FILE, -X key=value,
 * -b BROKERS, -v, -q.  Handles option C with ARG, storing into the three places given.
 * Returns 1 if C was one of them, 0 if not. */
int nc_config_cmdline_opt(int c, const char *arg, const char **config_path, nc_strlist_t *xprops,
                          const char **brokers);
/* What may be shown of P's value in a message: "(redacted)" for a value read from a
 * KEY_file and for the password-like properties, the value itself otherwise. */
const char *nc_config_kafka_shown(const nc_kafka_prop_t *p);

/* Value of a [kafka] property or NULL. */
const char *nc_config_kafka_get(const nc_config_t *cfg, const char *key);

int nc_config_has_category(const nc_config_t *cfg, const char *category);
int nc_config_has_language(const nc_config_t *cfg, const char *lang);

/* Topic names derived from the prefix. */
void nc_config_topic(const nc_config_t *cfg, const char *suffix, char *buf, size_t size);
void nc_config_notice_topic(const nc_config_t *cfg, const char *category, char *buf, size_t size);

/* A check of a key's value that only a program knows how to parse ([smtp] domain_limits: the
 * mailer's ml_domain), run when a file sets the key, like the table's own checks, so that an
 * error names the file, the line and the key.  Call it before loading; at most 8. */
typedef int nc_config_check_fn(const char *value, char *err, size_t err_size);
void nc_config_add_check(const char *section, const char *key, nc_config_check_fn *fn);

#endif
