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
    const cJSON *result;
    const char *role, *status;
    bool ok = false;

    /* Roles are for people and the operator, whose requests come through domsctl's identity.
     * A daemon (the reaper, carrying out a deletion the router authorised when it was asked
     * for, days ago perhaps) is let call by the subject's permissions alone. */
    if (strcmp(call->caller, "operator") != 0)
        return true;
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "workspace_id", ws);
    result = cm_rpc_ask(call, v->svc.nats, "conversation-router", "router.workspace.get", req,
                        AUTHZ_TIMEOUT_MS, &reply);
    if (result != NULL) {
        role = cJSON_GetStringValue(cJSON_GetObjectItem(result, "role"));
        status = cJSON_GetStringValue(cJSON_GetObjectItem(result, "status"));
        if (rank(role) < rank(min) || rank(role) == 0)
            cm_rpc_fail(call, "denied", "%s may not do this in workspace %s (needs the %s role)",
                        call->actor, ws, min);
        else if (live && (status == NULL || strcmp(status, "active") != 0))
            cm_rpc_fail(call, "refused", "workspace %s is deleted", ws);
        else
            ok = true;
    }
    cJSON_Delete(reply);
    return ok;
}
