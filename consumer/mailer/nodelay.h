/* TCP_NODELAY (and a connect timeout) for libesmtp's socket.
 *
 * Why: libesmtp writes through a 2 KiB buffer and never sets TCP_NODELAY.  A message larger
 * than the buffer ends with a short write that Nagle's algorithm holds back until the server
 * ACKs the previous segment, and the server delays that ACK (~40 ms on Linux) because it is
 * waiting for the rest of the message: ~40 ms per message, every message, on loopback and on
 * a real relay alike (make bench: 22 msg/s instead of thousands).  libesmtp 1.x offers no hook
 * to reach its socket: smtp_set_eventcb's SMTP_EV_CONNECT passes no descriptor, and the
 * connection is made inside smtp_start_session() with plain socket() + connect().
 *
 * How: this module defines connect() in our executable.  libesmtp is a shared library that
 * imports connect() through its PLT, and the dynamic linker resolves that import in the global
 * scope, where the executable comes first, so libesmtp's call lands here.  We forward to the
 * next definition (libc's, found with dlsym(RTLD_NEXT)) and, only while the calling thread is
 * "armed" (ml_smtp_send_session arms it around smtp_start_session), set TCP_NODELAY on
 * AF_INET/AF_INET6 stream sockets once connected.  Every other connect() of the process
 * (librdkafka, libcurl, other threads) goes straight through: one thread-local load.
 *
 * While armed, a connect timeout is applied too (libesmtp's own connect() blocks for the
 * kernel's SYN retries, ~2 min, on a black-holed relay), and the descriptor is remembered so
 * that the SMTP module can check the option and can cut a session it must not continue.
 *
 * Limits: only threads that arm the hook are affected; it relies on libesmtp being a shared
 * library calling connect() (true for Debian's libesmtp 1.0.6 and 1.1.0).  If a future
 * libesmtp connected another way, nothing breaks but the fix silently stops applying:
 * ml_nodelay_applied() stays 0, ml_smtp_send_session() logs a warning once, and
 * tests/bench/smtp.sh shows the rate falling back to ~23 msg/s. */
#ifndef ML_NODELAY_H
#define ML_NODELAY_H

#include <stdatomic.h>

/* Arms the calling thread: its TCP connect() calls until ml_nodelay_disarm() get TCP_NODELAY
 * (unless disabled with ml_nodelay_set_enabled(0)) and, if TIMEOUT_MS > 0, fail with
 * ETIMEDOUT after that long.  Resets ml_nodelay_last_fd() to -1. */
void ml_nodelay_arm(int timeout_ms);
void ml_nodelay_disarm(void);

/* While armed, a connect in progress is abandoned (ECANCELED) within 100 ms once *FLAG is
 * non-zero; NULL = no such flag.  Per thread, kept until changed. */
void ml_nodelay_set_abort(const atomic_int *flag);

/* Descriptor of the calling thread's last TCP socket connected while armed, or -1. */
int ml_nodelay_last_fd(void);

/* 1 if TCP_NODELAY is set on FD, 0 if not, -1 if FD is not a TCP socket. */
int ml_nodelay_is_set(int fd);

/* Process-wide switch, on by default.  Off only to measure the pitfall (tests/bench/smtp.sh);
 * the connect timeout and descriptor tracking stay on either way. */
void ml_nodelay_set_enabled(int on);
int ml_nodelay_enabled(void);

/* Sockets that got TCP_NODELAY since the start of the process (all threads), and whether that
 * ever happened: proof that the interposed connect() is the one libesmtp calls. */
unsigned long ml_nodelay_applied(void);
int ml_nodelay_active(void);

#endif
