/*
 * provider.c - one provider call: the request in the provider's format, its retries within
 * AI_TIMEOUT, and the outcome as a draft or one reason (provider.h).
 *
 * The retries are ours, not the HTTP client's: a rate-limited provider states its wait in
 * its own way (Gemini in the body, OpenAI in x-ratelimit-reset-* headers as well as
 * Retry-After), which the client's Retry-After rule cannot see. Each attempt is one client
 * call that retries nothing; the loop below waits what the provider asked, or backs off.
 *
 * The API key travels in a header built in libsodium memory and wiped after the call; the
 * request body (the masked conversation) and the answer (the draft) are wiped too. The HTTP
 * client logs the method, host, path and status of each attempt, nothing more.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "provider.h"

/* Larger answers are refused: a draft is a few hundred bytes. */
#define MAX_ANSWER ((size_t)1 << 20)
/* Backoff when the provider states no wait: full jitter below BASE * 2^(n-1). */
#define BACKOFF_BASE_MS 200L

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

/* The client retries nothing: each attempt's outcome comes back to the loop below. */
static bool no_retry(const struct cm_httpc_response *r, void *arg)
{
    (void)r;
    (void)arg;
    return false;
}

/*
 * Whether an attempt's outcome is worth another: no connection or no answer, 5xx, or 429.
 * OpenAI's 429 comes in two kinds: a rate limit (wait and retry) and an exhausted quota
 * (insufficient_quota), which no wait will cure; the latter is final at once.
 */
static bool worth_retry(int rc, const struct cm_httpc_response *r)
{
    if (rc == CM_UNAVAIL || rc == CM_TIMEOUT)
        return true;
    if (rc != CM_OK)
        return false;
    if (r->status == 429)
        return r->body.data == NULL || strstr(r->body.data, "\"insufficient_quota\"") == NULL;
    return r->status >= 500;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Full jitter: uniform in [0, min(cap, BACKOFF_BASE_MS * 2^(n-1))). */
static long backoff_ms(int n, long cap)
{
    long ceil_ms = BACKOFF_BASE_MS;

    for (int i = 1; i < n && ceil_ms < cap; i++)
        ceil_ms *= 2;
    if (ceil_ms > cap)
        ceil_ms = cap;
    return ceil_ms > 0 ? (long)randombytes_uniform((uint32_t)ceil_ms) : 0;
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

enum ai_fail ai_provider_call(const struct ai_provider *p, struct cm_httpc *http,
                              const char *system, const char *user, const char *log_id,
                              struct ai_completion *out, char *why, size_t cap, int *attempts,
                              long *elapsed_ms)
{
    struct cm_httpc_request req = {0};
    struct cm_httpc_response resp;
    struct cm_buf body, url;
    char *auth, reason[256] = "", note[160] = "";
    const char *headers[4];
    int64_t start = now_ms(), deadline = start + p->timeout_ms;
    int max = p->max_attempts > 0 ? p->max_attempts : 3, n, rc = CM_ERR;
    enum ai_fail f;
    bool retried_out = false;

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
    req.max_attempts = 1;
    req.max_response = MAX_ANSWER;
    req.retryable = no_retry;
    req.log_id = log_id;

    cm_httpc_response_init(&resp);
    for (n = 1;; n++) {
        long left = (long)(deadline - now_ms()), wait;
        const char *source = NULL;

        if (n > 1 && left <= 0) {
            n--; /* the wait overslept the deadline: report the last attempt */
            break;
        }
        /* Each attempt gets the time left of AI_TIMEOUT, no more (0 would mean a default). */
        left = left > 0 ? left : 1;
        req.timeout_ms = left;
        req.deadline_ms = left;
        req.connect_timeout_ms = left < 5000 ? left : 5000;
        rc = cm_httpc_do(http, &req, &resp);
        retried_out = worth_retry(rc, &resp);
        if (!retried_out || n >= max)
            break;
        left = (long)(deadline - now_ms());
        wait = ai_retry_delay_ms(p->kind, &resp, &source);
        if (wait >= 0 && wait >= left) {
            /* Retrying sooner than asked would only be refused again: this turn ends. */
            if (n == 1)
                snprintf(note, sizeof(note), "; %s %ld s is longer than the timeout allows", source,
                         (wait + 999) / 1000);
            else
                snprintf(note, sizeof(note),
                         " after %d attempts; %s %ld s is longer than the time left", n, source,
                         (wait + 999) / 1000);
            break;
        }
        if (wait < 0)
            wait = backoff_ms(n, p->timeout_ms);
        if (wait >= left)
            break;
        CM_WARN_ID(log_id, "%s: attempt %d/%d answered %ld, retrying in %ld ms%s%s", p->name, n,
                   max, resp.status, wait, source != NULL ? " as asked by " : "",
                   source != NULL ? source : "");
        sleep_ms(wait);
    }
    resp.attempts = n;
    resp.elapsed_ms = (long)(now_ms() - start);

    f = ai_provider_transport(rc, &resp, p->timeout_ms, reason, sizeof(reason));
    if (f == AI_FAIL_NONE) {
        if (p->kind == AI_PROVIDER_OPENAI)
            f = ai_openai_parse(resp.status, resp.body.data, resp.body.len, p->model, out, reason,
                                sizeof(reason));
        else
            f = ai_gemini_parse(resp.status, resp.body.data, resp.body.len, p->model, out, reason,
                                sizeof(reason));
        if ((f == AI_FAIL_RATE || f == AI_FAIL_SERVER) && retried_out) {
            size_t len = strlen(reason);
            if (note[0] != '\0')
                snprintf(reason + len, sizeof(reason) - len, "%s", note);
            else
                snprintf(reason + len, sizeof(reason) - len, " after %d attempt%s", n,
                         n == 1 ? "" : "s");
        }
    }
    if (f != AI_FAIL_NONE)
        snprintf(why, cap, "%s: %s", p->name, reason);
    if (attempts != NULL)
        *attempts = n;
    if (elapsed_ms != NULL)
        *elapsed_ms = resp.elapsed_ms;

    cm_buf_wipe(&resp.body);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&body);
    cm_buf_cleanup(&url);
    sodium_free(auth); /* zeroes first */
    return f;
}
