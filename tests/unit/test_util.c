/* Unit tests for common/nc_util.c: the escaping of TSV listing fields (nc_tsv_escape) and the
 * secret file rule (nc_secret_*). */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nc_util.h"

static const char *esc(const char *s, size_t len, size_t max)
{
        static char buf[NC_TSV_FIELD_SIZE(NC_TSV_FIELD_MAX)];

        assert_true(max <= NC_TSV_FIELD_MAX);
        return nc_tsv_escape(s, len, max, buf, sizeof(buf));
}

#define ESC(lit) esc(lit, sizeof(lit) - 1, NC_TSV_FIELD_MAX)

static void test_tsv_plain(void **state)
{
        (void)state;
        assert_string_equal(ESC(""), "");
        assert_string_equal(ESC("ana@example.pe"), "ana@example.pe");
        /* Printable non-ASCII text is left alone. */
        assert_string_equal(ESC("Jo\xc3\xa3o \xea\xb9\x80 \xe2\x80\xa6"),
                            "Jo\xc3\xa3o \xea\xb9\x80 \xe2\x80\xa6");
}

static void test_tsv_controls(void **state)
{
        (void)state;
        assert_string_equal(ESC("a\tb\r\nc\\d"), "a\\tb\\r\\nc\\\\d");
        assert_string_equal(ESC("\x01\x1b[2J\x7f"), "\\x01\\x1B[2J\\x7F");
        assert_string_equal(ESC("a\0b"), "a\\x00b");
        /* C1 controls (NEL), line/paragraph separators, bidi overrides. */
        assert_string_equal(ESC("x\xc2\x85y"), "x\\u0085y");
        assert_string_equal(ESC("\xe2\x80\xa8\xe2\x80\xa9"), "\\u2028\\u2029");
        assert_string_equal(ESC("\xe2\x80\xae"
                                "abc"),
                            "\\u202Eabc");
        /* Bytes that are not UTF-8. */
        assert_string_equal(ESC("caf\xe9!"), "caf\\xE9!");
        assert_string_equal(ESC("\xc3"), "\\xC3");
        /* Nothing that could split a row or a column is left. */
        {
                char all[256];
                const char *out;

                for (int i = 0; i < 256; i++)
                        all[i] = (char)i;
                out = esc(all, sizeof(all), NC_TSV_FIELD_MAX);
                for (const char *p = out; *p; p++)
                        if (*p == '\t' || *p == '\n' || *p == '\r' || (unsigned char)*p < 0x20)
                                fail_msg("raw control 0x%02x in \"%s\"", (unsigned char)*p, out);
        }
}

static void test_tsv_bound(void **state)
{
        char in[1000], want[300];

        (void)state;
        memset(in, 'a', sizeof(in));
        /* Exactly MAX characters: whole, no marker. */
        memset(want, 'a', 200);
        want[200] = '\0';
        assert_string_equal(esc(in, 200, 200), want);
        /* One more: cut at MAX and marked. */
        memcpy(want + 200, "\xe2\x80\xa6", 4);
        assert_string_equal(esc(in, 201, 200), want);
        assert_string_equal(esc(in, sizeof(in), 200), want);
        /* An escape counts as its length and is never split. */
        assert_string_equal(esc("abc\n", 4, 4), "abc\xe2\x80\xa6");
        assert_string_equal(esc("abc\n", 4, 5), "abc\\n");
        /* Multi-byte characters count as one; the worst case fits NC_TSV_FIELD_SIZE. */
        {
                static char big[4 * 300];

                for (int i = 0; i < 300; i++)
                        memcpy(big + 4 * i, "\xf0\x9f\x98\x80", 4);
                assert_int_equal(strlen(esc(big, sizeof(big), 200)), 200 * 4 + 3);
        }
}

/* ---- secret files ---------------------------------------------------------------------- */

static char tmp_path[64];

static int teardown_tmp(void **state)
{
        (void)state;
        if (tmp_path[0])
                unlink(tmp_path);
        tmp_path[0] = '\0';
        return 0;
}

static void write_secret(const char *text, mode_t mode)
{
        int fd;

        teardown_tmp(NULL);
        strcpy(tmp_path, "/tmp/nc-test-util-XXXXXX");
        fd = mkstemp(tmp_path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        assert_int_equal(close(fd), 0);
        assert_int_equal(chmod(tmp_path, mode), 0);
}

static void test_secret_mode_rule(void **state)
{
        (void)state;
        assert_true(nc_secret_mode_ok(S_IFREG | 0600));
        assert_true(nc_secret_mode_ok(S_IFREG | 0400));
        assert_true(nc_secret_mode_ok(S_IFREG | 0700));
        assert_false(nc_secret_mode_ok(S_IFREG | 0640));
        assert_false(nc_secret_mode_ok(S_IFREG | 0644));
        assert_false(nc_secret_mode_ok(S_IFREG | 0604));
        assert_false(nc_secret_mode_ok(S_IFREG | 0620)); /* group may replace it */
        assert_false(nc_secret_mode_ok(S_IFREG | 0601));
}

static void test_secret_read(void **state)
{
        char err[512] = "", want[512];
        size_t len = 0;
        char *s;

        (void)state;
        write_secret("k3y-0123456789abcdef\n", 0600);
        s = nc_secret_file_read(tmp_path, &len, err, sizeof(err));
        assert_non_null(s);
        assert_int_equal(len, 21);
        assert_string_equal(s, "k3y-0123456789abcdef\n");
        free(s);
        assert_int_equal(nc_secret_file_check(tmp_path, err, sizeof(err)), 0);

        /* Refused, naming the file and its mode, and never showing the content. */
        write_secret("k3y-0123456789abcdef\n", 0644);
        assert_null(nc_secret_file_read(tmp_path, &len, err, sizeof(err)));
        snprintf(want, sizeof(want),
                 "%s: secret file is accessible by group or others (mode 0644); refused: chmod "
                 "600 it",
                 tmp_path);
        assert_string_equal(err, want);
        assert_int_equal(nc_secret_file_check(tmp_path, err, sizeof(err)), -1);
        assert_string_equal(err, want);
        assert_null(strstr(err, "k3y"));

        write_secret("x\n", 0640);
        assert_null(nc_secret_file_read(tmp_path, &len, err, sizeof(err)));
        assert_non_null(strstr(err, "(mode 0640)"));

        assert_null(nc_secret_file_read("/nonexistent/nc.secret", &len, err, sizeof(err)));
        assert_string_equal(err, "/nonexistent/nc.secret: No such file or directory");
}

static void test_secret_too_large(void **state)
{
        char err[512] = "";
        size_t len;
        char *big = malloc(NC_SECRET_FILE_MAX + 2);

        (void)state;
        memset(big, 'a', NC_SECRET_FILE_MAX + 1);
        big[NC_SECRET_FILE_MAX + 1] = '\0';
        write_secret(big, 0600);
        assert_null(nc_secret_file_read(tmp_path, &len, err, sizeof(err)));
        assert_non_null(strstr(err, "larger than"));
        big[NC_SECRET_FILE_MAX] = '\0';
        write_secret(big, 0400);
        free(big);
        big = nc_secret_file_read(tmp_path, &len, err, sizeof(err));
        assert_non_null(big);
        assert_int_equal(len, NC_SECRET_FILE_MAX);
        free(big);
}

/* nc_buf_reserve: starts at the initial size, doubles until NEED fits after LEN, keeps the
 * contents, and refuses a size that would overflow without touching the buffer. */
static void test_buf_reserve(void **state)
{
        char *buf = NULL;
        size_t cap = 0;

        (void)state;
        assert_int_equal(nc_buf_reserve(&buf, &cap, 0, 10, 16), 0);
        assert_non_null(buf);
        assert_int_equal(cap, 16);
        memcpy(buf, "0123456789", 10);
        assert_int_equal(nc_buf_reserve(&buf, &cap, 10, 6, 16), 0);
        assert_int_equal(cap, 16); /* fits: no growth */
        assert_int_equal(nc_buf_reserve(&buf, &cap, 10, 7, 16), 0);
        assert_int_equal(cap, 32);
        assert_int_equal(nc_buf_reserve(&buf, &cap, 10, 100, 16), 0);
        assert_int_equal(cap, 128);
        assert_memory_equal(buf, "0123456789", 10);
        assert_int_equal(nc_buf_reserve(&buf, &cap, 10, SIZE_MAX - 5, 16), -1);
        assert_int_equal(cap, 128);
        assert_memory_equal(buf, "0123456789", 10);
        free(buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_buf_reserve),
            cmocka_unit_test(test_tsv_plain),
            cmocka_unit_test(test_tsv_controls),
            cmocka_unit_test(test_tsv_bound),
            cmocka_unit_test(test_secret_mode_rule),
            cmocka_unit_test_teardown(test_secret_read, teardown_tmp),
            cmocka_unit_test_teardown(test_secret_too_large, teardown_tmp),
        };

        return cmocka_run_group_tests_name("nc_util", tests, NULL, NULL);
}
