/* nc_sdnotify: datagrams reach a real AF_UNIX socket (path and abstract forms), no socket
 * means nothing is sent, and the watchdog variables are parsed strictly. */
#include "nc_test.h"

#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nc_sdnotify.h"

/* A datagram socket bound to ADDR (SALEN bytes), non-blocking. */
static int bound_socket(const struct sockaddr_un *addr, socklen_t salen)
{
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (const struct sockaddr *)addr, salen), 0);
        return fd;
}

/* The datagram waiting on FD (up to 1 s), NUL-terminated in BUF; its length, or -1. */
static ssize_t receive(int fd, char *buf, size_t size)
{
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 1000) != 1)
                return -1;
        n = recv(fd, buf, size - 1, 0);
        if (n >= 0)
                buf[n] = '\0';
        return n;
}

static void test_path_socket(void **state)
{
        char dir[] = "/tmp/nc_sdnotify_XXXXXX", buf[256], err[256];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
        fd = bound_socket(&sa, sizeof(sa));
        setenv("NOTIFY_SOCKET", sa.sun_path, 1);
        assert_int_equal(nc_sdnotify("READY=1\nSTATUS=up", err, sizeof(err)), 1);
        assert_int_equal(receive(fd, buf, sizeof(buf)), 17);
        assert_string_equal(buf, "READY=1\nSTATUS=up");
        /* A path nobody listens on any more: an error, not a crash or a silent success. */
        close(fd);
        unlink(sa.sun_path);
        assert_int_equal(nc_sdnotify("WATCHDOG=1", err, sizeof(err)), -1);
        assert_non_null(strstr(err, "NOTIFY_SOCKET"));
        unsetenv("NOTIFY_SOCKET");
        rmdir(dir);
}

static void test_abstract_socket(void **state)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char name[108], buf[256], err[256];
        socklen_t salen;
        int fd, len;

        (void)state;
        len = snprintf(name, sizeof(name), "@nc_sdnotify_test_%ld", (long)getpid());
        memcpy(sa.sun_path, name, (size_t)len);
        sa.sun_path[0] = '\0';
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len);
        fd = bound_socket(&sa, salen);
        setenv("NOTIFY_SOCKET", name, 1);
        assert_int_equal(nc_sdnotify("STOPPING=1", err, sizeof(err)), 1);
        assert_int_equal(receive(fd, buf, sizeof(buf)), 10);
        assert_string_equal(buf, "STOPPING=1");
        unsetenv("NOTIFY_SOCKET");
        close(fd);
}

static void test_unset_is_noop(void **state)
{
        char err[256] = "";

        (void)state;
        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(nc_sdnotify("READY=1", err, sizeof(err)), 0);
        assert_string_equal(err, "");
        setenv("NOTIFY_SOCKET", "", 1);
        assert_int_equal(nc_sdnotify("READY=1", err, sizeof(err)), 0);
        /* Neither a path nor '@': refused. */
        setenv("NOTIFY_SOCKET", "relative/notify", 1);
        assert_int_equal(nc_sdnotify("READY=1", err, sizeof(err)), -1);
        unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog(void **state)
{
        static const char *const bad[] = {
            "", "0", "-5", "12x", " 12", "1e6", "99999999999999999999999"};
        char err[256], pid[32];
        uint64_t us = 0;
        size_t i;

        (void)state;
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        assert_int_equal(nc_sdnotify_watchdog_usec(&us, err, sizeof(err)), 0);
        setenv("WATCHDOG_USEC", "30000000", 1);
        assert_int_equal(nc_sdnotify_watchdog_usec(&us, err, sizeof(err)), 1);
        assert_int_equal(us, 30000000);
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                setenv("WATCHDOG_USEC", bad[i], 1);
                if (nc_sdnotify_watchdog_usec(&us, err, sizeof(err)) != -1)
                        fail_msg("WATCHDOG_USEC=\"%s\" accepted", bad[i]);
                assert_non_null(strstr(err, "WATCHDOG_USEC"));
        }
        setenv("WATCHDOG_USEC", "2000000", 1);
        snprintf(pid, sizeof(pid), "%ld", (long)getpid());
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(nc_sdnotify_watchdog_usec(&us, err, sizeof(err)), 1);
        assert_int_equal(us, 2000000);
        /* Meant for another process (our parent): no watchdog for us. */
        snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(nc_sdnotify_watchdog_usec(&us, err, sizeof(err)), 0);
        setenv("WATCHDOG_PID", "abc", 1);
        assert_int_equal(nc_sdnotify_watchdog_usec(&us, err, sizeof(err)), -1);
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_path_socket),
            cmocka_unit_test(test_abstract_socket),
            cmocka_unit_test(test_unset_is_noop),
            cmocka_unit_test(test_watchdog),
        };

        return cmocka_run_group_tests_name("nc_sdnotify", tests, NULL, NULL);
}
