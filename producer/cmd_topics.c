/* noticecast topics create: every topic the configuration implies; safe to run twice. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "nc_kafka.h"

#define MAX_TOPICS 256

static const char topics_usage[] =
    "noticecast topics create [options]\n"
    "noticecast topics list [options]\n"
    "\n"
    "create makes one topic per configured category (<prefix>notices.<category>), the\n"
    "compacted <prefix>subscribers topic and the <prefix>dlq topic, with the configured\n"
    "partitions and replication factor.  Existing topics are left as they are.\n"
    "list prints the topics the configuration implies.\n";

static void report(const char *topic, int created, void *opaque)
{
        (void)opaque;
        printf("%s\t%s\n", created ? "created" : "exists", topic);
}

int cmd_topics(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {NC_CLI_COMMON_LONG, {0}};
        nc_kafka_topic_spec_t specs[MAX_TOPICS];
        char err[1024];
        size_t n, i;
        int c, rc;

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
        n = nc_kafka_topic_specs(&cli->cfg, specs, MAX_TOPICS);
        if (!strcmp(argv[optind], "list")) {
                for (i = 0; i < n; i++)
                        printf("%s\t%d\t%s\n", specs[i].name, specs[i].partitions,
                               specs[i].compact ? "compact" : "delete");
                return NC_EX_OK;
        }
        if ((rc = nc_kafka_create_topics(&cli->cfg, specs, n, cli->cfg.producer_timeout_ms, report,
                                         NULL, err, sizeof(err))) != 0)
                return nc_cli_fail(nc_cli_kafka_code(rc), "topics create", "%s", err);
        return NC_EX_OK;
}
