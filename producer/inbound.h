/* noticecast inbound: what one mail that came back means (docs/inbound.md).
 *
 * inbound_classify() reads one RFC 5322 message (as an MTA hands it to a program) and says
 * which one event it makes: a delivery status notification (RFC 3464, in a multipart/report
 * of RFC 6522, or mangled), a feedback report (ARF, RFC 5965), a mailto: unsubscribe
 * (RFC 2369) or anything else (auto-replies of RFC 3834 among them).  Who it is about comes
 * only from tokens we made and can verify: a VERP envelope sender (nc_verp.h) or an
 * unsubscribe token (unsub_token.h), both under the unsubscribe secret.  A report naming an
 * address but no token of ours changes nothing: anyone can write one.
 *
 * Pure: GMime parses the bytes it is given, nothing else is read or written.  Any input is
 * handled in bounded time and memory (INBOUND_MAX_BYTES, INBOUND_MAX_PARTS, the part sizes
 * of inbound.c); what is not a mail at all is marked for quarantine. */
#ifndef NC_INBOUND_H
#define NC_INBOUND_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../consumer/mailer/unsub_token.h"

/* Larger input is quarantined (a prefix of it: see cmd_inbound.c). */
#define INBOUND_MAX_BYTES (10u * 1024 * 1024)
/* More multipart or message parts than this: quarantined unparsed (a report has four or
 * five; GMime takes seconds over a mail nested a thousand deep). */
#define INBOUND_MAX_PARTS 64
#define INBOUND_DIAG_MAX  1000 /* bytes of Diagnostic-Code kept */
#define INBOUND_STR_SIZE  256  /* other strings of the event, NUL included */

/* The event written; one name each (inbound_type_name). */
typedef enum inbound_type {
        INBOUND_BOUNCE,       /* mail.bounce: permanent failure (5.x.x, Action: failed) */
        INBOUND_DELAYED,      /* mail.delayed: transient (4.x.x, or Action: delayed) */
        INBOUND_COMPLAINT,    /* mail.complaint: ARF abuse or fraud */
        INBOUND_UNSUBSCRIBED, /* mail.unsubscribed: a mailto: unsubscribe */
        INBOUND_IGNORED,      /* mail.ignored: recorded with its reason, changes nothing */
} inbound_type_t;

/* What the mail was; one name each (inbound_kind_name). */
typedef enum inbound_kind {
        INBOUND_DSN,
        INBOUND_ARF,
        INBOUND_MAILTO,
        INBOUND_OTHER,
} inbound_kind_t;

/* "mail.bounce", ...; aborts on a value outside the enum. */
const char *inbound_type_name(inbound_type_t t);
/* "dsn", "arf", "mailto", "other"; aborts on a value outside the enum. */
const char *inbound_kind_name(inbound_kind_t k);

typedef struct inbound_conf {
        const unsigned char *secret; /* the unsubscribe secret, as the mailer uses it */
        size_t secret_len;
        const char *verp_base;          /* [mailer] envelope_from, else from_address */
        char verp_delim;                /* [mailer] verp_delimiter */
        const char *unsubscribe_mailto; /* [mailer] unsubscribe_mailto, or NULL */
        const char *envelope_recipient; /* from the MTA, or NULL: from the headers */
        int64_t now_s;                  /* for the expiry of unsubscribe tokens */
} inbound_conf_t;

typedef struct inbound {
        inbound_type_t type;
        inbound_kind_t kind;
        int quarantine; /* not a mail at all: the bytes go to the DLQ (type is IGNORED) */
        char id[17];    /* 16 hex digits of the bytes' digest: the same mail, the same id */
        char reason[INBOUND_STR_SIZE]; /* why it is ignored or quarantined */
        /* From a verified unsubscribe token: */
        char subscriber[ML_TOKEN_ID_MAX + 1];
        uint64_t generation;
        int token_expired; /* authentic but past its expiry (honoured: docs/inbound.md) */
        /* From a verified VERP token: */
        int has_ref, has_message_ref;
        uint64_t subscriber_ref;
        uint32_t message_ref;
        char token_source[32]; /* where the token that counted was found */
        /* DSN: */
        char status[16], action[32];
        char status_source[32]; /* "delivery-status", "diagnostic-code", "text" */
        char diagnostic[INBOUND_DIAG_MAX + 1];
        char recipient[INBOUND_STR_SIZE]; /* Final-Recipient (ARF: Original-Rcpt-To) */
        char remote_mta[INBOUND_STR_SIZE];
        /* ARF: */
        char feedback_type[64];
        char user_agent[INBOUND_STR_SIZE];
        char report_message_id[INBOUND_STR_SIZE];
        char envelope_recipient[INBOUND_STR_SIZE];
} inbound_t;

/* Classifies DATA[0..LEN) (LEN > INBOUND_MAX_BYTES: the input was larger than that, and DATA
 * holds at least its first INBOUND_MAX_BYTES) into R.  Never fails: what cannot be read is
 * IGNORED with quarantine set.  Initialises GMime on first use (thread-safe). */
void inbound_classify(const inbound_conf_t *c, const char *data, size_t len, inbound_t *r);

/* The event of R at TIME (RFC 3339): the fields of docs/inbound.md, those R has. */
json_t *inbound_event(const inbound_t *r, const char *time);

/* The event's Kafka key: the subscriber id, else "ref:<subscriber_ref>", else the report's
 * Message-ID, else "inbound:<id>". */
void inbound_key(const inbound_t *r, char *buf, size_t size);

/* Releases GMime (g_mime_shutdown), at exit only. */
void inbound_global_shutdown(void);

#endif
