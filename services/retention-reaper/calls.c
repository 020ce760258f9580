/*
 * calls.c - requests to the services that own the data (proto/README.md's contract), and
 * the counts by kind that their purge replies carry.
 *
 * Every call blocks the calling worker thread, never the loop. "No responders" (the
 * service is not running, or not written yet) is an answer like any other: CM_UNAVAIL with
 * a message naming the subject, so that a deletion waits for the service instead of
 * pretending that it happened.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "reaper.h"

const char *const reaper_kind_names[REAPER_NKINDS] = {
    "tokens",   "integrations", "contacts",   "conversations",
    "messages", "suggestions",  "raw_events", "audit",
};

void reaper_counts_add_json(struct reaper_counts *c, const cJSON *obj)
{
    for (int k = 0; k < REAPER_NKINDS; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, reaper_kind_names[k]);
        if (cJSON_IsNumber(v) && v->valuedouble > 0)
            c->n[k] += (long)v->valuedouble;
    }
}

cJSON *reaper_counts_json(const struct reaper_counts *c, unsigned kinds_mask)
{
    cJSON *o = cJSON_CreateObject();

    for (int k = 0; k < REAPER_NKINDS; k++) {
        if (kinds_mask & (1u << k))
            cJSON_AddNumberToObject(o, reaper_kind_names[k], (double)c->n[k]);
    }
    return o;
}

bool reaper_counts_none_left(const cJSON *obj)
{
    const cJSON *v;

    cJSON_ArrayForEach(v, obj)
    {
        if (!cJSON_IsNumber(v) || v->valuedouble > 0)
            return false;
    }
    return true;
}

bool reaper_subject_token(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '_' && c != '-')
            return false;
    }
    return n > 0 && n <= 64;
}

bool reaper_valid_id(const char *s, size_t max)
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

void reaper_reply_cleanup(struct reaper_reply *rep)
{
    cJSON_Delete(rep->result);
    rep->result = NULL;
}

/*
 * The contract's code to ours: unavailable and busy are both "try again later", and
 * refused (a rule of the product) is as final for a deletion as denied.
 */
static int from_code(const char *code)
{
    static const struct {
        const char *code;
        int err;
    } map[] = {
        {"invalid", CM_INVALID},    {"denied", CM_DENIED},     {"refused", CM_DENIED},
        {"not_found", CM_NOTFOUND}, {"conflict", CM_CONFLICT}, {"unavailable", CM_UNAVAIL},
        {"busy", CM_UNAVAIL},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(code, map[i].code) == 0)
            return map[i].err;
    }
    return CM_ERR;
}

int reaper_call(struct reaper *r, const char *subject, cJSON *req, long timeout_ms,
                struct reaper_reply *out)
{
    natsMsg *reply = NULL;
    cJSON *parsed = NULL, *err;
    char *body;
    natsStatus s;
    int rc;

    memset(out, 0, sizeof(*out));
    /* A request on a connection that is down would only wait out its whole timeout. */
    if (!cm_nats_connected(r->svc.nats)) {
        snprintf(out->code, sizeof(out->code), "unavailable");
        snprintf(out->message, sizeof(out->message), "NATS is unreachable");
        return CM_UNAVAIL;
    }
    /* What the reaper does on its own schedule is audited under its own name. */
    if (cJSON_GetObjectItemCaseSensitive(req, "actor") == NULL)
        cJSON_AddStringToObject(req, "actor", REAPER_SERVICE);
    body = cJSON_PrintUnformatted(req);
    s = cm_nats_request(&reply, r->svc.nats, subject, body, timeout_ms);
    cJSON_free(body);
    if (s != NATS_OK) {
        /* No responders comes back at once: the service is not running (or not written
         * yet). Either way the caller must wait for it, never assume its part is done. */
        snprintf(out->code, sizeof(out->code), "unavailable");
        snprintf(out->message, sizeof(out->message), "%s: %s", subject,
                 s == NATS_NO_RESPONDERS ? "no service is answering (no responders)"
                 : s == NATS_TIMEOUT     ? "no answer in time"
                                         : natsStatus_GetText(s));
        CM_DEBUG("call %s: %s", subject, out->message);
        return CM_UNAVAIL;
    }
    parsed = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    err = cJSON_GetObjectItemCaseSensitive(parsed, "error");
    if (cJSON_IsObject(err)) {
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(err, "code"));
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(err, "message"));
        snprintf(out->code, sizeof(out->code), "%s", code ? code : "internal");
        snprintf(out->message, sizeof(out->message), "%s", msg ? msg : "failed");
        rc = from_code(out->code);
    } else if (cJSON_GetObjectItemCaseSensitive(parsed, "result") != NULL) {
        out->result = cJSON_DetachItemFromObjectCaseSensitive(parsed, "result");
        rc = CM_OK;
    } else {
        snprintf(out->code, sizeof(out->code), "internal");
        snprintf(out->message, sizeof(out->message), "%s: the answer is not the contract's",
                 subject);
        rc = CM_ERR;
    }
    cJSON_Delete(parsed);
    return rc;
}
