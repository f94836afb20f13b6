#include "ml_mail.h"
#include "nc_sign.h"

#include <pthread.h>
#include <string.h>

#include <gmime/gmime.h>
#include <openssl/evp.h>

#include "nc_log.h"
#include "nc_util.h"

/* RFC 5322 §2.1.1: a line is at most 998 octets plus CRLF. */
#define LINE_MAX_OCTETS 998
/* Header values we take verbatim (URLs, ids) stay well inside one line even after
 * "List-Unsubscribe: " and the other URL; GMime folds only at blanks, and these have none. */
#define URL_MAX   900
#define ID_MAX    (ML_MAIL_MSGID_SIZE - 1) /* message id (32 hex @ domain) and list id */
#define NAME_MAX_ 400 /* display names and the List-Id phrase, before RFC 2047 */

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
        g_mime_init();
}

void ml_mail_global_init(void)
{
        pthread_once(&gmime_once, gmime_init_once);
}

static void skel_release(void);

void ml_mail_global_shutdown(void)
{
        skel_release();
        g_mime_shutdown();
}

void ml_mail_message_id(const char *subscriber_id, const char *what, const char *domain, char *out,
                        size_t size)
{
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_MD_CTX *ctx;
        size_t dlen = strlen(domain);
        int i, ok;

        if (size == 0)
                return;
        out[0] = '\0';
        if (size < 32 + 1 + dlen + 1)
                return;
        ctx = EVP_MD_CTX_new();
        ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, subscriber_id, strlen(subscriber_id)) &&
             EVP_DigestUpdate(ctx, "\n", 1) && EVP_DigestUpdate(ctx, what, strlen(what)) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= 16;
        EVP_MD_CTX_free(ctx);
        /* Only fails when libcrypto cannot allocate; like nc_xmalloc, that is fatal. */
        if (!ok)
                fatalx("message id: SHA-256 failed");
        for (i = 0; i < 16; i++) {
                out[2 * i] = hex[md[i] >> 4];
                out[2 * i + 1] = hex[md[i] & 0x0f];
        }
        out[32] = '@';
        memcpy(out + 33, domain, dlen + 1);
}

/* ---- validation ------------------------------------------------------------------------- */

/* RFC 5322 atext plus '.', i.e. what a dot-atom (message id halves, list id) is made of. */
static int is_atext(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c));
}

static int check_addr(const char *field, const char *s, char *errstr, size_t errstr_size)
{
        char err[256];

        if (!s)
                return nc_err(errstr, errstr_size, "%s: is missing", field);
        /* nc_email_valid refuses blanks, controls (CR, LF), non-ASCII and the specials
         * < > ( ) , ; : " [ ] \, and anything but exactly one '@'. */
        if (nc_email_valid(s, err, sizeof(err)) < 0)
                return nc_err(errstr, errstr_size, "%s: %s", field, err);
        return 0;
}

/* A dot-atom "left@right" (Message-ID) or "label.namespace" (List-Id). */
static int check_dot_atom(const char *field, const char *s, size_t len, int need_at, char *errstr,
                          size_t errstr_size)
{
        const char *at = NULL;
        size_t i;

        if (len == 0)
                return nc_err(errstr, errstr_size, "%s: is empty", field);
        if (len > ID_MAX)
                return nc_err(errstr, errstr_size, "%s: is longer than %d characters", field,
                              ID_MAX);
        for (i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];

                if (c == '@' && need_at && !at) {
                        at = s + i;
                        continue;
                }
                if (!is_atext(c))
                        return nc_err(errstr, errstr_size,
                                      "%s: contains a character not allowed here (0x%02x)", field,
                                      c);
        }
        if (need_at && (!at || at == s || at == s + len - 1))
                return nc_err(errstr, errstr_size, "%s: must look like left@right", field);
        if (!need_at && (s[0] == '.' || s[len - 1] == '.' || !memchr(s, '.', len)))
                return nc_err(errstr, errstr_size, "%s: must look like label.example.org", field);
        return 0;
}

/* A URL that goes between <> in List-Unsubscribe: printable ASCII without blanks, quotes and
 * angle brackets (RFC 3986 characters never need them), so it cannot end the header, close
 * the <...> early or be folded. */
static int check_url(const char *field, const char *s, char *errstr, size_t errstr_size)
{
        size_t len = strlen(s);

        if (len == 0)
                return nc_err(errstr, errstr_size, "%s: is empty", field);
        if (len > URL_MAX)
                return nc_err(errstr, errstr_size, "%s: is longer than %d characters", field,
                              URL_MAX);
        for (const char *p = s; *p; p++) {
                unsigned char c = (unsigned char)*p;

                if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\')
                        return nc_err(errstr, errstr_size,
                                      "%s: contains a character not allowed in a URL (0x%02x)",
                                      field, c);
        }
        return 0;
}

/* Length of the UTF-8 control character at P (C0, DEL, C1, U+2028/2029), or 0. */
static size_t control_len(const unsigned char *p)
{
        if (p[0] < 0x20 || p[0] == 0x7f)
                return 1;
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
                return 2;
        if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
                return 3;
        return 0;
}

/* One-line text for a header (subject, display names): every control character becomes a
 * space, so a CR/LF from a notice or subscriber can never start a header of its own; blanks
 * at both ends go.  GMime then RFC 2047-encodes and folds it.  Returns a malloc'd string, or
 * NULL with errstr set on invalid UTF-8 or an over-long value. */
static char *header_text(const char *field, const char *s, size_t max, char *errstr,
                         size_t errstr_size)
{
        size_t len = strlen(s), i, o = 0, n;
        int prev_ctl = 0;
        char *r;

        if (!nc_utf8_valid(s, len)) {
                nc_err(errstr, errstr_size, "%s: is not valid UTF-8", field);
                return NULL;
        }
        if (len > max) {
                nc_err(errstr, errstr_size, "%s: is longer than %zu bytes", field, max);
                return NULL;
        }
        r = nc_xmalloc(len + 1);
        for (i = 0; i < len; i += n) {
                n = control_len((const unsigned char *)s + i);
                if (n) {
                        /* A run of controls (CR LF) becomes one space. */
                        if (!prev_ctl)
                                r[o++] = ' ';
                        prev_ctl = 1;
                } else {
                        prev_ctl = 0;
                        r[o++] = s[i];
                        n = 1;
                }
        }
        r[o] = '\0';
        /* A control at either end leaves a blank there; inner blanks are the sender's. */
        nc_str_trim(r);
        return r;
}

/* A body in canonical form for GMime: valid UTF-8, line ends as LF (CRLF and lone CR become
 * LF; GMime writes every LF as CRLF), so no bare CR can reach the wire. */
static char *body_text(const char *field, const char *s, size_t *lenp, char *errstr,
                       size_t errstr_size)
{
        size_t len = strlen(s), i, o = 0;
        char *r;

        if (!nc_utf8_valid(s, len)) {
                nc_err(errstr, errstr_size, "%s: is not valid UTF-8", field);
                return NULL;
        }
        r = nc_xmalloc(len + 2);
        for (i = 0; i < len; i++) {
                if (s[i] == '\r') {
                        r[o++] = '\n';
                        if (s[i + 1] == '\n')
                                i++;
                } else {
                        r[o++] = s[i];
                }
        }
        /* End with a newline so the closing boundary starts on a line of its own. */
        if (o == 0 || r[o - 1] != '\n')
                r[o++] = '\n';
        r[o] = '\0';
        *lenp = o;
        return r;
}

/* ---- building --------------------------------------------------------------------------- */

/* RFC 2047 "B" encoding of all of TEXT (UTF-8), as folded header content: " =?UTF-8?B?...?="
 * words of at most 45 input bytes (cut on character boundaries), one per line, ending in a
 * newline — the form GMime keeps as a header's raw value.  Used when TEXT contains "=?": GMime
 * would pass such text through as if it were already encoded, and readers would decode it
 * (a subject could then show a CR LF, a name could pose as another address). */
static char *encode_words(const char *text)
{
        size_t len = strlen(text), i = 0, cap = len * 2 + 64;
        char *out = nc_xmalloc(cap), *o = out;

        while (i < len) {
                size_t n = len - i < 45 ? len - i : 45;
                char b64[80];

                while (n > 0 && i + n < len && ((unsigned char)text[i + n] & 0xc0) == 0x80)
                        n--; /* do not split a character */
                nc_base64_encode((const unsigned char *)text + i, n, b64, sizeof(b64));
                o += sprintf(o, "%s =?UTF-8?B?%s?=", i ? "\n" : "", b64);
                i += n;
        }
        sprintf(o, "\n");
        return out;
}

static void set_raw(GMimeMessage *msg, const char *name, const char *raw)
{
        GMimeHeader *h =
            g_mime_header_list_get_header(g_mime_object_get_header_list(GMIME_OBJECT(msg)), name);

        if (h)
                g_mime_header_set_raw_value(h, raw);
}

/* Replaces the display name of the (single) mailbox of header NAME by our own encoding when
 * it contains "=?" (see encode_words). */
static void fix_mailbox(GMimeMessage *msg, const char *name, const char *display, const char *addr)
{
        char b64[1024], *raw;
        size_t len;

        if (!display || !strstr(display, "=?"))
                return;
        /* One encoded word, unsplit (some readers put a blank between the words of a display
         * name), even for ASCII: a quoted string would do by the RFC, but common readers
         * (Python's email package among them) decode encoded-words inside quotes too. */
        len = strlen(display);
        if (len > 600 ||
            nc_base64_encode((const unsigned char *)display, len, b64, sizeof(b64)) < 0)
                return;
        raw = nc_xmalloc(strlen(b64) + strlen(addr) + 32);
        sprintf(raw, " =?UTF-8?B?%s?= <%s>\n", b64, addr);
        set_raw(msg, name, raw);
        free(raw);
}

static void add_mailbox(GMimeMessage *msg, GMimeAddressType type, const char *name,
                        const char *addr)
{
        InternetAddress *ia = internet_address_mailbox_new(name && *name ? name : NULL, addr);

        /* Encode non-ASCII names as UTF-8 too, not GMime's "best" (often ISO-8859-1). */
        internet_address_set_charset(ia, "utf-8");
        internet_address_list_add(g_mime_message_get_addresses(msg, type), ia);
        g_object_unref(ia);
}

/* Makes BODY[0..len) (copied) the unencoded content of PART. */
static void set_content(GMimePart *part, const char *body, size_t len)
{
        GMimeStream *stream = g_mime_stream_mem_new_with_buffer(body, len);
        GMimeDataWrapper *content =
            g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);

        g_mime_part_set_content(part, content);
        g_object_unref(content);
        g_object_unref(stream);
}

/* Makes BODY the UTF-8 content of the text part PART (charset=utf-8: see skel_get).  Not
 * g_mime_text_part_set_text(): that
 * converts the text to the smallest charset it fits (us-ascii, iso-8859-1) and labels it so;
 * we want charset=utf-8 on every part.  The transfer encoding is GMime's best for 7-bit
 * transport: 7bit for ASCII with lines of at most 998 octets, otherwise quoted-printable or
 * base64, both of which keep lines under 77 octets. */
static void fill_text(GMimePart *part, const char *body, size_t len)
{
        GMimeContentEncoding enc;

        set_content(GMIME_PART(part), body, len);
        enc =
            g_mime_part_get_best_content_encoding(GMIME_PART(part), GMIME_ENCODING_CONSTRAINT_7BIT);
        if (enc == GMIME_CONTENT_ENCODING_BASE64) {
                /* Inside base64 the line ends are part of the data, and text in canonical
                 * form has CRLF (RFC 2045 §6.8); GMime's newline filter only converts what it
                 * writes in the clear (7bit, quoted-printable). */
                size_t i, o = 0, n = 0;
                char *crlf;

                for (i = 0; i < len; i++)
                        n += body[i] == '\n';
                crlf = nc_xmalloc(len + n);
                for (i = 0; i < len; i++) {
                        if (body[i] == '\n')
                                crlf[o++] = '\r';
                        crlf[o++] = body[i];
                }
                set_content(GMIME_PART(part), crlf, o);
                free(crlf);
        }
        g_mime_part_set_content_encoding(GMIME_PART(part), enc);
}

/* GMime writes the message with LF line ends; this turns them into CRLF for the wire and is
 * the last line of defence on the way: no line over 998 octets, no CR (GMime writes none for
 * what we hand it), no NUL, and a final line end.  A failure here is a bug, and sending a
 * malformed message is worse than not sending it.  Returns the malloc'd wire form (NUL-
 * terminated) and its length, or NULL with errstr set. */
static char *to_wire(const char *buf, size_t len, size_t *outlen, char *errstr, size_t errstr_size)
{
        const char *p = buf, *end = buf + len, *nl;
        size_t lines = 0, line = 1;
        char *out, *o;

        /* CR and NUL are looked for in the whole buffer at once (they never occur); the
         * line of one found is worked out only then. */
        {
                const char *cr = memchr(buf, '\r', len), *nul = memchr(buf, '\0', len);
                const char *bad = cr && (!nul || cr < nul) ? cr : nul;

                if (bad) {
                        for (nl = buf; (nl = memchr(nl, '\n', (size_t)(bad - nl))); nl++)
                                line++;
                        nc_err(errstr, errstr_size,
                               bad == cr ? "message: line %zu has a bare CR or LF"
                                         : "message: line %zu has a NUL",
                               line);
                        return NULL;
                }
        }
        for (nl = p; (nl = memchr(nl, '\n', (size_t)(end - nl))); nl++)
                lines++;
        out = o = nc_xmalloc(len + lines + 1);
        for (; p < end; p = nl + 1, line++) {
                size_t n;

                if (!(nl = memchr(p, '\n', (size_t)(end - p)))) {
                        nc_err(errstr, errstr_size, "message: does not end with CRLF");
                        goto bad;
                }
                n = (size_t)(nl - p);
                if (n > LINE_MAX_OCTETS) {
                        nc_err(errstr, errstr_size, "message: line %zu is longer than %d octets",
                               line, LINE_MAX_OCTETS);
                        goto bad;
                }
                memcpy(o, p, n);
                o += n;
                *o++ = '\r';
                *o++ = '\n';
        }
        if (len == 0) {
                nc_err(errstr, errstr_size, "message: does not end with CRLF");
                goto bad;
        }
        *o = '\0';
        *outlen = (size_t)(o - out);
        return out;
bad:
        free(out);
        return NULL;
}

/* List-Id value: "phrase <label.namespace>" or a bare "label.namespace" (RFC 2919).
 * Returns a malloc'd value, the phrase with control characters replaced. */
static char *list_id_value(const char *s, char *errstr, size_t errstr_size)
{
        const char *lt = strchr(s, '<'), *gt;
        char *phrase, *r;
        size_t idlen;

        /* The list id is configuration, not user text: refuse controls rather than mend. */
        for (const char *p = s; *p; p++) {
                if (control_len((const unsigned char *)p)) {
                        nc_err(errstr, errstr_size,
                               "list_id: contains a control character (0x%02x)", (unsigned char)*p);
                        return NULL;
                }
        }
        if (!lt) {
                if (check_dot_atom("list_id", s, strlen(s), 0, errstr, errstr_size) < 0)
                        return NULL;
                r = nc_xmalloc(strlen(s) + 3);
                sprintf(r, "<%s>", s);
                return r;
        }
        gt = strchr(lt, '>');
        if (!gt || gt[1] != '\0') {
                nc_err(errstr, errstr_size, "list_id: must end with <label.example.org>");
                return NULL;
        }
        idlen = (size_t)(gt - lt - 1);
        if (check_dot_atom("list_id", lt + 1, idlen, 0, errstr, errstr_size) < 0)
                return NULL;
        {
                char *p = nc_xmalloc((size_t)(lt - s) + 1);

                memcpy(p, s, (size_t)(lt - s));
                p[lt - s] = '\0';
                phrase = header_text("list_id", p, NAME_MAX_, errstr, errstr_size);
                free(p);
        }
        if (!phrase)
                return NULL;
        /* The phrase may not smuggle in another <...> or a quote that GMime would pass on. */
        if (strpbrk(phrase, "<>\"\\")) {
                free(phrase);
                nc_err(errstr, errstr_size, "list_id: bad character before <...>");
                return NULL;
        }
        r = nc_xmalloc(strlen(phrase) + idlen + 4);
        sprintf(r, "%s%s<%.*s>", phrase, *phrase ? " " : "", (int)idlen, lt + 1);
        free(phrase);
        return r;
}

/* What ml_mail_build() and ml_mail_build_bodies() share: the checked, mended header values. */
struct hdrs {
        char *subject, *from_name, *to_name, *list_id;
        const char *mailto; /* into m->unsubscribe_mailto, without "mailto:" */
};

static void hdrs_free(struct hdrs *h)
{
        free(h->subject);
        free(h->from_name);
        free(h->to_name);
        free(h->list_id);
}

/* Everything is checked before GMime sees any of it. */
static int hdrs_prepare(const ml_mail_t *m, struct hdrs *h, char *errstr, size_t errstr_size)
{
        memset(h, 0, sizeof(*h));
        if (check_addr("from_addr", m->from_addr, errstr, errstr_size) < 0 ||
            check_addr("to_addr", m->to_addr, errstr, errstr_size) < 0)
                return -1;
        if (!m->message_id)
                return nc_err(errstr, errstr_size, "message_id: is missing");
        if (check_dot_atom("message_id", m->message_id, strlen(m->message_id), 1, errstr,
                           errstr_size) < 0)
                return -1;
        if (!m->list_id || !m->unsubscribe_https)
                return nc_err(errstr, errstr_size, "%s: is missing",
                              !m->list_id ? "list_id" : "unsubscribe_https");
        if (check_url("unsubscribe_https", m->unsubscribe_https, errstr, errstr_size) < 0)
                return -1;
        /* RFC 8058 one-click unsubscription needs an HTTPS URI.  Plain http is allowed only for
         * a loopback host, so a local demo or test can run without a certificate. */
        if ((strncasecmp(m->unsubscribe_https, "https://", 8) != 0 || !m->unsubscribe_https[8]) &&
            strncmp(m->unsubscribe_https, "http://127.0.0.1:", 17) &&
            strncmp(m->unsubscribe_https, "http://localhost:", 17))
                return nc_err(errstr, errstr_size, "unsubscribe_https: must be an https:// URL");
        if (m->unsubscribe_mailto && *m->unsubscribe_mailto) {
                size_t alen;
                char *addr;
                int bad;

                h->mailto = m->unsubscribe_mailto;
                if (!strncasecmp(h->mailto, "mailto:", 7))
                        h->mailto += 7;
                if (check_url("unsubscribe_mailto", h->mailto, errstr, errstr_size) < 0)
                        return -1;
                alen = strcspn(h->mailto, "?");
                addr = nc_xmalloc(alen + 1);
                memcpy(addr, h->mailto, alen);
                addr[alen] = '\0';
                bad = check_addr("unsubscribe_mailto", addr, errstr, errstr_size) < 0;
                free(addr);
                if (bad)
                        return -1;
        }
        if (!m->subject)
                return nc_err(errstr, errstr_size, "subject: is missing");
        if (!(h->subject = header_text("subject", m->subject, 4000, errstr, errstr_size)) ||
            !(h->from_name = header_text("from_name", m->from_name ? m->from_name : "", NAME_MAX_,
                                         errstr, errstr_size)) ||
            !(h->to_name = header_text("to_name", m->to_name ? m->to_name : "", NAME_MAX_, errstr,
                                       errstr_size)) ||
            !(h->list_id = list_id_value(m->list_id, errstr, errstr_size))) {
                hdrs_free(h);
                return -1;
        }
        return 0;
}

/* ---- one message object per thread --------------------------------------------------------
 *
 * Creating and destroying a GMimeMessage with its address lists, parts and headers costs more
 * than writing it, so each thread keeps one and only changes what differs between messages:
 * To, Subject, Date, Message-ID, List-Unsubscribe, the multipart boundary (a fresh random one
 * each time) and the parts' content.  From and List-Id are set when it is made; another From
 * or List-Id makes a new one. */
struct skel {
        GMimeMessage *msg;
        GMimeMultipart *alt;
        GMimePart *text, *html;
        char *from_name, *from_addr, *list_id;
        /* What the last message set, so that an unchanged Subject or Date is not formatted
         * again (most messages of a digest share them). */
        char *subject;
        int64_t date_s;
        size_t last_len; /* of the last message: the output buffer is sized for it */
        /* A part's prepared content (fill_pieces), or NULL: GMime gets only a marker for it
         * and assemble() puts the content in its place, instead of GMime copying it through
         * its newline filter. */
        GByteArray *body[2]; /* text, html */
};

/* What GMime writes as the content of a part whose content assemble() fills in: NUL never
 * occurs in a message (to_wire() refuses it), and it ends with a newline as the content does. */
static const char body_marker[2][16] = {"\0nc-body-text\0\n", "\0nc-body-html\0\n"};
#define BODY_MARKER_LEN 15

static void skel_body_clear(struct skel *k)
{
        for (int i = 0; i < 2; i++) {
                if (k->body[i])
                        g_byte_array_unref(k->body[i]);
                k->body[i] = NULL;
        }
}

static pthread_key_t skel_key;
static pthread_once_t skel_once = PTHREAD_ONCE_INIT;

static void skel_key_init(void);

static void skel_free(void *p)
{
        struct skel *k = p;

        if (!k)
                return;
        g_object_unref(k->msg);
        skel_body_clear(k);
        free(k->from_name);
        free(k->from_addr);
        free(k->list_id);
        free(k->subject);
        free(k);
}

/* The calling thread's message object (other threads release theirs when they exit). */
static void skel_release(void)
{
        pthread_once(&skel_once, skel_key_init);
        skel_free(pthread_getspecific(skel_key));
        pthread_setspecific(skel_key, NULL);
}

static void skel_key_init(void)
{
        if (pthread_key_create(&skel_key, skel_free) != 0)
                fatalx("pthread_key_create failed");
}

static GMimePart *skel_part(GMimeMultipart *alt, const char *subtype)
{
        GMimeTextPart *part = g_mime_text_part_new_with_subtype(subtype);

        g_mime_object_set_content_type_parameter(GMIME_OBJECT(part), "charset", "utf-8");
        g_mime_multipart_add(alt, GMIME_OBJECT(part));
        g_object_unref(part);
        return GMIME_PART(part);
}

static struct skel *skel_get(const ml_mail_t *m, const struct hdrs *h)
{
        struct skel *k;

        pthread_once(&skel_once, skel_key_init);
        k = pthread_getspecific(skel_key);
        if (k && !strcmp(k->from_name, h->from_name) && !strcmp(k->from_addr, m->from_addr) &&
            !strcmp(k->list_id, h->list_id))
                return k;
        skel_free(k);
        k = nc_xcalloc(1, sizeof(*k));
        k->from_name = nc_xstrdup(h->from_name);
        k->from_addr = nc_xstrdup(m->from_addr);
        k->list_id = nc_xstrdup(h->list_id);
        k->date_s = INT64_MIN;
        k->msg = g_mime_message_new(TRUE);
        add_mailbox(k->msg, GMIME_ADDRESS_TYPE_FROM, h->from_name, m->from_addr);
        add_mailbox(k->msg, GMIME_ADDRESS_TYPE_TO, NULL, m->to_addr);
        fix_mailbox(k->msg, "From", h->from_name, m->from_addr);
        /* The headers set per message exist from the start, so they keep this order. */
        g_mime_message_set_subject(k->msg, "-", "utf-8");
        g_mime_message_set_message_id(k->msg, "x@x");
        g_mime_object_set_header(GMIME_OBJECT(k->msg), "List-Id", h->list_id, "utf-8");
        g_mime_object_set_header(GMIME_OBJECT(k->msg), "List-Unsubscribe", "<x>", NULL);
        g_mime_object_set_header(GMIME_OBJECT(k->msg), "List-Unsubscribe-Post",
                                 "List-Unsubscribe=One-Click", NULL);
        g_mime_object_set_header(GMIME_OBJECT(k->msg), "Auto-Submitted", "auto-generated", NULL);
        g_mime_object_set_header(GMIME_OBJECT(k->msg), "Precedence", "bulk", NULL);
        /* Plain text first, HTML last: the last alternative is the preferred one. */
        k->alt = g_mime_multipart_new_with_subtype("alternative");
        k->text = skel_part(k->alt, "plain");
        k->html = skel_part(k->alt, "html");
        g_mime_message_set_mime_part(k->msg, GMIME_OBJECT(k->alt));
        g_object_unref(k->alt);
        pthread_setspecific(skel_key, k);
        return k;
}

/* GMime's output BUF with each marker replaced by its part's content, as GMime would have
 * written it (its newline filter turns CR LF into LF; the content normally has no CR at all).
 * Returns a malloc'd buffer, or NULL if a marker is not there (a bug). */
static char *splice_bodies(const struct skel *k, const char *buf, size_t len, size_t *outlen)
{
        size_t total = len, i;
        const char *p = buf, *end = buf + len, *at;
        char *out, *o;

        for (i = 0; i < 2; i++)
                if (k->body[i])
                        total += k->body[i]->len;
        out = o = nc_xmalloc(total + 1);
        for (i = 0; i < 2; i++) {
                const char *c;
                size_t clen;

                if (!k->body[i])
                        continue;
                at = memmem(p, (size_t)(end - p), body_marker[i], BODY_MARKER_LEN);
                if (!at) {
                        free(out);
                        return NULL;
                }
                memcpy(o, p, (size_t)(at - p));
                o += at - p;
                p = at + BODY_MARKER_LEN;
                c = (const char *)k->body[i]->data;
                clen = k->body[i]->len;
                if (!memchr(c, '\r', clen)) {
                        memcpy(o, c, clen);
                        o += clen;
                } else {
                        for (size_t j = 0; j < clen; j++)
                                if (!(c[j] == '\r' && j + 1 < clen && c[j + 1] == '\n'))
                                        *o++ = c[j];
                }
        }
        memcpy(o, p, (size_t)(end - p));
        o += end - p;
        *o = '\0';
        *outlen = (size_t)(o - out);
        return out;
}

/* The message around the parts of K (their content already set), written out with CRLF and
 * checked.  Returns the malloc'd message or NULL with errstr set. */
static char *assemble(const ml_mail_t *m, const struct hdrs *h, struct skel *k, size_t *lenp,
                      char *errstr, size_t errstr_size)
{
        GMimeMessage *msg = k->msg;
        GMimeFormatOptions *fo;
        GMimeStream *stream;
        GByteArray *bytes;
        GDateTime *date;
        char err[256], *out = NULL, *unsub, *raw;
        const char *mailto = h->mailto;

        date = g_date_time_new_from_unix_utc(m->date_ms / 1000);
        if (!date) {
                nc_err(errstr, errstr_size, "date_ms: %lld is out of range", (long long)m->date_ms);
                return NULL;
        }
        /* A new mailbox, not the old one changed: a raw value set by fix_mailbox() makes GMime
         * parse the header into new address objects, so the old one may be gone from the
         * list; changing the list makes GMime write the header again. */
        internet_address_list_clear(g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_TO));
        add_mailbox(msg, GMIME_ADDRESS_TYPE_TO, h->to_name, m->to_addr);
        fix_mailbox(msg, "To", h->to_name, m->to_addr);
        if (!k->subject || strcmp(k->subject, h->subject)) {
                g_mime_message_set_subject(msg, h->subject, "utf-8");
                if (strstr(h->subject, "=?")) {
                        raw = encode_words(h->subject);
                        set_raw(msg, "Subject", raw);
                        free(raw);
                }
                free(k->subject);
                k->subject = nc_xstrdup(h->subject);
        }
        if (k->date_s != m->date_ms / 1000) {
                g_mime_message_set_date(msg, date);
                k->date_s = m->date_ms / 1000;
        }
        g_date_time_unref(date);
        g_mime_message_set_message_id(msg, m->message_id);

        /* Readers take these URIs from the raw header and do not decode encoded-words there,
         * but GMime would encode an unfoldable URL: write it ourselves, folded only between
         * the two URIs (each is printable ASCII, checked above).  Only the raw value: the
         * header exists (skel_get), and GMime writes raw values. */
        unsub = nc_xmalloc(strlen(m->unsubscribe_https) + (mailto ? strlen(mailto) : 0) + 24);
        if (mailto)
                sprintf(unsub, " <%s>,\n <mailto:%s>\n", m->unsubscribe_https, mailto);
        else
                sprintf(unsub, " <%s>\n", m->unsubscribe_https);
        set_raw(msg, "List-Unsubscribe", unsub);
        free(unsub);
        /* A fresh random boundary for every message. */
        g_mime_multipart_set_boundary(k->alt, NULL);

        /* LF here; to_wire() makes them CRLF while it checks the lines (one pass instead of
         * GMime's newline filter and a check afterwards). */
        fo = g_mime_format_options_new();
        g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_UNIX);
        stream = g_mime_stream_mem_new_with_byte_array(
            g_byte_array_sized_new((guint)(k->last_len + 4096)));
        if (g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, stream) < 0) {
                nc_err(errstr, errstr_size, "message: GMime could not write it");
        } else {
                size_t outlen = 0;

                char *full = NULL;
                size_t fulllen = 0;

                bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(stream));
                k->last_len = bytes->len < (1u << 24) ? bytes->len : 0;
                if (k->body[0] || k->body[1]) {
                        full = splice_bodies(k, (const char *)bytes->data, bytes->len, &fulllen);
                        if (!full)
                                snprintf(err, sizeof(err), "message: a body marker is missing");
                }
                if (full || (!k->body[0] && !k->body[1]))
                        out = to_wire(full ? full : (const char *)bytes->data,
                                      full ? fulllen : bytes->len, &outlen, err, sizeof(err));
                free(full);
                if (!out)
                        nc_err(errstr, errstr_size, "%s", err);
                else if (lenp)
                        *lenp = outlen;
        }
        skel_body_clear(k);
        g_object_unref(stream);
        g_mime_format_options_free(fo);
        return out;
}

char *ml_mail_build(const ml_mail_t *m, size_t *lenp, char *errstr, size_t errstr_size)
{
        struct hdrs h;
        char *text = NULL, *html = NULL, *out = NULL;
        size_t text_len = 0, html_len = 0;

        if (hdrs_prepare(m, &h, errstr, errstr_size) < 0)
                return NULL;
        if (!m->text || !m->html) {
                nc_err(errstr, errstr_size, "%s: is missing", !m->text ? "text" : "html");
        } else if ((text = body_text("text", m->text, &text_len, errstr, errstr_size)) &&
                   (html = body_text("html", m->html, &html_len, errstr, errstr_size))) {
                struct skel *k = skel_get(m, &h);

                skel_body_clear(k);
                fill_text(k->text, text, text_len);
                fill_text(k->html, html, html_len);
                out = assemble(m, &h, k, lenp, errstr, errstr_size);
        }
        free(text);
        free(html);
        hdrs_free(&h);
        return out;
}

/* ---- prepared bodies -------------------------------------------------------------------- */

/* GMime's rule for text under a 7-bit constraint (GMimeFilterBest): base64 when 17 % or more
 * of the octets are 8-bit, else quoted-printable when there is any 8-bit octet or a line over
 * 998 octets, else 7bit. */
#define BASE64_SHARE 0.17

struct piece {
        char *raw;  /* canonical form (LF line ends), NUL-terminated */
        size_t len; /* of raw */
        char *qp;   /* raw quoted-printable encoded on its own by GMime: ends in "=\n"
                     * (soft break) or "\n", so pieces can follow each other */
        size_t qplen;
        size_t head; /* octets before the first LF (all of them if none) */
        size_t tail; /* octets after the last LF */
        size_t maxline;
        int has_nl;
        size_t high; /* 8-bit octets */
};

struct ml_mail_body {
        size_t nhole;
        struct piece *lit; /* nhole + 1 */
        unsigned *hole;    /* value index of each hole */
};

/* The quoted-printable form of P (once). */
static void piece_qp(struct piece *p)
{
        GMimeEncoding enc;

        if (p->qp || !p->len)
                return;
        g_mime_encoding_init_encode(&enc, GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
        p->qp = nc_xmalloc(g_mime_encoding_outlen(&enc, p->len) + 8);
        p->qplen = g_mime_encoding_flush(&enc, p->raw, p->len, p->qp);
}

/* Canonical form of S[0..len) (see body_text: CR LF and lone CR become LF) with its line
 * figures; the QP form only if WANT_QP. */
static void piece_make(struct piece *p, const char *s, size_t len, int want_qp)
{
        size_t i, o = 0, line = 0;

        memset(p, 0, sizeof(*p));
        p->raw = nc_xmalloc(len + 1);
        for (i = 0; i < len; i++) {
                char c = s[i];

                if (c == '\r') {
                        c = '\n';
                        if (i + 1 < len && s[i + 1] == '\n')
                                i++;
                }
                p->raw[o++] = c;
                if (c == '\n') {
                        if (!p->has_nl)
                                p->head = line;
                        p->has_nl = 1;
                        if (line > p->maxline)
                                p->maxline = line;
                        line = 0;
                } else {
                        line++;
                        p->high += (unsigned char)c >= 0x80;
                }
        }
        p->raw[o] = '\0';
        p->len = o;
        if (!p->has_nl)
                p->head = line;
        p->tail = line;
        if (line > p->maxline)
                p->maxline = line;
        if (want_qp)
                piece_qp(p);
}

static void piece_free(struct piece *p)
{
        free(p->raw);
        free(p->qp);
}

ml_mail_body_t *ml_mail_body_new(const char *const *lit, const size_t *len, const unsigned *hole,
                                 size_t nhole, char *errstr, size_t errstr_size)
{
        ml_mail_body_t *b;
        size_t i;

        for (i = 0; i <= nhole; i++) {
                if (!nc_utf8_valid(lit[i], len[i]) || memchr(lit[i], '\0', len[i])) {
                        nc_err(errstr, errstr_size, "body: is not valid UTF-8");
                        return NULL;
                }
                /* A CR at the end of a piece could pair with an LF at the start of the next
                 * one in body_text() but not here. */
                if (i < nhole && len[i] > 0 && lit[i][len[i] - 1] == '\r') {
                        nc_err(errstr, errstr_size, "body: a piece ends with CR");
                        return NULL;
                }
        }
        b = nc_xcalloc(1, sizeof(*b));
        b->nhole = nhole;
        b->lit = nc_xcalloc(nhole + 1, sizeof(*b->lit));
        b->hole = nc_xcalloc(nhole + 1, sizeof(*b->hole));
        for (i = 0; i <= nhole; i++)
                piece_make(&b->lit[i], lit[i], len[i], 1);
        if (nhole)
                memcpy(b->hole, hole, nhole * sizeof(*hole));
        return b;
}

void ml_mail_body_free(ml_mail_body_t *b)
{
        if (!b)
                return;
        for (size_t i = 0; i <= b->nhole; i++)
                piece_free(&b->lit[i]);
        free(b->lit);
        free(b->hole);
        free(b);
}

/* Makes body B with the values VAL (pieces made of vals[], VALN of them) the content of
 * PART; -1 with errstr set.  The transfer encoding is chosen from the line figures of the
 * pieces, as GMime would for the whole text: 7bit and quoted-printable content is put
 * together from the pieces (each encoded once, by GMime, when B was made) and given to GMime
 * already encoded; base64 (mostly non-Latin text) goes through fill_text(). */
static int fill_pieces(GMimePart *part, struct skel *sk, int which, const ml_mail_body_t *b,
                       struct piece *val, size_t valn, char *errstr, size_t errstr_size)
{
        GByteArray **slot = &sk->body[which];
        size_t i, total = 0, high = 0, maxline = 0, cur = 0;
        const struct piece *last = NULL;
        GMimeContentEncoding enc;
        GByteArray *ba;
        GMimeStream *stream;
        GMimeDataWrapper *content;
        int end_nl;

        for (i = 0; i <= b->nhole; i++) {
                const struct piece *ps[2] = {&b->lit[i], NULL};

                if (i < b->nhole) {
                        if (b->hole[i] >= valn)
                                return nc_err(errstr, errstr_size, "body: hole %u has no value",
                                              b->hole[i]);
                        ps[1] = &val[b->hole[i]];
                }
                for (int k = 0; k < 2 && ps[k]; k++) {
                        const struct piece *p = ps[k];

                        if (!p->len)
                                continue;
                        total += p->len;
                        high += p->high;
                        if (p->has_nl) {
                                if (cur + p->head > maxline)
                                        maxline = cur + p->head;
                                if (p->maxline > maxline)
                                        maxline = p->maxline;
                                cur = p->tail;
                        } else {
                                cur += p->len;
                        }
                        last = p;
                }
        }
        if (cur > maxline)
                maxline = cur;
        end_nl = last && last->raw[last->len - 1] == '\n';
        if (high && (double)high >= (double)(total + !end_nl) * BASE64_SHARE) {
                /* The whole text, once, for GMime to encode. */
                char *s = nc_xmalloc(total + 2), *o = s;

                for (i = 0; i <= b->nhole; i++) {
                        memcpy(o, b->lit[i].raw, b->lit[i].len);
                        o += b->lit[i].len;
                        if (i < b->nhole) {
                                memcpy(o, val[b->hole[i]].raw, val[b->hole[i]].len);
                                o += val[b->hole[i]].len;
                        }
                }
                if (!end_nl)
                        *o++ = '\n';
                *o = '\0';
                if (*slot)
                        g_byte_array_unref(*slot);
                *slot = NULL;
                fill_text(part, s, (size_t)(o - s));
                free(s);
                return 0;
        }
        enc = high || maxline > LINE_MAX_OCTETS ? GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
                                                : GMIME_CONTENT_ENCODING_7BIT;
        ba = g_byte_array_sized_new(
            (guint)(enc == GMIME_CONTENT_ENCODING_7BIT ? total + 1 : total * 3 + 64));
        for (i = 0; i <= b->nhole; i++) {
                const struct piece *ps[2] = {&b->lit[i], i < b->nhole ? &val[b->hole[i]] : NULL};

                for (int k = 0; k < 2 && ps[k]; k++) {
                        const struct piece *p = ps[k];

                        if (!p->len)
                                continue;
                        if (enc == GMIME_CONTENT_ENCODING_7BIT) {
                                g_byte_array_append(ba, (const guint8 *)p->raw, (guint)p->len);
                        } else {
                                if (k == 1) /* a value: encoded only when needed */
                                        piece_qp(&val[b->hole[i]]);
                                g_byte_array_append(ba, (const guint8 *)p->qp, (guint)p->qplen);
                        }
                }
        }
        /* End with a newline so the closing boundary starts on a line of its own (after a
         * soft line break, this adds the final newline body_text() adds). */
        if (!end_nl)
                g_byte_array_append(ba, (const guint8 *)"\n", 1);
        /* GMime writes a marker; assemble() puts BA in its place. */
        if (*slot)
                g_byte_array_unref(*slot);
        *slot = ba;
        stream = g_mime_stream_mem_new_with_buffer(body_marker[which], BODY_MARKER_LEN);
        content = g_mime_data_wrapper_new_with_stream(stream, enc);
        g_mime_part_set_content(part, content);
        g_object_unref(content);
        g_object_unref(stream);
        g_mime_part_set_content_encoding(part, enc);
        return 0;
}

char *ml_mail_build_bodies(const ml_mail_t *m, const ml_mail_body_t *text,
                           const ml_mail_body_t *html, const char *const *vals, size_t nvals,
                           size_t *lenp, char *errstr, size_t errstr_size)
{
        struct piece val[ML_MAIL_MAX_VALUES];
        struct skel *k;
        char *out = NULL;
        struct hdrs h;
        size_t i, n = 0;

        if (!text || !html) {
                nc_err(errstr, errstr_size, "%s: is missing", !text ? "text" : "html");
                return NULL;
        }
        if (nvals > ML_MAIL_MAX_VALUES) {
                nc_err(errstr, errstr_size, "body: more than %d values", ML_MAIL_MAX_VALUES);
                return NULL;
        }
        if (hdrs_prepare(m, &h, errstr, errstr_size) < 0)
                return NULL;
        for (n = 0; n < nvals; n++) {
                const char *v = vals[n] ? vals[n] : "";
                size_t vlen = strlen(v);

                if (!nc_utf8_valid(v, vlen)) {
                        nc_err(errstr, errstr_size, "body: value %zu is not valid UTF-8", n);
                        goto done;
                }
                /* Values are pieces too (normally a name or a URL). */
                piece_make(&val[n], v, vlen, 0);
        }
        /* body_text() would join a CR ending a value with an LF starting the next piece. */
        for (i = 0; i < n; i++) {
                if (val[i].len && vals[i][strlen(vals[i]) - 1] == '\r') {
                        nc_err(errstr, errstr_size, "body: value %zu ends with CR", i);
                        goto done;
                }
        }
        k = skel_get(m, &h);
        if (fill_pieces(k->text, k, 0, text, val, n, errstr, errstr_size) == 0 &&
            fill_pieces(k->html, k, 1, html, val, n, errstr, errstr_size) == 0)
                out = assemble(m, &h, k, lenp, errstr, errstr_size);
done:
        for (i = 0; i < n; i++)
                piece_free(&val[i]);
        hdrs_free(&h);
        return out;
}
