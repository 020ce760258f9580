/*
 * backfill.c - when the reconciliation asks conversation-router to backfill an account
 * through Meta's Conversations API (router.integration.backfill, proto/router.md#backfill).
 *
 * The vault decides when, because its pass already visits every connected integration and
 * knows what happened to its subscription; the router does the work, because it owns the
 * messages and calls the Graph API already. A backfill is asked:
 *  - on demand: vault.integration.check (domsctl integration check I), waiting up to
 *    VAULT_BACKFILL_WAIT_MS for the job to finish;
 *  - after the pass subscribed an account again (Meta had forgotten it: whatever came
 *    meanwhile was never sent);
 *  - when an account received nothing for BACKFILL_AFTER_SILENCE although a contact wrote
 *    within the last 7 days (its conversations were active: silence then more likely means
 *    lost webhooks than quiet customers).
 * The router picks since itself (its last message's time, less an hour), so a repeated ask
 * of a silent account costs one call of Meta's list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "vault.h"

/* A contact wrote within this (seconds): the account's conversations count as active. */
#define ACTIVE_WITHIN_S (7 * 86400)

/* Sends body to subject and parses the reply (free it), or NULL with why. */
static cJSON *ask(struct vault *v, const char *subject, cJSON *req, int64_t timeout_ms, char *why,
                  size_t cap)
{
    char *body;
    natsMsg *msg = NULL;
    natsStatus s;
    cJSON *reply = NULL;

    cJSON_AddStringToObject(req, "actor", VAULT_SERVICE);
    body = cJSON_PrintUnformatted(req);
    s = cm_nats_request(&msg, v->svc.nats, subject, body, timeout_ms);
    cJSON_free(body);
    if (s != NATS_OK) {
        snprintf(why, cap, "conversation-router did not answer %s: %s", subject,
                 natsStatus_GetText(s));
        return NULL;
    }
    reply = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
    if (reply == NULL)
        snprintf(why, cap, "conversation-router's answer to %s is not JSON", subject);
    return reply;
}

int vault_backfill_ask(struct vault *v, const char *id, int wait_ms, cJSON **result, char *why,
                       size_t cap)
{
    cJSON *req = cJSON_CreateObject(), *reply;
    const cJSON *err;
    int rc = CM_OK;

    *result = NULL;
    cJSON_AddStringToObject(req, "integration_id", id);
    cJSON_AddNullToObject(req, "since");
    cJSON_AddNumberToObject(req, "wait_ms", wait_ms);
    reply = ask(v, "router.integration.backfill", req, wait_ms + 5000, why, cap);
    cJSON_Delete(req);
    if (reply == NULL)
        return CM_UNAVAIL;
    err = cJSON_GetObjectItemCaseSensitive(reply, "error");
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(reply, "result"))) {
        *result = cJSON_DetachItemFromObjectCaseSensitive(reply, "result");
    } else {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(err, "message"));
        snprintf(why, cap, "conversation-router refused the backfill: %s",
                 m ? m : "no reason given");
        rc = CM_DENIED;
    }
    cJSON_Delete(reply);
    return rc;
}

/* An RFC 3339 UTC time of the router ("2026-12-05T10:00:00.000Z") in epoch seconds; 0 if not. */
static int64_t utc_seconds(const char *s)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
        return 0;
    return (int64_t)timegm(&tm);
}

void vault_backfill_after_pass(struct vault *v, char *const *ids, const bool *resubscribed, int n)
{
    cJSON *req, *list, *reply;
    const cJSON *result;
    int64_t now = (int64_t)time(NULL);
    char why[512];

    if (n == 0)
        return;
    req = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(req, "integration_ids");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(ids[i]));
    reply = ask(v, "router.integration.activity", req, 5000, why, sizeof(why));
    cJSON_Delete(req);
    result = cJSON_GetObjectItemCaseSensitive(reply, "result");
    if (!cJSON_IsObject(result))
        CM_WARN("backfill: no activity from conversation-router (%s); only re-subscribed "
                "accounts are backfilled",
                reply == NULL ? why : "an unexpected answer");
    for (int i = 0; i < n; i++) {
        int64_t last =
            utc_seconds(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(result, ids[i])));
        bool silent =
            last > 0 && now - last >= v->cfg->backfill_silence && now - last < ACTIVE_WITHIN_S;
        cJSON *out = NULL;
        if (!resubscribed[i] && !silent)
            continue;
        CM_INFO("integration %s: %s; asking for a backfill", ids[i],
                resubscribed[i] ? "subscribed again"
                                : "silent while its conversations were active");
        /* Not waited for: the router's workers run it; the pass goes on. */
        if (vault_backfill_ask(v, ids[i], 0, &out, why, sizeof(why)) != CM_OK)
            CM_WARN("integration %s: no backfill: %s", ids[i], why);
        cJSON_Delete(out);
    }
    cJSON_Delete(reply);
}
