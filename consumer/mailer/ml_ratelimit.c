#include "ml_ratelimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_config.h"
#include "nc_util.h"

/* Larger counts are a typo, and each key keeps MAX times. */
#define COUNT_MAX 100000

/* One key: the times of its last MAX allowed events, a ring oldest first from HEAD. */
struct slot {
        char *key; /* NULL: never used */
        int64_t *times;
        int n, head;
        int64_t last; /* the newest event */
        size_t next;  /* the bucket's chain: index + 1, 0 ends it */
};

struct ml_ratelimit {
        pthread_mutex_t lock;
        int max;
        int64_t window_ms;
        size_t capacity, used, limited;
        struct slot *slots;
        int64_t *times;
        size_t *buckets; /* slot index + 1, 0 = empty */
        size_t nbuckets; /* a power of two */
};

ml_ratelimit_t *ml_ratelimit_new(int max, int64_t window_ms, size_t capacity)
{
        ml_ratelimit_t *rl;
        size_t i;

        if (max < 0 || max > COUNT_MAX || (max > 0 && (window_ms <= 0 || capacity == 0)))
                return NULL;
        rl = calloc(1, sizeof(*rl));
        if (!rl)
                return NULL;
        rl->max = max;
        rl->window_ms = window_ms;
        pthread_mutex_init(&rl->lock, NULL);
        if (max == 0)
                return rl; /* unlimited: nothing to remember */
        if (capacity > SIZE_MAX / 2 / (size_t)max / sizeof(int64_t))
                goto fail;
        rl->capacity = capacity;
        for (rl->nbuckets = 1; rl->nbuckets < 2 * capacity; rl->nbuckets *= 2)
                ;
        rl->slots = calloc(capacity, sizeof(*rl->slots));
        rl->times = calloc(capacity * (size_t)max, sizeof(*rl->times));
        rl->buckets = calloc(rl->nbuckets, sizeof(*rl->buckets));
        if (!rl->slots || !rl->times || !rl->buckets)
                goto fail;
        for (i = 0; i < capacity; i++)
                rl->slots[i].times = rl->times + i * (size_t)max;
        return rl;
fail:
        ml_ratelimit_free(rl);
        return NULL;
}

void ml_ratelimit_free(ml_ratelimit_t *rl)
{
        size_t i;

        if (!rl)
                return;
        for (i = 0; rl->slots && i < rl->capacity; i++)
                free(rl->slots[i].key);
        free(rl->slots);
        free(rl->times);
        free(rl->buckets);
        pthread_mutex_destroy(&rl->lock);
        free(rl);
}

/* FNV-1a: keys are addresses and IPs, not chosen to collide against a secret-less table
 * beyond what the bounded capacity already caps. */
static size_t bucket_of(const ml_ratelimit_t *rl, const char *key)
{
        uint64_t h = 14695981039346656037ULL;

        for (; *key; key++)
                h = (h ^ (unsigned char)*key) * 1099511628211ULL;
        return (size_t)(h & (rl->nbuckets - 1));
}

static struct slot *lookup(ml_ratelimit_t *rl, const char *key)
{
        size_t i;

        for (i = rl->buckets[bucket_of(rl, key)]; i; i = rl->slots[i - 1].next)
                if (!strcmp(rl->slots[i - 1].key, key))
                        return &rl->slots[i - 1];
        return NULL;
}

static void unlink_slot(ml_ratelimit_t *rl, struct slot *s)
{
        size_t *p = &rl->buckets[bucket_of(rl, s->key)];
        size_t idx = (size_t)(s - rl->slots) + 1;

        while (*p != idx)
                p = &rl->slots[*p - 1].next;
        *p = s->next;
}

/* A slot for a new KEY: a free one, else the idlest if all its events left the window;
 * NULL when every key is still limiting. */
static struct slot *claim(ml_ratelimit_t *rl, const char *key, int64_t now_ms)
{
        struct slot *s = NULL;
        size_t i, b;

        if (rl->used < rl->capacity) {
                s = &rl->slots[rl->used++];
        } else {
                for (i = 0; i < rl->capacity; i++)
                        if (!s || rl->slots[i].last < s->last)
                                s = &rl->slots[i];
                if (now_ms - s->last < rl->window_ms)
                        return NULL;
                unlink_slot(rl, s);
                free(s->key);
        }
        s->key = nc_xstrdup(key);
        s->n = s->head = 0;
        b = bucket_of(rl, key);
        s->next = rl->buckets[b];
        rl->buckets[b] = (size_t)(s - rl->slots) + 1;
        return s;
}

int ml_ratelimit_take(ml_ratelimit_t *rl, const char *key, int64_t now_ms)
{
        struct slot *s;
        int ok = 0;

        if (rl->max == 0)
                return 1;
        pthread_mutex_lock(&rl->lock);
        s = lookup(rl, key);
        if (!s)
                s = claim(rl, key, now_ms);
        if (s && s->n < rl->max) {
                s->times[(s->head + s->n++) % rl->max] = now_ms;
                ok = 1;
        } else if (s && now_ms - s->times[s->head] >= rl->window_ms) {
                /* The oldest event left the window: its place takes the new one. */
                s->times[s->head] = now_ms;
                s->head = (s->head + 1) % rl->max;
                ok = 1;
        }
        if (ok)
                s->last = now_ms;
        else
                rl->limited++;
        pthread_mutex_unlock(&rl->lock);
        return ok;
}

size_t ml_ratelimit_limited(const ml_ratelimit_t *rl)
{
        ml_ratelimit_t *m = (ml_ratelimit_t *)rl;
        size_t n;

        pthread_mutex_lock(&m->lock);
        n = m->limited;
        pthread_mutex_unlock(&m->lock);
        return n;
}

int ml_ratelimit_parse(const char *s, int *max, int64_t *window_ms, char *errstr,
                       size_t errstr_size)
{
        const char *slash = strchr(s, '/');
        unsigned long n;
        char *end;

        if (!strcmp(s, "0")) {
                *max = 0;
                *window_ms = 0;
                return 0;
        }
        if (!slash)
                return nc_err(errstr, errstr_size,
                              "rate limit \"%s\": expected COUNT/DURATION (\"5/1h\") or 0", s);
        errno = 0;
        n = strtoul(s, &end, 10);
        if (s[0] < '0' || s[0] > '9' || end != slash || errno || n == 0 || n > COUNT_MAX)
                return nc_err(errstr, errstr_size,
                              "rate limit \"%s\": the count must be 1..%d (0 alone: no limit)", s,
                              COUNT_MAX);
        if (nc_duration_parse(slash + 1, window_ms) != 0 || *window_ms <= 0)
                return nc_err(errstr, errstr_size,
                              "rate limit \"%s\": bad duration \"%s\" (\"30s\", \"1h\"; more "
                              "than 0, at most 30 days)",
                              s, slash + 1);
        *max = (int)n;
        return 0;
}
