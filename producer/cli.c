#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int nc_cli_common_opt(nc_cli_t *cli, int c, const char *arg)
{
        switch (c) {
        case 'C':
                cli->config_path = arg;
                return 1;
        case 'X':
                nc_strlist_add(&cli->xprops, arg);
                return 1;
        case 'b':
                cli->brokers = arg;
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

int nc_cli_load_config(nc_cli_t *cli)
{
        char errstr[1024];
        const char *path;
        int explicit_path;
        size_t i;

        if (cli->cfg_loaded)
                return 0;
        path = nc_config_path(cli->config_path, &explicit_path);
        if (nc_config_load(&cli->cfg, path, explicit_path, errstr, sizeof(errstr)) != 0) {
                fprintf(stderr, "noticecast: %s\n", errstr);
                return NC_EX_CONFIG;
        }
        cli->cfg_loaded = 1;
        for (i = 0; i < cli->xprops.n; i++) {
                char *kv = nc_xstrdup(cli->xprops.v[i]), *eq = strchr(kv, '=');
                int rc;

                if (!eq || eq == kv) {
                        fprintf(stderr, "noticecast: -X %s: expected key=value\n", kv);
                        free(kv);
                        return NC_EX_CONFIG;
                }
                *eq = '\0';
                rc = nc_config_set_kafka(&cli->cfg, kv, eq + 1, "-X", errstr, sizeof(errstr));
                free(kv);
                if (rc != 0) {
                        fprintf(stderr, "noticecast: %s\n", errstr);
                        return NC_EX_CONFIG;
                }
        }
        if (cli->brokers &&
            nc_config_set_kafka(&cli->cfg, "bootstrap.servers", cli->brokers, "-b", errstr,
                                sizeof(errstr)) != 0) {
                fprintf(stderr, "noticecast: %s\n", errstr);
                return NC_EX_CONFIG;
        }
        return 0;
}

int nc_cli_fail(int code, const char *cmd, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "noticecast: %s: ", cmd);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

int nc_cli_usage_error(const char *cmd, const char *usage_hint)
{
        fprintf(stderr, "usage: %s\nTry 'noticecast %s -h' for more information.\n",
                usage_hint, cmd);
        return NC_EX_USAGE;
}
