/* noticecast-mailer: per-recipient-domain sending policy (pure: no I/O, no lock, the clock
 * passed in; unit-tested in tests/unit/test_ml_domain.c).
 *
 * Each recipient domain is throttled on its own, so that a mailbox provider that throttles
 * never delays the mail of the others:
 *   - limits from [smtp] domain_limits ("gmail.com 20/s 4, outlook.com 10/s 2") and, for every
 *     other domain, each on its own, [smtp] domain_limit_default ("0 4"): a rate (a token
 *     bucket holding one second of it, at least one message) and concurrent SMTP sessions;
 *     [smtp] rate_limit and sessions remain the overall caps;
 *   - a deferral (a 421, or a 4xx with an enhanced status 4.7.x, to a message's RCPT TO or
 *     data) backs the domain off: no session for it for [smtp] domain_backoff, doubled at
 *     each deferral in a row up to domain_backoff_max, reset by a session that delivers.
 *     Once the backoff is over one session at a time probes the domain until one delivers.
 * ml_queue.c keeps one ml_domain_state_t per domain with mail waiting and asks these
 * functions whether a worker may start a session for it. */
#ifndef ML_DOMAIN_H
#define ML_DOMAIN_H

#include <stddef.h>
#include <stdint.h>

/* A domain's limits: RATE messages per second (0 = none of its own), SESSIONS concurrent
 * SMTP sessions (0 = none of its own). */
typedef struct ml_domain_limit {
        char *domain; /* lower case; NULL for the default */
        double rate;
        int sessions;
} ml_domain_limit_t;

typedef struct ml_domain_limits {
        ml_domain_limit_t *v; /* [smtp] domain_limits, in the order written */
        size_t n;
        ml_domain_limit_t def; /* [smtp] domain_limit_default */
        int64_t backoff_ms;    /* first backoff of a deferring domain */
        int64_t backoff_max_ms;
} ml_domain_limits_t;

/* Parses LIST ([smtp] domain_limits: "DOMAIN RATE SESSIONS, ..."; NULL or "" = none) and DEF
 * ([smtp] domain_limit_default: "RATE SESSIONS") into OUT, with the backoff bounds.  RATE is
 * "N/s", "N/m", "N/h", "N/DURATION" ("5/10s") or 0; SESSIONS 0 to 64.  Returns 0, or -1 with
 * ERR naming the key and the bad entry (OUT is then empty). */
int ml_domain_limits_parse(const char *list, const char *def, int64_t backoff_ms,
                           int64_t backoff_max_ms, ml_domain_limits_t *out, char *err,
                           size_t err_size);
void ml_domain_limits_free(ml_domain_limits_t *l);
/* The limits of DOMAIN (lower case): its own line, else the default. */
const ml_domain_limit_t *ml_domain_limit_for(const ml_domain_limits_t *l, const char *domain);
/* The metric label of DOMAIN: the domain itself if configured, else "other" (domains are
 * unbounded, label values must not be). */
const char *ml_domain_label(const ml_domain_limits_t *l, const char *domain);
/* The domain part of address ADDR (after the last '@'), "" if none; not lower-cased. */
const char *ml_domain_of(const char *addr);

/* 1 if an SMTP reply is the domain deferring mail ("try again later", rate limited): CODE
 * 421, or 4xx with the enhanced status 4.7.x (TEXT starts with it, as smtp.h's replies do).
 * AT_RECIPIENT: the reply answered this message's RCPT TO or its data; a reply at the greeting
 * or to MAIL FROM is about the relay or the sender, not the domain (0). */
int ml_domain_is_deferral(int code, int at_recipient, const char *text);

/* What ml_queue keeps per domain. */
typedef struct ml_domain_state {
        double tokens; /* the rate's bucket */
        int64_t tokens_ms;
        int bucket_set; /* tokens initialised (full) */
        int busy;       /* sessions running */
        int deferrals;  /* deferrals in a row; 0 = not backed off */
        int64_t until_ms;
} ml_domain_state_t;

/* 1 if another session for the domain may start now as far as concurrency goes: below its
 * sessions limit, and only one at a time while it is backed off (a probe). */
int ml_domain_session_allowed(const ml_domain_state_t *st, const ml_domain_limit_t *lim);
/* The earliest time (ms, NOW's clock) a session may start as far as the backoff and the
 * rate go: NOW or earlier when it may start now. */
int64_t ml_domain_next_eligible(ml_domain_state_t *st, const ml_domain_limit_t *lim, int64_t now);
/* Takes up to WANT messages' worth of tokens (all of them without a rate); returns how many
 * (0 when the bucket holds less than one). */
size_t ml_domain_take(ml_domain_state_t *st, const ml_domain_limit_t *lim, size_t want,
                      int64_t now);

typedef enum ml_domain_event {
        ML_DOMAIN_NONE,
        ML_DOMAIN_BACKED_OFF, /* a deferral: until_ms set (deferrals = how many in a row) */
        ML_DOMAIN_RECOVERED,  /* delivered after being backed off */
} ml_domain_event_t;

/* A session for the domain ended: DEFERRED if a message got a deferral, DELIVERED if one was
 * accepted.  A deferral wins over deliveries earlier in the same session. */
ml_domain_event_t ml_domain_session_end(ml_domain_state_t *st, const ml_domain_limits_t *l,
                                        int deferred, int delivered, int64_t now);
/* The wait after the Nth deferral in a row (N >= 1): backoff_ms doubled N - 1 times, at most
 * backoff_max_ms. */
int64_t ml_domain_backoff_delay(const ml_domain_limits_t *l, int n);
/* 1 if the state holds nothing worth keeping at NOW (no session, not backed off or backed off
 * long ago, a full bucket): ml_queue may then forget an unconfigured domain without mail. */
int ml_domain_idle(const ml_domain_state_t *st, const ml_domain_limit_t *lim,
                   const ml_domain_limits_t *l, int64_t now);

#endif
