/* noticecast-webhooks: HTTP side — partners, matching, payloads, signing, libcurl multi. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "nc_notice.h"
#include "nc_time.h"
#include "nc_util.h"
#include "wh.h"
#include "wh_format.h"
#include "wh_policy.h"

/* ---- partners -------------------------------------------------------------------------- */

static void easy_pool_clear(wh_partner_t *p);

static char *dup_or_null(const char *s)
{
        return s ? nc_xstrdup(s) : NULL;
}

static void partner_cfg_copy(nc_partner_t *dst, const nc_partner_t *src)
{
        size_t i;

        *dst = *src;
        dst->id = nc_xstrdup(src->id);
        dst->url = nc_xstrdup(src->url);
        dst->secret_file = nc_xstrdup(src->secret_file);
        memset(&dst->categories, 0, sizeof(dst->categories));
        memset(&dst->regions, 0, sizeof(dst->regions));
        for (i = 0; i < src->categories.n; i++)
                nc_strlist_add(&dst->categories, src->categories.v[i]);
        for (i = 0; i < src->regions.n; i++)
                nc_strlist_add(&dst->regions, src->regions.v[i]);
        dst->ca_file = dup_or_null(src->ca_file);
        dst->client_cert = dup_or_null(src->client_cert);
        dst->client_key = dup_or_null(src->client_key);
}

static wh_partner_t *partner_find(wh_t *w, const char *id)
{
        wh_partner_t *p;

        for (p = w->partners; p; p = p->next)
                if (!strcmp(p->cfg.id, id))
                        return p;
        return NULL;
}

/* A new partner starts with a full bucket (one second's worth).  A reload keeps what the
 * bucket holds (it is no refill: a SIGHUP must not buy a burst), clamped to the new size. */
static void rate_limit_apply(wh_partner_t *p, int fresh, int64_t now)
{
        double burst = wh_rate_burst(p->cfg.rate_limit);

        if (fresh || p->tokens_ms == 0) {
                p->tokens = burst;
                p->tokens_ms = now;
        } else if (p->tokens > burst) {
                p->tokens = burst;
        }
}

/* The signer of every partner of CFG (keyed with its secrets), its mTLS key's mode checked;
 * NULL and ERRSTR if one of them fails (nothing is left allocated). */
static nc_signer_t *signers_load(const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        nc_signer_t *signers = nc_xcalloc(cfg->partners_n ? cfg->partners_n : 1, sizeof(*signers));
        const char *path = cfg->path ? cfg->path : "config";
        nc_secrets_t secrets;
        char err[512];
        size_t made; /* signers made so far */

        for (made = 0; made < cfg->partners_n; made++) {
                const nc_partner_t *c = &cfg->partners[made];

                nc_secrets_init(&secrets);
                if (nc_secrets_load_file(&secrets, c->secret_file, err, sizeof(err)) != 0 ||
                    nc_signer_init(&signers[made], &secrets, err, sizeof(err)) != 0) {
                        nc_err(errstr, errstr_size, "%s:%d: partner.%s.secret_file: %s", path,
                               c->secret_file_line, c->id, err);
                        nc_secrets_clear(&secrets);
                        goto fail;
                }
                nc_secrets_clear(&secrets); /* the signer holds the keys from now on */
                /* curl reads the mTLS key itself: check its mode here, like the secrets. */
                if (c->client_key && nc_secret_file_check(c->client_key, err, sizeof(err)) != 0) {
                        nc_err(errstr, errstr_size, "%s:%d: partner.%s.client_key: %s", path,
                               c->line, c->id, err);
                        made++;
                        goto fail;
                }
        }
        return signers;
fail:
        while (made--)
                nc_signer_free(&signers[made]);
        free(signers);
        return NULL;
}

/* ---- metrics ----------------------------------------------------------------------------- */

/* The final outcomes of a (notice, partner) delivery (the deliveries counter); the others
 * (retry, deferred) are steps on the way. */
static int outcome_final(enum wh_outcome o)
{
        return o == WH_OUTCOME_DELIVERED || o == WH_OUTCOME_DLQ || o == WH_OUTCOME_DISABLED;
}

/* Every outcome series of partner P at 0 (added to, never reset: a reload keeps the counts),
 * and its disabled gauge. */
static void metrics_partner(wh_t *w, const wh_partner_t *p)
{
        static const enum wh_outcome all[] = {WH_OUTCOME_DELIVERED, WH_OUTCOME_RETRY,
                                              WH_OUTCOME_DLQ, WH_OUTCOME_DISABLED};
        char l[NC_METRICS_LABELS_SIZE];
        size_t i;

        for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
                if (nc_metrics_labels(l, sizeof(l), "partner", p->cfg.id, "outcome",
                                      wh_outcome_name(all[i]), NULL) != 0)
                        continue;
                nc_metrics_inc(w->m_attempts, l, 0);
                if (outcome_final(all[i]))
                        nc_metrics_inc(w->m_deliveries, l, 0);
        }
        if (nc_metrics_labels(l, sizeof(l), "partner", p->cfg.id, NULL) == 0) {
                nc_metrics_inc(w->m_deferred, l, 0);
                nc_metrics_inc(w->m_skipped, l, 0);
                nc_metrics_touch(w->m_latency, l);
                nc_metrics_set(w->m_disabled, l, p->disabled ? 1 : 0);
        }
}

void wh_metrics_init(wh_t *w)
{
        wh_partner_t *p;

        nc_metrics_standard(w->metrics, "noticecast-webhooks", NC_VERSION);
        w->m_attempts = nc_metrics_counter(w->metrics, "noticecast_webhook_attempts_total",
                                           "Webhook HTTP attempts by partner and outcome.");
        w->m_deferred =
            nc_metrics_counter(w->metrics, "noticecast_webhook_deferred_total",
                               "Deliveries parked for later without an attempt (partner backlog "
                               "full, daemon stopping).");
        w->m_disabled = nc_metrics_gauge(w->metrics, "noticecast_webhook_partner_disabled",
                                         "1 while a partner is disabled (it answered 410 Gone) "
                                         "until the next reload.");
        for (p = w->partners; p; p = p->next)
                if (!p->removed)
                        metrics_partner(w, p);
}

/* Partner C (of a new configuration) takes SIGNER: a known partner keeps its queues and its
 * bucket, a new one starts empty. */
static void partner_update(wh_t *w, const nc_partner_t *c, nc_signer_t signer)
{
        wh_partner_t *p;
        int fresh = 0;

        if (!(p = partner_find(w, c->id))) {
                p = nc_xcalloc(1, sizeof(*p));
                TAILQ_INIT(&p->queue);
                TAILQ_INIT(&p->running);
                p->next = w->partners;
                w->partners = p;
                fresh = 1;
        } else {
                easy_pool_clear(p); /* their options came from the old settings */
                nc_config_partner_free(&p->cfg);
                if (p->disabled) {
                        nc_log_fields_t f = {0};

                        nc_log_field(&f, "partner", c->id);
                        nc_log_f(NC_LOG_INFO, &f, "partner re-enabled by the configuration reload");
                }
        }
        partner_cfg_copy(&p->cfg, c);
        nc_signer_free(&p->signer);
        p->signer = signer;
        p->removed = 0;
        p->disabled = 0;
        rate_limit_apply(p, fresh, nc_time_now_ms());
        if (w->metrics)
                metrics_partner(w, p);
        if (!p->cfg.tls_verify) {
                nc_log_fields_t f = {0};

                nc_log_field(&f, "partner", p->cfg.id);
                nc_log_f(NC_LOG_WARN, &f,
                         "TLS VERIFICATION IS OFF (tls_verify = false): the partner's "
                         "deliveries can be read and forged by anyone on the path");
        }
}

/* Loads every partner's secrets first, then swaps: a bad file leaves the old set intact. */
int wh_partners_apply(wh_t *w, const nc_config_t *cfg, char *errstr, size_t errstr_size)
{
        nc_signer_t *signers = signers_load(cfg, errstr, errstr_size);
        wh_partner_t *p;
        size_t i;

        if (!signers)
                return -1;
        for (p = w->partners; p; p = p->next)
                p->removed = 1;
        for (i = 0; i < cfg->partners_n; i++)
                partner_update(w, &cfg->partners[i], signers[i]);
        free(signers);
        /* A partner no longer configured is not disabled any more (nothing is sent to it):
         * its alert must not go on firing. */
        for (p = w->partners; p && w->m_disabled; p = p->next) {
                char l[NC_METRICS_LABELS_SIZE];

                if (p->removed && nc_metrics_labels(l, sizeof(l), "partner", p->cfg.id, NULL) == 0)
                        nc_metrics_set(w->m_disabled, l, 0);
        }
        return 0;
}

void wh_partners_free(wh_t *w)
{
        wh_partner_t *p, *next;

        for (p = w->partners; p; p = next) {
                next = p->next;
                easy_pool_clear(p);
                free(p->idle);
                nc_config_partner_free(&p->cfg);
                nc_signer_free(&p->signer);
                free(p);
        }
        w->partners = NULL;
}

/* ---- matching and payloads ------------------------------------------------------------- */

static int partner_matches(const wh_partner_t *p, const wh_msg_t *m)
{
        json_t *regions, *r;
        size_t i;

        if (p->removed || !p->cfg.enabled)
                return 0;
        if (p->cfg.categories.n && !nc_strlist_has(&p->cfg.categories, m->category))
                return 0;
        /* A withdrawal has no regions: every partner of the category hears of it. */
        regions = json_object_get(m->data, "regions");
        if (!p->cfg.regions.n || m->withdrawn || !json_array_size(regions))
                return 1;
        json_array_foreach(regions, i, r)
                if (nc_strlist_has(&p->cfg.regions, json_string_value(r)))
                        return 1;
        return 0;
}

/* ---- jobs ------------------------------------------------------------------------------ */

static wh_job_t *job_new(wh_msg_t *m, wh_partner_t *p, int attempt)
{
        wh_job_t *j = nc_xcalloc(1, sizeof(*j));

        j->msg = m;
        j->partner = p;
        j->attempt = attempt;
        j->retry_after_ms = -1;
        nc_webhook_id(m->id, p->cfg.id, m->event, j->webhook_id);
        m->pending++;
        return j;
}

/* The body is built at the first attempt, not when the job is queued: a backlog of queued
 * jobs costs no memory for bodies, and a shared format's body is built once per notice. */
static void job_body(wh_job_t *j)
{
        const wh_format_t *f = wh_format_get(j->partner->cfg.format);
        wh_msg_t *m = j->msg;

        if (j->body)
                return;
        if (f->shared && (!m->shared_body || m->shared_format == f)) {
                if (!m->shared_body) {
                        m->shared_body = f->body(m, j->webhook_id, &m->shared_body_len);
                        m->shared_format = f;
                }
                j->body = m->shared_body;
                j->body_len = m->shared_body_len;
        } else {
                /* per partner, or a second shared format for this notice: its own copy */
                j->body = f->body(m, j->webhook_id, &j->body_len);
                j->body_owned = 1;
        }
}

static void job_free(wh_job_t *j)
{
        if (j->body_owned)
                free(j->body);
        free(j);
}

void wh_job_settle_one(wh_t *w, wh_job_t *j)
{
        if (--j->pending_produces > 0 || !j->outcome_done)
                return;
        wh_msg_settle_one(w, j->msg);
        job_free(j);
}

void wh_delivery_count(wh_t *w, const char *partner, enum wh_outcome outcome)
{
        char l[NC_METRICS_LABELS_SIZE];

        if (outcome == WH_OUTCOME_DEFERRED) {
                if (nc_metrics_labels(l, sizeof(l), "partner", partner, NULL) == 0)
                        nc_metrics_inc(w->m_deferred, l, 1);
        } else if (outcome_final(outcome) &&
                   nc_metrics_labels(l, sizeof(l), "partner", partner, "outcome",
                                     wh_outcome_name(outcome), NULL) == 0) {
                nc_metrics_inc(w->m_deliveries, l, 1);
        }
}

/* The outcome of one attempt: counted, and logged (debug: one line per attempt). */
static void count_attempt(wh_t *w, const wh_job_t *j, enum wh_outcome outcome, long status,
                          const char *error)
{
        char l[NC_METRICS_LABELS_SIZE];
        nc_log_fields_t f = {0};

        if (nc_metrics_labels(l, sizeof(l), "partner", j->partner->cfg.id, "outcome",
                              wh_outcome_name(outcome), NULL) == 0)
                nc_metrics_inc(w->m_attempts, l, 1);
        if (nc_log_get_level() > NC_LOG_DEBUG)
                return;
        wh_log_fields(&f, j->msg, j->partner->cfg.id);
        nc_log_field(&f, "webhook_id", j->webhook_id);
        nc_log_field_int(&f, "attempt", j->attempt);
        nc_log_field(&f, "outcome", wh_outcome_name(outcome));
        if (status > 0)
                nc_log_field_int(&f, "status", status);
        nc_log_field(&f, "reason", outcome == WH_OUTCOME_DELIVERED ? NULL : error);
        nc_log_f(NC_LOG_DEBUG, &f, "attempt %s", wh_outcome_name(outcome));
}

/* Records the outcome of one attempt: an event always, plus a retry or DLQ record.  The job
 * settles when all of them are acknowledged. */
static void job_finish(wh_t *w, wh_job_t *j, enum wh_outcome outcome, long status,
                       const char *error, wh_produce_t *park)
{
        double latency = j->start_ms ? (double)(nc_time_now_ms() - j->start_ms) : 0;
        wh_produce_t *ev = wh_event_record(w, j, outcome, status, error, latency);

        wh_delivery_count(w, j->partner->cfg.id, outcome);
        j->pending_produces = park ? 2 : 1;
        j->outcome_done = 1;
        ev->job = j;
        wh_produce_record(w, ev);
        if (park) {
                park->job = j;
                wh_produce_record(w, park);
        }
}

/* A random number for the retry jitter. */
static uint32_t rnd32(void)
{
        uint32_t r = 0;

        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
                r = (uint32_t)nc_time_now_ms();
        return r;
}

static int64_t jitter(int64_t ms)
{
        return wh_policy_jitter(ms, rnd32());
}

static void job_dlq(wh_t *w, wh_job_t *j, enum wh_outcome outcome, long status, const char *error)
{
        char reason[600];

        snprintf(reason, sizeof(reason), "partner %s: %s", j->partner->cfg.id, error);
        job_finish(w, j, outcome, status, error,
                   wh_dlq_record(w, j->msg, j->partner->cfg.id, reason));
}

/* A partner answered 410 Gone: it is off until the next reload, and what it had queued goes
 * to the DLQ (replayable once the agency is back). */
static void partner_disable(wh_t *w, wh_partner_t *p)
{
        char l[NC_METRICS_LABELS_SIZE];
        nc_log_fields_t f = {0};
        wh_job_t *j;

        if (p->disabled)
                return;
        p->disabled = 1;
        nc_log_field(&f, "partner", p->cfg.id);
        nc_log_f(NC_LOG_WARN, &f,
                 "partner answered 410 Gone: disabled until the configuration is reloaded");
        if (nc_metrics_labels(l, sizeof(l), "partner", p->cfg.id, NULL) == 0)
                nc_metrics_set(w->m_disabled, l, 1);
        while ((j = TAILQ_FIRST(&p->queue))) {
                TAILQ_REMOVE(&p->queue, j, link);
                p->queued--;
                job_dlq(w, j, WH_OUTCOME_DISABLED, 0, "partner disabled after 410 Gone");
        }
}

/* Carries out decision D (of wh_policy.h) for the attempt of J that ended with STATUS and
 * ERROR. */
static void job_apply(wh_t *w, wh_job_t *j, const wh_decision_t *d, long status, const char *error)
{
        wh_partner_t *p = j->partner;
        char reason[512];

        count_attempt(w, j, d->outcome, status, error);
        switch (d->outcome) {
        case WH_OUTCOME_DELIVERED:
                /* Remembered now: its event may not reach the brokers for a while. */
                wh_delivered_add(w, j->webhook_id);
                job_finish(w, j, d->outcome, status, NULL, NULL);
                return;
        case WH_OUTCOME_RETRY:
                job_finish(w, j, d->outcome, status, error,
                           wh_retry_record(w, j->msg, p->cfg.id, j->attempt + 1,
                                           nc_time_now_ms() + d->delay_ms, d->tier));
                return;
        case WH_OUTCOME_DLQ:
                if (!d->exhausted) {
                        job_dlq(w, j, d->outcome, status, error);
                        return;
                }
                snprintf(reason, sizeof(reason),
                         "partner %s: retries exhausted after %d attempts: %s", p->cfg.id,
                         j->attempt, error);
                job_finish(w, j, d->outcome, status, error,
                           wh_dlq_record(w, j->msg, p->cfg.id, reason));
                return;
        case WH_OUTCOME_DISABLED:
                job_dlq(w, j, d->outcome, status, error);
                partner_disable(w, p);
                return;
        case WH_OUTCOME_DEFERRED:
                break; /* not a decision: parking without an attempt is job_enqueue's */
        }
        fatalx("job_apply: no action for outcome %s", wh_outcome_name(d->outcome));
}

/* Parks J for its next attempt, or sends it to the DLQ when the schedule is exhausted. */
static void job_retry_or_dlq(wh_t *w, wh_job_t *j, long status, const char *error)
{
        wh_decision_t d = wh_policy_retry(&w->cfg.webhooks, j->attempt, j->retry_after_ms, rnd32());

        job_apply(w, j, &d, status, error);
}

/* The (notice, partner, event) of J was delivered already (by us before an outage or a
 * rebalance, or recorded so by another instance): J ends here, unsent and unrecorded. */
static int job_skip_delivered(wh_t *w, wh_job_t *j)
{
        char l[NC_METRICS_LABELS_SIZE];

        if (!wh_delivered_has(w, j->webhook_id))
                return 0;
        if (nc_log_get_level() <= NC_LOG_DEBUG) {
                nc_log_fields_t f = {0};

                wh_log_fields(&f, j->msg, j->partner->cfg.id);
                nc_log_field(&f, "webhook_id", j->webhook_id);
                nc_log_f(NC_LOG_DEBUG, &f, "delivered already: not sent again");
        }
        if (nc_metrics_labels(l, sizeof(l), "partner", j->partner->cfg.id, NULL) == 0)
                nc_metrics_inc(w->m_skipped, l, 1);
        j->outcome_done = 1;
        j->pending_produces = 1;
        wh_job_settle_one(w, j);
        return 1;
}

/* Queues a job, or parks it at once when the partner is overwhelmed: a partner that times
 * out on everything must not make us hold an unbounded backlog (nor stall the others). */
static void job_enqueue(wh_t *w, wh_job_t *j)
{
        wh_partner_t *p = j->partner;

        if (job_skip_delivered(w, j))
                return;
        if (p->disabled) {
                job_dlq(w, j, WH_OUTCOME_DISABLED, 0, "partner disabled after 410 Gone");
                return;
        }
        if (p->queued >= w->cfg.webhooks.max_pending) {
                job_finish(w, j, WH_OUTCOME_DEFERRED, 0, "partner backlog full",
                           wh_retry_record(w, j->msg, p->cfg.id, j->attempt,
                                           nc_time_now_ms() + jitter(w->cfg.webhooks.retry_ms[0]),
                                           0));
                return;
        }
        TAILQ_INSERT_TAIL(&p->queue, j, link);
        p->queued++;
}

void wh_dispatch(wh_t *w, wh_msg_t *m)
{
        wh_partner_t *p;

        if (m->is_retry) {
                p = partner_find(w, m->partner);
                if (!p || p->removed) {
                        char reason[200];

                        snprintf(reason, sizeof(reason), "partner %s is no longer configured",
                                 m->partner);
                        wh_delivery_count(w, m->partner, WH_OUTCOME_DLQ);
                        wh_msg_quarantine(w, m, m->partner, reason);
                        return;
                }
                job_enqueue(w, job_new(m, p, m->attempt));
                return;
        }
        for (p = w->partners; p; p = p->next)
                if (partner_matches(p, m))
                        job_enqueue(w, job_new(m, p, 1));
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static size_t on_header(char *buf, size_t size, size_t n, void *opaque)
{
        wh_job_t *j = opaque;
        size_t len = size * n;

        if (len > 12 && !strncasecmp(buf, "Retry-After:", 12)) {
                int64_t ra = wh_policy_retry_after(buf + 12, len - 12, nc_time_now_ms());

                if (ra >= 0)
                        j->retry_after_ms = ra;
        }
        return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *opaque)
{
        wh_job_t *j = opaque;
        size_t len = size * n, room = sizeof(j->response) - 1 - j->response_len;

        if (room) {
                if (len < room)
                        room = len;
                memcpy(j->response + j->response_len, buf, room);
                j->response_len += room;
                j->response[j->response_len] = '\0';
        }
        return len;
}

/* Sizes of the rewritable header lines: name + the longest value + NUL. */
#define H_ID_SIZE  (sizeof("webhook-id: ") + NC_WEBHOOK_ID_SIZE)
#define H_TS_SIZE  (sizeof("webhook-timestamp: ") + 24)
#define H_SIG_SIZE (sizeof("webhook-signature: ") + NC_WEBHOOK_SIG_SIZE)

/* Appends a header line whose buffer can later hold SIZE bytes; returns that buffer. */
static char *header_slot(struct curl_slist **list, const char *name, size_t size)
{
        char *line = nc_xmalloc(size), *data;
        struct curl_slist *l, *last;

        /* Filled with a placeholder value so that libcurl's copy has the full size. */
        memset(line, 'x', size - 1);
        line[size - 1] = '\0';
        memcpy(line, name, strlen(name));
        l = curl_slist_append(*list, line);
        free(line);
        if (!l)
                return NULL;
        *list = l;
        for (last = l; last->next; last = last->next)
                ;
        data = last->data;
        data[strlen(name)] = '\0';
        return data;
}

static void conn_free(wh_conn_t *c)
{
        if (!c)
                return;
        curl_easy_cleanup(c->easy);
        curl_slist_free_all(c->hdrs);
        free(c);
}

/* A handle set up once for its partner: only the body, three header values and the job
 * change per request, and its connection stays alive in the multi handle's cache. */
static wh_conn_t *conn_get(wh_partner_t *p)
{
        const nc_partner_t *c = &p->cfg;
        char ctype[128];
        wh_conn_t *k;
        CURL *e;

        if (p->idle_n)
                return p->idle[--p->idle_n];
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", wh_format_get(c->format)->content_type);
        k = nc_xcalloc(1, sizeof(*k));
        if (!(k->easy = e = curl_easy_init()) ||
            !(k->h_id = header_slot(&k->hdrs, "webhook-id: ", H_ID_SIZE)) ||
            !(k->h_ts = header_slot(&k->hdrs, "webhook-timestamp: ", H_TS_SIZE)) ||
            !(k->h_sig = header_slot(&k->hdrs, "webhook-signature: ", H_SIG_SIZE)) ||
            !(k->hdrs = curl_slist_append(k->hdrs, ctype)) ||
            /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
            !(k->hdrs = curl_slist_append(k->hdrs, "Expect:"))) {
                conn_free(k);
                return NULL;
        }
        curl_easy_setopt(e, CURLOPT_URL, c->url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "noticecast/" NC_VERSION);
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an answer, not a hop */
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)(c->timeout_ms < 5000 ? c->timeout_ms : 5000));
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
        if (c->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
        if (c->client_cert) {
                curl_easy_setopt(e, CURLOPT_SSLCERT, c->client_cert);
                curl_easy_setopt(e, CURLOPT_SSLKEY, c->client_key);
        }
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->hdrs);
        return k;
}

static void conn_put(wh_partner_t *p, wh_conn_t *k)
{
        if (p->idle_n == p->idle_cap) {
                p->idle_cap = p->idle_cap ? p->idle_cap * 2 : 8;
                p->idle = nc_xrealloc(p->idle, p->idle_cap * sizeof(*p->idle));
        }
        p->idle[p->idle_n++] = k;
}

static void easy_pool_clear(wh_partner_t *p)
{
        while (p->idle_n)
                conn_free(p->idle[--p->idle_n]);
}

static int job_start(wh_t *w, wh_job_t *j)
{
        char sig[NC_WEBHOOK_SIG_SIZE];
        int64_t now = nc_time_now_ms();
        wh_conn_t *k = conn_get(j->partner);
        CURL *e;

        if (!k)
                return -1;
        e = k->easy;
        job_body(j);
        /* Re-signed on every attempt: the timestamp is part of what is signed. */
        if (nc_signer_sign(&j->partner->signer, j->webhook_id, now / 1000, j->body, j->body_len,
                           sig, sizeof(sig)) != 0) {
                conn_put(j->partner, k);
                return -1;
        }
        snprintf(k->h_id, H_ID_SIZE, "webhook-id: %s", j->webhook_id);
        snprintf(k->h_ts, H_TS_SIZE, "webhook-timestamp: %lld", (long long)(now / 1000));
        snprintf(k->h_sig, H_SIG_SIZE, "webhook-signature: %s", sig);

        curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
        curl_easy_setopt(e, CURLOPT_PRIVATE, j);
        j->errbuf[0] = '\0';
        j->response_len = 0;
        j->response[0] = '\0';
        j->retry_after_ms = -1;
        j->start_ms = now;
        j->conn = k;
        if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
                conn_put(j->partner, k);
                j->conn = NULL;
                return -1;
        }
        j->partner->in_flight++;
        TAILQ_INSERT_TAIL(&j->partner->running, j, link);
        return 0;
}

double wh_rate_burst(double rate)
{
        return rate <= 0 ? 0 : rate < 1 ? 1 : rate;
}

/* Token bucket: RATE tokens per second, burst of one second's worth. */
static int take_token(wh_partner_t *p, int64_t now)
{
        double burst = wh_rate_burst(p->cfg.rate_limit);

        if (p->cfg.rate_limit <= 0) {
                p->tokens_ms = now;
                return 1;
        }
        if (now > p->tokens_ms)
                p->tokens += (double)(now - p->tokens_ms) * p->cfg.rate_limit / 1000.0;
        p->tokens_ms = now;
        if (p->tokens > burst)
                p->tokens = burst;
        if (p->tokens < 1)
                return 0;
        p->tokens -= 1;
        return 1;
}

/* Starts queued jobs within each partner's in-flight and rate limits. */
void wh_deliver_pump(wh_t *w)
{
        int64_t now = nc_time_now_ms();
        wh_partner_t *p;
        wh_job_t *j;

        for (p = w->partners; p; p = p->next) {
                while (p->in_flight < p->cfg.max_in_flight && (j = TAILQ_FIRST(&p->queue))) {
                        if (!take_token(p, now)) {
                                int64_t next = now + (int64_t)ceil(1000.0 / p->cfg.rate_limit);

                                if (w->next_timer_ms == 0 || next < w->next_timer_ms)
                                        w->next_timer_ms = next;
                                break;
                        }
                        TAILQ_REMOVE(&p->queue, j, link);
                        p->queued--;
                        if (job_skip_delivered(w, j))
                                continue; /* learned meanwhile: its token is spent, no matter */
                        if (job_start(w, j) != 0)
                                job_retry_or_dlq(w, j, 0, "cannot start the HTTP request");
                }
        }
        nc_metrics_set(w->m_inflight, NULL, (double)wh_in_flight(w));
}

size_t wh_in_flight(const wh_t *w)
{
        const wh_partner_t *p;
        size_t n = 0;

        for (p = w->partners; p; p = p->next)
                n += (size_t)p->in_flight + (size_t)p->queued;
        return n;
}

/* The request of J is over: its handle goes back to the partner's pool. */
static void job_detach(wh_t *w, wh_job_t *j, long *status)
{
        wh_partner_t *p = j->partner;
        char l[NC_METRICS_LABELS_SIZE];

        curl_easy_getinfo(j->conn->easy, CURLINFO_RESPONSE_CODE, status);
        curl_multi_remove_handle(w->multi, j->conn->easy);
        conn_put(p, j->conn);
        j->conn = NULL;
        p->in_flight--;
        TAILQ_REMOVE(&p->running, j, link);
        if (nc_metrics_labels(l, sizeof(l), "partner", p->cfg.id, NULL) == 0)
                nc_metrics_observe(w->m_latency, l,
                                   (double)(nc_time_now_ms() - j->start_ms) / 1000.0);
}

static void job_done(wh_t *w, wh_job_t *j, CURLcode res)
{
        char error[512];
        wh_decision_t d;
        long status = 0;

        job_detach(w, j, &status);
        d = wh_policy_decide(&w->cfg.webhooks, res, status, j->attempt, j->retry_after_ms, rnd32());
        if (res != CURLE_OK) {
                snprintf(error, sizeof(error), "%s",
                         j->errbuf[0] ? j->errbuf : curl_easy_strerror(res));
                status = 0; /* no answer */
        } else if (d.outcome != WH_OUTCOME_DELIVERED) {
                wh_policy_http_error(status, j->response, error, sizeof(error));
        }
        job_apply(w, j, &d, status, error);
}

void wh_deliver_completed(wh_t *w)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(w->multi, &left))) {
                wh_job_t *j;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
                job_done(w, j, msg->data.result);
        }
}

size_t wh_deliver_park_all(wh_t *w)
{
        int64_t now = nc_time_now_ms();
        wh_partner_t *p;
        wh_job_t *j;
        size_t n = 0;

        for (p = w->partners; p; p = p->next) {
                while ((j = TAILQ_FIRST(&p->running))) {
                        /* Interrupted: the partner may have it (same webhook-id next time). */
                        TAILQ_REMOVE(&p->running, j, link);
                        curl_multi_remove_handle(w->multi, j->conn->easy);
                        conn_free(j->conn);
                        j->conn = NULL;
                        p->in_flight--;
                        job_finish(w, j, WH_OUTCOME_DEFERRED, 0,
                                   "daemon stopping: attempt interrupted",
                                   wh_retry_record(w, j->msg, p->cfg.id, j->attempt, now, 0));
                        n++;
                }
                while ((j = TAILQ_FIRST(&p->queue))) {
                        TAILQ_REMOVE(&p->queue, j, link);
                        p->queued--;
                        job_finish(w, j, WH_OUTCOME_DEFERRED, 0, "daemon stopping: parked",
                                   wh_retry_record(w, j->msg, p->cfg.id, j->attempt, now, 0));
                        n++;
                }
        }
        nc_metrics_set(w->m_inflight, NULL, (double)wh_in_flight(w));
        return n;
}

void wh_deliver_abandon(wh_t *w)
{
        wh_partner_t *p;
        wh_job_t *j;

        for (p = w->partners; p; p = p->next) {
                while ((j = TAILQ_FIRST(&p->queue))) {
                        TAILQ_REMOVE(&p->queue, j, link);
                        p->queued--;
                        job_free(j);
                }
                while ((j = TAILQ_FIRST(&p->running))) {
                        TAILQ_REMOVE(&p->running, j, link);
                        curl_multi_remove_handle(w->multi, j->conn->easy);
                        conn_free(j->conn);
                        p->in_flight--;
                        job_free(j);
                }
        }
}
