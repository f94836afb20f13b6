/* Common includes for the cmocka unit tests (cmocka needs the first ones, in this order) and
 * the helpers several tests share.  The helpers are static inline: a test that does not use
 * one gets no unused-function warning. */
#ifndef NC_TEST_H
#define NC_TEST_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "nc_config.h"

/* REL (e.g. "config/templates") in the source tree: $NC_TEST_SRCDIR, else ".". */
static inline void nc_test_src_path(char *buf, size_t size, const char *rel)
{
        const char *dir = getenv("NC_TEST_SRCDIR");

        snprintf(buf, size, "%s/%s", dir && *dir ? dir : ".", rel);
}

/* NAME in tests/unit/data/. */
static inline void nc_test_data_path(const char *name, char *buf, size_t size)
{
        char rel[512];

        snprintf(rel, sizeof(rel), "tests/unit/data/%s", name);
        nc_test_src_path(buf, size, rel);
}

/* Group setup of the tests that check against two configurations: DEFAULTS (built-in
 * values) and LOADED (tests/unit/data/NAME).  0, or -1 with the error on stderr. */
static inline int nc_test_configs_load(nc_config_t *defaults, nc_config_t *loaded, const char *name)
{
        char path[1024], err[1024];

        nc_config_defaults(defaults);
        nc_test_data_path(name, path, sizeof(path));
        if (nc_config_load(loaded, path, 1, err, sizeof(err)) != 0) {
                fprintf(stderr, "%s\n", err);
                nc_config_free(defaults);
                return -1;
        }
        return 0;
}

static inline void nc_test_configs_free(nc_config_t *defaults, nc_config_t *loaded)
{
        nc_config_free(defaults);
        nc_config_free(loaded);
}
#endif
