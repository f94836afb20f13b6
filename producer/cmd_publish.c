/* noticecast publish | validate | withdraw */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nc_kafka.h"
#include "nc_notice.h"
#include "nc_time.h"
#include "nc_uuid.h"

#define MAX_REPORTED_ERRORS 20

static const char publish_usage[] =
    "noticecast publish [options] [FILE|-]...\n"
    "\n"
    "Publishes notices to Kafka as ONE transaction: all of them or none.\n"
    "A FILE holds one JSON notice, a JSON array of notices, or NDJSON; '-' is stdin.\n"
    "Or build one notice from flags:\n"
    "  --title TEXT          title (required with flags)\n"
    "  --body TEXT           body text          --body-file FILE   body from a file\n"
    "  --summary TEXT        one-line summary\n"
    "  --category NAME       configured category (required with flags)\n"
    "  --region CC           ISO 3166-1 alpha-2 code (repeatable; none = everyone)\n"
    "  --lang LANG           language of the texts given (default: default_language)\n"
    "  --priority normal|urgent\n"
    "  --url URL             link to the full notice\n"
    "  --source TEXT         publishing body\n"
    "\n"
    "Options:\n"
    "  -n, --dry-run         validate and print the normalised notices; publish nothing\n"
    "      --json            print results as JSON lines\n"
    "  -C FILE  -X key=value  -b BROKERS  -v  -q  -h   (see noticecast -h)\n"
    "\n"
    "Prints one line per notice: id<TAB>topic<TAB>partition<TAB>offset.\n"
    "Exit: 0 published, 64 usage, 65 invalid input (nothing published), 66 cannot read a\n"
    "file, 69 broker unreachable or delivery failed (nothing published), 78 config error.\n";

static const char validate_usage[] =
    "noticecast validate [options] FILE...\n"
    "\n"
    "Validates notice files (one JSON notice, a JSON array, or NDJSON) against the\n"
    "configuration without contacting Kafka.  Errors read file:line: field: message.\n"
    "Exit: 0 valid, 65 invalid, 66 cannot read a file, 78 config error.\n";

static const char withdraw_usage[] =
    "noticecast withdraw [options] ID --category NAME [--reason TEXT]\n"
    "\n"
    "Publishes a withdrawal event for notice ID on its category topic: subscribers'\n"
    "digests leave it out and partners receive notice.withdrawn.\n";

/* Flags that build one notice. */
struct flag_notice {
        const char *title, *body, *body_file, *summary, *category, *lang, *priority, *url;
        const char *source;
        nc_strlist_t regions;
        int used;
};

static json_t *flag_notice_build(const struct flag_notice *f, const nc_config_t *cfg, char *errstr,
                                 size_t errstr_size)
{
        const char *lang = f->lang ? f->lang : cfg->default_language;
        json_t *n = json_object(), *regions = json_array();
        char *body = NULL;
        size_t i;

#define LANG_FIELD(name, text)                                                                     \
        do {                                                                                       \
                json_t *m_ = json_object(), *s_ = json_string(text);                               \
                if (!s_) {                                                                         \
                        json_decref(m_);                                                           \
                        json_decref(n);                                                            \
                        json_decref(regions);                                                      \
                        free(body);                                                                \
                        nc_err(errstr, errstr_size, "%s: is not valid UTF-8", name);               \
                        return NULL;                                                               \
                }                                                                                  \
                json_object_set_new(m_, lang, s_);                                                 \
                json_object_set_new(n, name, m_);                                                  \
        } while (0)

        if (f->category)
                json_object_set_new(n, "category", json_string(f->category));
        if (f->priority)
                json_object_set_new(n, "priority", json_string(f->priority));
        json_object_set_new(n, "lang", json_string(lang));
        if (f->title)
                LANG_FIELD("title", f->title);
        if (f->summary)
                LANG_FIELD("summary", f->summary);
        if (f->body_file) {
                if (!(body = nc_file_read(f->body_file, NULL, errstr, errstr_size))) {
                        json_decref(n);
                        json_decref(regions);
                        return NULL;
                }
                LANG_FIELD("body", body);
        } else if (f->body) {
                LANG_FIELD("body", f->body);
        }
        for (i = 0; i < f->regions.n; i++)
                json_array_append_new(regions, json_string(f->regions.v[i]));
        json_object_set_new(n, "regions", regions);
        if (f->url)
                json_object_set_new(n, "url", json_string(f->url));
        free(body);
#undef LANG_FIELD
        /* source is a plain string in the schema, not a language map */
        if (f->source)
                json_object_set_new(n, "source", json_string(f->source));
        return n;
}

/* State of one publish/validate run, shared by the per-notice hook. */
struct batch {
        const nc_config_t *cfg;
        enum nc_notice_mode mode;
        int64_t now_ms;
        size_t bad;
        json_t *seen;        /* id -> "file:line" of its first use */
        char (*topics)[256]; /* notice topic of each configured category */
};

static void batch_error(struct batch *b, const nc_input_item_t *it, const char *err)
{
        if (b->bad++ < MAX_REPORTED_ERRORS)
                fprintf(stderr, "%s:%d: %s\n", it->file, it->line, err);
}

/* Validates and serialises each notice as soon as it is parsed; the tree is dropped.  It may
 * run in two threads at once (see nc_input_read): it touches only its item and read-only
 * state; errors are kept in the item and reported, in file order, by batch_finish(). */
static void notice_hook(nc_input_t *in, nc_input_item_t *it)
{
        struct batch *b = in->opaque;
        const char *id, *cat;
        char err[512];
        json_t *norm;
        size_t i;

        norm = nc_notice_normalise(it->json, b->cfg, b->mode, b->now_ms, err, sizeof(err));
        json_decref(it->json);
        it->json = NULL;
        if (!norm) {
                it->error = nc_xstrdup(err);
                return;
        }
        if (!(it->value = nc_notice_serialise(norm, b->cfg, &it->value_len, err, sizeof(err)))) {
                it->error = nc_xstrdup(err);
                json_decref(norm);
                return;
        }
        if ((id = nc_notice_id(norm)))
                snprintf(it->key, sizeof(it->key), "%s", id);
        cat = nc_notice_category(norm);
        for (i = 0; i < b->cfg->categories.n; i++)
                if (!strcmp(b->cfg->categories.v[i], cat))
                        it->topic = b->topics[i];
        it->event = NC_EVENT_PUBLISHED;
        json_decref(norm);
}

/* Reports the invalid notices, in file order, and the same id used twice in the batch
 * (almost certainly a copy-paste mistake).  Returns how many notices are bad. */
static size_t batch_finish(struct batch *b, nc_input_t *in)
{
        char err[512], where[512];
        json_t *first;
        size_t i;

        for (i = 0; i < in->n; i++) {
                nc_input_item_t *it = &in->items[i];

                if (it->error) {
                        batch_error(b, it, it->error);
                } else if (it->key[0]) {
                        if ((first = json_object_get(b->seen, it->key))) {
                                snprintf(err, sizeof(err), "id: %s is also used at %s", it->key,
                                         json_string_value(first));
                                batch_error(b, it, err);
                        } else {
                                snprintf(where, sizeof(where), "%s:%d", it->file, it->line);
                                json_object_set_new(b->seen, it->key, json_string(where));
                        }
                }
        }
        if (b->bad > MAX_REPORTED_ERRORS)
                fprintf(stderr, "... and %zu more invalid notices\n", b->bad - MAX_REPORTED_ERRORS);
        return b->bad;
}

static void batch_init(struct batch *b, nc_input_t *in, const nc_config_t *cfg,
                       enum nc_notice_mode mode)
{
        size_t i;

        memset(b, 0, sizeof(*b));
        b->cfg = cfg;
        b->mode = mode;
        b->now_ms = nc_time_now_ms();
        b->seen = json_object();
        b->topics = nc_xcalloc(cfg->categories.n, sizeof(*b->topics));
        for (i = 0; i < cfg->categories.n; i++)
                nc_config_notice_topic(cfg, cfg->categories.v[i], b->topics[i],
                                       sizeof(b->topics[i]));
        in->hook = notice_hook;
        in->opaque = b;
}

static void batch_free(struct batch *b)
{
        json_decref(b->seen);
        free(b->topics);
}

static int read_inputs(nc_input_t *in, int argc, char **argv, const char *cmd)
{
        char err[1024];
        int i, rc;

        for (i = 0; i < argc; i++) {
                rc = nc_input_read(in, argv[i], err, sizeof(err));
                if (rc == -2)
                        return nc_cli_fail(NC_EX_NOINPUT, cmd, "%s", err);
                if (rc != 0) {
                        fprintf(stderr, "%s\n", err);
                        return NC_EX_DATAERR;
                }
        }
        return 0;
}

static void print_json_line(json_t *v)
{
        char *s = json_dumps(v, JSON_COMPACT);

        puts(s);
        free(s);
}

/* Produces every item of IN as one transaction (with TXN, prepared earlier, if not NULL)
 * and prints the results. */
static int produce_items(nc_cli_t *cli, nc_kafka_txn_t *txn, nc_input_t *in, int json_out,
                         const char *cmd)
{
        nc_kafka_msg_t *msgs = nc_xcalloc(in->n, sizeof(*msgs));
        char err[1024];
        size_t i;
        int rc;

        for (i = 0; i < in->n; i++) {
                msgs[i].topic = in->items[i].topic;
                msgs[i].key = in->items[i].key;
                msgs[i].value = in->items[i].value;
                msgs[i].value_len = in->items[i].value_len;
                msgs[i].event = in->items[i].event;
                msgs[i].give_value = 1;
                in->items[i].value = NULL; /* now owned by msgs[i] */
        }
        rc = txn ? nc_kafka_txn_run(txn, msgs, in->n, err, sizeof(err))
                 : nc_kafka_produce_txn(&cli->cfg, msgs, in->n, cli->cfg.producer_timeout_ms, err,
                                        sizeof(err));
        if (rc != 0) {
                rc = nc_cli_fail(nc_cli_kafka_code(rc), cmd, "%s; nothing was published", err);
        } else {
                for (i = 0; i < in->n; i++) {
                        if (json_out) {
                                json_t *o =
                                    json_pack("{s:s, s:s, s:i, s:I}", "id", msgs[i].key, "topic",
                                              msgs[i].topic, "partition", (int)msgs[i].partition,
                                              "offset", (json_int_t)msgs[i].offset);
                                print_json_line(o);
                                json_decref(o);
                        } else {
                                printf("%s\t%s\t%d\t%lld\n", msgs[i].key, msgs[i].topic,
                                       (int)msgs[i].partition, (long long)msgs[i].offset);
                        }
                }
                log_info("%s: %zu message%s committed in one transaction", cmd, in->n,
                         in->n == 1 ? "" : "s");
                rc = NC_EX_OK;
        }
        for (i = 0; i < in->n; i++)
                free(msgs[i].value); /* those librdkafka never took */
        free(msgs);
        return rc;
}

enum {
        OPT_TITLE = 256,
        OPT_BODY,
        OPT_BODY_FILE,
        OPT_SUMMARY,
        OPT_CATEGORY,
        OPT_REGION,
        OPT_LANG,
        OPT_PRIORITY,
        OPT_URL,
        OPT_SOURCE,
        OPT_JSON,
        OPT_REASON
};

/* The flag that sets one text field of the notice built from flags, or NULL. */
static const char **flag_field(struct flag_notice *f, int c)
{
        switch (c) {
        case OPT_TITLE:
                return &f->title;
        case OPT_BODY:
                return &f->body;
        case OPT_BODY_FILE:
                return &f->body_file;
        case OPT_SUMMARY:
                return &f->summary;
        case OPT_CATEGORY:
                return &f->category;
        case OPT_LANG:
                return &f->lang;
        case OPT_PRIORITY:
                return &f->priority;
        case OPT_URL:
                return &f->url;
        case OPT_SOURCE:
                return &f->source;
        default:
                return NULL;
        }
}

int cmd_publish(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"dry-run", no_argument, NULL, 'n'},
            {"json", no_argument, NULL, OPT_JSON},
            {"title", required_argument, NULL, OPT_TITLE},
            {"body", required_argument, NULL, OPT_BODY},
            {"body-file", required_argument, NULL, OPT_BODY_FILE},
            {"summary", required_argument, NULL, OPT_SUMMARY},
            {"category", required_argument, NULL, OPT_CATEGORY},
            {"region", required_argument, NULL, OPT_REGION},
            {"lang", required_argument, NULL, OPT_LANG},
            {"priority", required_argument, NULL, OPT_PRIORITY},
            {"url", required_argument, NULL, OPT_URL},
            {"source", required_argument, NULL, OPT_SOURCE},
            {0},
        };
        struct flag_notice f = {0};
        const char **field;
        struct batch b = {0};
        nc_kafka_txn_t *txn = NULL;
        nc_input_t in = {0};
        int c, dry_run = 0, json_out = 0, rc;
        char err[512];

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT "n", longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                if ((field = flag_field(&f, c))) {
                        *field = optarg;
                        f.used = 1;
                        continue;
                }
                switch (c) {
                case 'h':
                        fputs(publish_usage, stdout);
                        nc_strlist_clear(&f.regions);
                        return NC_EX_OK;
                case 'n':
                        dry_run = 1;
                        break;
                case OPT_JSON:
                        json_out = 1;
                        break;
                case OPT_REGION:
                        nc_strlist_add(&f.regions, optarg);
                        f.used = 1;
                        break;
                default:
                        nc_strlist_clear(&f.regions);
                        return nc_cli_usage_error("publish", "noticecast publish [options] "
                                                             "[FILE|-]...");
                }
        }
        if (f.body && f.body_file) {
                nc_strlist_clear(&f.regions);
                return nc_cli_fail(NC_EX_USAGE, "publish",
                                   "--body and --body-file exclude "
                                   "each other");
        }
        if (!f.used && optind >= argc) {
                nc_strlist_clear(&f.regions);
                return nc_cli_usage_error("publish",
                                          "noticecast publish [options] FILE|- ... or --title "
                                          "TEXT --category NAME ...");
        }
        if ((rc = nc_cli_load_config(cli)) != 0)
                goto out;
        batch_init(&b, &in, &cli->cfg, NC_NOTICE_INPUT);
        if (!dry_run) {
                /* Connect and initialise the transaction while the input is validated. */
                const char **topics = nc_xcalloc(cli->cfg.categories.n, sizeof(*topics));

                for (size_t i = 0; i < cli->cfg.categories.n; i++)
                        topics[i] = b.topics[i];
                txn = nc_kafka_txn_prepare(&cli->cfg, topics, cli->cfg.categories.n,
                                           cli->cfg.producer_timeout_ms, err, sizeof(err));
                free(topics);
                if (!txn) {
                        rc = nc_cli_fail(NC_EX_CONFIG, "publish", "%s", err);
                        goto out;
                }
        }
        if ((rc = read_inputs(&in, argc - optind, argv + optind, "publish")) != 0)
                goto out;
        if (f.used) {
                json_t *n = flag_notice_build(&f, &cli->cfg, err, sizeof(err));

                if (!n) {
                        rc = nc_cli_fail(NC_EX_DATAERR, "publish", "%s", err);
                        goto out;
                }
                nc_input_add(&in, "<command line>", n);
        }
        if (in.n == 0) {
                rc = nc_cli_fail(NC_EX_DATAERR, "publish", "no notices in the input");
                goto out;
        }
        if (batch_finish(&b, &in) > 0) {
                fprintf(stderr,
                        "noticecast: publish: %zu invalid notice%s, nothing was "
                        "published\n",
                        b.bad, b.bad == 1 ? "" : "s");
                rc = NC_EX_DATAERR;
                goto out;
        }
        if (dry_run) {
                for (size_t i = 0; i < in.n; i++)
                        puts(in.items[i].value);
                rc = NC_EX_OK;
                goto out;
        }
        rc = produce_items(cli, txn, &in, json_out, "publish");
out:
        nc_kafka_txn_free(txn);
        nc_strlist_clear(&f.regions);
        nc_input_free(&in);
        if (b.seen)
                batch_free(&b);
        return rc;
}

int cmd_validate(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {NC_CLI_COMMON_LONG, {0}};
        struct batch b;
        nc_input_t in = {0};
        int c, i, rc = 0, worst = NC_EX_OK;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(validate_usage, stdout);
                        return NC_EX_OK;
                }
                return nc_cli_usage_error("validate", "noticecast validate FILE...");
        }
        if (optind >= argc)
                return nc_cli_usage_error("validate", "noticecast validate FILE...");
        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        /* Each file on its own, so one broken file doesn't hide errors in the next. */
        for (i = optind; i < argc; i++) {
                batch_init(&b, &in, &cli->cfg, NC_NOTICE_CHECK);
                rc = read_inputs(&in, 1, argv + i, "validate");
                if (rc == 0 && batch_finish(&b, &in)) {
                        rc = NC_EX_DATAERR;
                } else if (rc == 0) {
                        printf("%s: %zu notice%s OK\n", argv[i], in.n, in.n == 1 ? "" : "s");
                }
                if (rc != 0 && worst != NC_EX_NOINPUT)
                        worst = rc;
                nc_input_free(&in);
                batch_free(&b);
        }
        return worst;
}

int cmd_withdraw(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"category", required_argument, NULL, OPT_CATEGORY},
            {"reason", required_argument, NULL, OPT_REASON},
            {"json", no_argument, NULL, OPT_JSON},
            {0},
        };
        const char *category = NULL, *reason = NULL;
        nc_input_t in = {0};
        nc_input_item_t *it;
        int c, rc, json_out = 0;
        char err[512], topic[256];
        json_t *ev;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        fputs(withdraw_usage, stdout);
                        return NC_EX_OK;
                case OPT_CATEGORY:
                        category = optarg;
                        break;
                case OPT_REASON:
                        reason = optarg;
                        break;
                case OPT_JSON:
                        json_out = 1;
                        break;
                default:
                        return nc_cli_usage_error("withdraw", "noticecast withdraw ID --category "
                                                              "NAME [--reason TEXT]");
                }
        }
        if (optind != argc - 1 || !category)
                return nc_cli_usage_error("withdraw",
                                          "noticecast withdraw ID --category NAME [--reason TEXT]");
        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        if (!nc_uuid_valid(argv[optind]))
                return nc_cli_fail(NC_EX_DATAERR, "withdraw", "id: '%s' is not a notice id (UUID)",
                                   argv[optind]);
        ev = nc_notice_withdrawal(argv[optind], category, reason, &cli->cfg, nc_time_now_ms(), err,
                                  sizeof(err));
        if (!ev)
                return nc_cli_fail(NC_EX_DATAERR, "withdraw", "%s", err);
        nc_input_add(&in, "<command line>", ev);
        it = &in.items[0];
        it->value = json_dumps(ev, JSON_COMPACT);
        it->value_len = strlen(it->value);
        snprintf(it->key, sizeof(it->key), "%s", json_string_value(json_object_get(ev, "id")));
        nc_config_notice_topic(&cli->cfg, category, topic, sizeof(topic));
        it->topic = topic;
        it->event = NC_EVENT_WITHDRAWN;
        rc = produce_items(cli, NULL, &in, json_out, "withdraw");
        nc_input_free(&in);
        return rc;
}
