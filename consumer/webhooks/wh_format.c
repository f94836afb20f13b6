/* noticecast-webhooks: webhook payload formats (see wh_format.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc_log.h"
#include "nc_time.h"
#include "wh.h"
#include "wh_format.h"

static char *dump(json_t *o, size_t *len)
{
        char *s = json_dumps(o, JSON_COMPACT);

        json_decref(o);
        *len = strlen(s);
        return s;
}

/* {"type", "timestamp", "data"}: the same for every partner. */
static char *standard_body(const wh_msg_t *m, const char *webhook_id, size_t *len)
{
        char ts[40];

        (void)webhook_id;
        nc_time_format_rfc3339(m->event_ms, ts, sizeof(ts));
        return dump(
            json_pack("{s:s, s:s, s:O}", "type", m->event, "timestamp", ts, "data", m->data), len);
}

/* CloudEvents 1.0, structured mode: its id is the webhook-id, so one body per partner. */
static char *cloudevents_body(const wh_msg_t *m, const char *webhook_id, size_t *len)
{
        char ts[40], type[80], source[128];

        nc_time_format_rfc3339(m->event_ms, ts, sizeof(ts));
        snprintf(type, sizeof(type), "gov.noticecast.%s", m->event);
        snprintf(source, sizeof(source), "/noticecast/%s", m->category);
        return dump(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O}", "specversion", "1.0",
                              "id", webhook_id, "source", source, "type", type, "subject", m->id,
                              "time", ts, "datacontenttype", "application/json", "data", m->data),
                    len);
}

static const wh_format_t format_standard = {
    .name = "standard",
    .content_type = "application/json",
    .shared = 1,
    .body = standard_body,
};

static const wh_format_t format_cloudevents = {
    .name = "cloudevents",
    .content_type = "application/cloudevents+json",
    .shared = 0,
    .body = cloudevents_body,
};

const wh_format_t *wh_format_get(enum nc_webhook_format f)
{
        switch (f) {
        case NC_FORMAT_STANDARD:
                return &format_standard;
        case NC_FORMAT_CLOUDEVENTS:
                return &format_cloudevents;
        }
        fatalx("wh_format_get: unknown webhook format %d", (int)f);
}
