/*
 * read.c - ai.suggestion.get: one stored suggestion, its draft opened, for the screens that
 * show it and for conversation-router, which compares a reply with the draft it came from
 * (an unedited AI draft is never sent with the HUMAN_AGENT tag).
 *
 * ai-suggest holds no roles: whether the actor may see the workspace's suggestions is
 * conversation-router's answer to router.workspace.get for that actor (a member, any role).
 * Every read is an audit event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"
#include "common/audit.h"
#include "common/log.h"

#define AUTH_TIMEOUT_MS 10000

#define SELECT_SQL                                                                                 \
    "SELECT workspace_id, conversation_id, provider, model, text_sealed, audio_bytes,"             \
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), key_id"         \
    " FROM suggestions WHERE id = $1"

/*
 * Asks conversation-router whether actor may read workspace ws. Returns true, or false
 * after replying to call with the router's refusal (or "unavailable").
 */
static bool authorized(struct ai *ai, struct cm_rpc_call *call, const char *ws)
{
    cJSON *req = cJSON_CreateObject(), *reply = NULL;
    bool ok;

    cJSON_AddStringToObject(req, "workspace_id", ws);
    ok = cm_rpc_ask(call, ai->svc.nats, "conversation-router", "router.workspace.get", req,
                    AUTH_TIMEOUT_MS, &reply) != NULL;
    cJSON_Delete(reply);
    return ok;
}

/* Opens the draft sealed under key id kid into text (the caller wipes it). */
static int open_draft(struct ai *ai, struct cm_pg *pg, const char *id, const char *kid,
                      const char *sealed_hex, struct cm_buf *text)
{
    char aad[96];
    unsigned char *raw;
    size_t raw_len = 0;
    int rc;

    raw = PQunescapeBytea((const unsigned char *)sealed_hex, &raw_len);
    if (raw == NULL)
        return CM_ERR;
    snprintf(aad, sizeof(aad), "ai.suggestions.text:%s", id);
    rc = cm_keyring_open(ai->keyring, pg, kid, aad, raw, raw_len, text);
    PQfreemem(raw);
    return rc;
}

static void on_get(struct cm_rpc_call *call, void *arg)
{
    struct ai *ai = arg;
    const char *id = cm_rpc_str(call, "suggestion_id");
    const char *params[1] = {id};
    char *row[8] = {NULL};
    struct cm_buf text;
    cJSON *out;
    int rc;

    if (!ai_valid_id(id, 64)) {
        cm_rpc_fail(call, "invalid", "suggestion_id is required");
        return;
    }
    if (cm_pg_exec(call->pg, SELECT_SQL, 1, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "ai-suggest's database is unavailable");
        return;
    }
    if (cm_pg_ntuples(call->pg) == 0) {
        cm_rpc_fail(call, "not_found", "no suggestion %s", id);
        return;
    }
    /* Copied: the keyring's queries on this connection replace the result. */
    for (int i = 0; i < 8; i++)
        row[i] = cm_pg_is_null(call->pg, 0, i) ? NULL : cm_xstrdup(cm_pg_value(call->pg, 0, i));
    cm_buf_init(&text);
    if (!authorized(ai, call, row[0]))
        goto done;
    rc = cm_pg_begin(call->pg);
    if (rc == CM_OK)
        rc = open_draft(ai, call->pg, id, row[7], row[4], &text);
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, AI_SERVICE, call->actor, "suggestion.read", id);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        if (rc == CM_NOTFOUND)
            cm_rpc_fail(call, "not_found", "suggestion %s was purged", id);
        else
            cm_rpc_fail(call, "unavailable", "the suggestion cannot be read now (%s)",
                        cm_err_str(rc));
        goto done;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "suggestion_id", id);
    cJSON_AddStringToObject(out, "conversation_id", row[1]);
    cJSON_AddStringToObject(out, "workspace_id", row[0]);
    cJSON_AddStringToObject(out, "text", text.data != NULL ? text.data : "");
    cJSON_AddStringToObject(out, "provider", row[2]);
    cJSON_AddStringToObject(out, "model", row[3]);
    cJSON_AddStringToObject(out, "created_at", row[6]);
    cJSON_AddBoolToObject(out, "voice", row[5] != NULL);
    if (row[5] != NULL)
        cJSON_AddNumberToObject(out, "audio_bytes", atof(row[5]));
    cm_rpc_reply(call, out);
done:
    cm_buf_wipe(&text);
    for (int i = 0; i < 8; i++)
        free(row[i]);
}

void ai_read_register(struct ai *ai)
{
    cm_rpc_handle(ai->rpc, "ai.suggestion.get", on_get, ai);
    /* The router reads a suggestion for whoever replies with it. */
    cm_rpc_delegate(ai->rpc, "ai.suggestion.get", "conversation-router");
}
