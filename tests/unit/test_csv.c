/* Unit tests for common/nc_csv.c: the RFC 4180 reader used by subscriber import. */
#include "nc_test.h"

#include <string.h>

#include "nc_csv.h"

static void parse_ok(const char *text, size_t len, nc_csv_t *csv)
{
        char err[256] = "";

        if (nc_csv_parse(text, len, csv, err, sizeof(err)) != 0)
                fail_msg("CSV rejected: %s", err);
}

#define PARSE_OK(lit, csv) parse_ok((lit), sizeof(lit) - 1, (csv))

/* Asserts the parse fails with an error that starts with PREFIX (the "LINE: " part). */
static void parse_bad(const char *text, size_t len, const char *prefix, const char *what)
{
        char err[256] = "";
        nc_csv_t csv;

        memset(&csv, 0x5a, sizeof(csv));
        if (nc_csv_parse(text, len, &csv, err, sizeof(err)) == 0) {
                nc_csv_free(&csv);
                fail_msg("CSV accepted: \"%s\"", text);
        }
        if (strncmp(err, prefix, strlen(prefix)) != 0)
                fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
        if (!strstr(err, what))
                fail_msg("error \"%s\" does not mention \"%s\"", err, what);
        /* Nothing is left allocated and the result is empty. */
        assert_int_equal(csv.n, 0);
        assert_null(csv.rows);
}

#define PARSE_BAD(lit, prefix, what) parse_bad((lit), sizeof(lit) - 1, (prefix), (what))

static void assert_row(const nc_csv_t *csv, size_t i, int line, size_t n)
{
        assert_true(i < csv->n);
        if (csv->rows[i].line != line)
                fail_msg("row %zu starts on line %d, expected %d", i, csv->rows[i].line, line);
        assert_int_equal(csv->rows[i].n, n);
}

static void test_simple(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("email,name\na@example.org,Ana\nb@example.org,Bruno\n", &csv);
        assert_int_equal(csv.n, 3);
        assert_row(&csv, 0, 1, 2);
        assert_string_equal(csv.rows[0].fields[0], "email");
        assert_string_equal(csv.rows[0].fields[1], "name");
        assert_row(&csv, 2, 3, 2);
        assert_string_equal(csv.rows[2].fields[0], "b@example.org");
        assert_string_equal(csv.rows[2].fields[1], "Bruno");
        nc_csv_free(&csv);
        assert_int_equal(csv.n, 0);
}

static void test_empty_fields_and_no_final_newline(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("a,,c,\n,x", &csv);
        assert_int_equal(csv.n, 2);
        assert_row(&csv, 0, 1, 4);
        assert_string_equal(csv.rows[0].fields[1], "");
        assert_string_equal(csv.rows[0].fields[3], "");
        assert_row(&csv, 1, 2, 2);
        assert_string_equal(csv.rows[1].fields[0], "");
        assert_string_equal(csv.rows[1].fields[1], "x");
        nc_csv_free(&csv);

        PARSE_OK("", &csv);
        assert_int_equal(csv.n, 0);
        nc_csv_free(&csv);
}

static void test_quoted_commas(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("\"Silva, Ana\",\"news,alerts\",plain\n", &csv);
        assert_int_equal(csv.n, 1);
        assert_row(&csv, 0, 1, 3);
        assert_string_equal(csv.rows[0].fields[0], "Silva, Ana");
        assert_string_equal(csv.rows[0].fields[1], "news,alerts");
        assert_string_equal(csv.rows[0].fields[2], "plain");
        nc_csv_free(&csv);
}

static void test_doubled_quotes(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("\"Juan \"\"Juancho\"\" P\xc3\xa9rez\",\"\"\"\",\"\"\n", &csv);
        assert_int_equal(csv.n, 1);
        assert_row(&csv, 0, 1, 3);
        assert_string_equal(csv.rows[0].fields[0], "Juan \"Juancho\" P\xc3\xa9rez");
        assert_string_equal(csv.rows[0].fields[1], "\"");
        assert_string_equal(csv.rows[0].fields[2], "");
        nc_csv_free(&csv);
}

static void test_embedded_newlines(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("h1,h2\n"                         /* line 1 */
                 "\"first\nsecond\n\nfourth\",x\n" /* lines 2-5 */
                 "next,row\n"                      /* line 6 */
                 "\"a\nb\",\"c\nd\"\n"             /* lines 7-9 */
                 "last,one\n",                     /* line 10 */
                 &csv);
        assert_int_equal(csv.n, 5);
        assert_row(&csv, 0, 1, 2);
        assert_row(&csv, 1, 2, 2);
        assert_string_equal(csv.rows[1].fields[0], "first\nsecond\n\nfourth");
        assert_string_equal(csv.rows[1].fields[1], "x");
        assert_row(&csv, 2, 6, 2);
        assert_string_equal(csv.rows[2].fields[0], "next");
        assert_row(&csv, 3, 7, 2);
        assert_string_equal(csv.rows[3].fields[0], "a\nb");
        assert_string_equal(csv.rows[3].fields[1], "c\nd");
        assert_row(&csv, 4, 10, 2);
        assert_string_equal(csv.rows[4].fields[0], "last");
        nc_csv_free(&csv);

        /* One more record after the multi-line ones: its line is still right. */
        PARSE_OK("h\n\"a\nb\"\n\"c\nd\"\ne\n", &csv);
        assert_int_equal(csv.n, 4);
        assert_row(&csv, 1, 2, 1);
        assert_row(&csv, 2, 4, 1);
        assert_row(&csv, 3, 6, 1);
        assert_string_equal(csv.rows[3].fields[0], "e");
        nc_csv_free(&csv);
}

static void test_crlf(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("email,name\r\na@example.org,Ana\r\n\"b@example.org\",\"Bruno\"\r\n", &csv);
        assert_int_equal(csv.n, 3);
        assert_row(&csv, 0, 1, 2);
        assert_string_equal(csv.rows[0].fields[1], "name");
        assert_row(&csv, 1, 2, 2);
        assert_string_equal(csv.rows[1].fields[1], "Ana");
        assert_row(&csv, 2, 3, 2);
        assert_string_equal(csv.rows[2].fields[0], "b@example.org");
        assert_string_equal(csv.rows[2].fields[1], "Bruno");
        nc_csv_free(&csv);

        /* A CRLF inside a quoted field counts as one line; the next record's line is right. */
        PARSE_OK("h\r\n\"one\r\ntwo\"\r\nnext\r\n", &csv);
        assert_int_equal(csv.n, 3);
        assert_row(&csv, 1, 2, 1);
        assert_non_null(strstr(csv.rows[1].fields[0], "\n"));
        assert_row(&csv, 2, 4, 1);
        assert_string_equal(csv.rows[2].fields[0], "next");
        nc_csv_free(&csv);
}

static void test_bom(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("\xef\xbb\xbf"
                 "email,name\r\na@example.org,Ana\r\n",
                 &csv);
        assert_int_equal(csv.n, 2);
        assert_row(&csv, 0, 1, 2);
        assert_string_equal(csv.rows[0].fields[0], "email");
        assert_row(&csv, 1, 2, 2);
        nc_csv_free(&csv);

        /* A BOM is only special at the very start. */
        PARSE_OK("a,\xef\xbb\xbf"
                 "b\n",
                 &csv);
        assert_string_equal(csv.rows[0].fields[1], "\xef\xbb\xbf"
                                                   "b");
        nc_csv_free(&csv);
}

static void test_blank_lines_skipped(void **state)
{
        nc_csv_t csv;

        (void)state;
        PARSE_OK("\n\nemail\n\na@example.org\r\n\r\n\nb@example.org\n\n", &csv);
        assert_int_equal(csv.n, 3);
        assert_row(&csv, 0, 3, 1);
        assert_string_equal(csv.rows[0].fields[0], "email");
        assert_row(&csv, 1, 5, 1);
        assert_string_equal(csv.rows[1].fields[0], "a@example.org");
        assert_row(&csv, 2, 8, 1);
        assert_string_equal(csv.rows[2].fields[0], "b@example.org");
        nc_csv_free(&csv);
}

static void test_unterminated_quote(void **state)
{
        (void)state;
        /* The error names the line where the quote was opened. */
        PARSE_BAD("email,name\na@example.org,\"Ana\nSilva\nmore\n",
                  "2: ", "quoted field is never closed");
        PARSE_BAD("a\nb\n\n\"x", "4: ", "quoted field is never closed");
        PARSE_BAD("\"a\"\"", "1: ", "quoted field is never closed");
}

static void test_stray_quote(void **state)
{
        (void)state;
        PARSE_BAD("email,name\r\na@example.org,Ana \"Silva\"\r\n", "2: ", "stray '\"'");
        PARSE_BAD("h\n\"multi\nline\"\nab\"c\n", "4: ", "stray '\"'");
        PARSE_BAD("h\n\"Silva\" Ana,x\n", "2: ", "text after the closing quote");
        PARSE_BAD("\"a\"\"b\"x\n", "1: ", "text after the closing quote");
}

static void test_nul_byte(void **state)
{
        (void)state;
        PARSE_BAD("a,b\nc\0d\n", "2: ", "NUL byte");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_simple),
            cmocka_unit_test(test_empty_fields_and_no_final_newline),
            cmocka_unit_test(test_quoted_commas),
            cmocka_unit_test(test_doubled_quotes),
            cmocka_unit_test(test_embedded_newlines),
            cmocka_unit_test(test_crlf),
            cmocka_unit_test(test_bom),
            cmocka_unit_test(test_blank_lines_skipped),
            cmocka_unit_test(test_unterminated_quote),
            cmocka_unit_test(test_stray_quote),
            cmocka_unit_test(test_nul_byte),
        };

        return cmocka_run_group_tests_name("nc_csv", tests, NULL, NULL);
}
