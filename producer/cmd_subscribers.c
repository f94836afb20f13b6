/* noticecast subscribers add | remove | import | list
 *
 * The compacted <prefix>subscribers topic is the single source of truth: add writes the full
 * record under the lower-cased email, remove writes a tombstone, list replays the topic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nc_csv.h"
#include "nc_kafka.h"
#include "nc_subscriber.h"
#include "nc_time.h"

#define MAX_REPORTED_ERRORS 20

static const char subscribers_usage[] =
    "noticecast subscribers add --email ADDR [--name NAME] [--lang LANG]\n"
    "                           [--category NAME]... [--region CC]...\n"
    "                           [--frequency immediate|daily|weekly] [--tz Area/City]\n"
    "                           [--send-at HH:MM]\n"
    "noticecast subscribers remove --email ADDR\n"
    "noticecast subscribers import FILE.csv\n"
    "noticecast subscribers list [--json]\n"
    "\n"
    "add creates or replaces a subscriber (no --category/--region = all of them);\n"
    "remove deletes one; import validates the whole CSV first and writes all rows in one\n"
    "transaction, or nothing.  CSV header: email,name,lang,categories,regions,frequency,\n"
    "tz,send_at (email required, other columns optional; lists separated by ';').\n"
    "list prints email, name, lang, frequency, tz, send_at, categories, regions (TSV: one\n"
    "row per subscriber; tabs, line breaks, backslashes and other control characters\n"
    "escaped as \\t \\n \\\\ \\xHH \\uHHHH; a field over 200 characters is cut and ends\n"
    "with \"\u2026\"; --json prints each record exactly, one per line).\n"
    "Common options: -C FILE  -X key=value  -b BROKERS  -v  -q  -h\n";

enum {
        OPT_EMAIL = 300,
        OPT_NAME,
        OPT_LANG,
        OPT_CATEGORY,
        OPT_REGION,
        OPT_FREQUENCY,
        OPT_TZ,
        OPT_SEND_AT,
        OPT_JSON
};

int nc_cli_subscribers_write(nc_cli_t *cli, json_t **records, const char **keys, size_t n,
                             const char *cmd)
{
        nc_kafka_msg_t *msgs = nc_xcalloc(n, sizeof(*msgs));
        char **values = nc_xcalloc(n, sizeof(*values));
        char topic[256], err[1024];
        size_t i;
        int rc;

        nc_config_topic(&cli->cfg, "subscribers", topic, sizeof(topic));
        for (i = 0; i < n; i++) {
                msgs[i].topic = topic;
                msgs[i].key = keys[i];
                if (records[i]) {
                        values[i] = json_dumps(records[i], JSON_COMPACT);
                        msgs[i].value = values[i];
                        msgs[i].value_len = strlen(values[i]);
                        msgs[i].event = "subscriber.updated";
                } else {
                        msgs[i].event = "subscriber.removed";
                }
        }
        rc = nc_kafka_produce_txn(&cli->cfg, msgs, n, cli->cfg.producer_timeout_ms, err,
                                  sizeof(err));
        if (rc != 0)
                rc = nc_cli_fail(nc_cli_kafka_code(rc), cmd, "%s; nothing was written", err);
        for (i = 0; i < n; i++)
                free(values[i]);
        free(values);
        free(msgs);
        return rc;
}

static int list_collect(const rd_kafka_message_t *m, void *opaque);

int nc_cli_subscribers_read(nc_cli_t *cli, json_t *all, char *err, size_t err_size)
{
        char topic[256];

        nc_config_topic(&cli->cfg, "subscribers", topic, sizeof(topic));
        return nc_kafka_read_topic(&cli->cfg, topic, cli->cfg.producer_timeout_ms, list_collect,
                                   all, err, err_size);
}

/* The generation names a subscription, not a version of its preferences: an address that is
 * subscribed keeps its generation when add/import rewrite its record (links in mails already
 * sent keep working, also after a nightly re-import); an address that is not subscribed (new,
 * or removed since) gets a new one, so the unsubscribe links of an earlier subscription stop
 * working.  This costs one replay of the compacted topic per command, as `list` does. */
static int keep_generations(nc_cli_t *cli, json_t **recs, size_t n, const char *cmd)
{
        json_t *all = json_object();
        char err[1024];
        size_t i;
        int rc;

        if ((rc = nc_cli_subscribers_read(cli, all, err, sizeof(err))) != 0) {
                json_decref(all);
                return nc_cli_fail(nc_cli_kafka_code(rc), cmd,
                                   "reading the current subscribers: %s; nothing was written", err);
        }
        for (i = 0; i < n; i++) {
                json_t *cur =
                    json_object_get(all, json_string_value(json_object_get(recs[i], "id")));
                json_t *g = json_object_get(cur, "generation");

                if (json_is_string(g) && json_string_length(g) == NC_SUBSCRIBER_GENERATION_LEN) {
                        json_object_set(recs[i], "generation", g);
                } else if (nc_subscriber_new_generation(recs[i], err, sizeof(err)) != 0) {
                        json_decref(all);
                        return nc_cli_fail(NC_EX_SOFTWARE, cmd, "%s", err);
                }
        }
        json_decref(all);
        return 0;
}

static int sub_add(nc_cli_t *cli, json_t *in, int remove)
{
        const char *email = json_string_value(json_object_get(in, "email"));
        const char *key;
        char err[512], lower[300];
        json_t *rec = NULL;
        int rc;

        if (!email)
                return nc_cli_usage_error("subscribers", "noticecast subscribers add|remove "
                                                         "--email ADDR ...");
        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        if (remove) {
                if (nc_email_valid(email, err, sizeof(err)) != 0)
                        return nc_cli_fail(NC_EX_DATAERR, "subscribers remove", "email: %s", err);
                snprintf(lower, sizeof(lower), "%s", email);
                nc_str_lower(lower);
                key = lower;
        } else {
                rec = nc_subscriber_normalise(in, &cli->cfg, nc_time_now_ms(), err, sizeof(err));
                if (!rec)
                        return nc_cli_fail(NC_EX_DATAERR, "subscribers add", "%s", err);
                if ((rc = keep_generations(cli, &rec, 1, "subscribers add")) != 0) {
                        json_decref(rec);
                        return rc;
                }
                key = json_string_value(json_object_get(rec, "id"));
        }
        rc = nc_cli_subscribers_write(cli, &rec, &key, 1,
                                      remove ? "subscribers remove" : "subscribers add");
        if (rc == 0)
                printf("%s\t%s\n", remove ? "removed" : "saved", key);
        json_decref(rec);
        return rc;
}

static int header_check(const nc_csv_row_t *h, const char *file, char *err, size_t size)
{
        size_t i, j;
        int has_email = 0;

        for (i = 0; i < h->n; i++) {
                nc_str_trim(h->fields[i]);
                nc_str_lower(h->fields[i]);
                for (j = 0; nc_subscriber_csv_columns[j]; j++)
                        if (!strcmp(h->fields[i], nc_subscriber_csv_columns[j]))
                                break;
                if (!nc_subscriber_csv_columns[j])
                        return nc_err(err, size,
                                      "%s:%d: header: unknown column '%.64s' (known: email, "
                                      "name, lang, categories, regions, frequency, tz, send_at)",
                                      file, h->line, h->fields[i]);
                for (j = 0; j < i; j++)
                        if (!strcmp(h->fields[i], h->fields[j]))
                                return nc_err(err, size, "%s:%d: header: column '%s' twice", file,
                                              h->line, h->fields[i]);
                has_email |= !strcmp(h->fields[i], "email");
        }
        if (!has_email)
                return nc_err(err, size, "%s:%d: header: the 'email' column is required", file,
                              h->line);
        return 0;
}

static int sub_import(nc_cli_t *cli, const char *file)
{
        json_t **records = NULL, *seen = NULL;
        const char **keys = NULL;
        char err[1024];
        size_t len, i, n = 0, bad = 0;
        nc_csv_t csv;
        char *text;
        int rc;

        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        if (!(text = nc_file_read(file, &len, err, sizeof(err))))
                return nc_cli_fail(NC_EX_NOINPUT, "subscribers import", "%s", err);
        if (!nc_utf8_valid(text, len)) {
                free(text);
                return nc_cli_fail(NC_EX_DATAERR, "subscribers import", "%s: not valid UTF-8",
                                   file);
        }
        rc = nc_csv_parse(text, len, &csv, err, sizeof(err));
        free(text);
        if (rc != 0) {
                fprintf(stderr, "%s:%s\n", file, err);
                return NC_EX_DATAERR;
        }
        if (csv.n < 2) {
                nc_csv_free(&csv);
                return nc_cli_fail(NC_EX_DATAERR, "subscribers import",
                                   "%s: needs a header row and at least one subscriber", file);
        }
        if (header_check(&csv.rows[0], file, err, sizeof(err)) != 0) {
                fprintf(stderr, "%s\n", err);
                nc_csv_free(&csv);
                return NC_EX_DATAERR;
        }
        records = nc_xcalloc(csv.n, sizeof(*records));
        keys = nc_xcalloc(csv.n, sizeof(*keys));
        seen = json_object();
        for (i = 1; i < csv.n; i++) {
                nc_csv_row_t *row = &csv.rows[i];
                json_t *in = nc_subscriber_from_csv(csv.rows[0].fields, csv.rows[0].n, row->fields,
                                                    row->n, err, sizeof(err));
                json_t *rec =
                    in ? nc_subscriber_normalise(in, &cli->cfg, nc_time_now_ms(), err, sizeof(err))
                       : NULL;

                json_decref(in);
                if (rec) {
                        const char *id = json_string_value(json_object_get(rec, "id"));

                        /* A jansson object is the hash set of the ids seen so far. */
                        if (json_object_get(seen, id)) {
                                snprintf(err, sizeof(err), "email: %s appears twice in the file",
                                         id);
                                json_decref(rec);
                                rec = NULL;
                        }
                }
                if (!rec) {
                        if (bad++ < MAX_REPORTED_ERRORS)
                                fprintf(stderr, "%s:%d: %s\n", file, row->line, err);
                        continue;
                }
                records[n] = rec;
                keys[n] = json_string_value(json_object_get(rec, "id"));
                json_object_set_new(seen, keys[n], json_true());
                n++;
        }
        if (bad) {
                if (bad > MAX_REPORTED_ERRORS)
                        fprintf(stderr, "... and %zu more bad rows\n", bad - MAX_REPORTED_ERRORS);
                fprintf(stderr,
                        "noticecast: subscribers import: %zu bad row%s, nothing was "
                        "written\n",
                        bad, bad == 1 ? "" : "s");
                rc = NC_EX_DATAERR;
        } else if ((rc = keep_generations(cli, records, n, "subscribers import")) == 0) {
                rc = nc_cli_subscribers_write(cli, records, keys, n, "subscribers import");
                if (rc == 0)
                        printf("imported %zu subscribers\n", n);
        }
        for (i = 0; i < n; i++)
                json_decref(records[i]);
        json_decref(seen);
        free(records);
        free(keys);
        nc_csv_free(&csv);
        return rc;
}

/* list: replay the compacted topic; the last record per key wins, tombstones delete.  Keys
 * are taken whole (any bytes), so two distinct keys never collapse into one row. */
static int list_collect(const rd_kafka_message_t *m, void *opaque)
{
        json_t *all = opaque, *rec;
        char kshow[NC_TSV_FIELD_SIZE(64)];

        if (!m->key)
                return 0;
        if (!m->payload) {
                json_object_deln(all, m->key, m->key_len);
                return 0;
        }
        rec = json_loadb(m->payload, m->len, 0, NULL);
        if (!json_is_object(rec)) {
                log_warnx("subscribers: record for key %s at offset %lld is not JSON; skipped",
                          nc_tsv_escape(m->key, m->key_len, 64, kshow, sizeof(kshow)),
                          (long long)m->offset);
                json_decref(rec);
                return 0;
        }
        json_object_setn_new_nocheck(all, m->key, m->key_len, rec);
        return 0;
}

int nc_cli_cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void nc_cli_tsv_field(json_t *rec, const char *name, char sep)
{
        json_t *v = json_object_get(rec, name);

        if (json_is_string(v))
                nc_cli_tsv(json_string_value(v), json_string_length(v), sep);
        else
                nc_cli_tsv("", 0, sep);
}

/* A list field: its strings joined by ',', or "*" (= all) when empty. */
static void tsv_list(json_t *arr, char sep)
{
        size_t i, len = 0;
        char *buf;
        json_t *v;

        if (!json_array_size(arr)) {
                nc_cli_tsv("*", 1, sep);
                return;
        }
        json_array_foreach(arr, i, v)
                len += json_string_length(v) + 1;
        buf = nc_xmalloc(len + 1);
        len = 0;
        json_array_foreach(arr, i, v) {
                if (i)
                        buf[len++] = ',';
                memcpy(buf + len, json_string_value(v) ? json_string_value(v) : "",
                       json_string_length(v));
                len += json_string_length(v);
        }
        nc_cli_tsv(buf, len, sep);
        free(buf);
}

static int sub_list(nc_cli_t *cli, int json_out)
{
        json_t *all = json_object(), *rec;
        const char **keys;
        const char *k;
        char err[1024];
        size_t n = 0, i;
        int rc;

        if ((rc = nc_cli_load_config(cli)) != 0) {
                json_decref(all);
                return rc;
        }
        if ((rc = nc_cli_subscribers_read(cli, all, err, sizeof(err))) != 0) {
                json_decref(all);
                return nc_cli_fail(nc_cli_kafka_code(rc), "subscribers list", "%s", err);
        }
        keys = nc_xcalloc(json_object_size(all), sizeof(*keys));
        json_object_foreach(all, k, rec)
                keys[n++] = k;
        qsort(keys, n, sizeof(*keys), nc_cli_cmp_str);
        for (i = 0; i < n; i++) {
                rec = json_object_get(all, keys[i]);
                if (json_out) {
                        char *s = json_dumps(rec, JSON_COMPACT);

                        puts(s);
                        free(s);
                        continue;
                }
                /* One row per subscriber whatever the fields hold (nc_cli_tsv escapes). */
                nc_cli_tsv_field(rec, "email", '\t');
                nc_cli_tsv_field(rec, "name", '\t');
                nc_cli_tsv_field(rec, "lang", '\t');
                nc_cli_tsv_field(rec, "frequency", '\t');
                nc_cli_tsv_field(rec, "tz", '\t');
                nc_cli_tsv_field(rec, "send_at", '\t');
                tsv_list(json_object_get(rec, "categories"), '\t');
                tsv_list(json_object_get(rec, "regions"), '\n');
        }
        free(keys);
        json_decref(all);
        return NC_EX_OK;
}

int cmd_subscribers(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"email", required_argument, NULL, OPT_EMAIL},
            {"name", required_argument, NULL, OPT_NAME},
            {"lang", required_argument, NULL, OPT_LANG},
            {"category", required_argument, NULL, OPT_CATEGORY},
            {"region", required_argument, NULL, OPT_REGION},
            {"frequency", required_argument, NULL, OPT_FREQUENCY},
            {"tz", required_argument, NULL, OPT_TZ},
            {"send-at", required_argument, NULL, OPT_SEND_AT},
            {"json", no_argument, NULL, OPT_JSON},
            {0},
        };
        json_t *in = json_object(), *cats = json_array(), *regs = json_array();
        const char *action;
        int c, rc, json_out = 0;

        json_object_set(in, "categories", cats);
        json_object_set(in, "regions", regs);
        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                json_t *s;

                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(subscribers_usage, stdout);
                        rc = NC_EX_OK;
                        goto out;
                }
                if (c == OPT_JSON) {
                        json_out = 1;
                        continue;
                }
                if (c == '?' || c == ':' || !(s = json_string(optarg))) {
                        rc = nc_cli_usage_error("subscribers", "noticecast subscribers "
                                                               "add|remove|import|list ...");
                        goto out;
                }
                switch (c) {
                case OPT_EMAIL:
                        json_object_set_new(in, "email", s);
                        break;
                case OPT_NAME:
                        json_object_set_new(in, "name", s);
                        break;
                case OPT_LANG:
                        json_object_set_new(in, "lang", s);
                        break;
                case OPT_CATEGORY:
                        json_array_append_new(cats, s);
                        break;
                case OPT_REGION:
                        json_array_append_new(regs, s);
                        break;
                case OPT_FREQUENCY:
                        json_object_set_new(in, "frequency", s);
                        break;
                case OPT_TZ:
                        json_object_set_new(in, "tz", s);
                        break;
                case OPT_SEND_AT:
                        json_object_set_new(in, "send_at", s);
                        break;
                default:
                        json_decref(s);
                        break;
                }
        }
        action = optind < argc ? argv[optind] : "";
        if (!strcmp(action, "add") && optind + 1 == argc)
                rc = sub_add(cli, in, 0);
        else if (!strcmp(action, "remove") && optind + 1 == argc)
                rc = sub_add(cli, in, 1);
        else if (!strcmp(action, "import") && optind + 2 == argc)
                rc = sub_import(cli, argv[optind + 1]);
        else if (!strcmp(action, "list") && optind + 1 == argc)
                rc = sub_list(cli, json_out);
        else
                rc = nc_cli_usage_error("subscribers",
                                        "noticecast subscribers add|remove|import FILE.csv|list");
out:
        json_decref(cats);
        json_decref(regs);
        json_decref(in);
        return rc;
}
