/*
 * store_change.c - the events that change a message already stored: the contact unsent it
 * (the content is wiped, not kept), edited it (the text replaced, the edit count kept), or
 * reacted to it (the reaction sealed on the message, cleared by unreact). An event about a
 * message not stored yet is redelivered a few times (inbound.c), then dropped.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "inbound.h"
#include "router.h"

/* An event about a message not stored yet: redelivered a few times (inbound.c), then dropped. */
static enum inbound_outcome later(const struct inbound_event *ev)
{
    (void)ev;
    return INBOUND_LATER;
}

/*
 * Unsend, edit and reaction name a message by Meta's mid: it is looked up within the
 * event's own integration (the route of the account it arrived for), never across tenants,
 * so an event of one integration cannot touch another's message of the same mid.
 */
static int store_unsend(struct cm_pg *pg, const struct router_route *route,
                        const struct inbound_event *ev, enum inbound_outcome *outcome)
{
    const char *params[2] = {route->integration_id, ev->mid};
    int rc = cm_pg_exec(pg,
                        "UPDATE messages SET body_sealed = NULL, reaction_sealed = NULL,"
                        " deleted = true WHERE integration_id = $1 AND mid = $2",
                        2, params);

    if (rc == CM_OK)
        *outcome = cm_pg_affected(pg) > 0 ? INBOUND_STORED : later(ev);
    return rc;
}

static int store_edit(struct router *r, struct cm_pg *pg, const struct router_route *route,
                      const struct inbound_event *ev, enum inbound_outcome *outcome)
{
    const cJSON *edit = cJSON_GetObjectItemCaseSensitive(ev->event, "message_edit");
    const cJSON *num = cJSON_GetObjectItemCaseSensitive(edit, "num_edit");
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(edit, "text"));
    const char *params[2] = {route->integration_id, ev->mid};
    char count[16], aad[96];
    struct cm_buf sealed;
    cJSON *body;
    char *json;
    int rc;

    rc = cm_pg_exec(pg,
                    "SELECT id, edit_count, deleted FROM messages WHERE integration_id = $1"
                    " AND mid = $2 FOR UPDATE",
                    2, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0) {
        *outcome = later(ev);
        return CM_OK;
    }
    /* An older edit arriving late, or an edit of an unsent message, changes nothing. */
    if (strcmp(cm_pg_value(pg, 0, 2), "t") == 0 ||
        atoi(cm_pg_value(pg, 0, 1)) >= (cJSON_IsNumber(num) ? num->valueint : 1)) {
        *outcome = INBOUND_DUPLICATE;
        return CM_OK;
    }
    snprintf(aad, sizeof(aad), "router.messages.body:%s", cm_pg_value(pg, 0, 0));
    {
        char id[40];
        snprintf(id, sizeof(id), "%s", cm_pg_value(pg, 0, 0));
        body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "text", text ? text : "");
        json = cJSON_PrintUnformatted(body);
        cm_buf_init(&sealed);
        rc = router_seal(r, pg, route->workspace_id, route->integration_id, aad, json, strlen(json),
                         &sealed);
        snprintf(count, sizeof(count), "%d", cJSON_IsNumber(num) ? num->valueint : 1);
        if (rc == CM_OK) {
            const char *values[3] = {id, sealed.data, count};
            const int lengths[3] = {0, (int)sealed.len, 0};
            const int formats[3] = {0, 1, 0};
            rc = cm_pg_exec_params(pg,
                                   "UPDATE messages SET body_sealed = $2, edit_count = $3::int"
                                   " WHERE id = $1",
                                   3, values, lengths, formats, 0);
        }
        cm_buf_wipe(&sealed);
        cJSON_free(json);
        cJSON_Delete(body);
    }
    *outcome = INBOUND_STORED;
    return rc;
}

static int store_reaction(struct router *r, struct cm_pg *pg, const struct router_route *route,
                          const struct inbound_event *ev, enum inbound_outcome *outcome)
{
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(ev->event, "reaction");
    const char *action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(re, "action"));
    const char *params[2] = {route->integration_id, ev->mid};
    char id[40], aad[96];
    struct cm_buf sealed;
    int rc;

    rc = cm_pg_exec(
        pg, "SELECT id FROM messages WHERE integration_id = $1 AND mid = $2 AND NOT deleted", 2,
        params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0) {
        *outcome = later(ev);
        return CM_OK;
    }
    snprintf(id, sizeof(id), "%s", cm_pg_value(pg, 0, 0));
    if (action != NULL && strcmp(action, "unreact") == 0) {
        const char *p1[1] = {id};
        *outcome = INBOUND_STORED;
        return cm_pg_exec(pg, "UPDATE messages SET reaction_sealed = NULL WHERE id = $1", 1, p1);
    }
    {
        char *json = cJSON_PrintUnformatted(re);
        snprintf(aad, sizeof(aad), "router.messages.reaction:%s", id);
        cm_buf_init(&sealed);
        rc = router_seal(r, pg, route->workspace_id, route->integration_id, aad, json, strlen(json),
                         &sealed);
        if (rc == CM_OK) {
            const char *values[2] = {id, sealed.data};
            const int lengths[2] = {0, (int)sealed.len};
            const int formats[2] = {0, 1};
            rc = cm_pg_exec_params(pg, "UPDATE messages SET reaction_sealed = $2 WHERE id = $1", 2,
                                   values, lengths, formats, 0);
        }
        cm_buf_wipe(&sealed);
        cJSON_free(json);
    }
    *outcome = INBOUND_STORED;
    return rc;
}

int inbound_store_change(struct router *r, struct cm_pg *pg, const struct router_route *route,
                         const struct inbound_event *ev, enum inbound_outcome *outcome)
{
    if (strcmp(ev->kind, "unsend") == 0)
        return store_unsend(pg, route, ev, outcome);
    if (strcmp(ev->kind, "edit") == 0)
        return store_edit(r, pg, route, ev, outcome);
    return store_reaction(r, pg, route, ev, outcome);
}
