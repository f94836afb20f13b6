#include "ml_ratelimit.h"

#include <glib.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nc_config.h"
#include "nc_util.h"

/* One key's log: the times of its last MAX events, a ring, oldest at HEAD. */
struct entry {
        int64_t *t;
        int n, head;
        int64_t last; /* the newest event */
};

struct ml_ratelimit {
        pthread_mutex_t lock;
        int max;
        int64_t window;
        size_t capacity, limited;
        GHashTable *keys; /* key -> struct entry */
};

static void entry_free(gpointer p)
{
        struct entry *e = p;

        free(e->t);
        free(e);
}

ml_ratelimit_t *ml_ratelimit_new(int max, int64_t window_ms, size_t capacity)
{
        ml_ratelimit_t *rl;

        if (max < 0 || (max > 0 && (window_ms <= 0 || capacity == 0)))
                return NULL;
        rl = nc_xcalloc(1, sizeof(*rl));
        pthread_mutex_init(&rl->lock, NULL);
        rl->max = max;
        rl->window = window_ms;
        rl->capacity = capacity;
        rl->keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
        return rl;
}

void ml_ratelimit_free(ml_ratelimit_t *rl)
{
        if (!rl)
                return;
        g_hash_table_destroy(rl->keys);
        pthread_mutex_destroy(&rl->lock);
        free(rl);
}

/* Drops the events of E older than the window. */
static void expire(const ml_ratelimit_t *rl, struct entry *e, int64_t now)
{
        while (e->n && e->t[e->head] <= now - rl->window) {
                e->head = (e->head + 1) % rl->max;
                e->n--;
        }
}

/* Under the lock, the table full: frees the idlest key whose events all left the window.
 * Returns 1 if one was freed. */
static int reclaim(ml_ratelimit_t *rl, int64_t now)
{
        GHashTableIter it;
        gpointer k, v, best = NULL;
        int64_t best_last = 0;

        g_hash_table_iter_init(&it, rl->keys);
        while (g_hash_table_iter_next(&it, &k, &v)) {
                struct entry *e = v;

                if (e->last > now - rl->window)
                        continue;
                if (!best || e->last < best_last) {
                        best = k;
                        best_last = e->last;
                }
        }
        if (!best)
                return 0;
        g_hash_table_remove(rl->keys, best);
        return 1;
}

int ml_ratelimit_take(ml_ratelimit_t *rl, const char *key, int64_t now_ms)
{
        struct entry *e;
        int ok = 0;

        if (!rl || rl->max == 0)
                return 1;
        pthread_mutex_lock(&rl->lock);
        if (!(e = g_hash_table_lookup(rl->keys, key))) {
                if (g_hash_table_size(rl->keys) >= rl->capacity && !reclaim(rl, now_ms))
                        goto out; /* every key is still counting: a new one is refused */
                e = nc_xcalloc(1, sizeof(*e));
                e->t = nc_xcalloc((size_t)rl->max, sizeof(*e->t));
                g_hash_table_insert(rl->keys, g_strdup(key), e);
        }
        expire(rl, e, now_ms);
        if (e->n < rl->max) {
                e->t[(e->head + e->n) % rl->max] = now_ms;
                e->n++;
                e->last = now_ms;
                ok = 1;
        }
out:
        if (!ok)
                rl->limited++;
        pthread_mutex_unlock(&rl->lock);
        return ok;
}

size_t ml_ratelimit_limited(const ml_ratelimit_t *rl)
{
        size_t n;

        if (!rl)
                return 0;
        pthread_mutex_lock((pthread_mutex_t *)&rl->lock);
        n = rl->limited;
        pthread_mutex_unlock((pthread_mutex_t *)&rl->lock);
        return n;
}

int ml_ratelimit_parse(const char *s, int *max, int64_t *window_ms, char *errstr,
                       size_t errstr_size)
{
        const char *slash;
        char *end;
        long n;

        if (!s || !*s)
                return nc_err(errstr, errstr_size, "empty: give N/DURATION (\"3/24h\") or 0");
        if (!strcmp(s, "0")) {
                *max = 0;
                *window_ms = 0;
                return 0;
        }
        slash = strchr(s, '/');
        n = strtol(s, &end, 10);
        if (!slash || end != slash || n < 1 || n > 100000)
                return nc_err(errstr, errstr_size,
                              "'%s': not N/DURATION with N from 1 to 100000 (\"3/24h\"), or 0", s);
        if (nc_duration_parse(slash + 1, window_ms) != 0 || *window_ms <= 0)
                return nc_err(errstr, errstr_size, "'%s': '%s' is not a duration (\"30s\", \"1h\")",
                              s, slash + 1);
        *max = (int)n;
        return 0;
}
