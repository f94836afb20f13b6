/* The notice model (schema version 1, README.md "Notices"): validation and normalisation.
 *
 * Every function that can fail takes (errstr, errstr_size) and writes "field: what is wrong",
 * e.g. "title.en: contains a line break (U+000A); titles must be one line". */
#ifndef NC_NOTICE_H
#define NC_NOTICE_H

#include <jansson.h>
#include <stdint.h>

#include "nc_config.h"

#define NC_NOTICE_SCHEMA "1"

/* Event types carried in the "noticecast-event" Kafka header. */
#define NC_EVENT_PUBLISHED "notice.published"
#define NC_EVENT_WITHDRAWN "notice.withdrawn"

enum nc_notice_mode {
        /* Admin input: id and published_at are assigned when absent. */
        NC_NOTICE_INPUT,
        /* Input checked without assigning anything (validate command). */
        NC_NOTICE_CHECK,
        /* Read back from Kafka: id and published_at must be present. */
        NC_NOTICE_STORED,
};

/* Validates IN (borrowed) and returns a new normalised notice (caller owns the reference):
 * fields in canonical order, language maps as objects, regions upper-case and unique,
 * body line endings as LF, priority and lang filled in.  NOW_MS is used for published_at
 * and the UUIDv7 when they are assigned.  Returns NULL with errstr set on invalid input. */
json_t *nc_notice_normalise(const json_t *in, const nc_config_t *cfg, enum nc_notice_mode mode,
                            int64_t now_ms, char *errstr, size_t errstr_size);

/* Compact JSON of a normalised notice, as produced to Kafka (malloc'd, caller frees), or
 * NULL when it exceeds [limits] notice_max_bytes ("notice: is N bytes as JSON..."). */
char *nc_notice_serialise(const json_t *n, const nc_config_t *cfg, size_t *lenp, char *errstr,
                          size_t errstr_size);

/* Builds a withdrawal event for notice ID in CATEGORY.  REASON may be NULL. */
json_t *nc_notice_withdrawal(const char *id, const char *category, const char *reason,
                             const nc_config_t *cfg, int64_t now_ms, char *errstr,
                             size_t errstr_size);
/* Validates a withdrawal event read back from Kafka. */
int nc_notice_withdrawal_check(const json_t *ev, const nc_config_t *cfg, char *errstr,
                               size_t errstr_size);

/* Checks a single-line text field: UTF-8 (jansson guarantees it), no control characters,
 * no leading/trailing blanks required, length <= MAX bytes. */
int nc_text_check_line(const char *field, const char *s, size_t max, char *errstr,
                       size_t errstr_size);

/* Accessors for consumers. */
const char *nc_notice_id(const json_t *n);
const char *nc_notice_category(const json_t *n);
/* Text of language map FIELD in LANG, falling back to the notice's own "lang". */
const char *nc_notice_text(const json_t *n, const char *field, const char *lang);

#endif
