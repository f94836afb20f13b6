/* One email message, built with GMime 3: never hand-made MIME.
 *
 *   From, To, Subject, Date, Message-ID, MIME-Version, List-Id,
 *   List-Unsubscribe: <https://...>, <mailto:...>      (RFC 2369)
 *   List-Unsubscribe-Post: List-Unsubscribe=One-Click  (RFC 8058)
 *   Auto-Submitted: auto-generated                     (RFC 3834)
 *   Precedence: bulk
 *   Content-Type: multipart/alternative
 *     text/plain; charset=utf-8    (first: the least preferred alternative, RFC 2046 §5.1.4)
 *     text/html; charset=utf-8
 *
 * Header safety: nothing a notice or a subscriber supplies can add or change a header.
 * Addresses, URLs, the message id and the list id are refused (error) if they contain CR, LF,
 * NUL or other control characters; the subject and display names have their control
 * characters replaced by spaces and are then RFC 2047 encoded (UTF-8) by GMime.
 *
 * Output: CRLF line endings, no line longer than 998 octets (RFC 5322 §2.1.1): headers are
 * folded by GMime and bodies are quoted-printable or base64 whenever plain 7bit would not fit.
 *
 * Threads: call ml_mail_global_init() once before use (it is idempotent and thread-safe).
 * ml_mail_build() may then run in several threads at once: each call only touches GMime
 * objects it creates itself.  ml_mail_global_shutdown() at exit, when no build is running. */
#ifndef ML_MAIL_H
#define ML_MAIL_H

#include <stddef.h>
#include <stdint.h>

/* "<32 hex>@<domain>": 32 + 1 + 253 (longest DNS name) + NUL, rounded up. */
#define ML_MAIL_MSGID_SIZE 320

typedef struct ml_mail {
        const char *from_name, *from_addr; /* display name may be any UTF-8 (NULL: none) */
        const char *to_name, *to_addr;
        const char *subject;            /* UTF-8 */
        const char *text, *html;        /* bodies, UTF-8 (LF or CRLF line endings) */
        const char *message_id;         /* without <>; caller makes it deterministic */
        int64_t date_ms;                /* Unix milliseconds */
        const char *list_id;            /* "Notices <notices.example.gov>" or a bare id */
        const char *unsubscribe_https;  /* full https:// URL with token */
        const char *unsubscribe_mailto; /* "unsubscribe@example.gov?subject=..." (the mailto:
                                         * prefix is optional) or NULL */
} ml_mail_t;

/* Initialises GMime once per process (g_mime_init); safe to call from several threads. */
void ml_mail_global_init(void);
/* Releases GMime's global state (g_mime_shutdown).  Only at exit: GMime cannot be used again
 * afterwards, not even after another ml_mail_global_init(). */
void ml_mail_global_shutdown(void);

/* Builds the whole message (headers and body, CRLF line endings).  Returns a malloc'd,
 * NUL-terminated buffer (caller frees) and its length in *LEN (LEN may be NULL), or NULL with
 * errstr set, e.g. "to_addr: 'a b@example.org' is not an email address (bad character)". */
char *ml_mail_build(const ml_mail_t *m, size_t *len, char *errstr, size_t errstr_size);

/* ---- many messages sharing their bodies --------------------------------------------------
 *
 * A digest goes to many subscribers with the same text except for a few values (name,
 * unsubscribe URL, ...).  A prepared body is that text as NHOLE + 1 literal pieces around
 * NHOLE holes; hole i takes the value vals[hole[i]] of each message.  The pieces are checked
 * and quoted-printable encoded (by GMime's encoder) once, when the body is made; a message
 * then only encodes its values and puts the pieces together.
 *
 * The message is the one ml_mail_build() makes from the joined text (same structure, headers,
 * charset and checks), except that quoted-printable soft line breaks may fall at the joins.
 * The transfer encoding is chosen per message, as for ml_mail_build(): 7bit, quoted-printable,
 * or base64 (then the joined text is encoded whole).  A prepared body is immutable: several
 * threads may build from it at once. */
#define ML_MAIL_MAX_VALUES 16

typedef struct ml_mail_body ml_mail_body_t;

/* LIT[0..nhole] (LEN[i] bytes each, UTF-8, no NUL; a piece followed by a hole must not end
 * with CR) around NHOLE holes; HOLE[i] < ML_MAIL_MAX_VALUES.  NULL with errstr on bad text. */
ml_mail_body_t *ml_mail_body_new(const char *const *lit, const size_t *len, const unsigned *hole,
                                 size_t nhole, char *errstr, size_t errstr_size);
void ml_mail_body_free(ml_mail_body_t *b);

/* ml_mail_build() with the bodies TEXT and HTML filled with VALS[0..nvals) (m->text and m->html
 * are not used).  A value must be UTF-8 and must not end with CR (error otherwise). */
char *ml_mail_build_bodies(const ml_mail_t *m, const ml_mail_body_t *text,
                           const ml_mail_body_t *html, const char *const *vals, size_t nvals,
                           size_t *len, char *errstr, size_t errstr_size);

/* Deterministic Message-ID (without <>): the first 16 bytes of
 * SHA-256(SUBSCRIBER_ID "\n" WHAT) in lower-case hex, "@", DOMAIN.  The same subscriber and
 * the same WHAT (e.g. "digest:daily:2017-06-20" or "notice:<id>") always give the same id,
 * so a resent message is recognisable as a duplicate.  OUT gets "" if SIZE is too small
 * (ML_MAIL_MSGID_SIZE is always enough for a valid domain); ml_mail_build() refuses "". */
void ml_mail_message_id(const char *subscriber_id, const char *what, const char *domain, char *out,
                        size_t size);

#endif
