/* Unit tests for common/nc_subscriber.c: subscriber import from CSV (nc_csv_parse +
 * nc_subscriber_from_csv + nc_subscriber_normalise) and validation of each field. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_config.h"
#include "nc_csv.h"
#include "nc_subscriber.h"
#include "nc_util.h"

#define NOW      INT64_C(1497916800123)
#define NOW_TEXT "2017-06-20T00:00:00.123Z"
#define HEADER   "email,name,lang,categories,regions,frequency,tz,send_at\n"

static nc_config_t cfg;      /* built-in defaults: en es pt ko; news press tenders alerts; UTC */
static nc_config_t full_cfg; /* tests/unit/data/noticecast-full.conf: es, America/Lima */

static int group_setup(void **state)
{
        (void)state;
        return nc_test_configs_load(&cfg, &full_cfg, "noticecast-full.conf");
}

static int group_teardown(void **state)
{
        (void)state;
        nc_test_configs_free(&cfg, &full_cfg);
        return 0;
}

static void parse_csv(const char *text, size_t len, nc_csv_t *csv)
{
        char err[256] = "";

        if (nc_csv_parse(text, len, csv, err, sizeof(err)) != 0)
                fail_msg("CSV rejected: %s", err);
        assert_true(csv->n >= 1);
}

/* Imports record ROW (1 = the first after the header) of CSV: returns the normalised record,
 * or NULL with ERR set; *STAGE tells which step refused it (1 from_csv, 2 normalise). */
static json_t *import(nc_csv_t *csv, size_t row, const nc_config_t *c, char *err, size_t size,
                      int *stage)
{
        json_t *in, *out;

        assert_true(row < csv->n);
        *stage = 1;
        in = nc_subscriber_from_csv(csv->rows[0].fields, csv->rows[0].n, csv->rows[row].fields,
                                    csv->rows[row].n, err, size);
        if (!in)
                return NULL;
        *stage = 2;
        out = nc_subscriber_normalise(in, c, NOW, err, size);
        json_decref(in);
        return out;
}

/* Imports the one record of HEADER + LINE, which must be refused with "PREFIX...WHAT...". */
static void import_bad(const char *line, const char *prefix, const char *what)
{
        char text[2048], err[512] = "";
        nc_csv_t csv;
        json_t *out;
        int stage;

        snprintf(text, sizeof(text), "%s%s", HEADER, line);
        parse_csv(text, strlen(text), &csv);
        assert_int_equal(csv.n, 2);
        out = import(&csv, 1, &cfg, err, sizeof(err), &stage);
        nc_csv_free(&csv);
        if (out) {
                json_decref(out);
                fail_msg("accepted: %s", line);
        }
        if (strncmp(err, prefix, strlen(prefix)) != 0)
                fail_msg("%s: error \"%s\" does not start with \"%s\"", line, err, prefix);
        if (!strstr(err, what))
                fail_msg("%s: error \"%s\" does not mention \"%s\"", line, err, what);
}

static const char *str(const json_t *o, const char *key)
{
        const char *s = json_string_value(json_object_get(o, key));

        if (!s)
                fail_msg("\"%s\" is not a string", key);
        return s;
}

static void assert_list(const json_t *a, int n, ...)
{
        va_list ap;
        int i;

        assert_true(json_is_array(a));
        assert_int_equal(json_array_size(a), n);
        va_start(ap, n);
        for (i = 0; i < n; i++)
                assert_string_equal(json_string_value(json_array_get(a, i)), va_arg(ap, char *));
        va_end(ap);
}

static void test_columns(void **state)
{
        static const char *const want[] = {"email",   "name",      "lang", "categories",
                                           "regions", "frequency", "tz",   "send_at"};
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                assert_string_equal(nc_subscriber_csv_columns[i], want[i]);
        assert_null(nc_subscriber_csv_columns[i]);
}

static void test_good_rows(void **state)
{
        char path[1024], err[512] = "", *text;
        size_t len;
        nc_csv_t csv;
        json_t *out;
        int stage;

        (void)state;
        nc_test_data_path("subscribers-good.csv", path, sizeof(path));
        text = nc_file_read(path, &len, err, sizeof(err));
        if (!text)
                fail_msg("%s", err);
        parse_csv(text, len, &csv);
        free(text);
        assert_int_equal(csv.n, 4); /* header, three records; the blank line is skipped */
        assert_int_equal(csv.rows[3].line, 5);

        /* Every field given; the e-mail address is the key, lower-cased. */
        out = import(&csv, 1, &cfg, err, sizeof(err), &stage);
        if (!out)
                fail_msg("line 2 refused: %s", err);
        assert_string_equal(str(out, "id"), "ana.silva@example.com");
        assert_string_equal(str(out, "email"), "Ana.Silva@Example.COM");
        assert_string_equal(str(out, "name"), "Silva, Ana");
        assert_string_equal(str(out, "lang"), "pt");
        assert_list(json_object_get(out, "categories"), 2, "news", "alerts");
        assert_list(json_object_get(out, "regions"), 2, "PE", "BR");
        assert_string_equal(str(out, "frequency"), "weekly");
        assert_string_equal(str(out, "tz"), "America/Lima");
        assert_string_equal(str(out, "send_at"), "07:30");
        assert_string_equal(str(out, "updated_at"), NOW_TEXT);
        json_decref(out);

        /* Only the address: every default filled in. */
        out = import(&csv, 2, &cfg, err, sizeof(err), &stage);
        if (!out)
                fail_msg("line 3 refused: %s", err);
        assert_string_equal(str(out, "id"), "kim@example.org");
        assert_string_equal(str(out, "name"), "");
        assert_string_equal(str(out, "lang"), "en");
        assert_list(json_object_get(out, "categories"), 0);
        assert_list(json_object_get(out, "regions"), 0);
        assert_string_equal(str(out, "frequency"), "daily");
        assert_string_equal(str(out, "tz"), "UTC");
        assert_string_equal(str(out, "send_at"), "08:00");
        json_decref(out);

        /* Doubled quotes, non-ASCII name, duplicate regions in two cases. */
        out = import(&csv, 3, &cfg, err, sizeof(err), &stage);
        if (!out)
                fail_msg("line 5 refused: %s", err);
        assert_string_equal(str(out, "name"), "Juan \"Juancho\" P\xc3\xa9rez");
        assert_string_equal(str(out, "lang"), "es");
        assert_list(json_object_get(out, "categories"), 1, "tenders");
        assert_list(json_object_get(out, "regions"), 1, "PE");
        assert_string_equal(str(out, "frequency"), "immediate");
        assert_string_equal(str(out, "send_at"), "23:59");
        json_decref(out);
        nc_csv_free(&csv);
}

static void test_defaults_follow_config(void **state)
{
        static const char text[] = HEADER "Kim@Example.org,Kim,,,,,,\n";
        char err[512] = "";
        nc_csv_t csv;
        json_t *out;
        int stage;

        (void)state;
        parse_csv(text, sizeof(text) - 1, &csv);
        out = import(&csv, 1, &full_cfg, err, sizeof(err), &stage);
        if (!out)
                fail_msg("refused: %s", err);
        assert_string_equal(str(out, "lang"), "es");
        assert_string_equal(str(out, "tz"), "America/Lima");
        assert_string_equal(str(out, "id"), "kim@example.org");
        json_decref(out);
        nc_csv_free(&csv);
}

static void test_cells_trimmed_and_split(void **state)
{
        static const char text[] = "send_at,email,categories,regions\n"
                                   " 09:15 ,  ana@example.org\t,\" news , press;alerts \","
                                   "\"br pe,,;\"\n";
        char err[512] = "";
        nc_csv_t csv;
        json_t *out;
        int stage;

        (void)state;
        parse_csv(text, sizeof(text) - 1, &csv);
        /* Columns in any order; cells trimmed; lists split on ',', ';' and blanks. */
        out = import(&csv, 1, &cfg, err, sizeof(err), &stage);
        if (!out)
                fail_msg("refused (stage %d): %s", stage, err);
        assert_string_equal(str(out, "email"), "ana@example.org");
        assert_string_equal(str(out, "send_at"), "09:15");
        assert_list(json_object_get(out, "categories"), 3, "news", "press", "alerts");
        assert_list(json_object_get(out, "regions"), 2, "BR", "PE");
        json_decref(out);
        nc_csv_free(&csv);
}

static void test_bad_email(void **state)
{
        (void)state;
        import_bad("not-an-email,Ana,,,,,,\n", "email: ", "'not-an-email' is not an email address");
        import_bad("ana@example,Ana,,,,,,\n", "email: ", "invalid domain");
        import_bad("ana@@example.org,Ana,,,,,,\n", "email: ", "not an email address");
        import_bad("ana silva@example.org,Ana,,,,,,\n", "email: ", "bad character");
        import_bad("\"Ana <ana@example.org>\",Ana,,,,,,\n", "email: ", "bad character");
        import_bad("ana@exa..mple.org,Ana,,,,,,\n", "email: ", "invalid domain");
        import_bad(",Ana,,,,,,\n", "email: ", "is required");
}

static void test_unknown_lang(void **state)
{
        (void)state;
        import_bad("ana@example.org,Ana,fr,,,,,\n", "lang: ", "'fr' is not a configured language");
        import_bad("ana@example.org,Ana,PT,,,,,\n", "lang: ", "'PT' is not a configured language");
}

static void test_unknown_category(void **state)
{
        (void)state;
        import_bad("ana@example.org,Ana,,news;weather,,,,\n",
                   "categories: ", "'weather' is not a configured category");
        import_bad("ana@example.org,Ana,,News,,,,\n",
                   "categories: ", "'News' is not a configured category");
}

static void test_bad_region(void **state)
{
        (void)state;
        import_bad("ana@example.org,Ana,,,PE;XX,,,\n",
                   "regions: ", "'XX' is not an ISO 3166-1 alpha-2 country code");
        import_bad("ana@example.org,Ana,,,peru,,,\n", "regions: ", "'peru' is not an ISO 3166-1");
        import_bad("ana@example.org,Ana,,,BRA,,,\n", "regions: ", "'BRA' is not");
}

static void test_bad_frequency(void **state)
{
        (void)state;
        import_bad("ana@example.org,Ana,,,,monthly,,\n",
                   "frequency: ", "'monthly' must be immediate, daily or weekly");
        import_bad("ana@example.org,Ana,,,,Daily,,\n", "frequency: ", "'Daily' must be");
}

static void test_bad_tz(void **state)
{
        (void)state;
        import_bad("ana@example.org,Ana,,,,,Mars/Base,\n",
                   "tz: ", "'Mars/Base' is not a known IANA time zone");
        import_bad("ana@example.org,Ana,,,,,../../etc/passwd,\n", "tz: ", "is not a known");
        import_bad("ana@example.org,Ana,,,,,America,\n", "tz: ", "is not a known"); /* a folder */
        import_bad("ana@example.org,Ana,,,,,-05:00,\n", "tz: ", "is not a known");
}

static void test_bad_send_at(void **state)
{
        (void)state;
        import_bad("ana@example.org,Ana,,,,,,25:00\n",
                   "send_at: ", "'25:00' must be HH:MM (00:00-23:59)");
        import_bad("ana@example.org,Ana,,,,,,8am\n", "send_at: ", "'8am' must be HH:MM");
        import_bad("ana@example.org,Ana,,,,,,8:00\n", "send_at: ", "'8:00' must be HH:MM");
        import_bad("ana@example.org,Ana,,,,,,23:60\n", "send_at: ", "'23:60' must be HH:MM");
        import_bad("ana@example.org,Ana,,,,,,08:00:00\n", "send_at: ", "must be HH:MM");
}

static void test_name_with_newline(void **state)
{
        (void)state;
        import_bad("ana@example.org,\"Ana\nSilva\",,,,,,\n",
                   "name: ", "contains a line break (U+000A)");
        import_bad("ana@example.org,\"Ana\r\nSilva\",,,,,,\n",
                   "name: ", "contains a carriage return (U+000D)");
        import_bad("ana@example.org,Ana\xe2\x80\xa8Silva,,,,,,\n", "name: ", "U+2028");
}

static void test_wrong_number_of_fields(void **state)
{
        (void)state;
        import_bad("ana@example.org,Ana,pt,news,PE,daily,UTC\n",
                   "row: ", "has 7 fields, the header has 8");
        import_bad("ana@example.org,Silva, Ana,pt,news,PE,daily,UTC,08:00\n",
                   "row: ", "has 9 fields, the header has 8");
        import_bad("ana@example.org\n", "row: ", "has 1 fields, the header has 8");
}

/* nc_subscriber.h: from_csv "Returns NULL with errstr "field: message" on an unknown column".
 * That includes the record's own "id" and "updated_at", which import must not take from a
 * file. */
static void test_unknown_column(void **state)
{
        static const char *const headers[] = {"email,phone\nana@example.org,123\n",
                                              "id,email\nx@example.org,ana@example.org\n",
                                              "email,updated_at\nana@example.org,2000\n"};
        static const char *const names[] = {"phone: ", "id: ", "updated_at: "};
        char err[512], problems[1024] = "";
        nc_csv_t csv;
        json_t *in;
        size_t i, n;

        (void)state;
        for (i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
                err[0] = '\0';
                parse_csv(headers[i], strlen(headers[i]), &csv);
                in = nc_subscriber_from_csv(csv.rows[0].fields, csv.rows[0].n, csv.rows[1].fields,
                                            csv.rows[1].n, err, sizeof(err));
                nc_csv_free(&csv);
                n = strlen(problems);
                if (in) {
                        json_decref(in);
                        snprintf(problems + n, sizeof(problems) - n, "\n  column '%.*s' accepted",
                                 (int)strlen(names[i]) - 2, names[i]);
                } else if (strncmp(err, names[i], strlen(names[i])) != 0) {
                        snprintf(problems + n, sizeof(problems) - n,
                                 "\n  error \"%s\" does not start with \"%s\"", err, names[i]);
                }
        }
        if (problems[0])
                fail_msg("nc_subscriber_from_csv:%s", problems);
}

static void test_invalid_utf8_cell(void **state)
{
        (void)state;
        import_bad("ana@example.org,Jos\xe9,,,,,,\n", "name: ", "not valid UTF-8");
}

/* Records built in memory (the subscribe command): optional fields may be absent. */
static void test_normalise_json_minimal(void **state)
{
        char err[512] = "";
        json_t *in, *out;

        (void)state;
        in = json_pack("{s:s}", "email", "Ana@Example.org");
        out = nc_subscriber_normalise(in, &cfg, NOW, err, sizeof(err));
        json_decref(in);
        if (!out)
                fail_msg("refused: %s", err);
        assert_string_equal(str(out, "id"), "ana@example.org");
        assert_string_equal(str(out, "name"), "");
        assert_string_equal(str(out, "lang"), "en");
        assert_list(json_object_get(out, "categories"), 0);
        assert_list(json_object_get(out, "regions"), 0);
        assert_string_equal(str(out, "frequency"), "daily");
        assert_string_equal(str(out, "tz"), "UTC");
        assert_string_equal(str(out, "send_at"), "08:00");
        assert_string_equal(str(out, "updated_at"), NOW_TEXT);
        json_decref(out);
}

static void test_normalise_json_errors(void **state)
{
        static const struct {
                const char *json, *prefix, *what;
        } cases[] = {
            {"[]", "subscriber: ", "must be a JSON object"},
            {"{\"email\": \"a@example.org\", \"phone\": \"1\"}", "phone: ", "unknown field"},
            {"{\"email\": 5}", "email: ", "must be a string"},
            {"{\"name\": \"Ana\"}", "email: ", "is required"},
            {"{\"email\": \"a@example.org\", \"categories\": \"news\"}",
             "categories: ", "must be a list"},
            {"{\"email\": \"a@example.org\", \"regions\": [1]}",
             "regions[0]: ", "must be a short string"},
            {"{\"email\": \"a@example.org\", \"send_at\": 800}", "send_at: ", "must be a string"},
        };
        char err[512];
        json_error_t jerr;
        json_t *in, *out;
        size_t i;

        (void)state;
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                err[0] = '\0';
                in = json_loads(cases[i].json, 0, &jerr);
                assert_non_null(in);
                out = nc_subscriber_normalise(in, &cfg, NOW, err, sizeof(err));
                json_decref(in);
                if (out) {
                        json_decref(out);
                        fail_msg("accepted: %s", cases[i].json);
                }
                if (strncmp(err, cases[i].prefix, strlen(cases[i].prefix)) != 0 ||
                    !strstr(err, cases[i].what))
                        fail_msg("%s: error \"%s\", expected \"%s...%s\"", cases[i].json, err,
                                 cases[i].prefix, cases[i].what);
        }
}

/* What the pages show in their own language: every error has its kind, and its name. */
static void test_check_kinds(void **state)
{
        static const struct {
                const char *json;
                nc_subscriber_err_t why;
                const char *name;
        } cases[] = {
            {"[]", NC_SUB_MALFORMED, "malformed"},
            {"{\"email\": \"a@example.org\", \"phone\": \"1\"}", NC_SUB_MALFORMED, "malformed"},
            {"{\"name\": \"Ana\"}", NC_SUB_EMAIL_MISSING, "email_missing"},
            {"{\"email\": \"not-an-address\"}", NC_SUB_EMAIL_INVALID, "email_invalid"},
            {"{\"email\": \"a@example.org\", \"name\": \"A\\nB\"}", NC_SUB_NAME_INVALID,
             "name_invalid"},
            {"{\"email\": \"a@example.org\", \"lang\": \"fr\"}", NC_SUB_LANG_UNKNOWN,
             "lang_unknown"},
            {"{\"email\": \"a@example.org\", \"frequency\": \"hourly\"}", NC_SUB_FREQUENCY_INVALID,
             "frequency_invalid"},
            {"{\"email\": \"a@example.org\", \"tz\": \"Mars/Olympus\"}", NC_SUB_TZ_UNKNOWN,
             "tz_unknown"},
            {"{\"email\": \"a@example.org\", \"send_at\": \"25:00\"}", NC_SUB_SEND_AT_INVALID,
             "send_at_invalid"},
            {"{\"email\": \"a@example.org\", \"categories\": [\"sports\"]}",
             NC_SUB_CATEGORY_UNKNOWN, "category_unknown"},
            {"{\"email\": \"a@example.org\", \"regions\": [\"XX\"]}", NC_SUB_REGION_INVALID,
             "region_invalid"},
            {"{\"email\": \"a@example.org\", \"generation\": \"xyz\"}", NC_SUB_MALFORMED,
             "malformed"},
        };
        nc_subscriber_err_t why;
        char err[512];
        json_t *in, *out;

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                in = json_loads(cases[i].json, 0, NULL);
                assert_non_null(in);
                why = NC_SUB_OK;
                out = nc_subscriber_check(in, &cfg, NOW, &why, err, sizeof(err));
                json_decref(in);
                if (out)
                        fail_msg("accepted: %s", cases[i].json);
                if (why != cases[i].why)
                        fail_msg("%s: %s, expected %s (%s)", cases[i].json,
                                 nc_subscriber_err_name(why), cases[i].name, err);
                assert_string_equal(nc_subscriber_err_name(why), cases[i].name);
        }
        in = json_loads("{\"email\": \"a@example.org\"}", 0, NULL);
        out = nc_subscriber_check(in, &cfg, NOW, &why, err, sizeof(err));
        assert_non_null(out);
        assert_int_equal(why, NC_SUB_OK);
        json_decref(out);
        json_decref(in);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_columns),
            cmocka_unit_test(test_check_kinds),
            cmocka_unit_test(test_good_rows),
            cmocka_unit_test(test_defaults_follow_config),
            cmocka_unit_test(test_cells_trimmed_and_split),
            cmocka_unit_test(test_bad_email),
            cmocka_unit_test(test_unknown_lang),
            cmocka_unit_test(test_unknown_category),
            cmocka_unit_test(test_bad_region),
            cmocka_unit_test(test_bad_frequency),
            cmocka_unit_test(test_bad_tz),
            cmocka_unit_test(test_bad_send_at),
            cmocka_unit_test(test_name_with_newline),
            cmocka_unit_test(test_wrong_number_of_fields),
            cmocka_unit_test(test_unknown_column),
            cmocka_unit_test(test_invalid_utf8_cell),
            cmocka_unit_test(test_normalise_json_minimal),
            cmocka_unit_test(test_normalise_json_errors),
        };

        return cmocka_run_group_tests_name("nc_subscriber", tests, group_setup, group_teardown);
}
