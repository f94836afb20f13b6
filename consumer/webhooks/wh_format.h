/* noticecast-webhooks: webhook payload formats, one backend each (format = NAME in a
 * [partner.<id>] section; nc_config.h's enum nc_webhook_format).
 *
 * Adding a format: a value in enum nc_webhook_format (and its name in the configuration's
 * parser), one backend in wh_format.c, and its case in wh_format_get(), which the compiler
 * asks for (-Wswitch): nothing else in the daemon looks at the format. */
#ifndef WH_FORMAT_H
#define WH_FORMAT_H

#include <stddef.h>

#include "nc_config.h"

struct wh_msg;

typedef struct wh_format {
        const char *name;         /* as in the configuration */
        const char *content_type; /* of the request body */
        /* The body does not depend on the partner nor on the webhook-id: it is built once per
         * notice and shared by every partner of this format. */
        int shared;
        /* The request body for message M (NUL-terminated, *LEN bytes, to free()). */
        char *(*body)(const struct wh_msg *m, const char *webhook_id, size_t *len);
} wh_format_t;

/* The backend of format F; fatalx() on a value that is not one of the enum's. */
const wh_format_t *wh_format_get(enum nc_webhook_format f);

#endif
