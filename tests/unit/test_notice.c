/* Unit tests for common/nc_notice.c: notice validation and normalisation (schema 1) and
 * withdrawal events.  Every error is "field: what is wrong"; the tests check both parts. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_config.h"
#include "nc_notice.h"
#include "nc_time.h"
#include "nc_uuid.h"

/* "Now" for every test: 2017-06-20T00:00:00.123Z. */
#define NOW      INT64_C(1497916800123)
#define NOW_TEXT "2017-06-20T00:00:00.123Z"

#define EXAMPLE_ID         "015cc2cc-7c00-7a3b-8c4d-5e6f70819203"
#define EXAMPLE_SUPERSEDES "015c9999-9c00-7d1e-9f20-a1b2c3d4e5f6"
#define TITLE_EN           "Korean e-Government delegation visits Peru and Brazil"
#define TITLE_ES           "Una delegación coreana de gobierno electrónico visita Perú y Brasil"
#define TITLE_PT           "Delegação coreana de governo eletrônico visita o Peru e o Brasil"

static nc_config_t cfg;       /* built-in defaults: en es pt ko; news press tenders alerts */
static nc_config_t small_cfg; /* tests/unit/data/noticecast-small-limits.conf */

static int group_setup(void **state)
{
        (void)state;
        return nc_test_configs_load(&cfg, &small_cfg, "noticecast-small-limits.conf");
}

static int group_teardown(void **state)
{
        (void)state;
        nc_test_configs_free(&cfg, &small_cfg);
        return 0;
}

static json_t *load_example(void)
{
        char path[1024];
        json_error_t jerr;
        json_t *n;

        nc_test_data_path("moi-news-2017-06-20.json", path, sizeof(path));
        n = json_load_file(path, 0, &jerr);
        if (!n)
                fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
        return n;
}

/* The smallest valid input notice. */
static json_t *base(void)
{
        return json_pack("{s:s, s:{s:s}}", "category", "news", "title", "en", TITLE_EN);
}

/* Sets KEY to V (stolen) in N and returns N. */
static json_t *with(json_t *n, const char *key, json_t *v)
{
        json_object_set_new(n, key, v);
        return n;
}

/* Normalises IN (stolen) and returns the result, failing the test on an error. */
static json_t *norm_cfg(json_t *in, const nc_config_t *c, enum nc_notice_mode mode)
{
        char err[512] = "";
        json_t *out;

        assert_non_null(in);
        out = nc_notice_normalise(in, c, mode, NOW, err, sizeof(err));
        json_decref(in);
        if (!out)
                fail_msg("rejected: %s", err);
        return out;
}

static json_t *norm(json_t *in, enum nc_notice_mode mode)
{
        return norm_cfg(in, &cfg, mode);
}

/* Normalises IN (stolen), which must fail with an error starting with PREFIX ("field: ")
 * and containing WHAT. */
static void bad_cfg(json_t *in, const nc_config_t *c, enum nc_notice_mode mode, const char *prefix,
                    const char *what)
{
        char err[512] = "";
        json_t *out;

        assert_non_null(in);
        out = nc_notice_normalise(in, c, mode, NOW, err, sizeof(err));
        if (out) {
                char *dump = json_dumps(in, JSON_COMPACT | JSON_ENSURE_ASCII);
                char copy[2048];

                snprintf(copy, sizeof(copy), "%s", dump ? dump : "?");
                free(dump);
                json_decref(out);
                json_decref(in);
                fail_msg("accepted: %s", copy);
        }
        json_decref(in);
        if (strncmp(err, prefix, strlen(prefix)) != 0)
                fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
        if (what && !strstr(err, what))
                fail_msg("error \"%s\" does not mention \"%s\"", err, what);
}

static void bad(json_t *in, const char *prefix, const char *what)
{
        bad_cfg(in, &cfg, NC_NOTICE_INPUT, prefix, what);
}

static const char *str(const json_t *o, const char *key)
{
        const char *s = json_string_value(json_object_get(o, key));

        if (!s)
                fail_msg("\"%s\" is not a string", key);
        return s;
}

static const char *text(const json_t *o, const char *map, const char *lang)
{
        const char *s = json_string_value(json_object_get(json_object_get(o, map), lang));

        if (!s)
                fail_msg("%s.%s is not a string", map, lang);
        return s;
}

static char *repeat(const char *unit, size_t times)
{
        size_t n = strlen(unit), i;
        char *s = malloc(n * times + 1);

        assert_non_null(s);
        for (i = 0; i < times; i++)
                memcpy(s + i * n, unit, n);
        s[n * times] = '\0';
        return s;
}

/* ---- valid notices ------------------------------------------------------------------------ */

static void test_full_notice_valid(void **state)
{
        static const char *const order[] = {"id",   "category", "published_at", "priority",
                                            "lang", "regions",  "title",        "summary",
                                            "body", "url",      "source",       "supersedes"};
        json_t *in = load_example(), *out, *again, *v;
        const char *key;
        size_t i = 0;

        (void)state;
        out = norm(json_deep_copy(in), NC_NOTICE_INPUT);
        /* Everything given is kept: nothing to assign. */
        assert_string_equal(str(out, "id"), EXAMPLE_ID);
        assert_string_equal(str(out, "category"), "news");
        assert_string_equal(str(out, "published_at"), "2017-06-20T09:00:00+09:00");
        assert_string_equal(str(out, "priority"), "normal");
        assert_string_equal(str(out, "lang"), "en");
        assert_int_equal(json_array_size(json_object_get(out, "regions")), 2);
        assert_string_equal(json_string_value(json_array_get(json_object_get(out, "regions"), 0)),
                            "PE");
        assert_string_equal(json_string_value(json_array_get(json_object_get(out, "regions"), 1)),
                            "BR");
        assert_int_equal(json_object_size(json_object_get(out, "title")), 3);
        assert_string_equal(text(out, "title", "en"), TITLE_EN);
        assert_string_equal(text(out, "title", "es"), TITLE_ES);
        assert_string_equal(text(out, "title", "pt"), TITLE_PT);
        assert_true(json_equal(json_object_get(out, "summary"), json_object_get(in, "summary")));
        assert_true(json_equal(json_object_get(out, "body"), json_object_get(in, "body")));
        assert_non_null(strstr(text(out, "body", "pt"), "\n\nDe 15 a 20 de junho"));
        assert_string_equal(str(out, "url"), "https://www.mois.go.kr/eng/");
        assert_string_equal(str(out, "source"), "Ministry of the Interior");
        assert_string_equal(str(out, "supersedes"), EXAMPLE_SUPERSEDES);
        assert_string_equal(nc_notice_id(out), EXAMPLE_ID);
        assert_string_equal(nc_notice_category(out), "news");

        /* Canonical field order. */
        json_object_foreach(out, key, v) {
                assert_true(i < sizeof(order) / sizeof(order[0]));
                assert_string_equal(key, order[i]);
                i++;
        }
        assert_int_equal(i, sizeof(order) / sizeof(order[0]));

        /* The same result in every mode, and normalising twice changes nothing. */
        again = norm(json_deep_copy(in), NC_NOTICE_STORED);
        assert_true(json_equal(again, out));
        json_decref(again);
        again = norm(json_deep_copy(in), NC_NOTICE_CHECK);
        assert_true(json_equal(again, out));
        json_decref(again);
        again = norm(json_deep_copy(out), NC_NOTICE_STORED);
        assert_true(json_equal(again, out));
        json_decref(again);

        json_decref(out);
        json_decref(in);
}

static void test_input_assigns_id_and_published_at(void **state)
{
        json_t *out;
        const char *id;

        (void)state;
        out = norm(base(), NC_NOTICE_INPUT);
        id = str(out, "id");
        assert_true(nc_uuid_valid(id));
        assert_int_equal(nc_uuid_version(id), 7);
        assert_int_equal(nc_uuid_v7_time(id), NOW);
        assert_string_equal(str(out, "published_at"), NOW_TEXT);
        assert_string_equal(str(out, "priority"), "normal");
        assert_string_equal(str(out, "lang"), "en");
        assert_true(json_is_array(json_object_get(out, "regions")));
        assert_int_equal(json_array_size(json_object_get(out, "regions")), 0);
        assert_true(json_is_null(json_object_get(out, "supersedes")));
        /* Optional fields that were not given stay absent. */
        assert_null(json_object_get(out, "summary"));
        assert_null(json_object_get(out, "body"));
        assert_null(json_object_get(out, "url"));
        assert_null(json_object_get(out, "source"));
        json_decref(out);

        /* Explicit nulls mean "absent" in input mode too. */
        out = norm(with(with(base(), "id", json_null()), "published_at", json_null()),
                   NC_NOTICE_INPUT);
        assert_int_equal(nc_uuid_v7_time(str(out, "id")), NOW);
        assert_string_equal(str(out, "published_at"), NOW_TEXT);
        json_decref(out);

        /* A given id is kept, lower-cased. */
        out = norm(with(base(), "id", json_string("015CC2CC-7C00-7A3B-8C4D-5E6F70819203")),
                   NC_NOTICE_INPUT);
        assert_string_equal(str(out, "id"), EXAMPLE_ID);
        json_decref(out);
}

static void test_priority_default(void **state)
{
        json_t *out;

        (void)state;
        out = norm(base(), NC_NOTICE_CHECK);
        assert_string_equal(str(out, "priority"), "normal");
        json_decref(out);
        out = norm(with(base(), "priority", json_null()), NC_NOTICE_CHECK);
        assert_string_equal(str(out, "priority"), "normal");
        json_decref(out);
        out = norm(with(base(), "priority", json_string("urgent")), NC_NOTICE_CHECK);
        assert_string_equal(str(out, "priority"), "urgent");
        json_decref(out);
}

static void test_lang_defaulting(void **state)
{
        json_t *out;

        (void)state;
        /* The title has the configured default language: that is the notice's language. */
        out = norm(json_pack("{s:s, s:{s:s, s:s}}", "category", "news", "title", "es", TITLE_ES,
                             "en", TITLE_EN),
                   NC_NOTICE_CHECK);
        assert_string_equal(str(out, "lang"), "en");
        json_decref(out);

        /* Without it, the first language of the title. */
        out = norm(json_pack("{s:s, s:{s:s, s:s}}", "category", "news", "title", "pt", TITLE_PT,
                             "es", TITLE_ES),
                   NC_NOTICE_CHECK);
        assert_string_equal(str(out, "lang"), "pt");
        json_decref(out);

        /* An explicit lang wins. */
        out = norm(json_pack("{s:s, s:s, s:{s:s, s:s}}", "category", "news", "lang", "es", "title",
                             "en", TITLE_EN, "es", TITLE_ES),
                   NC_NOTICE_CHECK);
        assert_string_equal(str(out, "lang"), "es");
        json_decref(out);

        /* A plain string with an explicit lang is text in that language. */
        out =
            norm(json_pack("{s:s, s:s, s:s}", "category", "news", "lang", "pt", "title", TITLE_PT),
                 NC_NOTICE_CHECK);
        assert_string_equal(str(out, "lang"), "pt");
        assert_int_equal(json_object_size(json_object_get(out, "title")), 1);
        assert_string_equal(text(out, "title", "pt"), TITLE_PT);
        json_decref(out);

        /* The explicit lang must be configured and present in the title. */
        bad(with(base(), "lang", json_string("fr")), "lang: ", "configured languages");
        bad(with(base(), "lang", json_integer(1)), "lang: ", "configured languages");
        bad(with(base(), "lang", json_string("es")), "lang: ", "the title has no 'es' text");
}

static void test_regions_normalised(void **state)
{
        json_t *out, *r;

        (void)state;
        out = norm(with(base(), "regions", json_pack("[s,s,s,s,s]", "pe", "BR", "Pe", "br", "KR")),
                   NC_NOTICE_CHECK);
        r = json_object_get(out, "regions");
        assert_int_equal(json_array_size(r), 3);
        assert_string_equal(json_string_value(json_array_get(r, 0)), "PE");
        assert_string_equal(json_string_value(json_array_get(r, 1)), "BR");
        assert_string_equal(json_string_value(json_array_get(r, 2)), "KR");
        json_decref(out);

        out = norm(with(base(), "regions", json_array()), NC_NOTICE_CHECK);
        assert_int_equal(json_array_size(json_object_get(out, "regions")), 0);
        json_decref(out);
        out = norm(with(base(), "regions", json_null()), NC_NOTICE_CHECK);
        assert_true(json_is_array(json_object_get(out, "regions")));
        assert_int_equal(json_array_size(json_object_get(out, "regions")), 0);
        json_decref(out);
}

static void test_plain_string_title(void **state)
{
        json_t *out;

        (void)state;
        out = norm(json_pack("{s:s, s:s, s:s, s:s}", "category", "news", "title", TITLE_EN,
                             "summary", "A joint delegation visits Lima and Sao Paulo.", "body",
                             "First paragraph.\n\nSecond paragraph."),
                   NC_NOTICE_CHECK);
        assert_true(json_is_object(json_object_get(out, "title")));
        assert_int_equal(json_object_size(json_object_get(out, "title")), 1);
        assert_string_equal(text(out, "title", cfg.default_language), TITLE_EN);
        assert_string_equal(text(out, "summary", "en"),
                            "A joint delegation visits Lima and Sao Paulo.");
        assert_string_equal(text(out, "body", "en"), "First paragraph.\n\nSecond paragraph.");
        assert_string_equal(str(out, "lang"), "en");
        json_decref(out);
}

static void test_body_crlf_folded(void **state)
{
        json_t *out;

        (void)state;
        out = norm(with(base(), "body",
                        json_pack("{s:s, s:s}", "en", "Line one.\r\n\r\nLine two.\r\nLine three.",
                                  "es", "Tab\tkept.\nLF kept.")),
                   NC_NOTICE_CHECK);
        assert_string_equal(text(out, "body", "en"), "Line one.\n\nLine two.\nLine three.");
        assert_string_equal(text(out, "body", "es"), "Tab\tkept.\nLF kept.");
        json_decref(out);

        /* A lone CR is not a line ending we accept. */
        bad(with(base(), "body", json_string("old\rmac")), "body.en: ", "carriage return (U+000D)");
        bad(with(base(), "body", json_string("bell\x07")),
            "body.en: ", "control character (U+0007)");
}

static void test_supersedes(void **state)
{
        json_t *out;

        (void)state;
        out = norm(base(), NC_NOTICE_CHECK);
        assert_non_null(json_object_get(out, "supersedes"));
        assert_true(json_is_null(json_object_get(out, "supersedes")));
        json_decref(out);

        out = norm(with(base(), "supersedes", json_string("015C9999-9C00-7D1E-9F20-A1B2C3D4E5F6")),
                   NC_NOTICE_INPUT);
        assert_string_equal(str(out, "supersedes"), EXAMPLE_SUPERSEDES);
        json_decref(out);

        bad(with(base(), "supersedes", json_string("previous")), "supersedes: ", "must be a UUID");
}

static void test_stored_requires_id_and_published_at(void **state)
{
        json_t *out;

        (void)state;
        bad_cfg(with(base(), "published_at", json_string("2017-06-20T09:00:00+09:00")), &cfg,
                NC_NOTICE_STORED, "id: ", "is required");
        bad_cfg(with(base(), "id", json_string(EXAMPLE_ID)), &cfg, NC_NOTICE_STORED,
                "published_at: ", "is required");
        bad_cfg(with(with(base(), "id", json_null()), "published_at",
                     json_string("2017-06-20T09:00:00+09:00")),
                &cfg, NC_NOTICE_STORED, "id: ", "is required");
        bad_cfg(with(with(base(), "id", json_string(EXAMPLE_ID)), "published_at", json_null()),
                &cfg, NC_NOTICE_STORED, "published_at: ", "is required");

        out = norm(with(with(base(), "id", json_string(EXAMPLE_ID)), "published_at",
                        json_string("2017-06-20T09:00:00+09:00")),
                   NC_NOTICE_STORED);
        assert_string_equal(str(out, "id"), EXAMPLE_ID);
        assert_string_equal(str(out, "published_at"), "2017-06-20T09:00:00+09:00");
        json_decref(out);
}

static void test_check_assigns_nothing(void **state)
{
        json_t *out;

        (void)state;
        out = norm(base(), NC_NOTICE_CHECK);
        assert_null(json_object_get(out, "id"));
        assert_null(json_object_get(out, "published_at"));
        /* Defaults that are part of normalisation are still filled in. */
        assert_string_equal(str(out, "priority"), "normal");
        assert_string_equal(str(out, "lang"), "en");
        json_decref(out);

        /* Given values are checked and kept. */
        out = norm(with(with(base(), "id", json_string(EXAMPLE_ID)), "published_at",
                        json_string("2017-06-20T09:00:00+09:00")),
                   NC_NOTICE_CHECK);
        assert_string_equal(str(out, "id"), EXAMPLE_ID);
        json_decref(out);
        bad_cfg(with(base(), "id", json_string("nope")), &cfg, NC_NOTICE_CHECK,
                "id: ", "must be a UUID");
}

/* Explicit nulls are "absent" (as in the other modes), so check mode assigns no id. */
static void test_check_assigns_nothing_explicit_nulls(void **state)
{
        json_t *out;

        (void)state;
        out = norm(with(with(base(), "id", json_null()), "published_at", json_null()),
                   NC_NOTICE_CHECK);
        if (json_object_get(out, "id")) {
                char id[64];

                snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(out, "id")));
                json_decref(out);
                fail_msg("check mode assigned id %s for \"id\": null", id);
        }
        assert_null(json_object_get(out, "published_at"));
        json_decref(out);
}

static void test_accessors(void **state)
{
        json_t *out;

        (void)state;
        out = norm(json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "category", "press", "lang", "es",
                             "title", "en", TITLE_EN, "es", TITLE_ES, "summary", "pt", "Resumo."),
                   NC_NOTICE_INPUT);
        assert_string_equal(nc_notice_category(out), "press");
        assert_string_equal(nc_notice_id(out), str(out, "id"));
        assert_string_equal(nc_notice_text(out, "title", "en"), TITLE_EN);
        /* Missing language: the notice's own language... */
        assert_string_equal(nc_notice_text(out, "title", "ko"), TITLE_ES);
        assert_string_equal(nc_notice_text(out, "title", NULL), TITLE_ES);
        /* ...or, if that is missing too, whatever there is. */
        assert_string_equal(nc_notice_text(out, "summary", "en"), "Resumo.");
        assert_null(nc_notice_text(out, "body", "en"));
        json_decref(out);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void assert_json_rejected(const char *s)
{
        json_error_t jerr;
        json_t *j = json_loads(s, 0, &jerr);

        if (j) {
                json_decref(j);
                fail_msg("jansson accepted: %s", s);
        }
        assert_true(jerr.text[0] != '\0');
}

static void test_invalid_json(void **state)
{
        (void)state;
        assert_json_rejected("");
        assert_json_rejected("{\"category\": \"news\", \"title\": \"x\",}");
        assert_json_rejected("{category: \"news\"}");
        assert_json_rejected("{\"category\": \"news\", \"title\": \"x\"");
        assert_json_rejected("{\"title\": 'single'}");
        assert_json_rejected("{\"a\": 1} {\"b\": 2}");
        /* Invalid UTF-8 never reaches the validator: jansson refuses it. */
        assert_json_rejected("{\"category\": \"news\", \"title\": \"caf\xff\"}");
        assert_json_rejected("{\"title\": \"caf\xe9\"}");          /* Latin-1 */
        assert_json_rejected("{\"title\": \"\xc0\xaf\"}");         /* overlong */
        assert_json_rejected("{\"title\": \"\xed\xa0\x80\"}");     /* UTF-16 surrogate */
        assert_json_rejected("{\"title\": \"\xf4\x90\x80\x80\"}"); /* > U+10FFFF */
        assert_json_rejected("{\"title\": \"\\ud800\"}");          /* lone surrogate escape */
        /* A NUL character needs JSON_ALLOW_NUL, which the programs never pass. */
        assert_json_rejected("{\"title\": \"a\\u0000b\"}");

        /* A JSON value that is not an object. */
        bad(json_pack("[s]", "news"), "notice: ", "must be a JSON object");
        bad(json_string("news"), "notice: ", "must be a JSON object");
}

static void test_title_carriage_return(void **state)
{
        (void)state;
        bad(with(base(), "title", json_pack("{s:s}", "en", "Delegation\rvisits Peru")),
            "title.en: ", "contains a carriage return (U+000D)");
        bad(with(base(), "title", json_pack("{s:s}", "en", "Delegation visits Peru\r\n")),
            "title.en: ", "carriage return (U+000D)");
}

static void test_title_line_feed(void **state)
{
        (void)state;
        bad(with(base(), "title",
                 json_pack("{s:s, s:s}", "en", TITLE_EN, "es", "Delegación\nPerú")),
            "title.es: ", "contains a line break (U+000A); it must be one line");
        /* A plain-string title is reported under the default language. */
        bad(with(base(), "title", json_string("Two\nlines")), "title.en: ", "line break (U+000A)");
        bad(with(base(), "summary", json_string("Two\nlines")),
            "summary.en: ", "line break (U+000A)");
        bad(with(base(), "source", json_string("Ministry\nof the Interior")),
            "source: ", "line break (U+000A)");
}

static void test_title_control_characters(void **state)
{
        static const struct {
                const char *s, *what;
        } cases[] = {
            {"Next line\xc2\x85here", "control character (U+0085)"},
            {"Line\xe2\x80\xa8separator", "control character (U+2028)"},
            {"Paragraph\xe2\x80\xa9separator", "control character (U+2029)"},
            {"Tab\there", "control character (U+0009)"},
            {"Escape\x1b[1m", "control character (U+001B)"},
            {"Delete\x7f", "control character (U+007F)"},
            {"C1\xc2\x9b", "control character (U+009B)"},
        };
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                bad(with(base(), "title", json_pack("{s:s}", "pt", cases[i].s)),
                    "title.pt: ", cases[i].what);
        /* The same rule for the other one-line fields. */
        bad(with(base(), "summary", json_string("a\xe2\x80\xa8z")), "summary.en: ", "U+2028");
        bad(with(base(), "source", json_string("a\xc2\x85z")), "source: ", "U+0085");
}

/* A title holding U+0000 (possible in a json_t built in memory, or read with JSON_ALLOW_NUL)
 * must be refused like any other control character, not cut short at the NUL. */
static void test_title_nul(void **state)
{
        json_error_t jerr;
        json_t *in;

        (void)state;
        in =
            json_loads("{\"category\": \"news\", \"title\": {\"en\": \"Delegation\\u0000visits\"}}",
                       JSON_ALLOW_NUL, &jerr);
        assert_non_null(in);
        bad(in, "title.en: ", "NUL character (U+0000)");
        bad(with(base(), "title", json_pack("{s:s#}", "en", "Delegation\0visits", (int)17)),
            "title.en: ", "NUL character (U+0000)");
}

static void test_unknown_category(void **state)
{
        (void)state;
        bad(with(base(), "category", json_string("weather")),
            "category: ", "'weather' is not configured");
        bad(with(base(), "category", json_string("News")),
            "category: ", "'News' is not configured");
        bad(with(base(), "category", json_integer(3)), "category: ", "must be a string");
        bad(json_pack("{s:s}", "title", TITLE_EN), "category: ", "is required");
}

static void test_bad_region(void **state)
{
        json_t *many = json_array();
        int i;

        (void)state;
        bad(with(base(), "regions", json_pack("[s,s]", "PE", "XX")),
            "regions[1]: ", "'XX' is not an ISO 3166-1 alpha-2 country code");
        bad(with(base(), "regions", json_pack("[s]", "peru")),
            "regions[0]: ", "must be a two-letter ISO 3166-1 code");
        bad(with(base(), "regions", json_pack("[s,s,s]", "BR", "PE", "PER")),
            "regions[2]: ", "must be a two-letter");
        bad(with(base(), "regions", json_pack("[s]", "")), "regions[0]: ", "must be a two-letter");
        bad(with(base(), "regions", json_pack("[i]", 51)), "regions[0]: ", "must be a two-letter");
        bad(with(base(), "regions", json_pack("[s]", "UK")),
            "regions[0]: ", "'UK' is not"); /* GB */
        bad(with(base(), "regions", json_pack("[s]", "\xc3\xa9")), "regions[0]: ", "is not");
        bad(with(base(), "regions", json_string("PE")), "regions: ", "must be an array");
        for (i = 0; i < 251; i++)
                json_array_append_new(many, json_string("PE"));
        bad(with(base(), "regions", many), "regions: ", "more than 250 entries");
}

static void test_bad_date(void **state)
{
        (void)state;
        bad(with(base(), "published_at", json_string("2017-06-20T09:00:00")),
            "published_at: ", "'2017-06-20T09:00:00'");
        bad(with(base(), "published_at", json_string("2017-06-20T09:00:00.000")),
            "published_at: ", "missing time zone");
        bad(with(base(), "published_at", json_string("2017-02-30T09:00:00+09:00")),
            "published_at: ", "is not a valid date and time");
        bad(with(base(), "published_at", json_string("next tuesday")),
            "published_at: ", "'next tuesday' is not an RFC 3339 date-time");
        bad(with(base(), "published_at", json_string("2017-06-20")),
            "published_at: ", "is not an RFC 3339 date-time");
        bad(with(base(), "published_at", json_integer(1497916800)),
            "published_at: ", "must be a string");
}

static void test_oversized_body(void **state)
{
        char *s;
        json_t *out;

        (void)state;
        assert_int_equal(small_cfg.body_max, 100);
        /* At the limit: accepted. */
        s = repeat("x", 100);
        out = norm_cfg(with(base(), "body", json_string(s)), &small_cfg, NC_NOTICE_CHECK);
        json_decref(out);
        free(s);
        /* One byte over. */
        s = repeat("x", 101);
        bad_cfg(with(base(), "body", json_string(s)), &small_cfg, NC_NOTICE_CHECK,
                "body.en: ", "is 101 bytes long, the limit is 100");
        free(s);
        /* The limit is in bytes of UTF-8, not characters: 51 x "é" is 102 bytes. */
        s = repeat("\xc3\xa9", 51);
        bad_cfg(with(base(), "body", json_pack("{s:s}", "es", s)), &small_cfg, NC_NOTICE_CHECK,
                "body.es: ", "is 102 bytes long, the limit is 100");
        free(s);
        /* Measured after CRLF folding: 150 bytes of "a\r\n" are 100 bytes of "a\n". */
        s = repeat("a\r\n", 50);
        out = norm_cfg(with(base(), "body", json_string(s)), &small_cfg, NC_NOTICE_CHECK);
        json_decref(out);
        free(s);
        /* The title limit too. */
        s = repeat("t", 65);
        bad_cfg(with(base(), "title", json_string(s)), &small_cfg, NC_NOTICE_CHECK,
                "title.en: ", "is 65 bytes long, the limit is 64");
        free(s);
}

static void test_oversized_notice(void **state)
{
        char *s;
        json_t *out;

        (void)state;
        assert_int_equal(small_cfg.notice_max, 600);
        /* Every field within its own limit, the whole over 600 bytes of JSON: normalising
         * succeeds, serialising (what is produced to Kafka) refuses it. */
        char err[256] = "", *dump;
        size_t len = 0;

        s = repeat("s", 560);
        out = norm_cfg(with(base(), "summary", json_string(s)), &small_cfg, NC_NOTICE_INPUT);
        assert_null(nc_notice_serialise(out, &small_cfg, &len, err, sizeof(err)));
        assert_non_null(strstr(err, "notice: "));
        assert_non_null(strstr(err, "bytes as JSON, the limit is 600"));
        json_decref(out);
        free(s);
        s = repeat("s", 200);
        out = norm_cfg(with(base(), "summary", json_string(s)), &small_cfg, NC_NOTICE_INPUT);
        dump = nc_notice_serialise(out, &small_cfg, &len, err, sizeof(err));
        assert_non_null(dump);
        assert_int_equal(len, strlen(dump));
        assert_true(len <= 600);
        free(dump);
        json_decref(out);
        free(s);
}

static void test_unknown_field(void **state)
{
        (void)state;
        bad(with(base(), "colour", json_string("blue")), "colour: ", "unknown field");
        bad(with(base(), "Title", json_string("x")), "Title: ", "unknown field");
        bad(with(base(), "published", json_string("2017-06-20T09:00:00+09:00")),
            "published: ", "unknown field");
}

static void test_missing_title(void **state)
{
        (void)state;
        bad(json_pack("{s:s}", "category", "news"), "title: ", "is required");
        bad(with(base(), "title", json_null()), "title: ", "is required");
        bad(with(base(), "title", json_integer(1)), "title: ", "must be a string or an object");
        bad(with(base(), "title", json_pack("[s]", "x")),
            "title: ", "must be a string or an object");
}

static void test_empty_title(void **state)
{
        (void)state;
        bad(with(base(), "title", json_object()), "title: ", "needs at least one language");
        bad(with(base(), "title", json_pack("{s:s}", "en", "")), "title.en: ", "must not be empty");
        bad(with(base(), "title", json_pack("{s:s}", "en", "   ")),
            "title.en: ", "must not be empty");
        bad(with(base(), "title", json_string("")), "title.en: ", "must not be empty");
        bad(with(base(), "title", json_pack("{s:i}", "en", 1)), "title.en: ", "must be a string");
        bad(with(base(), "summary", json_object()), "summary: ", "needs at least one language");
}

static void test_unconfigured_language(void **state)
{
        (void)state;
        bad(with(base(), "title", json_pack("{s:s, s:s}", "en", TITLE_EN, "fr", "Une délégation")),
            "title.fr: ", "language 'fr' is not configured");
        bad(with(base(), "summary", json_pack("{s:s}", "de", "Eine Delegation")),
            "summary.de: ", "language 'de' is not configured");
        bad(with(base(), "body", json_pack("{s:s}", "EN", "Body")),
            "body.EN: ", "language 'EN' is not configured");
        /* The small configuration has no Korean. */
        bad_cfg(with(base(), "title", json_pack("{s:s, s:s}", "en", TITLE_EN, "ko", "전자정부")),
                &small_cfg, NC_NOTICE_CHECK, "title.ko: ", "language 'ko' is not configured");
}

static void test_bad_url(void **state)
{
        char *s, *u;
        json_t *out;

        (void)state;
        bad(with(base(), "url", json_string("ftp://ftp.mois.go.kr/notice.txt")),
            "url: ", "must start with https:// or http://");
        bad(with(base(), "url", json_string("www.mois.go.kr/eng/")), "url: ", "must start with");
        bad(with(base(), "url", json_string("javascript:alert(1)")), "url: ", "must start with");
        bad(with(base(), "url", json_string("https://www.mois.go.kr/eng/news notices")),
            "url: ", "contains a space");
        bad(with(base(), "url", json_string("https://www.mois.go.kr/eng/\tx")),
            "url: ", "contains a space, control or non-ASCII character");
        bad(with(base(), "url", json_string("https://www.mois.go.kr/caf\xc3\xa9")),
            "url: ", "non-ASCII");
        bad(with(base(), "url", json_string("https://")), "url: ", "has no host");
        bad(with(base(), "url", json_string("https:///eng/")), "url: ", "has no host");
        bad(with(base(), "url", json_integer(1)), "url: ", "must be a string");
        s = repeat("a", 2048);
        u = malloc(2048 + 16);
        assert_non_null(u);
        snprintf(u, 2048 + 16, "https://x.kr/%s", s);
        bad(with(base(), "url", json_string(u)), "url: ", "longer than 2048 bytes");
        free(u);
        free(s);

        out = norm(with(base(), "url", json_string("http://www.mois.go.kr/eng/?a=1&b=%20")),
                   NC_NOTICE_CHECK);
        assert_string_equal(str(out, "url"), "http://www.mois.go.kr/eng/?a=1&b=%20");
        json_decref(out);
}

static void test_bad_id(void **state)
{
        (void)state;
        bad(with(base(), "id", json_string("not-a-uuid")), "id: ", "must be a UUID");
        bad(with(base(), "id", json_string("015cc2cc-7c00-7a3b-8c4d-5e6f7081920")),
            "id: ", "must be a UUID");
        bad(with(base(), "id", json_string("{015cc2cc-7c00-7a3b-8c4d-5e6f70819203}")),
            "id: ", "must be a UUID");
        bad(with(base(), "id", json_string("015cc2cc7c007a3b8c4d5e6f70819203")),
            "id: ", "must be a UUID");
        bad(with(base(), "id", json_integer(42)), "id: ", "must be a UUID");
        bad(with(base(), "id", json_string("")), "id: ", "must be a UUID");
}

static void test_supersedes_self(void **state)
{
        (void)state;
        bad(with(with(base(), "id", json_string(EXAMPLE_ID)), "supersedes",
                 json_string(EXAMPLE_ID)),
            "supersedes: ", "cannot supersede itself");
        /* Case does not make it a different notice. */
        bad(with(with(base(), "id", json_string(EXAMPLE_ID)), "supersedes",
                 json_string("015CC2CC-7C00-7A3B-8C4D-5E6F70819203")),
            "supersedes: ", "cannot supersede itself");
        bad_cfg(with(with(base(), "id", json_string("015CC2CC-7C00-7A3B-8C4D-5E6F70819203")),
                     "supersedes", json_string(EXAMPLE_ID)),
                &cfg, NC_NOTICE_CHECK, "supersedes: ", "cannot supersede itself");
}

static void test_bad_priority(void **state)
{
        (void)state;
        bad(with(base(), "priority", json_string("high")),
            "priority: ", "must be \"normal\" or \"urgent\"");
        bad(with(base(), "priority", json_string("URGENT")), "priority: ", "must be");
        bad(with(base(), "priority", json_string("")), "priority: ", "must be");
        bad(with(base(), "priority", json_integer(1)), "priority: ", "must be");
        bad(with(base(), "priority", json_true()), "priority: ", "must be");
}

static void test_bad_source(void **state)
{
        char *s;

        (void)state;
        bad(with(base(), "source", json_integer(1)), "source: ", "must be a string");
        s = repeat("m", 301);
        bad(with(base(), "source", json_string(s)),
            "source: ", "is 301 bytes long, the limit is 300");
        free(s);
}

static void test_text_check_line(void **state)
{
        char err[256];

        (void)state;
        assert_int_equal(nc_text_check_line("name", "Ana Silva", 20, err, sizeof(err)), 0);
        assert_int_equal(nc_text_check_line("name", "", 20, err, sizeof(err)), 0);
        assert_int_equal(nc_text_check_line("name", "Ana\nSilva", 20, err, sizeof(err)), -1);
        assert_string_equal(err, "name: contains a line break (U+000A); it must be one line");
        assert_int_equal(nc_text_check_line("name", "Ana Silva", 8, err, sizeof(err)), -1);
        assert_string_equal(err, "name: is 9 bytes long, the limit is 8");
}

/* ---- withdrawals -------------------------------------------------------------------------- */

static void test_withdrawal_ok(void **state)
{
        char err[512] = "";
        json_t *ev;

        (void)state;
        ev = nc_notice_withdrawal("015CC2CC-7C00-7A3B-8C4D-5E6F70819203", "news",
                                  "Published by mistake; see the corrected notice.", &cfg, NOW, err,
                                  sizeof(err));
        if (!ev)
                fail_msg("rejected: %s", err);
        assert_string_equal(str(ev, "type"), NC_EVENT_WITHDRAWN);
        assert_string_equal(str(ev, "id"), EXAMPLE_ID);
        assert_string_equal(str(ev, "category"), "news");
        assert_string_equal(str(ev, "withdrawn_at"), NOW_TEXT);
        assert_string_equal(str(ev, "reason"), "Published by mistake; see the corrected notice.");
        assert_int_equal(nc_notice_withdrawal_check(ev, &cfg, err, sizeof(err)), 0);
        json_decref(ev);

        ev = nc_notice_withdrawal(EXAMPLE_ID, "alerts", NULL, &cfg, NOW, err, sizeof(err));
        if (!ev)
                fail_msg("rejected: %s", err);
        assert_true(json_is_null(json_object_get(ev, "reason")));
        assert_int_equal(nc_notice_withdrawal_check(ev, &cfg, err, sizeof(err)), 0);
        json_decref(ev);
}

static void withdrawal_bad(const char *id, const char *category, const char *reason,
                           const char *prefix, const char *what)
{
        char err[512] = "";
        json_t *ev = nc_notice_withdrawal(id, category, reason, &cfg, NOW, err, sizeof(err));

        if (ev) {
                json_decref(ev);
                fail_msg("withdrawal of %s in %s accepted", id, category);
        }
        if (strncmp(err, prefix, strlen(prefix)) != 0)
                fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
        if (!strstr(err, what))
                fail_msg("error \"%s\" does not mention \"%s\"", err, what);
}

static void test_withdrawal_reason_newline(void **state)
{
        (void)state;
        withdrawal_bad(EXAMPLE_ID, "news", "Wrong date.\nSee the new notice.",
                       "reason: ", "line break (U+000A)");
        withdrawal_bad(EXAMPLE_ID, "news", "Wrong date.\r", "reason: ", "carriage return");
        withdrawal_bad(EXAMPLE_ID, "news", "caf\xe9", "reason: ", "not valid UTF-8");
}

static void test_withdrawal_bad_category(void **state)
{
        (void)state;
        withdrawal_bad(EXAMPLE_ID, "weather", NULL, "category: ", "'weather' is not configured");
        withdrawal_bad(EXAMPLE_ID, "", NULL, "category: ", "is not configured");
}

static void test_withdrawal_bad_id(void **state)
{
        (void)state;
        withdrawal_bad("not-a-uuid", "news", NULL, "id: ", "must be a UUID");
        withdrawal_bad("", "news", NULL, "id: ", "must be a UUID");
}

/* An id longer than a UUID must be refused, not cut down to its first 36 characters. */
static void test_withdrawal_overlong_id(void **state)
{
        (void)state;
        withdrawal_bad(EXAMPLE_ID "-and-more", "news", NULL, "id: ", "must be a UUID");
}

static void test_withdrawal_check(void **state)
{
        char err[512] = "";
        json_t *ev;

        (void)state;
        ev = json_pack("{s:s, s:s, s:s, s:s, s:n}", "type", NC_EVENT_WITHDRAWN, "id", EXAMPLE_ID,
                       "category", "news", "withdrawn_at", NOW_TEXT, "reason");
        assert_int_equal(nc_notice_withdrawal_check(ev, &cfg, err, sizeof(err)), 0);

        json_object_set_new(ev, "extra", json_true());
        assert_int_equal(nc_notice_withdrawal_check(ev, &cfg, err, sizeof(err)), -1);
        assert_string_equal(err, "extra: unknown field");
        json_object_del(ev, "extra");

        json_object_set_new(ev, "type", json_string(NC_EVENT_PUBLISHED));
        assert_int_equal(nc_notice_withdrawal_check(ev, &cfg, err, sizeof(err)), -1);
        assert_true(strncmp(err, "type: ", 6) == 0);
        json_object_set_new(ev, "type", json_string(NC_EVENT_WITHDRAWN));

        json_object_set_new(ev, "withdrawn_at", json_string("2017-06-20 09:00"));
        assert_int_equal(nc_notice_withdrawal_check(ev, &cfg, err, sizeof(err)), -1);
        assert_true(strncmp(err, "withdrawn_at: ", 14) == 0);
        json_object_set_new(ev, "withdrawn_at", json_string(NOW_TEXT));

        json_object_set_new(ev, "reason", json_integer(1));
        assert_int_equal(nc_notice_withdrawal_check(ev, &cfg, err, sizeof(err)), -1);
        assert_string_equal(err, "reason: must be a string");
        json_decref(ev);

        assert_int_equal(nc_notice_withdrawal_check(NULL, &cfg, err, sizeof(err)), -1);
        assert_true(strncmp(err, "withdrawal: ", 12) == 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_full_notice_valid),
            cmocka_unit_test(test_input_assigns_id_and_published_at),
            cmocka_unit_test(test_priority_default),
            cmocka_unit_test(test_lang_defaulting),
            cmocka_unit_test(test_regions_normalised),
            cmocka_unit_test(test_plain_string_title),
            cmocka_unit_test(test_body_crlf_folded),
            cmocka_unit_test(test_supersedes),
            cmocka_unit_test(test_stored_requires_id_and_published_at),
            cmocka_unit_test(test_check_assigns_nothing),
            cmocka_unit_test(test_check_assigns_nothing_explicit_nulls),
            cmocka_unit_test(test_accessors),
            cmocka_unit_test(test_invalid_json),
            cmocka_unit_test(test_title_carriage_return),
            cmocka_unit_test(test_title_line_feed),
            cmocka_unit_test(test_title_control_characters),
            cmocka_unit_test(test_title_nul),
            cmocka_unit_test(test_unknown_category),
            cmocka_unit_test(test_bad_region),
            cmocka_unit_test(test_bad_date),
            cmocka_unit_test(test_oversized_body),
            cmocka_unit_test(test_oversized_notice),
            cmocka_unit_test(test_unknown_field),
            cmocka_unit_test(test_missing_title),
            cmocka_unit_test(test_empty_title),
            cmocka_unit_test(test_unconfigured_language),
            cmocka_unit_test(test_bad_url),
            cmocka_unit_test(test_bad_id),
            cmocka_unit_test(test_supersedes_self),
            cmocka_unit_test(test_bad_priority),
            cmocka_unit_test(test_bad_source),
            cmocka_unit_test(test_text_check_line),
            cmocka_unit_test(test_withdrawal_ok),
            cmocka_unit_test(test_withdrawal_reason_newline),
            cmocka_unit_test(test_withdrawal_bad_category),
            cmocka_unit_test(test_withdrawal_bad_id),
            cmocka_unit_test(test_withdrawal_overlong_id),
            cmocka_unit_test(test_withdrawal_check),
        };

        return cmocka_run_group_tests_name("nc_notice", tests, group_setup, group_teardown);
}
