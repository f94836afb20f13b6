/* Subscribers of the mailer: validation and normalisation of the records kept, keyed by the
 * lower-cased email address, on the compacted <prefix>subscribers topic. */
#ifndef NC_SUBSCRIBER_H
#define NC_SUBSCRIBER_H

#include <jansson.h>
#include <stdint.h>

#include "nc_config.h"

/* Validates IN (borrowed; fields email, name, lang, categories, regions, frequency, tz,
 * send_at, and id/updated_at/generation when read back) and returns a new normalised record
 * with defaults filled in: lang = default_language, frequency = daily, tz = default_timezone,
 * send_at = 08:00, categories/regions = [] (meaning all).  errstr is "field: message". */
json_t *nc_subscriber_normalise(const json_t *in, const nc_config_t *cfg, int64_t now_ms,
                                char *errstr, size_t errstr_size);

/* What was wrong with a record, for the pages that show it in their own language (the CLI
 * prints the errstr).  Adding one: a name in nc_subscriber_err_name(), a message in each
 * language's pages/errors.mustache. */
typedef enum nc_subscriber_err {
        NC_SUB_OK = 0,
        NC_SUB_MALFORMED, /* not an object, unknown field, wrong type: not from our forms */
        NC_SUB_EMAIL_MISSING,
        NC_SUB_EMAIL_INVALID,
        NC_SUB_NAME_INVALID, /* not one line, or longer than 200 bytes */
        NC_SUB_LANG_UNKNOWN,
        NC_SUB_FREQUENCY_INVALID,
        NC_SUB_TZ_UNKNOWN,
        NC_SUB_SEND_AT_INVALID,
        NC_SUB_CATEGORY_UNKNOWN,
        NC_SUB_REGION_INVALID,
} nc_subscriber_err_t;

/* "email_missing", ...: the section names of pages/errors.mustache.  Aborts on an unknown
 * value. */
const char *nc_subscriber_err_name(nc_subscriber_err_t e);

/* nc_subscriber_normalise(), also saying what was wrong in *WHY (NC_SUB_OK on success). */
json_t *nc_subscriber_check(const json_t *in, const nc_config_t *cfg, int64_t now_ms,
                            nc_subscriber_err_t *why, char *errstr, size_t errstr_size);

/* "generation": 16 lower-case hex digits, random, set by `subscribers add` / `import` each
 * time they write the record (a new subscription) and kept by the mailer's own rewrites.
 * Unsubscribe tokens carry it, so a token of an earlier subscription of the same address is
 * refused.  Records written before it existed have none (generation 0). */
#define NC_SUBSCRIBER_GENERATION_LEN 16
/* Sets a fresh random generation on REC.  Returns 0, or -1 with errstr. */
int nc_subscriber_new_generation(json_t *rec, char *errstr, size_t errstr_size);
/* The generation of REC as a number; 0 if it has none. */
uint64_t nc_subscriber_generation(const json_t *rec);

/* Longest "bounce_reason" a record may hold, in bytes (the mailer cuts to it). */
#define NC_SUBSCRIBER_BOUNCE_REASON_MAX 300

/* The CSV columns understood by import; multi-value cells use ';' or ',' between values. */
extern const char *const nc_subscriber_csv_columns[];

/* Builds the input object for nc_subscriber_normalise() from one CSV row, given the header.
 * Returns NULL with errstr "field: message" on an unknown column or arity mismatch. */
json_t *nc_subscriber_from_csv(char **header, size_t header_n, char **fields, size_t n,
                               char *errstr, size_t errstr_size);

#endif
