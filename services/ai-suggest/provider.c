/*
 * provider.c - one provider call: the request in the provider's format, the HTTP client's
 * retries within AI_TIMEOUT, and the outcome as a draft or one reason (provider.h).
 *
 * The API key travels in a header built in libsodium memory and wiped after the call; the
 * request body (the masked conversation) and the answer (the draft) are wiped too. The HTTP
 * client logs the method, host, path and status of each attempt, nothing more.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "provider.h"

/* Larger answers are refused: a draft is a few hundred bytes. */
#define MAX_ANSWER ((size_t)1 << 20)

enum ai_fail ai_provider_transport(int rc, const struct cm_httpc_response *resp, long timeout_ms,
                                   char *why, size_t cap)
{
    /* An answer, even one the retry policy gave up on (429, 5xx), is read by the parser. */
    if ((rc == CM_OK || rc == CM_UNAVAIL) && resp->status > 0)
        return AI_FAIL_NONE;
    switch (rc) {
    case CM_TIMEOUT:
        snprintf(why, cap, "no answer within %ld s", (timeout_ms + 999) / 1000);
        return AI_FAIL_TIMEOUT;
    case CM_UNAVAIL:
        snprintf(why, cap, "unreachable (connection failed, %d attempt%s)", resp->attempts,
                 resp->attempts == 1 ? "" : "s");
        return AI_FAIL_NETWORK;
    case CM_TOOBIG:
        snprintf(why, cap, "malformed answer (larger than %zu bytes)", MAX_ANSWER);
        return AI_FAIL_MALFORMED;
    case CM_INVALID:
        snprintf(why, cap, "request refused (the base URL or a header is unusable)");
        return AI_FAIL_REJECTED;
    default:
        snprintf(why, cap, "unreachable (TLS or client failure)");
        return AI_FAIL_NETWORK;
    }
}

/*
 * OpenAI's 429 comes in two kinds: a rate limit (wait and retry) and an exhausted quota
 * (insufficient_quota), which no wait will cure; the latter is final at once.
 */
static bool retryable(const struct cm_httpc_response *r, void *arg)
{
    if (r->transport == CM_OK && r->status == 429 && r->body.data != NULL &&
        strstr(r->body.data, "\"insufficient_quota\"") != NULL)
        return false;
    return cm_httpc_retryable_default(r, arg);
}

/* Writes "<name>: <header>: <key>" into sodium memory; sodium_free() it. */
static char *secret_header(const char *name, const char *prefix, const char *key)
{
    size_t n = strlen(name) + strlen(prefix) + strlen(key) + 3;
    char *h = sodium_malloc(n);

    if (h == NULL)
        abort();
    snprintf(h, n, "%s: %s%s", name, prefix, key);
    return h;
}

/* Builds the URL of p's generation endpoint into url. */
static void endpoint(const struct ai_provider *p, struct cm_buf *url)
{
    if (p->kind == AI_PROVIDER_OPENAI) {
        cm_httpc_url(url, p->base_url, "chat/completions", NULL);
    } else {
        struct cm_buf path;
        const char *model = p->model;
        cm_buf_init(&path);
        /* Google's own examples write the model both as "gemini-x" and "models/gemini-x". */
        if (strncmp(model, "models/", 7) == 0)
            model += 7;
        cm_buf_printf(&path, "models/%s:generateContent", model);
        cm_httpc_url(url, p->base_url, path.data, NULL);
        cm_buf_cleanup(&path);
    }
}

/* Appends what the retries did to a rate-limit or server-error reason. */
static void retry_note(char *why, size_t cap, const struct cm_httpc_response *resp)
{
    size_t n = strlen(why);

    if (resp->retry_after_ms > 0 && resp->attempts < 2)
        snprintf(why + n, cap - n, "; Retry-After %ld s is longer than the timeout allows",
                 (resp->retry_after_ms + 999) / 1000);
    else
        snprintf(why + n, cap - n, " after %d attempt%s", resp->attempts,
                 resp->attempts == 1 ? "" : "s");
}

enum ai_fail ai_provider_call(const struct ai_provider *p, struct cm_httpc *http,
                              const char *system, const char *user, const char *log_id,
                              struct ai_completion *out, char *why, size_t cap, int *attempts,
                              long *elapsed_ms)
{
    struct cm_httpc_request req = {0};
    struct cm_httpc_response resp;
    struct cm_buf body, url;
    char *auth, reason[256] = "";
    const char *headers[4];
    enum ai_fail f;
    int rc;

    memset(out, 0, sizeof(*out));
    cm_buf_init(&body);
    cm_buf_init(&url);
    /* The escaped body is at most six times the text (\u00XX), plus the frame. */
    cm_buf_reserve(&body, 6 * (strlen(system) + strlen(user)) + 512);
    if (p->kind == AI_PROVIDER_OPENAI) {
        ai_openai_body(&body, p->model, system, user);
        auth = secret_header("Authorization", "Bearer ", p->key);
    } else {
        ai_gemini_body(&body, system, user);
        auth = secret_header("x-goog-api-key", "", p->key);
    }
    endpoint(p, &url);
    headers[0] = auth;
    headers[1] = "Content-Type: application/json";
    headers[2] = "Accept: application/json";
    headers[3] = NULL;

    req.method = "POST";
    req.url = url.data;
    req.headers = headers;
    req.body = body.data;
    req.body_len = body.len;
    req.timeout_ms = p->timeout_ms;
    req.deadline_ms = p->timeout_ms;
    req.connect_timeout_ms = p->timeout_ms < 5000 ? p->timeout_ms : 5000;
    req.max_attempts = p->max_attempts > 0 ? p->max_attempts : 3;
    /* Retry-After is obeyed as long as the deadline allows it. */
    req.backoff_cap_ms = p->timeout_ms;
    req.max_response = MAX_ANSWER;
    req.retryable = retryable;
    req.log_id = log_id;

    cm_httpc_response_init(&resp);
    rc = cm_httpc_do(http, &req, &resp);
    f = ai_provider_transport(rc, &resp, p->timeout_ms, reason, sizeof(reason));
    if (f == AI_FAIL_NONE) {
        if (p->kind == AI_PROVIDER_OPENAI)
            f = ai_openai_parse(resp.status, resp.body.data, resp.body.len, p->model, out, reason,
                                sizeof(reason));
        else
            f = ai_gemini_parse(resp.status, resp.body.data, resp.body.len, p->model, out, reason,
                                sizeof(reason));
        if ((f == AI_FAIL_RATE || f == AI_FAIL_SERVER) && rc == CM_UNAVAIL)
            retry_note(reason, sizeof(reason), &resp);
    }
    if (f != AI_FAIL_NONE)
        snprintf(why, cap, "%s: %s", p->name, reason);
    if (attempts != NULL)
        *attempts = resp.attempts;
    if (elapsed_ms != NULL)
        *elapsed_ms = resp.elapsed_ms;

    cm_buf_wipe(&resp.body);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&body);
    cm_buf_cleanup(&url);
    sodium_free(auth); /* zeroes first */
    return f;
}
