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
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "inbound.h"
#include "nc_dlq.h"
#include "nc_kafka.h"
#include "nc_time.h"
#include "nc_topics.h"

static const char inbound_usage[] =
    "noticecast inbound [--recipient ADDR] [-n]\n"
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
    "Common options: -C FILE  -X key=value  -b BROKERS  -v  -q  -h\n"
    "\n"
    "Exit status: 0 written (or ignored, or quarantined) and acknowledged by Kafka;\n"
    "75 try again later (Kafka unreachable, configuration or secret unreadable): the\n"
    "mail is kept by the MTA; 64 usage.\n";

enum { OPT_RECIPIENT = 500 };

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

/* What the delivery reports said. */
struct acks {
        int pending, failed;
        rd_kafka_resp_err_t err;
        const char *topic; /* of the first failure */
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        struct acks *a = opaque;

        (void)rk;
        a->pending--;
        if (m->err && !a->failed++) {
                a->err = m->err;
                a->topic = m->_private;
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
                                RD_KAFKA_V_OPAQUE((void *)topic), RD_KAFKA_V_END);
        if (err)
                rd_kafka_headers_destroy(h);
        else
                a->pending++;
        return err;
}

/* Produces the event (and the DLQ record) and waits for their acknowledgement, within
 * TIMEOUT_MS.  0, or -1 with errstr. */
static int write_all(nc_cli_t *cli, const inbound_t *r, const char *key, const char *event,
                     const char *input, size_t input_len, long long total, int timeout_ms,
                     char *errstr, size_t errstr_size)
{
        char num[24], events_topic[256], dlq_topic[256], dlq_key[NC_DLQ_KEY_SIZE];
        const nc_kafka_setting_t set[] = {
            {"acks", "all"}, {"message.timeout.ms", num}, {NULL, NULL}};
        const nc_kafka_setting_t defaults[] = {
            {"linger.ms", "0"}, {"enable.idempotence", "false"}, {NULL, NULL}};
        struct acks a = {0};
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        nc_dlq_source_t src;
        char *ref = NULL;
        rd_kafka_t *rk;
        int rc = -1;

        snprintf(num, sizeof(num), "%d", timeout_ms);
        nc_topics_name(&cli->cfg, NC_TOPIC_DELIVERIES, events_topic, sizeof(events_topic));
        nc_topics_name(&cli->cfg, NC_TOPIC_DLQ, dlq_topic, sizeof(dlq_topic));
        if (!(rk = nc_kafka_producer_new(&cli->cfg,
                                         &(nc_kafka_opts_t){.name = "inbound producer",
                                                            .set = set,
                                                            .defaults = defaults,
                                                            .dr_msg_cb = dr_cb,
                                                            .opaque = &a},
                                         errstr, errstr_size)))
                return -1;
        if (r->quarantine) {
                size_t max = nc_dlq_copy_max(nc_config_kafka_get(&cli->cfg, "message.max.bytes"));
                size_t ref_len = 0;

                snprintf(dlq_key, sizeof(dlq_key), "inbound/%s", r->id);
                if (input_len > max || (long long)input_len != total) {
                        rd_kafka_headers_t *h = dlq_headers(r, (size_t)total, dlq_key, &src);

                        ref = nc_dlq_reference_value(&src, key, strlen(key), input,
                                                     input_len > max ? max : input_len, &ref_len);
                        err = produce(rk, dlq_topic, key, ref, ref_len, h, &a);
                } else {
                        err = produce(rk, dlq_topic, key, input, input_len,
                                      dlq_headers(r, 0, dlq_key, &src), &a);
                }
        }
        if (!err)
                err = produce(rk, events_topic, key, event, strlen(event),
                              event_headers(inbound_type_name(r->type)), &a);
        if (err) {
                nc_err(errstr, errstr_size, "kafka: %s", rd_kafka_err2str(err));
                goto out;
        }
        /* message.timeout.ms fails what is not acknowledged by then; the margin is for the
         * reports to arrive. */
        if (rd_kafka_flush(rk, timeout_ms + 1000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_poll(rk, 0);
                nc_err(errstr, errstr_size, "kafka: not acknowledged within %d ms", timeout_ms);
                goto out;
        }
        if (a.failed || a.pending) {
                char denied[512];

                if (nc_kafka_denied(&cli->cfg, a.err, "write", a.topic ? a.topic : "?", denied,
                                    sizeof(denied)))
                        nc_err(errstr, errstr_size, "%s", denied);
                else
                        nc_err(errstr, errstr_size, "kafka: %s: %s", a.topic ? a.topic : "?",
                               rd_kafka_err2str(a.err));
                goto out;
        }
        rc = 0;
out:
        free(ref);
        rd_kafka_destroy(rk);
        return rc;
}

int cmd_inbound(nc_cli_t *cli, int argc, char **argv)
{
        static const struct option longopts[] = {
            NC_CLI_COMMON_LONG,
            {"recipient", required_argument, NULL, OPT_RECIPIENT},
            {"dry-run", no_argument, NULL, 'n'},
            {0},
        };
        const char *recipient = NULL;
        unsigned char secret[SECRET_MAX];
        char errstr[1024], ts[40], key[INBOUND_STR_SIZE + 16], *input, *event;
        int c, dry_run = 0, timeout_ms, rc;
        size_t secret_len = 0, len;
        long long total;
        inbound_conf_t conf;
        inbound_t *r;
        json_t *ev;

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
                default:
                        return nc_cli_usage_error("inbound", "noticecast inbound [--recipient "
                                                             "ADDR] [-n]");
                }
        }
        if (optind != argc)
                return nc_cli_usage_error("inbound", "noticecast inbound [--recipient ADDR] [-n]");
        /* A configuration problem is the operator's to fix: the MTA keeps the mail. */
        if (nc_cli_load_config(cli) != 0)
                return NC_EX_TEMPFAIL;
        if (read_secret(&cli->cfg, secret, &secret_len, errstr, sizeof(errstr)) != 0)
                return nc_cli_fail(NC_EX_TEMPFAIL, "inbound", "%s", errstr);
        if (!(input = read_input(&len, &total, errstr, sizeof(errstr)))) {
                OPENSSL_cleanse(secret, sizeof(secret));
                return nc_cli_fail(NC_EX_TEMPFAIL, "inbound", "%s", errstr);
        }

        conf = (inbound_conf_t){
            .secret = secret,
            .secret_len = secret_len,
            .verp_base = cli->cfg.mailer.envelope_from ? cli->cfg.mailer.envelope_from
                                                       : cli->cfg.mailer.from_address,
            .verp_delim = cli->cfg.mailer.verp_delimiter[0],
            .unsubscribe_mailto = cli->cfg.mailer.unsubscribe_mailto,
            .envelope_recipient = recipient,
            .now_s = nc_time_now_ms() / 1000,
        };
        r = nc_xmalloc(sizeof(*r));
        inbound_classify(&conf, input, len, r);
        OPENSSL_cleanse(secret, sizeof(secret));
        ev = inbound_event(r, nc_time_format_rfc3339(nc_time_now_ms(), ts, sizeof(ts)));
        event = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        inbound_key(r, key, sizeof(key));
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
        } else {
                timeout_ms = cli->cfg.producer_timeout_ms < TIMEOUT_MAX_MS
                                 ? cli->cfg.producer_timeout_ms
                                 : TIMEOUT_MAX_MS;
                if (write_all(cli, r, key, event, input, len, total, timeout_ms, errstr,
                              sizeof(errstr)) != 0)
                        rc = nc_cli_fail(NC_EX_TEMPFAIL, "inbound",
                                         "%s; exit 75: the MTA keeps the mail and tries again",
                                         errstr);
        }
        free(event);
        free(r);
        free(input);
        return rc;
}
