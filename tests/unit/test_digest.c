/* Unit tests for ml_digest with the real templates in config/templates: every language,
 * language fallback, HTML escaping, urgent marking, errors; and the rendered parts built
 * into a message by ml_mail. */
#include "nc_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>
#include <jansson.h>

#include "../../consumer/mailer/ml_digest.h"
#include "../../consumer/mailer/ml_mail.h"

#define UNSUB    "https://notices.example.gov/unsubscribe?t=tok123&s=1"
#define MANAGE   "https://notices.example.gov/manage?token=m4n&x=<1>"
#define PUA_TEST "\xEE\x80\x80" /* U+E000, the cache's sentinel character */

static ml_templates_t *tpl;
/* The manage URL render_ok() passes: MANAGE or NULL (the sign-up pages are off). */
static const char *manage_url = MANAGE;
static json_t *all; /* tests/unit/data/mail/notices.json: [urgent ko/en, MOI en/es/pt, es] */
enum { ALERT = 0, MOI = 1, TENDER = 2 };

static int setup(void **state)
{
        nc_strlist_t langs = {0};
        char path[1200], err[512];
        json_error_t jerr;

        (void)state;
        nc_strlist_split(&langs, "en, es, pt, ko");
        nc_test_src_path(path, sizeof(path), "config/templates");
        tpl = ml_templates_load(path, &langs, "en", err, sizeof(err));
        nc_strlist_clear(&langs);
        if (!tpl) {
                print_error("templates: %s\n", err);
                return -1;
        }
        nc_test_src_path(path, sizeof(path), "tests/unit/data/mail/notices.json");
        all = json_load_file(path, 0, &jerr);
        if (!all) {
                print_error("%s: %s\n", path, jerr.text);
                return -1;
        }
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        ml_templates_free(tpl);
        json_decref(all);
        return 0;
}

static json_t *subscriber(const char *lang, const char *name)
{
        json_t *s = json_pack("{s:s, s:s, s:[], s:[], s:s, s:s, s:s}", "id", "ana@example.org",
                              "email", "ana@example.org", "categories", "regions", "frequency",
                              "daily", "tz", "America/Lima", "send_at", "08:00");

        if (lang)
                json_object_set_new(s, "lang", json_string(lang));
        if (name)
                json_object_set_new(s, "name", json_string(name));
        return s;
}

/* An array of the fixture notices at the given indexes (-1 ends the list). */
static json_t *pick(int first, ...)
{
        json_t *a = json_array();
        va_list ap;

        va_start(ap, first);
        for (int i = first; i >= 0; i = va_arg(ap, int))
                json_array_append(a, json_array_get(all, (size_t)i));
        va_end(ap);
        return a;
}

static void render_ok(const json_t *sub, const json_t *notices, int urgent, const char *period,
                      ml_digest_out_t *out)
{
        char err[512] = "";

        if (ml_digest_render(tpl, sub, notices, urgent, UNSUB, manage_url, period, out, err,
                             sizeof(err)))
                fail_msg("ml_digest_render: %s", err);
        assert_non_null(out->subject);
        assert_non_null(out->text);
        assert_non_null(out->html);
        /* The subject is always one line without controls or blanks at either end. */
        assert_null(strpbrk(out->subject, "\r\n\t"));
        assert_true(out->subject[0] != ' ');
        assert_true(out->subject[strlen(out->subject) - 1] != ' ');
}

static void has(const char *hay, const char *needle)
{
        if (!strstr(hay, needle))
                fail_msg("'%s' not found in:\n%s", needle, hay);
}

static void has_not(const char *hay, const char *needle)
{
        if (strstr(hay, needle))
                fail_msg("'%s' unexpectedly found in:\n%s", needle, hay);
}

/* ---- loading ---------------------------------------------------------------------------- */

static void test_load(void **state)
{
        nc_strlist_t langs = {0};
        char path[1200], err[512];
        ml_templates_t *t;

        (void)state;
        assert_true(ml_templates_has(tpl, "en"));
        assert_true(ml_templates_has(tpl, "es"));
        assert_true(ml_templates_has(tpl, "pt"));
        assert_true(ml_templates_has(tpl, "ko"));
        assert_false(ml_templates_has(tpl, "fr"));

        /* A configured language without templates: the error names the first missing file. */
        nc_strlist_split(&langs, "en fr");
        nc_test_src_path(path, sizeof(path), "config/templates");
        t = ml_templates_load(path, &langs, "en", err, sizeof(err));
        assert_null(t);
        has(err, "config/templates/fr/subject.mustache: ");
        nc_strlist_clear(&langs);

        nc_strlist_split(&langs, "en");
        nc_test_src_path(path, sizeof(path), "tests/unit/data/mail/tpl-missing");
        assert_null(ml_templates_load(path, &langs, "en", err, sizeof(err)));
        has(err, "tpl-missing/en/html.mustache: No such file or directory");

        nc_test_src_path(path, sizeof(path), "tests/unit/data/mail/tpl-syntax");
        assert_null(ml_templates_load(path, &langs, "en", err, sizeof(err)));
        has(err, "tpl-syntax/en/text.mustache: ");
        has(err, "notices");

        /* Partials are compiled at load too. */
        nc_test_src_path(path, sizeof(path), "tests/unit/data/mail/tpl-badpartial");
        assert_null(ml_templates_load(path, &langs, "en", err, sizeof(err)));
        has(err, "tpl-badpartial/en/item.mustache: ");

        /* The default language must be one of the languages. */
        nc_test_src_path(path, sizeof(path), "config/templates");
        assert_null(ml_templates_load(path, &langs, "es", err, sizeof(err)));
        has(err, "default language 'es'");
        nc_strlist_clear(&langs);
        assert_null(ml_templates_load(path, &langs, "en", err, sizeof(err)));

        /* A language code is a directory name: no path tricks. */
        nc_strlist_add(&langs, "en");
        nc_strlist_add(&langs, "../en");
        assert_null(ml_templates_load(path, &langs, "en", err, sizeof(err)));
        has(err, "../en: not a usable language code");
        nc_strlist_clear(&langs);

        ml_templates_free(NULL);
}

/* ---- rendering -------------------------------------------------------------------------- */

static const struct {
        const char *lang, *title, *intro1, *daily2, *greeting, *html_lang;
} langs[] = {
    {"en", "Korean e-Government delegation visits Peru and Brazil",
     "A new notice has been published.", "Daily digest: 2 new notices", "Hello Ana,",
     "<html lang=\"en\">"},
    {"es", "Delegación coreana de gobierno electrónico visita Perú y Brasil",
     "Se ha publicado un aviso nuevo.", "Resumen diario: 2 avisos nuevos",
     "Hola, Ana:", "<html lang=\"es\">"},
    {"pt", "Delegação coreana de governo eletrônico visita o Peru e o Brasil",
     "Foi publicado um novo aviso.", "Resumo diário: 2 novos avisos", "Olá, Ana,",
     "<html lang=\"pt\">"},
    /* The MOI notice has no Korean text: English, its own language, stands in. */
    {"ko", "Korean e-Government delegation visits Peru and Brazil", "새 공지가 게시되었습니다.",
     "[일일 요약] 새 공지 2건", "Ana님, 안녕하세요.", "<html lang=\"ko\">"},
};

static void test_languages(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(langs) / sizeof(langs[0]); i++) {
                json_t *sub = subscriber(langs[i].lang, "Ana");
                json_t *one = pick(MOI, -1), *two = pick(MOI, TENDER, -1);
                ml_digest_out_t o;
                char buf[128];

                /* One notice, sent immediately: the subject is its title. */
                render_ok(sub, one, 0, "immediate", &o);
                assert_string_equal(o.subject, langs[i].title);
                has(o.text, langs[i].greeting);
                has(o.text, langs[i].intro1);
                has(o.text, langs[i].title);
                has(o.text, UNSUB);
                has(o.text, MANAGE); /* the preference centre, raw in the text part */
                has(o.html,
                    "href=\"https://notices.example.gov/manage?token=m4n&amp;x=&lt;1&gt;\"");
                has(o.text, "ana@example.org");
                has(o.text, "\n-- \n"); /* signature separator */
                has(o.html, langs[i].html_lang);
                has(o.html, "<title>");
                has(o.html, langs[i].title);
                has(o.html, "href=\"https://notices.example.gov/unsubscribe?t=tok123&amp;s=1\"");
                has(o.html, "role=\"presentation\"");
                has_not(o.html, "<script");
                has_not(o.html, "<img");
                has(o.html, "<time datetime=\"2017-06-20\">2017-06-20</time>");
                /* The body, marked with its language, one <p> per paragraph. */
                snprintf(buf, sizeof(buf), "<div lang=\"%s\">\n<p style=\"margin:0 0 16px 0;\">",
                         strcmp(langs[i].lang, "ko") ? langs[i].lang : "en");
                has(o.html, buf);
                ml_digest_out_free(&o);

                /* A daily digest of two. */
                render_ok(sub, two, 0, "daily", &o);
                assert_string_equal(o.subject, langs[i].daily2);
                has(o.text, "Licitación: servicios de nube para municipalidades");
                has(o.html, "<h2 lang=\"es\"");
                ml_digest_out_free(&o);

                json_decref(sub);
                json_decref(one);
                json_decref(two);
        }
}

/* Subscriber language without templates, missing language; notice text fallback. */
static void test_fallback(void **state)
{
        json_t *fr = subscriber("fr", NULL), *none = subscriber(NULL, NULL);
        json_t *ko = subscriber("ko", "김민준"), *es = subscriber("es", NULL);
        json_t *moi = pick(MOI, -1), *tender = pick(TENDER, -1), *alert = pick(ALERT, -1);
        ml_digest_out_t o;

        (void)state;
        /* No French templates: English ones, and the English text of the notice. */
        render_ok(fr, moi, 0, "immediate", &o);
        has(o.html, "<html lang=\"en\">");
        assert_string_equal(o.subject, "Korean e-Government delegation visits Peru and Brazil");
        has(o.text, "Hello,\n"); /* no name */
        ml_digest_out_free(&o);
        render_ok(none, moi, 0, "immediate", &o);
        has(o.html, "<html lang=\"en\">");
        ml_digest_out_free(&o);

        /* A Korean reader of a Spanish-only notice: Korean templates, Spanish text marked as
         * such, with a note in Korean. */
        render_ok(ko, tender, 0, "immediate", &o);
        has(o.html, "<html lang=\"ko\">");
        has(o.html, "<h2 lang=\"es\"");
        has(o.html, "<p lang=\"es\"");
        has(o.html, "<div lang=\"es\">");
        has(o.html, "한국어로 제공되지 않는 공지이므로 원문 언어로 표시합니다.");
        has(o.text, "한국어로 제공되지 않는 공지이므로 원문 언어로 표시합니다.");
        has(o.text, "김민준님, 안녕하세요.");
        assert_string_equal(o.subject, "Licitación: servicios de nube para municipalidades");
        ml_digest_out_free(&o);

        /* The Korean alert for a Korean reader: no fallback note. */
        render_ok(ko, alert, 1, "immediate", &o);
        has(o.html, "<h2 lang=\"ko\"");
        has_not(o.html, "원문 언어로 표시합니다");
        ml_digest_out_free(&o);

        /* The same alert for a Spanish reader falls back to the notice's own language (ko),
         * not to another translation. */
        render_ok(es, alert, 1, "immediate", &o);
        has(o.html, "<html lang=\"es\">");
        has(o.html, "<h2 lang=\"ko\"");
        has(o.html, "No disponible en español");
        ml_digest_out_free(&o);

        json_decref(fr);
        json_decref(none);
        json_decref(ko);
        json_decref(es);
        json_decref(moi);
        json_decref(tender);
        json_decref(alert);
}

/* Text from notices and subscribers is escaped in HTML, raw in text and subject. */
static void test_escaping(void **state)
{
        json_t *sub = subscriber("en", "<b>Ana</b> & \"Co\"");
        json_t *alert = pick(ALERT, -1), *tender = pick(TENDER, -1);
        ml_digest_out_t o;

        (void)state;
        render_ok(sub, alert, 1, "immediate", &o);
        has(o.html, "Heavy rain warning for Seoul &lt;script&gt;alert(1)&lt;/script&gt; "
                    "&amp; &quot;more&quot;");
        has_not(o.html, "<script");
        has_not(o.html, "<b>");
        has(o.html, "&lt;b&gt;Ana&lt;/b&gt; &amp; &quot;Co&quot;");
        has(o.html, "details &lt;b&gt;now&lt;/b&gt;.");
        has(o.html, "href=\"https://www.safekorea.go.kr/alerts?id=1&amp;lang=en\"");
        has(o.text, "Heavy rain warning for Seoul <script>alert(1)</script> & \"more\"");
        has(o.text, "<b>Ana</b> & \"Co\"");
        has(o.text, "https://www.safekorea.go.kr/alerts?id=1&lang=en");
        assert_string_equal(o.subject,
                            "URGENT: Heavy rain warning for Seoul <script>alert(1)</script> & "
                            "\"more\"");
        ml_digest_out_free(&o);

        /* A javascript: URL never becomes a link, in either part. */
        render_ok(sub, tender, 0, "immediate", &o);
        has_not(o.html, "javascript");
        has_not(o.text, "javascript");
        ml_digest_out_free(&o);

        json_decref(sub);
        json_decref(alert);
        json_decref(tender);
}

static void test_urgent(void **state)
{
        static const struct {
                const char *lang, *subject, *banner_text, *banner_html, *badge;
        } u[] = {
            {"en", "URGENT: Heavy rain warning", "*** URGENT ALERT ***", ">URGENT ALERT<",
             ">URGENT<"},
            {"es", "URGENTE: 서울 지역", "*** ALERTA URGENTE ***", ">ALERTA URGENTE<", ">URGENTE<"},
            {"pt", "URGENTE: 서울 지역", "*** ALERTA URGENTE ***", ">ALERTA URGENTE<", ">URGENTE<"},
            {"ko", "[긴급] 서울 지역 호우 경보", "*** 긴급 알림 ***", ">긴급 알림<", ">긴급<"},
        };
        json_t *alert = pick(ALERT, -1), *moi = pick(MOI, -1);

        (void)state;
        for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
                json_t *sub = subscriber(u[i].lang, "Ana");
                ml_digest_out_t o;

                render_ok(sub, alert, 1, "immediate", &o);
                if (strncmp(o.subject, u[i].subject, strlen(u[i].subject)))
                        fail_msg("%s: subject '%s' does not start with '%s'", u[i].lang, o.subject,
                                 u[i].subject);
                assert_true(!strncmp(o.text, u[i].banner_text, strlen(u[i].banner_text)));
                has(o.text, "[" /* per-notice badge */);
                has(o.html, u[i].banner_html);
                has(o.html, u[i].badge);
                ml_digest_out_free(&o);

                /* A normal notice: no urgent marking anywhere. */
                render_ok(sub, moi, 0, "immediate", &o);
                has_not(o.subject, "URGENT");
                has_not(o.subject, "긴급");
                has_not(o.text, u[i].banner_text);
                has_not(o.html, u[i].banner_html);
                has_not(o.html, "#a4101c");
                ml_digest_out_free(&o);
                json_decref(sub);
        }
        json_decref(alert);
        json_decref(moi);
}

static void test_periods(void **state)
{
        json_t *sub = subscriber("en", NULL);
        json_t *three = pick(ALERT, MOI, TENDER, -1), *one = pick(MOI, -1);
        ml_digest_out_t o;

        (void)state;
        render_ok(sub, three, 0, "weekly", &o);
        assert_string_equal(o.subject, "Weekly digest: 3 new notices");
        has(o.text, "Your weekly digest: 3 new notices.");
        ml_digest_out_free(&o);
        render_ok(sub, one, 0, "daily", &o);
        assert_string_equal(o.subject,
                            "Daily digest: Korean e-Government delegation visits Peru and Brazil");
        has(o.text, "Your daily digest: one new notice.");
        ml_digest_out_free(&o);
        render_ok(sub, three, 0, NULL, &o); /* NULL = immediate */
        assert_string_equal(o.subject, "3 new notices");
        has(o.text, "3 new notices have been published.");
        /* Newest first, as given. */
        assert_true(strstr(o.text, "Heavy rain") < strstr(o.text, "Korean e-Government"));
        assert_true(strstr(o.text, "Korean e-Government") < strstr(o.text, "Licitación"));
        ml_digest_out_free(&o);
        json_decref(sub);
        json_decref(three);
        json_decref(one);
}

static void test_errors(void **state)
{
        json_t *sub = subscriber("en", NULL), *empty = json_array(), *one = pick(MOI, -1);
        json_t *bad = json_pack("[{s:s}]", "id", "x");
        ml_digest_out_t o = {(char *)1, (char *)1, (char *)1};
        char err[512];

        (void)state;
        /* The caller never sends an empty digest: rendering one is an error. */
        assert_int_equal(
            ml_digest_render(tpl, sub, empty, 0, UNSUB, NULL, "daily", &o, err, sizeof(err)), -1);
        has(err, "notices: is empty");
        assert_null(o.subject);
        assert_null(o.text);
        assert_null(o.html);
        assert_int_equal(
            ml_digest_render(tpl, sub, one, 0, UNSUB, NULL, "monthly", &o, err, sizeof(err)), -1);
        has(err, "period: 'monthly'");
        assert_int_equal(
            ml_digest_render(tpl, sub, sub, 0, UNSUB, NULL, "daily", &o, err, sizeof(err)), -1);
        has(err, "notices: is not an array");
        assert_int_equal(
            ml_digest_render(tpl, one, one, 0, UNSUB, NULL, "daily", &o, err, sizeof(err)), -1);
        has(err, "subscriber: is not an object");
        assert_int_equal(
            ml_digest_render(tpl, sub, bad, 0, UNSUB, NULL, "daily", &o, err, sizeof(err)), -1);
        has(err, "notices[0] (x): has no title");
        assert_null(o.subject);
        ml_digest_out_free(&o);
        ml_digest_out_free(NULL);

        /* Without an unsubscribe URL (a preview) the link is left out, not rendered empty. */
        assert_int_equal(
            ml_digest_render(tpl, sub, one, 0, NULL, NULL, "daily", &o, err, sizeof(err)), 0);
        has_not(o.html, "<a href=\"\"");
        has_not(o.text, "unsubscribe here");
        ml_digest_out_free(&o);

        json_decref(sub);
        json_decref(empty);
        json_decref(one);
        json_decref(bad);
}

/* Defensive: even a title with line breaks (refused by notice validation) gives a one-line
 * subject; bodies split into paragraphs on blank lines, blank-only lines included. */
static void test_text_shapes(void **state)
{
        json_t *sub = subscriber("en", NULL);
        json_t *n = json_pack("[{s:s, s:s, s:s, s:s, s:{s:s}, s:{s:s}}]", "id", "n1", "lang", "en",
                              "priority", "normal", "published_at", "2017-06-20T09:00:00+09:00",
                              "title", "en", "Line one\r\nBcc: evil@example.org\u2028end", "body",
                              "en", "\n\nA\n\nB\nC\n\n \t \n\nD  \n\n");
        ml_digest_out_t o;

        (void)state;
        render_ok(sub, n, 0, "immediate", &o);
        assert_string_equal(o.subject, "Line one Bcc: evil@example.org end");
        has(o.text, "\nA\n\nB\nC\n\nD\n\n");
        has(o.html, "<p style=\"margin:0 0 16px 0;\">A</p>\n<p style=\"margin:0 0 16px 0;\">B\nC"
                    "</p>\n<p style=\"margin:0 0 16px 0;\">D</p>\n");
        has_not(o.text, "Read the full notice"); /* no url */
        ml_digest_out_free(&o);
        json_decref(n);

        /* A very long title: the subject is cut to 2000 bytes on a character boundary. */
        char title[3001];
        for (size_t i = 0; i + 3 <= 3000; i += 3)
                memcpy(title + i, "한", 3);
        title[3000] = '\0';
        n = json_pack("[{s:s, s:{s:s}}]", "lang", "ko", "title", "ko", title);
        render_ok(sub, n, 0, "immediate", &o);
        assert_true(strlen(o.subject) <= 2000 && strlen(o.subject) >= 1995);
        assert_int_equal(strlen(o.subject) % 3, 0);
        ml_digest_out_free(&o);
        json_decref(n);
        json_decref(sub);
}

/* Rendered parts go through ml_mail: a valid message in every language. */
static void test_into_mail(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(langs) / sizeof(langs[0]); i++) {
                json_t *sub = subscriber(langs[i].lang, "Ana María");
                json_t *notices = pick(ALERT, MOI, TENDER, -1);
                char msgid[ML_MAIL_MSGID_SIZE], err[512];
                ml_digest_out_t o;
                ml_mail_t m = {0};
                GMimeStream *stream;
                GMimeParser *parser;
                GMimeMessage *msg;
                size_t len, start = 0;
                char *raw;

                render_ok(sub, notices, 1, "immediate", &o);
                ml_mail_message_id("ana@example.org", "urgent:0190f3c3", "example.gov", msgid,
                                   sizeof(msgid));
                m.from_name = "Ministerio del Interior";
                m.from_addr = "notices@example.gov";
                m.to_name = "Ana María";
                m.to_addr = "ana@example.org";
                m.subject = o.subject;
                m.text = o.text;
                m.html = o.html;
                m.message_id = msgid;
                m.date_ms = 1498104000000LL;
                m.list_id = "Notices <notices.example.gov>";
                m.unsubscribe_https = UNSUB;
                raw = ml_mail_build(&m, &len, err, sizeof(err));
                if (!raw)
                        fail_msg("%s: %s", langs[i].lang, err);
                for (size_t j = 0; j < len; j++) {
                        if (raw[j] == '\n') {
                                assert_true(j > 0 && raw[j - 1] == '\r');
                                assert_true(j - start <= 999);
                                start = j + 1;
                        }
                }
                stream = g_mime_stream_mem_new_with_buffer(raw, len);
                parser = g_mime_parser_new_with_stream(stream);
                msg = g_mime_parser_construct_message(parser, NULL);
                assert_non_null(msg);
                assert_true(GMIME_IS_MULTIPART(g_mime_message_get_mime_part(msg)));
                g_object_unref(msg);
                g_object_unref(parser);
                g_object_unref(stream);
                free(raw);
                ml_digest_out_free(&o);
                json_decref(sub);
                json_decref(notices);
        }
}

/* The decoded content of the text/SUBTYPE part of a parsed message (malloc'd). */
static char *part_text(GMimeMessage *msg, const char *subtype)
{
        GMimeMultipart *mp = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));

        for (int i = 0; i < g_mime_multipart_get_count(mp); i++) {
                GMimeObject *o = g_mime_multipart_get_part(mp, i);
                GMimeContentType *ct = g_mime_object_get_content_type(o);
                GMimeDataWrapper *w;
                GMimeStream *out;
                GByteArray *b;
                char *r;

                if (!g_mime_content_type_is_type(ct, "text", subtype))
                        continue;
                w = g_mime_part_get_content(GMIME_PART(o));
                out = g_mime_stream_mem_new();
                g_mime_data_wrapper_write_to_stream(w, out);
                b = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
                r = strndup((const char *)b->data, b->len);
                g_object_unref(out);
                return r;
        }
        fail_msg("no text/%s part", subtype);
        return NULL;
}

/* CRLF into LF (GMime keeps CRLF in decoded base64 text). */
static void lf(char *s)
{
        char *o = s;

        for (; *s; s++)
                if (!(s[0] == '\r' && s[1] == '\n'))
                        *o++ = *s;
        *o = '\0';
}

/* The cache (rendered once with sentinels, values filled in per subscriber) gives exactly what
 * a full render gives, for awkward names too; and the message ml_mail_build_bodies() makes from
 * the pieces decodes to the same bodies as ml_mail_build() of the full texts, on a clean wire. */
static void test_cache_same_as_full(void **state)
{
        static const char *const names[] = {"Ana",
                                            NULL,
                                            "<b>Eve</b> & \"Mallory\" 'x'",
                                            "=?utf-8?q?x?= Ana",
                                            "김민준",
                                            "Zoë \u202e ok",
                                            "   ",
                                            "A\x01"
                                            "B",
                                            "Ana  María  ",
                                            "=3D = soft=",
                                            "é",
                                            "x" PUA_TEST};
        json_t *sets[4] = {pick(ALERT, MOI, TENDER, -1), pick(MOI, -1), pick(TENDER, MOI, -1),
                           pick(ALERT, -1)};
        const char *periods_[3] = {"daily", "weekly", "immediate"};
        char err[512];

        (void)state;
        for (size_t li = 0; li < sizeof(langs) / sizeof(langs[0]); li++) {
                for (size_t ni = 0; ni < sizeof(names) / sizeof(names[0]); ni++) {
                        for (size_t si = 0; si < 4; si++) {
                                json_t *sub = subscriber(langs[li].lang, names[ni]);
                                int urgent = si == 3;
                                const char *period = periods_[(ni + si) % 3];
                                ml_digest_out_t a, b;
                                ml_digest_parts_t p;
                                ml_mail_t m = {0};
                                GMimeStream *stream;
                                GMimeParser *parser;
                                GMimeMessage *msg;
                                char *raw, *t, *h;
                                size_t len;

                                /* with and without a manage URL: a key flag and a hole */
                                manage_url = ni % 2 ? MANAGE : NULL;
                                ml_templates_set_cache(tpl, 1);
                                render_ok(sub, sets[si], urgent, period, &a);
                                ml_templates_set_cache(tpl, 0);
                                render_ok(sub, sets[si], urgent, period, &b);
                                ml_templates_set_cache(tpl, 1);
                                assert_string_equal(a.subject, b.subject);
                                assert_string_equal(a.text, b.text);
                                assert_string_equal(a.html, b.html);

                                if ((strstr(a.text, "/manage?") == NULL) == (manage_url != NULL))
                                        fail_msg("manage link %s",
                                                 manage_url ? "missing" : "unasked");
                                if (ml_digest_render_parts(tpl, sub, sets[si], urgent, UNSUB,
                                                           manage_url, period, &p, err,
                                                           sizeof(err)))
                                        fail_msg("%s", err);
                                assert_string_equal(p.subject, a.subject);
                                m.from_name = "Ministerio del Interior";
                                m.from_addr = "notices@example.gov";
                                m.to_name = names[ni];
                                m.to_addr = "ana@example.org";
                                m.subject = p.subject;
                                m.text = p.text_str;
                                m.html = p.html_str;
                                m.message_id = "0123456789abcdef0123456789abcdef@example.gov";
                                m.date_ms = 1498104000000LL;
                                m.list_id = "Notices <notices.example.gov>";
                                m.unsubscribe_https = UNSUB;
                                raw = p.text ? ml_mail_build_bodies(&m, p.text, p.html, p.vals,
                                                                    ML_DIGEST_NVALUES, &len, err,
                                                                    sizeof(err))
                                             : ml_mail_build(&m, &len, err, sizeof(err));
                                if (!raw)
                                        fail_msg("%s: %s", langs[li].lang, err);
                                for (size_t j = 0, start = 0; j < len; j++) {
                                        assert_true((unsigned char)raw[j] < 0x80);
                                        if (raw[j] == '\n') {
                                                assert_true(j > 0 && raw[j - 1] == '\r');
                                                assert_true(j - start <= 999);
                                                start = j + 1;
                                        } else if (raw[j] == '\r') {
                                                assert_true(raw[j + 1] == '\n');
                                        }
                                }
                                assert_true(len >= 2 && raw[len - 1] == '\n');
                                stream = g_mime_stream_mem_new_with_buffer(raw, len);
                                parser = g_mime_parser_new_with_stream(stream);
                                msg = g_mime_parser_construct_message(parser, NULL);
                                assert_non_null(msg);
                                t = part_text(msg, "plain");
                                h = part_text(msg, "html");
                                lf(t);
                                lf(h);
                                /* ml_mail ends a body with a newline. */
                                assert_int_equal(strncmp(t, a.text, strlen(a.text)), 0);
                                assert_true(strlen(t) - strlen(a.text) <= 1);
                                assert_int_equal(strncmp(h, a.html, strlen(a.html)), 0);
                                assert_true(strlen(h) - strlen(a.html) <= 1);
                                free(t);
                                free(h);
                                g_object_unref(msg);
                                g_object_unref(parser);
                                g_object_unref(stream);
                                free(raw);
                                ml_digest_parts_free(&p);
                                ml_digest_out_free(&a);
                                ml_digest_out_free(&b);
                                json_decref(sub);
                        }
                }
        }
        manage_url = MANAGE;
        for (size_t si = 0; si < 4; si++)
                json_decref(sets[si]);
}

/* A notice that contains the sentinel character itself is rendered in full, correctly. */
static void test_cache_sentinel_in_notice(void **state)
{
        json_t *n = json_deep_copy(json_array_get(all, MOI)), *set = json_array();
        json_t *sub = subscriber("en", "Ana");
        ml_digest_out_t a, b;

        (void)state;
        json_object_set_new(n, "title",
                            json_string("Fake \xEE\x80\x80"
                                        "0&\xEE\x80\x81 sentinel \xEE\x80\x80"));
        json_array_append_new(set, n);
        render_ok(sub, set, 0, "daily", &a);
        ml_templates_set_cache(tpl, 0);
        render_ok(sub, set, 0, "daily", &b);
        ml_templates_set_cache(tpl, 1);
        assert_string_equal(a.text, b.text);
        assert_string_equal(a.html, b.html);
        assert_non_null(strstr(a.text, "Fake \xEE\x80\x80"
                                       "0&\xEE\x80\x81 sentinel"));
        ml_digest_out_free(&a);
        ml_digest_out_free(&b);
        json_decref(set);
        json_decref(sub);
}

/* One template set, several threads: the per-language lock keeps the partial caches sane. */
struct thr {
        const char *lang;
        char *expect;
        int ok;
};

static void *thr_main(void *arg)
{
        struct thr *t = arg;
        json_t *sub = subscriber(t->lang, "Ana"), *notices = pick(ALERT, MOI, TENDER, -1);
        char err[512];

        t->ok = 1;
        for (int i = 0; i < 50 && t->ok; i++) {
                ml_digest_out_t o;

                if (ml_digest_render(tpl, sub, notices, 0, UNSUB, MANAGE, "daily", &o, err,
                                     sizeof(err)))
                        t->ok = 0;
                else if (strcmp(o.html, t->expect))
                        t->ok = 0;
                ml_digest_out_free(&o);
        }
        json_decref(sub);
        json_decref(notices);
        return NULL;
}

static void test_threads(void **state)
{
        struct thr t[8];
        pthread_t th[8];
        size_t i;

        (void)state;
        for (i = 0; i < 8; i++) {
                json_t *sub;
                json_t *notices = pick(ALERT, MOI, TENDER, -1);
                ml_digest_out_t o;

                t[i].lang = langs[i % 4].lang;
                sub = subscriber(t[i].lang, "Ana");
                render_ok(sub, notices, 0, "daily", &o);
                t[i].expect = o.html;
                o.html = NULL;
                ml_digest_out_free(&o);
                json_decref(sub);
                json_decref(notices);
        }
        for (i = 0; i < 8; i++)
                assert_int_equal(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
        for (i = 0; i < 8; i++) {
                pthread_join(th[i], NULL);
                assert_true(t[i].ok);
                free(t[i].expect);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_load),
            cmocka_unit_test(test_languages),
            cmocka_unit_test(test_fallback),
            cmocka_unit_test(test_escaping),
            cmocka_unit_test(test_urgent),
            cmocka_unit_test(test_periods),
            cmocka_unit_test(test_errors),
            cmocka_unit_test(test_text_shapes),
            cmocka_unit_test(test_into_mail),
            cmocka_unit_test(test_threads),
            cmocka_unit_test(test_cache_same_as_full),
            cmocka_unit_test(test_cache_sentinel_in_notice),
        };
        int rc;

        ml_mail_global_init();
        rc = cmocka_run_group_tests(tests, setup, teardown);
        ml_mail_global_shutdown();
        return rc;
}
