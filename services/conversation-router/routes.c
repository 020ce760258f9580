/*
 * routes.c - which workspace an account's events belong to.
 *
 * The routes table is this service's projection of token-vault's integration events
 * (stream VAULT_EVENTS, the latest state of each integration), so the router needs no
 * request per event. An event for an account the projection does not know yet (the
 * integration was connected a moment ago) is checked with token-vault before it is
 * discarded: "routed from the moment connect returns" holds without a race.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "router.h"

/*
 * Upserts one route from an integration state object; later states win, except over a route
 * being purged (purge.c): that one stays so until the purge deletes it, whatever token-vault
 * still says of the integration, so nothing is routed to it again.
 */
static int apply_state(struct cm_pg *pg, const cJSON *ev)
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "integration_id"));
    const char *ws = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "workspace_id"));
    const char *platform = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "platform"));
    const char *account = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "account_id"));
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "status"));
    const char *at = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "at"));
    const char *params[6] = {id, ws, platform, account, status, at};
    int rc;

    if (id == NULL || ws == NULL || platform == NULL || account == NULL || status == NULL)
        return CM_INVALID;
    if (at == NULL)
        params[5] = "now";
    if (strcmp(status, "purged") == 0)
        return cm_pg_exec(pg, "DELETE FROM routes WHERE integration_id = $1", 1, params);
    /* A newer integration of the same account may arrive before the old one's end. */
    rc = CM_OK;
    if (strcmp(status, "connected") == 0 || strcmp(status, "needs_reauth") == 0) {
        const char *others[3] = {id, platform, account};
        rc = cm_pg_exec(pg,
                        "UPDATE routes SET status = 'disconnected' WHERE platform = $2"
                        " AND account_id = $3 AND integration_id <> $1"
                        " AND status IN ('connected', 'needs_reauth')",
                        3, others);
    }
    if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        "WITH before AS (SELECT status FROM routes WHERE integration_id = $1)"
                        " INSERT INTO routes (integration_id, workspace_id, platform, account_id,"
                        " status, updated_at) VALUES ($1, $2, $3, $4, $5, $6)"
                        " ON CONFLICT (integration_id) DO UPDATE SET status = excluded.status,"
                        " updated_at = excluded.updated_at"
                        " WHERE routes.updated_at <= excluded.updated_at"
                        " AND routes.status <> 'purging'"
                        " RETURNING coalesce((SELECT status FROM before), '')",
                        6, params);
    /* Back from needs_reauth (reconnected): what Meta held meanwhile is fetched. */
    if (rc == CM_OK && cm_pg_ntuples(pg) == 1 && strcmp(status, "connected") == 0 &&
        strcmp(cm_pg_value(pg, 0, 0), "needs_reauth") == 0) {
        CM_INFO("integration %s: connected again after needs_reauth; backfilling", id);
        rc = router_backfill_queue(pg, id);
    }
    return rc;
}

static enum cm_consume_result on_state(void *arg, natsMsg *msg)
{
    struct router *r = arg;
    cJSON *ev = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    int rc = ev ? apply_state(r->routes_pg, ev) : CM_INVALID;

    cJSON_Delete(ev);
    if (rc == CM_INVALID) {
        CM_WARN("routes: malformed integration event on %s dropped", natsMsg_GetSubject(msg));
        return CM_CONSUME_TERM;
    }
    return rc == CM_OK ? CM_CONSUME_ACK : CM_CONSUME_RETRY;
}

int router_routes_start(struct router *r)
{
    struct cm_consumer_cfg cfg = {
        .stream = "VAULT_EVENTS",
        .durable = "conversation-router-routes",
        .filter = "vault.events.integration.>",
        .batch = 64,
        .retry_delay_ms = 1000,
    };
    int rc = cm_pg_connect(&r->routes_pg, r->cfg->base.database_url, ROUTER_SCHEMA);

    if (rc == CM_INVALID)
        return rc;
    return cm_consumer_start(&r->routes, r->svc.nats, &cfg, on_state, r);
}

/* Reads the first row of a routes query into out. */
static void fill(struct cm_pg *pg, struct router_route *out)
{
    snprintf(out->integration_id, sizeof(out->integration_id), "%s", cm_pg_value(pg, 0, 0));
    snprintf(out->workspace_id, sizeof(out->workspace_id), "%s", cm_pg_value(pg, 0, 1));
    out->workspace_deleted = strcmp(cm_pg_value(pg, 0, 2), "t") == 0;
}

static const char find_sql[] =
    "SELECT r.integration_id, r.workspace_id, coalesce(w.status = 'deleted', false)"
    " FROM routes r LEFT JOIN workspaces w ON w.id = r.workspace_id"
    " WHERE r.platform = $1 AND r.account_id = $2 AND r.status IN ('connected', 'needs_reauth')";

/* Asks token-vault for the account's live integration and records it. */
static int ask_vault(struct router *r, struct cm_pg *pg, const char *platform,
                     const char *account_id)
{
    natsMsg *reply = NULL;
    cJSON *req = cJSON_CreateObject(), *resp = NULL, *result;
    char *body;
    natsStatus s;
    int rc;

    cJSON_AddStringToObject(req, "actor", ROUTER_SERVICE);
    cJSON_AddStringToObject(req, "platform", platform);
    cJSON_AddStringToObject(req, "account_id", account_id);
    body = cJSON_PrintUnformatted(req);
    s = cm_nats_request(&reply, r->svc.nats, "vault.integration.lookup", body, 5000);
    cJSON_free(body);
    cJSON_Delete(req);
    if (s != NATS_OK)
        return CM_UNAVAIL;
    resp = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    result = cJSON_GetObjectItem(resp, "result");
    if (result == NULL) {
        const char *code =
            cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "error"), "code"));
        rc = code != NULL && strcmp(code, "not_found") == 0 ? CM_NOTFOUND : CM_UNAVAIL;
    } else {
        /* The projection may be behind: record what the vault says, as of now. */
        cJSON_DeleteItemFromObject(result, "at");
        rc = apply_state(pg, result);
    }
    cJSON_Delete(resp);
    return rc;
}

int router_route_find(struct router *r, struct cm_pg *pg, const char *platform,
                      const char *account_id, struct router_route *out)
{
    const char *params[2] = {platform, account_id};
    int rc = cm_pg_exec(pg, find_sql, 2, params);

    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) > 0) {
        fill(pg, out);
        return CM_OK;
    }
    rc = ask_vault(r, pg, platform, account_id);
    if (rc != CM_OK)
        return rc;
    rc = cm_pg_exec(pg, find_sql, 2, params);
    if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
        rc = CM_NOTFOUND;
    if (rc == CM_OK)
        fill(pg, out);
    return rc;
}
