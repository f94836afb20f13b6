/* noticecast dlq list | replay, and noticecast deliveries NOTICE_ID: the operator's view of
 * what was quarantined and of what each partner received. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nc_kafka.h"
#include "nc_time.h"

static const char dlq_usage[] =
    "noticecast dlq list [--json]\n"
    "noticecast dlq replay [--id KEY] [--partner ID] [-n]\n"
    "\n"
    "list shows every entry of the dead letter queue: when, which stage put it there, where\n"
    "it came from, its key, the partner (for a failed delivery) and the reason; one row per\n"
    "entry (TSV, control characters escaped as \\t \\n \\\\ \\xHH \\uHHHH, a field over 200\n"
    "characters cut and ending with \"\u2026\"; --json gives the exact values).\n"
    "replay republishes the matching entries (all of them without filters) in one\n"
    "transaction: input that was invalid goes back to its source topic, a failed delivery\n"
    "goes back to that partner only.  Entries stay in the DLQ: replay with --id to retry\n"
    "one notice.  -n shows what would be replayed.\n";

static const char deliveries_usage[] =
    "noticecast deliveries NOTICE_ID [--json]\n"
    "\n"
    "Shows, per partner, every webhook attempt recorded for a notice and whether and when\n"
    "it was delivered (from the <prefix>deliveries topic).\n";

enum { OPT_JSON = 400, OPT_ID, OPT_PARTNER };

/* One DLQ entry, decoded. */
struct dlq_entry {
        int32_t partition;
        int64_t offset;
        char *key;     /* up to a NUL in it, for replay */
        char *key_raw; /* all of its bytes, for listing */
        size_t key_len;
        void *value;
        size_t len;
        rd_kafka_headers_t *hdrs; /* all of them */
};

struct dlq_set {
        struct dlq_entry *v;
        size_t n, cap;
};

static int dlq_collect(const rd_kafka_message_t *m, void *opaque)
{
        struct dlq_set *s = opaque;
        rd_kafka_headers_t *h = NULL;
        struct dlq_entry *e;

        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 64;
                s->v = nc_xrealloc(s->v, s->cap * sizeof(*s->v));
        }
        e = &s->v[s->n++];
        memset(e, 0, sizeof(*e));
        e->partition = m->partition;
        e->offset = m->offset;
        if (m->key) {
                e->key = strndup(m->key, m->key_len);
                e->key_raw = nc_xmalloc(m->key_len + 1);
                memcpy(e->key_raw, m->key, m->key_len);
                e->key_raw[m->key_len] = '\0';
                e->key_len = m->key_len;
        }
        e->len = m->len;
        e->value = nc_xmalloc(m->len ? m->len : 1);
        if (m->len)
                memcpy(e->value, m->payload, m->len);
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                e->hdrs = rd_kafka_headers_copy(h);
        return 0;
}

static void dlq_free(struct dlq_set *s)
{
        for (size_t i = 0; i < s->n; i++) {
                free(s->v[i].key);
                free(s->v[i].key_raw);
                free(s->v[i].value);
                if (s->v[i].hdrs)
                        rd_kafka_headers_destroy(s->v[i].hdrs);
        }
        free(s->v);
}

static const char *eh(const struct dlq_entry *e, const char *name, char *buf, size_t size)
{
        const void *v;
        size_t len;

        if (!e->hdrs || rd_kafka_header_get_last(e->hdrs, name, &v, &len) || !v)
                return NULL;
        if (len >= size)
                len = size - 1;
        memcpy(buf, v, len);
        buf[len] = '\0';
        return buf;
}

static int read_dlq(nc_cli_t *cli, struct dlq_set *s, const char *cmd)
{
        char topic[256], err[1024];
        int rc;

        nc_config_topic(&cli->cfg, "dlq", topic, sizeof(topic));
        if ((rc = nc_kafka_read_topic(&cli->cfg, topic, cli->cfg.producer_timeout_ms, dlq_collect,
                                      s, err, sizeof(err))) != 0)
                return nc_cli_fail(nc_cli_kafka_code(rc), cmd, "%s", err);
        return 0;
}

/* A header's bytes (not NUL-terminated), or NULL when absent. */
static const char *eh_raw(const struct dlq_entry *e, const char *name, size_t *lenp)
{
        const void *v;

        if (!e->hdrs || rd_kafka_header_get_last(e->hdrs, name, &v, lenp) || !v)
                return NULL;
        return v;
}

/* A JSON string of exactly those bytes; bytes that are not UTF-8 (which JSON cannot carry)
 * become U+FFFD, so an entry is never dropped from the listing. */
static json_t *json_bytes(const char *s, size_t len)
{
        json_t *j;
        char *fixed;
        size_t o = 0;

        if (!s)
                return json_null();
        if ((j = json_stringn(s, len)))
                return j;
        fixed = nc_xmalloc(len * 3 + 1);
        for (size_t i = 0; i < len;) {
                size_t n = 1;

                /* Longest valid sequence starting here (1 to 4 bytes), else one bad byte. */
                for (size_t k = 4; k >= 1; k--)
                        if (i + k <= len && nc_utf8_valid(s + i, k)) {
                                n = k;
                                break;
                        }
                if (nc_utf8_valid(s + i, n)) {
                        memcpy(fixed + o, s + i, n);
                        o += n;
                } else {
                        memcpy(fixed + o, "\xef\xbf\xbd", 3);
                        o += 3;
                }
                i += n;
        }
        j = json_stringn(fixed, o);
        free(fixed);
        return j ? j : json_null();
}

static const char *const dlq_fields[][2] = {
    {"time", "noticecast-dlq-time"},
    {"stage", "noticecast-dlq-stage"},
    {"source_topic", "noticecast-dlq-source-topic"},
    {"source_partition", "noticecast-dlq-source-partition"},
    {"source_offset", "noticecast-dlq-source-offset"},
    {"partner", "noticecast-dlq-partner"},
    {"reason", "noticecast-dlq-reason"},
};

static int dlq_list(nc_cli_t *cli, int json_out)
{
        struct dlq_set s = {0};
        size_t i, k;
        int rc;

        if ((rc = read_dlq(cli, &s, "dlq list")) != 0)
                return rc;
        for (i = 0; i < s.n; i++) {
                const struct dlq_entry *e = &s.v[i];
                const char *v[7];
                size_t len[7];

                for (k = 0; k < 7; k++)
                        v[k] = eh_raw(e, dlq_fields[k][1], &len[k]);
                if (json_out) {
                        /* Exact values, whole (no cut), NUL bytes as \u0000. */
                        json_t *o = json_object();
                        char *line;

                        json_object_set_new(o, "partition", json_integer(e->partition));
                        json_object_set_new(o, "offset", json_integer(e->offset));
                        json_object_set_new(o, "key", json_bytes(e->key_raw, e->key_len));
                        for (k = 0; k < 7; k++) {
                                /* source_partition/offset were always present ("?"). */
                                if (!v[k] && (k == 3 || k == 4))
                                        json_object_set_new(o, dlq_fields[k][0], json_string("?"));
                                else
                                        json_object_set_new(o, dlq_fields[k][0],
                                                            json_bytes(v[k], len[k]));
                        }
                        line = json_dumps(o, JSON_COMPACT);
                        if (line)
                                puts(line);
                        free(line);
                        json_decref(o);
                        continue;
                }
                /* time, stage, source topic[partition]@offset, key, partner, reason: every
                 * part escaped (nc_cli_tsv), so one entry is always one row of six fields. */
                nc_cli_tsv(v[0] ? v[0] : "-", v[0] ? len[0] : 1, '\t');
                nc_cli_tsv(v[1] ? v[1] : "-", v[1] ? len[1] : 1, '\t');
                {
                        char part[3][NC_TSV_FIELD_SIZE(NC_TSV_FIELD_MAX)];

                        nc_tsv_escape(v[2] ? v[2] : "-", v[2] ? len[2] : 1, NC_TSV_FIELD_MAX,
                                      part[0], sizeof(part[0]));
                        nc_tsv_escape(v[3] ? v[3] : "?", v[3] ? len[3] : 1, 16, part[1],
                                      sizeof(part[1]));
                        nc_tsv_escape(v[4] ? v[4] : "?", v[4] ? len[4] : 1, 24, part[2],
                                      sizeof(part[2]));
                        printf("%s[%s]@%s\t", part[0], part[1], part[2]);
                }
                nc_cli_tsv(e->key_raw ? e->key_raw : "-", e->key_raw ? e->key_len : 1, '\t');
                nc_cli_tsv(v[5] ? v[5] : "-", v[5] ? len[5] : 1, '\t');
                nc_cli_tsv(v[6] ? v[6] : "-", v[6] ? len[6] : 1, '\n');
        }
        dlq_free(&s);
        return NC_EX_OK;
}

static int dlq_replay(nc_cli_t *cli, const char *id, const char *partner, int dry_run)
{
        struct dlq_set s = {0};
        nc_kafka_msg_t *msgs;
        char(*topics)[256], err[1024], buf[256];
        size_t i, n = 0;
        int rc, prc;

        if ((rc = read_dlq(cli, &s, "dlq replay")) != 0)
                return rc;
        msgs = nc_xcalloc(s.n ? s.n : 1, sizeof(*msgs));
        topics = nc_xcalloc(s.n ? s.n : 1, sizeof(*topics));
        for (i = 0; i < s.n; i++) {
                struct dlq_entry *e = &s.v[i];

                if (id && (!e->key || strcmp(e->key, id)))
                        continue;
                if (partner &&
                    (!eh(e, "noticecast-dlq-partner", buf, sizeof(buf)) || strcmp(buf, partner)))
                        continue;
                if (eh(e, "noticecast-dlq-reference", buf, sizeof(buf))) {
                        /* The record was too large to copy: the entry only says where it is.
                         * Republishing the reference would put its JSON where a notice or a
                         * job is expected. */
                        fprintf(stderr,
                                "noticecast: dlq replay: entry at %d/%lld is a reference to a "
                                "record too large to copy; not replayable (see dlq list)\n",
                                (int)e->partition, (long long)e->offset);
                        continue;
                }
                if (!eh(e, "noticecast-dlq-replay-topic", topics[n], sizeof(topics[n])) &&
                    !eh(e, "noticecast-dlq-source-topic", topics[n], sizeof(topics[n]))) {
                        fprintf(stderr,
                                "noticecast: dlq replay: entry at %d/%lld has no "
                                "source topic; skipped\n",
                                (int)e->partition, (long long)e->offset);
                        continue;
                }
                msgs[n].topic = topics[n];
                msgs[n].key = e->key ? e->key : "";
                msgs[n].value = e->value;
                msgs[n].value_len = e->len;
                msgs[n].headers = e->hdrs;
                printf("%s\t", dry_run ? "would replay" : "replay");
                nc_cli_tsv_str(msgs[n].key, "", '\t');
                nc_cli_tsv_str(topics[n], "", '\n');
                n++;
        }
        rc = NC_EX_OK;
        if (n == 0) {
                fprintf(stderr, "noticecast: dlq replay: no matching entry\n");
        } else if (!dry_run) {
                if ((prc = nc_kafka_produce_txn(&cli->cfg, msgs, n, cli->cfg.producer_timeout_ms,
                                                err, sizeof(err))) != 0)
                        rc = nc_cli_fail(nc_cli_kafka_code(prc), "dlq replay",
                                         "%s; nothing was replayed", err);
                else
                        printf("replayed %zu entr%s\n", n, n == 1 ? "y" : "ies");
        }
        free(msgs);
        free(topics);
        dlq_free(&s);
        return rc;
}

int cmd_dlq(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"json", no_argument, NULL, OPT_JSON},
            {"id", required_argument, NULL, OPT_ID},
            {"partner", required_argument, NULL, OPT_PARTNER},
            {"dry-run", no_argument, NULL, 'n'},
            {0},
        };
        const char *id = NULL, *partner = NULL;
        int c, rc, json_out = 0, dry_run = 0;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT "n", longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        fputs(dlq_usage, stdout);
                        return NC_EX_OK;
                case OPT_JSON:
                        json_out = 1;
                        break;
                case OPT_ID:
                        id = optarg;
                        break;
                case OPT_PARTNER:
                        partner = optarg;
                        break;
                case 'n':
                        dry_run = 1;
                        break;
                default:
                        return nc_cli_usage_error("dlq", "noticecast dlq list|replay");
                }
        }
        if (optind != argc - 1)
                return nc_cli_usage_error("dlq", "noticecast dlq list|replay");
        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        if (!strcmp(argv[optind], "list"))
                return dlq_list(cli, json_out);
        if (!strcmp(argv[optind], "replay"))
                return dlq_replay(cli, id, partner, dry_run);
        return nc_cli_usage_error("dlq", "noticecast dlq list|replay");
}

/* ---- deliveries ------------------------------------------------------------------------ */

struct deliveries {
        const char *id;
        json_t *events; /* array, in topic order */
};

static int deliveries_collect(const rd_kafka_message_t *m, void *opaque)
{
        struct deliveries *d = opaque;
        json_t *ev;

        if (!m->key || m->key_len != strlen(d->id) || memcmp(m->key, d->id, m->key_len))
                return 0;
        if ((ev = json_loadb(m->payload, m->len, 0, NULL)) && json_is_object(ev))
                json_array_append_new(d->events, ev);
        else
                json_decref(ev);
        return 0;
}

int cmd_deliveries(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG, {"json", no_argument, NULL, OPT_JSON}, {0}};
        struct deliveries d = {0};
        json_t *partners, *ev, *p;
        char topic[256], err[1024];
        const char *name;
        int c, rc, json_out = 0;
        size_t i;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(deliveries_usage, stdout);
                        return NC_EX_OK;
                }
                if (c == OPT_JSON) {
                        json_out = 1;
                        continue;
                }
                return nc_cli_usage_error("deliveries", "noticecast deliveries NOTICE_ID");
        }
        if (optind != argc - 1)
                return nc_cli_usage_error("deliveries", "noticecast deliveries NOTICE_ID");
        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        d.id = argv[optind];
        d.events = json_array();
        nc_config_topic(&cli->cfg, "deliveries", topic, sizeof(topic));
        if ((rc = nc_kafka_read_topic(&cli->cfg, topic, cli->cfg.producer_timeout_ms,
                                      deliveries_collect, &d, err, sizeof(err))) != 0) {
                json_decref(d.events);
                return nc_cli_fail(nc_cli_kafka_code(rc), "deliveries", "%s", err);
        }
        if (json_out) {
                json_array_foreach(d.events, i, ev) {
                        char *s = json_dumps(ev, JSON_COMPACT);

                        puts(s);
                        free(s);
                }
                json_decref(d.events);
                return NC_EX_OK;
        }
        /* Per partner: attempts, last outcome, and when it was delivered. */
        partners = json_object();
        json_array_foreach(d.events, i, ev) {
                const char *pid = json_string_value(json_object_get(ev, "partner"));
                const char *outcome = json_string_value(json_object_get(ev, "outcome"));

                if (!pid)
                        continue;
                if (!(p = json_object_get(partners, pid))) {
                        p = json_pack("{s:i, s:s, s:n, s:n}", "attempts", 0, "outcome", "",
                                      "delivered_at", "last");
                        json_object_set_new(partners, pid, p);
                }
                json_object_set_new(
                    p, "attempts",
                    json_integer(json_integer_value(json_object_get(p, "attempts")) + 1));
                json_object_set(p, "outcome", json_object_get(ev, "outcome"));
                json_object_set(p, "last", ev);
                if (outcome && !strcmp(outcome, "delivered"))
                        json_object_set(p, "delivered_at", json_object_get(ev, "time"));
        }
        if (json_object_size(partners) == 0)
                printf("no delivery recorded for %s\n", d.id);
        else
                printf("PARTNER\tOUTCOME\tATTEMPTS\tDELIVERED_AT\tLAST_STATUS\tLAST_ERROR\n");
        json_object_foreach(partners, name, p) {
                json_t *last = json_object_get(p, "last");
                json_t *st = json_object_get(last, "status");
                const char *e = json_string_value(json_object_get(last, "error"));
                const char *at = json_string_value(json_object_get(p, "delivered_at"));

                nc_cli_tsv_str(name, "-", '\t');
                nc_cli_tsv_str(json_string_value(json_object_get(p, "outcome")), "-", '\t');
                printf("%lld\t", (long long)json_integer_value(json_object_get(p, "attempts")));
                nc_cli_tsv_str(at, "-", '\t');
                if (json_is_integer(st))
                        printf("%lld", (long long)json_integer_value(st));
                else
                        printf("-");
                putchar('\t');
                nc_cli_tsv_str(e, "-", '\n');
        }
        json_decref(partners);
        json_decref(d.events);
        return NC_EX_OK;
}
