/*
 * purge.c - vault.purge and vault.integration.find: token-vault's slice of a deletion
 * (proto/purge.md). retention-reaper decides when; this deletes integrations and tokens,
 * crypto-shredding each integration's data key first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/id.h"
#include "common/log.h"
#include "vault.h"

#define MAX_IDS 10000

/* Deletes one integration and its token in a transaction of its own. */
static int purge_one(struct vault *v, struct cm_pg *pg, const char *id, const char *actor,
                     long *tokens, long *integrations)
{
    const char *params[1] = {id};
    char kid[96];
    long shredded = 0;
    int rc;

    snprintf(kid, sizeof(kid), "int:%s", id);
    /* A workspace's deletion stops Meta's webhooks for its accounts, best effort. */
    vault_subscription_end(v, pg, NULL, id);
    rc = vault_begin(pg);
    if (rc == CM_OK)
        rc = cm_keyring_shred(v->keyring, pg, kid, &shredded);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "DELETE FROM tokens WHERE integration_id = $1", 1, params);
    if (rc == CM_OK)
        *tokens += cm_pg_affected(pg);
    /* The last state event tells the router to drop its route before the row goes. */
    if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        "UPDATE integrations SET status = 'revoked', updated_at = now()"
                        " WHERE id = $1 AND status IN ('connected', 'needs_reauth')",
                        1, params);
    if (rc == CM_OK)
        rc = vault_store_purged_event(pg, id);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "DELETE FROM integrations WHERE id = $1", 1, params);
    if (rc == CM_OK)
        *integrations += cm_pg_affected(pg);
    if (rc == CM_OK)
        rc = cm_audit_add(pg, VAULT_SERVICE, actor, "integration.purge", id);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK && rc != CM_NOTFOUND)
        cm_pg_rollback(pg);
    return rc == CM_NOTFOUND ? CM_OK : rc;
}

/* Collects the ids in scope into ids (each freed by the caller). */
static int scope_ids(struct cm_rpc_call *call, char ***ids, int *n)
{
    const char *scope = cm_rpc_str(call, "scope");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(call->req, "integration_ids");
    const cJSON *item;
    int rc;

    *ids = cm_xcalloc(MAX_IDS, sizeof(char *));
    *n = 0;
    if (scope != NULL && strcmp(scope, "integration") == 0 && cJSON_IsArray(list)) {
        /* All or nothing: one malformed id refuses the request before anything is shred. */
        cJSON_ArrayForEach(item, list)
        {
            if (!cJSON_IsString(item) || !cm_id_valid(item->valuestring, 64))
                return CM_INVALID;
        }
        cJSON_ArrayForEach(item, list)
        {
            if (*n < MAX_IDS)
                (*ids)[(*n)++] = cm_xstrdup(item->valuestring);
        }
        return CM_OK;
    }
    if (scope != NULL && strcmp(scope, "workspace") == 0 && cm_rpc_str(call, "workspace_id")) {
        const char *params[1] = {cm_rpc_str(call, "workspace_id")};
        if (!cm_id_valid(params[0], 128))
            return CM_INVALID;
        rc = cm_pg_exec(call->pg, "SELECT id FROM integrations WHERE workspace_id = $1 LIMIT 10000",
                        1, params);
    } else if (scope != NULL && strcmp(scope, "due") == 0) {
        /* Ended integrations whose token somehow survived (a crash mid-way). */
        rc = cm_pg_exec(call->pg,
                        "SELECT i.id FROM integrations i JOIN tokens t ON t.integration_id = i.id"
                        " WHERE i.status IN ('disconnected', 'revoked') LIMIT 10000",
                        0, NULL);
    } else {
        return CM_INVALID;
    }
    if (rc != CM_OK)
        return rc;
    for (int i = 0; i < cm_pg_ntuples(call->pg); i++)
        (*ids)[(*n)++] = cm_xstrdup(cm_pg_value(call->pg, i, 0));
    return CM_OK;
}

static void on_purge(struct cm_rpc_call *call, void *arg)
{
    struct vault *v = arg;
    const char *scope = cm_rpc_str(call, "scope");
    long tokens = 0, integrations = 0, left_tokens = 0, left_integrations = 0;
    char **ids = NULL;
    int n = 0, rc;
    cJSON *out, *deleted, *remaining;

    rc = scope_ids(call, &ids, &n);
    for (int i = 0; rc == CM_OK && i < n; i++) {
        if (scope != NULL && strcmp(scope, "due") == 0) {
            /* Only the token goes: the ended integration stays listed until its purge. */
            const char *params[1] = {ids[i]};
            char kid[96];
            long shredded = 0;
            snprintf(kid, sizeof(kid), "int:%s", ids[i]);
            rc = cm_keyring_shred(v->keyring, call->pg, kid, &shredded);
            if (rc == CM_OK)
                rc =
                    cm_pg_exec(call->pg, "DELETE FROM tokens WHERE integration_id = $1", 1, params);
            if (rc == CM_OK)
                tokens += cm_pg_affected(call->pg);
        } else {
            rc = purge_one(v, call->pg, ids[i], call->actor, &tokens, &integrations);
        }
    }
    /* What the scope still holds: the verification step of the reaper. */
    for (int i = 0; rc == CM_OK && i < n; i++) {
        const char *params[1] = {ids[i]};
        rc = cm_pg_exec(call->pg,
                        "SELECT (SELECT count(*) FROM tokens WHERE integration_id = $1),"
                        " (SELECT count(*) FROM integrations WHERE id = $1)",
                        1, params);
        if (rc == CM_OK) {
            left_tokens += atol(cm_pg_value(call->pg, 0, 0));
            if (scope == NULL || strcmp(scope, "due") != 0)
                left_integrations += atol(cm_pg_value(call->pg, 0, 1));
        }
    }
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    if (rc == CM_INVALID) {
        cm_rpc_fail(call, "invalid",
                    "scope must be workspace (with an id as workspace_id), integration"
                    " (with ids as integration_ids) or due");
        return;
    }
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "purge interrupted: %s; repeat it", cm_err_str(rc));
        return;
    }
    if (tokens || integrations)
        CM_INFO("purge (%s) by %s: %ld tokens, %ld integrations deleted", scope, call->actor,
                tokens, integrations);
    out = cJSON_CreateObject();
    deleted = cJSON_AddObjectToObject(out, "deleted");
    cJSON_AddNumberToObject(deleted, "tokens", (double)tokens);
    cJSON_AddNumberToObject(deleted, "integrations", (double)integrations);
    remaining = cJSON_AddObjectToObject(out, "remaining");
    cJSON_AddNumberToObject(remaining, "tokens", (double)left_tokens);
    cJSON_AddNumberToObject(remaining, "integrations", (double)left_integrations);
    cm_rpc_reply(call, out);
}

static void on_find(struct cm_rpc_call *call, void *arg)
{
    struct vault *v = arg;
    const char *asid = cm_rpc_str(call, "asid");
    char blind[VAULT_BLIND_LEN];
    const char *params[2] = {blind, asid};
    cJSON *list;

    if (!cm_id_valid(asid, 64)) {
        cm_rpc_fail(call, "invalid", "asid is required, an id");
        return;
    }
    if (vault_asid_blind(v, call->pg, asid, blind) != CM_OK ||
        cm_pg_exec(call->pg,
                   "SELECT id, workspace_id, platform, account_id, status FROM integrations"
                   " WHERE id IN (SELECT integration_id FROM connectors WHERE asid_blind = $1)"
                   " OR asid = $2 ORDER BY created_at",
                   2, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the vault's database is unavailable");
        return;
    }
    list = cJSON_CreateArray();
    for (int i = 0; i < cm_pg_ntuples(call->pg); i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "integration_id", cm_pg_value(call->pg, i, 0));
        cJSON_AddStringToObject(o, "workspace_id", cm_pg_value(call->pg, i, 1));
        cJSON_AddStringToObject(o, "platform", cm_pg_value(call->pg, i, 2));
        cJSON_AddStringToObject(o, "account_id", cm_pg_value(call->pg, i, 3));
        cJSON_AddStringToObject(o, "status", cm_pg_value(call->pg, i, 4));
        cJSON_AddItemToArray(list, o);
    }
    cm_rpc_reply(call, list);
}

void vault_purge_register(struct vault *v)
{
    /* Each integration's webhook subscription is ended at Meta first: the Meta lane. */
    cm_rpc_handle(v->meta_rpc, "vault.purge", on_purge, v);
    cm_rpc_handle(v->rpc, "vault.integration.find", on_find, v);
}
