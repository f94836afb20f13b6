/* What the two daemons share: signal flags with a wake-up pipe, configuration loading with
 * the command line's overrides, and the "http listening" line. */
#ifndef NC_DAEMON_H
#define NC_DAEMON_H

#include <signal.h>
#include <stddef.h>

#include "nc_config.h"

/* Set by the signal handlers (which do nothing else but poke the wake pipe). */
extern volatile sig_atomic_t nc_stop_flag, nc_reload_flag;

/* Installs TERM/INT (stop) and HUP (reload) handlers that set the flags above and write a
 * byte to WAKE_FD so a loop blocked in poll() notices at once; ignores SIGPIPE. */
void nc_daemon_signals(int wake_fd);

/* Loads the configuration (-C path CLI_PATH, else the lookup of nc_config_path()) and applies
 * -X/-b: the one way all three programs read it.  Returns 0, or -1 with errstr (CFG is then
 * empty). */
int nc_daemon_config(nc_config_t *cfg, const char *cli_path, const nc_strlist_t *xprops,
                     const char *brokers, char *errstr, size_t errstr_size);

/* One start-up step that needs the brokers (creating topics, reading metadata). */
typedef int (*nc_daemon_step_fn)(void *arg, char *errstr, size_t errstr_size);

/* Runs STEP until it succeeds: at start a daemon waits out brokers that are down or not ready
 * yet (no leader right after a topic was created) instead of exiting.  Each failure is logged
 * as "WHAT: error; trying again in N ms" (backoff 0.5 s doubling to 15 s), and /readyz stays
 * 503 meanwhile.  A TERM/INT ends the wait at once.  Returns 0, or -1 if a stop was asked
 * for (ERRSTR holds the last error).  Start-up only: it sleeps. */
int nc_daemon_retry(const char *what, nc_daemon_step_fn step, void *arg, char *errstr,
                    size_t errstr_size);

/* Logs msg="http listening" addr=HOST:PORT for LISTEN ("127.0.0.1:0") and the bound PORT. */
void nc_daemon_log_listen(const char *listen, int port);

#endif
