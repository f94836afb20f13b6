/* TCP_NODELAY for libesmtp's socket by interposing connect(): see nodelay.h for why and how. */
#include "nodelay.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* With _GNU_SOURCE, glibc declares connect() with a transparent union for the address
 * (a typedef named __CONST_SOCKADDR_ARG); without it, __CONST_SOCKADDR_ARG is a macro for a
 * plain pointer.  Our definition must match the declaration, so take the pointer out either
 * way. */
#ifdef __CONST_SOCKADDR_ARG
#define SA_PTR(a) (a)
#else
#define SA_PTR(a) ((a).__sockaddr__)
#endif

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

static connect_fn real_connect;
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

static atomic_int enabled = 1;
static atomic_ulong applied;

/* Per thread: the hook does nothing unless this thread armed it. */
static _Thread_local int armed;
static _Thread_local int armed_timeout_ms;
static _Thread_local int last_fd = -1;
static _Thread_local const atomic_int *abort_flag;

#define ABORT_POLL_MS 100

static int aborted(void)
{
        return abort_flag && atomic_load(abort_flag);
}

static void resolve(void)
{
        real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
}

/* The system call itself, should no later object define connect() (static links). */
static int sys_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
        return (int)syscall(SYS_connect, fd, addr, len);
}

static connect_fn next_connect(void)
{
        pthread_once(&resolve_once, resolve);
        return real_connect ? real_connect : sys_connect;
}

static long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for a non-blocking connect to finish; 0 when connected, -1 with errno. */
static int wait_connected(int fd, int timeout_ms)
{
        long long deadline = now_ms() + timeout_ms;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t errlen = sizeof err;

        for (;;) {
                long long left = deadline - now_ms();
                int n;

                if (aborted()) {
                        errno = ECANCELED;
                        return -1;
                }
                if (left <= 0) {
                        errno = ETIMEDOUT;
                        return -1;
                }
                /* In slices, so that a cancel (ml_nodelay_set_abort) is seen soon. */
                n = poll(&pfd, 1, (int)(left < ABORT_POLL_MS ? left : ABORT_POLL_MS));
                if (n > 0)
                        break;
                if (n == 0)
                        continue;
                if (errno != EINTR)
                        return -1;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
                return -1;
        if (err != 0) {
                errno = err;
                return -1;
        }
        return 0;
}

static int is_tcp(int fd, const struct sockaddr *addr, socklen_t len)
{
        int type = 0;
        socklen_t tlen = sizeof type;

        if (addr == NULL || len < (socklen_t)sizeof(sa_family_t))
                return 0;
        if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
                return 0;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0)
                return 0;
        return type == SOCK_STREAM;
}

int connect(int fd, __CONST_SOCKADDR_ARG addr_arg, socklen_t len)
{
        const struct sockaddr *addr = SA_PTR(addr_arg);
        connect_fn next = next_connect();
        int flags, rc, saved, want_nodelay, one = 1;

        if (!armed || !is_tcp(fd, addr, len))
                return next(fd, addr, len);
        if (aborted()) {
                errno = ECANCELED;
                return -1;
        }

        /* Set before connecting: Linux accepts TCP_NODELAY on an unconnected socket, and the
         * option is then already in force for the first byte. */
        want_nodelay = atomic_load_explicit(&enabled, memory_order_relaxed);
        if (want_nodelay &&
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, (socklen_t)sizeof one) < 0)
                want_nodelay = 0;

        flags = fcntl(fd, F_GETFL);
        if (armed_timeout_ms > 0 && flags >= 0 && !(flags & O_NONBLOCK)) {
                /* libesmtp connects in blocking mode, which waits out the kernel's SYN
                 * retries (~2 min) on a black-holed relay: bound it by the session timeout. */
                if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                        return next(fd, addr, len);
                rc = next(fd, addr, len);
                if (rc < 0 && errno == EINPROGRESS)
                        rc = wait_connected(fd, armed_timeout_ms);
                saved = errno;
                fcntl(fd, F_SETFL, flags);
                errno = saved;
        } else {
                rc = next(fd, addr, len);
        }
        if (rc == 0) {
                last_fd = fd;
                if (want_nodelay)
                        atomic_fetch_add_explicit(&applied, 1, memory_order_relaxed);
        }
        return rc;
}

void ml_nodelay_arm(int timeout_ms)
{
        armed = 1;
        armed_timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
        last_fd = -1;
}

void ml_nodelay_disarm(void)
{
        armed = 0;
        armed_timeout_ms = 0;
}

void ml_nodelay_set_abort(const atomic_int *flag)
{
        abort_flag = flag;
}

int ml_nodelay_last_fd(void)
{
        return last_fd;
}

int ml_nodelay_is_set(int fd)
{
        int on = 0;
        socklen_t len = sizeof on;

        if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) < 0)
                return -1;
        return on != 0;
}

void ml_nodelay_set_enabled(int on)
{
        atomic_store(&enabled, on != 0);
}

int ml_nodelay_enabled(void)
{
        return atomic_load(&enabled);
}

unsigned long ml_nodelay_applied(void)
{
        return atomic_load(&applied);
}

int ml_nodelay_active(void)
{
        return ml_nodelay_applied() > 0;
}
