/* noticecast suppressions list | remove
 *
 * A subscriber is suppressed by the mailer after bounce_suppress_after hard bounces within
 * bounce_window (at the SMTP session, or DSNs that came back through `noticecast inbound`):
 * its record stays, with "suppressed": true, and nothing is sent to it.  Signing up again
 * (the double opt-in) ends it; so does `remove`, for an administrator who fixed the cause (a
 * mailbox that was full, a typo in the import corrected at the provider).  The list reads the
 * subscribers topic, as `subscribers list` does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nc_subscriber.h"
#include "nc_time.h"

static const char suppressions_usage[] =
    "noticecast suppressions list [--json]\n"
    "noticecast suppressions remove --email ADDR\n"
    "\n"
    "list prints the suppressed subscribers: email, bounces, bounced_at (the last hard\n"
    "bounce counted), bounce_reason (its status and diagnostic) as TSV, escaped as\n"
    "`subscribers list` does; --json prints each record exactly, one per line.\n"
    "remove ends the suppression of ADDR: its bounce counters are cleared and it is mailed\n"
    "again (its choices and its links stay).  65 if ADDR is not a subscriber.\n"
    "Common options: -C FILE  -X key=value  -b BROKERS  -v  -q  -h\n";

enum { OPT_EMAIL = 300, OPT_JSON };

static int read_all(nc_cli_t *cli, json_t *all, const char *cmd)
{
        char err[1024];
        int rc;

        if ((rc = nc_cli_load_config(cli)) != 0)
                return rc;
        if ((rc = nc_cli_subscribers_read(cli, all, err, sizeof(err))) != 0)
                return nc_cli_fail(nc_cli_kafka_code(rc), cmd, "%s", err);
        return 0;
}

static int sup_list(nc_cli_t *cli, int json_out)
{
        json_t *all = json_object(), *rec;
        const char **keys;
        const char *k;
        size_t n = 0;
        int rc;

        if ((rc = read_all(cli, all, "suppressions list")) != 0) {
                json_decref(all);
                return rc;
        }
        keys = nc_xcalloc(json_object_size(all) + 1, sizeof(*keys));
        json_object_foreach(all, k, rec)
                if (json_is_true(json_object_get(rec, "suppressed")))
                        keys[n++] = k;
        qsort(keys, n, sizeof(*keys), nc_cli_cmp_str);
        for (size_t i = 0; i < n; i++) {
                rec = json_object_get(all, keys[i]);
                if (json_out) {
                        char *s = json_dumps(rec, JSON_COMPACT);

                        puts(s);
                        free(s);
                        continue;
                }
                nc_cli_tsv_field(rec, "email", '\t');
                printf("%lld\t", (long long)json_integer_value(json_object_get(rec, "bounces")));
                nc_cli_tsv_field(rec, "bounced_at", '\t');
                nc_cli_tsv_field(rec, "bounce_reason", '\n');
        }
        free(keys);
        json_decref(all);
        return NC_EX_OK;
}

static int sup_remove(nc_cli_t *cli, const char *email)
{
        static const char *const cleared[] = {"suppressed", "bounces", "bounced_at",
                                              "bounce_reason"};
        json_t *all = json_object(), *cur, *in, *rec;
        char lower[300], err[512];
        const char *key = lower;
        int rc;

        if (!email)
                return nc_cli_usage_error("suppressions",
                                          "noticecast suppressions remove --email ADDR");
        if (nc_email_valid(email, err, sizeof(err)) != 0)
                return nc_cli_fail(NC_EX_DATAERR, "suppressions remove", "--email: %s", err);
        snprintf(lower, sizeof(lower), "%s", email);
        nc_str_lower(lower);
        if ((rc = read_all(cli, all, "suppressions remove")) != 0) {
                json_decref(all);
                return rc;
        }
        if (!(cur = json_object_get(all, lower))) {
                json_decref(all);
                return nc_cli_fail(NC_EX_DATAERR, "suppressions remove",
                                   "--email: %s is not a subscriber", lower);
        }
        if (!json_is_true(json_object_get(cur, "suppressed"))) {
                json_decref(all);
                printf("not suppressed\t%s\n", lower);
                return NC_EX_OK;
        }
        /* The same record, generation included (its links keep working), counters gone. */
        in = json_deep_copy(cur);
        for (size_t i = 0; i < sizeof(cleared) / sizeof(cleared[0]); i++)
                json_object_del(in, cleared[i]);
        json_object_del(in, "updated_at");
        rec = nc_subscriber_normalise(in, &cli->cfg, nc_time_now_ms(), err, sizeof(err));
        json_decref(in);
        json_decref(all);
        if (!rec)
                return nc_cli_fail(NC_EX_DATAERR, "suppressions remove",
                                   "the record of %s does not pass: %s", lower, err);
        rc = nc_cli_subscribers_write(cli, &rec, &key, 1, "suppressions remove");
        if (rc == 0)
                printf("unsuppressed\t%s\n", lower);
        json_decref(rec);
        return rc;
}

int cmd_suppressions(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"email", required_argument, NULL, OPT_EMAIL},
            {"json", no_argument, NULL, OPT_JSON},
            {0},
        };
        const char *action, *email = NULL;
        int c, json_out = 0;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT, longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        fputs(suppressions_usage, stdout);
                        return NC_EX_OK;
                case OPT_JSON:
                        json_out = 1;
                        break;
                case OPT_EMAIL:
                        email = optarg;
                        break;
                default:
                        return nc_cli_usage_error("suppressions",
                                                  "noticecast suppressions list|remove ...");
                }
        }
        action = optind < argc ? argv[optind] : "";
        if (!strcmp(action, "list") && optind + 1 == argc && !email)
                return sup_list(cli, json_out);
        if (!strcmp(action, "remove") && optind + 1 == argc && !json_out)
                return sup_remove(cli, email);
        return nc_cli_usage_error("suppressions",
                                  "noticecast suppressions list [--json] | remove --email ADDR");
}
