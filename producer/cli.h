/* Shared state and helpers of the `noticecast` admin CLI.  Each subcommand lives in its own
 * cmd_*.c file and returns a sysexits(3) code. */
#ifndef NC_CLI_H
#define NC_CLI_H

#include <getopt.h>
#include <jansson.h>

#include "nc_config.h"
#include "nc_util.h"

typedef struct nc_cli {
        const char *config_path; /* -C */
        const char *brokers;     /* -b */
        nc_strlist_t xprops;     /* -X key=value, in order */
        nc_config_t cfg;
        int cfg_loaded;
} nc_cli_t;

/* Options every subcommand accepts besides its own (kcat style: -C -X -b -v -q). */
#define NC_CLI_COMMON_SHORT "C:X:b:vqh"
#define NC_CLI_COMMON_LONG                                                                         \
        {"config", required_argument, NULL, 'C'}, {"property", required_argument, NULL, 'X'},     \
                {"brokers", required_argument, NULL, 'b'},                                         \
                {"verbose", no_argument, NULL, 'v'}, {"quiet", no_argument, NULL, 'q'},           \
                {"help", no_argument, NULL, 'h'}

/* Handles one of the common options.  Returns 1 if C was one, 0 if not. */
int nc_cli_common_opt(nc_cli_t *cli, int c, const char *arg);
/* Loads the configuration and applies -X and -b.  Returns 0 or NC_EX_CONFIG (reported). */
int nc_cli_load_config(nc_cli_t *cli);
/* Prints "noticecast: CMD: message" to stderr and returns CODE. */
int nc_cli_fail(int code, const char *cmd, const char *fmt, ...) NC_PRINTF(3, 4);
/* Reports a bad option and returns NC_EX_USAGE. */
int nc_cli_usage_error(const char *cmd, const char *usage_hint);

/* One JSON value read from an input file, with the line it starts on. */
typedef struct nc_input_item {
        const char *file;
        int line;
        json_t *json;
} nc_input_item_t;

typedef struct nc_input {
        nc_input_item_t *items;
        size_t n, cap;
        char **files; /* owned copies of the paths, for items' file pointers */
        size_t nfiles;
} nc_input_t;

/* Reads PATH ("-" = stdin) holding one JSON object, a JSON array of objects, or NDJSON, and
 * appends its values to IN.  On a syntax or encoding error returns -1 with errstr
 * "file:line: message"; NC_EX_NOINPUT-class errors (cannot open) return -2. */
int nc_input_read(nc_input_t *in, const char *path, char *errstr, size_t errstr_size);
void nc_input_free(nc_input_t *in);

int cmd_publish(nc_cli_t *cli, int argc, char **argv);
int cmd_validate(nc_cli_t *cli, int argc, char **argv);
int cmd_withdraw(nc_cli_t *cli, int argc, char **argv);
int cmd_subscribers(nc_cli_t *cli, int argc, char **argv);
int cmd_topics(nc_cli_t *cli, int argc, char **argv);

#endif
