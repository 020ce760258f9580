/*
 * fakeai.c - the OpenAI, Gemini and ElevenLabs stand-in (see fakeai.h). The bodies below
 * are the providers' own, as their APIs send them.
 */
#include "fakeai.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#define NPROV 3

struct fakeai {
    struct fakehttp *srv;
    _Atomic int mode[NPROV];
    _Atomic int delay_ms[NPROV];
    _Atomic int retry_ms[NPROV];
    _Atomic int count[NPROV];
};

static const char openai_ok[] =
    "{\"id\":\"chatcmpl-AbC123\",\"object\":\"chat.completion\",\"created\":1732870000,"
    "\"model\":\"" FAKEAI_OPENAI_MODEL "\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
    "\"assistant\",\"content\":\"" FAKEAI_OPENAI_DRAFT "\",\"refusal\":null},\"logprobs\":null,"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":231,\"completion_tokens\":24,"
    "\"total_tokens\":255},\"system_fingerprint\":\"fp_0123456789\"}";

static const char gemini_ok[] =
    "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"" FAKEAI_GEMINI_DRAFT "\"}],"
    "\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":"
    "{\"promptTokenCount\":198,\"candidatesTokenCount\":14,\"totalTokenCount\":212},"
    "\"modelVersion\":\"" FAKEAI_GEMINI_MODEL "\",\"responseId\":\"resp-0123\"}";

/* Which provider a path belongs to, or -1. */
static int provider_of(const char *path)
{
    size_t n = strlen(path);

    if (strcmp(path, "/v1/chat/completions") == 0)
        return FAKEAI_OPENAI;
    if (strncmp(path, "/v1beta/models/", 15) == 0 && n > 16 &&
        strcmp(path + n - 16, ":generateContent") == 0)
        return FAKEAI_GEMINI;
    if (strncmp(path, "/v1/text-to-speech/", 19) == 0 && n > 19)
        return FAKEAI_ELEVEN;
    return -1;
}

static void openai_error(struct fakehttp_response *resp, int status, const char *message,
                         const char *type, const char *code)
{
    char body[768];

    snprintf(body, sizeof(body),
             "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":%s%s%s}}",
             message, type, code ? "\"" : "", code ? code : "null", code ? "\"" : "");
    fakehttp_json(resp, status, body);
}

static void gemini_error(struct fakehttp_response *resp, int status, const char *message,
                         const char *st, const char *reason)
{
    char body[768];

    if (reason != NULL)
        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":%d,\"message\":\"%s\",\"status\":\"%s\",\"details\":[{"
                 "\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"%s\","
                 "\"domain\":\"googleapis.com\"}]}}",
                 status, message, st, reason);
    else
        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":%d,\"message\":\"%s\",\"status\":\"%s\"}}", status, message,
                 st);
    fakehttp_json(resp, status, body);
}

static void eleven_error(struct fakehttp_response *resp, int status, const char *st,
                         const char *message)
{
    char body[512];

    snprintf(body, sizeof(body), "{\"detail\":{\"status\":\"%s\",\"message\":\"%s\"}}", st,
             message);
    fakehttp_json(resp, status, body);
}

/* Checks the request as the real API would; answers its error and returns false if wrong. */
static bool valid_request(int p, const struct fakehttp_request *req, struct fakehttp_response *resp)
{
    cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
    bool ok = false;

    if (p == FAKEAI_OPENAI) {
        const char *auth = fakehttp_header(req, "Authorization");
        const cJSON *msgs = cJSON_GetObjectItem(body, "messages");
        if (auth == NULL)
            openai_error(resp, 401,
                         "You didn't provide an API key. You need to provide your API key in an "
                         "Authorization header using Bearer auth.",
                         "invalid_request_error", NULL);
        else if (strcmp(auth, "Bearer " FAKEAI_OPENAI_KEY) != 0)
            openai_error(resp, 401,
                         "Incorrect API key provided: sk-***. You can find your API "
                         "key at https://platform.openai.com/account/api-keys.",
                         "invalid_request_error", "invalid_api_key");
        else if (!cJSON_IsString(cJSON_GetObjectItem(body, "model")) || !cJSON_IsArray(msgs) ||
                 cJSON_GetArraySize(msgs) == 0)
            openai_error(resp, 400, "you must provide a model parameter and messages",
                         "invalid_request_error", NULL);
        else
            ok = true;
    } else if (p == FAKEAI_GEMINI) {
        const char *key = fakehttp_header(req, "x-goog-api-key");
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(body, "contents"), 0);
        if (key == NULL)
            gemini_error(resp, 403,
                         "Method doesn't allow unregistered callers (callers without established "
                         "identity). Please use API Key or other form of API consumer identity to "
                         "call this API.",
                         "PERMISSION_DENIED", NULL);
        else if (strcmp(key, FAKEAI_GEMINI_KEY) != 0)
            gemini_error(resp, 400, "API key not valid. Please pass a valid API key.",
                         "INVALID_ARGUMENT", "API_KEY_INVALID");
        else if (!cJSON_IsArray(cJSON_GetObjectItem(c, "parts")))
            gemini_error(resp, 400, "* GenerateContentRequest.contents: contents is not specified",
                         "INVALID_ARGUMENT", NULL);
        else
            ok = true;
    } else {
        const char *key = fakehttp_header(req, "xi-api-key");
        if (key == NULL || strcmp(key, FAKEAI_ELEVEN_KEY) != 0)
            eleven_error(resp, 401, "invalid_api_key", "Invalid API key");
        else if (!cJSON_IsString(cJSON_GetObjectItem(body, "text")))
            fakehttp_json(resp, 422,
                          "{\"detail\":[{\"loc\":[\"body\",\"text\"],\"msg\":\"field required\","
                          "\"type\":\"value_error.missing\"}]}");
        else
            ok = true;
    }
    cJSON_Delete(body);
    return ok;
}

static void answer_ok(int p, struct fakehttp_response *resp)
{
    if (p == FAKEAI_OPENAI) {
        fakehttp_json(resp, 200, openai_ok);
    } else if (p == FAKEAI_GEMINI) {
        fakehttp_json(resp, 200, gemini_ok);
    } else {
        /* An MPEG frame header, then padding: enough to look like audio/mpeg. */
        char audio[2048];
        memset(audio, 0x55, sizeof(audio));
        memcpy(audio, "ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64", 14);
        fakehttp_set_header(resp, "Content-Type", "audio/mpeg");
        fakehttp_reply(resp, 200, audio, sizeof(audio));
    }
}

/* ms as Go prints a time.Duration, the way OpenAI's x-ratelimit-reset-* headers carry it. */
static void go_duration(char *out, size_t cap, int ms)
{
    int h = ms / 3600000, m = ms / 60000 % 60, sec = ms / 1000 % 60, frac = ms % 1000;
    size_t n = 0;

    if (ms < 1000) {
        snprintf(out, cap, "%dms", ms);
        return;
    }
    if (h > 0)
        n += (size_t)snprintf(out + n, cap - n, "%dh", h);
    if (h > 0 || m > 0)
        n += (size_t)snprintf(out + n, cap - n, "%dm", m);
    if (frac == 0)
        snprintf(out + n, cap - n, "%ds", sec);
    else {
        /* Go drops trailing zeros: 1.5s, 1.25s, 1.125s. */
        char f[8];
        snprintf(f, sizeof(f), "%03d", frac);
        for (int i = 2; i > 0 && f[i] == '0'; i--)
            f[i] = '\0';
        snprintf(out + n, cap - n, "%d.%ss", sec, f);
    }
}

/* Answers p's 429 stating a wait of ms (see fakeai.h); with_retry_after false leaves out
 * OpenAI's Retry-After. */
static void rate_limited(int p, struct fakehttp_response *resp, int ms, bool with_retry_after)
{
    char after[32], reset[32], body[1024];

    snprintf(after, sizeof(after), "%d", (ms + 999) / 1000);
    if (p == FAKEAI_OPENAI) {
        go_duration(reset, sizeof(reset), ms);
        if (with_retry_after)
            fakehttp_set_header(resp, "Retry-After", after);
        fakehttp_set_header(resp, "x-ratelimit-limit-requests", "3");
        fakehttp_set_header(resp, "x-ratelimit-remaining-requests", "0");
        fakehttp_set_header(resp, "x-ratelimit-reset-requests", reset);
        fakehttp_set_header(resp, "x-ratelimit-limit-tokens", "40000");
        fakehttp_set_header(resp, "x-ratelimit-remaining-tokens", "39750");
        fakehttp_set_header(resp, "x-ratelimit-reset-tokens", "375ms");
        openai_error(resp, 429,
                     "Rate limit reached for gpt-4o-mini in organization org-test on requests "
                     "per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
                     "requests", "rate_limit_exceeded");
    } else if (p == FAKEAI_GEMINI) {
        /* protobuf's Duration in JSON: seconds with 0, 3, 6 or 9 decimals. */
        if (ms % 1000 == 0)
            snprintf(reset, sizeof(reset), "%ds", ms / 1000);
        else
            snprintf(reset, sizeof(reset), "%d.%03ds", ms / 1000, ms % 1000);
        snprintf(
            body, sizeof(body),
            "{\"error\":{\"code\":429,\"message\":\"You exceeded your current quota, please "
            "check your plan and billing details.\",\"status\":\"RESOURCE_EXHAUSTED\","
            "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.QuotaFailure\","
            "\"violations\":[{\"quotaMetric\":\"generativelanguage.googleapis.com/"
            "generate_content_free_tier_requests\",\"quotaId\":"
            "\"GenerateRequestsPerMinutePerProjectPerModel-FreeTier\"}]},"
            "{\"@type\":\"type.googleapis.com/google.rpc.Help\",\"links\":[{\"description\":"
            "\"Learn more about Gemini API quotas\",\"url\":"
            "\"https://ai.google.dev/gemini-api/docs/rate-limits\"}]},"
            "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"%s\"}]}}",
            reset);
        fakehttp_json(resp, 429, body);
    } else {
        fakehttp_set_header(resp, "Retry-After", after);
        eleven_error(resp, 429, "too_many_concurrent_requests", "Too many concurrent requests");
    }
}

static void server_error(int p, struct fakehttp_response *resp, int status)
{
    if (p == FAKEAI_OPENAI)
        openai_error(resp, status,
                     "The server had an error while processing your request. Sorry about that!",
                     "server_error", NULL);
    else if (p == FAKEAI_GEMINI)
        gemini_error(resp, status,
                     status == 503 ? "The model is overloaded. Please try again later."
                                   : "An internal error has occurred.",
                     status == 503 ? "UNAVAILABLE" : "INTERNAL", NULL);
    else
        eleven_error(resp, status, "internal_error", "Internal server error");
}

static void on_request(const struct fakehttp_request *req, struct fakehttp_response *resp,
                       void *arg)
{
    struct fakeai *f = arg;
    int p = provider_of(req->path), mode;

    if (p < 0 || strcmp(req->method, "POST") != 0) {
        fakehttp_json(resp, 404,
                      "{\"error\":{\"message\":\"Not found\",\"type\":\"invalid_"
                      "request_error\",\"param\":null,\"code\":null}}");
        return;
    }
    atomic_fetch_add(&f->count[p], 1);
    if (!valid_request(p, req, resp))
        return;
    mode = atomic_load(&f->mode[p]);
    switch (mode) {
    case FAKEAI_500:
        server_error(p, resp, 500);
        break;
    case FAKEAI_503:
        server_error(p, resp, 503);
        break;
    case FAKEAI_401:
        if (p == FAKEAI_OPENAI)
            openai_error(resp, 401, "Incorrect API key provided: sk-***.", "invalid_request_error",
                         "invalid_api_key");
        else if (p == FAKEAI_GEMINI)
            gemini_error(resp, 400, "API key not valid. Please pass a valid API key.",
                         "INVALID_ARGUMENT", "API_KEY_INVALID");
        else
            eleven_error(resp, 401, "invalid_api_key", "Invalid API key");
        break;
    case FAKEAI_429:
        rate_limited(p, resp, atomic_load(&f->retry_ms[p]), true);
        break;
    case FAKEAI_429_ONCE:
    case FAKEAI_429_RESET_ONCE:
        /* Only the first request after scripting it: the retry then succeeds. */
        rate_limited(p, resp, atomic_load(&f->retry_ms[p]), mode == FAKEAI_429_ONCE);
        atomic_compare_exchange_strong(&f->mode[p], &mode, FAKEAI_OK);
        break;
    case FAKEAI_429_QUOTA:
        if (p == FAKEAI_OPENAI)
            openai_error(resp, 429,
                         "You exceeded your current quota, please check your plan and billing "
                         "details.",
                         "insufficient_quota", "insufficient_quota");
        else
            rate_limited(p, resp, atomic_load(&f->retry_ms[p]), true);
        break;
    case FAKEAI_429_LONG:
        rate_limited(p, resp, 30000, true);
        break;
    case FAKEAI_MALFORMED:
        fakehttp_json(resp, 200,
                      p == FAKEAI_OPENAI ? "{\"id\":\"chatcmpl-x\",\"choices\":[{\"message\":{\"con"
                                         : "{\"candidates\":[{\"content\":{\"parts\":[{\"te");
        break;
    case FAKEAI_EMPTY:
        fakehttp_json(resp, 200,
                      p == FAKEAI_OPENAI
                          ? "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion\",\"model\":"
                            "\"" FAKEAI_OPENAI_MODEL
                            "\",\"choices\":[],\"usage\":{\"prompt_tokens\":231,"
                            "\"completion_tokens\":0,\"total_tokens\":231}}"
                          : "{\"usageMetadata\":{\"promptTokenCount\":198,\"totalTokenCount\":198},"
                            "\"modelVersion\":\"" FAKEAI_GEMINI_MODEL "\"}");
        break;
    case FAKEAI_REFUSED:
    case FAKEAI_BLOCKED:
        if (p == FAKEAI_OPENAI)
            fakehttp_json(resp, 200,
                          "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion\",\"model\":"
                          "\"" FAKEAI_OPENAI_MODEL
                          "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                          "\"content\":null},\"finish_reason\":\"content_filter\"}]}");
        else if (mode == FAKEAI_BLOCKED)
            fakehttp_json(resp, 200,
                          "{\"promptFeedback\":{\"blockReason\":\"SAFETY\",\"safetyRatings\":[{"
                          "\"category\":\"HARM_CATEGORY_HARASSMENT\",\"probability\":\"HIGH\"}]},"
                          "\"usageMetadata\":{\"promptTokenCount\":198}}");
        else
            fakehttp_json(resp, 200,
                          "{\"candidates\":[{\"finishReason\":\"SAFETY\",\"index\":0,"
                          "\"safetyRatings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\","
                          "\"probability\":\"HIGH\"}]}],\"modelVersion\":\"" FAKEAI_GEMINI_MODEL
                          "\"}");
        break;
    case FAKEAI_HANG:
        resp->delay_ms = atomic_load(&f->delay_ms[p]);
        answer_ok(p, resp);
        break;
    case FAKEAI_CLOSE:
        resp->close = true;
        break;
    default:
        answer_ok(p, resp);
    }
}

int fakeai_start(struct fakeai **out)
{
    return fakeai_start_at(out, 0);
}

int fakeai_start_at(struct fakeai **out, int port)
{
    struct fakeai *f = cm_xcalloc(1, sizeof(*f));
    int rc;

    for (int p = 0; p < NPROV; p++) {
        atomic_store(&f->delay_ms[p], 30000);
        atomic_store(&f->retry_ms[p], 1000);
    }
    rc = port > 0 ? fakehttp_start_at(&f->srv, port, on_request, f)
                  : fakehttp_start(&f->srv, on_request, f);
    if (rc != 0) {
        free(f);
        return -1;
    }
    *out = f;
    return 0;
}

void fakeai_stop(struct fakeai *f)
{
    if (f == NULL)
        return;
    fakehttp_stop(f->srv);
    free(f);
}

const char *fakeai_url(const struct fakeai *f)
{
    return fakehttp_url(f->srv);
}

void fakeai_set(struct fakeai *f, enum fakeai_provider p, enum fakeai_mode m)
{
    atomic_store(&f->mode[p], (int)m);
}

void fakeai_set_delay(struct fakeai *f, enum fakeai_provider p, int ms)
{
    atomic_store(&f->delay_ms[p], ms);
}

void fakeai_set_retry_delay(struct fakeai *f, enum fakeai_provider p, int ms)
{
    atomic_store(&f->retry_ms[p], ms);
}

int fakeai_times(struct fakeai *f, enum fakeai_provider p, long long *at, int max)
{
    int n = 0;

    for (int i = 0; i < fakehttp_count(f->srv); i++) {
        const struct fakehttp_request *r = fakehttp_get(f->srv, i);
        if (r != NULL && provider_of(r->path) == (int)p) {
            if (n < max)
                at[n] = r->at_ms;
            n++;
        }
    }
    return n;
}

struct fakehttp *fakeai_server(struct fakeai *f)
{
    return f->srv;
}

int fakeai_count(struct fakeai *f, enum fakeai_provider p)
{
    return atomic_load(&f->count[p]);
}

/* The last recorded request of provider p, borrowed, or NULL. */
static const struct fakehttp_request *last(struct fakeai *f, enum fakeai_provider p)
{
    for (int i = fakehttp_count(f->srv) - 1; i >= 0; i--) {
        const struct fakehttp_request *r = fakehttp_get(f->srv, i);
        if (r != NULL && provider_of(r->path) == (int)p)
            return r;
    }
    return NULL;
}

char *fakeai_last_body(struct fakeai *f, enum fakeai_provider p)
{
    const struct fakehttp_request *r = last(f, p);

    return r != NULL ? cm_xstrndup(r->body, r->body_len) : NULL;
}

char *fakeai_all_bodies(struct fakeai *f, enum fakeai_provider p)
{
    struct cm_buf all;

    cm_buf_init(&all);
    cm_buf_puts(&all, "");
    for (int i = 0; i < fakehttp_count(f->srv); i++) {
        const struct fakehttp_request *r = fakehttp_get(f->srv, i);
        if (r != NULL && provider_of(r->path) == (int)p) {
            cm_buf_append(&all, r->body, r->body_len);
            cm_buf_puts(&all, "\n");
        }
    }
    return cm_buf_steal(&all);
}

char *fakeai_last_header(struct fakeai *f, enum fakeai_provider p, const char *name)
{
    const struct fakehttp_request *r = last(f, p);
    const char *v = r != NULL ? fakehttp_header(r, name) : NULL;

    return v != NULL ? cm_xstrdup(v) : NULL;
}

char *fakeai_last_path(struct fakeai *f, enum fakeai_provider p)
{
    const struct fakehttp_request *r = last(f, p);

    return r != NULL ? cm_xstrdup(r->path) : NULL;
}

void fakeai_reset(struct fakeai *f)
{
    fakehttp_clear(f->srv);
    for (int p = 0; p < NPROV; p++) {
        atomic_store(&f->count[p], 0);
        atomic_store(&f->mode[p], FAKEAI_OK);
        atomic_store(&f->retry_ms[p], 1000);
    }
}
