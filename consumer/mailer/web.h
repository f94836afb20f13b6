/* noticecast-mailer: the self-service sign-up pages on the public listener (web.c). */
#ifndef ML_WEB_H
#define ML_WEB_H

#include <stddef.h>

#include "mailer.h"
#include "nc_httpd.h"

/* Loads the page templates of every configured language and the stylesheet from [mailer]
 * templates, and routes GET /subscribe and GET /assets/site.css on PUBLIC.  With no [mailer]
 * signup_secret_file (or no public listener) it logs that the pages are off and returns 0.
 * -1 with errstr naming the file that failed. */
int ml_web_start(ml_t *m, nc_httpd_t *public, char *errstr, size_t errstr_size);
/* Frees the templates; after the listener stopped. */
void ml_web_stop(void);

#endif
