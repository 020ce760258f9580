/*
 * purge.c - ai.purge: ai-suggest's slice of a deletion (proto/purge.md). retention-reaper
 * decides when; this crypto-shreds and deletes suggestions, in bounded batches.
 *
 * Scopes:
 *   workspace     shreds ws:<workspace_id> and each ws:<workspace_id>:int:<integration>
 *                 (every draft and audio of the workspace is then unreadable, backups
 *                 included), then deletes its rows.
 *   integration   shreds ws:<ws>:int:<integration> (the drafts of that integration, sealed
 *                 under it since migration 4), then deletes its rows.
 *   conversation  (conversation_ids) deletes the rows of single conversations (their key is
 *                 the integration's, which its other conversations still need: no shred).
 *   due           the rows created before older_than; nothing without it.
 * Every scope is idempotent: repeating it deletes nothing more and reports 0 remaining.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"
#include "common/audit.h"
#include "common/id.h"
#include "common/log.h"

#define BATCH   1000
#define MAX_IDS 10000

/* True for an RFC 3339 time, "2026-08-31T00:00:00Z" (fractions and offsets allowed); not
 * PostgreSQL's own wider syntax ("yesterday", "epoch"), which the contract does not have. */
static bool rfc3339(const char *t)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t i;

    for (i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)t[i]) : t[i] != shape[i])
            return false;
    }
    if (t[i] == '.') {
        for (i++; isdigit((unsigned char)t[i]); i++) {
        }
    }
    if (t[i] == 'Z')
        return t[i + 1] == '\0';
    return (t[i] == '+' || t[i] == '-') && isdigit((unsigned char)t[i + 1]) &&
           isdigit((unsigned char)t[i + 2]) && t[i + 3] == ':' &&
           isdigit((unsigned char)t[i + 4]) && isdigit((unsigned char)t[i + 5]) && t[i + 6] == '\0';
}

/* Deletes the rows matching where (one parameter) in batches, each its own transaction. */
static int delete_where(struct cm_pg *pg, const char *where, const char *param, long *deleted)
{
    char sql[256];
    const char *params[1] = {param};
    long n;
    int rc;

    snprintf(sql, sizeof(sql),
             "DELETE FROM suggestions WHERE id IN (SELECT id FROM suggestions WHERE %s LIMIT %d)",
             where, BATCH);
    do {
        rc = cm_pg_exec(pg, sql, 1, params);
        n = rc == CM_OK ? cm_pg_affected(pg) : 0;
        *deleted += n;
    } while (rc == CM_OK && n == BATCH);
    return rc;
}

static int count_where(struct cm_pg *pg, const char *where, const char *param, long *remaining)
{
    char sql[160];
    const char *params[1] = {param};
    int rc;

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM suggestions WHERE %s", where);
    rc = cm_pg_exec(pg, sql, 1, params);
    if (rc == CM_OK)
        *remaining += atol(cm_pg_value(pg, 0, 0));
    return rc;
}

/* The key scopes purge_one() shreds: a workspace's drafts, one integration's. */
static const enum cm_key_scope workspace_keys = CM_KEY_SCOPE_WORKSPACE;
static const enum cm_key_scope integration_keys = CM_KEY_SCOPE_INTEGRATION;

/* Purges one id of a scope: shreds the data keys of the scope shred names first (NULL:
 * none; cm_keyring_shred_scope() matches key ids exactly), then rows, then the count. */
static int purge_one(struct ai *ai, struct cm_rpc_call *call, const char *where, const char *id,
                     const enum cm_key_scope *shred, long *deleted, long *remaining)
{
    long before = *deleted, shredded = 0;
    int rc = CM_OK;

    if (shred != NULL)
        rc = cm_keyring_shred_scope(ai->keyring, call->pg, *shred, id, &shredded);
    if (rc == CM_OK)
        rc = delete_where(call->pg, where, id, deleted);
    if (rc == CM_OK && (*deleted > before || shredded > 0))
        rc = cm_audit_add(call->pg, AI_SERVICE, call->actor, "suggestion.purge", id);
    if (rc == CM_OK)
        rc = count_where(call->pg, where, id, remaining);
    return rc;
}

/* The ids of a list member into ids; returns how many, or -1 when one is not an id. */
static int id_list(const cJSON *list, char **ids)
{
    const cJSON *it;
    int n = 0;

    cJSON_ArrayForEach(it, list)
    {
        if (!cJSON_IsString(it) || !cm_id_valid(it->valuestring, 128))
            return -1;
        if (n < MAX_IDS)
            ids[n++] = it->valuestring;
    }
    return n;
}

static void reply(struct cm_rpc_call *call, long deleted, long remaining)
{
    cJSON *out = cJSON_CreateObject();

    cJSON_AddNumberToObject(cJSON_AddObjectToObject(out, "deleted"), "suggestions",
                            (double)deleted);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(out, "remaining"), "suggestions",
                            (double)remaining);
    cm_rpc_reply(call, out);
}

static void on_purge(struct cm_rpc_call *call, void *arg)
{
    struct ai *ai = arg;
    const char *scope = cm_rpc_str(call, "scope");
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *older = cm_rpc_str(call, "older_than");
    long deleted = 0, remaining = 0;
    char **ids = NULL;
    int rc = CM_OK, n;

    if (scope != NULL && strcmp(scope, "workspace") == 0 && ws != NULL) {
        if (!cm_id_valid(ws, 128)) {
            cm_rpc_fail(call, "invalid", "workspace_id is not an id");
            return;
        }
        rc = purge_one(ai, call, "workspace_id = $1", ws, &workspace_keys, &deleted, &remaining);
    } else if (scope != NULL &&
               (strcmp(scope, "integration") == 0 || strcmp(scope, "conversation") == 0)) {
        bool integ = strcmp(scope, "integration") == 0;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(call->req, integ ? "integration_ids"
                                                                              : "conversation_ids");
        if (!cJSON_IsArray(list)) {
            cm_rpc_fail(call, "invalid", "scope %s needs %s", scope,
                        integ ? "integration_ids" : "conversation_ids");
            return;
        }
        ids = cm_xcalloc(MAX_IDS, sizeof(char *));
        n = id_list(list, ids);
        if (n < 0) {
            free(ids);
            cm_rpc_fail(call, "invalid", "%s holds something that is not an id",
                        integ ? "integration_ids" : "conversation_ids");
            return;
        }
        for (int i = 0; rc == CM_OK && i < n; i++)
            rc = purge_one(ai, call, integ ? "integration_id = $1" : "conversation_id = $1", ids[i],
                           integ ? &integration_keys : NULL, &deleted, &remaining);
        free(ids);
    } else if (scope != NULL && strcmp(scope, "due") == 0) {
        if (older != NULL) {
            const char *params[1] = {older};
            /* Checked first so that a malformed time is "invalid", not an outage. */
            if (!rfc3339(older) ||
                cm_pg_exec(call->pg, "SELECT $1::timestamptz", 1, params) != CM_OK) {
                cm_rpc_fail(call, "invalid", "older_than must be an RFC 3339 time");
                return;
            }
            rc = purge_one(ai, call, "created_at < $1::timestamptz", older, NULL, &deleted,
                           &remaining);
        }
    } else {
        cm_rpc_fail(call, "invalid",
                    "scope must be workspace (with workspace_id), integration (with "
                    "integration_ids), conversation (with conversation_ids) or due");
        return;
    }
    if (rc != CM_OK) {
        CM_ERROR("purge (%s) interrupted after %ld suggestions: %s", scope, deleted,
                 cm_err_str(rc));
        cm_rpc_fail(call, "unavailable", "purge interrupted (%s); repeat it", cm_err_str(rc));
        return;
    }
    if (deleted > 0)
        CM_INFO("purge (%s) by %s: %ld suggestions deleted, %ld remaining", scope, call->actor,
                deleted, remaining);
    reply(call, deleted, remaining);
}

void ai_purge_register(struct ai *ai)
{
    cm_rpc_handle(ai->rpc, "ai.purge", on_purge, ai);
}
