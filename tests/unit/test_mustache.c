/* Unit tests for nc_mustache: the official Mustache spec files (from $NC_SPEC_DIR) plus the
 * behaviour noticecast relies on beyond the spec: plain-text mode, errors, limits, UTF-8. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "nc_mustache.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* Partials come from a JSON object {name: text}, as in the spec files. */
static const char *test_partial(void *opaque, const char *name)
{
        const json_t *p = json_object_get((const json_t *)opaque, name);

        return json_is_string(p) ? json_string_value(p) : NULL;
}

static json_t *test_json(const char *text)
{
        json_error_t jerr;
        json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

        if (!j)
                fail_msg("bad test JSON '%s': %s", text, jerr.text);
        return j;
}

/* Renders TMPL with DATA_JSON (and PARTIALS_JSON, may be NULL); both the one-shot and the
 * compiled form must agree.  Returns the malloc'd output or NULL with errstr set. */
static char *test_render(const char *tmpl, const char *data_json, const char *partials_json,
                         int escape, char *errstr, size_t errstr_size)
{
        json_t *data = data_json ? test_json(data_json) : NULL;
        json_t *partials = partials_json ? test_json(partials_json) : json_object();
        nc_mustache_opts_t opts = {test_partial, partials, escape, 0};
        char err2[256] = "";
        char *out, *out2 = NULL;
        nc_mustache_t *m;

        out = nc_mustache_render(tmpl, data, &opts, errstr, errstr_size);
        m = nc_mustache_compile(tmpl, err2, sizeof(err2));
        if (m)
                out2 = nc_mustache_render_compiled(m, data, &opts, err2, sizeof(err2));
        if (out || out2) {
                assert_non_null(out);
                assert_non_null(out2);
                assert_string_equal(out, out2);
        } else {
                assert_string_equal(errstr, err2);
        }
        free(out2);
        nc_mustache_destroy(m);
        json_decref(data);
        json_decref(partials);
        return out;
}

static void expect_render(const char *tmpl, const char *data_json, const char *partials_json,
                          int escape, const char *expected)
{
        char err[256] = "";
        char *out = test_render(tmpl, data_json, partials_json, escape, err, sizeof(err));

        if (!out)
                fail_msg("template '%s' failed: %s", tmpl, err);
        if (strcmp(out, expected) != 0) {
                print_error("template '%s'\n  expected '%s'\n       got '%s'\n", tmpl, expected,
                            out);
                free(out);
                fail();
        }
        free(out);
}

static void expect_error(const char *tmpl, const char *data_json, const char *partials_json,
                         const char *errpart)
{
        char err[256] = "";
        char *out = test_render(tmpl, data_json, partials_json, 1, err, sizeof(err));

        if (out) {
                print_error("template '%s' rendered '%s', expected error '%s'\n", tmpl, out,
                            errpart);
                free(out);
                fail();
        }
        if (!strstr(err, errpart))
                fail_msg("template '%s': error '%s' does not contain '%s'", tmpl, err, errpart);
}

/* ---- official spec ---------------------------------------------------------------------- */

static int spec_case(const char *file, const json_t *t)
{
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *tmpl = json_string_value(json_object_get(t, "template"));
        const char *expected = json_string_value(json_object_get(t, "expected"));
        json_t *partials = json_object_get(t, "partials");
        json_t *nopartials = json_object();
        nc_mustache_opts_t opts = {test_partial, partials ? partials : nopartials, 1, 0};
        char err[256] = "";
        char *out[3] = {NULL, NULL, NULL};
        nc_mustache_t *m;
        int ok = 1;

        if (!name || !tmpl || !expected) {
                print_error("%s: malformed test entry\n", file);
                json_decref(nopartials);
                return 0;
        }
        /* One-shot form, then the compiled form twice (the second time from the cache). */
        out[0] = nc_mustache_render(tmpl, json_object_get(t, "data"), &opts, err, sizeof(err));
        m = nc_mustache_compile(tmpl, err, sizeof(err));
        for (int i = 1; i < 3 && m; i++)
                out[i] = nc_mustache_render_compiled(m, json_object_get(t, "data"), &opts, err,
                                                     sizeof(err));
        for (int i = 0; i < 3; i++) {
                if (out[i] && strcmp(out[i], expected) == 0)
                        continue;
                print_error("%s: \"%s\" failed (%s)\n  template: \"%s\"\n  expected: \"%s\"\n"
                            "       got: \"%s\"%s%s\n",
                            file, name, i == 0 ? "render" : "compiled", tmpl, expected,
                            out[i] ? out[i] : "(null)",
                            out[i] ? "" : " error: ", out[i] ? "" : err);
                ok = 0;
                break;
        }
        for (int i = 0; i < 3; i++)
                free(out[i]);
        nc_mustache_destroy(m);
        json_decref(nopartials);
        return ok;
}

static void spec_file(const char *file)
{
        const char *dir = getenv("NC_SPEC_DIR");
        char path[4096];
        struct stat sb;
        json_error_t jerr;
        json_t *root, *tests;
        size_t i, passed = 0, total;

        if (!dir || !*dir || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
                print_message("mustache spec %s: skipped (NC_SPEC_DIR not set or missing)\n", file);
                skip();
        }
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        root = json_load_file(path, 0, &jerr);
        if (!root)
                fail_msg("%s: %s (line %d)", path, jerr.text, jerr.line);
        tests = json_object_get(root, "tests");
        assert_true(json_is_array(tests));
        total = json_array_size(tests);
        assert_true(total > 0);
        for (i = 0; i < total; i++)
                passed += (size_t)spec_case(file, json_array_get(tests, i));
        print_message("mustache spec %s: %zu/%zu passed\n", file, passed, total);
        json_decref(root);
        assert_int_equal(passed, total);
}

static void test_spec_comments(void **state)
{
        (void)state;
        spec_file("comments.json");
}

static void test_spec_delimiters(void **state)
{
        (void)state;
        spec_file("delimiters.json");
}

static void test_spec_interpolation(void **state)
{
        (void)state;
        spec_file("interpolation.json");
}

static void test_spec_inverted(void **state)
{
        (void)state;
        spec_file("inverted.json");
}

static void test_spec_partials(void **state)
{
        (void)state;
        spec_file("partials.json");
}

static void test_spec_sections(void **state)
{
        (void)state;
        spec_file("sections.json");
}

/* ---- own tests -------------------------------------------------------------------------- */

static void test_escape_html(void **state)
{
        const char *data = "{\"x\": \"<a href='u?a=1&b=2'>\\\"hi\\\"</a>\"}";

        (void)state;
        expect_render("{{x}}", data, NULL, 1,
                      "&lt;a href=&#39;u?a=1&amp;b=2&#39;&gt;&quot;hi&quot;&lt;/a&gt;");
        expect_render("{{{x}}}|{{&x}}", data, NULL, 1,
                      "<a href='u?a=1&b=2'>\"hi\"</a>|<a href='u?a=1&b=2'>\"hi\"</a>");
        /* Plain-text mode: nothing is escaped, whatever the tag. */
        expect_render("{{x}}|{{{x}}}|{{&x}}", data, NULL, 0,
                      "<a href='u?a=1&b=2'>\"hi\"</a>|<a href='u?a=1&b=2'>\"hi\"</a>|"
                      "<a href='u?a=1&b=2'>\"hi\"</a>");
}

static void test_default_opts(void **state)
{
        json_t *data = test_json("{\"x\": \"<b>\"}");
        char err[128] = "";
        char *out;

        (void)state;
        /* opts NULL: escaping on, no partials. */
        out = nc_mustache_render("{{x}}{{>p}}", data, NULL, err, sizeof(err));
        assert_non_null(out);
        assert_string_equal(out, "&lt;b&gt;");
        free(out);
        /* data NULL: every name is missing. */
        out = nc_mustache_render("[{{x}}{{#x}}y{{/x}}{{^x}}n{{/x}}{{.}}]", NULL, NULL, err,
                                 sizeof(err));
        assert_non_null(out);
        assert_string_equal(out, "[n]");
        free(out);
        out = nc_mustache_render("", data, NULL, err, sizeof(err));
        assert_non_null(out);
        assert_string_equal(out, "");
        free(out);
        assert_null(nc_mustache_render(NULL, data, NULL, err, sizeof(err)));
        /* errstr may be omitted. */
        assert_null(nc_mustache_render("{{", data, NULL, NULL, 0));
        json_decref(data);
}

static void test_errors(void **state)
{
        (void)state;
        expect_error("Hello {{name", NULL, NULL, "line 1: unclosed tag");
        expect_error("a\nb\n{{{name}}\n", NULL, NULL, "line 3: unclosed tag");
        expect_error("a\nb\n{{#items}}\n  {{name}}\n", NULL, NULL,
                     "line 3: unclosed section 'items'");
        expect_error("{{#a}}\n{{#b}}\n{{/a}}\n{{/b}}", NULL, NULL,
                     "line 3: closing tag 'a' does not match section 'b' opened on line 2");
        expect_error("x\n{{/a}}", NULL, NULL, "line 2: closing tag 'a' without an open section");
        expect_error("{{}}", NULL, NULL, "line 1: empty tag name");
        expect_error("{{#}}{{/}}", NULL, NULL, "line 1: empty tag name");
        expect_error("{{a b}}", NULL, NULL, "line 1: invalid tag name 'a b'");
        expect_error("{{a..b}}", NULL, NULL, "invalid tag name 'a..b'");
        expect_error("{{.a}}", NULL, NULL, "invalid tag name '.a'");
        expect_error("{{=<% %>}}", NULL, NULL, "line 1: unclosed tag");
        expect_error("{{= <% =}}", NULL, NULL, "invalid set delimiters tag");
        expect_error("{{= <% %> x =}}", NULL, NULL, "invalid set delimiters tag");
        expect_error("{{=<% %>=}}<%#a%>{{/a}}", NULL, NULL, "unclosed section 'a'");
        expect_error("{{>p}}", NULL, "{\"p\": \"\\n\\n{{#x}}\"}",
                     "partial 'p': line 3: unclosed section 'x'");
}

static void test_partial_recursion_cap(void **state)
{
        char err[256] = "";
        char *out;

        (void)state;
        expect_error("{{>p}}", NULL, "{\"p\": \"x{{>p}}\"}", "nested deeper than 64");
        expect_error("{{>a}}", "{}", "{\"a\": \"{{>b}}\", \"b\": \"{{#.}}{{>a}}{{/.}}\"}",
                     "nested deeper than 64");
        /* Legitimate recursion over data stops by itself. */
        out =
            test_render("{{>node}}",
                        "{\"n\": 1, \"kids\": [{\"n\": 2, \"kids\": [{\"n\": 3, \"kids\": []}]},"
                        " {\"n\": 4, \"kids\": []}]}",
                        "{\"node\": \"{{n}}({{#kids}}{{>node}}{{/kids}})\"}", 1, err, sizeof(err));
        assert_non_null(out);
        assert_string_equal(out, "1(2(3())4())");
        free(out);
}

static void test_nesting_cap(void **state)
{
        size_t n = NC_MUSTACHE_MAX_NESTING + 1, len = 0;
        char *tmpl = malloc(n * 12 + 1);
        char err[256] = "";
        char *out;

        (void)state;
        assert_non_null(tmpl);
        for (size_t i = 0; i < n; i++)
                len += (size_t)sprintf(tmpl + len, "{{#a}}");
        for (size_t i = 0; i < n; i++)
                len += (size_t)sprintf(tmpl + len, "{{/a}}");
        expect_error(tmpl, "{\"a\": true}", NULL, "sections nested deeper than");
        /* One level less is fine. */
        len = 0;
        for (size_t i = 0; i < n - 1; i++)
                len += (size_t)sprintf(tmpl + len, "{{#a}}");
        len += (size_t)sprintf(tmpl + len, "x");
        for (size_t i = 0; i < n - 1; i++)
                len += (size_t)sprintf(tmpl + len, "{{/a}}");
        out = test_render(tmpl, "{\"a\": true}", NULL, 1, err, sizeof(err));
        assert_non_null(out);
        assert_string_equal(out, "x");
        free(out);
        free(tmpl);
}

static void test_output_cap(void **state)
{
        json_t *data = test_json("{\"l\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}");
        nc_mustache_opts_t opts = {NULL, NULL, 1, 10};
        char err[128] = "";
        char *out;

        (void)state;
        out = nc_mustache_render("{{#l}}ab{{/l}}", data, &opts, err, sizeof(err));
        assert_null(out);
        assert_non_null(strstr(err, "output exceeds 10 bytes"));
        out = nc_mustache_render("{{#l}}a{{/l}}", data, &opts, err, sizeof(err));
        assert_non_null(out);
        assert_string_equal(out, "aaaaaaaaaa");
        free(out);
        json_decref(data);
}

static void test_utf8(void **state)
{
        const char *data = "{\"nombre\": \"José Ñúñez\", \"이름\": \"김민준 & 이서연\","
                           " \"items\": [\"café\", \"한국어\", \"¿qué?\"]}";

        (void)state;
        expect_render("¡Hola, {{nombre}}! 안녕하세요 {{이름}}님. "
                      "{{#items}}<{{.}}>{{/items}}",
                      data, NULL, 1,
                      "¡Hola, José Ñúñez! 안녕하세요 김민준 &amp; 이서연님. "
                      "<café><한국어><¿qué?>");
        expect_render("{{=« »=}}«nombre» «{이름}» {{nombre}}", data, NULL, 1,
                      "José Ñúñez 김민준 & 이서연 {{nombre}}");
        expect_render("{{이름}}", data, NULL, 0, "김민준 & 이서연");
}

static void test_values(void **state)
{
        (void)state;
        expect_render("{{a}} {{b}} {{c}} {{d}} {{e}} {{f}}",
                      "{\"a\": 0.1, \"b\": 1e100, \"c\": -2.5, \"d\": 3.0,"
                      " \"e\": 9007199254740993, \"f\": -0.000001}",
                      NULL, 1, "0.1 1e+100 -2.5 3 9007199254740993 -1e-06");
        expect_render("{{t}} {{f}} [{{n}}] {{o}} {{{a}}}",
                      "{\"t\": true, \"f\": false, \"n\": null, \"o\": {\"k\": \"<\"},"
                      " \"a\": [1, \"x\"]}",
                      NULL, 1, "true false [] {&quot;k&quot;:&quot;&lt;&quot;} [1,\"x\"]");
        /* Truthiness: only false, null, missing and [] are falsey; "" and 0 and {} are not. */
        expect_render("{{#s}}s{{/s}}{{#z}}z{{/z}}{{#o}}o{{/o}}{{^l}}l{{/l}}{{^n}}n{{/n}}",
                      "{\"s\": \"\", \"z\": 0, \"o\": {}, \"l\": [], \"n\": null}", NULL, 1,
                      "szoln");
        /* A null found in an inner context hides the outer value of the same name. */
        expect_render("{{#in}}[{{x}}]{{/in}}", "{\"x\": \"outer\", \"in\": {\"x\": null}}", NULL, 1,
                      "[]");
}

static void test_partial_indentation(void **state)
{
        (void)state;
        /* Nested standalone partials accumulate indentation; interpolated newlines are not
         * indented. */
        expect_render(
            "<ul>\n  {{>list}}\n</ul>\n", "{\"l\": [\"a\", \"b\\nc\"]}",
            "{\"list\": \"{{#l}}\\n  {{>item}}\\n{{/l}}\", \"item\": \"<li>{{.}}</li>\\n\"}", 1,
            "<ul>\n    <li>a</li>\n    <li>b\nc</li>\n</ul>\n");
        /* An inline partial is not indented, even inside an indented one. */
        expect_render("  {{>a}}\n", "{}", "{\"a\": \"1\\n{{>b}}!\\n\", \"b\": \"x\\ny\"}", 1,
                      "  1\n  x\ny!\n");
}

static void test_compiled_reuse(void **state)
{
        json_t *partials = test_json("{\"sig\": \"-- {{from}}\"}");
        nc_mustache_opts_t opts = {test_partial, partials, 0, 0};
        char err[128] = "";
        nc_mustache_t *m;

        (void)state;
        m = nc_mustache_compile("Hi {{name}},\n{{#n}}You have {{n}} messages.\n{{/n}}{{>sig}}", err,
                                sizeof(err));
        assert_non_null(m);
        for (int i = 0; i < 1000; i++) {
                json_t *data =
                    json_pack("{s:s, s:i, s:s}", "name", "Ana & Bo", "n", i, "from", "noticecast");
                char want[128];
                char *out = nc_mustache_render_compiled(m, data, &opts, err, sizeof(err));

                snprintf(want, sizeof(want), "Hi Ana & Bo,\nYou have %d messages.\n-- noticecast",
                         i);
                assert_non_null(out);
                assert_string_equal(out, want);
                free(out);
                json_decref(data);
        }
        /* A partial whose text changes between renders is recompiled, not served stale. */
        json_object_set_new(partials, "sig", json_string("Regards, {{from}}"));
        {
                json_t *data = json_pack("{s:s, s:i, s:s}", "name", "A", "n", 1, "from", "B");
                char *out = nc_mustache_render_compiled(m, data, &opts, err, sizeof(err));

                assert_non_null(out);
                assert_string_equal(out, "Hi A,\nYou have 1 messages.\nRegards, B");
                free(out);
                json_decref(data);
        }
        nc_mustache_destroy(m);
        nc_mustache_destroy(NULL);
        json_decref(partials);
}

/* A partial that changes while it is itself being rendered (recursively) must not be freed
 * under the renderer. */
static const char *test_changing_partial(void *opaque, const char *name)
{
        int *calls = opaque;

        (void)name;
        (*calls)++;
        return *calls == 1 ? "a{{#d}}{{>p}}{{/d}}" : *calls == 2 ? "b{{>p}}" : "c";
}

static void test_partial_changes_during_render(void **state)
{
        int calls = 0;
        nc_mustache_opts_t opts = {test_changing_partial, &calls, 1, 0};
        json_t *data = test_json("{\"d\": true}");
        char err[128] = "";
        char *out;

        (void)state;
        out = nc_mustache_render("{{>p}}", data, &opts, err, sizeof(err));
        assert_non_null(out);
        assert_string_equal(out, "abc");
        free(out);
        json_decref(data);
}

/* Linear time: a big template renders quickly (a quadratic scan would take minutes here). */
static void test_large_template(void **state)
{
        size_t n = 200000, len = 0;
        char *tmpl = malloc(n * 16 + 1);
        json_t *data = test_json("{\"x\": \"<>\", \"s\": [1, 2]}");
        char err[128] = "";
        nc_mustache_t *m;
        char *out;

        (void)state;
        assert_non_null(tmpl);
        for (size_t i = 0; i < n; i++)
                len += (size_t)sprintf(tmpl + len, i % 2 ? "a{{x}}\n" : "{{#s}}.{{/s}}\n");
        m = nc_mustache_compile(tmpl, err, sizeof(err));
        assert_non_null(m);
        out = nc_mustache_render_compiled(m, data, NULL, err, sizeof(err));
        assert_non_null(out);
        assert_int_equal(strlen(out), n / 2 * strlen("a&lt;&gt;\n") + n / 2 * strlen("..\n"));
        free(out);
        nc_mustache_destroy(m);
        free(tmpl);
        json_decref(data);
}

/* Random tag soup: every result is either a string or an error, never a crash or a leak. */
static void test_malformed_soup(void **state)
{
        static const char *const bits[] = {
            "{{", "}}",     "{{{",    "}}}",   "#a",     "/a",     "^b",     "/b",
            ">p", "!",      "=",      "<% %>", "%>",     "<%",     "&",      ".",
            "x",  "\n",     "  ",     "\r\n",  "{{#a}}", "{{/a}}", "{{>p}}", "{{=| |=}}",
            "|",  "{{^b}}", "{{/b}}", "a.b",   "{",      "}",
        };
        json_t *data = test_json("{\"a\": [1, {\"a\": []}], \"b\": false, \"x\": \"<\"}");
        json_t *partials = test_json("{\"p\": \"{{#a}}[{{>p}}]{{/a}}{{x}}\"}");
        nc_mustache_opts_t opts = {test_partial, partials, 1, 0};
        unsigned seed = 12345;
        char tmpl[256];
        char err[128];

        (void)state;
        for (int iter = 0; iter < 20000; iter++) {
                size_t len = 0;
                int parts;
                char *out;

                seed = seed * 1103515245u + 12345u;
                parts = (int)((seed >> 16) % 24);
                for (int i = 0; i < parts; i++) {
                        const char *b;

                        seed = seed * 1103515245u + 12345u;
                        b = bits[(seed >> 16) % (sizeof(bits) / sizeof(bits[0]))];
                        if (len + strlen(b) >= sizeof(tmpl))
                                break;
                        memcpy(tmpl + len, b, strlen(b));
                        len += strlen(b);
                }
                tmpl[len] = '\0';
                err[0] = '\0';
                out = nc_mustache_render(tmpl, data, &opts, err, sizeof(err));
                if (!out)
                        assert_true(err[0] != '\0');
                free(out);
        }
        json_decref(data);
        json_decref(partials);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_spec_comments),
            cmocka_unit_test(test_spec_delimiters),
            cmocka_unit_test(test_spec_interpolation),
            cmocka_unit_test(test_spec_inverted),
            cmocka_unit_test(test_spec_partials),
            cmocka_unit_test(test_spec_sections),
            cmocka_unit_test(test_escape_html),
            cmocka_unit_test(test_default_opts),
            cmocka_unit_test(test_errors),
            cmocka_unit_test(test_partial_recursion_cap),
            cmocka_unit_test(test_nesting_cap),
            cmocka_unit_test(test_output_cap),
            cmocka_unit_test(test_utf8),
            cmocka_unit_test(test_values),
            cmocka_unit_test(test_partial_indentation),
            cmocka_unit_test(test_compiled_reuse),
            cmocka_unit_test(test_partial_changes_during_render),
            cmocka_unit_test(test_large_template),
            cmocka_unit_test(test_malformed_soup),
        };

        return cmocka_run_group_tests_name("mustache", tests, NULL, NULL);
}
