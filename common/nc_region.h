/* ISO 3166-1 alpha-2 country codes (officially assigned), and the one normalisation of a
 * region list that notices, subscribers and partners share. */
#ifndef NC_REGION_H
#define NC_REGION_H

#include "nc_util.h"

/* 1 if CODE (two upper-case letters) is an officially assigned ISO 3166-1 alpha-2 code. */
int nc_region_valid(const char *code);
/* Number of codes known (249 as of ISO 3166-1:2020). */
int nc_region_count(void);
/* Adds CODE to LIST upper-cased, unless it is there already (order of first appearance).
 * Returns 0, or -1 with errstr "'code' is not an ISO 3166-1 alpha-2 country code" (LIST is
 * then unchanged). */
int nc_region_list_add(nc_strlist_t *list, const char *code, char *errstr, size_t errstr_size);

#endif
