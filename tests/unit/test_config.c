/* Unit tests for common/nc_config.c: INI loading, "file:line: message" errors, [kafka]
 * pass-through and the configuration file lookup order. */
#include "nc_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nc_config.h"

/* The temporary file of the running test; removed by the teardown even when a test fails. */
static char tmp_path[64];

/* The [kafka] KEY_file secret of the running test, removed by the same teardown. */
static char secret_path[64];

static int teardown_tmp(void **state)
{
        (void)state;
        if (tmp_path[0])
                unlink(tmp_path);
        tmp_path[0] = '\0';
        if (secret_path[0])
                unlink(secret_path);
        secret_path[0] = '\0';
        return 0;
}

static const char *write_conf_n(const char *text, size_t len)
{
        int fd;

        if (tmp_path[0])
                unlink(tmp_path); /* not teardown_tmp(): the secret file stays */
        snprintf(tmp_path, sizeof(tmp_path), "/tmp/nc-test-config-XXXXXX");
        fd = mkstemp(tmp_path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, len), (ssize_t)len);
        assert_int_equal(close(fd), 0);
        return tmp_path;
}

static const char *write_conf(const char *text)
{
        return write_conf_n(text, strlen(text));
}

static void data_path(const char *name, char *buf, size_t size)
{
        const char *dir = getenv("NC_TEST_SRCDIR");

        snprintf(buf, size, "%s/tests/unit/data/%s", dir && *dir ? dir : ".", name);
}

static void load_ok(nc_config_t *cfg, const char *path)
{
        char err[1024] = "";

        if (nc_config_load(cfg, path, 1, err, sizeof(err)) != 0)
                fail_msg("%s rejected: %s", path, err);
}

/* Loads TEXT (which must fail) and checks the error is exactly "PATH:LINE: MESSAGE...":
 * the message must start with MESSAGE. */
static void load_bad_n(const char *text, size_t len, int line, const char *message)
{
        char err[1024] = "", prefix[1024];
        const char *path = write_conf_n(text, len);
        nc_config_t cfg;

        if (nc_config_load(&cfg, path, 1, err, sizeof(err)) == 0) {
                nc_config_free(&cfg);
                fail_msg("accepted:\n%s", text);
        }
        snprintf(prefix, sizeof(prefix), "%s:%d: %s", path, line, message);
        if (strncmp(err, prefix, strlen(prefix)) != 0)
                fail_msg("error \"%s\"\n  expected to start with \"%s\"", err, prefix);
        teardown_tmp(NULL);
}

static void load_bad(const char *text, int line, const char *message)
{
        load_bad_n(text, strlen(text), line, message);
}

static void test_good_file_every_key(void **state)
{
        char path[1024], origin[1100];
        nc_config_t cfg;

        (void)state;
        data_path("noticecast-full.conf", path, sizeof(path));
        load_ok(&cfg, path);
        assert_string_equal(cfg.path, path);
        assert_string_equal(cfg.topic_prefix, "gov.kr.");
        assert_int_equal(cfg.categories.n, 3);
        assert_string_equal(cfg.categories.v[0], "news");
        assert_string_equal(cfg.categories.v[1], "press");
        assert_string_equal(cfg.categories.v[2], "tenders");
        assert_true(nc_config_has_category(&cfg, "tenders"));
        assert_false(nc_config_has_category(&cfg, "alerts"));
        assert_int_equal(cfg.languages.n, 4);
        assert_true(nc_config_has_language(&cfg, "ko"));
        assert_false(nc_config_has_language(&cfg, "fr"));
        assert_string_equal(cfg.default_language, "es");
        assert_string_equal(cfg.default_timezone, "America/Lima");
        assert_string_equal(nc_config_kafka_get(&cfg, "bootstrap.servers"),
                            "broker1:9092,broker2:9092");
        assert_string_equal(nc_config_kafka_get(&cfg, "client.id"), "noticecast-unit");
        assert_int_equal(cfg.partitions, 6);
        assert_int_equal(cfg.replication_factor, 3);
        assert_int_equal(cfg.producer_timeout_ms, 15000);
        assert_int_equal(cfg.title_max, 200);
        assert_int_equal(cfg.summary_max, 1000);
        assert_int_equal(cfg.body_max, 4096);
        assert_int_equal(cfg.notice_max, 16384);
        /* Each [kafka] property remembers the line it came from. */
        for (size_t i = 0; i < cfg.kafka_n; i++) {
                if (!strcmp(cfg.kafka[i].key, "bootstrap.servers")) {
                        snprintf(origin, sizeof(origin), "%s:10", path);
                        assert_string_equal(cfg.kafka[i].origin, origin);
                } else if (!strcmp(cfg.kafka[i].key, "client.id")) {
                        snprintf(origin, sizeof(origin), "%s:11", path);
                        assert_string_equal(cfg.kafka[i].origin, origin);
                }
        }
        nc_config_free(&cfg);
        assert_null(cfg.path);
}

static void test_topic_names(void **state)
{
        char buf[128];
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[noticecast]\ntopic_prefix = gov.kr.\n"));
        nc_config_notice_topic(&cfg, "news", buf, sizeof(buf));
        assert_string_equal(buf, "gov.kr.notices.news");
        nc_config_topic(&cfg, "subscribers", buf, sizeof(buf));
        assert_string_equal(buf, "gov.kr.subscribers");
        nc_config_free(&cfg);

        /* An empty prefix is allowed. */
        load_ok(&cfg, write_conf("[noticecast]\ntopic_prefix =\n"));
        nc_config_notice_topic(&cfg, "news", buf, sizeof(buf));
        assert_string_equal(buf, "notices.news");
        nc_config_free(&cfg);
        load_bad("[noticecast]\ntopic_prefix = gov kr\n", 2, "topic_prefix: 'gov kr'");
}

static void test_unknown_key_line(void **state)
{
        (void)state;
        load_bad("# noticecast test\n"
                 "\n"
                 "[noticecast]\n"
                 "categories = news, alerts\n"
                 "; a comment\n"
                 "\n"
                 "colour = blue\n"
                 "languages = en\n",
                 7, "unknown key 'colour' in section [noticecast]");
        load_bad("[topics]\npartitions = 3\n\nreplicas = 3\n", 4,
                 "unknown key 'replicas' in section [topics]");
        load_bad("[noticecast]\n[producer]\ntimeout = 10\n", 3,
                 "unknown key 'timeout' in section [producer]");
        load_bad("[limits]\n\n\n\n\ntitle_max = 10\n", 6,
                 "unknown key 'title_max' in section [limits]");
}

static void test_unknown_section(void **state)
{
        char err[1024] = "", at_header[128], at_key[128];
        const char *path;
        nc_config_t cfg;

        (void)state;
        /* Named at the section header (line 4) or at its first key (line 5). */
        path = write_conf("[noticecast]\ncategories = news\n\n[topic]\npartitions = 3\n");
        assert_int_equal(nc_config_load(&cfg, path, 1, err, sizeof(err)), -1);
        snprintf(at_header, sizeof(at_header), "%s:4: unknown section [topic]", path);
        snprintf(at_key, sizeof(at_key), "%s:5: unknown section [topic]", path);
        if (strcmp(err, at_header) != 0 && strcmp(err, at_key) != 0)
                fail_msg("error \"%s\"\n  expected \"%s\" (or line 5)", err, at_header);
        load_bad("# no section yet\npartitions = 3\n", 2,
                 "key 'partitions' outside of any section");
}

/* "unknown sections and keys are errors" (nc_config.h): also a section with no keys, such as
 * a misspelt header whose keys were commented out. */
static void test_unknown_empty_section(void **state)
{
        (void)state;
        load_bad("[noticecast]\ncategories = news\n[kafak]\n# bootstrap.servers = b:9092\n", 3,
                 "unknown section [kafak]");
}

static void test_bad_integer(void **state)
{
        (void)state;
        load_bad("[topics]\npartitions = abc\n", 2,
                 "topics.partitions: 'abc' is not an integer between 1 and 10000");
        load_bad("[topics]\npartitions = 3x\n", 2, "topics.partitions: '3x' is not an integer");
        load_bad("[topics]\npartitions = 0\n", 2, "topics.partitions: '0' is not an integer");
        load_bad("[topics]\npartitions = 99999999999999999999\n", 2,
                 "topics.partitions: '99999999999999999999' is not an integer");
        load_bad("[topics]\nreplication_factor =\n", 2, "topics.replication_factor: '' is not");
        load_bad("[producer]\ntimeout_ms = 1.5\n", 2, "producer.timeout_ms: '1.5' is not");
        load_bad("[limits]\nbody_max_bytes = 15\n", 2,
                 "limits.body_max_bytes: '15' is not an integer between 16 and 921600");
        load_bad("[limits]\nnotice_max_bytes = 921601\n", 2, "limits.notice_max_bytes: '921601'");
}

static void test_integer_bounds_accepted(void **state)
{
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[topics]\npartitions = 10000\nreplication_factor = 1\n"
                                 "[limits]\nbody_max_bytes = 16\nnotice_max_bytes = 921600\n"));
        assert_int_equal(cfg.partitions, 10000);
        assert_int_equal(cfg.body_max, 16);
        assert_int_equal(cfg.notice_max, 921600);
        nc_config_free(&cfg);
}

static void test_syntax_error_line(void **state)
{
        (void)state;
        load_bad("[noticecast]\ncategories = news\ngarbage\nlanguages = en\n", 3, "syntax error");
        load_bad("[noticecast\n", 1, "syntax error");
}

/* With several mistakes, the first one in the file is the one reported. */
static void test_first_error_reported(void **state)
{
        (void)state;
        load_bad("[noticecast]\ngarbage\ncolour = blue\n", 2, "syntax error");
}

static void test_unknown_kafka_property(void **state)
{
        char err[1024];
        const char *path;
        nc_config_t cfg;

        (void)state;
        load_bad("[noticecast]\ncategories = news\n\n[kafka]\nno.such.property = 1\n", 5,
                 "kafka: ");
        /* The message names the property. */
        path = write_conf("[kafka]\nno.such.property = 1\n");
        assert_int_equal(nc_config_load(&cfg, path, 1, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "no.such.property"));
        /* A known property with a bad value is refused too. */
        load_bad("[kafka]\nbootstrap.servers = b:9092\nacks = banana\n", 3, "kafka: ");
}

static void test_kafka_passthrough(void **state)
{
        char origin[128];
        const char *path;
        nc_config_t cfg;
        size_t i;

        (void)state;
        path = write_conf("[kafka]\nbootstrap.servers = kafka.example.org:9093\n"
                          "linger.ms = 5\nsecurity.protocol = ssl\n");
        load_ok(&cfg, path);
        assert_string_equal(nc_config_kafka_get(&cfg, "bootstrap.servers"),
                            "kafka.example.org:9093");
        assert_string_equal(nc_config_kafka_get(&cfg, "linger.ms"), "5");
        assert_string_equal(nc_config_kafka_get(&cfg, "security.protocol"), "ssl");
        assert_null(nc_config_kafka_get(&cfg, "client.id"));
        for (i = 0; i < cfg.kafka_n; i++)
                if (!strcmp(cfg.kafka[i].key, "linger.ms"))
                        break;
        assert_true(i < cfg.kafka_n);
        snprintf(origin, sizeof(origin), "%s:3", path);
        assert_string_equal(cfg.kafka[i].origin, origin);
        nc_config_free(&cfg);
}

static void test_kafka_override(void **state)
{
        char err[1024] = "";
        nc_config_t cfg;
        size_t i, n;

        (void)state;
        load_ok(&cfg, write_conf("[kafka]\nclient.id = from-file\nlinger.ms = 5\n"));
        n = cfg.kafka_n;
        assert_int_equal(nc_config_set_kafka(&cfg, "client.id", "from-cli", "-X", err, sizeof(err)),
                         0);
        assert_string_equal(nc_config_kafka_get(&cfg, "client.id"), "from-cli");
        assert_int_equal(cfg.kafka_n, n); /* replaced, not added */
        for (i = 0; i < cfg.kafka_n; i++)
                if (!strcmp(cfg.kafka[i].key, "client.id"))
                        assert_string_equal(cfg.kafka[i].origin, "-X");
        assert_string_equal(nc_config_kafka_get(&cfg, "linger.ms"), "5");
        /* A new property from the command line is added. */
        assert_int_equal(nc_config_set_kafka(&cfg, "acks", "all", "-X", err, sizeof(err)), 0);
        assert_string_equal(nc_config_kafka_get(&cfg, "acks"), "all");
        /* A bad one is refused, names its origin, and leaves the configuration alone. */
        assert_int_equal(nc_config_set_kafka(&cfg, "no.such.property", "1", "-X", err, sizeof(err)),
                         -1);
        assert_true(strncmp(err, "-X: kafka: ", 11) == 0);
        assert_null(nc_config_kafka_get(&cfg, "no.such.property"));
        assert_int_equal(nc_config_set_kafka(&cfg, "linger.ms", "soon", "-X", err, sizeof(err)),
                         -1);
        assert_string_equal(nc_config_kafka_get(&cfg, "linger.ms"), "5");
        nc_config_free(&cfg);
}

static void test_missing_explicit_file(void **state)
{
        const char *path = "/nonexistent-noticecast-dir/noticecast.conf";
        char err[1024] = "";
        nc_config_t cfg;

        (void)state;
        assert_int_equal(nc_config_load(&cfg, path, 1, err, sizeof(err)), -1);
        assert_true(strncmp(err, path, strlen(path)) == 0);
        assert_non_null(strstr(err, "No such file"));
}

static void test_missing_default_file_uses_defaults(void **state)
{
        char err[1024] = "";
        nc_config_t cfg;

        (void)state;
        assert_int_equal(nc_config_load(&cfg, "/nonexistent-noticecast-dir/noticecast.conf", 0, err,
                                        sizeof(err)),
                         0);
        assert_null(cfg.path);
        assert_string_equal(cfg.topic_prefix, "noticecast.");
        assert_int_equal(cfg.categories.n, 4);
        assert_true(nc_config_has_category(&cfg, "news"));
        assert_true(nc_config_has_category(&cfg, "alerts"));
        assert_true(nc_config_has_language(&cfg, "en"));
        assert_true(nc_config_has_language(&cfg, "pt"));
        assert_string_equal(cfg.default_language, "en");
        assert_string_equal(cfg.default_timezone, "UTC");
        assert_string_equal(nc_config_kafka_get(&cfg, "bootstrap.servers"), "localhost:9092");
        assert_int_equal(cfg.partitions, 3);
        assert_int_equal(cfg.replication_factor, 1);
        assert_int_equal(cfg.producer_timeout_ms, 30000);
        assert_int_equal(cfg.title_max, 300);
        assert_int_equal(cfg.body_max, 65536);
        assert_int_equal(cfg.notice_max, 256 * 1024);
        nc_config_free(&cfg);
}

static void test_default_language_not_in_languages(void **state)
{
        char err[1024] = "";
        const char *path;
        nc_config_t cfg;

        (void)state;
        path = write_conf("[noticecast]\nlanguages = en, es\ndefault_language = fr\n");
        assert_int_equal(nc_config_load(&cfg, path, 1, err, sizeof(err)), -1);
        assert_true(strncmp(err, path, strlen(path)) == 0);
        assert_non_null(strstr(err, "default_language 'fr' is not in languages"));

        /* The built-in default 'en' must be listed when languages is changed. */
        path = write_conf("[noticecast]\nlanguages = es, pt\n");
        assert_int_equal(nc_config_load(&cfg, path, 1, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "default_language 'en' is not in languages"));

        load_ok(&cfg, write_conf("[noticecast]\nlanguages = es, pt\ndefault_language = pt\n"));
        assert_string_equal(cfg.default_language, "pt");
        nc_config_free(&cfg);
}

static void test_bad_default_timezone(void **state)
{
        nc_config_t cfg;

        (void)state;
        load_bad("[noticecast]\n\ndefault_timezone = Mars/Base\n", 3,
                 "default_timezone: 'Mars/Base' is not a known IANA time zone");
        load_bad("[noticecast]\ndefault_timezone = ../../etc/passwd\n", 2, "default_timezone: ");
        load_bad("[noticecast]\ndefault_timezone = America\n", 2, "default_timezone: ");
        load_ok(&cfg, write_conf("[noticecast]\ndefault_timezone = Asia/Seoul\n"));
        assert_string_equal(cfg.default_timezone, "Asia/Seoul");
        nc_config_free(&cfg);
}

static void test_bad_category(void **state)
{
        (void)state;
        load_bad("[noticecast]\ncategories = news, Press\n", 2,
                 "categories: 'Press' must be lower-case letters, digits, '-' or '_'");
        load_bad("[noticecast]\ncategories = news, a.b\n", 2, "categories: 'a.b' must be");
        load_bad("[noticecast]\ncategories = ,;\n", 2, "categories: must not be empty");
        load_bad("[noticecast]\nlanguages = en, PT\n", 2, "languages: 'PT' must be");
}

static void test_invalid_utf8(void **state)
{
        char err[1024] = "";
        const char *path;
        nc_config_t cfg;

        (void)state;
        path = write_conf("[noticecast]\ntopic_prefix = caf\xe9.\n");
        assert_int_equal(nc_config_load(&cfg, path, 1, err, sizeof(err)), -1);
        assert_true(strncmp(err, path, strlen(path)) == 0);
        assert_non_null(strstr(err, "not valid UTF-8"));
        /* ... and names the line. */
        load_bad("[noticecast]\n# ok\ntopic_prefix = caf\xe9.\n", 3, "not valid UTF-8");
}

static void test_config_path_precedence(void **state)
{
        const char *p;
        int expl = -1;

        (void)state;
        unsetenv("NOTICECAST_CONFIG");
        p = nc_config_path(NULL, &expl);
        assert_int_equal(expl, 0);
        assert_non_null(p);
        assert_true(strlen(p) > strlen("/noticecast/noticecast.conf"));
        assert_string_equal(p + strlen(p) - strlen("/noticecast/noticecast.conf"),
                            "/noticecast/noticecast.conf");

        setenv("NOTICECAST_CONFIG", "/srv/env.conf", 1);
        expl = -1;
        assert_string_equal(nc_config_path(NULL, &expl), "/srv/env.conf");
        assert_int_equal(expl, 1);

        expl = -1;
        assert_string_equal(nc_config_path("/srv/cli.conf", &expl), "/srv/cli.conf");
        assert_int_equal(expl, 1);

        /* An empty variable counts as unset. */
        setenv("NOTICECAST_CONFIG", "", 1);
        expl = -1;
        assert_string_equal(nc_config_path(NULL, &expl), p);
        assert_int_equal(expl, 0);

        unsetenv("NOTICECAST_CONFIG");
        expl = -1;
        assert_string_equal(nc_config_path("/srv/cli.conf", &expl), "/srv/cli.conf");
        assert_int_equal(expl, 1);
}

/* Real values can be long (broker lists, sasl.jaas.config, partner URLs, CA paths): a long
 * line loads whole -- never refused at inih's 198 bytes, never cut in two. */
static void test_long_value_line(void **state)
{
        char text[1024], servers[512] = "";
        nc_config_t cfg;
        int i;

        (void)state;
        for (i = 0; i < 8; i++)
                snprintf(servers + strlen(servers), sizeof(servers) - strlen(servers),
                         "%sbroker%02d.internal.example.org:9092", i ? "," : "", i);
        assert_true(strlen(servers) > 250);
        snprintf(text, sizeof(text), "[kafka]\nbootstrap.servers = %s\n", servers);
        load_ok(&cfg, write_conf(text));
        assert_string_equal(nc_config_kafka_get(&cfg, "bootstrap.servers"), servers);
        nc_config_free(&cfg);
}

/* "[partner.p]\nurl = https://h/aaa...\n" with the url line exactly LINE bytes long. */
static char *partner_url_conf(size_t line, char **url)
{
        static const char head[] = "[partner.p]\nsecret_file = /nonexistent/p.secret\n";
        static const char start[] = "url = https://h.example/";
        size_t n = strlen(head) + line + 2;
        char *text = malloc(n);

        assert_non_null(text);
        snprintf(text, n, "%s%s", head, start);
        memset(text + strlen(text), 'a', line - strlen(start));
        text[strlen(head) + line] = '\n';
        text[strlen(head) + line + 1] = '\0';
        *url = text + strlen(head) + 6;
        return text;
}

/* Up to 64 KiB a line loads whole; one byte more is a file:line error saying so. */
static void test_line_limit(void **state)
{
        char *url, *text = partner_url_conf(65536, &url), *want;
        const nc_partner_t *p;
        nc_config_t cfg;

        (void)state;
        want = strndup(url, strlen(url) - 1);
        load_ok(&cfg, write_conf(text));
        assert_non_null(p = nc_config_partner(&cfg, "p"));
        assert_int_equal(strlen(p->url), 65536 - 6);
        assert_string_equal(p->url, want);
        nc_config_free(&cfg);
        free(want);
        free(text);

        text = partner_url_conf(65537, &url);
        load_bad(text, 3, "line is longer than 65536 bytes");
        free(text);
}

/* A key given twice in a section is an error at the second one (no silent last-wins), for
 * every section, [kafka] and partners included. */
static void test_duplicate_key(void **state)
{
        (void)state;
        load_bad("[noticecast]\ncategories = news\n\ncategories = press\n", 4,
                 "key 'categories' already set at line 2 in [noticecast]");
        load_bad("[kafka]\nbootstrap.servers = a:9092\nlinger.ms = 5\nlinger.ms = 6\n", 4,
                 "key 'linger.ms' already set at line 3 in [kafka]");
        load_bad("[partner.a]\nurl = https://a.example/\nsecret_file = /x\nurl = https://b/\n", 4,
                 "key 'url' already set at line 2 in [partner.a]");
        load_bad("[smtp]\nhost = a\nhost=b\n", 3, "key 'host' already set at line 2 in [smtp]");
}

/* The same key in two different sections is not a duplicate. */
static void test_same_key_other_section(void **state)
{
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[producer]\ntimeout_ms = 1000\n[smtp]\ntimeout_ms = 2000\n"));
        assert_int_equal(cfg.producer_timeout_ms, 1000);
        assert_int_equal(cfg.smtp.timeout_ms, 2000);
        nc_config_free(&cfg);
}

/* Each section appears once: a second [kafka] or [partner.x] is an error at its header. */
static void test_repeated_section(void **state)
{
        (void)state;
        load_bad("[kafka]\nlinger.ms = 5\n[topics]\npartitions = 3\n\n[kafka]\nacks = all\n", 6,
                 "section [kafka] already defined at line 1");
        load_bad("[partner.a]\nurl = https://a.example/\nsecret_file = /x\n[partner.a]\n", 4,
                 "section [partner.a] already defined at line 1");
}

static void test_nul_byte(void **state)
{
        static const char on_own_line[] = "[noticecast]\ncategories = news\n\0\ncolour = x\n";
        static const char in_value[] = "[noticecast]\ncategories = news\0, press\n";

        (void)state;
        load_bad_n(on_own_line, sizeof(on_own_line) - 1, 3, "contains a NUL byte");
        load_bad_n(in_value, sizeof(in_value) - 1, 2, "contains a NUL byte");
        /* Other raw control characters too (tab and the CR of CRLF are fine). */
        load_bad("[partner.p]\nsecret_file = /x\nurl = https://h/a\rb\n", 3,
                 "contains a control character (0x0D)");
        load_bad("[noticecast]\ncategories = news\x1b[0m\n", 2,
                 "contains a control character (0x1B)");
}

/* An empty broker list makes librdkafka wait forever for a broker: refused everywhere. */
static void test_empty_bootstrap_servers(void **state)
{
        char err[1024] = "";
        nc_strlist_t x = {0};
        nc_config_t cfg;

        (void)state;
        load_bad("[kafka]\nbootstrap.servers =\n", 2,
                 "kafka: bootstrap.servers: must not be empty");
        load_bad("[kafka]\n\nbootstrap.servers = , ,\n", 3,
                 "kafka: bootstrap.servers: must not be empty");
        load_bad("[kafka]\nmetadata.broker.list =\n", 2, "kafka: metadata.broker.list: must not");
        load_ok(&cfg, write_conf("[kafka]\nbootstrap.servers = b:9092\n"));
        assert_int_equal(nc_config_set_kafka(&cfg, "bootstrap.servers", "", "-X", err, sizeof(err)),
                         -1);
        assert_true(strncmp(err, "-X: kafka: bootstrap.servers: must not be empty", 47) == 0);
        assert_int_equal(nc_config_apply_overrides(&cfg, &x, "", err, sizeof(err)), -1);
        assert_true(strncmp(err, "-b: kafka: bootstrap.servers: must not be empty", 47) == 0);
        assert_string_equal(nc_config_kafka_get(&cfg, "bootstrap.servers"), "b:9092");
        nc_config_free(&cfg);
}

/* What the file syntax accepts besides "key = value" (see ini_parse in nc_config.c). */
static void test_syntax_accepted(void **state)
{
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("\xef\xbb\xbf"
                                 "[noticecast] ; the main section\r\n"
                                 "  categories = news, press ; indented, with a comment\r\n"
                                 "languages: en, es\r\n"
                                 "\t# comment\r\n"
                                 "[kafka]   # brokers\n"
                                 "bootstrap.servers=a:9092;b:9092\n"
                                 "[ topics ]\n"
                                 "partitions = 4"));
        assert_int_equal(cfg.categories.n, 2);
        assert_string_equal(cfg.categories.v[1], "press");
        assert_int_equal(cfg.languages.n, 2);
        assert_string_equal(nc_config_kafka_get(&cfg, "bootstrap.servers"), "a:9092;b:9092");
        assert_int_equal(cfg.partitions, 4);
        nc_config_free(&cfg);
}

static void test_syntax_refused(void **state)
{
        (void)state;
        load_bad("[kafka] linger.ms = 5\n", 1, "syntax error");
        load_bad("[kafka]\n= 5\n", 2, "syntax error");
        load_bad("[partner.A]\nurl = https://a/\n", 1, "[partner.A]: the id may only contain");
}

/* A partner section whose keys are all commented out is reported, not silently ignored. */
static void test_empty_partner_section(void **state)
{
        (void)state;
        load_bad("[noticecast]\ncategories = news\n[partner.gone]\n# url = https://g/\n", 3,
                 "partner.gone: url is required");
}

/* A long comment line must not shift the line numbers of later errors. */
static void test_long_comment_line_numbers(void **state)
{
        char text[1024];

        (void)state;
        snprintf(text, sizeof(text), "# %0300d\n[noticecast]\ncolour = blue\n", 0);
        load_bad(text, 3, "unknown key 'colour' in section [noticecast]");
}

/* -n and start-up refuse what would lose work: a webhooks daemon with no partner, a mailer
 * whose from_address has no valid domain (the default notices@localhost). */
static void test_check_webhooks_needs_a_partner(void **state)
{
        char err[1024] = "", want[256];
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[webhooks]\ngroup_id = g\n"));
        assert_int_equal(nc_config_check_webhooks(&cfg, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "%s: no [partner.<id>] section", tmp_path);
        if (strncmp(err, want, strlen(want)) != 0)
                fail_msg("error \"%s\"\n  expected to start with \"%s\"", err, want);
        nc_config_free(&cfg);

        load_ok(&cfg, write_conf("[partner.pe]\nurl = https://pe.example/\n"
                                 "secret_file = /nonexistent\n"));
        err[0] = '\0';
        if (nc_config_check_webhooks(&cfg, err, sizeof(err)) != 0)
                fail_msg("one partner refused: %s", err);
        nc_config_free(&cfg);
}

static void test_check_mailer_from_address(void **state)
{
        char err[1024] = "", want[256];
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[mailer]\nfrom_name = Notices\n"));
        assert_int_equal(nc_config_check_mailer(&cfg, err, sizeof(err)), -1);
        snprintf(want, sizeof(want),
                 "%s: mailer.from_address: 'notices@localhost' has an invalid "
                 "domain",
                 tmp_path);
        if (strncmp(err, want, strlen(want)) != 0)
                fail_msg("error \"%s\"\n  expected to start with \"%s\"", err, want);
        nc_config_free(&cfg);

        /* the same default without a file at all */
        assert_int_equal(nc_config_load(&cfg, "/nonexistent-noticecast-dir/noticecast.conf", 0, err,
                                        sizeof(err)),
                         0);
        assert_int_equal(nc_config_check_mailer(&cfg, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "built-in defaults: mailer.from_address"));
        nc_config_free(&cfg);

        /* written in the file, a domain without a dot is refused at its line already */
        load_bad("[mailer]\nfrom_address = notices@intranet\n", 2,
                 "mailer.from_address: 'notices@intranet' has an invalid domain");

        load_ok(&cfg, write_conf("[mailer]\nfrom_address = notices@example.gov\n"));
        err[0] = '\0';
        if (nc_config_check_mailer(&cfg, err, sizeof(err)) != 0)
                fail_msg("a valid from_address refused: %s", err);
        nc_config_free(&cfg);
}

/* The VERP delimiter is one character the relays split local parts at. */
static void test_verp_delimiter(void **state)
{
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[mailer]\nverp_delimiter = -\n"));
        assert_string_equal(cfg.mailer.verp_delimiter, "-");
        nc_config_free(&cfg);
        load_bad("[mailer]\nverp_delimiter = ++\n", 2,
                 "mailer.verp_delimiter: '++' must be one of + - =");
        load_bad("[mailer]\nverp_delimiter = #\n", 2,
                 "mailer.verp_delimiter: '#' must be one of + - =");
}

/* The templates default is where `make install` puts them, under NC_DATADIR. */
static void test_templates_default_datadir(void **state)
{
        nc_config_t cfg;

        (void)state;
        nc_config_defaults(&cfg);
        assert_string_equal(cfg.mailer.templates, NC_DATADIR "/noticecast/templates");
        nc_config_free(&cfg);
}

/* The built-in defaults, all of them from the key table (pinned so a table edit shows). */
static void test_defaults(void **state)
{
        nc_config_t cfg;
        const nc_partner_t *p;

        (void)state;
        nc_config_defaults(&cfg);
        assert_string_equal(cfg.topic_prefix, "noticecast.");
        assert_int_equal(cfg.categories.n, 4);
        assert_int_equal(cfg.languages.n, 4);
        assert_int_equal(cfg.partitions, 3);
        assert_int_equal(cfg.producer_timeout_ms, 30000);
        assert_int_equal(cfg.notice_max, 256 * 1024);
        assert_int_equal(cfg.webhooks.retry_n, 7);
        assert_int_equal(cfg.webhooks.retry_ms[0], 5000);
        assert_int_equal(cfg.webhooks.retry_ms[6], 10 * 3600 * 1000);
        assert_int_equal(cfg.webhooks.retry_after_max_ms, 3600 * 1000);
        assert_int_equal(cfg.webhooks.max_pending, 10000);
        assert_int_equal(cfg.webhooks.shutdown_timeout_ms, 30000);
        assert_string_equal(cfg.mailer.from_address, "notices@localhost");
        assert_null(cfg.mailer.envelope_from);
        assert_string_equal(cfg.mailer.verp_delimiter, "+");
        assert_int_equal(cfg.mailer.weekly_day, 1);
        assert_int_equal(cfg.mailer.retry_n, 5);
        assert_int_equal(cfg.mailer.retry_ms[4], 4 * 3600 * 1000);
        assert_int_equal(cfg.smtp.port, 25);
        assert_int_equal(cfg.smtp.starttls, 1);
        assert_int_equal(cfg.smtp.batch, 200);
        assert_int_equal(cfg.smtp.allow_plaintext_auth, 0);
        assert_string_equal(nc_config_kafka_get(&cfg, "bootstrap.servers"), "localhost:9092");
        nc_config_free(&cfg);

        load_ok(&cfg, write_conf("[partner.a]\nurl = https://a.example/\nsecret_file = /x\n"));
        assert_non_null(p = nc_config_partner(&cfg, "a"));
        assert_int_equal(p->format, NC_FORMAT_STANDARD);
        assert_int_equal(p->timeout_ms, 10000);
        assert_int_equal(p->max_in_flight, 4);
        assert_int_equal(p->tls_verify, 1);
        assert_int_equal(p->enabled, 1);
        assert_int_equal(p->secret_file_line, 3);
        assert_int_equal(p->regions.n, 0);
        nc_config_free(&cfg);
}

/* Partner regions go through nc_region_list_add like notices': upper-cased, deduplicated,
 * and an unknown ISO 3166-1 code is an error of its line. */
static void test_partner_regions(void **state)
{
        nc_config_t cfg;
        const nc_partner_t *p;

        (void)state;
        load_ok(&cfg, write_conf("[partner.a]\nurl = https://a.example/\nsecret_file = /x\n"
                                 "regions = pe, BR, PE\n"));
        assert_non_null(p = nc_config_partner(&cfg, "a"));
        assert_int_equal(p->regions.n, 2);
        assert_string_equal(p->regions.v[0], "PE");
        assert_string_equal(p->regions.v[1], "BR");
        nc_config_free(&cfg);
        load_bad("[partner.a]\nurl = https://a.example/\nsecret_file = /x\nregions = ZZ, Q1\n", 4,
                 "partner.a.regions: 'ZZ' is not an ISO 3166-1 alpha-2 country code");
        load_bad("[partner.a]\nregions = PER\n", 2, "partner.a.regions: 'PER' is not an ISO");
}

/* One retry_schedule rule for both daemons: 1 to 16 durations of at least 100 ms. */
static void test_retry_schedule(void **state)
{
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[mailer]\nretry_schedule = 100ms, 2s\n"
                                 "[webhooks]\nretry_schedule = 1s\n"));
        assert_int_equal(cfg.mailer.retry_n, 2);
        assert_int_equal(cfg.mailer.retry_ms[0], 100);
        assert_int_equal(cfg.mailer.retry_ms[1], 2000);
        assert_int_equal(cfg.webhooks.retry_n, 1);
        nc_config_free(&cfg);
        load_bad("[mailer]\nretry_schedule = 1s, 50ms\n", 2,
                 "mailer.retry_schedule: '50ms' is not a duration like 5s, 5m or 2h (at least "
                 "100ms)");
        load_bad("[webhooks]\nretry_schedule = 99ms\n", 2, "webhooks.retry_schedule: '99ms'");
        load_bad("[webhooks]\nretry_schedule = 1s, 5 parsecs\n", 2, "webhooks.retry_schedule: '5'");
        load_bad("[mailer]\nretry_schedule = ,\n", 2,
                 "mailer.retry_schedule: needs 1 to 16 durations");
        load_bad("[mailer]\nretry_schedule = 1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s\n",
                 2, "mailer.retry_schedule: needs 1 to 16 durations");
}

/* Enumerations are read by name tables; an unknown name lists the known ones. */
static void test_enums(void **state)
{
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[smtp]\nstarttls = required\n[mailer]\nweekly_day = sunday\n"
                                 "[partner.a]\nurl = https://a.example/\nsecret_file = /x\n"
                                 "format = cloudevents\n"));
        assert_int_equal(cfg.smtp.starttls, 2);
        assert_int_equal(cfg.mailer.weekly_day, 0);
        assert_int_equal(nc_config_partner(&cfg, "a")->format, NC_FORMAT_CLOUDEVENTS);
        nc_config_free(&cfg);
        load_bad("[smtp]\nstarttls = maybe\n", 2,
                 "smtp.starttls: 'maybe' must be one of off, optional, required");
        load_bad("[mailer]\nweekly_day = Monday\n", 2, "mailer.weekly_day: 'Monday' must be");
        load_bad("[partner.a]\nformat = xml\n", 2,
                 "partner.a.format: 'xml' must be one of standard, cloudevents");
        load_bad("[smtp]\nallow_plaintext_auth = sure\n", 2,
                 "smtp.allow_plaintext_auth: 'sure' must be true or false");
}

#define KAFKA_SECRET "Pangolin-Secret-8812"

/* Writes TEXT to the test's secret file (created on first use) with mode MODE; returns its
 * path. */
static const char *write_secret(const char *text, mode_t mode)
{
        int fd;

        if (secret_path[0]) {
                fd = open(secret_path, O_WRONLY | O_TRUNC);
        } else {
                snprintf(secret_path, sizeof(secret_path), "/tmp/nc-test-secret-XXXXXX");
                fd = mkstemp(secret_path);
        }
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(close(fd), 0);
        return secret_path;
}

/* Loads "[kafka]\n" + BODY (which must fail), checks the error starts with "conf:LINE: " +
 * MESSAGE, contains NEEDLE when given, and never contains the secret. */
static void kafka_file_bad(const char *body, int line, const char *message, const char *needle)
{
        char text[1024], err[1024] = "", prefix[512];
        const char *path;
        nc_config_t cfg;

        snprintf(text, sizeof(text), "[kafka]\n%s", body);
        path = write_conf(text);
        if (nc_config_load(&cfg, path, 1, err, sizeof(err)) == 0) {
                nc_config_free(&cfg);
                fail_msg("accepted:\n%s", text);
        }
        snprintf(prefix, sizeof(prefix), "%s:%d: %s", path, line, message);
        if (strncmp(err, prefix, strlen(prefix)) != 0)
                fail_msg("error \"%s\"\n  expected to start with \"%s\"", err, prefix);
        if (needle && !strstr(err, needle))
                fail_msg("error \"%s\" does not name %s", err, needle);
        if (strstr(err, KAFKA_SECRET))
                fail_msg("error \"%s\" shows the secret", err);
}

static void test_kafka_file_reads_value(void **state)
{
        char text[256], origin[128];
        const char *pw = write_secret(KAFKA_SECRET "\n", 0600), *path;
        nc_config_t cfg;
        size_t i;

        (void)state;
        snprintf(text, sizeof(text),
                 "[kafka]\nsecurity.protocol = plaintext\nsasl.password_file = %s\n", pw);
        path = write_conf(text);
        load_ok(&cfg, path);
        /* Stored under the librdkafka name, trailing newline trimmed, never under KEY_file. */
        assert_string_equal(nc_config_kafka_get(&cfg, "sasl.password"), KAFKA_SECRET);
        assert_null(nc_config_kafka_get(&cfg, "sasl.password_file"));
        for (i = 0; i < cfg.kafka_n; i++)
                if (!strcmp(cfg.kafka[i].key, "sasl.password"))
                        break;
        assert_true(i < cfg.kafka_n);
        assert_true(cfg.kafka[i].from_file);
        snprintf(origin, sizeof(origin), "%s:3", path);
        assert_string_equal(cfg.kafka[i].origin, origin);
        assert_string_equal(nc_config_kafka_shown(&cfg.kafka[i]), "(redacted)");
        nc_config_free(&cfg);

        /* Without a trailing newline the whole content is the value; only one "\n" (or
         * "\r\n") is trimmed. */
        write_secret(KAFKA_SECRET, 0600);
        load_ok(&cfg, path);
        assert_string_equal(nc_config_kafka_get(&cfg, "sasl.password"), KAFKA_SECRET);
        nc_config_free(&cfg);
        write_secret(KAFKA_SECRET "\r\n", 0600);
        load_ok(&cfg, path);
        assert_string_equal(nc_config_kafka_get(&cfg, "sasl.password"), KAFKA_SECRET);
        nc_config_free(&cfg);
        write_secret(KAFKA_SECRET "\n\n", 0600);
        load_ok(&cfg, path);
        assert_string_equal(nc_config_kafka_get(&cfg, "sasl.password"), KAFKA_SECRET "\n");
        nc_config_free(&cfg);
}

static void test_kafka_file_through_X(void **state)
{
        char xprop[128], err[1024] = "";
        const char *pw = write_secret(KAFKA_SECRET "\n", 0600);
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[kafka]\nsasl.password = inline\n"));
        /* -X overrides the file's sasl.password (another source), as any -X does. */
        snprintf(xprop, sizeof(xprop), "%s", pw);
        assert_int_equal(
            nc_config_set_kafka(&cfg, "sasl.password_file", xprop, "-X", err, sizeof(err)), 0);
        assert_string_equal(nc_config_kafka_get(&cfg, "sasl.password"), KAFKA_SECRET);
        /* ...but -X sasl.password and -X sasl.password_file together are refused. */
        assert_int_equal(nc_config_set_kafka(&cfg, "sasl.password", "x", "-X", err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "sasl.password_file"));
        assert_null(strstr(err, KAFKA_SECRET));
        assert_string_equal(nc_config_kafka_get(&cfg, "sasl.password"), KAFKA_SECRET);
        /* Inline password-like values are not shown either. */
        for (size_t i = 0; i < cfg.kafka_n; i++)
                if (!strcmp(cfg.kafka[i].key, "sasl.password"))
                        assert_string_equal(nc_config_kafka_shown(&cfg.kafka[i]), "(redacted)");
        nc_config_free(&cfg);
}

static void test_kafka_file_refused(void **state)
{
        char body[512], both[512];
        const char *pw;

        (void)state;
        /* Group-readable: refused, naming the key and the file. */
        pw = write_secret(KAFKA_SECRET "\n", 0640);
        snprintf(body, sizeof(body), "client.id = x\nsasl.password_file = %s\n", pw);
        kafka_file_bad(body, 3, "kafka: sasl.password_file: ", pw);
        /* Missing. */
        snprintf(body, sizeof(body), "sasl.password_file = %s.missing\n", pw);
        kafka_file_bad(body, 2, "kafka: sasl.password_file: ", ".missing");
        /* Empty path. */
        kafka_file_bad("sasl.password_file =\n", 2, "kafka: sasl.password_file: ", NULL);
        pw = write_secret(KAFKA_SECRET "\n", 0600);
        /* X and X_file, in either order: the second line is refused, naming the first. */
        snprintf(both, sizeof(both), "sasl.password = inline\nsasl.password_file = %s\n", pw);
        kafka_file_bad(both, 3, "kafka: sasl.password and sasl.password_file are both set", ":2)");
        snprintf(both, sizeof(both), "sasl.password_file = %s\nsasl.password = inline\n", pw);
        kafka_file_bad(both, 3, "kafka: sasl.password and sasl.password_file are both set", ":2)");
        /* No librdkafka property foo. */
        snprintf(body, sizeof(body), "foo_file = %s\n", pw);
        kafka_file_bad(body, 2, "kafka: foo_file: no librdkafka property foo", NULL);
        /* A content librdkafka refuses is reported without the content (its own message
         * quotes the value). */
        snprintf(body, sizeof(body), "security.protocol_file = %s\n", pw);
        kafka_file_bad(body, 2, "kafka: security.protocol_file: the content of ", pw);
}

/* [topics] <kind>_partitions (default [topics] partitions: 0 here) and <kind>_retention. */
static void test_topic_kind_keys(void **state)
{
        const int64_t day = 24LL * 3600 * 1000;
        nc_config_t cfg;

        (void)state;
        load_ok(&cfg, write_conf("[topics]\npartitions = 4\n"));
        assert_int_equal(cfg.topic[NC_TOPIC_NOTICES].partitions, 0);
        assert_int_equal(cfg.topic[NC_TOPIC_NOTICES].retention_ms, 30 * day);
        assert_int_equal(cfg.topic[NC_TOPIC_DLQ].retention_ms, -1);
        assert_int_equal(cfg.topic[NC_TOPIC_DELIVERIES].retention_ms, 90 * day);
        assert_int_equal(cfg.topic[NC_TOPIC_WEBHOOKS_RETRY].retention_ms, 7 * day);
        assert_int_equal(cfg.topic[NC_TOPIC_MAILER_JOBS].retention_ms, 7 * day);
        assert_int_equal(cfg.topic[NC_TOPIC_SUBSCRIBERS].retention_ms, 0);
        assert_int_equal(cfg.topic[NC_TOPIC_NOTICES].retention_line, 0);
        nc_config_free(&cfg);

        load_ok(&cfg, write_conf("[topics]\nnotices_partitions = 12\nnotices_retention = forever\n"
                                 "dlq_retention = 400d\ndeliveries_retention = 36h\n"
                                 "webhooks_retry_partitions = 1\nmailer_jobs_retention = 2.5d\n"
                                 "subscribers_partitions = 2\n"));
        assert_int_equal(cfg.topic[NC_TOPIC_NOTICES].partitions, 12);
        assert_int_equal(cfg.topic[NC_TOPIC_NOTICES].retention_ms, -1);
        assert_int_equal(cfg.topic[NC_TOPIC_NOTICES].retention_line, 3);
        assert_int_equal(cfg.topic[NC_TOPIC_DLQ].retention_ms, 400 * day);
        assert_int_equal(cfg.topic[NC_TOPIC_DELIVERIES].retention_ms, 36 * 3600 * 1000LL);
        assert_int_equal(cfg.topic[NC_TOPIC_WEBHOOKS_RETRY].partitions, 1);
        assert_int_equal(cfg.topic[NC_TOPIC_MAILER_JOBS].retention_ms, 5 * day / 2);
        assert_int_equal(cfg.topic[NC_TOPIC_SUBSCRIBERS].partitions, 2);
        nc_config_free(&cfg);
}

static void test_topic_kind_keys_bad(void **state)
{
        (void)state;
        load_bad("[topics]\n\ndlq_retention = soon\n", 3,
                 "topics.dlq_retention: 'soon' is not a retention like 36h, 30d or forever");
        load_bad("[topics]\ndeliveries_retention = 30s\n", 2, "topics.deliveries_retention: '30s'");
        load_bad("[topics]\ndeliveries_retention = -1\n", 2, "topics.deliveries_retention: '-1'");
        load_bad("[topics]\nnotices_partitions = 0\n", 2,
                 "topics.notices_partitions: '0' is not an integer between 1 and 10000");
        /* mailer.plan elects the planner: one partition, no key; compacted kinds: no retention */
        load_bad("[topics]\nmailer_plan_partitions = 2\n", 2,
                 "unknown key 'mailer_plan_partitions'");
        load_bad("[topics]\nsubscribers_retention = 7d\n", 2,
                 "unknown key 'subscribers_retention'");
        /* checked against the rest of the file, naming where the retention was set */
        load_bad("[webhooks]\nretry_schedule = 5s, 13h\n[topics]\nwebhooks_retry_retention = 1d\n",
                 4, "topics.webhooks_retry_retention: 1d is shorter than twice the longest");
        load_bad("[topics]\nnotices_retention = 6d\n", 2,
                 "topics.notices_retention: 6d is shorter than a week (7d)");
}

static void test_topic_kind_default_too_short(void **state)
{
        char err[1024] = "";
        const char *path = write_conf("[webhooks]\nretry_schedule = 5s, 100h\n");
        nc_config_t cfg;

        (void)state;
        assert_int_equal(nc_config_load(&cfg, path, 1, err, sizeof(err)), -1);
        assert_non_null(
            strstr(err, "topics.webhooks_retry_retention: 7d (the default) is shorter"));
        assert_non_null(strstr(err, path));
}

static void test_retention_parse_format(void **state)
{
        char buf[32];
        int64_t ms;

        (void)state;
        assert_int_equal(nc_retention_parse("forever", &ms), 0);
        assert_int_equal(ms, -1);
        assert_int_equal(nc_retention_parse("1m", &ms), 0);
        assert_int_equal(ms, 60000);
        assert_int_equal(nc_retention_parse("59s", &ms), -1);
        assert_int_equal(nc_retention_parse("7", &ms), -1);
        assert_int_equal(nc_retention_parse("200y", &ms), -1);
        assert_int_equal(nc_retention_parse("40000d", &ms), -1);
        assert_int_equal(nc_duration_parse("1d", &ms), -1); /* days: retention only */
        nc_retention_format(-1, buf, sizeof(buf));
        assert_string_equal(buf, "forever");
        nc_retention_format(90LL * 24 * 3600 * 1000, buf, sizeof(buf));
        assert_string_equal(buf, "90d");
        nc_retention_format(36LL * 3600 * 1000, buf, sizeof(buf));
        assert_string_equal(buf, "36h");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_good_file_every_key, teardown_tmp),
            cmocka_unit_test_teardown(test_topic_names, teardown_tmp),
            cmocka_unit_test_teardown(test_unknown_key_line, teardown_tmp),
            cmocka_unit_test_teardown(test_unknown_section, teardown_tmp),
            cmocka_unit_test_teardown(test_unknown_empty_section, teardown_tmp),
            cmocka_unit_test_teardown(test_bad_integer, teardown_tmp),
            cmocka_unit_test_teardown(test_integer_bounds_accepted, teardown_tmp),
            cmocka_unit_test_teardown(test_syntax_error_line, teardown_tmp),
            cmocka_unit_test_teardown(test_first_error_reported, teardown_tmp),
            cmocka_unit_test_teardown(test_unknown_kafka_property, teardown_tmp),
            cmocka_unit_test_teardown(test_kafka_passthrough, teardown_tmp),
            cmocka_unit_test_teardown(test_kafka_override, teardown_tmp),
            cmocka_unit_test_teardown(test_kafka_file_reads_value, teardown_tmp),
            cmocka_unit_test_teardown(test_kafka_file_through_X, teardown_tmp),
            cmocka_unit_test_teardown(test_kafka_file_refused, teardown_tmp),
            cmocka_unit_test_teardown(test_missing_explicit_file, teardown_tmp),
            cmocka_unit_test_teardown(test_missing_default_file_uses_defaults, teardown_tmp),
            cmocka_unit_test_teardown(test_default_language_not_in_languages, teardown_tmp),
            cmocka_unit_test_teardown(test_bad_default_timezone, teardown_tmp),
            cmocka_unit_test_teardown(test_bad_category, teardown_tmp),
            cmocka_unit_test_teardown(test_invalid_utf8, teardown_tmp),
            cmocka_unit_test_teardown(test_config_path_precedence, teardown_tmp),
            cmocka_unit_test_teardown(test_long_value_line, teardown_tmp),
            cmocka_unit_test_teardown(test_long_comment_line_numbers, teardown_tmp),
            cmocka_unit_test_teardown(test_line_limit, teardown_tmp),
            cmocka_unit_test_teardown(test_duplicate_key, teardown_tmp),
            cmocka_unit_test_teardown(test_same_key_other_section, teardown_tmp),
            cmocka_unit_test_teardown(test_repeated_section, teardown_tmp),
            cmocka_unit_test_teardown(test_nul_byte, teardown_tmp),
            cmocka_unit_test_teardown(test_empty_bootstrap_servers, teardown_tmp),
            cmocka_unit_test_teardown(test_syntax_accepted, teardown_tmp),
            cmocka_unit_test_teardown(test_syntax_refused, teardown_tmp),
            cmocka_unit_test_teardown(test_empty_partner_section, teardown_tmp),
            cmocka_unit_test_teardown(test_defaults, teardown_tmp),
            cmocka_unit_test_teardown(test_check_webhooks_needs_a_partner, teardown_tmp),
            cmocka_unit_test_teardown(test_check_mailer_from_address, teardown_tmp),
            cmocka_unit_test_teardown(test_templates_default_datadir, teardown_tmp),
            cmocka_unit_test_teardown(test_verp_delimiter, teardown_tmp),
            cmocka_unit_test_teardown(test_partner_regions, teardown_tmp),
            cmocka_unit_test_teardown(test_retry_schedule, teardown_tmp),
            cmocka_unit_test_teardown(test_enums, teardown_tmp),
            cmocka_unit_test_teardown(test_topic_kind_keys, teardown_tmp),
            cmocka_unit_test_teardown(test_topic_kind_keys_bad, teardown_tmp),
            cmocka_unit_test_teardown(test_topic_kind_default_too_short, teardown_tmp),
            cmocka_unit_test(test_retention_parse_format),
        };

        return cmocka_run_group_tests_name("nc_config", tests, NULL, NULL);
}
