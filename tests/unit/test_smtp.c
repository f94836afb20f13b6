/* Tests for consumer/mailer/smtp.c and nodelay.c against a real SMTP server: the aiosmtpd
 * server of tests/integration/smtp_server.py, run as a child process per test with its failure
 * modes (421 greeting, 421 mid-session, 451, 550, down), STARTTLS and AUTH.  Skipped when
 * python3 cannot import aiosmtpd.
 *
 * The mailer sources are compiled into this test directly: the unit-test rule links each test
 * against libnoticecast.a only, and the connect() interposer must be in the executable. */
#include "nc_test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include "../../consumer/mailer/nodelay.c"
#include "../../consumer/mailer/smtp.c"

#define FROM "digest@notices.example.gov"

static int have_server = -1;

struct srv {
        pid_t pid;
        int in;
        FILE *out;
        int port;
        char dir[64];
        char spool[128];
        char cert[512];
};

static int server_available(void)
{
        if (have_server < 0)
                have_server = system("python3 -c 'import aiosmtpd' >/dev/null 2>&1") == 0;
        return have_server;
}

static void script_path(char *buf, size_t size)
{
        const char *src = getenv("NC_TEST_SRCDIR");

        snprintf(buf, size, "%s/tests/integration/smtp_server.py", src ? src : ".");
}

/* Starts the server with extra arguments (NULL-terminated); waits for its READY line. */
static void srv_start(struct srv *s, ...)
{
        char script[512], certdir[160], line[1024], log[160];
        const char *argv[40];
        int inpipe[2], outpipe[2], argc = 0;
        va_list ap;

        memset(s, 0, sizeof *s);
        snprintf(s->dir, sizeof s->dir, "/tmp/nc-smtp-test.XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->spool, sizeof s->spool, "%s/spool", s->dir);
        snprintf(certdir, sizeof certdir, "%s/certs", s->dir);
        snprintf(log, sizeof log, "%s/server.log", s->dir);
        script_path(script, sizeof script);

        argv[argc++] = "python3";
        argv[argc++] = script;
        argv[argc++] = "--spool";
        argv[argc++] = s->spool;
        argv[argc++] = "--certdir";
        argv[argc++] = certdir;
        va_start(ap, s);
        for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 38;)
                argv[argc++] = a;
        va_end(ap);
        argv[argc] = NULL;

        assert_int_equal(pipe(inpipe), 0);
        assert_int_equal(pipe(outpipe), 0);
        s->pid = fork();
        assert_true(s->pid >= 0);
        if (s->pid == 0) {
                int err = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

                dup2(inpipe[0], 0);
                dup2(outpipe[1], 1);
                if (err >= 0)
                        dup2(err, 2);
                close(inpipe[1]);
                close(outpipe[0]);
                execvp("python3", (char *const *)argv);
                _exit(127);
        }
        close(inpipe[0]);
        close(outpipe[1]);
        s->in = inpipe[1];
        s->out = fdopen(outpipe[0], "r");
        assert_non_null(s->out);
        assert_non_null(fgets(line, sizeof line, s->out));
        assert_int_equal(sscanf(line, "READY port=%d cert=%511s", &s->port, s->cert), 2);
}

static void srv_cmd(struct srv *s, const char *cmd, char *reply, size_t size)
{
        char line[256];

        snprintf(line, sizeof line, "%s\n", cmd);
        assert_int_equal(write(s->in, line, strlen(line)), (ssize_t)strlen(line));
        assert_non_null(fgets(reply, (int)size, s->out));
}

static int srv_count(struct srv *s)
{
        char reply[64];
        int n = -1;

        srv_cmd(s, "count", reply, sizeof reply);
        assert_int_equal(sscanf(reply, "COUNT %d", &n), 1);
        return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

static void srv_stop(struct srv *s)
{
        int status;

        close(s->in); /* end of input: the server stops */
        for (int i = 0; i < 100; i++) {
                if (waitpid(s->pid, &status, WNOHANG) == s->pid)
                        goto reaped;
                usleep(50000);
        }
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
reaped:
        fclose(s->out);
        nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The K-th stored message (from 1), or NULL. */
static char *spooled(struct srv *s, int k, const char *ext, size_t *len)
{
        char path[256], err[256];

        snprintf(path, sizeof path, "%s/%d.%s", s->spool, k, ext);
        return nc_file_read(path, len, err, sizeof err);
}

/* A complete message: headers libesmtp would otherwise add, a body of about BODY bytes with
 * a line starting with a dot (which must survive dot-stuffing). */
static char *make_msg(const char *to, int id, size_t body, int with_msgid, size_t *len)
{
        size_t cap = body + 1024, n = 0;
        char *m = malloc(cap);

        assert_non_null(m);
        n += (size_t)snprintf(m + n, cap - n,
                              "Date: Thu, 26 Nov 2026 19:45:00 +0000\r\n"
                              "From: Notices <" FROM ">\r\n"
                              "To: <%s>\r\n"
                              "Subject: digest %d\r\n",
                              to, id);
        if (with_msgid)
                n += (size_t)snprintf(m + n, cap - n,
                                      "Message-ID: <%d.digest@notices.example.gov>\r\n", id);
        n += (size_t)snprintf(m + n, cap - n,
                              "MIME-Version: 1.0\r\n"
                              "Content-Type: text/plain; charset=us-ascii\r\n"
                              "\r\n"
                              ".a line that starts with a dot\r\n");
        while (n + 72 < cap && n < body + 200) {
                memset(m + n, 'a' + (char)(n % 26), 70);
                memcpy(m + n + 70, "\r\n", 2);
                n += 72;
        }
        *len = n;
        return m;
}

struct batch {
        ml_smtp_msg_t *msgs;
        char **bufs;
        char (*rcpts)[64];
        size_t n;
};

static void batch_make(struct batch *b, size_t n, size_t body)
{
        b->n = n;
        b->msgs = calloc(n, sizeof *b->msgs);
        b->bufs = calloc(n, sizeof *b->bufs);
        b->rcpts = calloc(n, sizeof *b->rcpts);
        assert_true(b->msgs && b->bufs && b->rcpts);
        for (size_t i = 0; i < n; i++) {
                snprintf(b->rcpts[i], sizeof b->rcpts[i], "user%zu@example.org", i);
                b->bufs[i] = make_msg(b->rcpts[i], (int)i, body, 1, &b->msgs[i].len);
                b->msgs[i].mail_from = FROM;
                b->msgs[i].rcpt = b->rcpts[i];
                b->msgs[i].data = b->bufs[i];
                b->msgs[i].status = -1;
        }
}

static void batch_free(struct batch *b)
{
        for (size_t i = 0; i < b->n; i++)
                free(b->bufs[i]);
        free(b->bufs);
        free(b->msgs);
        free(b->rcpts);
}

/* ml_smtp_send_session on a batch; says why when it fails (some tests expect that). */
static int send_batch(const ml_smtp_config_t *cfg, struct batch *b, char *err, size_t size)
{
        int rc;

        err[0] = '\0';
        rc = ml_smtp_send_session(cfg, b->msgs, b->n, err, size);
        if (rc < 0)
                print_message("    ml_smtp_send_session: %s\n", err);
        return rc;
}

static ml_smtp_config_t base_cfg(const struct srv *s)
{
        ml_smtp_config_t c;

        memset(&c, 0, sizeof c);
        c.host = "127.0.0.1";
        c.port = s->port;
        c.timeout_ms = 10000;
        c.helo_name = "mailer.test";
        return c;
}

#define SKIP_WITHOUT_SERVER()                                                                      \
        do {                                                                                       \
                if (!server_available()) {                                                         \
                        print_message("python3 with aiosmtpd not available: skipped\n");           \
                        skip();                                                                    \
                }                                                                                  \
        } while (0)

/* ---- tests -------------------------------------------------------------------------------- */

static void test_basic(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "", *eml, *env;
        size_t len;
        unsigned long before = ml_nodelay_applied();

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, NULL);
        batch_make(&b, 3, 3000);
        cfg = base_cfg(&s);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        for (size_t i = 0; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 250);
                assert_non_null(strstr(b.msgs[i].reply, "queued as"));
                assert_false(ml_smtp_status_temporary(b.msgs[i].status));
                /* Its transaction was timed (MAIL FROM to the reply after the data). */
                assert_true(b.msgs[i].seconds >= 0 && b.msgs[i].seconds < 30);
        }
        assert_int_equal(srv_count(&s), 3);
        /* Byte for byte what we gave: nothing added (Date, From, Message-ID present), the
         * leading dot unstuffed by the server again. */
        for (int k = 1; k <= 3; k++) {
                eml = spooled(&s, k, "eml", &len);
                assert_non_null(eml);
                assert_int_equal(len, b.msgs[k - 1].len);
                assert_memory_equal(eml, b.msgs[k - 1].data, len);
                free(eml);
                env = spooled(&s, k, "json", &len);
                assert_non_null(env);
                assert_non_null(strstr(env, "\"mail_from\": \"" FROM "\""));
                assert_non_null(strstr(env, b.rcpts[k - 1]));
                assert_non_null(strstr(env, "SIZE="));
                free(env);
        }
        /* One connection for the three messages; TCP_NODELAY got onto it. */
        eml = spooled(&s, 3, "json", &len);
        assert_non_null(strstr(eml, "\"connection\": 1,"));
        free(eml);
        assert_true(ml_nodelay_applied() > before);
        assert_true(ml_nodelay_active());
        batch_free(&b);
        srv_stop(&s);
}

/* What libesmtp does to headers: adds a missing Message-Id, drops a second To:. */
static void test_headers(void **state)
{
        struct srv s;
        ml_smtp_config_t cfg;
        ml_smtp_msg_t m;
        char err[256] = "", *eml, *data;
        size_t len;
        const char *dup = "Date: Thu, 26 Nov 2026 19:45:00 +0000\r\n"
                          "From: <" FROM ">\r\n"
                          "To: <a@example.org>\r\n"
                          "To: <b@example.org>\r\n"
                          "Subject: x\r\n"
                          "Message-ID: <dup@example.gov>\r\n"
                          "\r\n"
                          "body\r\n";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, NULL);
        cfg = base_cfg(&s);
        memset(&m, 0, sizeof m);
        m.mail_from = FROM;
        m.rcpt = "a@example.org";
        data = make_msg("a@example.org", 7, 100, 0, &m.len);
        m.data = data;
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 1, err, sizeof err), 0);
        assert_int_equal(m.status, 250);
        eml = spooled(&s, 1, "eml", &len);
        assert_non_null(eml);
        assert_non_null(strstr(eml, "Message-Id: <")); /* added by libesmtp */
        assert_int_equal(len > m.len, 1);
        free(eml);
        free(data);

        m.data = dup;
        m.len = strlen(dup);
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 1, err, sizeof err), 0);
        eml = spooled(&s, 2, "eml", &len);
        assert_non_null(eml);
        assert_null(strstr(eml, "b@example.org"));
        assert_non_null(strstr(eml, "Message-ID: <dup@example.gov>"));
        free(eml);
        srv_stop(&s);
}

static void test_reject_and_tempfail(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--reject", "user3@example.org", "--tempfail", "2", NULL);
        batch_make(&b, 6, 2500);
        cfg = base_cfg(&s);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 451);
        assert_int_equal(b.msgs[1].status, 451);
        assert_true(ml_smtp_status_temporary(451));
        assert_int_equal(b.msgs[2].status, 250);
        assert_int_equal(b.msgs[3].status, 550);
        assert_non_null(strstr(b.msgs[3].reply, "5.1.1"));
        /* Refused before its data: no transaction to time. */
        assert_true(b.msgs[3].seconds < 0);
        assert_true(b.msgs[2].seconds >= 0);
        assert_false(ml_smtp_status_temporary(550));
        assert_int_equal(b.msgs[4].status, 250);
        assert_int_equal(b.msgs[5].status, 250);
        assert_int_equal(srv_count(&s), 3);
        batch_free(&b);
        srv_stop(&s);
}

static void test_greeting_421(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--fail-connections", "1", NULL);
        batch_make(&b, 3, 100);
        cfg = base_cfg(&s);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "421"));
        for (size_t i = 0; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 421);
                assert_true(ml_smtp_status_temporary(b.msgs[i].status));
                assert_false(b.msgs[i].attempted);
        }
        /* The next session gets through. */
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        for (size_t i = 0; i < b.n; i++)
                assert_int_equal(b.msgs[i].status, 250);
        batch_free(&b);
        srv_stop(&s);
}

static void test_midsession_421(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--close-after", "2", NULL);
        batch_make(&b, 5, 2500);
        cfg = base_cfg(&s);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 250);
        assert_int_equal(b.msgs[1].status, 250);
        assert_true(b.msgs[0].attempted && b.msgs[1].attempted);
        for (size_t i = 2; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 421);
                assert_non_null(strstr(b.msgs[i].reply, "shutting down"));
                /* The 421 to the third MAIL FROM is the session's, not that message's. */
                assert_false(b.msgs[i].attempted);
                assert_true(b.msgs[i].seconds < 0);
        }
        assert_int_equal(srv_count(&s), 2);
        batch_free(&b);
        srv_stop(&s);
}

/* The relay dies after reading a message's data: that message's fate is unknown (0, and
 * the reply says so), the ones after it were not sent (0). */
static void test_drop(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--drop-after", "2", NULL);
        batch_make(&b, 5, 2500);
        cfg = base_cfg(&s);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 250);
        assert_int_equal(b.msgs[1].status, 250);
        assert_int_equal(b.msgs[2].status, 0);
        assert_non_null(strstr(b.msgs[2].reply, "after the message data was sent"));
        assert_true(b.msgs[2].attempted); /* the relay may have it: a retry is a retry */
        assert_true(b.msgs[1].seconds >= 0);
        assert_true(b.msgs[2].seconds < 0); /* no final reply: not a whole transaction */
        for (size_t i = 3; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 0);
                assert_non_null(strstr(b.msgs[i].reply, "not sent"));
                assert_true(ml_smtp_status_temporary(b.msgs[i].status));
                assert_false(b.msgs[i].attempted);
                assert_true(b.msgs[i].seconds < 0);
        }
        assert_int_equal(srv_count(&s), 2);
        batch_free(&b);
        srv_stop(&s);
}

static void test_down(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "", reply[64];

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, NULL);
        srv_cmd(&s, "down", reply, sizeof reply);
        batch_make(&b, 2, 100);
        cfg = base_cfg(&s);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "cannot connect"));
        for (size_t i = 0; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 0);
                assert_non_null(strstr(b.msgs[i].reply, "not sent: cannot connect"));
        }
        srv_cmd(&s, "up", reply, sizeof reply);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[1].status, 250);
        batch_free(&b);
        srv_stop(&s);
}

static void test_bad_addresses(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, NULL);
        batch_make(&b, 3, 100);
        b.msgs[0].rcpt = "victim@example.org>\r\nRCPT TO:<other@example.org";
        b.msgs[1].mail_from = "a b@example.org";
        cfg = base_cfg(&s);
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 553);
        assert_int_equal(b.msgs[1].status, 553);
        assert_true(b.msgs[0].attempted && b.msgs[1].attempted); /* final: no other session */
        assert_int_equal(b.msgs[2].status, 250);
        assert_int_equal(srv_count(&s), 1);
        batch_free(&b);
        srv_stop(&s);
}

static void test_starttls(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "", *env, other[512];
        size_t len;

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--tls", NULL);
        batch_make(&b, 2, 3000);
        cfg = base_cfg(&s);
        cfg.starttls = ML_SMTP_TLS_REQUIRED;
        cfg.ca_file = s.cert;
        /* By IP address (iPAddress SAN, which libesmtp's own check does not know)... */
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[1].status, 250);
        env = spooled(&s, 1, "json", &len);
        assert_non_null(strstr(env, "\"tls\": true"));
        free(env);
        /* ...and by name. */
        cfg.host = "localhost";
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[1].status, 250);

        /* Opportunistic, unverified: no CA file. */
        cfg.host = "127.0.0.1";
        cfg.starttls = ML_SMTP_TLS_OPTIONAL;
        cfg.ca_file = NULL;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 250);
        env = spooled(&s, 5, "json", &len);
        assert_non_null(strstr(env, "\"tls\": true"));
        free(env);

        /* Required, against the system store: the self-signed certificate is refused. */
        cfg.starttls = ML_SMTP_TLS_REQUIRED;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "certificate verify failed"));
        assert_int_equal(b.msgs[0].status, 0);

        /* A CA that did not sign it, and a name it does not carry. */
        {
                char cmd[700];

                snprintf(other, sizeof other, "%s/other.pem", s.dir);
                snprintf(cmd, sizeof cmd,
                         "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                         "-keyout /dev/null -out %s >/dev/null 2>&1",
                         other);
                assert_int_equal(system(cmd), 0);
        }
        cfg.ca_file = other;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "certificate verify failed"));
        assert_int_equal(srv_count(&s), 6);
        srv_stop(&s);

        /* The same certificate (localhost, 127.0.0.1) on 127.0.0.2: the name does not match,
         * and with a CA file OPTIONAL verifies too. */
        srv_start(&s, "--tls", "--host", "127.0.0.2", NULL);
        cfg = base_cfg(&s);
        cfg.host = "127.0.0.2";
        cfg.ca_file = s.cert;
        cfg.starttls = ML_SMTP_TLS_OPTIONAL;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "IP address mismatch"));
        assert_int_equal(srv_count(&s), 0);
        batch_free(&b);
        srv_stop(&s);
}

static void test_starttls_not_offered(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, NULL);
        batch_make(&b, 2, 100);
        cfg = base_cfg(&s);
        cfg.starttls = ML_SMTP_TLS_REQUIRED;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "does not offer STARTTLS"));
        assert_int_equal(b.msgs[0].status, 0);
        /* OPTIONAL goes on in plain text. */
        cfg.starttls = ML_SMTP_TLS_OPTIONAL;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 250);
        batch_free(&b);
        srv_stop(&s);
}

static void test_auth(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "", *env;
        size_t len;

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--tls", "--auth", NULL);
        batch_make(&b, 2, 100);
        cfg = base_cfg(&s);
        cfg.starttls = ML_SMTP_TLS_REQUIRED;
        cfg.ca_file = s.cert;
        cfg.username = "noticecast";
        cfg.password = "s3cret-test-password";
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 250);
        assert_int_equal(b.msgs[1].status, 250);
        env = spooled(&s, 1, "json", &len);
        assert_non_null(strstr(env, "\"auth_user\": \"noticecast\""));
        free(env);

        cfg.auth_mechanisms = "LOGIN";
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[1].status, 250);

        /* Wrong password: the session stops before MAIL FROM, nothing is a bounce. */
        cfg.auth_mechanisms = NULL;
        cfg.password = "wrong";
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "535"));
        assert_null(strstr(err, "wrong"));
        assert_int_equal(b.msgs[0].status, 0);
        assert_int_equal(b.msgs[1].status, 0);

        /* No allowed mechanism on offer. */
        cfg.password = "s3cret-test-password";
        cfg.auth_mechanisms = "CRAM-MD5";
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "AUTH not done"));
        assert_int_equal(b.msgs[0].status, 0);

        /* Without STARTTLS this server offers no AUTH: refuse to send unauthenticated. */
        cfg.auth_mechanisms = NULL;
        cfg.starttls = ML_SMTP_TLS_OFF;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "AUTH not done"));
        assert_int_equal(srv_count(&s), 4);
        batch_free(&b);
        srv_stop(&s);
}

struct thread_arg {
        const ml_smtp_config_t *cfg;
        struct batch b;
        int rc;
        int ok;
};

static void *session_thread(void *p)
{
        struct thread_arg *a = p;
        char err[256];

        a->rc = ml_smtp_send_session(a->cfg, a->b.msgs, a->b.n, err, sizeof err);
        for (size_t i = 0; i < a->b.n; i++)
                a->ok += a->b.msgs[i].status == 250;
        return NULL;
}

static void test_threads(void **state)
{
        struct srv s;
        ml_smtp_config_t cfg;
        struct thread_arg args[4];
        pthread_t t[4];

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--tls", "--auth", NULL);
        cfg = base_cfg(&s);
        cfg.starttls = ML_SMTP_TLS_REQUIRED;
        cfg.ca_file = s.cert;
        cfg.username = "noticecast";
        cfg.password = "s3cret-test-password";
        for (int i = 0; i < 4; i++) {
                memset(&args[i], 0, sizeof args[i]);
                args[i].cfg = &cfg;
                batch_make(&args[i].b, 25, 2500);
                assert_int_equal(pthread_create(&t[i], NULL, session_thread, &args[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(args[i].rc, 0);
                assert_int_equal(args[i].ok, 25);
                batch_free(&args[i].b);
        }
        assert_int_equal(srv_count(&s), 100);
        srv_stop(&s);
}

static void test_config_errors(void **state)
{
        ml_smtp_config_t cfg;
        ml_smtp_msg_t m;
        char err[256] = "", longpw[300];

        (void)state;
        memset(&cfg, 0, sizeof cfg);
        memset(&m, 0, sizeof m);
        m.rcpt = "a@example.org";
        m.data = "x\r\n";
        m.len = 3;
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 1, err, sizeof err), -1);
        assert_non_null(strstr(err, "host"));
        cfg.host = "::1";
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 1, err, sizeof err), -1);
        cfg.host = "127.0.0.1";
        cfg.password = "x";
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 1, err, sizeof err), -1);
        assert_non_null(strstr(err, "without a user"));
        memset(longpw, 'p', sizeof longpw - 1);
        longpw[sizeof longpw - 1] = '\0';
        cfg.username = "u";
        cfg.password = longpw;
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 1, err, sizeof err), -1);
        assert_null(strstr(err, "ppp"));
        /* Nothing to send is not an error and connects nowhere. */
        cfg.password = NULL;
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 0, err, sizeof err), 0);
        assert_true(strlen(ml_smtp_version()) > 0);
}

/* The connect timeout: a listener whose backlog is full leaves further SYNs unanswered. */
static void test_connect_timeout(void **state)
{
        ml_smtp_config_t cfg;
        ml_smtp_msg_t m;
        char err[256] = "";
        struct sockaddr_in sa;
        socklen_t salen = sizeof sa;
        int l, fill[8], nfill = 0;
        struct timespec t0, t1;

        (void)state;
        l = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(l, 0), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &salen), 0);
        /* Fill the backlog with connections nobody accepts. */
        for (int i = 0; i < 8; i++) {
                int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

                connect(c, (struct sockaddr *)&sa, sizeof sa);
                fill[nfill++] = c;
        }
        usleep(100000);
        memset(&cfg, 0, sizeof cfg);
        cfg.host = "127.0.0.1";
        cfg.port = ntohs(sa.sin_port);
        cfg.timeout_ms = 1000;
        memset(&m, 0, sizeof m);
        m.rcpt = "a@example.org";
        m.data = "x\r\n";
        m.len = 3;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(ml_smtp_send_session(&cfg, &m, 1, err, sizeof err), -1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* Either the connect timed out, or the kernel completed it and the greeting wait did:
         * both within a few timeouts, not the kernel's two minutes. */
        assert_true(t1.tv_sec - t0.tv_sec < 10);
        assert_int_equal(m.status, 0);
        for (int i = 0; i < nfill; i++)
                close(fill[i]);
        close(l);
}

/* A relay that takes 2 messages per connection: the batch goes on in new sessions, and every
 * message is sent once. */
static void test_batch_continues_after_421(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";
        size_t sessions = 0;

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--close-after", "2", NULL);
        batch_make(&b, 7, 2500);
        cfg = base_cfg(&s);
        assert_int_equal(ml_smtp_send_batch(&cfg, b.msgs, b.n, 0, &sessions, err, sizeof err), 0);
        assert_int_equal(sessions, 4);
        for (size_t i = 0; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 250);
                assert_true(b.msgs[i].attempted);
        }
        assert_int_equal(srv_count(&s), 7);
        /* A cap on the sessions leaves the rest unattempted, with the 421. */
        assert_int_equal(ml_smtp_send_batch(&cfg, b.msgs, b.n, 2, &sessions, err, sizeof err), -1);
        assert_int_equal(sessions, 2);
        assert_non_null(strstr(err, "3 messages not attempted after 2 sessions"));
        for (size_t i = 4; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 421);
                assert_false(b.msgs[i].attempted);
        }
        batch_free(&b);
        srv_stop(&s);
}

/* After a drop the rest goes on; a relay refusing at the greeting is tried once, not spun. */
static void test_batch_drop_and_refusal(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "", reply[64];
        size_t sessions = 0;

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--drop-after", "2", NULL);
        batch_make(&b, 5, 2500);
        cfg = base_cfg(&s);
        assert_int_equal(ml_smtp_send_batch(&cfg, b.msgs, b.n, 0, &sessions, err, sizeof err), 0);
        assert_int_equal(sessions, 2);
        assert_int_equal(b.msgs[2].status, 0); /* its fate unknown: the caller retries it */
        assert_true(b.msgs[2].attempted);
        assert_int_equal(b.msgs[3].status, 250);
        assert_int_equal(b.msgs[4].status, 250);
        assert_int_equal(srv_count(&s), 4);
        srv_cmd(&s, "drop-after 0", reply, sizeof reply);
        srv_cmd(&s, "fail-connections 5", reply, sizeof reply);
        assert_int_equal(ml_smtp_send_batch(&cfg, b.msgs, b.n, 0, &sessions, err, sizeof err), -1);
        assert_int_equal(sessions, 1);
        assert_non_null(strstr(err, "421"));
        for (size_t i = 0; i < b.n; i++) {
                assert_int_equal(b.msgs[i].status, 421);
                assert_false(b.msgs[i].attempted);
        }
        batch_free(&b);
        srv_stop(&s);
}

static void test_batch_policy(void **state)
{
        (void)state;
        /* (left, progress, sessions, max, stopping) */
        assert_true(ml_smtp_batch_continue(5, 3, 1, 10, 0));
        assert_false(ml_smtp_batch_continue(0, 3, 1, 10, 0));  /* done */
        assert_false(ml_smtp_batch_continue(5, 0, 1, 10, 0));  /* no progress: relay refuses */
        assert_false(ml_smtp_batch_continue(5, 3, 10, 10, 0)); /* cap */
        assert_false(ml_smtp_batch_continue(5, 3, 1, 10, 1));  /* stopping */
}

/* 452 at RCPT: that message's own temporary answer (attempted), the others go through. */
static void test_rcpt_tempfail(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--tempfail-rcpt", "user1@example.org", NULL);
        batch_make(&b, 3, 100);
        cfg = base_cfg(&s);
        assert_int_equal(ml_smtp_send_batch(&cfg, b.msgs, b.n, 0, NULL, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 250);
        assert_int_equal(b.msgs[1].status, 452);
        assert_true(b.msgs[1].attempted);
        assert_true(ml_smtp_status_temporary(b.msgs[1].status));
        assert_int_equal(b.msgs[2].status, 250);
        assert_int_equal(srv_count(&s), 2);
        batch_free(&b);
        srv_stop(&s);
}

static int srv_auth_count(struct srv *s)
{
        char reply[64];
        int n = -1;

        srv_cmd(s, "auth-count", reply, sizeof reply);
        assert_int_equal(sscanf(reply, "AUTH %d", &n), 1);
        return n;
}

/* A relay offering AUTH on a plain connection and no STARTTLS: no AUTH command is sent (not
 * even without credentials) unless allow_plaintext_auth; the messages are temporary failures. */
static void test_no_auth_without_tls(void **state)
{
        struct srv s;
        struct batch b;
        ml_smtp_config_t cfg;
        char err[256] = "";

        (void)state;
        SKIP_WITHOUT_SERVER();
        srv_start(&s, "--auth", NULL);
        batch_make(&b, 2, 100);
        cfg = base_cfg(&s);
        cfg.username = "noticecast";
        cfg.password = "s3cret-test-password";
        for (int mode = 0; mode < 2; mode++) {
                cfg.starttls = mode ? ML_SMTP_TLS_OFF : ML_SMTP_TLS_OPTIONAL;
                assert_int_equal(send_batch(&cfg, &b, err, sizeof err), -1);
                assert_non_null(strstr(err, "not sending credentials without TLS"));
                assert_null(strstr(err, "s3cret"));
                for (size_t i = 0; i < b.n; i++) {
                        assert_int_equal(b.msgs[i].status, 0);
                        assert_false(b.msgs[i].attempted);
                        assert_true(ml_smtp_status_temporary(b.msgs[i].status));
                }
                /* Other mechanisms are held back too. */
                cfg.auth_mechanisms = "CRAM-MD5 PLAIN LOGIN";
        }
        assert_int_equal(srv_auth_count(&s), 0);
        assert_int_equal(srv_count(&s), 0);
        /* The explicit opt-in. */
        cfg.auth_mechanisms = NULL;
        cfg.starttls = ML_SMTP_TLS_OPTIONAL;
        cfg.allow_plaintext_auth = 1;
        assert_int_equal(send_batch(&cfg, &b, err, sizeof err), 0);
        assert_int_equal(b.msgs[0].status, 250);
        assert_int_equal(b.msgs[1].status, 250);
        assert_true(srv_auth_count(&s) >= 1);
        batch_free(&b);
        srv_stop(&s);
}

struct cancel_arg {
        ml_smtp_config_t cfg;
        ml_smtp_msg_t m;
        int rc;
        char err[256];
};

static void *cancel_thread(void *p)
{
        struct cancel_arg *a = p;

        a->rc = ml_smtp_send_batch(&a->cfg, &a->m, 1, 0, NULL, a->err, sizeof a->err);
        return NULL;
}

static double elapsed_s(const struct timespec *t0)
{
        struct timespec t1;

        clock_gettime(CLOCK_MONOTONIC, &t1);
        return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ml_smtp_cancel_now ends a session blocked on a relay that never answers (its greeting wait
 * is 30 s here), and one stuck in connect; a cancelled handle starts no session. */
static void test_cancel(void **state)
{
        struct sockaddr_in sa;
        socklen_t salen = sizeof sa;
        ml_smtp_cancel_t c;
        struct cancel_arg a;
        struct timespec t0;
        pthread_t t;
        int l, fill[8], nfill = 0;

        (void)state;
        /* A listener nobody accepts on: the kernel completes the handshake, then silence. */
        l = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(l, 4), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &salen), 0);

        ml_smtp_cancel_init(&c);
        memset(&a, 0, sizeof a);
        a.cfg.host = "127.0.0.1";
        a.cfg.port = ntohs(sa.sin_port);
        a.cfg.timeout_ms = 30000;
        a.cfg.cancel = &c;
        a.m.rcpt = "a@example.org";
        a.m.data = "x\r\n";
        a.m.len = 3;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(pthread_create(&t, NULL, cancel_thread, &a), 0);
        usleep(500000);
        ml_smtp_cancel_now(&c);
        pthread_join(t, NULL);
        assert_true(elapsed_s(&t0) < 5);
        assert_int_equal(a.rc, -1);
        assert_int_equal(a.m.status, 0);
        assert_false(a.m.attempted);
        assert_int_equal(c.fd, -1); /* our duplicate was closed */

        /* Cancelled: nothing is started. */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(ml_smtp_send_session(&a.cfg, &a.m, 1, a.err, sizeof a.err), -1);
        assert_non_null(strstr(a.err, "cancelled"));
        assert_true(elapsed_s(&t0) < 1);

        /* A connect that never completes (full backlog), cancelled. */
        ml_smtp_cancel_reset(&c);
        assert_int_equal(listen(l, 0), 0);
        for (int i = 0; i < 8; i++) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

                connect(fd, (struct sockaddr *)&sa, sizeof sa);
                fill[nfill++] = fd;
        }
        usleep(100000);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(pthread_create(&t, NULL, cancel_thread, &a), 0);
        usleep(500000);
        ml_smtp_cancel_now(&c);
        pthread_join(t, NULL);
        assert_true(elapsed_s(&t0) < 5);
        assert_int_equal(a.rc, -1);
        assert_false(a.m.attempted);
        for (int i = 0; i < nfill; i++)
                close(fill[i]);
        close(l);
        ml_smtp_cancel_destroy(&c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_config_errors),
            cmocka_unit_test(test_basic),
            cmocka_unit_test(test_headers),
            cmocka_unit_test(test_reject_and_tempfail),
            cmocka_unit_test(test_greeting_421),
            cmocka_unit_test(test_midsession_421),
            cmocka_unit_test(test_drop),
            cmocka_unit_test(test_down),
            cmocka_unit_test(test_bad_addresses),
            cmocka_unit_test(test_starttls),
            cmocka_unit_test(test_starttls_not_offered),
            cmocka_unit_test(test_auth),
            cmocka_unit_test(test_threads),
            cmocka_unit_test(test_connect_timeout),
            cmocka_unit_test(test_batch_continues_after_421),
            cmocka_unit_test(test_batch_drop_and_refusal),
            cmocka_unit_test(test_batch_policy),
            cmocka_unit_test(test_rcpt_tempfail),
            cmocka_unit_test(test_no_auth_without_tls),
            cmocka_unit_test(test_cancel),
        };

        nc_log_init("test_smtp", NC_LOG_ERROR);
        /* A server that closes first must not kill the test: ml_smtp_send_session blocks
         * SIGPIPE itself, which is what this checks (no SIG_IGN here). */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
