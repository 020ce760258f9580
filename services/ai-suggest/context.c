/*
 * context.c - router.conversation.context: asking conversation-router for a conversation's
 * newest messages, and reading its answer defensively (see context.h).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "context.h"

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Copies an error code the contract knows; anything else becomes "internal". */
static void contract_code(const char *c, char *out, size_t cap)
{
    static const char *const codes[] = {"invalid",     "denied", "not_found", "conflict", "refused",
                                        "unavailable", "busy",   "internal",  NULL};

    for (int i = 0; c != NULL && codes[i] != NULL; i++) {
        if (strcmp(c, codes[i]) == 0) {
            snprintf(out, cap, "%s", c);
            return;
        }
    }
    snprintf(out, cap, "internal");
}

static int malformed(struct ai_context *ctx, char *code, size_t ccap, char *why, size_t cap,
                     const char *what)
{
    ai_context_cleanup(ctx);
    snprintf(code, ccap, "internal");
    snprintf(why, cap, "conversation-router answered a malformed context (%s)", what);
    return CM_INVALID;
}

int ai_context_parse(struct ai_context *ctx, const char *reply, size_t len, char *code, size_t ccap,
                     char *why, size_t cap)
{
    const cJSON *res, *err, *ids, *msgs, *m, *flag;
    size_t n = 0, skip;

    ai_context_cleanup(ctx);
    ctx->root = cJSON_ParseWithLength(reply != NULL ? reply : "", reply != NULL ? len : 0);
    err = cJSON_GetObjectItemCaseSensitive(ctx->root, "error");
    if (cJSON_IsObject(err)) {
        const char *message = str(err, "message");
        contract_code(str(err, "code"), code, ccap);
        /* The router's own words: "AI assistance is off for this workspace", say. */
        snprintf(why, cap, "%s", message != NULL ? message : "conversation-router refused");
        ai_context_cleanup(ctx);
        return CM_DENIED;
    }
    res = cJSON_GetObjectItemCaseSensitive(ctx->root, "result");
    if (!cJSON_IsObject(res))
        return malformed(ctx, code, ccap, why, cap, "no result");
    ctx->conversation_id = str(res, "conversation_id");
    ctx->workspace_id = str(res, "workspace_id");
    ctx->integration_id = str(res, "integration_id");
    ctx->platform = str(res, "platform");
    if (ctx->conversation_id == NULL || ctx->workspace_id == NULL)
        return malformed(ctx, code, ccap, why, cap, "no conversation_id or workspace_id");
    /* Only an explicit true turns AI on; masking is off only when explicitly false. */
    ctx->ai = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "ai"));
    flag = cJSON_GetObjectItemCaseSensitive(res, "mask_pii");
    ctx->mask_pii = !cJSON_IsFalse(flag);

    ids = cJSON_GetObjectItemCaseSensitive(res, "contact_ids");
    if (ids != NULL && !cJSON_IsArray(ids) && !cJSON_IsNull(ids))
        return malformed(ctx, code, ccap, why, cap, "contact_ids is not a list");
    ctx->contact_ids = cm_xcalloc((size_t)cJSON_GetArraySize(ids) + 1, sizeof(char *));
    cJSON_ArrayForEach(m, ids)
    {
        if (cJSON_IsString(m))
            ctx->contact_ids[ctx->ncontacts++] = m->valuestring;
    }

    msgs = cJSON_GetObjectItemCaseSensitive(res, "messages");
    if (msgs != NULL && !cJSON_IsArray(msgs) && !cJSON_IsNull(msgs))
        return malformed(ctx, code, ccap, why, cap, "messages is not a list");
    n = (size_t)cJSON_GetArraySize(msgs);
    /* The router sends the newest that fit; should it send more, keep the newest. */
    skip = n > AI_CONTEXT_MAX_MESSAGES ? n - AI_CONTEXT_MAX_MESSAGES : 0;
    ctx->msgs = cm_xcalloc(n - skip + 1, sizeof(*ctx->msgs));
    cJSON_ArrayForEach(m, msgs)
    {
        const char *dir = str(m, "direction"), *text = str(m, "text");
        struct ai_message *am;
        if (!cJSON_IsObject(m))
            return malformed(ctx, code, ccap, why, cap, "a message is not an object");
        if (skip > 0) {
            skip--;
            continue;
        }
        am = &ctx->msgs[ctx->nmsgs++];
        am->inbound = dir == NULL || strcmp(dir, "out") != 0;
        am->text = text;
        am->len = text != NULL ? strlen(text) : 0;
    }
    return CM_OK;
}

int ai_context_fetch(struct cm_nats *n, const char *actor, const char *conversation_id,
                     long max_chars, long timeout_ms, struct ai_context *ctx, char *code,
                     size_t ccap, char *why, size_t cap)
{
    cJSON *req = cJSON_CreateObject();
    natsMsg *reply = NULL;
    natsStatus s;
    char *body;
    int rc;

    ai_context_cleanup(ctx);
    if (cm_nats_conn(n) == NULL) {
        cJSON_Delete(req);
        snprintf(code, ccap, "unavailable");
        snprintf(why, cap, "NATS is not connected; retry");
        return CM_UNAVAIL;
    }
    cJSON_AddStringToObject(req, "actor", actor);
    cJSON_AddStringToObject(req, "conversation_id", conversation_id);
    cJSON_AddNumberToObject(req, "max_chars", (double)max_chars);
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (body == NULL)
        abort();
    s = cm_nats_request(&reply, n, AI_CONTEXT_SUBJECT, body, timeout_ms);
    cJSON_free(body);
    if (s != NATS_OK) {
        CM_WARN("context: %s for conversation %s: %s", AI_CONTEXT_SUBJECT, conversation_id,
                natsStatus_GetText(s));
        snprintf(code, ccap, "unavailable");
        snprintf(why, cap, "conversation-router %s; retry",
                 s == NATS_NO_RESPONDERS ? "is not running" : "did not answer in time");
        return CM_UNAVAIL;
    }
    rc = ai_context_parse(ctx, natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), code,
                          ccap, why, cap);
    /* The reply holds message content: wipe nats.c's copy before it is freed. */
    sodium_memzero((void *)natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    return rc;
}

void ai_context_cleanup(struct ai_context *ctx)
{
    cJSON_Delete(ctx->root);
    free(ctx->contact_ids);
    free(ctx->msgs);
    memset(ctx, 0, sizeof(*ctx));
}
