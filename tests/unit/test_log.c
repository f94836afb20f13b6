/* Unit tests for common/nc_log.c: the fields of structured lines (nc_log_f) with logfmt
 * quoting, numbers, the keys a line may not carry, and the level threshold. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nc_log.h"

/* What the lines logged by FN wrote on stderr (malloc'd; stderr goes to a file meanwhile). */
static char *capture(void (*fn)(void))
{
        FILE *tmp = tmpfile();
        int saved = dup(2);
        char *buf;
        long n;

        assert_non_null(tmp);
        assert_true(saved >= 0);
        fflush(stderr);
        assert_true(dup2(fileno(tmp), 2) == 2);
        fn();
        fflush(stderr);
        assert_true(dup2(saved, 2) == 2);
        close(saved);
        n = ftell(tmp);
        assert_true(n >= 0);
        buf = calloc(1, (size_t)n + 1);
        rewind(tmp);
        assert_int_equal(fread(buf, 1, (size_t)n, tmp), (size_t)n);
        fclose(tmp);
        return buf;
}

/* The line without its "ts=... " prefix. */
static const char *after_ts(const char *line)
{
        const char *p = strstr(line, " level=");

        assert_non_null(p);
        return p + 1;
}

static void log_fields(void)
{
        nc_log_fields_t f = {0};

        nc_log_field(&f, "partner", "pe");
        nc_log_field(&f, "notice_id", "01JD 7");              /* a blank: quoted */
        nc_log_field(&f, "reason", "HTTP 400 \"bad\"\nnext"); /* quotes and a newline escaped */
        nc_log_field_int(&f, "partition", 3);
        nc_log_field_int(&f, "offset", -1001);
        nc_log_field(&f, "skipped", NULL); /* no value: left out */
        nc_log_f(NC_LOG_WARN, &f, "dlq: %s", "quarantined");
}

static void test_fields(void **state)
{
        char *out;

        (void)state;
        out = capture(log_fields);
        assert_string_equal(after_ts(out),
                            "level=warn prog=test_log msg=\"dlq: quarantined\" partner=pe "
                            "notice_id=\"01JD 7\" reason=\"HTTP 400 \\\"bad\\\"\\nnext\" "
                            "partition=3 offset=-1001\n");
        free(out);
}

static void log_bad_keys(void)
{
        nc_log_fields_t f = {0};
        int i;

        /* The keys every line writes itself, and keys that are not logfmt keys. */
        nc_log_field(&f, "msg", "forged");
        nc_log_field(&f, "level", "error");
        nc_log_field(&f, "ts", "x");
        nc_log_field(&f, "prog", "x");
        nc_log_field_int(&f, "error", 1);
        nc_log_field(&f, "a b", "x");
        nc_log_field(&f, "a=b", "x");
        nc_log_field(&f, "Upper", "x");
        nc_log_field(&f, "", "x");
        nc_log_field(&f, NULL, "x");
        /* Beyond NC_LOG_FIELDS_MAX: left out. */
        for (i = 0; i < NC_LOG_FIELDS_MAX + 2; i++)
                nc_log_field_int(&f, "n", i);
        nc_log_f(NC_LOG_INFO, &f, "plain");
        nc_log_f(NC_LOG_INFO, NULL, "no fields");
}

static void test_bad_keys(void **state)
{
        char *out, *second;
        char expect[512] = "level=info prog=test_log msg=plain";
        int i;

        (void)state;
        for (i = 0; i < NC_LOG_FIELDS_MAX; i++)
                snprintf(expect + strlen(expect), sizeof(expect) - strlen(expect), " n=%d", i);
        strcat(expect, "\n");
        out = capture(log_bad_keys);
        second = strchr(out, '\n');
        assert_non_null(second);
        second++;
        *second = '\0';
        assert_string_equal(after_ts(out), expect);
        free(out);
}

static void log_levels(void)
{
        nc_log_fields_t f = {0};

        nc_log_field(&f, "partner", "pe");
        nc_log_set_level(NC_LOG_WARN);
        nc_log_f(NC_LOG_INFO, &f, "hidden");
        nc_log_f(NC_LOG_ERROR, &f, "shown");
        nc_log_set_level(NC_LOG_QUIET);
        nc_log_f(NC_LOG_ERROR, &f, "quiet");
        nc_log_set_level(NC_LOG_DEBUG);
}

static void test_levels(void **state)
{
        char *out;

        (void)state;
        out = capture(log_levels);
        assert_string_equal(after_ts(out), "level=error prog=test_log msg=shown partner=pe\n");
        free(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fields),
            cmocka_unit_test(test_bad_keys),
            cmocka_unit_test(test_levels),
        };

        nc_log_init("test_log", NC_LOG_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
