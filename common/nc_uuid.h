/* UUIDs: version 7 generation (RFC 9562) and canonical-form validation. */
#ifndef NC_UUID_H
#define NC_UUID_H

#include <stdint.h>

#define NC_UUID_STRLEN 37 /* 36 characters + NUL */

/* Generates a UUIDv7 for the instant MS (Unix milliseconds); 74 random bits from the
 * kernel.  Returns 0, or -1 if no randomness could be had. */
int nc_uuid_v7(int64_t ms, char out[NC_UUID_STRLEN]);
/* 1 if S is a UUID in the 8-4-4-4-12 hex form (any case). */
int nc_uuid_valid(const char *s);
/* Version nibble of a valid UUID string. */
int nc_uuid_version(const char *s);
/* Unix milliseconds stored in a UUIDv7. */
int64_t nc_uuid_v7_time(const char *s);

#endif
