/* noticecast topics create: every topic the programs use; safe to run twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nc_kafka.h"
#include "nc_topics.h"

static const char topics_usage[] =
    "noticecast topics create [options]\n"
    "noticecast topics list [options]\n"
    "\n"
    "create makes every topic the programs use, with [topics] replication_factor\n"
    "and, per kind, <kind>_partitions (default: [topics] partitions) and\n"
    "<kind>_retention (default in parentheses):\n"
    "  <prefix>notices.<category>  notices: one per category (30d)\n"
    "  <prefix>subscribers         subscribers: compacted\n"
    "  <prefix>dlq                 dlq (forever: kept until replayed)\n"
    "  <prefix>deliveries          deliveries (90d)\n"
    "  <prefix>webhooks.retry.<d>  webhooks_retry: one per distinct step of\n"
    "                              [webhooks] retry_schedule (7d)\n"
    "  <prefix>mailer.plan         compacted, always 1 partition (it elects the\n"
    "                              digest planner)\n"
    "  <prefix>mailer.jobs         mailer_jobs (7d)\n"
    "Existing topics are left as they are (reported \"exists\").  The daemons create\n"
    "none: they wait, not ready, until their topics exist.\n"
    "list prints them all: name, partitions, cleanup policy, retention.\n";

static void report(const char *topic, int created, void *opaque)
{
        (void)opaque;
        printf("%s\t%s\n", created ? "created" : "exists", topic);
}

static void list(const nc_topic_spec_t *specs, size_t n)
{
        char ret[32];

        for (size_t i = 0; i < n; i++) {
                nc_topics_retention_format(specs[i].retention_ms, ret, sizeof(ret));
                printf("%s\t%d\t%s\t%s\n", specs[i].name, specs[i].partitions,
                       nc_topics_policy(&specs[i]), ret);
        }
}

int cmd_topics(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {NC_CLI_COMMON_LONG, {0}};
        nc_topic_spec_t *specs;
        char err[1024];
        size_t n;
        int c, rc = NC_EX_OK;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(topics_usage, stdout);
                        return NC_EX_OK;
                }
                return nc_cli_usage_error("topics", "noticecast topics create|list");
        }
        if (optind != argc - 1 || (strcmp(argv[optind], "create") && strcmp(argv[optind], "list")))
                return nc_cli_usage_error("topics", "noticecast topics create|list");
        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        n = nc_topics_specs(&cli->cfg, NC_TOPICS_ALL, NULL, 0);
        specs = nc_xcalloc(n ? n : 1, sizeof(*specs));
        n = nc_topics_specs(&cli->cfg, NC_TOPICS_ALL, specs, n);
        if (!strcmp(argv[optind], "list"))
                list(specs, n);
        else if ((rc = nc_kafka_create_topics(&cli->cfg, specs, n, cli->cfg.producer_timeout_ms,
                                              report, NULL, err, sizeof(err))) != 0)
                rc = nc_cli_fail(nc_cli_kafka_code(rc), "topics create", "%s", err);
        free(specs);
        return rc;
}
