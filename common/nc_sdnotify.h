/* The systemd notification protocol (sd_notify(3)), written out so that the daemons need no
 * libsystemd: one datagram of "KEY=value" lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET ("/run/..." a path, "@name" the abstract namespace).  Without that variable
 * (not started by systemd, or Type= is not notify) every call is a no-op.  Stateless: each
 * call reads the environment, so tests can change it. */
#ifndef NC_SDNOTIFY_H
#define NC_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* Sends STATE ("READY=1", "STATUS=...\n", several lines separated by '\n').  Returns 1 sent,
 * 0 no $NOTIFY_SOCKET (nothing done), -1 with errstr (unusable address, send failed). */
int nc_sdnotify(const char *state, char *errstr, size_t errstr_size);

/* The watchdog interval systemd expects pings within (WatchdogSec=): 1 with *USEC set when
 * $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or this process; 0 when no watchdog is
 * asked of this process; -1 with errstr when either variable is not a positive decimal
 * number. */
int nc_sdnotify_watchdog_usec(uint64_t *usec, char *errstr, size_t errstr_size);

#endif
