/*
 * api.c - token-vault's NATS request subjects (proto/vault.md). Each handler runs on an
 * rpc worker with its own PostgreSQL connection; Meta calls happen outside transactions.
 */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/audit.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/metrics.h"
#include "store.h"
#include "vault.h"

/* Services with a reason to hold a token: they send or draft on the business's behalf. */
static const char *const token_requesters[] = {"conversation-router", "ai-suggest", NULL};

static bool valid_id(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.' && c != ':')
            return false;
    }
    return n > 0 && n <= max;
}

static void rfc3339(int64_t epoch, char out[32])
{
    time_t t = (time_t)epoch;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void new_id(char out[32])
{
    unsigned char raw[12];
    char hex[25];

    cm_crypto_random(raw, sizeof(raw));
    cm_hex_encode(raw, sizeof(raw), hex);
    snprintf(out, 32, "int_%s", hex);
}

/* Reports a Meta failure as the caller should see it. */
static void fail_meta(struct cm_rpc_call *call, int rc, const char *why)
{
    cm_rpc_fail(call, rc == CM_DENIED ? "refused" : "unavailable", "%s", why);
}

/* Who connected: the blind index of their app-scoped user id, and who said it. */
struct connector {
    char blind[VAULT_BLIND_LEN];
    const char *source; /* "meta" (GET /me) or "operator" (--asid) */
};

/* Writes the new or renewed integration and its token in one transaction. */
static int save_connection(struct vault *v, struct cm_pg *pg, const char *id, bool existing,
                           const char *ws, const char *platform, const char *account,
                           const struct connector *who, const struct vault_token *tok,
                           const char *actor)
{
    const char *params[6] = {id, ws, platform, account, who->blind, who->source};
    int rc = vault_begin(pg);

    if (rc == CM_OK && existing) {
        const char *renew[3] = {id, who->blind, who->source};
        rc = cm_pg_exec(pg,
                        "UPDATE integrations SET status = 'connected', asid_blind = $2,"
                        " asid_source = $3, updated_at = now(), last_checked_at = now(),"
                        " last_error = NULL, retry_after = NULL WHERE id = $1",
                        3, renew);
    } else if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        "INSERT INTO integrations (id, workspace_id, platform, account_id,"
                        " asid_blind, asid_source, last_checked_at)"
                        " VALUES ($1, $2, $3, $4, $5, $6, now())",
                        6, params);
    if (rc == CM_OK) {
        const char *conn[3] = {id, who->blind, who->source};
        rc = cm_pg_exec(pg,
                        "INSERT INTO connectors (integration_id, asid_blind, source)"
                        " VALUES ($1, $2, $3) ON CONFLICT (integration_id, asid_blind)"
                        " DO UPDATE SET source = excluded.source, connected_at = now()",
                        3, conn);
    }
    if (rc == CM_OK)
        rc = vault_store_token(v, pg, id, tok);
    if (rc == CM_OK)
        rc = vault_store_event(pg, id);
    if (rc == CM_OK)
        rc = cm_audit_add(pg, VAULT_SERVICE, actor, "integration.connect", id);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    return rc;
}

/*
 * Learns who connected: the operator's --asid when given (an override), else Meta's answer
 * to GET /me with the person's own token. False after answering the call with the failure.
 */
static bool learn_connector(struct cm_rpc_call *call, struct vault *v, const char *platform,
                            const char *given, const struct vault_token *user,
                            struct connector *who)
{
    char asid[VAULT_ASID_LEN], why[640];
    int rc, meta_code = 0;

    if (given != NULL) {
        snprintf(asid, sizeof(asid), "%s", given);
        who->source = "operator";
    } else {
        rc = vault_meta_whoami(v->cfg, NULL, platform, user->token, asid, &meta_code, why,
                               sizeof(why));
        if (rc != CM_OK) {
            char full[700];
            snprintf(full, sizeof(full), "Meta did not say who connected (GET /me): %s", why);
            fail_meta(call, rc, full);
            return false;
        }
        who->source = "meta";
    }
    rc = vault_asid_blind(v, call->pg, asid, who->blind);
    sodium_memzero(asid, sizeof(asid));
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the vault's index key is unavailable: %s",
                    cm_err_str(rc));
        return false;
    }
    return true;
}

static void on_connect(struct cm_rpc_call *call, void *arg)
{
    struct vault *v = arg;
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *platform = cm_rpc_str(call, "platform");
    const char *account = cm_rpc_str(call, "account_id");
    const char *token = cm_rpc_str(call, "token");
    const char *asid = cm_rpc_str(call, "asid");
    struct vault_token tok = {0}, user = {0};
    struct connector who;
    char id[32], why[640], expires[32];
    bool existing = false;
    int rc, meta_code = 0;
    cJSON *out;

    if (!valid_id(ws, 128) || !valid_id(account, 64) || (asid && !valid_id(asid, 64)) ||
        token == NULL || *token == '\0' || strlen(token) > 4096 || platform == NULL ||
        (strcmp(platform, "instagram") != 0 && strcmp(platform, "messenger") != 0)) {
        cm_rpc_fail(call, "invalid",
                    "workspace_id, platform (instagram|messenger), account_id and token are "
                    "required and must be well-formed");
        return;
    }
    if (!vault_authorize(v, call, ws, "admin", true))
        return;
    {
        const char *params[2] = {platform, account};
        rc = cm_pg_exec(call->pg,
                        "SELECT id, workspace_id FROM integrations WHERE platform = $1 AND"
                        " account_id = $2 AND status IN ('connected', 'needs_reauth')",
                        2, params);
        if (rc != CM_OK) {
            cm_rpc_fail(call, "unavailable", "the vault's database is unavailable");
            return;
        }
        if (cm_pg_ntuples(call->pg) > 0) {
            if (strcmp(cm_pg_value(call->pg, 0, 1), ws) != 0) {
                cm_rpc_fail(call, "conflict",
                            "this %s account is already connected to another workspace", platform);
                return;
            }
            snprintf(id, sizeof(id), "%s", cm_pg_value(call->pg, 0, 0));
            existing = true;
        } else {
            new_id(id);
        }
    }

    /* Meta first: nothing is stored unless the exchange succeeded. */
    if (strcmp(platform, "instagram") == 0)
        rc = vault_meta_exchange_instagram(v->cfg, NULL, token, &tok, &meta_code, why, sizeof(why));
    else
        rc = vault_meta_exchange_page(v->cfg, NULL, account, token, &tok, &user, &meta_code, why,
                                      sizeof(why));
    if (rc != CM_OK) {
        fail_meta(call, rc, why);
        return;
    }
    /* Instagram's token is the person's own; a Page token's person is its user token's. */
    if (!learn_connector(call, v, platform, asid, user.token != NULL ? &user : &tok, &who)) {
        vault_token_clear(&user);
        vault_token_clear(&tok);
        return;
    }
    vault_token_clear(&user);

    rc = save_connection(v, call->pg, id, existing, ws, platform, account, &who, &tok, call->actor);
    if (rc == CM_CONFLICT) {
        cm_rpc_fail(call, "conflict", "this %s account was connected meanwhile", platform);
    } else if (rc != CM_OK) {
        cm_rpc_fail(call, cm_rpc_code(rc), "the integration could not be stored: %s",
                    cm_err_str(rc));
    } else {
        char swhy[640];
        bool subscribed;
        CM_INFO("integration %s connected (%s) by %s", id, platform, call->actor);
        /* Meta sends nothing until the account is subscribed; a failure leaves the
         * integration connected and the reconciliation pass trying again. */
        subscribed = vault_subscription_make(v, call->pg, NULL, id, platform, account, tok.token,
                                             swhy, sizeof(swhy)) == CM_OK;
        out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "integration_id", id);
        cJSON_AddStringToObject(out, "connected_by", who.source);
        cJSON_AddBoolToObject(out, "subscribed", subscribed);
        if (!subscribed)
            cJSON_AddStringToObject(out, "subscription_error", swhy);
        if (tok.expires_at != 0) {
            rfc3339(tok.expires_at, expires);
            cJSON_AddStringToObject(out, "expires_at", expires);
        } else {
            cJSON_AddNullToObject(out, "expires_at");
        }
        cm_rpc_reply(call, out);
    }
    vault_token_clear(&tok);
}

/* Ends one integration with the given status; repeating it answers the current state. */
static void end_one(struct cm_rpc_call *call, struct vault *v, const char *status,
                    const char *action)
{
    const char *id = cm_rpc_str(call, "integration_id");
    const char *params[1] = {id};
    long tokens = 0;
    cJSON *out;
    int rc;

    if (!valid_id(id, 64)) {
        cm_rpc_fail(call, "invalid", "integration_id is required");
        return;
    }
    /* A disconnect stops Meta's webhooks too; after a deauthorization Meta already has. */
    if (strcmp(status, "disconnected") == 0)
        vault_subscription_end(v, call->pg, NULL, id);
    rc = vault_store_end(v, call->pg, id, status, call->actor, action, &tokens);
    if (rc == CM_NOTFOUND) {
        cm_rpc_fail(call, "not_found", "no integration %s", id);
        return;
    }
    if (rc != CM_OK && rc != CM_CONFLICT) {
        cm_rpc_fail(call, cm_rpc_code(rc), "the integration could not be ended: %s",
                    cm_err_str(rc));
        return;
    }
    if (cm_pg_exec(call->pg, "SELECT status FROM integrations WHERE id = $1", 1, params) != CM_OK ||
        cm_pg_ntuples(call->pg) == 0) {
        cm_rpc_fail(call, "unavailable", "the vault's database is unavailable");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "integration_id", id);
    cJSON_AddStringToObject(out, "status", cm_pg_value(call->pg, 0, 0));
    /* What this call deleted, for a deletion's counts (the reaper ends integrations first). */
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(out, "deleted"), "tokens", (double)tokens);
    CM_INFO("integration %s %s by %s", id, cm_pg_value(call->pg, 0, 0), call->actor);
    cm_rpc_reply(call, out);
}

/*
 * The workspace and status of integration id, into ws and status; false (the call answered)
 * when id is malformed or unknown, or the vault's database does not answer.
 */
static bool integration_of(struct cm_rpc_call *call, const char *id, char ws[160], char status[32])
{
    const char *params[1] = {id};

    if (!valid_id(id, 64)) {
        cm_rpc_fail(call, "invalid", "integration_id is required");
        return false;
    }
    if (cm_pg_exec(call->pg, "SELECT workspace_id, status FROM integrations WHERE id = $1", 1,
                   params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the vault's database is unavailable");
        return false;
    }
    if (cm_pg_ntuples(call->pg) == 0) {
        cm_rpc_fail(call, "not_found", "no integration %s", id);
        return false;
    }
    snprintf(ws, 160, "%s", cm_pg_value(call->pg, 0, 0));
    snprintf(status, 32, "%s", cm_pg_value(call->pg, 0, 1));
    return true;
}

static void on_disconnect(struct cm_rpc_call *call, void *arg)
{
    char ws[160], status[32];

    /* Admins end an integration, also of a deleted workspace (its deletion does). */
    if (!integration_of(call, cm_rpc_str(call, "integration_id"), ws, status) ||
        !vault_authorize(arg, call, ws, "admin", false))
        return;
    end_one(call, arg, "disconnected", "integration.disconnect");
}

/* The reconciliation of one integration now (the scheduled pass does the same). */
static void on_check(struct cm_rpc_call *call, void *arg)
{
    struct vault *v = arg;
    const char *id = cm_rpc_str(call, "integration_id");
    bool subscribed, resubscribed;
    char why[640], ws[160], status[32];
    cJSON *out, *job = NULL;
    int rc;

    if (!integration_of(call, id, ws, status) || !vault_authorize(v, call, ws, "admin", false))
        return;
    if (strcmp(status, "connected") != 0) {
        cm_rpc_fail(call, "refused", "integration %s is %s: nothing to reconcile", id, status);
        return;
    }
    /* It may store what Meta holds (the backfill): audited before anything is done. */
    if (cm_audit_add(call->pg, VAULT_SERVICE, call->actor, "integration.check", id) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the check could not be audited; nothing done");
        return;
    }
    rc = vault_subscription_check(v, call->pg, NULL, id, &subscribed, &resubscribed, why,
                                  sizeof(why));
    if (rc != CM_OK) {
        fail_meta(call, rc, why);
        return;
    }
    CM_INFO("integration %s checked by %s: %s", id, call->actor,
            resubscribed ? "subscribed again" : "subscribed");
    /* Then what Meta holds that no webhook brought: the router's job, waited for a while. */
    rc = vault_backfill_ask(v, id, VAULT_BACKFILL_WAIT_MS, &job, why, sizeof(why));
    if (rc != CM_OK)
        CM_WARN("integration %s: no backfill: %s", id, why);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "integration_id", id);
    cJSON_AddBoolToObject(out, "subscribed", subscribed);
    cJSON_AddBoolToObject(out, "resubscribed", resubscribed);
    /* The messages stored by the backfill so far: all of them once its state is "done". */
    cJSON_AddNumberToObject(
        out, "backfilled",
        job ? cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(job, "stored")) : 0);
    if (job != NULL) {
        const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "state"));
        const char *error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "error"));
        cJSON_AddStringToObject(out, "backfill", state ? state : "unknown");
        if (error != NULL)
            cJSON_AddStringToObject(out, "backfill_error", error);
        else
            cJSON_AddNullToObject(out, "backfill_error");
    } else {
        cJSON_AddStringToObject(out, "backfill", "unavailable");
        cJSON_AddStringToObject(out, "backfill_error", why);
    }
    cJSON_Delete(job);
    cm_rpc_reply(call, out);
}

#define ACTIVITY_TIMEOUT_MS 2000

/*
 * Adds last_event_at to each integration of list: Meta's time of the last message a
 * contact sent through it, which conversation-router knows (router.integration.activity).
 * Without an answer the list is still given, with null and a warning in the log.
 */
static void add_activity(struct vault *v, cJSON *list)
{
    cJSON *req = cJSON_CreateObject(), *ids = cJSON_AddArrayToObject(req, "integration_ids");
    cJSON *reply = NULL, *it;
    const cJSON *result = NULL;
    natsMsg *msg = NULL;
    natsStatus s;
    char *body;

    cJSON_AddStringToObject(req, "actor", VAULT_SERVICE);
    cJSON_ArrayForEach(it, list)
    {
        cJSON_AddItemToArray(ids, cJSON_CreateString(cJSON_GetStringValue(
                                      cJSON_GetObjectItem(it, "integration_id"))));
    }
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    s = cJSON_GetArraySize(list) > 0
            ? cm_nats_request(&msg, v->svc.nats, "router.integration.activity", body,
                              ACTIVITY_TIMEOUT_MS)
            : NATS_OK;
    cJSON_free(body);
    if (s == NATS_OK && msg != NULL) {
        reply = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
        natsMsg_Destroy(msg);
        result = cJSON_GetObjectItemCaseSensitive(reply, "result");
    }
    if (cJSON_GetArraySize(list) > 0 && !cJSON_IsObject(result))
        CM_WARN("integration list: no activity from conversation-router (%s); last_event_at null",
                s != NATS_OK ? natsStatus_GetText(s) : "an unexpected answer");
    cJSON_ArrayForEach(it, list)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "integration_id"));
        const cJSON *at = cJSON_IsObject(result) && id != NULL
                              ? cJSON_GetObjectItemCaseSensitive(result, id)
                              : NULL;
        if (cJSON_IsString(at))
            cJSON_AddStringToObject(it, "last_event_at", at->valuestring);
        else
            cJSON_AddNullToObject(it, "last_event_at");
    }
    cJSON_Delete(reply);
}

static void on_list(struct cm_rpc_call *call, void *arg)
{
    struct vault *v = arg;
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *params[1] = {ws};
    cJSON *list;
    int rc;

    if (!valid_id(ws, 128)) {
        cm_rpc_fail(call, "invalid", "workspace_id is required");
        return;
    }
    if (!vault_authorize(v, call, ws, "viewer", false))
        return;
    /* The accounts (Page and Instagram ids) are Platform Data: the read is audited. */
    if (cm_audit_add(call->pg, VAULT_SERVICE, call->actor, "integrations.list", ws) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the read could not be audited; nothing is shown");
        return;
    }
    rc = cm_pg_exec(call->pg, VAULT_DESCRIBE_SQL " WHERE i.workspace_id = $1 ORDER BY i.created_at",
                    1, params);
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the vault's database is unavailable");
        return;
    }
    list = cJSON_CreateArray();
    for (int i = 0; i < cm_pg_ntuples(call->pg); i++)
        cJSON_AddItemToArray(list, vault_store_describe(call->pg, i));
    add_activity(v, list);
    cm_rpc_reply(call, list);
}

/* The authoritative answer for a router that sees an account it has no route for. */
static void on_lookup(struct cm_rpc_call *call, void *arg)
{
    const char *platform = cm_rpc_str(call, "platform");
    const char *account = cm_rpc_str(call, "account_id");
    const char *params[2] = {platform, account};
    cJSON *out;

    (void)arg;
    if (platform == NULL || !valid_id(account, 64)) {
        cm_rpc_fail(call, "invalid", "platform and account_id are required");
        return;
    }
    if (cm_pg_exec(call->pg,
                   VAULT_DESCRIBE_SQL " WHERE i.platform = $1 AND i.account_id = $2"
                                      " AND i.status IN ('connected', 'needs_reauth')",
                   2, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the vault's database is unavailable");
        return;
    }
    if (cm_pg_ntuples(call->pg) == 0) {
        cm_rpc_fail(call, "not_found", "no live integration for that account");
        return;
    }
    out = vault_store_describe(call->pg, 0);
    cJSON_AddStringToObject(out, "workspace_id", cm_pg_value(call->pg, 0, VAULT_COL_WORKSPACE));
    cm_rpc_reply(call, out);
}

/* Meta's deauthorize callback, relayed by webhook-ingest: every integration of that user. */
static void on_deauthorize(struct cm_rpc_call *call, void *arg)
{
    struct vault *v = arg;
    const char *asid = cm_rpc_str(call, "asid");
    char blind[VAULT_BLIND_LEN];
    const char *params[2] = {blind, asid};
    cJSON *out, *ids;
    char **ending = NULL;
    int n, ended = 0;

    if (!valid_id(asid, 64)) {
        cm_rpc_fail(call, "invalid", "asid is required");
        return;
    }
    if (vault_asid_blind(v, call->pg, asid, blind) != CM_OK ||
        cm_pg_exec(call->pg,
                   "SELECT id FROM integrations WHERE (asid_blind = $1 OR asid = $2)"
                   " AND status IN ('connected', 'needs_reauth')",
                   2, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the vault's database is unavailable");
        return;
    }
    n = cm_pg_ntuples(call->pg);
    ending = cm_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        ending[i] = cm_xstrdup(cm_pg_value(call->pg, i, 0));
    ids = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        int rc = vault_store_end(v, call->pg, ending[i], "revoked", call->actor,
                                 "integration.deauthorize", NULL);
        if (rc == CM_OK || rc == CM_CONFLICT) {
            cJSON_AddItemToArray(ids, cJSON_CreateString(ending[i]));
            ended++;
        } else {
            CM_ERROR("deauthorize: integration %s not revoked: %s", ending[i], cm_err_str(rc));
        }
        free(ending[i]);
    }
    free(ending);
    if (ended < n) {
        cJSON_Delete(ids);
        cm_rpc_fail(call, "unavailable", "not every integration could be revoked; retry");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "revoked", ended);
    cJSON_AddItemToObject(out, "integration_ids", ids);
    cm_rpc_reply(call, out);
}

static bool may_fetch(const char *caller)
{
    for (int i = 0; caller != NULL && token_requesters[i] != NULL; i++) {
        if (strcmp(caller, token_requesters[i]) == 0)
            return true;
    }
    return false;
}

/*
 * Tokens are served in batches (cm_rpc_handle_batch): the requests queued together are read
 * and audited by one statement, so that a burst costs one PostgreSQL round trip and one
 * worker's wake-up rather than one of each per token. Each request keeps its own checks,
 * audit record and answer.
 */
#define TOKEN_BATCH 8

/* One token request of a batch, once its caller and id have passed. */
struct token_req {
    struct cm_rpc_call *call;
    const char *id;
    char *payload; /* its audit event (cJSON_free) */
    char msg_id[48];
    bool found;  /* the integration exists */
    bool served; /* its audit record is written: the token may go */
    char status[24];
    char platform[16];
    char account[80];
    char *sealed; /* the row's sealed token, copied (free) */
    int64_t until;
};

/*
 * The statement for n requests: each row of req is one of them (its place n, the id, its audit
 * event), joined to its integration and token; the audit record is written for each one that
 * may be served, in the same statement (in autocommit, without waiting for the WAL flush:
 * losing the last audit rows in a PostgreSQL crash is the price of a token fetch in one round
 * trip). One answer row for each request whose integration exists.
 */
static char token_sqls[TOKEN_BATCH][2048]; /* [n - 1]: written once, by vault_api_register() */

static void token_sql(char *out, size_t cap, int n)
{
    int len = snprintf(out, cap, "WITH req (n, id, msg_id, payload) AS (VALUES ");

    for (int i = 0; i < n; i++)
        len += snprintf(out + len, cap - (size_t)len, "%s(%d, $%d::text, $%d::text, $%d::text)",
                        i > 0 ? ", " : "", i + 1, 3 * i + 2, 3 * i + 3, 3 * i + 4);
    snprintf(out + len, cap - (size_t)len, "%s",
             "), tok AS (SELECT r.n, r.msg_id, r.payload, i.status, i.platform, i.account_id,"
             " t.sealed, coalesce(extract(epoch FROM t.expires_at)::bigint, 0) AS expires"
             " FROM req r JOIN integrations i ON i.id = r.id"
             " LEFT JOIN tokens t ON t.integration_id = i.id),"
             " aud AS (INSERT INTO outbox (subject, msg_id, payload) SELECT $1, msg_id, payload"
             " FROM tok WHERE status = 'connected' AND sealed IS NOT NULL ORDER BY n"
             " RETURNING msg_id)"
             " SELECT n, status, platform, account_id, sealed, expires,"
             " msg_id IN (SELECT msg_id FROM aud) FROM tok");
}

/* Reads and audits the batch's tokens in one statement; fills each request's row fields. */
static int read_tokens(struct cm_pg *pg, struct token_req *reqs, int n)
{
    static const char *const names[TOKEN_BATCH] = {
        "vault_token_get_1", "vault_token_get_2", "vault_token_get_3", "vault_token_get_4",
        "vault_token_get_5", "vault_token_get_6", "vault_token_get_7", "vault_token_get_8",
    };
    const char *values[1 + 3 * TOKEN_BATCH];
    int rc;

    values[0] = "audit." VAULT_SERVICE;
    for (int i = 0; i < n; i++) {
        values[3 * i + 1] = reqs[i].id;
        values[3 * i + 2] = reqs[i].msg_id;
        values[3 * i + 3] = reqs[i].payload;
    }
    rc = cm_pg_exec_prepared(pg, names[n - 1], token_sqls[n - 1], 1 + 3 * n, values, NULL, NULL);
    if (rc != CM_OK)
        return rc;
    for (int row = 0; row < cm_pg_ntuples(pg); row++) {
        long k = strtol(cm_pg_value(pg, row, 0), NULL, 10);
        struct token_req *t;
        if (k < 1 || k > n)
            return CM_ERR; /* unreachable: n comes from the statement's own VALUES */
        t = &reqs[k - 1];
        t->found = true;
        t->served = strcmp(cm_pg_value(pg, row, 6), "t") == 0;
        snprintf(t->status, sizeof(t->status), "%s", cm_pg_value(pg, row, 1));
        snprintf(t->platform, sizeof(t->platform), "%s", cm_pg_value(pg, row, 2));
        snprintf(t->account, sizeof(t->account), "%s", cm_pg_value(pg, row, 3));
        if (t->served)
            t->sealed = cm_xstrdup(cm_pg_value(pg, row, 4));
        t->until = strtoll(cm_pg_value(pg, row, 5), NULL, 10);
    }
    return CM_OK;
}

/* Answers one request of the batch from its row. */
static void serve_token(struct vault *v, struct token_req *t)
{
    struct cm_rpc_call *call = t->call;
    struct cm_buf tok;
    char expires[32];
    cJSON *out;
    int rc;

    if (!t->found) {
        cm_rpc_fail(call, "not_found", "no integration %s", t->id);
        return;
    }
    if (!t->served) {
        cm_rpc_fail(call, "refused", "integration %s is %s: no token is served", t->id, t->status);
        cm_metrics_inc(v->m_refused, 1);
        return;
    }
    cm_buf_init(&tok);
    rc = vault_open_token_buf(v, call->pg, t->id, t->sealed, &tok);
    if (rc != CM_OK) {
        cm_buf_wipe(&tok);
        CM_ERROR("the token of integration %s does not decrypt: %s", t->id, cm_err_str(rc));
        cm_rpc_fail(call, "refused", "the token of integration %s cannot be served", t->id);
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "integration_id", t->id);
    cJSON_AddStringToObject(out, "token", tok.data);
    {
        char proof[VAULT_PROOF_LEN];
        vault_meta_proof(v->cfg, tok.data, proof);
        cJSON_AddStringToObject(out, "appsecret_proof", proof);
        sodium_memzero(proof, sizeof(proof));
    }
    cm_buf_wipe(&tok);
    cJSON_AddStringToObject(out, "platform", t->platform);
    cJSON_AddStringToObject(out, "account_id", t->account);
    if (t->until) {
        rfc3339(t->until, expires);
        cJSON_AddStringToObject(out, "expires_at", expires);
    } else {
        cJSON_AddNullToObject(out, "expires_at");
    }
    cm_metrics_inc(v->m_served, 1);
    cm_rpc_reply_secret(call, out);
}

/* Serves tokens: only to the two services that send, only while connected, audited. */
static void on_token_get(struct cm_rpc_call *const *calls, int n, void *arg)
{
    struct vault *v = arg;
    struct token_req reqs[TOKEN_BATCH];
    int m = 0, rc;

    for (int i = 0; i < n; i++) {
        struct cm_rpc_call *call = calls[i];
        const char *id = cm_rpc_str(call, "integration_id");
        struct token_req *t = &reqs[m];
        /* Who asks is known from the server (the subject space it may publish on), never
         * from the body: nats-server lets only these two identities request this subject,
         * and this check holds even against a server configured too loosely. */
        if (!may_fetch(call->caller)) {
            cm_metrics_inc(v->m_refused, 1);
            cm_rpc_fail(call, "denied", "only conversation-router and ai-suggest may fetch tokens");
            continue;
        }
        if (!valid_id(id, 64)) {
            cm_rpc_fail(call, "invalid", "integration_id is required");
            continue;
        }
        memset(t, 0, sizeof(*t));
        t->call = call;
        t->id = id;
        if (cm_audit_event(VAULT_SERVICE, call->caller, "token.served", id, &t->payload,
                           t->msg_id) != CM_OK) {
            cm_rpc_fail(call, "unavailable", "the token's audit record could not be made");
            continue;
        }
        m++;
    }
    if (m == 0)
        return;
    rc = read_tokens(calls[0]->pg, reqs, m);
    for (int i = 0; i < m; i++) {
        if (rc == CM_OK)
            serve_token(v, &reqs[i]);
        else
            cm_rpc_fail(reqs[i].call, "unavailable", "the vault's database is unavailable");
        cJSON_free(reqs[i].payload);
        free(reqs[i].sealed);
    }
}

static void on_refresh_run(struct cm_rpc_call *call, void *arg)
{
    struct vault_refresh_counts counts = {0};
    cJSON *out;

    if (cm_audit_add(call->pg, VAULT_SERVICE, call->actor, "refresh.run", "integrations") !=
        CM_OK) {
        cm_rpc_fail(call, "unavailable", "the pass could not be audited; nothing done");
        return;
    }
    out = cJSON_CreateObject();
    vault_refresh_pass(arg, call->pg, NULL, &counts);
    cJSON_AddNumberToObject(out, "subscriptions_checked",
                            (double)vault_subscription_pass(arg, call->pg, NULL));
    cJSON_AddNumberToObject(out, "refreshed", (double)counts.refreshed);
    cJSON_AddNumberToObject(out, "checked", (double)counts.checked);
    cJSON_AddNumberToObject(out, "needs_reauth", (double)counts.needs_reauth);
    cJSON_AddNumberToObject(out, "failed", (double)counts.failed);
    cm_rpc_reply(call, out);
}

void vault_api_register(struct vault *v)
{
    /* Each of these waits on Meta's API (up to its 10 s timeout per call; a disconnect ends
     * the webhook subscription): a lane of their own, so that tokens are served whatever Meta
     * does. vault.purge is there too (purge.c). */
    cm_rpc_handle(v->meta_rpc, "vault.integration.connect", on_connect, v);
    cm_rpc_handle(v->meta_rpc, "vault.integration.check", on_check, v);
    cm_rpc_handle(v->meta_rpc, "vault.refresh.run", on_refresh_run, v);
    cm_rpc_handle(v->meta_rpc, "vault.integration.disconnect", on_disconnect, v);
    cm_rpc_handle(v->rpc, "vault.integration.list", on_list, v);
    cm_rpc_handle(v->rpc, "vault.integration.lookup", on_lookup, v);
    cm_rpc_handle(v->rpc, "vault.integration.deauthorize", on_deauthorize, v);
    for (int n = 1; n <= TOKEN_BATCH; n++)
        token_sql(token_sqls[n - 1], sizeof(token_sqls[n - 1]), n);
    cm_rpc_handle_batch(v->rpc, "vault.token.get", on_token_get, v, TOKEN_BATCH);
    /* The reaper disconnects a deleted workspace's integrations for whoever deleted it. */
    cm_rpc_delegate(v->rpc, "vault.integration.list", "retention-reaper");
    cm_rpc_delegate(v->meta_rpc, "vault.integration.disconnect", "retention-reaper");
}
