#include "nc_sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nc_util.h"

int nc_sdnotify(const char *state, char *errstr, size_t errstr_size)
{
        const char *name = getenv("NOTIFY_SOCKET");
        struct sockaddr_un sa;
        socklen_t salen;
        size_t len;
        ssize_t n;
        int fd, saved;

        if (!name || !*name)
                return 0;
        len = strlen(name);
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        if (name[0] != '/' && name[0] != '@')
                return nc_err(errstr, errstr_size,
                              "NOTIFY_SOCKET: neither a path nor an abstract name");
        if (len >= sizeof(sa.sun_path))
                return nc_err(errstr, errstr_size, "NOTIFY_SOCKET: address too long");
        memcpy(sa.sun_path, name, len);
        if (name[0] == '@') {
                /* Abstract namespace: a leading NUL, and the length counts the name only (no
                 * terminating NUL, which would be part of the name). */
                sa.sun_path[0] = '\0';
                salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
        } else {
                salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
        }
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return nc_err(errstr, errstr_size, "NOTIFY_SOCKET: socket: %s", strerror(errno));
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
        saved = errno;
        close(fd);
        if (n < 0)
                return nc_err(errstr, errstr_size, "NOTIFY_SOCKET %s: %s", name, strerror(saved));
        return 1;
}

/* A positive decimal number, nothing else (no sign, no blanks, no suffix). */
static int parse_positive(const char *s, uint64_t *out)
{
        uint64_t v = 0;

        if (!*s)
                return -1;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
                        return -1;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        if (v == 0)
                return -1;
        *out = v;
        return 0;
}

int nc_sdnotify_watchdog_usec(uint64_t *usec, char *errstr, size_t errstr_size)
{
        const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        uint64_t v, p;

        if (!us)
                return 0;
        if (parse_positive(us, &v) != 0)
                return nc_err(errstr, errstr_size, "WATCHDOG_USEC=%.32s: not a positive number",
                              us);
        if (pid) {
                if (parse_positive(pid, &p) != 0)
                        return nc_err(errstr, errstr_size, "WATCHDOG_PID=%.32s: not a process id",
                                      pid);
                /* Inherited from a parent that systemd watches: not for us. */
                if (p != (uint64_t)getpid())
                        return 0;
        }
        *usec = v;
        return 1;
}
