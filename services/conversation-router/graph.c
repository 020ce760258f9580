/*
 * graph.c - the router's calls to Meta's Graph API: the integration's token from token-vault
 * (with its appsecret_proof, so the app secret stays in the vault), the base URL of the
 * platform's host, and one POST to an edge of the account (messages, take_thread_control).
 * The Send API's senders (sender.c), thread control (thread.c) and the profile fetcher
 * (profile.c) share them.
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpc.h"
#include "common/log.h"
#include "common/mem.h"
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

int router_graph_post(struct router *r, struct cm_httpc *http, const char *platform,
                      const char *account, const char *edge, const char *token, const char *proof,
                      const char *body, const char *log_id, struct cm_httpc_response *resp)
{
    struct cm_buf url, auth;
    struct cm_httpc_request req = {0};
    const char *headers[3];
    int rc;

    cm_buf_init(&url);
    cm_buf_init(&auth);
    cm_buf_printf(&url, "%s/%s/%s/%s", router_graph_base(r, platform), r->cfg->graph_version,
                  account, edge);
    if (*proof != '\0')
        cm_buf_printf(&url, "?appsecret_proof=%s", proof);
    cm_buf_printf(&auth, "Authorization: Bearer %s", token);
    headers[0] = auth.data;
    headers[1] = "Content-Type: application/json";
    headers[2] = NULL;
    req.method = "POST";
    req.url = url.data;
    req.headers = headers;
    req.body = body;
    req.body_len = strlen(body);
    req.meta = true;
    req.max_attempts = 1; /* the callers decide about retries */
    req.timeout_ms = 15000;
    req.deadline_ms = 20000;
    req.log_id = log_id;
    rc = cm_httpc_do(http, &req, resp);
    cm_buf_wipe(&auth);
    cm_buf_cleanup(&url);
    return rc;
}

bool router_graph_thread_elsewhere(const struct cm_httpc_response *resp)
{
    return resp->has_meta_error && resp->meta_error.code == 10 &&
           resp->meta_error.subcode == ROUTER_SUBCODE_THREAD_ELSEWHERE;
}

void router_graph_why(const struct cm_httpc_response *resp, char *why, size_t cap)
{
    if (resp->has_meta_error)
        snprintf(why, cap, "Meta refused: %s (code %d, subcode %d)", resp->meta_error.message,
                 resp->meta_error.code, resp->meta_error.subcode);
    else
        snprintf(why, cap, "Meta answered HTTP %ld%s", resp->status,
                 resp->status == 0 ? " (no answer)" : "");
}
