/* ISO 3166-1 alpha-2 country codes (officially assigned). */
#ifndef NC_REGION_H
#define NC_REGION_H

/* 1 if CODE (two upper-case letters) is an officially assigned ISO 3166-1 alpha-2 code. */
int nc_region_valid(const char *code);
/* Number of codes known (249 as of ISO 3166-1:2020). */
int nc_region_count(void);

#endif
