/* noticecast — the admin CLI: publish notices to Kafka and manage subscribers and topics. */
#include <curl/curl.h>
#include <dlfcn.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: noticecast [-C FILE] [-X key=value]... [-b BROKERS] [-v|-q] COMMAND [ARGS]\n"
    "       noticecast -h | -V\n"
    "\n"
    "Commands:\n"
    "  publish [FILE|-]...     publish notices (one Kafka transaction: all or nothing)\n"
    "  validate FILE...        check notice files, publish nothing\n"
    "  withdraw ID --category C [--reason TEXT]\n"
    "                          publish a withdrawal of a notice\n"
    "  subscribers add|remove|import FILE.csv|list\n"
    "                          maintain the subscribers topic\n"
    "  topics create|list      create every topic the configuration implies\n"
    "  suppressions list|remove --email ADDR\n"
    "                          subscribers suppressed after hard bounces; end one\n"
    "  dlq list|replay         show or republish quarantined messages\n"
    "  deliveries NOTICE_ID    per partner, whether and when a notice was delivered\n"
    "  render TEMPLATE [DATA]  render a Mustache template (e.g. an email template)\n"
    "  acls --role R --principal User:NAME [--apply]\n"
    "                          the Kafka ACLs a program needs (cli, webhooks, mailer,\n"
    "                          inbound, admin)\n"
    "  inbound [--recipient ADDR] [-n]\n"
    "                          one mail on stdin (bounce, complaint, unsubscribe) to an event\n"
    "\n"
    "Options (also accepted after the command):\n"
    "  -C FILE        configuration file (default: $NOTICECAST_CONFIG, else\n"
    "                 " NC_SYSCONFDIR "/noticecast/noticecast.conf)\n"
    "  -X key=value   librdkafka property, overrides [kafka] in the file\n"
    "  -b BROKERS     bootstrap servers (same as -X bootstrap.servers=BROKERS)\n"
    "  -v, -q         more / less logging on stderr (repeatable)\n"
    "  -h             this help; 'noticecast COMMAND -h' for a command's help\n"
    "  -V             versions of noticecast and its libraries\n"
    "\n"
    "Exit status: 0 ok, 64 usage, 65 invalid input (nothing published), 66 cannot read\n"
    "input, 69 broker unreachable or delivery failed (nothing published), 77 not authorized\n"
    "(an ACL is missing: the message names it), 78 bad config.  inbound: 0 or 75 (try\n"
    "again later), as MTAs expect.\n";

/* libcurl is loaded for this line only: linked, its dependencies would be loaded by every
 * command, and `noticecast inbound` runs once per inbound mail. */
static void print_versions(void)
{
        curl_version_info_data *(*curl_info)(CURLversion) = NULL;
        void *curl = dlopen("libcurl.so.4", RTLD_LAZY | RTLD_LOCAL);

        if (curl)
                *(void **)&curl_info = dlsym(curl, "curl_version_info");
        printf("noticecast %s\n", NC_VERSION);
        printf("librdkafka %s\n", rd_kafka_version_str());
        printf("jansson %s\n", jansson_version_str());
        printf("libcurl %s\n", curl_info ? curl_info(CURLVERSION_NOW)->version : "(not found)");
        printf("openssl %s\n", OpenSSL_version(OPENSSL_VERSION));
        if (curl)
                dlclose(curl);
}

static const struct {
        const char *name;
        int (*fn)(nc_cli_t *, int, char **);
} commands[] = {
    {"publish", cmd_publish},           {"validate", cmd_validate}, {"withdraw", cmd_withdraw},
    {"subscribers", cmd_subscribers},   {"topics", cmd_topics},     {"dlq", cmd_dlq},
    {"deliveries", cmd_deliveries},     {"render", cmd_render},     {"acls", cmd_acls},
    {"suppressions", cmd_suppressions}, {"inbound", cmd_inbound},
};

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG, {"version", no_argument, NULL, 'V'}, {0}};
        nc_cli_t cli = {0};
        size_t i;
        int c, rc = NC_EX_USAGE;

        nc_log_init("noticecast", NC_LOG_WARN);
        /* Before any thread: notices are parsed by two threads for large files. */
        json_object_seed(0);
        /* '+': stop at the command name; the command parses the rest. */
        while ((c = getopt_long(argc, argv, "+" NC_CLI_COMMON_SHORT "V", longopts, NULL)) != -1) {
                if (nc_cli_common_opt(&cli, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(usage, stdout);
                        return NC_EX_OK;
                }
                if (c == 'V') {
                        print_versions();
                        return NC_EX_OK;
                }
                fputs(usage, stderr);
                return NC_EX_USAGE;
        }
        if (optind >= argc) {
                fputs(usage, stderr);
                return NC_EX_USAGE;
        }
        for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (!strcmp(argv[optind], commands[i].name)) {
                        int sub_argc = argc - optind;
                        char **sub_argv = argv + optind;

                        optind = 0; /* 0, not 1: glibc re-initialises, dropping the "+" */
                        rc = commands[i].fn(&cli, sub_argc, sub_argv);
                        break;
                }
        }
        if (i == sizeof(commands) / sizeof(commands[0])) {
                fprintf(stderr, "noticecast: unknown command '%s'\n\n%s", argv[optind], usage);
                rc = NC_EX_USAGE;
        }
        if (cli.cfg_loaded)
                nc_config_free(&cli.cfg);
        nc_strlist_clear(&cli.xprops);
        return rc;
}
