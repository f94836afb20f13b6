#include "inbound.h"

#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <gmime/gmime.h>
#include <openssl/crypto.h>

#include "nc_dlq.h"
#include "nc_log.h"
#include "nc_util.h"
#include "nc_verp.h"

/* Bytes read of one report part, of the original's headers, of one text part; text parts
 * searched when a report is mangled.  Reports are a few KiB: this bounds the work a hostile
 * one can cause, not what a real one needs. */
#define PART_MAX   (64 * 1024)
#define TEXT_PARTS 8
#define DEPTH_MAX  16
/* Unsubscribe tokens tried per text (each one an HMAC and an AES pass). */
#define TOKEN_TRIES 32

const char *inbound_type_name(inbound_type_t t)
{
        switch (t) {
        case INBOUND_BOUNCE:
                return "mail.bounce";
        case INBOUND_DELAYED:
                return "mail.delayed";
        case INBOUND_COMPLAINT:
                return "mail.complaint";
        case INBOUND_UNSUBSCRIBED:
                return "mail.unsubscribed";
        case INBOUND_IGNORED:
                return "mail.ignored";
        }
        fatalx("inbound_type_name: unknown type %d", (int)t);
}

const char *inbound_kind_name(inbound_kind_t k)
{
        switch (k) {
        case INBOUND_DSN:
                return "dsn";
        case INBOUND_ARF:
                return "arf";
        case INBOUND_MAILTO:
                return "mailto";
        case INBOUND_OTHER:
                return "other";
        }
        fatalx("inbound_kind_name: unknown kind %d", (int)k);
}

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
        g_mime_init();
}

void inbound_global_shutdown(void)
{
        g_mime_shutdown();
}

/* ---- text ------------------------------------------------------------------------------ */

/* SRC[0..LEN) into DST as one line of valid UTF-8: runs of blanks and line breaks (folding)
 * become one space, other control characters are dropped, bytes that are not UTF-8 become
 * '?', and it is cut at a character boundary to fit SIZE. */
static void put_text(char *dst, size_t size, const char *src, size_t len)
{
        size_t o = 0, i = 0;
        int space = 0;

        if (!size)
                return;
        while (i < len) {
                unsigned char ch = (unsigned char)src[i];
                size_t n = 1;

                if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
                        space = o > 0;
                        i++;
                        continue;
                }
                if (ch < 0x20 || ch == 0x7f) {
                        i++;
                        continue;
                }
                if (ch >= 0x80) {
                        n = 0;
                        for (size_t k = 2; k <= 4 && !n; k++)
                                if (i + k <= len && nc_utf8_valid(src + i, k))
                                        n = k;
                }
                if (o + space + (n ? n : 1) >= size)
                        break;
                if (space)
                        dst[o++] = ' ';
                space = 0;
                if (n) {
                        memcpy(dst + o, src + i, n);
                        o += n;
                        i += n;
                } else {
                        dst[o++] = '?';
                        i++;
                }
        }
        dst[o] = '\0';
}

static void put_str(char *dst, size_t size, const char *s)
{
        put_text(dst, size, s ? s : "", s ? strlen(s) : 0);
}

/* The address in "rfc822; <a@b>" or "<a@b>" (type and brackets dropped). */
static void put_addr(char *dst, size_t size, const char *v, size_t len)
{
        const char *semi = memchr(v, ';', len);
        char tmp[INBOUND_STR_SIZE], *p, *e;

        if (semi) {
                len -= (size_t)(semi + 1 - v);
                v = semi + 1;
        }
        put_text(tmp, sizeof(tmp), v, len);
        p = tmp;
        if (*p == '<')
                p++;
        if ((e = strchr(p, '>')))
                *e = '\0';
        put_str(dst, size, p);
}

static int is_status(const char *s, size_t len)
{
        size_t i = 2, n;

        if (len < 5 || !strchr("245", s[0]) || s[1] != '.')
                return 0;
        for (int part = 0; part < 2; part++) {
                for (n = 0; i < len && isdigit((unsigned char)s[i]) && n < 4; i++)
                        n++;
                if (n < 1 || n > 3)
                        return 0;
                if (part == 0 && (i >= len || s[i++] != '.'))
                        return 0;
        }
        return i == len;
}

/* The first enhanced status code (RFC 3463) at a word start in S[0..LEN) into OUT, with the
 * line it is on into LINE (may be NULL).  SMTP: a reply code before it ("550 5.1.1",
 * "550-5.1.1"); else any.  1 if found. */
static int find_status(const char *s, size_t len, int smtp, char out[16], char *line,
                       size_t line_size)
{
        for (size_t i = 0; i + 5 <= len; i++) {
                size_t e = i;

                if (!strchr("245", s[i]) ||
                    (i && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '.')))
                        continue;
                if (smtp &&
                    (i < 4 || !strchr("245", s[i - 4]) || !isdigit((unsigned char)s[i - 3]) ||
                     !isdigit((unsigned char)s[i - 2]) || !strchr(" -", s[i - 1])))
                        continue;
                while (e < len && e - i < 9 && (isdigit((unsigned char)s[e]) || s[e] == '.'))
                        e++;
                while (e > i && s[e - 1] == '.') /* the end of a sentence */
                        e--;
                if (!is_status(s + i, e - i) || (e < len && isalnum((unsigned char)s[e])))
                        continue;
                put_text(out, 16, s + i, e - i);
                if (line) {
                        size_t a = i, b = e;

                        while (a > 0 && s[a - 1] != '\n')
                                a--;
                        while (b < len && s[b] != '\n')
                                b++;
                        put_text(line, line_size, s + a, b - a);
                }
                return 1;
        }
        return 0;
}

/* ---- header-like blocks: DSN and ARF fields ---------------------------------------------- */

struct fields {
        const char *p, *end;
};

/* One line at IT: its start, length (without CR LF); IT moves past it. */
static const char *line_next(struct fields *it, size_t *len)
{
        const char *line = it->p, *eol = memchr(line, '\n', (size_t)(it->end - line));

        it->p = eol ? eol + 1 : it->end;
        *len = (size_t)((eol ? eol : it->end) - line);
        if (*len && line[*len - 1] == '\r')
                (*len)--;
        return line;
}

static int line_blank(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (s[i] != ' ' && s[i] != '\t')
                        return 0;
        return 1;
}

/* The next "Name: value" at IT, continuation lines part of the value (raw, folded): 1 with
 * NAME/NLEN and VAL/VLEN; 0 at a blank line (DSN recipient blocks are separated by one); -1
 * at the end.  Other lines are skipped: mangled reports put fields among prose. */
static int field_next(struct fields *it, const char **name, size_t *nlen, const char **val,
                      size_t *vlen)
{
        while (it->p < it->end) {
                size_t len, i;
                const char *line = line_next(it, &len), *colon;

                if (line_blank(line, len))
                        return 0;
                if (line[0] == ' ' || line[0] == '\t' || !(colon = memchr(line, ':', len)) ||
                    colon == line)
                        continue;
                for (i = 0; line + i < colon; i++)
                        if ((unsigned char)line[i] <= ' ' || (unsigned char)line[i] > '~')
                                break;
                if (line + i != colon)
                        continue;
                *name = line;
                *nlen = i;
                *val = colon + 1;
                *vlen = len - i - 1;
                while (it->p < it->end && (*it->p == ' ' || *it->p == '\t')) {
                        struct fields peek = *it;
                        size_t clen;
                        const char *cont = line_next(&peek, &clen);

                        if (line_blank(cont, clen))
                                break;
                        *it = peek;
                        *vlen = (size_t)(cont + clen - *val);
                }
                return 1;
        }
        return -1;
}

static int name_is(const char *name, size_t nlen, const char *want)
{
        return nlen == strlen(want) && !strncasecmp(name, want, nlen);
}

/* The value of the first field NAME of TEXT into OUT; 1 if there is one. */
static int field_get(const char *text, size_t len, const char *want, char *out, size_t size)
{
        struct fields it = {text, text + len};
        const char *n, *v;
        size_t nl, vl;
        int rc;

        while ((rc = field_next(&it, &n, &nl, &v, &vl)) >= 0)
                if (rc == 1 && name_is(n, nl, want)) {
                        put_text(out, size, v, vl);
                        return 1;
                }
        return 0;
}

/* A recipient of a DSN: its fields as far as they were given. */
struct rcpt {
        char action[32], status[16], recipient[INBOUND_STR_SIZE], remote[INBOUND_STR_SIZE];
        char diag[INBOUND_DIAG_MAX + 1];
        int from_diag; /* the status came from Diagnostic-Code */
};

/* How much a recipient's fields say: the worst outcome wins (we send to one recipient per
 * message, but a relay may list an alias's expansions). */
static int rcpt_rank(const struct rcpt *x)
{
        if (!x->action[0] && !x->status[0])
                return 0;
        if (!strcmp(x->action, "failed"))
                return x->status[0] == '5' ? 5 : 4;
        if (!strcmp(x->action, "delayed"))
                return 3;
        return x->status[0] ? 2 : 1;
}

static void rcpt_field(struct rcpt *x, const char *n, size_t nl, const char *v, size_t vl)
{
        char tmp[64];

        if (name_is(n, nl, "Action")) {
                put_text(tmp, sizeof(tmp), v, vl);
                tmp[strcspn(tmp, " ;(")] = '\0';
                nc_str_lower(tmp);
                put_str(x->action, sizeof(x->action), tmp);
        } else if (name_is(n, nl, "Status")) {
                put_text(tmp, sizeof(tmp), v, vl);
                tmp[strcspn(tmp, " ;(")] = '\0';
                if (is_status(tmp, strlen(tmp)))
                        put_str(x->status, sizeof(x->status), tmp);
        } else if (name_is(n, nl, "Diagnostic-Code")) {
                put_text(x->diag, sizeof(x->diag), v, vl);
        } else if (name_is(n, nl, "Final-Recipient") ||
                   (name_is(n, nl, "Original-Recipient") && !x->recipient[0])) {
                put_addr(x->recipient, sizeof(x->recipient), v, vl);
        } else if (name_is(n, nl, "Remote-MTA")) {
                put_addr(x->remote, sizeof(x->remote), v, vl);
        }
}

/* The DSN fields of TEXT (a message/delivery-status part, or prose with fields in it) into R
 * unless R has a status already; SOURCE says where they were.  1 if a status was found. */
static int dsn_fields(const char *text, size_t len, inbound_t *r, const char *source)
{
        struct fields it = {text, text + len};
        struct rcpt cur, best;
        const char *n, *v;
        size_t nl, vl;
        int rc, best_rank = 0;

        memset(&cur, 0, sizeof(cur));
        memset(&best, 0, sizeof(best));
        do {
                rc = field_next(&it, &n, &nl, &v, &vl);
                if (rc == 1) {
                        rcpt_field(&cur, n, nl, v, vl);
                        continue;
                }
                if (!cur.status[0] && cur.diag[0] &&
                    find_status(cur.diag, strlen(cur.diag), 0, cur.status, NULL, 0))
                        cur.from_diag = 1;
                if (rcpt_rank(&cur) > best_rank) {
                        best_rank = rcpt_rank(&cur);
                        best = cur;
                }
                memset(&cur, 0, sizeof(cur));
        } while (rc >= 0);
        if (!best_rank || r->status[0])
                return 0;
        put_str(r->action, sizeof(r->action), best.action);
        put_str(r->status, sizeof(r->status), best.status);
        put_str(r->diagnostic, sizeof(r->diagnostic), best.diag);
        put_str(r->recipient, sizeof(r->recipient), best.recipient);
        put_str(r->remote_mta, sizeof(r->remote_mta), best.remote);
        if (best.status[0])
                put_str(r->status_source, sizeof(r->status_source),
                        best.from_diag ? "diagnostic-code" : source);
        return best.status[0] != 0;
}

/* ---- tokens ------------------------------------------------------------------------------ */

struct ctx {
        const inbound_conf_t *c;
        nc_verp_keys_t keys;
        /* What was found: */
        int verp, verp_bad, unsub, unsub_bad;
        uint64_t ref;
        uint32_t msg_ref;
        char id[ML_TOKEN_ID_MAX + 1];
        uint64_t gen;
        int expired;
        const char *verp_source, *unsub_source;
        const char *envelope_source; /* "envelope", or "to" when only To said it */
};

static void verp_in(struct ctx *x, const char *text, const char *source)
{
        nc_verp_status_t st;
        uint64_t ref;
        uint32_t mr;

        if (x->verp || !text || !x->c->verp_base)
                return;
        st = nc_verp_find(&x->keys, x->c->verp_base, x->c->verp_delim, text, &ref, &mr);
        switch (st) {
        case NC_VERP_OK:
                x->verp = 1;
                x->ref = ref;
                x->msg_ref = mr;
                x->verp_source = source;
                break;
        case NC_VERP_MALFORMED:
        case NC_VERP_FORGED:
                x->verp_bad = 1;
                break;
        case NC_VERP_NONE:
                break;
        }
}

static void unsub_try(struct ctx *x, const char *tok, size_t len, const char *source)
{
        char buf[ML_TOKEN_SIZE];
        ml_token_status_t st;

        if (x->unsub || len < 16 || len >= sizeof(buf))
                return;
        memcpy(buf, tok, len);
        buf[len] = '\0';
        st = ml_token_open(x->c->secret, x->c->secret_len, buf, x->c->now_s, x->id, sizeof(x->id),
                           &x->gen);
        if (st == ML_TOKEN_EXPIRED) {
                /* Authentic: it proves the mail was ours.  Opened again as of the epoch for
                 * its id; the mailer decides (token_expired in the event). */
                st = ml_token_open(x->c->secret, x->c->secret_len, buf, INT64_MIN, x->id,
                                   sizeof(x->id), &x->gen);
                x->expired = st == ML_TOKEN_OK;
        }
        switch (st) {
        case ML_TOKEN_OK:
                x->unsub = 1;
                x->unsub_source = source;
                break;
        case ML_TOKEN_FORGED:
                x->unsub_bad = 1;
                break;
        case ML_TOKEN_MALFORMED: /* a word after "unsubscribe", not a token */
        case ML_TOKEN_EXPIRED:
                break;
        }
}

static size_t b64url_run(const char *p)
{
        size_t n = 0;

        while (isalnum((unsigned char)p[n]) || p[n] == '-' || p[n] == '_')
                n++;
        return n;
}

/* Unsubscribe tokens in TEXT: after "unsubscribe" (a Subject, or List-Unsubscribe's
 * mailto: ...?subject=unsubscribe%20<token>) and after "token=" (its https URL). */
static void unsub_in(struct ctx *x, const char *text, const char *source)
{
        static const char *const marks[] = {"unsubscribe", "token="};
        int tries = 0;

        if (!text)
                return;
        for (size_t m = 0; m < 2; m++)
                for (const char *p = text;
                     !x->unsub && tries < TOKEN_TRIES && (p = strcasestr(p, marks[m])); p++) {
                        const char *t = p + strlen(marks[m]);
                        size_t n;

                        for (;;) {
                                if (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n' ||
                                    *t == ':' || *t == '+')
                                        t++;
                                else if (!strncmp(t, "%20", 3) || !strncmp(t, "%09", 3))
                                        t += 3;
                                else
                                        break;
                        }
                        if ((n = b64url_run(t)) >= 16) {
                                tries++;
                                unsub_try(x, t, n, source);
                        }
                }
}

/* ---- MIME -------------------------------------------------------------------------------- */

/* The decoded content of leaf PART, or the headers of the message in a message/rfc822 part:
 * at most PART_MAX bytes, NUL bytes as spaces, NUL-terminated (g_free). */
static char *obj_text(GMimeObject *o, size_t *lenp)
{
        GMimeStream *raw, *f;
        GMimeDataWrapper *w;
        GMimeContentEncoding enc;
        char *buf;
        size_t len = 0;

        *lenp = 0;
        if (GMIME_IS_MESSAGE_PART(o)) {
                GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
                char *h = m ? g_mime_object_get_headers(GMIME_OBJECT(m), NULL) : NULL;

                if (h && strlen(h) > PART_MAX)
                        h[PART_MAX] = '\0';
                *lenp = h ? strlen(h) : 0;
                return h;
        }
        if (!GMIME_IS_PART(o) || !(w = g_mime_part_get_content(GMIME_PART(o))) ||
            !(raw = g_mime_data_wrapper_get_stream(w)))
                return NULL;
        g_mime_stream_reset(raw);
        f = g_mime_stream_filter_new(raw);
        enc = g_mime_data_wrapper_get_encoding(w);
        if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
            enc == GMIME_CONTENT_ENCODING_UUENCODE) {
                GMimeFilter *dec = g_mime_filter_basic_new(enc, FALSE);

                g_mime_stream_filter_add(GMIME_STREAM_FILTER(f), dec);
                g_object_unref(dec);
        }
        buf = g_malloc(PART_MAX + 1);
        while (len < PART_MAX) {
                ssize_t n = g_mime_stream_read(f, buf + len, PART_MAX - len);

                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        g_object_unref(f);
        g_mime_stream_reset(raw);
        for (size_t i = 0; i < len; i++)
                if (!buf[i])
                        buf[i] = ' ';
        buf[len] = '\0';
        *lenp = len;
        return buf;
}

struct parts {
        GMimeObject *status, *feedback, *original;
        GMimeObject *text[TEXT_PARTS];
        size_t ntext;
};

static int ct_is(GMimeContentType *ct, const char *type, const char *sub)
{
        return ct && g_mime_content_type_is_type(ct, type, sub);
}

static void walk(GMimeObject *o, struct parts *p, int depth)
{
        GMimeContentType *ct;

        if (!o || depth > DEPTH_MAX)
                return;
        ct = g_mime_object_get_content_type(o);
        if (GMIME_IS_MULTIPART(o)) {
                int n = g_mime_multipart_get_count(GMIME_MULTIPART(o));

                for (int i = 0; i < n; i++)
                        walk(g_mime_multipart_get_part(GMIME_MULTIPART(o), i), p, depth + 1);
                return;
        }
        /* The original comes after the report part; the report's own attachments are not
         * looked into. */
        if (GMIME_IS_MESSAGE_PART(o) || ct_is(ct, "text", "rfc822-headers") ||
            ct_is(ct, "message", "global-headers")) {
                if (!p->original)
                        p->original = o;
        } else if (ct_is(ct, "message", "delivery-status") ||
                   ct_is(ct, "message", "global-delivery-status")) {
                if (!p->status)
                        p->status = o;
        } else if (ct_is(ct, "message", "feedback-report")) {
                if (!p->feedback)
                        p->feedback = o;
        } else if (ct_is(ct, "text", "*") && !ct_is(ct, "text", "html") && p->ntext < TEXT_PARTS) {
                p->text[p->ntext++] = o;
        }
}

static const char *hdr(GMimeMessage *m, const char *name)
{
        return g_mime_object_get_header(GMIME_OBJECT(m), name);
}

/* The first address of header value V (display names and comments dropped). */
static void first_addr(char *dst, size_t size, const char *v)
{
        InternetAddressList *l;

        dst[0] = '\0';
        if (!v || !(l = internet_address_list_parse(NULL, v)))
                return;
        for (int i = 0; i < internet_address_list_length(l); i++) {
                InternetAddress *a = internet_address_list_get_address(l, i);

                if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
                        put_str(dst, size,
                                internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a)));
                        break;
                }
        }
        g_object_unref(l);
}

/* ---- the kinds --------------------------------------------------------------------------- */

struct texts {
        char *status, *feedback, *original, *text[TEXT_PARTS];
        size_t status_len, feedback_len, original_len, text_len[TEXT_PARTS], ntext;
};

static void texts_read(const struct parts *p, struct texts *t)
{
        memset(t, 0, sizeof(*t));
        if (p->status)
                t->status = obj_text(p->status, &t->status_len);
        if (p->feedback)
                t->feedback = obj_text(p->feedback, &t->feedback_len);
        if (p->original)
                t->original = obj_text(p->original, &t->original_len);
        for (size_t i = 0; i < p->ntext; i++)
                if ((t->text[t->ntext] = obj_text(p->text[i], &t->text_len[t->ntext])))
                        t->ntext++;
}

static void texts_free(struct texts *t)
{
        g_free(t->status);
        g_free(t->feedback);
        g_free(t->original);
        for (size_t i = 0; i < t->ntext; i++)
                g_free(t->text[i]);
}

/* Our tokens wherever a report may carry them, the most direct first: the address it was
 * sent to, the original message's headers (Return-Path, List-Unsubscribe), the report's
 * fields (X-Postfix-Sender, Original-Mail-From), then the prose. */
static void tokens_find(struct ctx *x, GMimeMessage *m, const inbound_t *r, const struct texts *t)
{
        verp_in(x, r->envelope_recipient, x->envelope_source);
        verp_in(x, hdr(m, "To"), "to");
        verp_in(x, t->original, "original");
        unsub_in(x, t->original, "original");
        verp_in(x, t->status, "report");
        verp_in(x, t->feedback, "report");
        for (size_t i = 0; i < t->ntext; i++) {
                verp_in(x, t->text[i], "text");
                unsub_in(x, t->text[i], "text");
        }
}

static void set_reason(inbound_t *r, const char *fmt, ...) NC_PRINTF(2, 3);

static void set_reason(inbound_t *r, const char *fmt, ...)
{
        char tmp[INBOUND_STR_SIZE];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        put_str(r->reason, sizeof(r->reason), tmp);
}

/* The tokens found into R.  A report that would change something but has no verified token
 * is ignored: its addresses are what anyone may write. */
static void tokens_apply(struct ctx *x, inbound_t *r)
{
        if (x->unsub && x->verp && nc_verp_subscriber_ref(&x->keys, x->id) != x->ref) {
                r->type = INBOUND_IGNORED;
                set_reason(r, "tokens of two subscribers");
                return;
        }
        if (x->unsub) {
                put_str(r->subscriber, sizeof(r->subscriber), x->id);
                r->generation = x->gen;
                r->token_expired = x->expired;
                r->has_ref = 1;
                r->subscriber_ref = nc_verp_subscriber_ref(&x->keys, x->id);
                put_str(r->token_source, sizeof(r->token_source), x->unsub_source);
        }
        if (x->verp) {
                r->has_ref = 1;
                r->subscriber_ref = x->ref;
                r->has_message_ref = 1;
                r->message_ref = x->msg_ref;
                if (!x->unsub)
                        put_str(r->token_source, sizeof(r->token_source), x->verp_source);
        }
        if (r->type == INBOUND_IGNORED || x->unsub || x->verp)
                return;
        r->type = INBOUND_IGNORED;
        if (x->verp_bad)
                set_reason(r, "forged VERP token");
        else if (x->unsub_bad)
                set_reason(r, "forged unsubscribe token");
        else
                set_reason(r, "no token");
}

/* A DSN's outcome from its Action and Status. */
static void dsn_decide(inbound_t *r)
{
        const char *a = r->action;

        if (!strcmp(a, "delayed")) {
                r->type = INBOUND_DELAYED;
        } else if (!strcmp(a, "delivered") || !strcmp(a, "relayed") || !strcmp(a, "expanded")) {
                r->type = INBOUND_IGNORED;
                set_reason(r, "delivery notification (Action: %s)", a);
        } else if (r->status[0] == '5') {
                r->type = INBOUND_BOUNCE;
        } else if (r->status[0] == '4') {
                r->type = INBOUND_DELAYED;
        } else if (r->status[0] == '2') {
                r->type = INBOUND_IGNORED;
                set_reason(r, "success notification (Status: %s)", r->status);
        } else {
                r->type = INBOUND_IGNORED;
                set_reason(r, "no status in the report");
        }
}

/* Status from the prose when the report part is missing or mangled: "Status:" lines first,
 * then an SMTP reply ("550 5.1.1 ..."). */
static void dsn_from_text(inbound_t *r, const struct texts *t)
{
        for (size_t i = 0; i < t->ntext && !r->status[0]; i++)
                dsn_fields(t->text[i], t->text_len[i], r, "text");
        if (t->status && !r->status[0] &&
            find_status(t->status, t->status_len, 1, r->status, r->diagnostic,
                        sizeof(r->diagnostic)))
                put_str(r->status_source, sizeof(r->status_source), "text");
        for (size_t i = 0; i < t->ntext && !r->status[0]; i++)
                if (find_status(t->text[i], t->text_len[i], 1, r->status, r->diagnostic,
                                sizeof(r->diagnostic)))
                        put_str(r->status_source, sizeof(r->status_source), "text");
}

static void classify_dsn(struct ctx *x, GMimeMessage *m, inbound_t *r, const struct texts *t)
{
        r->kind = INBOUND_DSN;
        if (t->status)
                dsn_fields(t->status, t->status_len, r, "delivery-status");
        if (!r->status[0])
                dsn_from_text(r, t);
        dsn_decide(r);
        tokens_find(x, m, r, t);
        tokens_apply(x, r);
}

static void classify_arf(struct ctx *x, GMimeMessage *m, inbound_t *r, const struct texts *t)
{
        char v[INBOUND_STR_SIZE];

        r->kind = INBOUND_ARF;
        if (t->feedback) {
                if (field_get(t->feedback, t->feedback_len, "Feedback-Type", v, sizeof(v))) {
                        v[strcspn(v, " ;(")] = '\0';
                        nc_str_lower(v);
                        put_str(r->feedback_type, sizeof(r->feedback_type), v);
                }
                field_get(t->feedback, t->feedback_len, "User-Agent", r->user_agent,
                          sizeof(r->user_agent));
                if (field_get(t->feedback, t->feedback_len, "Original-Rcpt-To", v, sizeof(v)))
                        put_addr(r->recipient, sizeof(r->recipient), v, strlen(v));
        }
        if (!strcmp(r->feedback_type, "abuse") || !strcmp(r->feedback_type, "fraud")) {
                r->type = INBOUND_COMPLAINT;
        } else {
                r->type = INBOUND_IGNORED;
                if (r->feedback_type[0])
                        set_reason(r, "feedback type %s", r->feedback_type);
                else
                        set_reason(r, "feedback report without Feedback-Type");
        }
        tokens_find(x, m, r, t);
        tokens_apply(x, r);
}

/* ADDR is the unsubscribe address, or its local part DELIM a suffix (SUFFIX set to it). */
static int mailto_match(const struct ctx *x, const char *addr, const char **suffix)
{
        const char *u = x->c->unsubscribe_mailto, *uat, *at;
        size_t ul;

        *suffix = NULL;
        if (!u || !addr || !(uat = strrchr(u, '@')) || !(at = strrchr(addr, '@')) ||
            strcasecmp(uat, at) != 0)
                return 0;
        ul = (size_t)(uat - u);
        if ((size_t)(at - addr) < ul || strncasecmp(addr, u, ul) != 0)
                return 0;
        if (addr + ul == at)
                return 1;
        if (addr[ul] != x->c->verp_delim && addr[ul] != '+')
                return 0;
        *suffix = addr + ul + 1;
        return 1;
}

static void classify_mailto(struct ctx *x, GMimeMessage *m, inbound_t *r, const char *addr,
                            const char *suffix, const struct texts *t)
{
        r->kind = INBOUND_MAILTO;
        if (suffix) {
                size_t n = strcspn(suffix, "@");
                nc_verp_status_t st = NC_VERP_NONE;
                uint64_t ref;
                uint32_t mr;

                /* A VERP-style token of the unsubscribe address, or an unsubscribe token
                 * (if the relay kept its case). */
                if (n == NC_VERP_TOKEN_LEN)
                        st = nc_verp_parse(&x->keys, x->c->unsubscribe_mailto, suffix[-1], addr,
                                           &ref, &mr);
                if (st == NC_VERP_OK) {
                        x->verp = 1;
                        x->ref = ref;
                        x->msg_ref = mr;
                        x->verp_source = "address";
                } else if (st == NC_VERP_FORGED || st == NC_VERP_MALFORMED) {
                        x->verp_bad = 1;
                } else {
                        unsub_try(x, suffix, n, "address");
                }
        }
        unsub_in(x, g_mime_message_get_subject(m), "subject");
        for (size_t i = 0; i < t->ntext && !x->unsub; i++)
                unsub_in(x, t->text[i], "body");
        r->type = INBOUND_UNSUBSCRIBED;
        tokens_apply(x, r);
}

static int from_daemon(GMimeMessage *m)
{
        static const char *const daemons[] = {"mailer-daemon", "postmaster", "mail-daemon",
                                              "mailerdaemon"};
        char from[INBOUND_STR_SIZE];
        size_t at;

        first_addr(from, sizeof(from), hdr(m, "From"));
        at = strcspn(from, "@");
        for (size_t i = 0; i < sizeof(daemons) / sizeof(daemons[0]); i++)
                if (at == strlen(daemons[i]) && !strncasecmp(from, daemons[i], at))
                        return 1;
        return 0;
}

static int subject_has(GMimeMessage *m, const char *const *words, size_t n)
{
        const char *s = g_mime_message_get_subject(m);

        for (size_t i = 0; s && i < n; i++)
                if (strcasestr(s, words[i]))
                        return 1;
        return 0;
}

/* A non-delivery report that is not a multipart/report (an MTA's own format). */
static int bounce_like(GMimeMessage *m)
{
        static const char *const words[] = {
            "undeliverable",        "undelivered mail",    "delivery status notification",
            "delivery failure",     "failure notice",      "returned mail",
            "mail delivery failed", "delivery has failed", "non remis",
        };

        return from_daemon(m) || hdr(m, "X-Failed-Recipients") ||
               hdr(m, "X-MS-Exchange-Message-Is-Ndr") ||
               subject_has(m, words, sizeof(words) / sizeof(words[0]));
}

/* RFC 3834 and the headers and subjects auto-responders use instead. */
static int auto_reply(GMimeMessage *m)
{
        static const char *const words[] = {
            "out of office",       "automatic reply",     "auto-reply",      "autoreply",
            "auto reply",          "abwesenheit",         "respuesta autom", "resposta autom",
            "fuera de la oficina", "réponse automatique", "자동 응답",
        };
        const char *as = hdr(m, "Auto-Submitted"), *p = hdr(m, "Precedence");
        const char *s = g_mime_message_get_subject(m);

        return (as && strncasecmp(as, "no", 2) != 0) || hdr(m, "X-Autoreply") ||
               hdr(m, "X-Autorespond") || (p && strcasestr(p, "auto_reply")) ||
               (s && !strncasecmp(s, "auto:", 5)) ||
               subject_has(m, words, sizeof(words) / sizeof(words[0]));
}

static void classify_other(struct ctx *x, GMimeMessage *m, inbound_t *r, const struct texts *t)
{
        inbound_t probe;

        /* An MTA's own bounce format, or a report whose parts were flattened: DSN fields or an
         * SMTP reply in its text. */
        memset(&probe, 0, sizeof(probe));
        dsn_from_text(&probe, t);
        if (probe.status[0] && (probe.action[0] || bounce_like(m))) {
                classify_dsn(x, m, r, t);
                return;
        }
        r->kind = INBOUND_OTHER;
        r->type = INBOUND_IGNORED;
        set_reason(r, "%s", auto_reply(m) ? "auto-reply" : "not a report");
        tokens_find(x, m, r, t);
        tokens_apply(x, r);
}

/* ---- the whole message ------------------------------------------------------------------- */

static void quarantine(inbound_t *r, const char *reason)
{
        r->type = INBOUND_IGNORED;
        r->kind = INBOUND_OTHER;
        r->quarantine = 1;
        set_reason(r, "unparseable: %s", reason);
}

/* Past an mbox "From " line (pipe(8) flag F, procmail). */
static size_t skip_mbox_from(const char *d, size_t len)
{
        const char *nl;

        if (len < 5 || memcmp(d, "From ", 5) != 0 || !(nl = memchr(d, '\n', len)))
                return 0;
        return (size_t)(nl + 1 - d);
}

/* 1 if D starts with header fields (RFC 5322 §2.2: a name of printable ASCII, a colon,
 * continuation lines after the first) up to a blank line or the end, without NUL bytes. */
static int header_block_ok(const char *d, size_t len)
{
        struct fields it = {d, d + len};
        size_t n = 0;

        while (it.p < it.end) {
                size_t ll, i;
                const char *line = line_next(&it, &ll), *colon;

                if (ll == 0)
                        break;
                if (memchr(line, '\0', ll))
                        return 0;
                if (line[0] == ' ' || line[0] == '\t') {
                        if (!n)
                                return 0;
                        continue;
                }
                if (!(colon = memchr(line, ':', ll)) || colon == line)
                        return 0;
                for (i = 0; line + i < colon; i++)
                        if ((unsigned char)line[i] <= ' ' || (unsigned char)line[i] > '~')
                                return 0;
                n++;
        }
        return n > 0;
}

/* How many Content-Type fields open a multipart or message part, counted in the raw bytes
 * (folding allowed), before GMime is given them. */
static size_t containers(const char *d, size_t len)
{
        static const char ct[] = "content-type:";
        size_t n = 0;

        for (size_t i = 0; i + sizeof(ct) - 1 < len; i++) {
                size_t j;

                if ((d[i] | 0x20) != 'c' || strncasecmp(d + i, ct, sizeof(ct) - 1) != 0)
                        continue;
                j = i + sizeof(ct) - 1;
                while (j < len && strchr(" \t\r\n", d[j]) && d[j])
                        j++;
                if ((j + 10 <= len && !strncasecmp(d + j, "multipart/", 10)) ||
                    (j + 8 <= len && !strncasecmp(d + j, "message/", 8)))
                        n++;
        }
        return n;
}

void inbound_classify(const inbound_conf_t *c, const char *data, size_t len, inbound_t *r)
{
        struct ctx x;
        struct parts parts;
        struct texts t;
        GMimeStream *s;
        GMimeParser *p;
        GMimeMessage *m;
        GMimeObject *top;
        GMimeContentType *ct;
        const char *rt, *suffix, *mid;
        char to[INBOUND_STR_SIZE];
        size_t off;

        memset(r, 0, sizeof(*r));
        r->type = INBOUND_IGNORED;
        r->kind = INBOUND_OTHER;
        snprintf(r->id, sizeof(r->id), "%016" PRIx64,
                 nc_key_hash(data, len > INBOUND_MAX_BYTES ? INBOUND_MAX_BYTES : len));
        put_str(r->envelope_recipient, sizeof(r->envelope_recipient), c->envelope_recipient);
        if (len == 0) {
                quarantine(r, "empty input");
                return;
        }
        if (len > INBOUND_MAX_BYTES) {
                quarantine(r, "larger than 10 MiB");
                return;
        }
        off = skip_mbox_from(data, len);
        if (!header_block_ok(data + off, len - off)) {
                quarantine(r, "not an RFC 5322 message (no header fields)");
                return;
        }
        if (containers(data + off, len - off) > INBOUND_MAX_PARTS) {
                quarantine(r, "more than 64 multipart or message parts");
                return;
        }

        pthread_once(&gmime_once, gmime_init_once);
        s = g_mime_stream_mem_new_with_buffer(data + off, len - off);
        p = g_mime_parser_new_with_stream(s);
        g_object_unref(s);
        m = g_mime_parser_construct_message(p, NULL);
        g_object_unref(p);
        if (!m) {
                quarantine(r, "not an RFC 5322 message");
                return;
        }

        memset(&x, 0, sizeof(x));
        x.c = c;
        nc_verp_derive(c->secret, c->secret_len, &x.keys);
        if ((mid = g_mime_message_get_message_id(m)))
                put_str(r->report_message_id, sizeof(r->report_message_id), mid);
        /* Without the MTA's word, the headers local delivery adds, newest first. */
        if (!r->envelope_recipient[0]) {
                static const char *const names[] = {"Delivered-To", "X-Original-To", "Envelope-To"};

                for (size_t i = 0; i < 3 && !r->envelope_recipient[0]; i++)
                        first_addr(r->envelope_recipient, sizeof(r->envelope_recipient),
                                   hdr(m, names[i]));
        }
        first_addr(to, sizeof(to), hdr(m, "To"));
        x.envelope_source = "envelope";
        if (!r->envelope_recipient[0]) {
                put_str(r->envelope_recipient, sizeof(r->envelope_recipient), to);
                x.envelope_source = "to";
        }

        memset(&parts, 0, sizeof(parts));
        top = g_mime_message_get_mime_part(m);
        walk(top, &parts, 0);
        texts_read(&parts, &t);
        ct = top ? g_mime_object_get_content_type(top) : NULL;
        rt = ct_is(ct, "multipart", "report") ? g_mime_content_type_get_parameter(ct, "report-type")
                                              : NULL;
        if ((rt && !strcasecmp(rt, "delivery-status")) || (!rt && parts.status))
                classify_dsn(&x, m, r, &t);
        else if ((rt && !strcasecmp(rt, "feedback-report")) || parts.feedback)
                classify_arf(&x, m, r, &t);
        else if (mailto_match(&x, r->envelope_recipient, &suffix))
                classify_mailto(&x, m, r, r->envelope_recipient, suffix, &t);
        else if (mailto_match(&x, to, &suffix))
                classify_mailto(&x, m, r, to, suffix, &t);
        else
                classify_other(&x, m, r, &t);
        texts_free(&t);
        g_object_unref(m);
        OPENSSL_cleanse(&x, sizeof(x));
}

/* ---- the event --------------------------------------------------------------------------- */

static void jstr(json_t *o, const char *k, const char *v)
{
        if (v && *v)
                json_object_set_new(o, k, json_string(v));
}

json_t *inbound_event(const inbound_t *r, const char *time)
{
        json_t *o = json_object();
        char num[24];

        jstr(o, "type", inbound_type_name(r->type));
        jstr(o, "source", "inbound");
        jstr(o, "kind", inbound_kind_name(r->kind));
        jstr(o, "id", r->id);
        if (r->subscriber[0]) {
                jstr(o, "subscriber", r->subscriber);
                snprintf(num, sizeof(num), "%016" PRIx64, r->generation);
                jstr(o, "generation", num);
                if (r->token_expired)
                        json_object_set_new(o, "token_expired", json_true());
        }
        if (r->has_ref) {
                snprintf(num, sizeof(num), "%016" PRIx64, r->subscriber_ref);
                jstr(o, "subscriber_ref", num);
        }
        if (r->has_message_ref) {
                snprintf(num, sizeof(num), "%08" PRIx32, r->message_ref);
                jstr(o, "message_ref", num);
        }
        jstr(o, "token_source", r->token_source);
        jstr(o, "status", r->status);
        jstr(o, "action", r->action);
        jstr(o, "status_source", r->status_source);
        jstr(o, "diagnostic", r->diagnostic);
        jstr(o, "recipient", r->recipient);
        jstr(o, "remote_mta", r->remote_mta);
        jstr(o, "feedback_type", r->feedback_type);
        jstr(o, "user_agent", r->user_agent);
        jstr(o, "reason", r->reason);
        if (r->quarantine)
                json_object_set_new(o, "quarantined", json_true());
        jstr(o, "report_message_id", r->report_message_id);
        jstr(o, "envelope_recipient", r->envelope_recipient);
        jstr(o, "time", time);
        return o;
}

void inbound_key(const inbound_t *r, char *buf, size_t size)
{
        if (r->subscriber[0])
                snprintf(buf, size, "%s", r->subscriber);
        else if (r->has_ref)
                snprintf(buf, size, "ref:%016" PRIx64, r->subscriber_ref);
        else if (r->report_message_id[0])
                snprintf(buf, size, "%s", r->report_message_id);
        else
                snprintf(buf, size, "inbound:%s", r->id);
}
