/* noticecast-inbound: what the MTA runs for each mail that comes back, when a
 * `noticecast inbound --serve SOCKET` runs (producer/cmd_inbound.c): it hands the mail to the
 * server and exits with the code the server answers once Kafka acknowledged the mail's event,
 * the same contract as `noticecast inbound` itself (0 written, 75 try again: the MTA keeps the
 * mail).  It links libc only, so that a process per mail costs what a process costs.
 *
 * When no server answers on SOCKET (not started, restarting), the mail is not refused: this
 * program becomes `noticecast inbound` (the same directory's, else BINDIR's) with the mail on
 * its stdin, which writes to Kafka itself, only slower.
 *
 *   noticecast-inbound [-s SOCKET] [-C FILE] [--recipient ADDR]
 *   Postfix master.cf:  argv=/usr/local/bin/noticecast-inbound --recipient ${original_recipient} */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define EX_OK       0
#define EX_USAGE    64
#define EX_TEMPFAIL 75

/* As producer/inbound.h: the server reads at most this much plus one byte. */
#define MAX_BYTES      (10u * 1024 * 1024)
#define DEFAULT_SOCKET "/run/noticecast/inbound.sock"
/* Longer than the server's own bound on Kafka (60 s) and its read timeout (30 s). */
#define ANSWER_TIMEOUT_S 120

#ifndef NC_BINDIR
#define NC_BINDIR "/usr/local/bin"
#endif

static const char usage[] =
    "usage: noticecast-inbound [-s SOCKET] [-C FILE] [--recipient ADDR]\n"
    "       noticecast-inbound -h | -V\n"
    "\n"
    "Hands one mail on stdin to `noticecast inbound --serve SOCKET` (default\n" DEFAULT_SOCKET ")\n"
    "and exits with its answer: 0 written, 75 try again later (the MTA keeps the mail).\n"
    "Without a server it runs `noticecast [-C FILE] inbound` on the mail itself.\n";

static int fail(int code, const char *what)
{
        fprintf(stderr, "noticecast-inbound: %s: %s\n", what, strerror(errno));
        return code;
}

/* Stdin into an anonymous file: the server gets a prefix of it, the fallback all of it. */
static int slurp(long long *total)
{
        char buf[65536];
        int fd = memfd_create("mail", MFD_CLOEXEC);
        ssize_t n;

        *total = 0;
        if (fd < 0) {
                char tmpl[] = "/tmp/noticecast-inbound.XXXXXX";

                if ((fd = mkostemp(tmpl, O_CLOEXEC)) < 0)
                        return -1;
                unlink(tmpl);
        }
        for (;;) {
                n = read(STDIN_FILENO, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        close(fd);
                        return -1;
                }
                if (n == 0)
                        break;
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(fd, buf + off, (size_t)(n - off));

                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0) {
                                close(fd);
                                return -1;
                        }
                        off += w;
                }
                *total += n;
        }
        return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -1;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Becomes `noticecast [-C FILE] inbound [--recipient ADDR]` with MAIL as stdin. */
static int fallback(int mail, const char *config, const char *rcpt)
{
        char self[PATH_MAX], prog[PATH_MAX + 16];
        const char *argv[8];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        int i = 0;

        prog[0] = '\0';
        if (n > 0) {
                char *slash;

                self[n] = '\0';
                if ((slash = strrchr(self, '/'))) {
                        *slash = '\0';
                        snprintf(prog, sizeof(prog), "%s/noticecast", self);
                }
        }
        if (!prog[0] || access(prog, X_OK) != 0)
                snprintf(prog, sizeof(prog), "%s/noticecast", NC_BINDIR);
        argv[i++] = "noticecast";
        if (config) {
                argv[i++] = "-C";
                argv[i++] = config;
        }
        argv[i++] = "inbound";
        if (rcpt) {
                argv[i++] = "--recipient";
                argv[i++] = rcpt;
        }
        argv[i] = NULL;
        if (lseek(mail, 0, SEEK_SET) != 0 || dup2(mail, STDIN_FILENO) < 0)
                return fail(EX_TEMPFAIL, "stdin for noticecast inbound");
        execv(prog, (char *const *)argv);
        fprintf(stderr, "noticecast-inbound: %s: %s\n", prog, strerror(errno));
        return EX_TEMPFAIL;
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"socket", required_argument, NULL, 's'},    {"config", required_argument, NULL, 'C'},
            {"recipient", required_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},         {0}};
        const char *sock = DEFAULT_SOCKET, *config = NULL, *rcpt = NULL;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct timeval tv = {.tv_sec = ANSWER_TIMEOUT_S};
        char head[512], answer[1200];
        long long total;
        size_t got = 0;
        off_t off = 0;
        int c, mail, fd, code;

        while ((c = getopt_long(argc, argv, "s:C:hV", longopts, NULL)) != -1) {
                switch (c) {
                case 's':
                        sock = optarg;
                        break;
                case 'C':
                        config = optarg;
                        break;
                case 'r':
                        rcpt = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return EX_OK;
                case 'V':
                        printf("noticecast-inbound %s\n", NC_VERSION);
                        return EX_OK;
                default:
                        fputs(usage, stderr);
                        return EX_USAGE;
                }
        }
        if (optind != argc || strlen(sock) >= sizeof(sa.sun_path) ||
            (rcpt && (strchr(rcpt, ' ') || strlen(rcpt) > 255))) {
                fputs(usage, stderr);
                return EX_USAGE;
        }
        if ((mail = slurp(&total)) < 0)
                return fail(EX_TEMPFAIL, "reading stdin");
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
            connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
                if (fd >= 0)
                        close(fd);
                return fallback(mail, config, rcpt);
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        snprintf(head, sizeof(head), "NCINBOUND 1 %lld %s\n", total, rcpt && *rcpt ? rcpt : "-");
        if (write_all(fd, head, strlen(head)) != 0)
                return fail(EX_TEMPFAIL, "writing to the server");
        {
                long long left = total > (long long)MAX_BYTES ? MAX_BYTES + 1 : total;

                while (left > 0) {
                        ssize_t n = sendfile(fd, mail, &off, (size_t)left);

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                return fail(EX_TEMPFAIL, "writing to the server");
                        left -= n;
                }
        }
        shutdown(fd, SHUT_WR);
        while (got < sizeof(answer) - 1) {
                ssize_t n = read(fd, answer + got, sizeof(answer) - 1 - got);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
                if (memchr(answer, '\n', got))
                        break;
        }
        answer[got] = '\0';
        if (!got || sscanf(answer, "%d", &code) != 1) {
                fprintf(stderr, "noticecast-inbound: no answer from %s: try again later\n", sock);
                return EX_TEMPFAIL;
        }
        if (code != EX_OK) {
                const char *text = strchr(answer, ' ');

                /* Postfix puts this in its log and in the bounce it may send. */
                fprintf(stderr, "noticecast-inbound: %s", text ? text + 1 : "\n");
        }
        return code == EX_OK || code == EX_USAGE ? code : EX_TEMPFAIL;
}
