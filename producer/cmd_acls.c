/* noticecast acls: the least-privilege ACLs of a role (common/nc_acl.h), printed or created. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "nc_acl.h"
#include "nc_kafka.h"

#define MAX_ACLS 128

static const char acls_usage[] =
    "noticecast acls --role cli|webhooks|mailer|inbound|admin --principal User:NAME [--host H]\n"
    "                [--apply] [options]\n"
    "\n"
    "Prints the Kafka ACLs the role needs under this configuration, one per line:\n"
    "principal, host, permission, operation, resource type, pattern type, name\n"
    "(tab-separated).  --apply creates them through the Admin API (the principal running\n"
    "it needs ALTER on the cluster: a super user) and prints created\\t<line> for each.\n"
    "cli is the noticecast CLI without `topics create`, which is the admin role's.\n"
    "inbound is `noticecast inbound` (the MTA's pipe): it writes deliveries and dlq only.\n"
    "Exit status: 0 ok, 64 usage, 69 broker unreachable or an ACL not created,\n"
    "77 not authorized to create ACLs, 78 bad config.\n";

static const char acls_hint[] =
    "noticecast acls --role cli|webhooks|mailer|inbound|admin --principal User:NAME [--host H] "
    "[--apply]";

enum { OPT_ROLE = 300, OPT_PRINCIPAL, OPT_HOST, OPT_APPLY };

struct acls_args {
        nc_acl_role_t role;
        const char *principal, *host;
        int apply;
};

static void print_acl(const struct acls_args *a, const nc_acl_t *acl)
{
        printf("%s\t%s\tALLOW\t%s\t%s\t%s\t%s\n", a->principal, a->host, nc_acl_op_name(acl->op),
               nc_acl_resource_name(acl->resource), nc_acl_pattern_name(acl->pattern), acl->name);
}

/* librdkafka 2.0 has no TRANSACTIONAL_ID resource type: the command that creates it. */
static void unsupported_hint(nc_cli_t *cli, const struct acls_args *a, const nc_acl_t *acl)
{
        fprintf(stderr,
                "noticecast: acls: create it with: kafka-acls.sh --bootstrap-server %s "
                "--command-config ADMIN.properties --add --allow-principal '%s' --allow-host "
                "'%s' --operation %s --transactional-id '%s' --resource-pattern-type %s\n",
                nc_config_kafka_get(&cli->cfg, "bootstrap.servers"), a->principal, a->host,
                nc_acl_op_name(acl->op), acl->name,
                acl->pattern == NC_ACL_PREFIXED ? "prefixed" : "literal");
}

/* Creates the bindings, reporting each; 0 or an exit code. */
static int apply(nc_cli_t *cli, const struct acls_args *a, const nc_acl_t *acls, size_t n)
{
        nc_kafka_acl_t spec[MAX_ACLS];
        nc_kafka_acl_result_t res[MAX_ACLS];
        char err[1024];
        size_t i;
        int rc, code = NC_EX_OK;

        for (i = 0; i < n; i++)
                spec[i] = (nc_kafka_acl_t){.resource = nc_acl_rd_resource(acls[i].resource),
                                           .pattern = nc_acl_rd_pattern(acls[i].pattern),
                                           .name = acls[i].name,
                                           .principal = a->principal,
                                           .host = a->host,
                                           .op = nc_acl_rd_op(acls[i].op)};
        rc = nc_kafka_create_acls(&cli->cfg, spec, n, res, cli->cfg.producer_timeout_ms, err,
                                  sizeof(err));
        if (rc != 0)
                return nc_cli_fail(rc == NC_KAFKA_DENIED ? NC_EX_NOPERM : NC_EX_UNAVAILABLE, "acls",
                                   "%s", err);
        for (i = 0; i < n; i++) {
                if (!res[i].error[0]) {
                        fputs("created\t", stdout);
                        print_acl(a, &acls[i]);
                        continue;
                }
                fprintf(stderr, "noticecast: acls: %s %s %s %s: %s\n", nc_acl_op_name(acls[i].op),
                        nc_acl_resource_name(acls[i].resource),
                        nc_acl_pattern_name(acls[i].pattern), acls[i].name, res[i].error);
                if (res[i].unsupported)
                        unsupported_hint(cli, a, &acls[i]);
                if (code != NC_EX_NOPERM)
                        code = res[i].denied ? NC_EX_NOPERM : NC_EX_UNAVAILABLE;
        }
        return code;
}

static int parse(nc_cli_t *cli, int argc, char **argv, struct acls_args *a)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"role", required_argument, NULL, OPT_ROLE},
            {"principal", required_argument, NULL, OPT_PRINCIPAL},
            {"host", required_argument, NULL, OPT_HOST},
            {"apply", no_argument, NULL, OPT_APPLY},
            {0}};
        const char *role = NULL;
        int c;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(acls_usage, stdout);
                        return -1;
                }
                if (c == OPT_ROLE)
                        role = optarg;
                else if (c == OPT_PRINCIPAL)
                        a->principal = optarg;
                else if (c == OPT_HOST)
                        a->host = optarg;
                else if (c == OPT_APPLY)
                        a->apply = 1;
                else
                        return nc_cli_usage_error("acls", acls_hint);
        }
        if (optind != argc) {
                fprintf(stderr, "noticecast: acls: unexpected argument '%s'\n", argv[optind]);
                return nc_cli_usage_error("acls", acls_hint);
        }
        if (!role || nc_acl_role_parse(role, &a->role) != 0) {
                fprintf(
                    stderr,
                    "noticecast: acls: --role: %s%s%s (cli, webhooks, mailer, inbound or admin)\n",
                    role ? "no role '" : "missing", role ? role : "", role ? "'" : "");
                return nc_cli_usage_error("acls", acls_hint);
        }
        if (!a->principal || !strchr(a->principal, ':') || a->principal[0] == ':' ||
            !strchr(a->principal, ':')[1]) {
                fprintf(stderr, "noticecast: acls: --principal: %s (TYPE:NAME, e.g. User:cli)\n",
                        a->principal ? "not TYPE:NAME" : "missing");
                return nc_cli_usage_error("acls", acls_hint);
        }
        if (!a->host[0]) {
                fprintf(stderr, "noticecast: acls: --host: empty (an address, or * for any)\n");
                return nc_cli_usage_error("acls", acls_hint);
        }
        return 0;
}

int cmd_acls(nc_cli_t *cli, int argc, char **argv)
{
        struct acls_args a = {.host = "*"};
        nc_acl_t acls[MAX_ACLS];
        char err[512];
        int rc, n, i;

        if ((rc = parse(cli, argc, argv, &a)) != 0)
                return rc < 0 ? NC_EX_OK : rc;
        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        if ((n = nc_acl_list(&cli->cfg, a.role, acls, MAX_ACLS, err, sizeof(err))) < 0)
                return nc_cli_fail(NC_EX_CONFIG, "acls", "%s", err);
        if (a.apply)
                return apply(cli, &a, acls, (size_t)n);
        for (i = 0; i < n; i++)
                print_acl(&a, &acls[i]);
        return NC_EX_OK;
}
