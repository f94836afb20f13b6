/* noticecast-mailer: per-recipient-domain sending policy (ml_domain.h). */
#include "ml_domain.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_config.h"
#include "nc_log.h"
#include "nc_util.h"

#define SESSIONS_MAX 64 /* as [smtp] sessions */
#define DOMAIN_MAX   253

/* "N/s", "N/m", "N/h", "N/DURATION" or "0" -> messages per second. */
static int rate_parse(const char *s, double *rate)
{
        const char *per = strchr(s, '/');
        int64_t ms;
        char *end;
        double n;

        errno = 0;
        n = strtod(s, &end);
        if (errno || end == s || n < 0 || n > 1e6)
                return -1;
        if (!per) {
                if (*end || n != 0)
                        return -1; /* only 0 goes without a unit */
                *rate = 0;
                return 0;
        }
        if (end != per || n == 0)
                return -1;
        per++;
        if (!strcmp(per, "s"))
                ms = 1000;
        else if (!strcmp(per, "m"))
                ms = 60000;
        else if (!strcmp(per, "h"))
                ms = 3600000;
        else if (nc_duration_parse(per, &ms) != 0 || ms <= 0)
                return -1;
        *rate = n * 1000.0 / (double)ms;
        return 0;
}

static int sessions_parse(const char *s, int *out)
{
        char *end;
        long n;

        errno = 0;
        n = strtol(s, &end, 10);
        if (errno || end == s || *end || n < 0 || n > SESSIONS_MAX)
                return -1;
        *out = (int)n;
        return 0;
}

static int domain_ok(const char *d)
{
        size_t len = strlen(d);

        if (len == 0 || len > DOMAIN_MAX || d[0] == '.' || d[len - 1] == '.')
                return 0;
        for (; *d; d++)
                if (!isalnum((unsigned char)*d) && *d != '-' && *d != '.')
                        return 0;
        return 1;
}

/* "RATE SESSIONS" in WORDS[0..1] into LIM; why not in ERR. */
static int limit_parse(char **words, ml_domain_limit_t *lim, char *err, size_t err_size)
{
        if (rate_parse(words[0], &lim->rate) != 0)
                return nc_err(err, err_size,
                              "'%s' is not a rate like 20/s, 600/m or 1000/h (0 = no limit)",
                              words[0]);
        if (sessions_parse(words[1], &lim->sessions) != 0)
                return nc_err(err, err_size, "'%s' is not a number of sessions from 0 to %d",
                              words[1], SESSIONS_MAX);
        return 0;
}

/* Splits S at blanks into at most MAX words (in place); returns how many there were. */
static size_t words_split(char *s, char **words, size_t max)
{
        char *save = NULL, *w;
        size_t n = 0;

        for (w = strtok_r(s, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                if (n < max)
                        words[n] = w;
                n++;
        }
        return n;
}

static int entry_parse(ml_domain_limits_t *out, char *entry, size_t index, char *err,
                       size_t err_size)
{
        char copy[512], why[256], *w[3];
        ml_domain_limit_t lim = {0};

        entry += strspn(entry, " \t");
        snprintf(copy, sizeof(copy), "%s", entry);
        for (size_t len = strlen(copy); len > 0 && strchr(" \t", copy[len - 1]); len--)
                copy[len - 1] = '\0';
        if (words_split(entry, w, 3) != 3)
                return nc_err(err, err_size,
                              "[smtp] domain_limits: entry %zu '%s': expected DOMAIN RATE "
                              "SESSIONS (gmail.com 20/s 4)",
                              index, copy);
        nc_str_lower(w[0]);
        if (!domain_ok(w[0]))
                return nc_err(err, err_size,
                              "[smtp] domain_limits: entry %zu '%s': '%s' is not a domain name",
                              index, copy, w[0]);
        if (ml_domain_limit_for(out, w[0]) != &out->def)
                return nc_err(err, err_size,
                              "[smtp] domain_limits: entry %zu '%s': %s is listed twice", index,
                              copy, w[0]);
        if (limit_parse(w + 1, &lim, why, sizeof(why)) != 0)
                return nc_err(err, err_size, "[smtp] domain_limits: entry %zu '%s': %s", index,
                              copy, why);
        lim.domain = nc_xstrdup(w[0]);
        out->v = realloc(out->v, (out->n + 1) * sizeof(*out->v));
        if (!out->v)
                fatalx("out of memory");
        out->v[out->n++] = lim;
        return 0;
}

int ml_domain_limits_parse(const char *list, const char *def, int64_t backoff_ms,
                           int64_t backoff_max_ms, ml_domain_limits_t *out, char *err,
                           size_t err_size)
{
        char *copy, *save = NULL, *entry, *w[2], why[256];
        size_t index = 0;
        int rc = 0;

        memset(out, 0, sizeof(*out));
        copy = nc_xstrdup(def ? def : "0 0");
        if (words_split(copy, w, 2) != 2)
                rc = nc_err(err, err_size,
                            "[smtp] domain_limit_default: '%s': expected RATE SESSIONS (0 4)", def);
        else if (limit_parse(w, &out->def, why, sizeof(why)) != 0)
                rc = nc_err(err, err_size, "[smtp] domain_limit_default: %s", why);
        free(copy);
        if (rc == 0 && (backoff_ms < 1000 || backoff_max_ms < backoff_ms))
                rc = nc_err(err, err_size,
                            "[smtp] domain_backoff must be at least 1s and domain_backoff_max at "
                            "least domain_backoff");
        out->backoff_ms = backoff_ms;
        out->backoff_max_ms = backoff_max_ms;
        copy = nc_xstrdup(list ? list : "");
        for (entry = strtok_r(copy, ",", &save); rc == 0 && entry;
             entry = strtok_r(NULL, ",", &save))
                rc = entry_parse(out, entry, ++index, err, err_size);
        free(copy);
        if (rc != 0)
                ml_domain_limits_free(out);
        return rc;
}

void ml_domain_limits_free(ml_domain_limits_t *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i].domain);
        free(l->v);
        l->v = NULL;
        l->n = 0;
}

const ml_domain_limit_t *ml_domain_limit_for(const ml_domain_limits_t *l, const char *domain)
{
        for (size_t i = 0; i < l->n; i++)
                if (!strcmp(l->v[i].domain, domain))
                        return &l->v[i];
        return &l->def;
}

const char *ml_domain_label(const ml_domain_limits_t *l, const char *domain)
{
        const ml_domain_limit_t *lim = ml_domain_limit_for(l, domain);

        return lim->domain ? lim->domain : "other";
}

const char *ml_domain_of(const char *addr)
{
        const char *at = addr ? strrchr(addr, '@') : NULL;

        return at ? at + 1 : "";
}

int ml_domain_is_deferral(int code, int at_recipient, const char *text)
{
        if (!at_recipient || code < 400 || code > 499)
                return 0;
        if (code == 421)
                return 1;
        /* RFC 3463 class 4, subject 7 (security or policy): "4.7.0 try again later", Gmail's
         * "4.7.28" rate limit, Microsoft's "4.7.650". */
        return text && !strncmp(text, "4.7.", 4) && isdigit((unsigned char)text[4]);
}

int ml_domain_session_allowed(const ml_domain_state_t *st, const ml_domain_limit_t *lim)
{
        if (st->deferrals > 0)
                return st->busy == 0; /* one probe at a time */
        return lim->sessions == 0 || st->busy < lim->sessions;
}

/* Refills the bucket to NOW; it holds one second of the rate, at least one message. */
static void bucket_fill(ml_domain_state_t *st, double rate, int64_t now)
{
        double cap = rate < 1 ? 1 : rate;

        if (!st->bucket_set) {
                st->bucket_set = 1;
                st->tokens = cap;
        } else if (now > st->tokens_ms) {
                st->tokens += (double)(now - st->tokens_ms) * rate / 1000.0;
        }
        if (st->tokens > cap)
                st->tokens = cap;
        st->tokens_ms = now;
}

int64_t ml_domain_next_eligible(ml_domain_state_t *st, const ml_domain_limit_t *lim, int64_t now)
{
        int64_t at = now;

        if (st->deferrals > 0 && st->until_ms > at)
                at = st->until_ms;
        if (lim->rate > 0) {
                bucket_fill(st, lim->rate, now);
                if (st->tokens < 1) {
                        int64_t t = now + (int64_t)((1 - st->tokens) * 1000.0 / lim->rate) + 1;

                        if (t > at)
                                at = t;
                }
        }
        return at;
}

size_t ml_domain_take(ml_domain_state_t *st, const ml_domain_limit_t *lim, size_t want, int64_t now)
{
        size_t n;

        if (lim->rate <= 0)
                return want;
        bucket_fill(st, lim->rate, now);
        n = st->tokens < 1 ? 0 : (size_t)st->tokens;
        if (n > want)
                n = want;
        st->tokens -= (double)n;
        return n;
}

int64_t ml_domain_backoff_delay(const ml_domain_limits_t *l, int n)
{
        int64_t d = l->backoff_ms;

        for (int i = 1; i < n && d < l->backoff_max_ms; i++)
                d *= 2;
        return d < l->backoff_max_ms ? d : l->backoff_max_ms;
}

ml_domain_event_t ml_domain_session_end(ml_domain_state_t *st, const ml_domain_limits_t *l,
                                        int deferred, int delivered, int64_t now)
{
        if (deferred) {
                if (st->deferrals < 1000) /* the delay is capped long before */
                        st->deferrals++;
                st->until_ms = now + ml_domain_backoff_delay(l, st->deferrals);
                return ML_DOMAIN_BACKED_OFF;
        }
        if (delivered && st->deferrals > 0) {
                st->deferrals = 0;
                st->until_ms = 0;
                return ML_DOMAIN_RECOVERED;
        }
        return ML_DOMAIN_NONE;
}

int ml_domain_idle(const ml_domain_state_t *st, const ml_domain_limit_t *lim,
                   const ml_domain_limits_t *l, int64_t now)
{
        if (st->busy)
                return 0;
        /* Backed off: remembered (the next deferral doubles) until a full maximum backoff
         * after it ended without any more mail for the domain. */
        if (st->deferrals > 0 && now < st->until_ms + l->backoff_max_ms)
                return 0;
        if (lim->rate > 0 && st->bucket_set) {
                double cap = lim->rate < 1 ? 1 : lim->rate;

                return st->tokens + (double)(now - st->tokens_ms) * lim->rate / 1000.0 >= cap;
        }
        return 1;
}
