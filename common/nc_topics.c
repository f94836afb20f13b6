#include "nc_topics.h"

#include <stdio.h>
#include <string.h>

/* Named as the topics are: <prefix><name>[.<category or step>]. */
static const char *const kind_names[NC_TOPIC_KINDS] = {
    [NC_TOPIC_NOTICES] = "notices",
    [NC_TOPIC_SUBSCRIBERS] = "subscribers",
    [NC_TOPIC_DLQ] = "dlq",
    [NC_TOPIC_DELIVERIES] = "deliveries",
    [NC_TOPIC_WEBHOOKS_RETRY] = "webhooks.retry",
    [NC_TOPIC_MAILER_PLAN] = "mailer.plan",
    [NC_TOPIC_MAILER_JOBS] = "mailer.jobs",
};

const char *nc_topics_kind_name(nc_topic_kind_t kind)
{
        return kind < NC_TOPIC_KINDS ? kind_names[kind] : "?";
}

void nc_topics_name(const nc_config_t *cfg, nc_topic_kind_t kind, char *buf, size_t size)
{
        snprintf(buf, size, "%s%s", cfg->topic_prefix, nc_topics_kind_name(kind));
}

void nc_topics_retry_name(const nc_config_t *cfg, int64_t step_ms, char *buf, size_t size)
{
        char label[32];

        nc_duration_format(step_ms, label, sizeof(label));
        snprintf(buf, size, "%swebhooks.retry.%s", cfg->topic_prefix, label);
}

/* The settings of KIND: [topics] <kind>_partitions and _retention.  mailer.plan has one
 * partition: the planner is the member of the mailers' group that is assigned it, so that
 * exactly one mailer plans the digests; a second partition would elect a second planner and
 * every digest would be sent twice.  The compacted kinds have no retention: what is
 * compacted away is what a later record with the same key replaced. */
static void spec_init(const nc_config_t *cfg, nc_topic_kind_t kind, nc_topic_spec_t *t)
{
        const nc_topic_settings_t *s = &cfg->topic[kind];

        memset(t, 0, sizeof(*t));
        t->kind = kind;
        t->partitions = s->partitions ? s->partitions : cfg->partitions;
        t->retention_ms = s->retention_ms;
        if (kind == NC_TOPIC_SUBSCRIBERS || kind == NC_TOPIC_MAILER_PLAN) {
                t->compact = 1;
                t->retention_ms = 0;
        }
        /* A mailer started later than this after an unsubscribe no longer sees its tombstone,
         * so it cannot tell a replayed confirmation link of the ended subscription
         * (consumer/mailer/web.c): longer than any confirm_expiry in use (48 h by default). */
        if (kind == NC_TOPIC_SUBSCRIBERS)
                t->delete_retention_ms = NC_TOPICS_SUBSCRIBERS_TOMBSTONE_MS;
        if (kind == NC_TOPIC_MAILER_PLAN)
                t->partitions = 1;
}

static int has_name(const nc_topic_spec_t *specs, size_t n, size_t max, const char *name)
{
        for (size_t i = 0; i < n && i < max; i++)
                if (!strcmp(specs[i].name, name))
                        return 1;
        return 0;
}

/* Adds the topic(s) of KIND at SPECS[N...]; returns the new count. */
static size_t add_kind(const nc_config_t *cfg, nc_topic_kind_t kind, nc_topic_spec_t *specs,
                       size_t n, size_t max)
{
        nc_topic_spec_t t;
        size_t i;

        spec_init(cfg, kind, &t);
        if (kind == NC_TOPIC_NOTICES) {
                for (i = 0; i < cfg->categories.n; i++, n++) {
                        nc_config_notice_topic(cfg, cfg->categories.v[i], t.name, sizeof(t.name));
                        if (n < max)
                                specs[n] = t;
                }
                return n;
        }
        if (kind == NC_TOPIC_WEBHOOKS_RETRY) {
                /* One tier per distinct step: "1s, 1s, 5m" has two. */
                for (i = 0; i < cfg->webhooks.retry_n; i++) {
                        nc_topics_retry_name(cfg, cfg->webhooks.retry_ms[i], t.name,
                                             sizeof(t.name));
                        if (has_name(specs, n, max, t.name))
                                continue;
                        if (n < max)
                                specs[n] = t;
                        n++;
                }
                return n;
        }
        nc_topics_name(cfg, kind, t.name, sizeof(t.name));
        if (n < max)
                specs[n] = t;
        return n + 1;
}

size_t nc_topics_specs(const nc_config_t *cfg, unsigned kinds, nc_topic_spec_t *specs, size_t max)
{
        size_t n = 0;

        for (int k = 0; k < NC_TOPIC_KINDS; k++)
                if (kinds & NC_TOPICS_KIND(k))
                        n = add_kind(cfg, (nc_topic_kind_t)k, specs, n, max);
        return n;
}

const char *nc_topics_policy(const nc_topic_spec_t *t)
{
        return t->compact ? "compact" : "delete";
}

void nc_topics_retention_format(int64_t ms, char *buf, size_t size)
{
        if (ms == 0)
                snprintf(buf, size, "-");
        else
                nc_retention_format(ms, buf, size);
}
