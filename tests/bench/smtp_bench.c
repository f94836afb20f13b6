/* Micro-benchmark of ml_smtp_send_session (consumer/mailer/smtp.c): N messages of one size,
 * in sessions of S messages, over T threads in parallel, against an SMTP sink (Postfix's
 * smtp-sink in tests/bench/smtp.sh).  Prints one line of key=value results.
 *
 *   smtp_bench [-H host] -p port [-n messages] [-s per-session] [-t threads] [-l body-bytes]
 *              [-N]   (-N: without TCP_NODELAY, to show the delayed-ACK pitfall)
 *
 * Every message must come back 250; the exit status is 1 otherwise. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nc_log.h"
#include "nodelay.h"
#include "smtp.h"

struct worker {
        const ml_smtp_config_t *cfg;
        const char *data;
        size_t len;
        size_t messages; /* to send */
        size_t per_session;
        size_t ok, failed, session_errors;
        char first_error[256];
};

static void *run(void *p)
{
        struct worker *w = p;
        ml_smtp_msg_t *msgs = calloc(w->per_session, sizeof *msgs);
        char err[256];

        if (msgs == NULL)
                return NULL;
        for (size_t i = 0; i < w->per_session; i++) {
                msgs[i].mail_from = "digest@notices.example.gov";
                msgs[i].rcpt = "subscriber@example.org";
                msgs[i].data = w->data;
                msgs[i].len = w->len;
        }
        for (size_t done = 0; done < w->messages;) {
                size_t n =
                    w->messages - done < w->per_session ? w->messages - done : w->per_session;

                if (ml_smtp_send_session(w->cfg, msgs, n, err, sizeof err) < 0) {
                        w->session_errors++;
                        if (!w->first_error[0])
                                snprintf(w->first_error, sizeof w->first_error, "%s", err);
                }
                for (size_t i = 0; i < n; i++) {
                        if (msgs[i].status == 250) {
                                w->ok++;
                        } else {
                                w->failed++;
                                if (!w->first_error[0])
                                        snprintf(w->first_error, sizeof w->first_error,
                                                 "status %d %s", msgs[i].status, msgs[i].reply);
                        }
                }
                done += n;
        }
        free(msgs);
        return NULL;
}

/* Headers like the mailer's, then BODY bytes of 76-character lines (smtp-source -l counts
 * the body only, so this matches its -l). */
static char *make_message(size_t body, size_t *len)
{
        const char *hdr = "Date: Thu, 26 Nov 2026 19:45:00 +0000\r\n"
                          "From: Notices <digest@notices.example.gov>\r\n"
                          "To: <subscriber@example.org>\r\n"
                          "Subject: Your daily digest\r\n"
                          "Message-ID: <bench.0@notices.example.gov>\r\n"
                          "MIME-Version: 1.0\r\n"
                          "Content-Type: text/plain; charset=us-ascii\r\n"
                          "\r\n";
        size_t h = strlen(hdr), n;
        char *m = malloc(h + body + 2);

        if (m == NULL)
                return NULL;
        memcpy(m, hdr, h);
        n = h;
        while (n - h < body) {
                size_t left = body - (n - h), line;

                if (left < 2) { /* no room for a CRLF: pad (libesmtp ends the line) */
                        m[n++] = 'x';
                        continue;
                }
                line = left > 78 ? 76 : left - 2;
                for (size_t i = 0; i < line; i++)
                        m[n + i] = (char)('a' + (n + i) % 26);
                n += line;
                m[n++] = '\r';
                m[n++] = '\n';
        }
        *len = n;
        return m;
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
        fprintf(stderr, "usage: smtp_bench [-H host] -p port [-n messages] [-s per-session] "
                        "[-t threads] [-l body-bytes] [-N]\n");
        exit(64);
}

int main(int argc, char **argv)
{
        ml_smtp_config_t cfg;
        size_t total = 20000, per_session = 500, threads = 1, body = 2048, len, ok = 0, failed = 0,
               serr = 0;
        struct worker *w;
        pthread_t *tid;
        const char *first = NULL;
        char *data;
        unsigned long applied0;
        double t0, secs;
        int c;

        memset(&cfg, 0, sizeof cfg);
        cfg.host = "127.0.0.1";
        cfg.timeout_ms = 30000;
        while ((c = getopt(argc, argv, "H:p:n:s:t:l:N")) != -1) {
                switch (c) {
                case 'H':
                        cfg.host = optarg;
                        break;
                case 'p':
                        cfg.port = atoi(optarg);
                        break;
                case 'n':
                        total = strtoul(optarg, NULL, 10);
                        break;
                case 's':
                        per_session = strtoul(optarg, NULL, 10);
                        break;
                case 't':
                        threads = strtoul(optarg, NULL, 10);
                        break;
                case 'l':
                        body = strtoul(optarg, NULL, 10);
                        break;
                case 'N':
                        ml_nodelay_set_enabled(0);
                        break;
                default:
                        usage();
                }
        }
        if (cfg.port <= 0 || total == 0 || per_session == 0 || threads == 0 || threads > 256)
                usage();
        nc_log_init("smtp_bench", NC_LOG_WARN);

        data = make_message(body, &len);
        w = calloc(threads, sizeof *w);
        tid = calloc(threads, sizeof *tid);
        if (data == NULL || w == NULL || tid == NULL)
                return 1;
        for (size_t i = 0; i < threads; i++) {
                w[i].cfg = &cfg;
                w[i].data = data;
                w[i].len = len;
                w[i].per_session = per_session;
                w[i].messages = total / threads + (i < total % threads ? 1 : 0);
        }
        applied0 = ml_nodelay_applied();
        t0 = now();
        for (size_t i = 0; i < threads; i++)
                if (pthread_create(&tid[i], NULL, run, &w[i]) != 0) {
                        perror("pthread_create");
                        return 1;
                }
        for (size_t i = 0; i < threads; i++) {
                pthread_join(tid[i], NULL);
                ok += w[i].ok;
                failed += w[i].failed;
                serr += w[i].session_errors;
                if (!first && w[i].first_error[0])
                        first = w[i].first_error;
        }
        secs = now() - t0;

        printf("threads=%zu messages=%zu per_session=%zu message_bytes=%zu ok=%zu failed=%zu "
               "session_errors=%zu seconds=%.3f msg_per_s=%.1f nodelay=%s "
               "nodelay_sockets=%lu libesmtp=%s\n",
               threads, total, per_session, len, ok, failed, serr, secs, (double)ok / secs,
               ml_nodelay_enabled() ? "on" : "off", ml_nodelay_applied() - applied0,
               ml_smtp_version());
        if (first)
                fprintf(stderr, "smtp_bench: first error: %s\n", first);
        free(data);
        free(w);
        free(tid);
        return failed || serr ? 1 : 0;
}
