#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nc_kafka.h"

int nc_cli_common_opt(nc_cli_t *cli, int c, const char *arg)
{
        return nc_config_cmdline_opt(c, arg, &cli->config_path, &cli->xprops, &cli->brokers);
}

int nc_cli_load_config(nc_cli_t *cli)
{
        char errstr[1024];
        int explicit_path;
        const char *path = nc_config_path(cli->config_path, &explicit_path);

        if (cli->cfg_loaded)
                return 0;
        /* What nc_daemon_config() does, without linking nc_daemon.o: it would bring the HTTP
         * server and its TLS library, whose loading every command (an inbound mail each)
         * would pay. */
        if (nc_config_load(&cli->cfg, path, explicit_path, errstr, sizeof(errstr)) != 0) {
                fprintf(stderr, "noticecast: %s\n", errstr);
                return NC_EX_CONFIG;
        }
        if (nc_config_apply_overrides(&cli->cfg, &cli->xprops, cli->brokers, errstr,
                                      sizeof(errstr)) != 0) {
                nc_config_free(&cli->cfg);
                fprintf(stderr, "noticecast: %s\n", errstr);
                return NC_EX_CONFIG;
        }
        cli->cfg_loaded = 1;
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

int nc_cli_kafka_code(int rc)
{
        return rc == NC_KAFKA_DENIED ? NC_EX_NOPERM : NC_EX_UNAVAILABLE;
}

int nc_cli_usage_error(const char *cmd, const char *usage_hint)
{
        fprintf(stderr, "usage: %s\nTry 'noticecast %s -h' for more information.\n", usage_hint,
                cmd);
        return NC_EX_USAGE;
}

void nc_cli_tsv(const char *s, size_t len, char sep)
{
        char buf[NC_TSV_FIELD_SIZE(NC_TSV_FIELD_MAX)];

        fputs(nc_tsv_escape(s, len, NC_TSV_FIELD_MAX, buf, sizeof(buf)), stdout);
        putchar(sep);
}

void nc_cli_tsv_str(const char *s, const char *if_null, char sep)
{
        if (!s)
                s = if_null;
        nc_cli_tsv(s, strlen(s), sep);
}
