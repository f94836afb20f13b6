/* SMTP sessions on libesmtp: see smtp.h for the contract.
 *
 * libesmtp drives the whole protocol inside smtp_start_session(); we steer it through its
 * callbacks:
 *   - the message callback hands it each message straight from the caller's buffer;
 *   - the event callback checks TCP_NODELAY at connect and takes the TLS decisions;
 *   - the protocol monitor (raw bytes read and written outside DATA) gives us what its API
 *     does not: the greeting and any 421 with their text, and whether AUTH succeeded.  Only
 *     reply lines and the first word of our own commands are looked at: the AUTH command
 *     line carries the credentials and is never stored;
 *   - the SASL interaction callback supplies the user name and password.
 * Results are read back per message with smtp_reverse_path_status, smtp_recipient_status and
 * smtp_message_transfer_status. */
#include <stddef.h> /* first: libesmtp.h uses size_t without including it */

#include "smtp.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* auth-client.h and <openssl/ssl.h> before libesmtp.h: it declares smtp_auth_set_context and
 * smtp_starttls_set_ctx only when their types are known. */
#include <auth-client.h>
#include <libesmtp.h>

#include "nc_log.h"
#include "nc_util.h"
#include "nodelay.h"

#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_MECHANISMS "PLAIN LOGIN"
/* libesmtp's PLAIN and LOGIN plugins copy user and password into fixed 255-byte fields. */
#define SASL_FIELD_MAX 255

struct ml_smtp_sess;

/* One message as libesmtp sees it. */
struct ml_smtp_item {
        struct ml_smtp_sess *sess;
        ml_smtp_msg_t *msg;
        size_t off;             /* how far the message callback has handed it out */
        int data_started;       /* libesmtp began the DATA transfer (after 354) */
        smtp_message_t message; /* NULL: not handed to libesmtp (invalid address) */
        smtp_recipient_t recipient;
};

/* State of one session, shared by the callbacks (all run in the calling thread). */
struct ml_smtp_sess {
        const ml_smtp_config_t *cfg;
        auth_context_t auth;

        /* reply-line assembly for the monitor */
        char line[512];
        size_t line_len;
        int replies; /* final reply lines seen */
        int greeting_code;
        char greeting[200];
        int fail_code; /* the last 4xx/5xx reply */
        char fail_text[200];
        int saw_421;
        char text_421[200];
        char auth_offered[120]; /* mechanisms from the EHLO reply, for error messages */

        /* AUTH */
        int need_auth;
        int auth_pending; /* our AUTH command is waiting for its final reply */
        int auth_ok;
        char auth_mech[32];
        int auth_creds_given; /* the current AUTH exchange got user and password */
        int auth_fail_code;
        char auth_fail_text[200];

        /* STARTTLS */
        int tls_verify;
        int tls_ok;
        int tls_not_offered;
        char tls_error[200];

        /* set when we cut the connection ourselves */
        int aborted;
        char abort_reason[256];

        /* credentials held back: AUTH offered on a connection without TLS */
        int auth_withheld;

        double txn_start; /* monotonic seconds: the current MAIL FROM was written */
        int connected;    /* SMTP_EV_CONNECT seen */
        int nodelay_on;
        int corked; /* TCP_CORK is on (while a message's data is handed out) */
};

static double mono_seconds(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static char esmtp_version[32];
static atomic_int nodelay_warned;

static void lib_init(void)
{
        /* Global SASL state (the plugin list) lives in libesmtp; its init is a no-op on
         * dlopen() platforms today but is part of the API contract, and must happen once. */
        auth_client_init();
        if (!smtp_version(esmtp_version, sizeof esmtp_version, 0))
                snprintf(esmtp_version, sizeof esmtp_version, "unknown");
}

const char *ml_smtp_version(void)
{
        pthread_once(&init_once, lib_init);
        return esmtp_version;
}

/* ---- small helpers -------------------------------------------------------------------- */

/* Copies server text into DST as one printable line: control characters become blanks,
 * blanks are collapsed, the ends trimmed. */
static void copy_text(char *dst, size_t size, const char *src, size_t len)
{
        size_t o = 0;
        int blank = 1;

        if (size == 0)
                return;
        for (size_t i = 0; i < len && src[i] != '\0' && o + 1 < size; i++) {
                unsigned char c = (unsigned char)src[i];

                if (c < 0x20 || c == 0x7f || c == ' ') {
                        if (!blank)
                                dst[o++] = ' ';
                        blank = 1;
                } else {
                        dst[o++] = (char)c;
                        blank = 0;
                }
        }
        while (o > 0 && dst[o - 1] == ' ')
                o--;
        dst[o] = '\0';
}

static void set_result(ml_smtp_msg_t *m, int code, const char *fmt, ...) NC_PRINTF(3, 4);

static void set_result(ml_smtp_msg_t *m, int code, const char *fmt, ...)
{
        char buf[sizeof m->reply];
        va_list ap;

        m->status = code;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        copy_text(m->reply, sizeof m->reply, buf, sizeof buf);
}

/* Takes a libesmtp status as the message's result: "5.1.1 text" with enhanced codes. */
static void set_result_status(ml_smtp_msg_t *m, const smtp_status_t *st)
{
        const char *text = st->text ? st->text : "";

        if (st->enh_class > 0)
                set_result(m, st->code, "%d.%d.%d %s", st->enh_class, st->enh_subject,
                           st->enh_detail, text);
        else
                set_result(m, st->code, "%s", text);
}

/* An address goes into "MAIL FROM:<%s>" / "RCPT TO:<%s>" verbatim: refuse anything that could
 * end the command or the brackets early. */
static int address_ok(const char *a, int may_be_empty)
{
        size_t len;

        if (a == NULL)
                return may_be_empty;
        len = strlen(a);
        if (len == 0)
                return may_be_empty;
        if (len > 254)
                return 0;
        for (const unsigned char *p = (const unsigned char *)a; *p; p++)
                if (*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>')
                        return 0;
        return 1;
}

static int mechanism_allowed(const struct ml_smtp_sess *s, const char *mech)
{
        const char *list = s->cfg->auth_mechanisms ? s->cfg->auth_mechanisms : DEFAULT_MECHANISMS;
        size_t mlen = strlen(mech);
        const char *p = list;

        while (*p) {
                size_t n;

                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                n = strcspn(p, " \t,");
                if (n == mlen && n > 0 && strncasecmp(p, mech, n) == 0)
                        return 1;
                p += n;
        }
        return 0;
}

/* Ends the connection from inside a libesmtp callback: libesmtp has no abort call, so shut
 * the socket down (libesmtp still owns and closes the descriptor).  Called from the monitor
 * just before a write, this keeps that write from reaching the server. */
static void cut(struct ml_smtp_sess *s, const char *fmt, ...) NC_PRINTF(2, 3);

static void cut(struct ml_smtp_sess *s, const char *fmt, ...)
{
        va_list ap;
        int fd = ml_nodelay_last_fd();

        if (s->aborted)
                return;
        s->aborted = 1;
        va_start(ap, fmt);
        vsnprintf(s->abort_reason, sizeof s->abort_reason, fmt, ap);
        va_end(ap);
        if (fd >= 0)
                shutdown(fd, SHUT_RDWR);
}

/* AUTH may go out on this connection: over TLS, or in clear when the configuration says so. */
static int auth_allowed_now(const struct ml_smtp_sess *s)
{
        return s->tls_ok || s->cfg->allow_plaintext_auth;
}

static const char *auth_failure(const struct ml_smtp_sess *s, char *buf, size_t size)
{
        if (!auth_allowed_now(s) && (s->auth_offered[0] || s->auth_withheld))
                snprintf(buf, size,
                         "not sending credentials without TLS: %s:%d offers AUTH%s%s but no "
                         "STARTTLS (starttls = %s; allow_plaintext_auth is off)",
                         s->cfg->host, s->cfg->port ? s->cfg->port : 587,
                         s->auth_offered[0] ? " " : "", s->auth_offered,
                         s->cfg->starttls == ML_SMTP_TLS_OFF ? "off" : "optional");
        else if (s->auth_fail_code)
                snprintf(buf, size, "AUTH %s failed: %d %s", s->auth_mech, s->auth_fail_code,
                         s->auth_fail_text);
        else if (s->auth_offered[0])
                snprintf(buf, size, "AUTH not done: server offers %s, allowed are %s",
                         s->auth_offered,
                         s->cfg->auth_mechanisms ? s->cfg->auth_mechanisms : DEFAULT_MECHANISMS);
        else
                snprintf(buf, size, "AUTH not done: server offers no AUTH%s",
                         s->tls_ok ? "" : " (before STARTTLS?)");
        return buf;
}

/* ---- protocol monitor ----------------------------------------------------------------- */

static void reply_line(struct ml_smtp_sess *s)
{
        char *l = s->line;
        size_t len = s->line_len;
        int code;

        while (len > 0 && (l[len - 1] == '\n' || l[len - 1] == '\r'))
                len--;
        l[len] = '\0';
        if (len < 3 || !isdigit((unsigned char)l[0]) || !isdigit((unsigned char)l[1]) ||
            !isdigit((unsigned char)l[2]))
                return;
        code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        if (code == 250 && len > 4 &&
            (strncasecmp(l + 4, "AUTH ", 5) == 0 || strncasecmp(l + 4, "AUTH=", 5) == 0))
                copy_text(s->auth_offered, sizeof s->auth_offered, l + 9, len - 9);
        if (len > 3 && l[3] == '-')
                return; /* continuation line: the final line carries the outcome */

        s->replies++;
        if (code / 100 == 4 || code / 100 == 5) {
                s->fail_code = code;
                copy_text(s->fail_text, sizeof s->fail_text, l, len);
        }
        if (s->replies == 1) {
                s->greeting_code = code;
                copy_text(s->greeting, sizeof s->greeting, l, len);
        }
        if (code == 421 && !s->saw_421) {
                s->saw_421 = 1;
                copy_text(s->text_421, sizeof s->text_421, len > 4 ? l + 4 : "",
                          len > 4 ? len - 4 : 0);
        }
        if (s->auth_pending && code != 334) {
                s->auth_pending = 0;
                if (code / 100 == 2) {
                        s->auth_ok = 1;
                } else if (!s->auth_creds_given) {
                        /* a mechanism we refused (interact_cb) was cancelled: not a failure */
                } else {
                        s->auth_fail_code = code;
                        copy_text(s->auth_fail_text, sizeof s->auth_fail_text, len > 4 ? l + 4 : "",
                                  len > 4 ? len - 4 : 0);
                        /* 535 = bad credentials: they are bad for the next mechanism too, and
                         * each failed try counts toward the relay's lockout.  4xx = the relay
                         * cannot authenticate now.  Stop here; a 504/501 (mechanism refused
                         * or cancelled) lets libesmtp try the next mechanism. */
                        if (code == 535 || code / 100 == 4) {
                                char why[256];

                                cut(s, "%s", auth_failure(s, why, sizeof why));
                        }
                }
                s->auth_creds_given = 0;
        }
}

static void monitor_cb(const char *buf, int buflen, int writing, void *arg)
{
        struct ml_smtp_sess *s = arg;

        if (buflen <= 0)
                return;
        if (writing == SMTP_CB_WRITING) {
                size_t n = (size_t)buflen;

                /* A transaction starts (for noticecast_mail_smtp_transaction_seconds). */
                if (n >= 10 && strncasecmp(buf, "MAIL FROM:", 10) == 0)
                        s->txn_start = mono_seconds();
                if (!s->need_auth || s->auth_ok || s->aborted)
                        return;
                if (n >= 5 && strncasecmp(buf, "AUTH ", 5) == 0 && !auth_allowed_now(s)) {
                        /* Not reached: the mechanisms are disabled until TLS is up (see
                         * auth_policy).  Should libesmtp send one anyway, the write fails. */
                        char why[256];

                        s->auth_withheld = 1;
                        cut(s, "%s", auth_failure(s, why, sizeof why));
                } else if (n >= 5 && strncasecmp(buf, "AUTH ", 5) == 0) {
                        /* Keep the mechanism name only: the rest is the credentials. */
                        size_t k = strcspn(buf + 5, " \r\n");

                        if (k > n - 5)
                                k = n - 5;
                        if (k >= sizeof s->auth_mech)
                                k = sizeof s->auth_mech - 1;
                        memcpy(s->auth_mech, buf + 5, k);
                        s->auth_mech[k] = '\0';
                        s->auth_pending = 1;
                } else if (n >= 10 && strncasecmp(buf, "MAIL FROM:", 10) == 0) {
                        /* libesmtp goes on without AUTH when it fails; we must not. */
                        char why[256];

                        cut(s, "%s", auth_failure(s, why, sizeof why));
                }
                return;
        }
        if (writing != SMTP_CB_READING)
                return;
        for (int i = 0; i < buflen; i++) {
                if (s->line_len < sizeof s->line - 1)
                        s->line[s->line_len++] = buf[i];
                if (buf[i] == '\n') {
                        reply_line(s);
                        s->line_len = 0;
                }
        }
}

/* ---- libesmtp callbacks ----------------------------------------------------------------- */

/* TCP_CORK on the session's socket while libesmtp writes a message's data: libesmtp writes it
 * in 2 KiB pieces, and with TCP_NODELAY each piece would be a TCP segment of its own (one
 * wake-up of the server each).  Corked, the kernel sends full segments; the cork comes off
 * when the data has been handed out, before libesmtp writes the final "." and waits for the
 * reply, so nothing waits for the kernel's 200 ms cork limit. */
static void cork(struct ml_smtp_sess *s, int on)
{
        int fd = ml_nodelay_last_fd();

        if (!s || !s->nodelay_on || s->corked == on || fd < 0)
                return;
        if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0)
                s->corked = on;
}

/* Hands out the message in one piece (or INT_MAX-sized pieces) from the caller's buffer.
 * libesmtp frees *ctx if set, so the position is kept in our item instead. */
static const char *message_cb(void **ctx, int *len, void *arg)
{
        struct ml_smtp_item *it = arg;
        size_t left, chunk;

        (void)ctx;
        /* libesmtp rewinds a message only when it starts sending its data, after the 354. */
        it->data_started = 1;
        if (len == NULL) { /* rewind */
                it->off = 0;
                cork(it->sess, 1);
                return NULL;
        }
        left = it->msg->len - it->off;
        if (left == 0) {
                cork(it->sess, 0);
                *len = 0;
                return NULL;
        }
        chunk = left > INT_MAX ? INT_MAX : left;
        *len = (int)chunk;
        it->off += chunk;
        return it->msg->data + it->off - chunk;
}

static int interact_cb(auth_client_request_t req, char **result, int fields, void *arg)
{
        struct ml_smtp_sess *s = arg;
        const char *mech = auth_mechanism_name(s->auth);

        /* libesmtp picks the server's first mechanism it has a plugin for; refusing here makes
         * the plugin send nothing (or cancel with "*"), and libesmtp moves to the next one. */
        if (mech == NULL || !mechanism_allowed(s, mech))
                return 0;
        if (!auth_allowed_now(s)) {
                s->auth_withheld = 1;
                return 0;
        }
        for (int i = 0; i < fields; i++) {
                const char *v;

                if (req[i].flags & AUTH_USER)
                        v = s->cfg->username ? s->cfg->username : "";
                else if (req[i].flags & AUTH_PASS)
                        v = s->cfg->password;
                else if (req[i].flags & AUTH_REALM)
                        v = "";
                else
                        return 0;
                if (v == NULL || (req[i].size > 0 && strlen(v) > req[i].size))
                        return 0;
                /* The plugins only copy from these pointers (result is char ** for history). */
                result[i] = (char *)v;
        }
        s->auth_creds_given = 1;
        return 1;
}

/* ---- cancelling ------------------------------------------------------------------------ */

void ml_smtp_cancel_init(ml_smtp_cancel_t *c)
{
        pthread_mutex_init(&c->lock, NULL);
        c->fd = -1;
        atomic_init(&c->stop, 0);
        atomic_init(&c->cancelled, 0);
}

void ml_smtp_cancel_destroy(ml_smtp_cancel_t *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        pthread_mutex_destroy(&c->lock);
}

void ml_smtp_cancel_stop(ml_smtp_cancel_t *c)
{
        atomic_store(&c->stop, 1);
}

void ml_smtp_cancel_now(ml_smtp_cancel_t *c)
{
        atomic_store(&c->stop, 1);
        pthread_mutex_lock(&c->lock);
        atomic_store(&c->cancelled, 1);
        /* Our duplicate: the socket stays the session's until we close it, so this cannot
         * reach a descriptor that another thread has since opened under the same number. */
        if (c->fd >= 0)
                shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&c->lock);
}

void ml_smtp_cancel_reset(ml_smtp_cancel_t *c)
{
        atomic_store(&c->stop, 0);
        atomic_store(&c->cancelled, 0);
}

/* The session's new socket (at SMTP_EV_CONNECT): keep a duplicate for ml_smtp_cancel_now. */
static void cancel_attach(ml_smtp_cancel_t *c, int fd)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (atomic_load(&c->cancelled) && fd >= 0)
                shutdown(fd, SHUT_RDWR); /* cancelled while connecting */
        pthread_mutex_unlock(&c->lock);
}

static void cancel_detach(ml_smtp_cancel_t *c)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        pthread_mutex_unlock(&c->lock);
}

/* Which SASL mechanisms libesmtp may pick on this connection.  Without TLS (and without
 * allow_plaintext_auth) none: libesmtp then sends no AUTH command at all, and the session
 * ends at its first MAIL FROM (monitor_cb) saying why.  Every mechanism is covered, not only
 * the plain-text ones: a CRAM-MD5 exchange overheard is open to an offline guess. */
static void auth_policy(struct ml_smtp_sess *s)
{
        if (!s->auth)
                return;
        if (auth_allowed_now(s)) {
                /* PLAIN and LOGIN are flagged "plain text": libesmtp skips them unless allowed. */
                auth_set_mechanism_flags(s->auth, AUTH_PLUGIN_PLAIN, 0);
                auth_set_mechanism_ssf(s->auth, 0);
        } else {
                auth_set_mechanism_flags(s->auth, 0, AUTH_PLUGIN_PLAIN);
                auth_set_mechanism_ssf(s->auth, INT_MAX);
        }
}

/* A reply to IT's RCPT TO or data that says its domain defers mail (cfg->deferral): the
 * session ends here, so that a deferring domain gets one attempt per session, not one per
 * message. */
static void deferral_check(struct ml_smtp_sess *s, struct ml_smtp_item *it, const smtp_status_t *st)
{
        char text[sizeof it->msg->reply];

        if (!s->cfg->deferral || !it || !st || st->code / 100 != 4)
                return;
        if (st->enh_class > 0)
                snprintf(text, sizeof text, "%d.%d.%d %s", st->enh_class, st->enh_subject,
                         st->enh_detail, st->text ? st->text : "");
        else
                snprintf(text, sizeof text, "%s", st->text ? st->text : "");
        if (!s->cfg->deferral(st->code, 1, text))
                return;
        it->msg->deferred = 1;
        cut(s, "the recipient's domain deferred mail (%d %d.%d.%d)", st->code, st->enh_class,
            st->enh_subject, st->enh_detail);
}

static void event_cb(smtp_session_t session, int event, void *arg, ...)
{
        struct ml_smtp_sess *s = arg;
        va_list ap;

        (void)session;
        va_start(ap, arg);
        switch (event) {
        case SMTP_EV_CONNECT: {
                int fd = ml_nodelay_last_fd();

                /* libesmtp tries each address of the host until one takes the session: what
                 * we know of the server is per connection. */
                s->line_len = 0;
                s->replies = 0;
                s->greeting_code = 0;
                s->saw_421 = 0;
                s->auth_pending = 0;
                s->auth_offered[0] = '\0';
                s->connected = 1;
                s->corked = 0;
                s->nodelay_on = fd >= 0 && ml_nodelay_is_set(fd) == 1;
                s->tls_ok = 0;
                auth_policy(s);
                cancel_attach(s->cfg->cancel, fd);
                break;
        }
        case SMTP_EV_RCPTSTATUS: {
                const char *mailbox = va_arg(ap, const char *);
                smtp_recipient_t r = va_arg(ap, smtp_recipient_t);

                (void)mailbox;
                deferral_check(s, smtp_recipient_get_application_data(r), smtp_recipient_status(r));
                break;
        }
        case SMTP_EV_MESSAGESENT: {
                /* The final reply after the data: the transaction is over. */
                smtp_message_t msg = va_arg(ap, smtp_message_t);
                struct ml_smtp_item *it = smtp_message_get_application_data(msg);

                if (it && s->txn_start > 0)
                        it->msg->seconds = mono_seconds() - s->txn_start;
                if (it && it->data_started)
                        deferral_check(s, it, smtp_message_transfer_status(msg));
                break;
        }
        case SMTP_EV_DISCONNECT:
                cancel_detach(s->cfg->cancel);
                break;
        case SMTP_EV_STARTTLS_OK:
                s->tls_ok = 1;
                auth_policy(s);
                break;
        case SMTP_EV_EXTNA_STARTTLS:
                s->tls_not_offered = 1;
                break;
        case SMTP_EV_INVALID_PEER_CERTIFICATE: {
                long result = va_arg(ap, long);
                int *ok = va_arg(ap, int *);

                /* With verification on, OpenSSL has already failed the handshake; this is
                 * reached only in opportunistic mode, where an unverified peer is accepted. */
                *ok = !s->tls_verify;
                if (!*ok && !s->tls_error[0])
                        snprintf(s->tls_error, sizeof s->tls_error, "certificate: %s",
                                 X509_verify_cert_error_string(result));
                break;
        }
        case SMTP_EV_NO_PEER_CERTIFICATE: {
                int *ok = va_arg(ap, int *);

                *ok = !s->tls_verify;
                if (!*ok && !s->tls_error[0])
                        snprintf(s->tls_error, sizeof s->tls_error, "no server certificate");
                break;
        }
        case SMTP_EV_WRONG_PEER_CERTIFICATE: {
                int *ok = va_arg(ap, int *);
                const char *name = va_arg(ap, const char *);
                SSL *ssl = va_arg(ap, SSL *);

                /* libesmtp's own name check knows no iPAddress entries and only one-label
                 * wildcards.  When verifying, OpenSSL has checked cfg->host against the
                 * certificate in the handshake (X509_VERIFY_PARAM): trust that verdict. */
                *ok = !s->tls_verify || (ssl && SSL_get_verify_result(ssl) == X509_V_OK);
                if (!*ok && !s->tls_error[0])
                        snprintf(s->tls_error, sizeof s->tls_error, "certificate is for %s, not %s",
                                 name ? name : "?", s->cfg->host);
                break;
        }
        case SMTP_EV_WEAK_CIPHER: {
                int bits = va_arg(ap, int);
                int *ok = va_arg(ap, int *);

                *ok = 0;
                snprintf(s->tls_error, sizeof s->tls_error, "weak cipher (%d bits)", bits);
                break;
        }
        case SMTP_EV_NO_CLIENT_CERTIFICATE: {
                int *ok = va_arg(ap, int *);

                *ok = 0;
                snprintf(s->tls_error, sizeof s->tls_error, "client certificate unusable");
                break;
        }
        case SMTP_EV_UNUSABLE_CLIENT_CERTIFICATE:
        case SMTP_EV_UNUSABLE_CA_LIST:
                snprintf(s->tls_error, sizeof s->tls_error, "libesmtp: unusable %s",
                         event == SMTP_EV_UNUSABLE_CA_LIST ? "CA list" : "client certificate");
                break;
        default:
                break;
        }
        va_end(ap);
}

/* Records why OpenSSL rejected the server's chain or name (the session reads it back). */
static int verify_cb(int preverify_ok, X509_STORE_CTX *xctx)
{
        SSL *ssl;
        struct ml_smtp_sess *s;

        if (preverify_ok)
                return 1;
        ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
        s = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
        if (s && !s->tls_error[0])
                snprintf(s->tls_error, sizeof s->tls_error,
                         "certificate verify failed: %s (depth %d)",
                         X509_verify_cert_error_string(X509_STORE_CTX_get_error(xctx)),
                         X509_STORE_CTX_get_error_depth(xctx));
        return 0;
}

/* A fresh SSL_CTX per session: it carries the host to verify, and libesmtp's shared default
 * context (used when none is given) is reference-counted per session, not per process. */
static SSL_CTX *tls_context(struct ml_smtp_sess *s, char *errstr, size_t errstr_size)
{
        const ml_smtp_config_t *cfg = s->cfg;
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        unsigned char ip[16];

        if (ctx == NULL) {
                nc_err(errstr, errstr_size, "SSL_CTX_new failed");
                return NULL;
        }
        /* TLS 1.2 exactly.  With TLS 1.3 the server sends NewSessionTicket records after the
         * handshake; when they are already in the socket as libesmtp 1.1.0 queues its EHLO,
         * its loop takes "readable" for the EHLO reply before flushing the EHLO, then waits
         * for a reply to a command the server never got and drops the session (seen on
         * loopback: 8 sessions in 30 under ASan; SSL_OP_NO_TICKET does not stop the server's
         * tickets).  TLS 1.2 has no post-handshake records. */
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_app_data(ctx, s);
        if (!s->tls_verify) {
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
                return ctx;
        }
        if (cfg->ca_file ? SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1
                         : SSL_CTX_set_default_verify_paths(ctx) != 1) {
                unsigned long e = ERR_get_error();

                ERR_clear_error();
                nc_err(errstr, errstr_size, "cannot load CA certificates from %s: %s",
                       cfg->ca_file ? cfg->ca_file : "the default store",
                       e ? ERR_reason_error_string(e) : "unknown error");
                SSL_CTX_free(ctx);
                return NULL;
        }
        {
                X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
                int rc;

                X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (inet_pton(AF_INET, cfg->host, ip) == 1)
                        rc = X509_VERIFY_PARAM_set1_ip_asc(param, cfg->host);
                else
                        rc = X509_VERIFY_PARAM_set1_host(param, cfg->host, 0);
                if (rc != 1) {
                        nc_err(errstr, errstr_size, "cannot verify TLS for host %s", cfg->host);
                        SSL_CTX_free(ctx);
                        return NULL;
                }
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
        return ctx;
}

/* ---- SIGPIPE ---------------------------------------------------------------------------- */

/* libesmtp writes with write()/SSL_write(): a relay that closes first (421, drops, our own
 * cut) raises SIGPIPE, which kills a process that does not ignore it.  Block it in this
 * thread for the session and swallow what the session raised; the process's disposition is
 * left alone. */
static void sigpipe_block(sigset_t *old, int *was_pending)
{
        sigset_t set, pending;

        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        *was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, old);
}

static void sigpipe_restore(const sigset_t *old, int was_pending)
{
        sigset_t set, pending;
        const struct timespec zero = {0, 0};

        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
                while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
                        ;
        }
        pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* ---- the session ------------------------------------------------------------------------ */

static int check_config(const ml_smtp_config_t *cfg, char *errstr, size_t errstr_size)
{
        if (cfg == NULL || cfg->host == NULL || cfg->host[0] == '\0')
                return nc_err(errstr, errstr_size, "SMTP host not set");
        if (strchr(cfg->host, ':') || strpbrk(cfg->host, " \t\r\n"))
                return nc_err(errstr, errstr_size, "SMTP host '%s': give a name or an IPv4 address",
                              cfg->host);
        if (cfg->port < 0 || cfg->port > 65535)
                return nc_err(errstr, errstr_size, "SMTP port %d out of range", cfg->port);
        if (cfg->password) {
                if (cfg->username == NULL || cfg->username[0] == '\0')
                        return nc_err(errstr, errstr_size, "SMTP password given without a user");
                if (strlen(cfg->username) > SASL_FIELD_MAX ||
                    strlen(cfg->password) > SASL_FIELD_MAX)
                        return nc_err(errstr, errstr_size,
                                      "SMTP user name or password longer than %d bytes",
                                      SASL_FIELD_MAX);
        }
        return 0;
}

/* Final status of one message, from what libesmtp recorded (see smtp.h). */
static void collect(struct ml_smtp_item *it)
{
        const smtp_status_t *mail = smtp_reverse_path_status(it->message);
        const smtp_status_t *rcpt = smtp_recipient_status(it->recipient);
        const smtp_status_t *data = smtp_message_transfer_status(it->message);
        /* Timed at SMTP_EV_MESSAGESENT, which libesmtp also raises for a message refused
         * before its data: only a transaction that got its final reply keeps its time. */
        double seconds = it->msg->seconds;

        it->msg->seconds = -1;
        if (mail == NULL || mail->code == 0)
                return; /* not attempted */
        /* A 421, whatever command it answers, closes the session: it says nothing about this
         * message, which goes on in another session (not attempted). */
        it->msg->attempted = mail->code != 421 && (rcpt == NULL || rcpt->code != 421) &&
                             (data == NULL || data->code != 421);
        if (mail->code / 100 != 2) {
                set_result_status(it->msg, mail);
                return;
        }
        if (rcpt == NULL || rcpt->code == 0) {
                set_result(it->msg, 0, "connection lost after MAIL FROM");
                return;
        }
        if (rcpt->code / 100 != 2) {
                set_result_status(it->msg, rcpt);
                return;
        }
        /* libesmtp clears the 354 when it then fails to read the final reply. */
        if (data == NULL || data->code == 0 || data->code == 354) {
                set_result(it->msg, 0,
                           it->data_started ? "connection lost after the message data was sent"
                                            : "connection lost after RCPT TO");
                return;
        }
        set_result_status(it->msg, data);
        it->msg->seconds = seconds;
}

/* Server, callbacks, timeouts, STARTTLS and AUTH of SESSION; *CTX = its SSL_CTX (the caller
 * frees it, also on failure). */
static int session_setup(struct ml_smtp_sess *s, smtp_session_t session, const char *hostport,
                         int timeout, SSL_CTX **ctx, char *errstr, size_t errstr_size)
{
        const ml_smtp_config_t *cfg = s->cfg;
        char why[256];

        if (!smtp_set_server(session, hostport) ||
            (cfg->helo_name && !smtp_set_hostname(session, cfg->helo_name)) ||
            !smtp_set_eventcb(session, event_cb, s) ||
            !smtp_set_monitorcb(session, monitor_cb, s, 0))
                return nc_err(errstr, errstr_size, "libesmtp: %s",
                              smtp_strerror(smtp_errno(), why, sizeof why));
        for (int w = Timeout_GREETING; w <= Timeout_DATA2; w++)
                smtp_set_timeout(session, w | Timeout_OVERRIDE_RFC2822_MINIMUM, timeout);

        if (cfg->starttls != ML_SMTP_TLS_OFF) {
                *ctx = tls_context(s, errstr, errstr_size);
                if (*ctx == NULL)
                        return -1;
                smtp_starttls_set_ctx(session, *ctx);
                smtp_starttls_enable(session, cfg->starttls == ML_SMTP_TLS_REQUIRED
                                                  ? Starttls_REQUIRED
                                                  : Starttls_ENABLED);
        } else {
                smtp_starttls_enable(session, Starttls_DISABLED);
        }
        if (s->need_auth) {
                s->auth = auth_create_context();
                if (s->auth == NULL)
                        return nc_err(errstr, errstr_size, "out of memory");
                auth_policy(s); /* again at connect and after STARTTLS */
                auth_set_interact_cb(s->auth, interact_cb, s);
                smtp_auth_set_context(session, s->auth);
        }
        return 0;
}

/* One libesmtp message per message of MSGS, except those refused here (final, as a relay's
 * 5xx would be: attempted).  *QUEUED = the messages given to libesmtp. */
static int session_add_messages(struct ml_smtp_sess *s, smtp_session_t session,
                                struct ml_smtp_item *items, ml_smtp_msg_t *msgs, size_t n,
                                size_t *queued, char *errstr, size_t errstr_size)
{
        char why[256];

        for (size_t i = 0; i < n; i++) {
                struct ml_smtp_item *it = &items[i];

                it->sess = s;
                it->msg = &msgs[i];
                if (!address_ok(msgs[i].rcpt, 0)) {
                        set_result(&msgs[i], 553, "5.1.3 invalid recipient address (not sent)");
                        msgs[i].attempted = 1;
                        continue;
                }
                if (!address_ok(msgs[i].mail_from, 1)) {
                        set_result(&msgs[i], 553, "5.1.7 invalid sender address (not sent)");
                        msgs[i].attempted = 1;
                        continue;
                }
                if (msgs[i].data == NULL && msgs[i].len > 0) {
                        set_result(&msgs[i], 554, "5.6.0 no message data (not sent)");
                        msgs[i].attempted = 1;
                        continue;
                }
                it->message = smtp_add_message(session);
                if (it->message == NULL ||
                    !smtp_set_reverse_path(it->message,
                                           msgs[i].mail_from ? msgs[i].mail_from : "") ||
                    !smtp_set_messagecb(it->message, message_cb, it) ||
                    (it->recipient = smtp_add_recipient(it->message, msgs[i].rcpt)) == NULL)
                        return nc_err(errstr, errstr_size, "libesmtp: %s",
                                      smtp_strerror(smtp_errno(), why, sizeof why));
                /* For SMTP_EV_MESSAGESENT and _RCPTSTATUS; no release: the item is ours. */
                smtp_message_set_application_data_release(it->message, it, NULL);
                smtp_recipient_set_application_data_release(it->recipient, it, NULL);
                /* SIZE= lets the relay refuse an oversized message before the data. */
                smtp_size_set_estimate(it->message, (unsigned long)msgs[i].len);
                (*queued)++;
        }
        return 0;
}

/* The session itself: connect (TCP_NODELAY, bounded, cancellable), then every transaction.
 * Returns smtp_start_session()'s result. */
static int session_run(struct ml_smtp_sess *s, smtp_session_t session, int timeout)
{
        const ml_smtp_config_t *cfg = s->cfg;
        int started, was_pending;
        sigset_t oldmask;

        sigpipe_block(&oldmask, &was_pending);
        ml_nodelay_arm(timeout);
        ml_nodelay_set_abort(cfg->cancel ? &cfg->cancel->cancelled : NULL);
        started = smtp_start_session(session);
        ml_nodelay_set_abort(NULL);
        ml_nodelay_disarm();
        sigpipe_restore(&oldmask, was_pending);
        cancel_detach(cfg->cancel); /* normally done at SMTP_EV_DISCONNECT */

        if (s->connected && !s->nodelay_on && ml_nodelay_enabled() &&
            atomic_exchange(&nodelay_warned, 1) == 0)
                log_warnx("TCP_NODELAY is not set on libesmtp's socket (connect() not "
                          "intercepted): expect ~40 ms per message over 2 KiB");
        return started;
}

/* Each queued message's result; *ATTEMPTED = messages whose MAIL FROM got a reply,
 * *ACCEPTED = messages the relay took. */
static void session_collect(struct ml_smtp_sess *s, struct ml_smtp_item *items, size_t n,
                            size_t *attempted, size_t *accepted)
{
        char why[256];

        for (size_t i = 0; i < n; i++) {
                if (items[i].message == NULL)
                        continue;
                collect(&items[i]);
                if (smtp_reverse_path_status(items[i].message)->code != 0)
                        (*attempted)++;
                if (items[i].msg->status / 100 == 2)
                        (*accepted)++;
        }

        /* libesmtp carries on without AUTH after a failure; should a message still have gone
         * out that way (the cut above needs the connect() hook), its 5xx is about us, not the
         * recipient: make it temporary. */
        if (s->need_auth && !s->auth_ok && *attempted > 0) {
                for (size_t i = 0; i < n; i++)
                        if (items[i].message && items[i].msg->status / 100 != 2) {
                                set_result(items[i].msg, 0, "not sent: %s",
                                           auth_failure(s, why, sizeof why));
                                items[i].msg->attempted = 1; /* charged: no other session */
                        }
        }
        /* A 421 closes the session: it stands for every message that got no reply. */
        if (s->saw_421) {
                for (size_t i = 0; i < n; i++)
                        if (items[i].message && items[i].msg->status == 0)
                                set_result(items[i].msg, 421, "%s", s->text_421);
        }
}

/* Why a session that attempted no message failed, in REASON. */
static void session_failure(const struct ml_smtp_sess *s, const char *hostport, char *reason,
                            size_t size)
{
        const ml_smtp_config_t *cfg = s->cfg;
        char why[256];

        if (cfg->cancel && atomic_load(&cfg->cancel->cancelled))
                snprintf(reason, size, "SMTP session cancelled");
        else if (s->aborted)
                snprintf(reason, size, "%s", s->abort_reason);
        else if (s->tls_error[0])
                snprintf(reason, size, "STARTTLS with %s failed: %s", hostport, s->tls_error);
        else if (s->tls_not_offered)
                snprintf(reason, size, "%s does not offer STARTTLS (required)", hostport);
        else if (!s->connected)
                snprintf(reason, size, "cannot connect to %s: %s", hostport,
                         smtp_strerror(smtp_errno(), why, sizeof why));
        else if (s->greeting_code && s->greeting_code / 100 != 2)
                snprintf(reason, size, "%s greeted with %s", hostport, s->greeting);
        else if (s->fail_code)
                snprintf(reason, size, "%s answered %s", hostport, s->fail_text);
        else if (s->replies == 0)
                snprintf(reason, size, "no greeting from %s: %s", hostport,
                         smtp_strerror(smtp_errno(), why, sizeof why));
        else
                snprintf(reason, size, "SMTP session with %s failed: %s", hostport,
                         smtp_strerror(smtp_errno(), why, sizeof why));
}

int ml_smtp_send_session(const ml_smtp_config_t *cfg, ml_smtp_msg_t *msgs, size_t n, char *errstr,
                         size_t errstr_size)
{
        struct ml_smtp_sess s;
        struct ml_smtp_item *items = NULL;
        smtp_session_t session = NULL;
        SSL_CTX *ctx = NULL;
        char hostport[300], why[256], reason[640];
        size_t queued = 0, attempted = 0, accepted = 0;
        int timeout, started, rc = -1;

        pthread_once(&init_once, lib_init);
        for (size_t i = 0; i < n; i++) {
                msgs[i].status = 0;
                msgs[i].reply[0] = '\0';
                msgs[i].attempted = 0;
                msgs[i].seconds = -1;
                msgs[i].deferred = 0;
        }
        if (check_config(cfg, errstr, errstr_size) < 0)
                return -1;
        if (n == 0)
                return 0;
        if (cfg->cancel && atomic_load(&cfg->cancel->cancelled)) {
                for (size_t i = 0; i < n; i++)
                        set_result(&msgs[i], 0, "not sent: cancelled");
                return nc_err(errstr, errstr_size, "SMTP session cancelled");
        }

        memset(&s, 0, sizeof s);
        s.cfg = cfg;
        s.need_auth = cfg->password != NULL;
        s.tls_verify = cfg->starttls == ML_SMTP_TLS_REQUIRED ||
                       (cfg->starttls == ML_SMTP_TLS_OPTIONAL && cfg->ca_file != NULL);
        timeout = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
        if (timeout < 1000)
                timeout = 1000; /* libesmtp's floor */

        items = calloc(n, sizeof *items);
        session = smtp_create_session();
        if (items == NULL || session == NULL) {
                nc_err(errstr, errstr_size, "out of memory");
                goto out;
        }
        snprintf(hostport, sizeof hostport, "%s:%d", cfg->host, cfg->port ? cfg->port : 587);
        if (session_setup(&s, session, hostport, timeout, &ctx, errstr, errstr_size) < 0 ||
            session_add_messages(&s, session, items, msgs, n, &queued, errstr, errstr_size) < 0)
                goto out;
        if (queued == 0) {
                rc = 0; /* every message was refused locally */
                goto out;
        }
        started = session_run(&s, session, timeout);
        session_collect(&s, items, n, &attempted, &accepted);
        if (attempted > 0) {
                rc = 0;
                if (s.aborted) /* by a deferral: say so */
                        snprintf(reason, sizeof reason, "%s", s.abort_reason);
                else
                        snprintf(reason, sizeof reason, "connection lost: %s",
                                 smtp_strerror(smtp_errno(), why, sizeof why));
        } else {
                /* Nothing reached MAIL FROM: say why the session failed. */
                session_failure(&s, hostport, reason, sizeof reason);
                nc_err(errstr, errstr_size, "%s", reason);
                /* A 4xx/5xx greeting is every message's answer. */
                if (s.greeting_code / 100 == 4 || s.greeting_code / 100 == 5) {
                        for (size_t i = 0; i < n; i++)
                                if (items[i].message && items[i].msg->status == 0)
                                        set_result(items[i].msg, s.greeting_code, "%s",
                                                   s.greeting[3] ? s.greeting + 4 : "");
                }
        }
        /* Unsent messages say why. */
        for (size_t i = 0; i < n; i++)
                if (items[i].message && items[i].msg->status == 0 && !items[i].msg->reply[0])
                        set_result(items[i].msg, 0, "not sent: %s", reason);
        log_debug("smtp session %s: started=%d messages=%zu attempted=%zu accepted=%zu tls=%d "
                  "auth=%d nodelay=%d",
                  hostport, started, queued, attempted, accepted, s.tls_ok, s.auth_ok,
                  s.nodelay_on);

out:
        if (session)
                smtp_destroy_session(session);
        if (s.need_auth && s.auth)
                auth_destroy_context(s.auth);
        if (ctx)
                SSL_CTX_free(ctx);
        free(items);
        return rc;
}

/* ---- batches over several sessions ------------------------------------------------------- */

int ml_smtp_batch_continue(size_t n_left, size_t progress, size_t sessions, size_t max_sessions,
                           int stopping)
{
        if (n_left == 0 || stopping)
                return 0;
        /* A session that attempted nothing: the relay refuses or cannot be reached now, and
         * another session at once would only spin.  The rest wait for a later try. */
        if (progress == 0)
                return 0;
        return sessions < max_sessions;
}

int ml_smtp_send_batch(const ml_smtp_config_t *cfg, ml_smtp_msg_t *msgs, size_t n,
                       size_t max_sessions, size_t *sessions, char *errstr, size_t errstr_size)
{
        ml_smtp_msg_t *sub;
        size_t *ix, left = n, nsess = 0;
        char err[512] = "";
        int rc = 0;

        if (sessions)
                *sessions = 0;
        for (size_t i = 0; i < n; i++) {
                msgs[i].status = 0;
                msgs[i].reply[0] = '\0';
                msgs[i].attempted = 0;
                msgs[i].seconds = -1;
                msgs[i].deferred = 0;
        }
        if (n == 0)
                return 0;
        if (max_sessions == 0)
                max_sessions = n;
        sub = calloc(n, sizeof *sub);
        ix = calloc(n, sizeof *ix);
        if (sub == NULL || ix == NULL) {
                free(sub);
                free(ix);
                for (size_t i = 0; i < n; i++)
                        set_result(&msgs[i], 0, "not sent: out of memory");
                return nc_err(errstr, errstr_size, "out of memory");
        }
        for (;;) {
                size_t k = 0, progress = 0;
                int stopping, deferred = 0;

                /* The messages not attempted yet, in their order, as one session's batch. */
                for (size_t i = 0; i < n; i++)
                        if (!msgs[i].attempted) {
                                ix[k] = i;
                                sub[k] = msgs[i];
                                k++;
                        }
                err[0] = '\0';
                rc = ml_smtp_send_session(cfg, sub, k, err, sizeof err);
                nsess++;
                for (size_t j = 0; j < k; j++) {
                        ml_smtp_msg_t *m = &msgs[ix[j]];

                        m->status = sub[j].status;
                        memcpy(m->reply, sub[j].reply, sizeof m->reply);
                        m->attempted = sub[j].attempted;
                        m->seconds = sub[j].seconds;
                        m->deferred = sub[j].deferred;
                        progress += m->attempted != 0;
                        deferred |= m->deferred;
                }
                left = k - progress;
                stopping = cfg->cancel && (atomic_load(&cfg->cancel->stop) ||
                                           atomic_load(&cfg->cancel->cancelled));
                /* A deferring domain would defer the rest too: they wait for its backoff. */
                if (deferred ||
                    !ml_smtp_batch_continue(left, progress, nsess, max_sessions, stopping))
                        break;
                log_debug("smtp %s:%d: session %zu ended with %zu message%s not attempted (%s); "
                          "going on in a new session",
                          cfg->host, cfg->port, nsess, left, left == 1 ? "" : "s",
                          rc ? err : "connection closed");
        }
        free(sub);
        free(ix);
        if (sessions)
                *sessions = nsess;
        if (left == 0)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (msgs[i].deferred)
                        return nc_err(errstr, errstr_size,
                                      "%zu message%s not attempted: the recipient's domain "
                                      "deferred mail",
                                      left, left == 1 ? "" : "s");
        if (cfg->cancel &&
            (atomic_load(&cfg->cancel->stop) || atomic_load(&cfg->cancel->cancelled)))
                return nc_err(errstr, errstr_size, "%zu message%s not sent: stopping%s%s", left,
                              left == 1 ? "" : "s", err[0] ? ": " : "", err);
        return nc_err(errstr, errstr_size, "%zu message%s not attempted after %zu session%s: %s",
                      left, left == 1 ? "" : "s", nsess, nsess == 1 ? "" : "s",
                      err[0] ? err : "the relay closed the session");
}
