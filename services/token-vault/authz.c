/*
 * authz.c - who may act on a workspace's integrations: conversation-router's word.
 *
 * The router owns workspaces and their members (proto/router.md). Before an integration is
 * connected, ended, checked or listed, the vault asks it, on the actor's behalf, for the
 * workspace (router.workspace.get): the answer carries the actor's role and whether the
 * workspace is deleted, and its refusal (no such workspace, not a member) is passed on as is.
 * Without an answer nothing is done: an integration is never connected to a workspace that
 * does not exist or is deleted, whose token would then outlive every deletion of it.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "common/log.h"
#include "vault.h"

#define AUTHZ_TIMEOUT_MS 5000

static int rank(const char *role)
{
    static const char *const roles[] = {"viewer", "agent", "admin", "owner", NULL};

    for (int i = 0; role != NULL && roles[i] != NULL; i++) {
        if (strcmp(role, roles[i]) == 0)
            return i + 1;
    }
    return 0;
}

bool vault_authorize(struct vault *v, struct cm_rpc_call *call, const char *ws, const char *min,
                     bool live)
{
    cJSON *req, *reply = NULL;
    const cJSON *result, *err;
    natsMsg *msg = NULL;
    natsStatus s;
    char *body;
    bool ok = false;

    /* Roles are for people and the operator, whose requests come through domsctl's identity.
     * A daemon (the reaper, carrying out a deletion the router authorised when it was asked
     * for, days ago perhaps) is let call by the subject's permissions alone. */
    if (strcmp(call->caller, "operator") != 0)
        return true;
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "actor", call->actor);
    cJSON_AddStringToObject(req, "workspace_id", ws);
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    s = cm_nats_request(&msg, v->svc.nats, "router.workspace.get", body, AUTHZ_TIMEOUT_MS);
    cJSON_free(body);
    if (s == NATS_OK && msg != NULL) {
        reply = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
        natsMsg_Destroy(msg);
    }
    result = cJSON_GetObjectItemCaseSensitive(reply, "result");
    err = cJSON_GetObjectItemCaseSensitive(reply, "error");
    if (cJSON_IsObject(result)) {
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(result, "role"));
        const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(result, "status"));
        if (rank(role) < rank(min) || rank(role) == 0)
            cm_rpc_fail(call, "denied", "%s may not do this in workspace %s (needs the %s role)",
                        call->actor, ws, min);
        else if (live && (status == NULL || strcmp(status, "active") != 0))
            cm_rpc_fail(call, "refused", "workspace %s is deleted", ws);
        else
            ok = true;
    } else if (cJSON_IsObject(err)) {
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(err, "code"));
        const char *message = cJSON_GetStringValue(cJSON_GetObjectItem(err, "message"));
        bool passed = code != NULL && (strcmp(code, "not_found") == 0 ||
                                       strcmp(code, "denied") == 0 || strcmp(code, "invalid") == 0);
        cm_rpc_fail(call, passed ? code : "unavailable", "%s",
                    message != NULL ? message : "conversation-router refused");
    } else {
        CM_WARN("router.workspace.get: %s", s != NATS_OK ? natsStatus_GetText(s) : "no answer");
        cm_rpc_fail(call, "unavailable",
                    "conversation-router did not say who %s is in workspace %s (%s): nothing done",
                    call->actor, ws, s != NATS_OK ? natsStatus_GetText(s) : "an unexpected answer");
    }
    cJSON_Delete(reply);
    return ok;
}
