/*
 * purge.c - router.workspace.delete and router.purge: the router's slice of a deletion
 * (proto/purge.md). retention-reaper decides when; this first crypto-shreds (destroys the
 * data keys, so even backups of the rows are unreadable), then deletes in batches of a few
 * thousand rows, each its own short transaction so ingest and replies never wait long, then
 * counts what is left. A contact's profile (profile.c) lives on the contact's row, sealed under
 * the integration's key: unreadable once the keys are shredded, gone with the row. So do
 * attachments and their media (media.c), deleted before their messages and counted: their
 * key is shredded first, so even an S3 object still waiting for the sweep (media_doomed) is
 * unreadable from the moment the purge starts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/audit.h"
#include "common/id.h"
#include "common/log.h"
#include "router.h"

#define BATCH "5000"

static void on_workspace_delete(struct cm_rpc_call *call, void *arg)
{
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *params[1] = {ws};
    int rc;
    cJSON *out;

    (void)arg;
    if (ws != NULL && !cm_id_valid(ws, 128)) {
        cm_rpc_fail(call, "invalid", "workspace_id is not an id");
        return;
    }
    if (!router_authorize(call, ws, "owner", false))
        return;
    rc = cm_pg_begin(call->pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(call->pg,
                        "UPDATE workspaces SET status = 'deleted', deleted_at = now()"
                        " WHERE id = $1 AND status = 'active'",
                        1, params);
    if (rc == CM_OK && cm_pg_affected(call->pg) == 1)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "workspace.delete", ws);
    if (rc == CM_OK)
        rc = cm_pg_exec(call->pg,
                        "SELECT to_char(deleted_at AT TIME ZONE 'UTC',"
                        " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM workspaces WHERE id = $1",
                        1, params);
    if (rc == CM_OK) {
        out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "workspace_id", ws);
        cJSON_AddStringToObject(out, "deleted_at", cm_pg_value(call->pg, 0, 0));
        rc = cm_pg_commit(call->pg);
        if (rc == CM_OK) {
            CM_INFO("workspace %s deleted by %s", ws, call->actor);
            cm_rpc_reply(call, out);
            return;
        }
        cJSON_Delete(out);
    }
    cm_pg_rollback(call->pg);
    cm_rpc_fail(call, "unavailable", "the workspace could not be deleted");
}

/* Runs a DELETE of at most BATCH rows until none is left; adds the count to *n. */
static int delete_batches(struct cm_pg *pg, const char *sql, int nparams, const char *const *params,
                          long *n)
{
    for (;;) {
        int rc = cm_pg_exec(pg, sql, nparams, params);
        if (rc != CM_OK)
            return rc;
        if (cm_pg_affected(pg) == 0)
            return CM_OK;
        *n += cm_pg_affected(pg);
    }
}

/*
 * Marks the scope's routes 'purging' and shreds its keys, in one transaction. The background
 * writers that seal under an integration's key (profile.c, media_fetch.c) take their route
 * row FOR SHARE and require it not purging: one that began before waits out this UPDATE's
 * lock (and its key, if it created one, is shredded here), one that comes after finds the
 * route purging and seals nothing. Without it, a profile fetched during the purge would
 * create the integration's key again after its shred.
 */
static int shred_scope(struct router *r, struct cm_pg *pg, enum cm_key_scope scope, const char *id,
                       long *keys, long *marked)
{
    const char *params[1] = {id};
    long shredded = 0;
    int rc = cm_pg_begin(pg);

    if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        scope == CM_KEY_SCOPE_WORKSPACE
                            ? "UPDATE routes SET status = 'purging' WHERE workspace_id = $1"
                            : "UPDATE routes SET status = 'purging' WHERE integration_id = $1",
                        1, params);
    if (rc == CM_OK && marked != NULL)
        *marked += cm_pg_affected(pg);
    if (rc == CM_OK)
        rc = cm_keyring_shred_scope(r->keyring, pg, scope, id, &shredded);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    *keys += shredded;
    return CM_OK;
}

/* Purges the dead letters of the accounts of the routes selected by sql (one parameter). */
static int purge_dead_letters(struct router *r, struct cm_pg *pg, const char *sql,
                              const char *param)
{
    const char *params[1] = {param};
    int rc = cm_pg_exec(pg, sql, 1, params);

    for (int i = 0; rc == CM_OK && i < cm_pg_ntuples(pg); i++) {
        char filter[200];
        jsOptions o;
        jsErrCode jerr = 0;
        natsStatus s;

        snprintf(filter, sizeof(filter), "router.dead.inbound.%s.%s", cm_pg_value(pg, i, 0),
                 cm_pg_value(pg, i, 1));
        jsOptions_Init(&o);
        o.Stream.Purge.Subject = filter;
        s = js_PurgeStream(cm_nats_js(r->svc.nats), ROUTER_DEAD_STREAM, &o, &jerr);
        if (s != NATS_OK && s != NATS_NOT_FOUND) {
            CM_WARN("purge: dead letters of %s: %s (%d)", filter, natsStatus_GetText(s), (int)jerr);
            rc = CM_UNAVAIL;
        }
    }
    return rc;
}

struct counts {
    long contacts, conversations, messages, attachments, keys;
    long left_contacts, left_conversations, left_messages, left_attachments;
};

/* The statements of one purge scope; each takes the scope's id as $1. */
struct scope_sql {
    const char *accounts;    /* the accounts (platform, account_id) of its routes */
    const char *attachments; /* batch deletes, children first (media goes with them) */
    const char *messages;
    const char *conversations;
    const char *contacts;
    const char *routes;
    const char *left; /* what remains: contacts, conversations, messages, attachments */
};

static const struct scope_sql by_workspace = {
    "SELECT DISTINCT platform, account_id FROM routes WHERE workspace_id = $1",
    "DELETE FROM attachments WHERE id IN (SELECT id FROM attachments WHERE workspace_id = $1"
    " LIMIT " BATCH ")",
    "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE workspace_id = $1"
    " LIMIT " BATCH ")",
    "DELETE FROM conversations WHERE id IN (SELECT id FROM conversations"
    " WHERE workspace_id = $1 LIMIT " BATCH ")",
    "DELETE FROM contacts WHERE id IN (SELECT id FROM contacts WHERE workspace_id = $1"
    " LIMIT " BATCH ")",
    "DELETE FROM routes WHERE workspace_id = $1",
    "SELECT (SELECT count(*) FROM contacts WHERE workspace_id = $1),"
    " (SELECT count(*) FROM conversations WHERE workspace_id = $1),"
    " (SELECT count(*) FROM messages WHERE workspace_id = $1),"
    " (SELECT count(*) FROM attachments WHERE workspace_id = $1)",
};

static const struct scope_sql by_integration = {
    "SELECT DISTINCT platform, account_id FROM routes WHERE integration_id = $1",
    "DELETE FROM attachments WHERE id IN (SELECT id FROM attachments WHERE integration_id = $1"
    " LIMIT " BATCH ")",
    "DELETE FROM messages WHERE id IN (SELECT m.id FROM messages m JOIN conversations c"
    " ON c.id = m.conversation_id WHERE c.integration_id = $1 LIMIT " BATCH ")",
    "DELETE FROM conversations WHERE id IN (SELECT id FROM conversations"
    " WHERE integration_id = $1 LIMIT " BATCH ")",
    "DELETE FROM contacts WHERE id IN (SELECT id FROM contacts WHERE integration_id = $1"
    " LIMIT " BATCH ")",
    "DELETE FROM routes WHERE integration_id = $1",
    "SELECT (SELECT count(*) FROM contacts WHERE integration_id = $1),"
    " (SELECT count(*) FROM conversations WHERE integration_id = $1),"
    " (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    " WHERE c.integration_id = $1),"
    " (SELECT count(*) FROM attachments WHERE integration_id = $1)",
};

/*
 * Deletes the rows of a scope whose keys are already destroyed: dead letters (their
 * subjects carry the account id), then messages, conversations, contacts in batches, then
 * routes; then counts what is left.
 */
static int purge_rows(struct router *r, struct cm_pg *pg, const struct scope_sql *q, const char *id,
                      struct counts *c)
{
    const char *params[1] = {id};
    int rc = purge_dead_letters(r, pg, q->accounts, id);

    if (rc == CM_OK)
        rc = delete_batches(pg, q->attachments, 1, params, &c->attachments);
    if (rc == CM_OK)
        rc = delete_batches(pg, q->messages, 1, params, &c->messages);
    if (rc == CM_OK)
        rc = delete_batches(pg, q->conversations, 1, params, &c->conversations);
    if (rc == CM_OK)
        rc = delete_batches(pg, q->contacts, 1, params, &c->contacts);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, q->routes, 1, params);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, q->left, 1, params);
    if (rc == CM_OK) {
        c->left_contacts += atol(cm_pg_value(pg, 0, 0));
        c->left_conversations += atol(cm_pg_value(pg, 0, 1));
        c->left_messages += atol(cm_pg_value(pg, 0, 2));
        c->left_attachments += atol(cm_pg_value(pg, 0, 3));
    }
    return rc;
}

static int purge_workspace(struct router *r, struct cm_pg *pg, const char *ws, struct counts *c)
{
    const char *params[1] = {ws};
    int rc;

    /* Keys first: from here on nothing of the workspace can be read, whatever remains. */
    rc = shred_scope(r, pg, CM_KEY_SCOPE_WORKSPACE, ws, &c->keys, NULL);
    router_keys_forget(r, ws);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "DELETE FROM index_keys WHERE workspace_id = $1", 1, params);
    if (rc == CM_OK)
        rc = purge_rows(r, pg, &by_workspace, ws, c);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "DELETE FROM members WHERE workspace_id = $1", 1, params);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "DELETE FROM workspaces WHERE id = $1 AND status = 'deleted'", 1,
                        params);
    return rc;
}

/*
 * Purges integrations: each one's keys (the rest of the workspace stays readable) and routes
 * first, then their rows. An inbound worker trusts a cached route for ROUTER_ROUTE_TTL_S, so an
 * event of an integration that was live a moment ago (a data deletion ends it just before) may
 * still be stored that long after its route is marked purging: the rows go only once every
 * such cache has expired, so what was stored meanwhile goes with the rest instead of being
 * left after the count. A repeated purge that finds routes to mark waits again; one that finds
 * none (the first deleted them) does not.
 */
static int purge_integrations(struct router *r, struct cm_pg *pg, const cJSON *ids,
                              struct counts *c)
{
    const cJSON *id;
    long marked = 0;
    int rc = CM_OK;

    cJSON_ArrayForEach(id, ids)
    {
        if (rc == CM_OK)
            rc = shred_scope(r, pg, CM_KEY_SCOPE_INTEGRATION, id->valuestring, &c->keys, &marked);
    }
    if (rc == CM_OK && marked > 0) {
        struct timespec ts = {ROUTER_ROUTE_TTL_S + 1, 0};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    cJSON_ArrayForEach(id, ids)
    {
        if (rc == CM_OK)
            rc = purge_rows(r, pg, &by_integration, id->valuestring, c);
    }
    return rc;
}

static void on_purge(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *scope = cm_rpc_str(call, "scope");
    const char *ws = cm_rpc_str(call, "workspace_id");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(call->req, "integration_ids");
    struct counts c = {0};
    cJSON *out, *deleted, *remaining;
    int rc = CM_OK;

    if (scope != NULL && strcmp(scope, "workspace") == 0 && ws != NULL) {
        if (!cm_id_valid(ws, 128)) {
            cm_rpc_fail(call, "invalid", "workspace_id is not an id");
            return;
        }
        rc = purge_workspace(r, call->pg, ws, &c);
    } else if (scope != NULL && strcmp(scope, "integration") == 0 && cJSON_IsArray(ids)) {
        const cJSON *id;
        /* All or nothing: one malformed id refuses the request before anything is shred. */
        cJSON_ArrayForEach(id, ids)
        {
            if (!cJSON_IsString(id) || !cm_id_valid(id->valuestring, 64)) {
                cm_rpc_fail(call, "invalid", "integration_ids holds something that is not an id");
                return;
            }
        }
        rc = purge_integrations(r, call->pg, ids, &c);
    } else if (scope == NULL || strcmp(scope, "due") != 0) {
        cm_rpc_fail(call, "invalid",
                    "scope must be workspace (with workspace_id), integration"
                    " (with integration_ids) or due");
        return;
    }
    /* Their S3 objects leave the bucket now, not at the next sweep's round (even when the
     * purge was interrupted: what it deleted is doomed already). */
    if (c.attachments > 0)
        router_media_sweep_soon(r);
    if (rc == CM_OK && (c.messages || c.conversations || c.contacts || c.attachments))
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "purge", ws ? ws : "integrations");
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "purge interrupted: %s; repeat it", cm_err_str(rc));
        return;
    }
    if (c.messages || c.conversations || c.contacts || c.attachments)
        CM_INFO("purge (%s) by %s: %ld messages, %ld attachments, %ld conversations, %ld contacts,"
                " %ld keys",
                scope, call->actor, c.messages, c.attachments, c.conversations, c.contacts, c.keys);
    out = cJSON_CreateObject();
    deleted = cJSON_AddObjectToObject(out, "deleted");
    cJSON_AddNumberToObject(deleted, "contacts", (double)c.contacts);
    cJSON_AddNumberToObject(deleted, "conversations", (double)c.conversations);
    cJSON_AddNumberToObject(deleted, "messages", (double)c.messages);
    cJSON_AddNumberToObject(deleted, "attachments", (double)c.attachments);
    remaining = cJSON_AddObjectToObject(out, "remaining");
    cJSON_AddNumberToObject(remaining, "contacts", (double)c.left_contacts);
    cJSON_AddNumberToObject(remaining, "conversations", (double)c.left_conversations);
    cJSON_AddNumberToObject(remaining, "messages", (double)c.left_messages);
    cJSON_AddNumberToObject(remaining, "attachments", (double)c.left_attachments);
    cm_rpc_reply(call, out);
}

void router_purge_register(struct router *r)
{
    cm_rpc_handle(r->rpc, "router.workspace.delete", on_workspace_delete, r);
    cm_rpc_handle(r->rpc, "router.purge", on_purge, r);
    /* The reaper passes on who asked it to delete a workspace. */
    cm_rpc_delegate(r->rpc, "router.workspace.delete", "retention-reaper");
}
