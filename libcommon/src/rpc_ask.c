/*
 * rpc_ask.c - a request to another service on a caller's behalf, its refusal passed on.
 *
 * A service that must ask another before it acts (whether the actor may read a workspace,
 * who they are in it) sends the actor of the call it is handling, and answers that call with
 * the other's refusal as is: the codes are the one contract's (proto/README.md).
 */
#include <stdio.h>

#include "common/log.h"
#include "common/nats.h"
#include "common/rpc.h"

const cJSON *cm_rpc_ask(struct cm_rpc_call *call, struct cm_nats *n, const char *service,
                        const char *subject, cJSON *req, long timeout_ms, cJSON **reply)
{
    const cJSON *result, *err;
    natsMsg *msg = NULL;
    natsStatus s;
    char *body;

    *reply = NULL;
    if (cJSON_GetObjectItemCaseSensitive(req, "actor") == NULL)
        cJSON_AddStringToObject(req, "actor", call->actor);
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    s = cm_nats_request(&msg, n, subject, body, timeout_ms);
    cJSON_free(body);
    if (s != NATS_OK) {
        CM_WARN("%s: %s", subject, natsStatus_GetText(s));
        cm_rpc_fail(call, "unavailable", "%s %s; nothing was done, retry", service,
                    s == NATS_NO_RESPONDERS ? "is not running" : "did not answer in time");
        return NULL;
    }
    *reply = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
    result = cJSON_GetObjectItemCaseSensitive(*reply, "result");
    err = cJSON_GetObjectItemCaseSensitive(*reply, "error");
    if (result != NULL)
        return result;
    if (cJSON_IsObject(err)) {
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(err, "code"));
        const char *message = cJSON_GetStringValue(cJSON_GetObjectItem(err, "message"));
        cm_rpc_fail(call, code != NULL ? code : "internal", "%s",
                    message != NULL ? message : "refused");
    } else {
        cm_rpc_fail(call, "internal", "%s answered something unexpected", service);
    }
    return NULL;
}
