/* noticecast-mailer: the self-service sign-up pages on the public listener (web.c). */
#ifndef ML_WEB_H
#define ML_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "mailer.h"
#include "nc_httpd.h"

/* Loads the page templates of every configured language and the stylesheet from [mailer]
 * templates (the unsubscribe pages use them too) and routes /assets/site.css on PUBLIC; with
 * [mailer] signup_secret_file also /subscribe, /confirm and /manage (else it logs that the
 * sign-up pages are off).  No public listener: nothing, 0.  -1 with errstr naming the file
 * that failed. */
int ml_web_start(ml_t *m, nc_httpd_t *public, char *errstr, size_t errstr_size);
/* The answer of a public page in the language LANG_CODE (NULL: from REQ's ?lang= or
 * Accept-Language; REQ may be NULL off the HTTP thread): KIND "unsubscribe" is the one-click
 * form for TOKEN, any other a section of pages/message.mustache.  Returns STATUS (500 if the
 * template failed).  Any thread, once ml_web_start() loaded the templates. */
int ml_web_page(const nc_httpd_req_t *req, nc_httpd_resp_t *resp, int status, const char *lang_code,
                const char *kind, const char *token);
/* SIGHUP: re-reads the page templates and the stylesheet; a missing or broken file is logged
 * and the current set kept (main thread, while the listener serves). */
void ml_web_reload(void);
/* Frees the templates; after the listener stopped. */
void ml_web_stop(void);
/* Loads only what the links need (the token keys and the public base URL), for --preview;
 * ml_web_start does it too.  0 also when the pages are off; -1 with errstr. */
int ml_web_links_init(ml_t *m, char *errstr, size_t errstr_size);
/* The link of the preference centre of subscription (ID, GEN), valid for [mailer]
 * manage_expiry, in OUT.  Returns 0, or -1 with OUT "" when the pages are off (or SIZE is too
 * small).  Any thread once the links are loaded. */
int ml_web_manage_url(const char *id, uint64_t gen, char *out, size_t size);

#endif
