/* Per-key rate limit for the public pages (sign-ups per address, per client IP).
 *
 * Sliding-window log: each key keeps the times of its last MAX events; an event is allowed when
 * fewer than MAX fall within the last WINDOW_MS.  Memory is bounded: at most CAPACITY keys.
 * When full, a key whose events have all left the window is reused (the idlest first); if every
 * key is still limiting, a NEW key is refused (counted as limited) rather than forgetting a key
 * that is limited.  Thread-safe (own mutex). */
#ifndef ML_RATELIMIT_H
#define ML_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ml_ratelimit ml_ratelimit_t;

/* MAX == 0 means unlimited (take always allows).  NULL on bad arguments or out of memory. */
ml_ratelimit_t *ml_ratelimit_new(int max, int64_t window_ms, size_t capacity);
void ml_ratelimit_free(ml_ratelimit_t *rl);
/* 1 = allowed (and counted), 0 = limited.  NOW_MS is passed in (tests drive the clock). */
int ml_ratelimit_take(ml_ratelimit_t *rl, const char *key, int64_t now_ms);
/* Refusals so far (for logs/metrics). */
size_t ml_ratelimit_limited(const ml_ratelimit_t *rl);

/* Parses "N/DURATION" ("5/1h", "3/24h"; the duration as in the config files) or "0"
 * (unlimited: *MAX = 0, *WINDOW_MS = 0).  0, or -1 with ERRSTR. */
int ml_ratelimit_parse(const char *s, int *max, int64_t *window_ms, char *errstr,
                       size_t errstr_size);

#endif
