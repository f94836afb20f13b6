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
        {"config", required_argument, NULL, 'C'}, {"property", required_argument, NULL, 'X'},      \
            {"brokers", required_argument, NULL, 'b'}, {"verbose", no_argument, NULL, 'v'},        \
            {"quiet", no_argument, NULL, 'q'},                                                     \
        {                                                                                          \
                "help", no_argument, NULL, 'h'                                                     \
        }

/* Handles one of the common options.  Returns 1 if C was one, 0 if not. */
int nc_cli_common_opt(nc_cli_t *cli, int c, const char *arg);
/* Loads the configuration and applies -X and -b.  Returns 0 or NC_EX_CONFIG (reported). */
int nc_cli_load_config(nc_cli_t *cli);
/* Prints "noticecast: CMD: message" to stderr and returns CODE. */
int nc_cli_fail(int code, const char *cmd, const char *fmt, ...) NC_PRINTF(3, 4);
/* The exit code of a failed Kafka operation that returned RC: 77 for NC_KAFKA_DENIED (an ACL
 * is missing), else 69. */
int nc_cli_kafka_code(int rc);
/* Reports a bad option and returns NC_EX_USAGE. */
int nc_cli_usage_error(const char *cmd, const char *usage_hint);
/* Prints S[0..LEN) as one field of a tab-separated listing (escaped and cut at
 * NC_TSV_FIELD_MAX characters, see nc_tsv_escape), then SEP ('\t' or '\n'). */
void nc_cli_tsv(const char *s, size_t len, char sep);
/* The same for a NUL-terminated string; NULL prints as IF_NULL. */
void nc_cli_tsv_str(const char *s, const char *if_null, char sep);

/* One JSON value read from an input file, with the line it starts on.  A hook may replace
 * the parsed tree by its serialised form as soon as it is read, so a batch of 100,000
 * notices never holds 100,000 trees at once. */
typedef struct nc_input_item {
        const char *file;
        int line;
        json_t *json; /* parsed value, or NULL once the hook consumed it */
        char *value;  /* normalised compact JSON (hook output), or NULL if invalid */
        size_t value_len;
        char *error;  /* "field: message" when the hook found it invalid */
        char key[64]; /* Kafka key: the notice id */
        const char *topic;
        const char *event;
} nc_input_item_t;

struct nc_input;
typedef void(nc_input_hook_fn)(struct nc_input *in, nc_input_item_t *item);

typedef struct nc_input {
        nc_input_item_t *items;
        size_t n, cap;
        char **files; /* owned copies of the paths, for items' file pointers */
        size_t nfiles;
        nc_input_hook_fn *hook; /* called for each value right after it is parsed */
        void *opaque;
} nc_input_t;

/* Reads PATH ("-" = stdin) holding one JSON object, a JSON array of objects, or NDJSON, and
 * appends its values to IN, in file order.  A large NDJSON file is parsed by two threads (one
 * per half): the hook must then be thread-safe (it may only touch its item and read-only
 * state).  On a syntax or encoding error returns -1 with errstr
 * "file:line: message"; a file that cannot be read returns -2. */
int nc_input_read(nc_input_t *in, const char *path, char *errstr, size_t errstr_size);
/* Appends a value that did not come from a file (flags, withdraw) and runs the hook. */
void nc_input_add(nc_input_t *in, const char *origin, json_t *json);
void nc_input_free(nc_input_t *in);

/* cmd_subscribers.c, also for cmd_suppressions.c: */
/* Replays the subscribers topic into ALL (id -> record; tombstones delete).  0, or the
 * nc_kafka_read_topic error code with ERR. */
int nc_cli_subscribers_read(nc_cli_t *cli, json_t *all, char *err, size_t err_size);
/* Writes RECORDS (NULL = a tombstone) under KEYS in one transaction; 0 or an exit code
 * (reported, as CMD). */
int nc_cli_subscribers_write(nc_cli_t *cli, json_t **records, const char **keys, size_t n,
                             const char *cmd);
/* qsort() of C strings. */
int nc_cli_cmp_str(const void *a, const void *b);
/* A string field NAME of REC as one TSV field (anything else prints empty), then SEP. */
void nc_cli_tsv_field(json_t *rec, const char *name, char sep);

int cmd_publish(nc_cli_t *cli, int argc, char **argv);
int cmd_validate(nc_cli_t *cli, int argc, char **argv);
int cmd_withdraw(nc_cli_t *cli, int argc, char **argv);
int cmd_subscribers(nc_cli_t *cli, int argc, char **argv);
int cmd_topics(nc_cli_t *cli, int argc, char **argv);
int cmd_dlq(nc_cli_t *cli, int argc, char **argv);
int cmd_deliveries(nc_cli_t *cli, int argc, char **argv);
int cmd_render(nc_cli_t *cli, int argc, char **argv);
int cmd_acls(nc_cli_t *cli, int argc, char **argv);
int cmd_inbound(nc_cli_t *cli, int argc, char **argv);
int cmd_suppressions(nc_cli_t *cli, int argc, char **argv);

#endif
