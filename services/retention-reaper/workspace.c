/*
 * workspace.c - reaper.workspace.delete (`domsctl workspace delete W`).
 *
 * conversation-router owns workspaces and decides whether the actor may delete this one (the
 * owner only); the reaper then records when its data must be gone (deleted_at +
 * RETENTION_MESSAGES) and ends every integration of the workspace at once through
 * token-vault, which crypto-shreds their tokens in the same step: far inside the 7-day
 * bound of the policy. When token-vault cannot be reached, the deletion still stands and
 * every pass retries the disconnection until it is done.
 */
#include <stdio.h>
#include <string.h>

#include "common/audit.h"
#include "common/log.h"
#include "reaper.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* Keeps what the vault lists (id, platform, account) for the purge, which needs the
 * accounts of the raw events after token-vault itself has forgotten them. */
static int remember(struct cm_pg *pg, const char *workspace_id, const cJSON *list)
{
    cJSON *keep = cJSON_CreateArray();
    const cJSON *it;
    char *text;
    int rc;

    cJSON_ArrayForEach(it, list)
    {
        cJSON *o = cJSON_CreateObject();
        const char *fields[] = {"integration_id", "platform", "account_id"};
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
            cJSON_AddItemToObject(o, fields[i],
                                  cJSON_Duplicate(cJSON_GetObjectItem(it, fields[i]), 1));
        cJSON_AddItemToArray(keep, o);
    }
    text = cJSON_PrintUnformatted(keep);
    /* A union: every pass lists again, and an integration must never drop out of the list
     * before its raw events are purged. */
    {
        const char *params[2] = {workspace_id, text};
        rc = cm_pg_exec(pg,
                        "UPDATE workspace_deletions SET integrations = (SELECT"
                        " coalesce(jsonb_agg(DISTINCT e), '[]') FROM"
                        " jsonb_array_elements(integrations || $2::jsonb) AS e)"
                        " WHERE workspace_id = $1",
                        2, params);
    }
    cJSON_free(text);
    cJSON_Delete(keep);
    return rc;
}

int reaper_workspace_disconnect(struct reaper *r, struct cm_pg *pg, const char *workspace_id,
                                const char *actor, long *ended)
{
    cJSON *req = cJSON_CreateObject();
    struct reaper_reply rep;
    const cJSON *it;
    int rc, failed = 0;

    *ended = 0;
    cJSON_AddStringToObject(req, "actor", actor);
    cJSON_AddStringToObject(req, "workspace_id", workspace_id);
    rc = reaper_call(r, "vault.integration.list", req, REAPER_CALL_TIMEOUT_MS, &rep);
    cJSON_Delete(req);
    if (rc != CM_OK) {
        CM_WARN("workspace %s: integrations not listed: %s", workspace_id, rep.message);
        return CM_UNAVAIL;
    }
    rc = remember(pg, workspace_id, rep.result);
    cJSON_ArrayForEach(it, rep.result)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "integration_id"));
        const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(it, "status"));
        struct reaper_reply done;

        if (id == NULL || status == NULL ||
            (strcmp(status, "connected") != 0 && strcmp(status, "needs_reauth") != 0))
            continue;
        req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "actor", actor);
        cJSON_AddStringToObject(req, "integration_id", id);
        if (reaper_call(r, "vault.integration.disconnect", req, REAPER_CALL_TIMEOUT_MS, &done) ==
            CM_OK) {
            (*ended)++;
        } else {
            CM_WARN("workspace %s: integration %s not disconnected: %s", workspace_id, id,
                    done.message);
            failed++;
        }
        reaper_reply_cleanup(&done);
        cJSON_Delete(req);
    }
    reaper_reply_cleanup(&rep);
    if (rc == CM_OK && failed == 0) {
        const char *params[1] = {workspace_id};
        rc = cm_pg_exec(pg,
                        "UPDATE workspace_deletions SET tokens_done = true WHERE workspace_id = $1",
                        1, params);
    }
    return rc != CM_OK ? rc : failed ? CM_UNAVAIL : CM_OK;
}

/* Records the deletion (the first one stands when repeated). Fills the two times. */
static int record(struct reaper *r, struct cm_pg *pg, const char *ws, const char *deleted_at,
                  const char *actor, char out_deleted[32], char out_due[32])
{
    char secs[24];
    const char *params[4] = {ws, deleted_at, secs, actor};
    bool fresh;
    int rc;

    snprintf(secs, sizeof(secs), "%lld", (long long)r->cfg->retention_messages);
    /* DO UPDATE (a no-op) rather than DO NOTHING so that a repeat returns the first row's
     * times; xmax = 0 tells a fresh insert from that repeat, which is not audited twice. */
    rc = cm_pg_begin(pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(
            pg,
            "INSERT INTO workspace_deletions (workspace_id, deleted_at, purge_due_at,"
            " deleted_by) VALUES ($1, $2::timestamptz, $2::timestamptz +"
            " make_interval(secs => $3::bigint), $4)"
            " ON CONFLICT (workspace_id) DO UPDATE SET workspace_id = EXCLUDED.workspace_id"
            " RETURNING " TS("deleted_at") ", " TS("purge_due_at") ", xmax = 0",
            4, params);
    if (rc == CM_OK) {
        snprintf(out_deleted, 32, "%s", cm_pg_value(pg, 0, 0));
        snprintf(out_due, 32, "%s", cm_pg_value(pg, 0, 1));
        fresh = strcmp(cm_pg_value(pg, 0, 2), "t") == 0;
        if (fresh)
            rc = cm_audit_add(pg, REAPER_SERVICE, actor, "workspace.delete", ws);
    }
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    return rc;
}

static void on_delete(struct cm_rpc_call *call, void *arg)
{
    struct reaper *r = arg;
    const char *ws = cm_rpc_str(call, "workspace_id");
    char deleted_at[32], due[32];
    struct reaper_reply rep;
    const char *router_at;
    long ended = 0;
    cJSON *req, *out;
    int rc;

    if (!reaper_valid_id(ws, 128)) {
        cm_rpc_fail(call, "invalid", "workspace_id is required");
        return;
    }
    /* The router checks the actor's role and stops the workspace from routing anything. */
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "actor", call->actor);
    cJSON_AddStringToObject(req, "workspace_id", ws);
    rc = reaper_call(r, "router.workspace.delete", req, REAPER_CALL_TIMEOUT_MS, &rep);
    cJSON_Delete(req);
    if (rc != CM_OK) {
        cm_rpc_fail(call, rep.code[0] ? rep.code : "internal", "%s%s", rep.message,
                    rc == CM_UNAVAIL ? "; nothing was deleted" : "");
        return;
    }
    router_at = cJSON_GetStringValue(cJSON_GetObjectItem(rep.result, "deleted_at"));
    if (router_at == NULL) {
        reaper_reply_cleanup(&rep);
        cm_rpc_fail(call, "internal", "conversation-router answered without deleted_at");
        return;
    }
    rc = record(r, call->pg, ws, router_at, call->actor, deleted_at, due);
    reaper_reply_cleanup(&rep);
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable",
                    "the workspace is deleted but its schedule was not recorded (%s); repeat the"
                    " command",
                    cm_err_str(rc));
        return;
    }
    /* The deletion is recorded: a vault that does not answer now only delays the tokens
     * to the next pass, still far inside RETENTION_TOKENS. */
    if (reaper_workspace_disconnect(r, call->pg, ws, call->actor, &ended) != CM_OK)
        CM_WARN("workspace %s: integrations will be disconnected by the next pass", ws);
    CM_INFO("workspace %s deleted by %s; %ld integrations disconnected; purge due %s", ws,
            call->actor, ended, due);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "workspace_id", ws);
    cJSON_AddStringToObject(out, "deleted_at", deleted_at);
    cJSON_AddStringToObject(out, "purge_due_at", due);
    cm_rpc_reply(call, out);
}

void reaper_workspace_register(struct reaper *r)
{
    cm_rpc_handle(r->rpc, "reaper.workspace.delete", on_delete, r);
}
