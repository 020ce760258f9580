/*
 * graph.c - what every call of the router to Meta's Graph API needs: the integration's token
 * and its appsecret_proof, asked of token-vault (the app secret itself stays in the vault),
 * and the base URL of the platform's host. The sender (sender.c) and the profile fetcher
 * (profile.c) share it.
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "router.h"

int router_token_get(struct router *r, const char *integration, char **token,
                     char proof[ROUTER_PROOF_LEN], char *why, size_t cap)
{
    natsMsg *reply = NULL;
    cJSON *req = cJSON_CreateObject(), *resp, *result;
    const char *tok, *code, *message, *mac;
    char *body;
    natsStatus st;
    int rc;

    *token = NULL;
    cJSON_AddStringToObject(req, "actor", ROUTER_SERVICE);
    cJSON_AddStringToObject(req, "integration_id", integration);
    body = cJSON_PrintUnformatted(req);
    st = cm_nats_request(&reply, r->svc.nats, "vault.token.get", body, 10000);
    cJSON_free(body);
    cJSON_Delete(req);
    if (st != NATS_OK) {
        snprintf(why, cap, "token-vault did not answer: %s", natsStatus_GetText(st));
        return CM_UNAVAIL;
    }
    resp = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    result = cJSON_GetObjectItem(resp, "result");
    tok = cJSON_GetStringValue(cJSON_GetObjectItem(result, "token"));
    mac = cJSON_GetStringValue(cJSON_GetObjectItem(result, "appsecret_proof"));
    proof[0] = '\0';
    if (mac != NULL && strlen(mac) == ROUTER_PROOF_LEN - 1)
        memcpy(proof, mac, ROUTER_PROOF_LEN);
    code = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "error"), "code"));
    message =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "error"), "message"));
    if (tok != NULL) {
        *token = sodium_malloc(strlen(tok) + 1);
        if (*token == NULL)
            abort();
        memcpy(*token, tok, strlen(tok) + 1);
        sodium_memzero((void *)tok, strlen(tok));
        rc = CM_OK;
    } else {
        snprintf(why, cap, "no token: %s", message ? message : "token-vault refused");
        rc = code != NULL && (strcmp(code, "refused") == 0 || strcmp(code, "not_found") == 0)
                 ? CM_DENIED
                 : CM_UNAVAIL;
    }
    /* The reply held the token: wipe it before freeing. */
    sodium_memzero((void *)natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    cJSON_Delete(resp);
    return rc;
}

const char *router_graph_base(const struct router *r, const char *platform)
{
    return strcmp(platform, "instagram") == 0 ? r->cfg->ig_graph_url : r->cfg->graph_url;
}
