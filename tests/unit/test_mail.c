/* Unit tests for ml_mail: messages built with GMime are parsed back with GMime's own parser
 * and checked for structure, charsets, RFC 2047 headers, CRLF and line lengths, and for
 * header injection from notice or subscriber text. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "../../consumer/mailer/ml_mail.h"

static const char KO[] = "대한민국 전자정부";
static const char ES[] = "Perú: delegación";
static const char PT[] = "São Paulo: cooperação";

static const char TEXT_ES[] =
    "Del 12 al 20 de junio, el Ministerio del Interior envió una delegación a Perú.\n"
    "\n"
    "Segundo párrafo: la delegación firmó un memorando de entendimiento en Lima, con una "
    "línea bastante larga para que la codificación tenga que partirla.\n";
static const char HTML_ES[] = "<!DOCTYPE html>\n<html lang=\"es\"><body><h1>Perú: "
                              "delegación</h1><p>Segundo párrafo</p></body></html>\n";

/* A valid message; tests change one field at a time. */
static ml_mail_t base_mail(void)
{
        ml_mail_t m = {
            .from_name = "Ministério do Interior",
            .from_addr = "notices@example.gov",
            .to_name = "김민준",
            .to_addr = "kim@example.org",
            .subject = ES,
            .text = TEXT_ES,
            .html = HTML_ES,
            .message_id = "d5bca0f6efe7283aad690ecf891b5f58@example.gov",
            .date_ms = 1497916800123LL, /* 2017-06-20T00:00:00.123Z */
            .list_id = "Notices <notices.example.gov>",
            .unsubscribe_https = "https://example.gov/unsubscribe?t=abc123&l=es",
            .unsubscribe_mailto = "unsubscribe@example.gov?subject=unsubscribe%20abc123",
        };
        return m;
}

/* Every line ends with CRLF, has at most 998 octets, and the message is 7-bit ASCII (bodies
 * are quoted-printable or base64 when they are not, headers RFC 2047 encoded). */
static void check_wire(const char *buf, size_t len)
{
        size_t i, start = 0;

        assert_int_equal(strlen(buf), len);
        for (i = 0; i < len; i++) {
                unsigned char c = (unsigned char)buf[i];

                assert_true(c < 0x80);
                if (c == '\r') {
                        assert_true(i + 1 < len && buf[i + 1] == '\n');
                        assert_true(i - start <= 998);
                        i++;
                        start = i + 1;
                } else {
                        assert_true(c != '\n');
                }
        }
        assert_int_equal(start, len); /* the last line ends with CRLF too */
}

static char *build_ok(const ml_mail_t *m, size_t *len)
{
        char err[256] = "";
        char *out = ml_mail_build(m, len, err, sizeof(err));

        if (!out)
                fail_msg("ml_mail_build: %s", err);
        check_wire(out, *len);
        return out;
}

static void build_fails(const ml_mail_t *m, const char *field)
{
        char err[256] = "";
        size_t len = 0;
        char *out = ml_mail_build(m, &len, err, sizeof(err));

        if (out) {
                print_error("expected an error naming '%s', got a message:\n%s\n", field, out);
                free(out);
                fail();
        }
        if (strncmp(err, field, strlen(field)) != 0 || err[strlen(field)] != ':')
                fail_msg("error '%s' does not start with '%s:'", err, field);
}

static GMimeMessage *parse(const char *buf, size_t len)
{
        GMimeStream *stream = g_mime_stream_mem_new_with_buffer(buf, len);
        GMimeParser *parser = g_mime_parser_new_with_stream(stream);
        GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);

        g_object_unref(parser);
        g_object_unref(stream);
        assert_non_null(msg);
        return msg;
}

/* The header block (up to the first empty line), as a NUL-terminated copy. */
static char *header_block(const char *buf)
{
        const char *end = strstr(buf, "\r\n\r\n");

        assert_non_null(end);
        return strndup(buf, (size_t)(end - buf) + 2);
}

/* Number of header fields named NAME (unfolded lines starting with "NAME:"). */
static int count_headers(const char *buf, const char *name)
{
        char *h = header_block(buf), *line = h;
        size_t n = strlen(name);
        int count = 0;

        while (*line) {
                char *eol = strstr(line, "\r\n");

                if (!strncasecmp(line, name, n) && line[n] == ':')
                        count++;
                line = eol + 2;
        }
        free(h);
        return count;
}

static char *strip_cr(char *s)
{
        char *r = s, *w = s;

        for (; *r; r++)
                if (*r != '\r')
                        *w++ = *r;
        *w = '\0';
        return s;
}

/* The display name, with runs of white space as one space: GMime folds long names by
 * turning a space into CRLF TAB, and its address parser (3.2.13) hands the name back without
 * unfolding it.  In a phrase all white space runs mean the same (RFC 5322 §3.2.2). */
static const char *mailbox_name(GMimeMessage *msg, GMimeAddressType type)
{
        static char buf[4096];
        InternetAddressList *l = g_mime_message_get_addresses(msg, type);
        const char *name;
        size_t o = 0;

        assert_int_equal(internet_address_list_length(l), 1);
        name = internet_address_get_name(internet_address_list_get_address(l, 0));
        if (!name)
                return NULL;
        for (; *name && o + 1 < sizeof(buf); name++) {
                if (strchr(" \t\r\n", *name)) {
                        if (o == 0 || buf[o - 1] != ' ')
                                buf[o++] = ' ';
                } else {
                        buf[o++] = *name;
                }
        }
        buf[o] = '\0';
        return buf;
}

/* Decodes an unstructured header value one encoded-word at a time.  GMime 3.2.13's decoder
 * joins adjacent base64 words before decoding and stops at the first one that ends in '='
 * padding (jstedfast/gmime#133, fixed upstream), so a long Korean subject would come back cut
 * short even though GMime encoded it correctly.  Decoding each word on its own also checks
 * what RFC 2047 §5 requires: every word holds whole characters.  White space between two
 * encoded words is dropped, as the RFC says. */
static char *decode_words(const char *raw)
{
        GString *out = g_string_new(NULL);
        const char *p = raw;
        int prev_word = 0;

        while (*p) {
                size_t ws = strspn(p, " \t\r\n"), n;
                const char *tok = p + ws;
                char *t, *d;
                int word;

                if (!*tok)
                        break;
                if (*tok == '"') {
                        /* A quoted-string (names with specials such as ':'): literal text. */
                        GString *q = g_string_new(NULL);

                        for (n = 1; tok[n] && tok[n] != '"'; n++) {
                                if (tok[n] == '\\' && tok[n + 1])
                                        n++;
                                g_string_append_c(q, tok[n]);
                        }
                        n += tok[n] == '"';
                        d = g_string_free(q, FALSE);
                        word = 0;
                } else {
                        n = strcspn(tok, " \t\r\n");
                        t = g_strndup(tok, n);
                        word = !strncmp(t, "=?", 2) && n > 4 && !strcmp(t + n - 2, "?=");
                        d = word ? g_mime_utils_header_decode_text(NULL, t) : g_strdup(t);
                        g_free(t);
                }
                if (word)
                        assert_true(g_utf8_validate(d, -1, NULL));
                if (out->len && !(word && prev_word))
                        g_string_append_c(out, ' ');
                g_string_append(out, d);
                g_free(d);
                prev_word = word;
                p = tok + n;
        }
        return g_string_free(out, FALSE);
}

static const char *mailbox_addr(GMimeMessage *msg, GMimeAddressType type)
{
        InternetAddressList *l = g_mime_message_get_addresses(msg, type);

        assert_int_equal(internet_address_list_length(l), 1);
        return internet_address_mailbox_get_addr(
            INTERNET_ADDRESS_MAILBOX(internet_address_list_get_address(l, 0)));
}

/* Checks one alternative: type, charset=utf-8 and the decoded UTF-8 text. */
static void check_part(GMimeObject *obj, const char *subtype, const char *expected)
{
        GMimeContentType *ct = g_mime_object_get_content_type(obj);
        char *text;

        assert_true(g_mime_content_type_is_type(ct, "text", subtype));
        assert_string_equal(g_mime_content_type_get_parameter(ct, "charset"), "utf-8");
        assert_true(GMIME_IS_TEXT_PART(obj));
        text = g_mime_text_part_get_text(GMIME_TEXT_PART(obj));
        assert_non_null(text);
        assert_string_equal(strip_cr(text), expected);
        g_free(text);
}

/* The display name of the one mailbox in header NAME, decoded word by word (see
 * decode_words) from the raw header: "=?UTF-8?b?...?= =?UTF-8?b?...?= <addr>". */
static char *raw_mailbox_name(GMimeMessage *msg, const char *name)
{
        const char *raw = g_mime_header_get_raw_value(
            g_mime_header_list_get_header(g_mime_object_get_header_list(GMIME_OBJECT(msg)), name));
        const char *lt;
        char *phrase, *r;

        assert_non_null(raw);
        lt = strrchr(raw, '<');
        assert_non_null(lt);
        phrase = g_strndup(raw, (size_t)(lt - raw));
        r = decode_words(phrase);
        g_free(phrase);
        return r;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_structure(void **state)
{
        ml_mail_t m = base_mail();
        GMimeMessage *msg;
        GMimeMultipart *mp;
        GMimeObject *root;
        GDateTime *date;
        size_t len;
        char *out;

        (void)state;
        out = build_ok(&m, &len);
        msg = parse(out, len);

        root = g_mime_message_get_mime_part(msg);
        assert_true(GMIME_IS_MULTIPART(root));
        assert_true(g_mime_content_type_is_type(g_mime_object_get_content_type(root), "multipart",
                                                "alternative"));
        mp = GMIME_MULTIPART(root);
        assert_int_equal(g_mime_multipart_get_count(mp), 2);
        check_part(g_mime_multipart_get_part(mp, 0), "plain", TEXT_ES); /* text first */
        check_part(g_mime_multipart_get_part(mp, 1), "html", HTML_ES);

        assert_string_equal(g_mime_message_get_subject(msg), ES);
        assert_string_equal(mailbox_name(msg, GMIME_ADDRESS_TYPE_FROM), "Ministério do Interior");
        assert_string_equal(mailbox_addr(msg, GMIME_ADDRESS_TYPE_FROM), "notices@example.gov");
        assert_string_equal(mailbox_name(msg, GMIME_ADDRESS_TYPE_TO), "김민준");
        assert_string_equal(mailbox_addr(msg, GMIME_ADDRESS_TYPE_TO), "kim@example.org");
        assert_string_equal(g_mime_message_get_message_id(msg),
                            "d5bca0f6efe7283aad690ecf891b5f58@example.gov");
        date = g_mime_message_get_date(msg);
        assert_non_null(date);
        assert_int_equal(g_date_time_to_unix(date), 1497916800);

        /* The list headers, verbatim. */
        assert_non_null(strstr(out, "\r\nList-Id: Notices <notices.example.gov>\r\n"));
        assert_non_null(strstr(out, "\r\nList-Unsubscribe: "
                                    "<https://example.gov/unsubscribe?t=abc123&l=es>,"));
        assert_non_null(strstr(out, "<mailto:unsubscribe@example.gov?subject=unsubscribe%20abc123>"
                                    "\r\n"));
        assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(msg), "List-Unsubscribe-Post"),
                            "List-Unsubscribe=One-Click");
        assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(msg), "Auto-Submitted"),
                            "auto-generated");
        assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(msg), "Precedence"), "bulk");
        assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(msg), "MIME-Version"), "1.0");
        /* Each of them exactly once. */
        const char *once[] = {"From",
                              "To",
                              "Subject",
                              "Date",
                              "Message-ID",
                              "MIME-Version",
                              "List-Id",
                              "List-Unsubscribe",
                              "List-Unsubscribe-Post",
                              "Auto-Submitted",
                              "Precedence",
                              "Content-Type"};
        for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++)
                if (count_headers(out, once[i]) != 1)
                        fail_msg("header %s appears %d times", once[i],
                                 count_headers(out, once[i]));

        g_object_unref(msg);
        free(out);
}

/* Each thread reuses one message object (ml_mail.c, skel_get): whatever one message set must
 * not leak into the next one (To after an encoded-word name, Subject, Message-ID, Date,
 * List-Unsubscribe with and without mailto, From and List-Id when they change, the bodies). */
static void test_consecutive(void **state)
{
        static const char *const names[] = {
            "=?utf-8?q?x?= Ana", "Bob", NULL, "김민준", "Ana", "Ana", "=?b?= Zoë"};
        static const char *const subjects[] = {"=?x?= s", "plain", ES, KO, "y", "y", PT};
        static const char *const texts[] = {TEXT_ES, "ascii only\n", "대한민국 전자정부\n", "x\n",
                                            TEXT_ES, "second\n",     "전자정부\n"};

        (void)state;
        for (int i = 0; i < 7; i++) {
                ml_mail_t m = base_mail();
                char msgid[64], addr[64], url[128], from[64];
                GMimeMessage *msg;
                GMimeMultipart *mp;
                size_t len;
                char *out;

                snprintf(msgid, sizeof(msgid), "%032d@example.gov", i);
                snprintf(addr, sizeof(addr), "user%d@example.org", i);
                snprintf(url, sizeof(url), "https://example.gov/unsubscribe?t=tok%d", i);
                snprintf(from, sizeof(from), "%s %d", i >= 5 ? "=?Other?=" : "Ministry", i / 5);
                m.from_name = from;
                m.list_id = i == 6 ? "Other <other.example.gov>" : "Notices <notices.example.gov>";
                m.to_name = names[i];
                m.to_addr = addr;
                m.subject = subjects[i];
                m.message_id = msgid;
                m.date_ms = 1497916800000LL + i * 86400000LL;
                m.unsubscribe_https = url;
                m.unsubscribe_mailto = i % 2 ? NULL : "unsubscribe@example.gov";
                m.text = texts[i];
                out = build_ok(&m, &len);
                msg = parse(out, len);
                assert_string_equal(mailbox_addr(msg, GMIME_ADDRESS_TYPE_TO), addr);
                if (names[i])
                        assert_string_equal(mailbox_name(msg, GMIME_ADDRESS_TYPE_TO), names[i]);
                else
                        assert_true(!mailbox_name(msg, GMIME_ADDRESS_TYPE_TO) ||
                                    !*mailbox_name(msg, GMIME_ADDRESS_TYPE_TO));
                assert_string_equal(mailbox_name(msg, GMIME_ADDRESS_TYPE_FROM), from);
                assert_string_equal(g_mime_message_get_subject(msg), subjects[i]);
                assert_string_equal(g_mime_message_get_message_id(msg), msgid);
                assert_int_equal(g_date_time_to_unix(g_mime_message_get_date(msg)),
                                 1497916800LL + i * 86400LL);
                assert_non_null(strstr(out, url));
                assert_true((strstr(out, "<mailto:unsubscribe@example.gov>") != NULL) == !(i % 2));
                assert_non_null(strstr(out, i == 6 ? "List-Id: Other <other.example.gov>\r\n"
                                                   : "List-Id: Notices <notices.example.gov>\r\n"));
                mp = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
                check_part(g_mime_multipart_get_part(mp, 0), "plain", texts[i]);
                check_part(g_mime_multipart_get_part(mp, 1), "html", HTML_ES);
                for (const char *const *h =
                         (const char *const[]){"From", "To", "Subject", "Message-ID", "List-Id",
                                               "List-Unsubscribe", NULL};
                     *h; h++)
                        if (count_headers(out, *h) != 1)
                                fail_msg("message %d: header %s appears %d times", i, *h,
                                         count_headers(out, *h));
                g_object_unref(msg);
                free(out);
        }
}

/* Korean, Spanish and Portuguese subjects and names survive RFC 2047, as UTF-8. */
static void test_rfc2047(void **state)
{
        const char *texts[] = {KO, ES, PT, "Ünïcødé ✓ 😀 mixed ASCII and 한국어 words",
                               "행정안전부 전자정부 대표단, 페루·브라질 방문: 협력 센터 설립 "
                               "양해각서 체결"};
        const size_t n = sizeof(texts) / sizeof(texts[0]);
        size_t i;

        (void)state;
        for (i = 0; i < n; i++) {
                ml_mail_t m = base_mail();
                GMimeMessage *msg;
                char *out, *h, *d;
                size_t len;

                m.subject = texts[i];
                m.from_name = texts[(i + 1) % n];
                m.to_name = texts[(i + 2) % n];
                out = build_ok(&m, &len);
                h = header_block(out);
                /* Encoded as UTF-8, never as GMime's "best" ISO-8859-1. */
                assert_null(strcasestr(h, "iso-8859"));
                assert_non_null(strcasestr(h, "=?utf-8?"));
                free(h);
                msg = parse(out, len);
                d = decode_words(g_mime_header_get_raw_value(g_mime_header_list_get_header(
                    g_mime_object_get_header_list(GMIME_OBJECT(msg)), "Subject")));
                assert_string_equal(d, texts[i]);
                g_free(d);
                /* The short ones are one encoded word: GMime's own getter works too. */
                if (strlen(texts[i]) < 40)
                        assert_string_equal(g_mime_message_get_subject(msg), texts[i]);
                d = raw_mailbox_name(msg, "From");
                assert_string_equal(d, texts[(i + 1) % n]);
                g_free(d);
                d = raw_mailbox_name(msg, "To");
                assert_string_equal(d, texts[(i + 2) % n]);
                g_free(d);
                if (strlen(texts[(i + 2) % n]) < 40)
                        assert_string_equal(mailbox_name(msg, GMIME_ADDRESS_TYPE_TO),
                                            texts[(i + 2) % n]);
                g_object_unref(msg);
                free(out);
        }
}

/* Korean bodies (base64 territory) and pure-ASCII bodies (which GMime would label us-ascii)
 * are both declared and decoded as UTF-8. */
static void test_charsets(void **state)
{
        static const char ko_text[] = "대한민국 전자정부 대표단이 페루를 방문했습니다.\n\n"
                                      "둘째 문단입니다.\n";
        static const char ko_html[] = "<p lang=\"ko\">대한민국 전자정부</p>\n";
        static const char ascii[] = "Plain ASCII only.\n";
        ml_mail_t m = base_mail();
        GMimeMessage *msg;
        GMimeMultipart *mp;
        size_t len;
        char *out;

        (void)state;
        m.subject = KO;
        m.text = ko_text;
        m.html = ko_html;
        out = build_ok(&m, &len);
        msg = parse(out, len);
        mp = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
        check_part(g_mime_multipart_get_part(mp, 0), "plain", ko_text);
        check_part(g_mime_multipart_get_part(mp, 1), "html", ko_html);
        g_object_unref(msg);
        free(out);

        m = base_mail();
        m.subject = "ASCII";
        m.text = ascii;
        m.html = "<p>ASCII</p>"; /* no final newline: one is added */
        out = build_ok(&m, &len);
        assert_null(strcasestr(out, "us-ascii"));
        msg = parse(out, len);
        mp = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
        check_part(g_mime_multipart_get_part(mp, 0), "plain", ascii);
        check_part(g_mime_multipart_get_part(mp, 1), "html", "<p>ASCII</p>\n");
        g_object_unref(msg);
        free(out);

        /* CRLF and lone CR in a body become line breaks, never bare CRs on the wire. */
        m.text = "one\r\ntwo\rthree\n";
        out = build_ok(&m, &len);
        msg = parse(out, len);
        mp = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
        check_part(g_mime_multipart_get_part(mp, 0), "plain", "one\ntwo\nthree\n");
        g_object_unref(msg);
        free(out);
}

/* Control characters in the subject and display names never start a header. */
static void test_injection_text(void **state)
{
        static const struct {
                const char *in, *subject;
        } cases[] = {
            {"Hi\r\nBcc: evil@example.org", "Hi Bcc: evil@example.org"},
            {"Hi\nBcc: evil@example.org", "Hi Bcc: evil@example.org"},
            {"Hi\rBcc: evil@example.org", "Hi Bcc: evil@example.org"},
            {"Hi\r\n\r\nBcc: evil@example.org", "Hi Bcc: evil@example.org"},
            {"Hi\xc2\x85"
             "Bcc: evil@example.org",
             "Hi Bcc: evil@example.org"}, /* NEL */
            {"Hi\xe2\x80\xa8"
             "Bcc: evil@example.org",
             "Hi Bcc: evil@example.org"},
            {"\r\nBcc: evil@example.org\r\n", "Bcc: evil@example.org"},
            {"Hi\tthere\x7f", "Hi there"},
        };
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                ml_mail_t m = base_mail();
                GMimeMessage *msg;
                size_t len;
                char *out;

                m.subject = cases[i].in;
                m.to_name = cases[i].in;
                m.from_name = cases[i].in;
                out = build_ok(&m, &len);
                assert_int_equal(count_headers(out, "Subject"), 1);
                assert_int_equal(count_headers(out, "Bcc"), 0);
                assert_int_equal(count_headers(out, "To"), 1);
                assert_int_equal(count_headers(out, "From"), 1);
                msg = parse(out, len);
                assert_string_equal(g_mime_message_get_subject(msg), cases[i].subject);
                assert_string_equal(mailbox_name(msg, GMIME_ADDRESS_TYPE_TO), cases[i].subject);
                assert_string_equal(mailbox_addr(msg, GMIME_ADDRESS_TYPE_TO), "kim@example.org");
                assert_int_equal(internet_address_list_length(
                                     g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_BCC)),
                                 0);
                assert_int_equal(internet_address_list_length(
                                     g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_CC)),
                                 0);
                g_object_unref(msg);
                free(out);
        }

        /* A name made of specials is quoted, not parsed as more addresses. */
        ml_mail_t m = base_mail();
        GMimeMessage *msg;
        size_t len;
        char *out;

        m.to_name = "Evil <evil@example.org>, \"Other\" <x@example.org>;";
        out = build_ok(&m, &len);
        msg = parse(out, len);
        assert_string_equal(mailbox_addr(msg, GMIME_ADDRESS_TYPE_TO), "kim@example.org");
        assert_string_equal(mailbox_name(msg, GMIME_ADDRESS_TYPE_TO), m.to_name);
        g_object_unref(msg);
        free(out);
}

/* Addresses, URLs, ids with CR/LF/NUL-like or other bad characters are refused. */
static void test_injection_rejected(void **state)
{
        static const char *bad_addrs[] = {
            "kim@example.org\r\nBcc: evil@example.org",
            "kim@example.org\n",
            "kim@exa\rmple.org",
            "kim @example.org",
            "kim@example.org, evil@example.org",
            "kim@example.org;evil@example.org",
            "<kim@example.org>",
            "Kim <kim@example.org>",
            "\"kim\"@example.org",
            "kim:x@example.org",
            "kim@@example.org",
            "kim@a@example.org",
            "kimexample.org",
            "",
            "김@example.org",
        };
        static const char *bad_ids[] = {
            "abc@example.gov\r\nBcc: evil@example.org",
            "abc@example.gov\n",
            "<abc@example.gov>",
            "abc def@example.gov",
            "abcexample.gov",
            "abc@",
            "@example.gov",
            "",
        };
        static const char *bad_list_ids[] = {
            "Notices <notices.example.gov>\r\nBcc: evil@example.org",
            "notices.example.gov\r\n",
            "Notices\r\nBcc: evil@example.org <notices.example.gov>",
            "Notices <notices.example.gov> trailing",
            "Notices <notices>",
            "Notices <no tices.example.gov>",
            "Evil <x> <notices.example.gov>",
            "",
        };
        static const char *bad_https[] = {
            "https://example.gov/u?t=1\r\nBcc: evil@example.org",
            "https://example.gov/u?t=1\n",
            "https://example.gov/u?t=1>, <https://evil.example.org/",
            "https://example.gov/u t=1",
            "http://example.gov/u?t=1",
            "javascript:alert(1)",
            "https://",
            "",
            "https://example.gov/ü",
        };
        static const char *bad_mailto[] = {
            "unsubscribe@example.gov?subject=x\r\nBcc: evil@example.org",
            "unsubscribe@example.gov>, <https://evil.example.org",
            "mailto:not an address",
            "unsubscribe@example.gov?subject=a b",
        };
        char longurl[1200];
        ml_mail_t m;
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
                m = base_mail();
                m.to_addr = bad_addrs[i];
                build_fails(&m, "to_addr");
                m = base_mail();
                m.from_addr = bad_addrs[i];
                build_fails(&m, "from_addr");
        }
        for (i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
                m = base_mail();
                m.message_id = bad_ids[i];
                build_fails(&m, "message_id");
        }
        for (i = 0; i < sizeof(bad_list_ids) / sizeof(bad_list_ids[0]); i++) {
                m = base_mail();
                m.list_id = bad_list_ids[i];
                build_fails(&m, "list_id");
        }
        for (i = 0; i < sizeof(bad_https) / sizeof(bad_https[0]); i++) {
                m = base_mail();
                m.unsubscribe_https = bad_https[i];
                build_fails(&m, "unsubscribe_https");
        }
        for (i = 0; i < sizeof(bad_mailto) / sizeof(bad_mailto[0]); i++) {
                m = base_mail();
                m.unsubscribe_mailto = bad_mailto[i];
                build_fails(&m, "unsubscribe_mailto");
        }
        memset(longurl, 'a', sizeof(longurl) - 1);
        longurl[sizeof(longurl) - 1] = '\0';
        memcpy(longurl, "https://", 8);
        m = base_mail();
        m.unsubscribe_https = longurl;
        build_fails(&m, "unsubscribe_https");

        /* Missing required fields and invalid UTF-8. */
        m = base_mail();
        m.to_addr = NULL;
        build_fails(&m, "to_addr");
        m = base_mail();
        m.message_id = NULL;
        build_fails(&m, "message_id");
        m = base_mail();
        m.unsubscribe_https = NULL;
        build_fails(&m, "unsubscribe_https");
        m = base_mail();
        m.list_id = NULL;
        build_fails(&m, "list_id");
        m = base_mail();
        m.subject = NULL;
        build_fails(&m, "subject");
        m = base_mail();
        m.html = NULL;
        build_fails(&m, "html");
        m = base_mail();
        m.subject = "bad \xff UTF-8";
        build_fails(&m, "subject");
        m = base_mail();
        m.to_name = "bad \xc3";
        build_fails(&m, "to_name");
        m = base_mail();
        m.text = "bad \xed\xa0\x80 surrogate";
        build_fails(&m, "text");
}

/* Optional parts: no mailto, no display names, a bare list id, a UTF-8 list-id phrase. */
static void test_optional(void **state)
{
        ml_mail_t m = base_mail();
        GMimeMessage *msg;
        size_t len;
        char *out;

        (void)state;
        m.unsubscribe_mailto = NULL;
        m.from_name = NULL;
        m.to_name = "";
        m.list_id = "notices.example.gov";
        out = build_ok(&m, &len);
        assert_non_null(strstr(out, "\r\nList-Unsubscribe: "
                                    "<https://example.gov/unsubscribe?t=abc123&l=es>\r\n"));
        assert_non_null(strstr(out, "\r\nList-Id: <notices.example.gov>\r\n"));
        assert_non_null(strstr(out, "\r\nTo: kim@example.org\r\n"));
        assert_non_null(strstr(out, "\r\nFrom: notices@example.gov\r\n"));
        free(out);

        m = base_mail();
        m.unsubscribe_mailto = "mailto:unsubscribe@example.gov";
        m.list_id = "Avisos del Perú <avisos.example.gov>";
        out = build_ok(&m, &len);
        assert_non_null(strstr(out, " <mailto:unsubscribe@example.gov>\r\n"));
        assert_null(strstr(out, "mailto:mailto:"));
        msg = parse(out, len);
        assert_non_null(strstr(out, "<avisos.example.gov>\r\n"));
        /* GMime's getter decodes RFC 2047. */
        assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(msg), "List-Id"),
                            "Avisos del Perú <avisos.example.gov>");
        g_object_unref(msg);
        free(out);
}

/* A 200 KB HTML body on very long lines, and a long subject: still <= 998 octets a line. */
static void test_long_lines(void **state)
{
        size_t n = 200 * 1024, i, len;
        char *html = malloc(n + 2), *text = malloc(n + 2), *subject = malloc(2001);
        const char *chunk = "<td style=\"font-family:Arial\">Perú é 대한민국 &amp; more</td>";
        ml_mail_t m = base_mail();
        GMimeMessage *msg;
        GMimeMultipart *mp;
        char *out, *decoded;

        (void)state;
        assert_non_null(html);
        assert_non_null(text);
        assert_non_null(subject);
        for (i = 0; i + strlen(chunk) <= n; i += strlen(chunk))
                memcpy(html + i, chunk, strlen(chunk));
        html[i] = '\0'; /* one line of ~200 KB */
        memset(text, 'x', n);
        text[n] = '\0'; /* ASCII, one line: 7bit would break the limit */
        for (i = 0; i + strlen(KO) <= 2000; i += strlen(KO))
                memcpy(subject + i, KO, strlen(KO));
        subject[i] = '\0';

        m.html = html;
        m.text = text;
        m.subject = subject;
        out = build_ok(&m, &len); /* check_wire: every line <= 998 */
        msg = parse(out, len);
        decoded = decode_words(g_mime_header_get_raw_value(g_mime_header_list_get_header(
            g_mime_object_get_header_list(GMIME_OBJECT(msg)), "Subject")));
        assert_string_equal(decoded, subject);
        g_free(decoded);
        mp = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
        strcat(html, "\n");
        strcat(text, "\n");
        check_part(g_mime_multipart_get_part(mp, 0), "plain", text);
        check_part(g_mime_multipart_get_part(mp, 1), "html", html);
        g_object_unref(msg);
        free(out);
        free(html);
        free(text);
        free(subject);
}

static void test_message_id(void **state)
{
        char a[ML_MAIL_MSGID_SIZE], b[ML_MAIL_MSGID_SIZE], small[64];

        (void)state;
        /* sha256("kim@example.org\ndigest:daily:2017-06-20")[:16], from Python's hashlib. */
        ml_mail_message_id("kim@example.org", "digest:daily:2017-06-20", "example.gov", a,
                           sizeof(a));
        assert_string_equal(a, "d5bca0f6efe7283aad690ecf891b5f58@example.gov");
        ml_mail_message_id("kim@example.org", "digest:daily:2017-06-20", "example.gov", b,
                           sizeof(b));
        assert_string_equal(a, b);
        ml_mail_message_id("kim@example.org", "digest:daily:2017-06-21", "example.gov", b,
                           sizeof(b));
        assert_string_not_equal(a, b);
        ml_mail_message_id("lee@example.org", "digest:daily:2017-06-20", "example.gov", b,
                           sizeof(b));
        assert_string_not_equal(a, b);
        ml_mail_message_id("", "x", "example.gov", b, sizeof(b));
        assert_string_equal(b, "bbe56d7c2d0f1f7271eb6f829800598a@example.gov");
        /* Exactly enough room, and one byte short: "" (which ml_mail_build refuses). */
        ml_mail_message_id("kim@example.org", "w", "example.gov", small, 32 + 1 + 11 + 1);
        assert_int_equal(strlen(small), 44);
        ml_mail_message_id("kim@example.org", "w", "example.gov", small, 32 + 1 + 11);
        assert_string_equal(small, "");

        /* The longest DNS name still fits ML_MAIL_MSGID_SIZE, and ml_mail_build takes it. */
        char domain[254];
        ml_mail_t m = base_mail();
        size_t len;
        char *out;

        for (size_t i = 0; i < 253; i++)
                domain[i] = (i % 64 == 63) ? '.' : 'a';
        domain[253] = '\0';
        ml_mail_message_id("kim@example.org", "w", domain, a, sizeof(a));
        assert_int_equal(strlen(a), 32 + 1 + 253);
        m.message_id = a;
        out = build_ok(&m, &len);
        free(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_structure),          cmocka_unit_test(test_rfc2047),
            cmocka_unit_test(test_charsets),           cmocka_unit_test(test_injection_text),
            cmocka_unit_test(test_injection_rejected), cmocka_unit_test(test_optional),
            cmocka_unit_test(test_long_lines),         cmocka_unit_test(test_message_id),
            cmocka_unit_test(test_consecutive),
        };
        int rc;

        ml_mail_global_init();
        ml_mail_global_init(); /* idempotent */
        rc = cmocka_run_group_tests(tests, NULL, NULL);
        ml_mail_global_shutdown();
        return rc;
}
