/* noticecast inbound: one mail on stdin, as Postfix's pipe(8), a .forward, procmail or
 * fetchmail hand it to a program, becomes one event on <prefix>deliveries (producer/inbound.h
 * says which); what is not a mail at all also goes to <prefix>dlq as it came.
 *
 * The exit code is what MTAs act on.  0 once Kafka acknowledged everything (the MTA deletes
 * the mail).  75 (EX_TEMPFAIL) for everything that may pass: Kafka away or not acknowledging
 * within the bound, an unreadable configuration or secret, no memory.  The MTA keeps the mail
 * and tries again: nothing is lost.  Not 78: Postfix maps EX_CONFIG to 5.3.5 and bounces
 * (src/global/sys_exits.c); only EX_TEMPFAIL and EX_OSERR defer.  64 (usage) is the only
 * other code: the command line in master.cf is wrong, which a retry cannot fix.
 *
 * Cheap to start, since it runs once per mail: one plain producer (acks=all; no idempotence,
 * whose producer id would cost a round trip; the event's "id" lets a consumer drop the copy a
 * retry after a lost acknowledgement may write), linger 0, only the topics it writes. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "inbound.h"
#include "nc_dlq.h"
#include "nc_kafka.h"
#include "nc_sdnotify.h"
#include "nc_time.h"
#include "nc_topics.h"

static const char inbound_usage[] =
    "noticecast inbound [--recipient ADDR] [-n]\n"
    "noticecast inbound --serve SOCKET [--socket-mode MODE]\n"
    "\n"
    "Reads one mail on stdin (a bounce, a feedback report, a mailto: unsubscribe, ...) and\n"
    "writes one event about it to the <prefix>deliveries topic, for noticecast-mailer:\n"
    "mail.bounce, mail.delayed, mail.complaint, mail.unsubscribed or mail.ignored (with the\n"
    "reason).  Input that is not a mail (or over 10 MiB) is also kept in the DLQ.  For\n"
    "Postfix: pipe(8) with  argv=noticecast inbound --recipient ${original_recipient}\n"
    "\n"
    "  --recipient ADDR  the envelope recipient (default: Delivered-To, X-Original-To,\n"
    "                    Envelope-To, To)\n"
    "  -n, --dry-run     print the event, write nothing\n"
    "  --serve SOCKET    stay up and take mails on the Unix socket SOCKET (mode MODE,\n"
    "                    default 0660) from noticecast-inbound, which the MTA then runs\n"
    "                    instead: one loaded process and one Kafka connection for all;\n"
    "                    SIGTERM finishes the mails under way and exits 0\n"
    "Common options: -C FILE  -X key=value  -b BROKERS  -v  -q  -h\n"
    "\n"
    "Exit status: 0 written (or ignored, or quarantined) and acknowledged by Kafka;\n"
    "75 try again later (Kafka unreachable, configuration or secret unreadable): the\n"
    "mail is kept by the MTA; 64 usage.\n";

enum { OPT_RECIPIENT = 500, OPT_SERVE, OPT_SOCKET_MODE };

/* A bound on waiting for Kafka whatever [producer] timeout_ms says: an MTA kills a command
 * that runs too long (Postfix: command_time_limit, 1000 s) and may count it as a failure. */
#define TIMEOUT_MAX_MS 60000
/* Input past the limit is read and dropped, up to this much: an MTA writing into a pipe that
 * was closed would see an error. */
#define DRAIN_MAX (1024LL * 1024 * 1024)
/* The mailer uses this much of the secret (consumer/mailer/main.c). */
#define SECRET_MAX 64

/* The unsubscribe secret as the mailer reads it: trimmed, at least 16 bytes, the first
 * SECRET_MAX used. */
static int read_secret(const nc_config_t *cfg, unsigned char *out, size_t *outlen, char *errstr,
                       size_t errstr_size)
{
        const char *path = cfg->mailer.unsubscribe_secret_file;
        char *key;
        size_t len;

        if (!path)
                return nc_err(errstr, errstr_size,
                              "%s: [mailer] unsubscribe_secret_file is required (the mailer's "
                              "secret: it checks the tokens)",
                              cfg->path ? cfg->path : "configuration");
        if (!(key = nc_secret_file_read(path, &len, errstr, errstr_size)))
                return -1;
        nc_str_trim(key);
        len = strlen(key);
        if (len < 16) {
                OPENSSL_cleanse(key, len);
                free(key);
                return nc_err(errstr, errstr_size,
                              "%s: the unsubscribe secret is shorter than 16 "
                              "bytes",
                              path);
        }
        *outlen = len < SECRET_MAX ? len : SECRET_MAX;
        memcpy(out, key, *outlen);
        OPENSSL_cleanse(key, len);
        free(key);
        return 0;
}

/* Stdin, up to INBOUND_MAX_BYTES + 1 bytes kept (one more says it was larger); *TOTAL all
 * that was read. */
static char *read_input(size_t *lenp, long long *total, char *errstr, size_t errstr_size)
{
        size_t cap = 64 * 1024, len = 0;
        char *buf = nc_xmalloc(cap), drain[65536];
        ssize_t n;

        *total = 0;
        for (;;) {
                if (len == cap && cap <= INBOUND_MAX_BYTES) {
                        cap = cap * 2 > INBOUND_MAX_BYTES + 1 ? INBOUND_MAX_BYTES + 1 : cap * 2;
                        buf = nc_xrealloc(buf, cap);
                }
                if (len < cap)
                        n = read(STDIN_FILENO, buf + len, cap - len);
                else if (*total < DRAIN_MAX)
                        n = read(STDIN_FILENO, drain, sizeof(drain));
                else
                        break;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        free(buf);
                        nc_err(errstr, errstr_size, "reading stdin: %s", strerror(errno));
                        return NULL;
                }
                if (n == 0)
                        break;
                if (len < cap)
                        len += (size_t)n;
                *total += n;
        }
        *lenp = len;
        return buf;
}

/* What the delivery reports of one mail's records said (first in a served connection). */
struct acks {
        int pending, failed;
        rd_kafka_resp_err_t err;
        char topic[256]; /* of the first failure */
};

/* Each record's own opaque is the struct acks of its mail. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        struct acks *a = m->_private;

        (void)rk;
        (void)opaque;
        a->pending--;
        if (m->err && !a->failed++) {
                a->err = m->err;
                snprintf(a->topic, sizeof(a->topic), "%s", rd_kafka_topic_name(m->rkt));
        }
}

static rd_kafka_headers_t *event_headers(const char *type)
{
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);

        rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
        rd_kafka_header_add(h, "noticecast-schema", -1, "1", -1);
        rd_kafka_header_add(h, "noticecast-event", -1, type, -1);
        rd_kafka_header_add(h, "noticecast-source", -1, "inbound", -1);
        return h;
}

/* The DLQ record of input that is not a mail: the bytes as they came, or a reference with
 * their prefix when they are too large to copy.  No source topic: there is nothing to replay
 * them to (`dlq replay` skips the entry). */
static rd_kafka_headers_t *dlq_headers(const inbound_t *r, size_t ref_size, const char *dlq_key,
                                       nc_dlq_source_t *src)
{
        rd_kafka_headers_t *h = rd_kafka_headers_new(12);

        *src = (nc_dlq_source_t){.stage = "inbound",
                                 .topic = NULL,
                                 .partition = -1,
                                 .offset = -1,
                                 .reason = r->reason,
                                 .key = dlq_key};
        rd_kafka_header_add(h, "content-type", -1, ref_size ? "application/json" : "message/rfc822",
                            -1);
        nc_dlq_add_headers(h, src, ref_size);
        return h;
}

static rd_kafka_resp_err_t produce(rd_kafka_t *rk, const char *topic, const char *key,
                                   const void *value, size_t len, rd_kafka_headers_t *h,
                                   struct acks *a)
{
        rd_kafka_resp_err_t err;

        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE((void *)value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                RD_KAFKA_V_OPAQUE(a), RD_KAFKA_V_END);
        if (err)
                rd_kafka_headers_destroy(h);
        else
                a->pending++;
        return err;
}

/* The producer of one run, or of the server: acks=all, each record failed by librdkafka
 * once TIMEOUT_MS passed without its acknowledgement. */
static rd_kafka_t *producer_new(nc_cli_t *cli, int timeout_ms, const char *linger, char *errstr,
                                size_t errstr_size)
{
        char num[24];
        const nc_kafka_setting_t set[] = {
            {"acks", "all"}, {"message.timeout.ms", num}, {NULL, NULL}};
        const nc_kafka_setting_t defaults[] = {
            {"linger.ms", linger}, {"enable.idempotence", "false"}, {NULL, NULL}};

        snprintf(num, sizeof(num), "%d", timeout_ms);
        return nc_kafka_producer_new(
            &cli->cfg,
            &(nc_kafka_opts_t){
                .name = "inbound producer", .set = set, .defaults = defaults, .dr_msg_cb = dr_cb},
            errstr, errstr_size);
}

/* Queues the event of R (and the DLQ record of what is not a mail) on RK, their reports
 * going to A.  0, or -1 with errstr (nothing more will be reported to A then, but what was
 * queued before the error may still be). */
static int produce_all(nc_cli_t *cli, rd_kafka_t *rk, const inbound_t *r, const char *key,
                       const char *event, const char *input, size_t input_len, long long total,
                       struct acks *a, char *errstr, size_t errstr_size)
{
        char events_topic[256], dlq_topic[256], dlq_key[NC_DLQ_KEY_SIZE];
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        nc_dlq_source_t src;
        char *ref = NULL;

        nc_topics_name(&cli->cfg, NC_TOPIC_DELIVERIES, events_topic, sizeof(events_topic));
        nc_topics_name(&cli->cfg, NC_TOPIC_DLQ, dlq_topic, sizeof(dlq_topic));
        if (r->quarantine) {
                size_t max = nc_dlq_copy_max(nc_config_kafka_get(&cli->cfg, "message.max.bytes"));
                size_t ref_len = 0;

                snprintf(dlq_key, sizeof(dlq_key), "inbound/%s", r->id);
                if (input_len > max || (long long)input_len != total) {
                        rd_kafka_headers_t *h = dlq_headers(r, (size_t)total, dlq_key, &src);

                        ref = nc_dlq_reference_value(&src, key, strlen(key), input,
                                                     input_len > max ? max : input_len, &ref_len);
                        err = produce(rk, dlq_topic, key, ref, ref_len, h, a);
                } else {
                        err = produce(rk, dlq_topic, key, input, input_len,
                                      dlq_headers(r, 0, dlq_key, &src), a);
                }
        }
        if (!err)
                err = produce(rk, events_topic, key, event, strlen(event),
                              event_headers(inbound_type_name(r->type)), a);
        free(ref);
        if (err)
                return nc_err(errstr, errstr_size, "kafka: %s", rd_kafka_err2str(err));
        return 0;
}

/* Why A's records were not all written, once they are all reported. */
static void acks_error(nc_cli_t *cli, const struct acks *a, char *errstr, size_t errstr_size)
{
        char denied[512];

        if (nc_kafka_denied(&cli->cfg, a->err, "write", a->topic[0] ? a->topic : "?", denied,
                            sizeof(denied)))
                nc_err(errstr, errstr_size, "%s", denied);
        else
                nc_err(errstr, errstr_size, "kafka: %s: %s", a->topic[0] ? a->topic : "?",
                       rd_kafka_err2str(a->err));
}

/* Produces the event (and the DLQ record) and waits for their acknowledgement, within
 * TIMEOUT_MS.  0, or -1 with errstr. */
static int write_all(nc_cli_t *cli, const inbound_t *r, const char *key, const char *event,
                     const char *input, size_t input_len, long long total, int timeout_ms,
                     char *errstr, size_t errstr_size)
{
        struct acks a = {0};
        rd_kafka_t *rk;
        int rc = -1;

        if (!(rk = producer_new(cli, timeout_ms, "0", errstr, errstr_size)))
                return -1;
        if (produce_all(cli, rk, r, key, event, input, input_len, total, &a, errstr, errstr_size) !=
            0)
                goto out;
        /* message.timeout.ms fails what is not acknowledged by then; the margin is for the
         * reports to arrive. */
        if (rd_kafka_flush(rk, timeout_ms + 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_poll(rk, 0);
                nc_err(errstr, errstr_size, "kafka: not acknowledged within %d ms", timeout_ms);
                goto out;
        }
        if (a.failed || a.pending) {
                acks_error(cli, &a, errstr, errstr_size);
                goto out;
        }
        rc = 0;
out:
        rd_kafka_destroy(rk);
        return rc;
}

/* R and its event (compact JSON, *EVENT to free; NULL when out of memory) and key, for one
 * mail INPUT[0..LEN) sent to RECIPIENT (NULL: from its headers). */
static void classify(nc_cli_t *cli, const unsigned char *secret, size_t secret_len,
                     const char *recipient, const char *input, size_t len, inbound_t *r,
                     char **event, char *key, size_t key_size)
{
        char ts[40];
        inbound_conf_t conf = {
            .secret = secret,
            .secret_len = secret_len,
            .verp_base = cli->cfg.mailer.envelope_from ? cli->cfg.mailer.envelope_from
                                                       : cli->cfg.mailer.from_address,
            .verp_delim = cli->cfg.mailer.verp_delimiter[0],
            .unsubscribe_mailto = cli->cfg.mailer.unsubscribe_mailto,
            .envelope_recipient = recipient,
            .now_s = nc_time_now_ms() / 1000,
        };
        json_t *ev;

        inbound_classify(&conf, input, len, r);
        ev = inbound_event(r, nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)));
        *event = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        inbound_key(r, key, key_size);
}

/* ---- the server: --serve SOCKET ------------------------------------------------------- *
 *
 * A process per mail costs ~11 ms of CPU, nearly all of it the dynamic loader and a new
 * Kafka connection: ~85 mails/s on two cores.  `noticecast inbound --serve` keeps the
 * producer, GMime and the secret loaded and answers on a Unix socket; the MTA's pipe runs
 * noticecast-inbound (producer/client/), which links libc only, hands it the mail and exits
 * with the code the server sends back, once Kafka acknowledged the mail's records.  The exit
 * contract is the same as the command's.
 *
 * The protocol, one mail per connection:
 *   client: "NCINBOUND 1 <total bytes> <envelope recipient, or ->\n" and then the first
 *           min(total, INBOUND_MAX_BYTES + 1) bytes of the mail;
 *   server: "<exit code> <text>\n", then it closes. */

#define SERVE_MAX_CONNS 512
#define SERVE_READ_MS   30000 /* a client that stops sending mid-mail is dropped (it exits 75) */

typedef struct conn {
        struct acks a; /* first: the records' opaque */
        int fd;
        int state; /* 0 header, 1 body, 2 waiting for Kafka */
        char hdr[INBOUND_STR_SIZE + 64];
        size_t hlen;
        char recipient[INBOUND_STR_SIZE];
        long long total;
        char *buf;
        size_t want, len;
        int64_t deadline_ms;
        char why[1024]; /* not all of it could be queued: answer 75 with this */
        struct conn *next;
} conn_t;

static volatile sig_atomic_t serve_stop;

static void serve_signal(int sig)
{
        (void)sig;
        serve_stop = 1;
}

static void conn_reply(conn_t *c, int code, const char *text)
{
        char line[1200];
        int n = snprintf(line, sizeof(line), "%d %.1100s\n", code, text);

        /* A small answer to a socket whose peer is waiting for it: no partial write to
         * retry (and if the client is gone, there is nothing to tell). */
        if (n > 0 && write(c->fd, line, (size_t)n) < 0)
                log_debug("inbound serve: answer not written: %s", strerror(errno));
        close(c->fd);
        c->fd = -1;
}

/* The header line: "NCINBOUND 1 <total> <recipient|->". */
static int conn_header(conn_t *c)
{
        char rcpt[INBOUND_STR_SIZE];
        long long total;

        c->hdr[c->hlen - 1] = '\0';
        if (sscanf(c->hdr, "NCINBOUND 1 %lld %255s", &total, rcpt) != 2 || total < 0)
                return -1;
        snprintf(c->recipient, sizeof(c->recipient), "%s", strcmp(rcpt, "-") ? rcpt : "");
        c->total = total;
        c->want = total > (long long)INBOUND_MAX_BYTES ? INBOUND_MAX_BYTES + 1 : (size_t)total;
        c->buf = nc_xmalloc(c->want + 1);
        c->state = 1;
        return 0;
}

/* The whole mail is read: classified and queued for Kafka (or answered at once). */
static void conn_mail(nc_cli_t *cli, rd_kafka_t *rk, const unsigned char *secret, size_t secret_len,
                      conn_t *c)
{
        char key[INBOUND_STR_SIZE + 16], err[1024], *event;
        inbound_t *r = nc_xmalloc(sizeof(*r));

        classify(cli, secret, secret_len, c->recipient[0] ? c->recipient : NULL, c->buf, c->len, r,
                 &event, key, sizeof(key));
        c->state = 2;
        if (!event) {
                conn_reply(c, NC_EX_TEMPFAIL, "out of memory");
        } else if (produce_all(cli, rk, r, key, event, c->buf, c->len, c->total, &c->a, err,
                               sizeof(err)) != 0) {
                /* The DLQ record may be on its way, the event is not: 75 either way, once
                 * nothing of this mail is in flight any more. */
                if (c->a.pending == 0)
                        conn_reply(c, NC_EX_TEMPFAIL, err);
                else
                        snprintf(c->why, sizeof(c->why), "%s", err);
        } else if (c->a.pending == 0) { /* cannot happen: produce_all queued something */
                conn_reply(c, NC_EX_TEMPFAIL, "nothing queued");
        }
        free(event);
        free(r);
        free(c->buf);
        c->buf = NULL;
}

/* Reads what C's socket has; 0, or -1 when C is to be dropped. */
static int conn_read(nc_cli_t *cli, rd_kafka_t *rk, const unsigned char *secret, size_t secret_len,
                     conn_t *c)
{
        for (;;) {
                ssize_t n;

                if (c->state == 0) {
                        n = read(c->fd, c->hdr + c->hlen, 1); /* a line: byte by byte */
                        if (n == 1 && c->hdr[c->hlen++] == '\n') {
                                if (conn_header(c) != 0)
                                        return -1;
                                if (c->want == 0) {
                                        conn_mail(cli, rk, secret, secret_len, c);
                                        return 0;
                                }
                                continue;
                        }
                        if (n == 1 && c->hlen == sizeof(c->hdr))
                                return -1;
                } else {
                        n = read(c->fd, c->buf + c->len, c->want - c->len);
                        if (n > 0 && (c->len += (size_t)n) == c->want) {
                                conn_mail(cli, rk, secret, secret_len, c);
                                return 0;
                        }
                }
                if (n > 0)
                        continue;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return 0;
                return -1; /* EOF before the whole mail, or an error */
        }
}

static int serve_listen(const char *path, int mode, char *errstr, size_t errstr_size)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return nc_err(errstr, errstr_size, "--serve %s: path too long", path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        /* A socket left by an earlier run is replaced; anything else there is not touched. */
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(path);
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(path, (mode_t)mode) != 0 ||
            listen(fd, 256) != 0) {
                nc_err(errstr, errstr_size, "--serve %s: %s", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static int serve(nc_cli_t *cli, const char *path, int mode, const unsigned char *secret,
                 size_t secret_len, int timeout_ms)
{
        struct sigaction sa = {.sa_handler = serve_signal};
        conn_t *conns = NULL, **cp, *c;
        struct pollfd *pfd = nc_xcalloc(SERVE_MAX_CONNS + 2, sizeof(*pfd));
        conn_t **pconn = nc_xcalloc(SERVE_MAX_CONNS + 2, sizeof(*pconn));
        char errstr[1024];
        int lfd, wake[2], nconns = 0;
        rd_kafka_queue_t *q;
        rd_kafka_t *rk;

        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* linger 10 ms: the mails in flight share produce requests (a broker spends ~1 ms of CPU
         * on each: measured with tests/bench/inbound.sh); 10 ms more before the MTA hears. */
        if (!(rk = producer_new(cli, timeout_ms, "10", errstr, sizeof(errstr))))
                return nc_cli_fail(NC_EX_UNAVAILABLE, "inbound", "%s", errstr);
        if ((lfd = serve_listen(path, mode, errstr, sizeof(errstr))) < 0) {
                rd_kafka_destroy(rk);
                return nc_cli_fail(NC_EX_UNAVAILABLE, "inbound", "%s", errstr);
        }
        if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) != 0)
                fatal("pipe2");
        q = rd_kafka_queue_get_main(rk);
        rd_kafka_queue_io_event_enable(q, wake[1], "k", 1);
        log_info("inbound: serving on %s", path);
        /* Type=notify (noticecast-inbound.service): ready once the socket takes mail. */
        if (nc_sdnotify("READY=1", errstr, sizeof(errstr)) < 0)
                log_warnx("inbound: sd_notify: %s", errstr);
        while (!serve_stop || conns) {
                int64_t now = nc_time_now_ms();
                nfds_t n = 0;
                char drain[64];

                if (serve_stop && lfd >= 0) { /* no new mail; those under way are finished */
                        close(lfd);
                        lfd = -1;
                        unlink(path);
                        nc_sdnotify("STOPPING=1", errstr, sizeof(errstr));
                }
                pfd[n++] = (struct pollfd){.fd = wake[0], .events = POLLIN};
                if (lfd >= 0 && nconns < SERVE_MAX_CONNS)
                        pfd[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
                for (c = conns; c; c = c->next)
                        if (c->state < 2) {
                                pconn[n] = c;
                                pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLIN};
                        }
                if (poll(pfd, n, 500) < 0 && errno != EINTR)
                        fatal("poll");
                while (read(wake[0], drain, sizeof(drain)) > 0)
                        ;
                rd_kafka_poll(rk, 0);
                for (nfds_t i = 1; i < n; i++) {
                        if (!pfd[i].revents)
                                continue;
                        if (pfd[i].fd == lfd) {
                                int fd;

                                while (nconns < SERVE_MAX_CONNS &&
                                       (fd = accept4(lfd, NULL, NULL,
                                                     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                                        c = nc_xcalloc(1, sizeof(*c));
                                        c->fd = fd;
                                        c->deadline_ms = now + SERVE_READ_MS;
                                        c->next = conns;
                                        conns = c;
                                        nconns++;
                                }
                        } else if (conn_read(cli, rk, secret, secret_len, pconn[i]) != 0) {
                                close(pconn[i]->fd);
                                pconn[i]->fd = -1;
                        }
                }
                /* Answer those Kafka has reported on; drop the stalled and the answered. */
                for (cp = &conns; (c = *cp);) {
                        if (c->fd >= 0 && c->state == 2 && c->a.pending == 0) {
                                if (c->why[0]) {
                                        conn_reply(c, NC_EX_TEMPFAIL, c->why);
                                } else if (c->a.failed) {
                                        acks_error(cli, &c->a, errstr, sizeof(errstr));
                                        conn_reply(c, NC_EX_TEMPFAIL, errstr);
                                } else {
                                        conn_reply(c, NC_EX_OK, "written");
                                }
                        } else if (c->fd >= 0 && c->state < 2 && now > c->deadline_ms) {
                                close(c->fd);
                                c->fd = -1;
                        }
                        /* A record in flight keeps C (its opaque) until it is reported. */
                        if (c->fd < 0 && c->a.pending == 0) {
                                *cp = c->next;
                                free(c->buf);
                                free(c);
                                nconns--;
                        } else {
                                cp = &c->next;
                        }
                }
        }
        if (lfd >= 0) {
                close(lfd);
                unlink(path);
                nc_sdnotify("STOPPING=1", errstr, sizeof(errstr));
        }
        log_info("inbound: stopped serving on %s", path);
        rd_kafka_queue_destroy(q);
        rd_kafka_flush(rk, 5000);
        rd_kafka_destroy(rk);
        close(wake[0]);
        close(wake[1]);
        free(pfd);
        free(pconn);
        return NC_EX_OK;
}

int cmd_inbound(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"recipient", required_argument, NULL, OPT_RECIPIENT},
            {"dry-run", no_argument, NULL, 'n'},
            {"serve", required_argument, NULL, OPT_SERVE},
            {"socket-mode", required_argument, NULL, OPT_SOCKET_MODE},
            {0},
        };
        const char *recipient = NULL, *serve_path = NULL;
        unsigned char secret[SECRET_MAX];
        char errstr[1024], key[INBOUND_STR_SIZE + 16], *input, *event, *end;
        int c, dry_run = 0, timeout_ms, rc, mode = 0660;
        size_t secret_len = 0, len;
        long long total;
        inbound_t *r;

        while ((c = getopt_long(argc, argv, NC_CLI_COMMON_SHORT "n", longopts, NULL)) != -1) {
                if (nc_cli_common_opt(cli, c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        fputs(inbound_usage, stdout);
                        return NC_EX_OK;
                case OPT_RECIPIENT:
                        recipient = optarg;
                        break;
                case 'n':
                        dry_run = 1;
                        break;
                case OPT_SERVE:
                        serve_path = optarg;
                        break;
                case OPT_SOCKET_MODE:
                        mode = (int)strtol(optarg, &end, 8);
                        if (*end || mode < 0 || mode > 0777)
                                return nc_cli_usage_error("inbound", "--socket-mode: an octal "
                                                                     "mode such as 0660");
                        break;
                default:
                        return nc_cli_usage_error("inbound", "noticecast inbound [--recipient "
                                                             "ADDR] [-n] | --serve SOCKET");
                }
        }
        if (optind != argc || (serve_path && (recipient || dry_run)))
                return nc_cli_usage_error("inbound", "noticecast inbound [--recipient ADDR] [-n] "
                                                     "| --serve SOCKET");
        /* A configuration problem is the operator's to fix: the MTA keeps the mail. */
        if (nc_cli_load_config(cli) != 0)
                return serve_path ? NC_EX_CONFIG : NC_EX_TEMPFAIL;
        if (read_secret(&cli->cfg, secret, &secret_len, errstr, sizeof(errstr)) != 0)
                return nc_cli_fail(serve_path ? NC_EX_CONFIG : NC_EX_TEMPFAIL, "inbound", "%s",
                                   errstr);
        timeout_ms = cli->cfg.producer_timeout_ms < TIMEOUT_MAX_MS ? cli->cfg.producer_timeout_ms
                                                                   : TIMEOUT_MAX_MS;
        if (serve_path) {
                rc = serve(cli, serve_path, mode, secret, secret_len, timeout_ms);
                OPENSSL_cleanse(secret, sizeof(secret));
                return rc;
        }
        if (!(input = read_input(&len, &total, errstr, sizeof(errstr)))) {
                OPENSSL_cleanse(secret, sizeof(secret));
                return nc_cli_fail(NC_EX_TEMPFAIL, "inbound", "%s", errstr);
        }
        r = nc_xmalloc(sizeof(*r));
        classify(cli, secret, secret_len, recipient, input, len, r, &event, key, sizeof(key));
        OPENSSL_cleanse(secret, sizeof(secret));
        rc = NC_EX_OK;
        if (!event) {
                rc = nc_cli_fail(NC_EX_TEMPFAIL, "inbound", "out of memory");
        } else if (dry_run) {
                puts(event);
                if (r->quarantine)
                        fprintf(stderr,
                                "noticecast: inbound: would quarantine %lld bytes in the "
                                "DLQ: %s\n",
                                total, r->reason);
        } else if (write_all(cli, r, key, event, input, len, total, timeout_ms, errstr,
                             sizeof(errstr)) != 0) {
                rc = nc_cli_fail(NC_EX_TEMPFAIL, "inbound",
                                 "%s; exit 75: the MTA keeps the mail and tries again", errstr);
        }
        free(event);
        free(r);
        free(input);
        return rc;
}
