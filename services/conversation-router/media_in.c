/*
 * media_in.c - the attachments of an inbound message, captured with it (proto/router.md#media).
 *
 * Meta's webhook carries an attachment as {"type", "payload": {"url"}}, the URL pointing at
 * Meta's CDN, signed and short-lived. Of image, video, audio and file the router keeps the
 * bytes: the attachment becomes a row, pending, with its URL sealed, and the media worker
 * (media_fetch.c) downloads it promptly. A story mention's media must not be stored (Meta's
 * terms): its row is a reference, the URL sealed until the story expires 24 hours after
 * Meta's timestamp, then forgotten. The sealed body of the message then carries such an
 * attachment as {"type", "attachment_id"} only, so no URL stays in it.
 *
 * The rows are inserted in the message's transaction, selected from the message just
 * inserted under its new id: a message already held (Meta's duplicate, a redelivery) keeps
 * the id it had, so its attachments are not inserted twice. Events without attachments never
 * reach here (inbound_media_plan() leaves n at 0 and allocates nothing).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "inbound.h"
#include "router.h"

/* The kinds whose bytes are downloaded. */
static bool downloaded(const char *type)
{
    static const char *const kinds[] = {"image", "video", "audio", "file"};

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(type, kinds[i]) == 0)
            return true;
    }
    return false;
}

void inbound_media_plan(const struct inbound_event *ev, struct inbound_media *m)
{
    const cJSON *msg, *atts, *a;
    int position = 0;

    m->n = 0;
    if (ev->event == NULL || ev->kind == NULL ||
        (strcmp(ev->kind, "message") != 0 && strcmp(ev->kind, "echo") != 0))
        return;
    msg = cJSON_GetObjectItemCaseSensitive(ev->event, "message");
    atts = cJSON_GetObjectItemCaseSensitive(msg, "attachments");
    if (!cJSON_IsArray(atts))
        return;
    cJSON_ArrayForEach(a, atts)
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "type"));
        const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(a, "payload"), "url"));
        bool reference = type != NULL && strcmp(type, "story_mention") == 0;

        /* A sticker is an image with a sticker_id: a picture of Meta's, not the person's. */
        if (type != NULL && url != NULL && m->n < INBOUND_MEDIA_MAX && url[0] != '\0' &&
            (reference || downloaded(type)) &&
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "payload"),
                                             "sticker_id") == NULL) {
            router_new_id("att", m->a[m->n].id);
            m->a[m->n].type = type;
            m->a[m->n].url = url;
            m->a[m->n].position = position;
            m->a[m->n].reference = reference;
            m->n++;
        }
        position++;
    }
}

/* clang-format off */
static const char insert_sql[] =
    "INSERT INTO attachments (id, message_id, conversation_id, workspace_id, integration_id,"
    " position, direction, type, state, source_sealed, due_at)"
    " SELECT $1::text, m.id, m.conversation_id, m.workspace_id, m.integration_id, $3::int,"
    " 'in', $4::text, $5::text, $6::bytea, CASE WHEN $5::text = 'reference'"
    " THEN to_timestamp($7::double precision) + interval '24 hours' ELSE now() END"
    " FROM messages m WHERE m.id = $2::text ON CONFLICT DO NOTHING";
/* clang-format on */

int inbound_media_insert(struct router *r, struct cm_pg *pg, const struct router_route *route,
                         const char *msg_id, const struct inbound_event *ev,
                         const struct inbound_media *m)
{
    char aad[96], pos[16], ts[32];
    struct cm_buf sealed;
    int rc = CM_OK;

    inbound_ts_param(ts, ev->ts_ms);
    cm_buf_init(&sealed);
    for (int i = 0; rc == CM_OK && i < m->n; i++) {
        snprintf(aad, sizeof(aad), "router.attachments.source:%s", m->a[i].id);
        snprintf(pos, sizeof(pos), "%d", m->a[i].position);
        cm_buf_reset(&sealed);
        rc = router_seal(r, pg, route->workspace_id, route->integration_id, aad, m->a[i].url,
                         strlen(m->a[i].url), &sealed);
        if (rc == CM_OK) {
            const char *values[7] = {
                m->a[i].id,  msg_id, pos, m->a[i].type, m->a[i].reference ? "reference" : "pending",
                sealed.data, ts};
            const int lengths[7] = {0, 0, 0, 0, 0, (int)sealed.len, 0};
            const int formats[7] = {0, 0, 0, 0, 0, 1, 0};
            rc = cm_pg_exec_prepared(pg, "router_attachment_in", insert_sql, 7, values, lengths,
                                     formats);
        }
    }
    cm_buf_wipe(&sealed);
    return rc;
}
