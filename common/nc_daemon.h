/* What the two daemons share: the skeleton of main() (arguments, configuration, wake-up pipe
 * and signals, HTTP endpoint, loop, reload, graceful stop, exit status), the readiness and
 * liveness they report (/readyz, /healthz, systemd), and the start-up helpers.
 *
 * A daemon fills an nc_daemon_ops_t with its callbacks and calls nc_daemon_run() from main().
 * Every callback gets back the ARG given to nc_daemon_run (the daemon's own state) and the
 * skeleton's nc_daemon_t, which the skeleton owns: the daemon reads it through the accessors
 * below and never frees what they return. */
#ifndef NC_DAEMON_H
#define NC_DAEMON_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "nc_config.h"
#include "nc_httpd.h"
#include "nc_metrics.h"

/* Set by the signal handlers (which do nothing else but poke the wake pipe). */
extern volatile sig_atomic_t nc_stop_flag, nc_reload_flag;

typedef struct nc_daemon nc_daemon_t;

typedef struct nc_daemon_ops {
        const char *name;  /* program name: log identity, prefix of the errors on stderr */
        const char *usage; /* -h prints it on stdout (exit 0), a usage error on stderr (64) */
        /* Options beyond the common -C -X -b -v -q -n -h -V: long ones only (NULL-terminated
         * getopt_long table, flag NULL), each handed to OPTION with its val.  OPTION returns
         * 0, or -1 for a bad value (usage, exit 64).  Both may be NULL. */
        const struct option *longopts;
        int (*option)(void *arg, int val, const char *optarg);
        void (*version)(void); /* -V: the versions, on stdout */
        /* Loads (nc_daemon_load_config) and checks the configuration: also all that -n
         * checks (secrets, templates).  0, or -1 with errstr: exit 78. */
        int (*load)(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size);
        /* May be NULL.  A one-shot mode chosen on the command line (the mailer's --preview),
         * run after LOAD instead of the daemon: returns the exit status, or -1 to run as a
         * daemon. */
        int (*oneshot)(void *arg, nc_daemon_t *d);
        /* The wake pipe and signals are set: creates the metrics (which it owns) and sets
         * *LISTEN to the HTTP address ("" or NULL: no endpoint). */
        nc_metrics_t *(*setup)(void *arg, nc_daemon_t *d, const char **listen);
        const char *listen_key; /* "[webhooks] listen": named when the address is refused */
        /* May be NULL.  More listeners after the HTTP endpoint (the mailer's public one): 0,
         * or -1 with errstr, logged: exit 78 like a refused HTTP address. */
        int (*listen_more)(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size);
        /* The HTTP endpoint is up (nc_daemon_httpd): connects to the brokers (waiting them
         * out with nc_daemon_retry).  0, or -1 with errstr: exit 69 (0 if a stop was asked
         * for meanwhile). */
        int (*start)(void *arg, nc_daemon_t *d, char *errstr, size_t errstr_size);
        /* One turn of the loop: does what is due and then waits (at most ~200 ms, waking up
         * on the wake pipe) for more; calls nc_daemon_set_ready with its readiness. */
        void (*loop_once)(void *arg, nc_daemon_t *d);
        /* SIGHUP, between two turns: re-reads what can change live; keeps the current
         * configuration if the new one is bad (and says so). */
        void (*reload)(void *arg, nc_daemon_t *d);
        /* TERM/INT after a successful start: the graceful stop (finishing work in flight,
         * within the daemon's shutdown timeout; calls nc_daemon_heartbeat while it waits). */
        void (*drain)(void *arg, nc_daemon_t *d);
        /* Always called last, whatever was reached (ARG is as LOAD left it, or as the caller
         * initialised it): frees the daemon's state, the metrics and its configuration.  May
         * call nc_daemon_http_stop at the point its order needs; the skeleton stops the
         * endpoint after it otherwise. */
        void (*free)(void *arg, nc_daemon_t *d);
} nc_daemon_ops_t;

/* The whole of main(): returns the exit status, 0 stopped cleanly (or -h, -V, -n), 64
 * usage, 69 Kafka unavailable at start, 78 bad configuration or HTTP address. */
int nc_daemon_run(const nc_daemon_ops_t *ops, void *arg, int argc, char **argv);

/* Loads the configuration with the command line's -C, -X and -b into CFG (see
 * nc_daemon_config): for LOAD and for a reload.  0, or -1 with errstr (CFG is then empty). */
int nc_daemon_load_config(const nc_daemon_t *d, nc_config_t *cfg, char *errstr, size_t errstr_size);

/* The wake pipe: a byte on the write end (signals, librdkafka queue events, worker
 * threads) makes a turn of the loop blocked in poll/epoll return. */
int nc_daemon_wake_read_fd(const nc_daemon_t *d);
int nc_daemon_wake_write_fd(const nc_daemon_t *d);
/* Empties the wake pipe (its read end is non-blocking). */
void nc_daemon_wake_drain(nc_daemon_t *d);
/* Waits up to TIMEOUT_MS for a byte on the wake pipe, then empties it. */
void nc_daemon_wait(nc_daemon_t *d, int timeout_ms);

/* The HTTP endpoint (NULL without one, or once stopped). */
nc_httpd_t *nc_daemon_httpd(const nc_daemon_t *d);
/* Stops the HTTP endpoint now (idempotent). */
void nc_daemon_http_stop(nc_daemon_t *d);

/* The loop calls this on every iteration: it feeds /healthz and the systemd watchdog. */
void nc_daemon_heartbeat(nc_daemon_t *d);
/* Milliseconds since the last nc_daemon_heartbeat (monotonic clock; from nc_daemon_run's
 * start before the first one); any thread may ask. */
int64_t nc_daemon_heartbeat_age_ms(const nc_daemon_t *d);
/* Liveness: /healthz says 503 "main loop stalled for N s" once the heartbeat is older than
 * BOUND_MS (default NC_HEALTH_LIVE_MS_DEFAULT, 30 s): more than the longest call a turn of
 * the loop may block in.  Before the loop's first turn (start-up, which logs its own waits)
 * it is live. */
void nc_daemon_set_live_bound(nc_daemon_t *d, int64_t bound_ms);

/* Readiness from the brokers and the daemon's own condition (nc_health.h): PROGRESS and its
 * REASON when not met, GRACE_MS the Kafka outage that does not count; the brokers' state is
 * the connectivity tracker's (nc_kafka_conn_state).  Calls nc_daemon_set_ready, and sets the
 * noticecast_kafka_broker_up gauge.  Every turn of the loop. */
void nc_daemon_health(nc_daemon_t *d, int progress, const char *reason, int64_t grace_ms);

/* Readiness: 1 ready, 0 not ready with REASON (copied). Sets /readyz through
   nc_httpd_set_ready/_reason. The first 1 sends READY=1 to systemd. Later changes send STATUS=. */
void nc_daemon_set_ready(nc_daemon_t *d, int ready, const char *reason);

/* Installs TERM/INT (stop) and HUP (reload) handlers that set the flags above and write a
 * byte to WAKE_FD so a loop blocked in poll() notices at once; ignores SIGPIPE.  Called by
 * nc_daemon_run. */
void nc_daemon_signals(int wake_fd);

/* Loads the configuration (-C path CLI_PATH, else the lookup of nc_config_path()) and applies
 * -X/-b: the one way all three programs read it.  Returns 0, or -1 with errstr (CFG is then
 * empty). */
int nc_daemon_config(nc_config_t *cfg, const char *cli_path, const nc_strlist_t *xprops,
                     const char *brokers, char *errstr, size_t errstr_size);

/* One start-up step that needs the brokers (checking topics, reading metadata): 0 done, -1
 * failed (ERRSTR says why), 1 waiting for something outside the daemon (ERRSTR says what:
 * topics `noticecast topics create` has not made yet). */
typedef int (*nc_daemon_step_fn)(void *arg, char *errstr, size_t errstr_size);

/* How often a waiting step (1) is tried again, and how often the same wait is logged again. */
#define NC_DAEMON_AWAIT_MS     5000
#define NC_DAEMON_AWAIT_LOG_MS 60000

/* Runs STEP until it succeeds: at start a daemon waits out brokers that are down or not ready
 * yet (no leader right after a topic was created) instead of exiting.  Each failure is logged
 * as "WHAT: error; trying again in N ms" (backoff 0.5 s doubling to 15 s), and /readyz stays
 * 503 meanwhile, while the heartbeat goes on (nc_daemon_run's daemon, if any: it is waiting on
 * purpose).  A waiting step is tried again every NC_DAEMON_AWAIT_MS; what it waits for is
 * /readyz's reason, and is logged once ("WHAT: why; checking again every 5 s"), again only
 * when it changes or after NC_DAEMON_AWAIT_LOG_MS.  A TERM/INT ends the wait at once.
 * Returns 0, or -1 if a stop was asked for (ERRSTR holds the last error).  Start-up only: it
 * sleeps. */
int nc_daemon_retry(const char *what, nc_daemon_step_fn step, void *arg, char *errstr,
                    size_t errstr_size);

/* Logs msg="http listening" addr=HOST:PORT for LISTEN ("127.0.0.1:0") and the bound PORT. */
void nc_daemon_log_listen(const char *listen, int port);

#endif
