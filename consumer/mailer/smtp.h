/* SMTP submission on libesmtp: many messages, one recipient each, in one SMTP session.
 *
 * One call = one connection (libesmtp opens one per smtp_start_session) carrying one
 * transaction per message.  Sessions are independent: run one per thread, in parallel.
 * TCP_NODELAY is applied to the connection (nodelay.h: without it each message over 2 KiB
 * costs ~40 ms of delayed ACK), and the connect is bounded by timeout_ms.
 *
 * Messages are given whole (RFC 5322, CRLF line ends, not dot-stuffed: libesmtp does the
 * stuffing) and are fed to libesmtp from the caller's buffer without a copy.  libesmtp passes
 * them through unchanged when they carry Date:, From: and Message-ID: (it adds those three
 * only when missing; it drops Return-Path:, Original-Recipient: and a second Date:, From:,
 * Sender:, To:, Cc:, Bcc:, Reply-To: or Message-ID:).  Bodies should be 7-bit (MIME-encoded):
 * BODY=8BITMIME is not declared.
 *
 * STARTTLS (OpenSSL; one SSL_CTX per session):
 *   ML_SMTP_TLS_OFF       never, even if offered.
 *   ML_SMTP_TLS_OPTIONAL  if offered.  With ca_file: verified as below, and a failed
 *                         verification ends the session (no fallback to plain text after a
 *                         STARTTLS).  Without ca_file: encrypted, unverified (opportunistic).
 *   ML_SMTP_TLS_REQUIRED  the session ends if STARTTLS is not offered; always verified,
 *                         against ca_file or else the system's default trust store.
 * TLS 1.2 only: libesmtp 1.1.0 mistakes TLS 1.3's post-handshake records (session tickets)
 * for the reply to its EHLO and drops the session (see tls_context() in smtp.c).
 * "Verified" = the chain up to a trusted CA, checked by OpenSSL in the handshake
 * (SSL_VERIFY_PEER: a bad certificate aborts before any SMTP data is sent); and cfg->host
 * matched against the certificate's subjectAltName (DNS names, no partial wildcards; an IP
 * address against iPAddress entries).  No client certificate, no CRL/OCSP check.
 *
 * AUTH (libesmtp's SASL plugins; Debian ships PLAIN, LOGIN, CRAM-MD5, NTLM): only when
 * password != NULL, and then required: the session ends before the first MAIL FROM if AUTH
 * did not succeed (wrong credentials, no usable mechanism offered), instead of sending
 * unauthenticated as libesmtp would, which the relay would reject as 5xx "bounces".  Only the
 * mechanisms named in auth_mechanisms get the credentials (default "PLAIN LOGIN"); plain-text
 * mechanisms would go over any connection: so no AUTH command at all is sent on a connection
 * without TLS unless allow_plaintext_auth is set (with starttls = optional and a relay that
 * does not offer STARTTLS, the session ends before AUTH, and its messages are temporary
 * failures, never bounces).  User name and password are at most 255 bytes (libesmtp's
 * plugins' limit) and never logged.
 *
 * Per message, status is the final reply for it:
 *   250..299  accepted by the relay.
 *   4xx       temporary: retry later.  A 421 (at the greeting or mid-session) is given to
 *             every message that had no reply of its own.
 *   5xx       permanent for this recipient/message: a bounce.
 *   0         not attempted, or the connection dropped before its final reply: temporary.
 *             (If the drop came after the message data was sent the relay may have kept it,
 *             so a retry can duplicate it.)
 * ml_smtp_status_temporary() tells which statuses a caller retries.
 *
 * Per message, attempted says whether the relay dealt with this message itself:
 *   1  its MAIL FROM was sent and got a reply of its own other than 421 (whatever came after:
 *      250, 4xx, 5xx at any step, or the connection lost after that reply), or it was refused
 *      locally (invalid address): its status is its own outcome;
 *   0  it never got that far: the session failed before it (no connection, a greeting, TLS
 *      or AUTH failure) or ended before it (a 421, which is about the session, not about a
 *      message; a dropped connection; a cancel).  Sending it in another session is not a
 *      retry of it.
 *
 * Cancelling (ml_smtp_cancel_t, optional in the config): another thread can end a session
 * that is blocked on a relay that does not answer.  libesmtp blocks in poll() on its socket
 * and retries on EINTR, so a signal cannot do it; instead the session keeps a duplicate of
 * its socket's descriptor (ours, so its number cannot be reused by another thread while we
 * hold it) and ml_smtp_cancel_now() shuts that socket down: libesmtp's read returns at once.
 * A connect in progress is abandoned within 100 ms (nodelay.h). */
#ifndef ML_SMTP_H
#define ML_SMTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

/* Lets another thread stop a worker's sessions.  Initialise with ml_smtp_cancel_init. */
typedef struct ml_smtp_cancel {
        pthread_mutex_t lock;
        int fd;               /* our duplicate of the running session's socket, or -1 */
        atomic_int stop;      /* start no new session (ml_smtp_send_batch) */
        atomic_int cancelled; /* and end the running one now */
} ml_smtp_cancel_t;

typedef struct ml_smtp_config {
        const char *host; /* name or IPv4 address (libesmtp cannot take an IPv6 literal) */
        int port;         /* 0 = 587 */
        enum { ML_SMTP_TLS_OFF, ML_SMTP_TLS_OPTIONAL, ML_SMTP_TLS_REQUIRED } starttls;
        const char *username;        /* used with password */
        const char *password;        /* read from a file by the caller; NULL = no AUTH */
        const char *auth_mechanisms; /* blank/comma separated; NULL = "PLAIN LOGIN" */
        int timeout_ms;              /* connect and each reply wait; 0 = 60000, min 1000 */
        const char *ca_file;         /* PEM CA bundle for STARTTLS verification (optional) */
        const char *helo_name;       /* EHLO name; NULL = the host name (uname) */
        int allow_plaintext_auth;    /* 1: AUTH also without TLS (the password in clear) */
        ml_smtp_cancel_t *cancel;    /* optional: lets another thread end the session */
        /* Optional: 1 if a reply to a message's RCPT TO or data (CODE, TEXT with the enhanced
         * status first) means its domain defers mail now; the session then ends at once (the
         * messages after it are not attempted) and no other starts (ml_smtp_send_batch). */
        int (*deferral)(int code, int at_recipient, const char *text);
} ml_smtp_config_t;

typedef struct ml_smtp_msg {
        const char *mail_from; /* envelope sender; NULL or "" = null sender <> */
        const char *rcpt;      /* one recipient */
        const char *data;      /* complete RFC 5322 message with CRLF line ends */
        size_t len;
        /* results: */
        int status;      /* final SMTP reply for this message (see above); 0 = not attempted */
        char reply[256]; /* its text, enhanced status code first ("5.1.1 <x>: unknown") */
        int attempted;   /* 1 = the relay dealt with it (status is its own), 0 = never reached */
        double seconds;  /* its transaction, MAIL FROM to the final reply after the data;
                          * -1 if it did not get that far */
        int deferred;    /* its reply was a deferral (cfg->deferral): the session ended there */
} ml_smtp_msg_t;

/* Sends MSGS in ONE SMTP session (one connection, many transactions).  Returns 0 if the
 * session ran (per-message status says what happened to each), -1 with errstr if it could
 * not connect/greet/STARTTLS/AUTH at all (then every status is 0 or a 4xx/5xx from the
 * greeting).  Thread-safe: sessions in different threads are independent. */
int ml_smtp_send_session(const ml_smtp_config_t *cfg, ml_smtp_msg_t *msgs, size_t n, char *errstr,
                         size_t errstr_size);

/* Sends MSGS over as many sessions as it takes: when a session ends before some messages
 * were attempted (a 421 from a relay that limits the messages per connection, a dropped
 * connection) the rest go on in a new session, uncharged.  It stops when every message was
 * attempted, when a message got a deferral (cfg->deferral), when a session attempted none (the
 * relay refuses or cannot be reached now: the rest keep that session's status and reason,
 * temporary), after max_sessions sessions (0 = one per message, the most a session that attempts
 * something can need), or when cfg->cancel asks it to.  Returns 0 if every message was attempted,
 * else -1 with errstr saying why the rest were not; *sessions (may be NULL) = the sessions it
 * started. */
int ml_smtp_send_batch(const ml_smtp_config_t *cfg, ml_smtp_msg_t *msgs, size_t n,
                       size_t max_sessions, size_t *sessions, char *errstr, size_t errstr_size);

/* What ml_smtp_send_batch does after a session (pure policy, unit-tested): 1 if the messages
 * not attempted yet go on in another session, 0 if the batch ends here.  N_LEFT: messages not
 * attempted yet; PROGRESS: messages the session attempted; SESSIONS: sessions so far. */
int ml_smtp_batch_continue(size_t n_left, size_t progress, size_t sessions, size_t max_sessions,
                           int stopping);

void ml_smtp_cancel_init(ml_smtp_cancel_t *c);
void ml_smtp_cancel_destroy(ml_smtp_cancel_t *c);
/* Lets the running session finish but starts no other (ml_smtp_send_batch). */
void ml_smtp_cancel_stop(ml_smtp_cancel_t *c);
/* Ends the running session now (its socket is shut down) and starts no other.  Any thread. */
void ml_smtp_cancel_now(ml_smtp_cancel_t *c);
/* Allows sessions again (after a stop or cancel). */
void ml_smtp_cancel_reset(ml_smtp_cancel_t *c);

/* 1 if a message with this status should be retried later (0 and 4xx), 0 otherwise.  Inline:
 * the mailer's delivery policy (ml_policy.c) uses it without linking libesmtp. */
static inline int ml_smtp_status_temporary(int status)
{
        return status == 0 || (status >= 400 && status <= 499);
}

/* libesmtp's version ("1.1.0"), for -V. */
const char *ml_smtp_version(void);

#endif
