/*
 * voice.c - ElevenLabs text-to-speech for the optional spoken draft (see voice.h).
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "voice.h"

/* Copies detail.status (letters, digits, '_' only) of an ElevenLabs error body. */
static void detail_status(const char *body, size_t len, char *out, size_t cap)
{
    cJSON *root = cJSON_ParseWithLength(body != NULL ? body : "", body != NULL ? len : 0);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "detail"), "status");
    size_t n = 0;

    if (cJSON_IsString(st)) {
        for (const char *s = st->valuestring; *s && n + 1 < cap && n < 48; s++) {
            if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                *s == '_')
                out[n++] = *s;
        }
    }
    if (cap > 0)
        out[n] = '\0';
    cJSON_Delete(root);
}

enum ai_fail ai_voice_parse(long status, const char *content_type, const char *body, size_t len,
                            char *why, size_t cap)
{
    char st[64];
    enum ai_fail f;
    const char *words;

    if (status >= 200 && status <= 299) {
        if (content_type == NULL || strncasecmp(content_type, "audio/", 6) != 0) {
            snprintf(why, cap, "malformed answer (HTTP %ld, not audio)", status);
            return AI_FAIL_MALFORMED;
        }
        if (len == 0) {
            snprintf(why, cap, "an empty audio answer");
            return AI_FAIL_EMPTY;
        }
        return AI_FAIL_NONE;
    }
    detail_status(body, len, st, sizeof(st));
    if (status == 401 || status == 403) {
        f = AI_FAIL_AUTH;
        words = "the API key was refused";
    } else if (status == 429) {
        f = AI_FAIL_RATE;
        words = "rate limited";
    } else if (status >= 500) {
        f = AI_FAIL_SERVER;
        words = "server error";
    } else if (status >= 400) {
        f = AI_FAIL_REJECTED;
        words = "request refused";
    } else {
        f = AI_FAIL_MALFORMED;
        words = "unexpected answer";
    }
    snprintf(why, cap, "%s (HTTP %ld%s%s)", words, status, st[0] ? ", " : "", st);
    return f;
}

enum ai_fail ai_voice_call(const struct ai_voice *v, struct cm_httpc *http, const char *text,
                           const char *log_id, struct cm_buf *audio, char *type, size_t tcap,
                           char *why, size_t cap)
{
    struct cm_httpc_request req = {0};
    struct cm_httpc_response resp;
    struct cm_buf body, url, path;
    char reason[200] = "", *auth;
    const char *headers[4];
    cJSON *root;
    char *json;
    size_t klen = strlen(v->key) + 16;
    enum ai_fail f;
    int rc;

    cm_buf_init(&body);
    cm_buf_init(&url);
    cm_buf_init(&path);
    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "text", text);
    cJSON_AddStringToObject(root, "model_id", v->model);
    json = cJSON_PrintUnformatted(root);
    if (json == NULL)
        abort();
    cm_buf_reserve(&body, strlen(json) + 1);
    cm_buf_puts(&body, json);
    sodium_memzero(json, strlen(json));
    cJSON_free(json);
    cJSON_Delete(root);

    cm_buf_printf(&path, "v1/text-to-speech/%s", v->voice_id);
    cm_httpc_url(&url, v->base_url, path.data, NULL);
    auth = sodium_malloc(klen);
    if (auth == NULL)
        abort();
    snprintf(auth, klen, "xi-api-key: %s", v->key);
    headers[0] = auth;
    headers[1] = "Content-Type: application/json";
    headers[2] = "Accept: audio/mpeg";
    headers[3] = NULL;

    req.method = "POST";
    req.url = url.data;
    req.headers = headers;
    req.body = body.data;
    req.body_len = body.len;
    req.timeout_ms = v->timeout_ms;
    req.deadline_ms = v->timeout_ms;
    req.connect_timeout_ms = v->timeout_ms < 5000 ? v->timeout_ms : 5000;
    req.backoff_cap_ms = v->timeout_ms;
    req.max_response = AI_VOICE_MAX_AUDIO;
    req.log_id = log_id;

    cm_httpc_response_init(&resp);
    rc = cm_httpc_do(http, &req, &resp);
    f = ai_provider_transport(rc, &resp, v->timeout_ms, reason, sizeof(reason));
    if (f == AI_FAIL_NONE)
        f = ai_voice_parse(resp.status, resp.content_type, resp.body.data, resp.body.len, reason,
                           sizeof(reason));
    if (f == AI_FAIL_NONE) {
        cm_buf_reserve(audio, resp.body.len + 1);
        cm_buf_append(audio, resp.body.data, resp.body.len);
        snprintf(type, tcap, "%.*s", (int)strcspn(resp.content_type, "; "), resp.content_type);
    } else {
        snprintf(why, cap, "elevenlabs: %s", reason);
    }
    cm_buf_wipe(&resp.body);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&body);
    cm_buf_cleanup(&url);
    cm_buf_cleanup(&path);
    sodium_free(auth);
    return f;
}
