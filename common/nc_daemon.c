#include "nc_daemon.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nc_log.h"
#include "nc_time.h"

volatile sig_atomic_t nc_stop_flag, nc_reload_flag;
static int wake_fd = -1;

static void on_signal(int sig)
{
        int saved = errno;

        if (sig == SIGHUP)
                nc_reload_flag = 1;
        else
                nc_stop_flag = 1;
        if (wake_fd >= 0 && write(wake_fd, "s", 1) < 0) {
                /* the loop wakes up at its next timeout anyway */
        }
        errno = saved;
}

void nc_daemon_signals(int fd)
{
        struct sigaction sa;

        wake_fd = fd;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int nc_daemon_config(nc_config_t *cfg, const char *cli_path, const nc_strlist_t *xprops,
                     const char *brokers, char *errstr, size_t errstr_size)
{
        int explicit_path;
        const char *path = nc_config_path(cli_path, &explicit_path);

        if (nc_config_load(cfg, path, explicit_path, errstr, errstr_size) != 0)
                return -1;
        if (nc_config_apply_overrides(cfg, xprops, brokers, errstr, errstr_size) != 0) {
                nc_config_free(cfg);
                return -1;
        }
        return 0;
}

void nc_daemon_log_listen(const char *listen, int port)
{
        const char *colon = strrchr(listen, ':');
        char addr[300], p[16];

        snprintf(p, sizeof(p), "%d", port);
        snprintf(addr, sizeof(addr), "%.*s:%s", colon ? (int)(colon - listen) : 0, listen, p);
        nc_log_kv(NC_LOG_INFO, "http listening", "addr", addr, NULL);
}

int nc_daemon_retry(const char *what, nc_daemon_step_fn step, void *arg, char *errstr,
                    size_t errstr_size)
{
        int wait_ms = 500;

        for (;;) {
                int64_t until;

                if (step(arg, errstr, errstr_size) == 0)
                        return 0;
                if (nc_stop_flag)
                        return -1;
                log_warnx("%s: %s; trying again in %d ms", what, errstr, wait_ms);
                until = nc_time_now_ms() + wait_ms;
                while (!nc_stop_flag && nc_time_now_ms() < until) {
                        struct timespec ts = {0, 50 * 1000 * 1000};

                        nanosleep(&ts, NULL);
                }
                if (nc_stop_flag)
                        return -1;
                wait_ms = wait_ms < 7500 ? wait_ms * 2 : 15000;
        }
}
