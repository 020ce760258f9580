/*
 * test_ai_faults - what the providers do wrong, on the real suite (ingest, vault, router,
 * ai-suggest) against the OpenAI and Gemini stand-ins: 500 and 503, 401 and a wrong Gemini
 * key, 429 the way each provider states its wait (OpenAI's Retry-After and
 * x-ratelimit-reset-* headers, Gemini's RetryInfo in the body: honoured, as the recorded
 * request times show, or too long; or an exhausted quota), malformed JSON, an
 * empty choice list, content-filter and safety refusals, an answer that never comes, a
 * dropped connection. Each becomes one clear reason, the next provider is tried, and when
 * none answers nothing is stored. Then the circuit breaker: a provider failing again and
 * again is skipped without a request, probed after its cooldown, and used again.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "common/nats.h"
#include "fakeai.h"
#include "stack.h"

#define PAGE "106000000000303"
#define PSID "7012345678907777"
#define TEXT "Bonjour, la veste bleue existe en taille M ? Mon mail: jean@example.fr"

static struct th_stack st;
static struct th_proc ingest, vault, router, ai, ai2;
static struct fakeai *fake;
static char ws[64], *conv;

/* Starts ai-suggest against the stand-ins; returns its HTTP port. */
static int start_ai(struct th_proc *p, const char *failures, const char *cooldown)
{
    char *env[16];
    int n = 0, port;

    env[n++] = cm_xstrdup("AI_PROVIDERS=openai,gemini");
    env[n++] = cm_xstrdup("OPENAI_API_KEY=" FAKEAI_OPENAI_KEY);
    env[n++] = cm_xasprintf("OPENAI_BASE_URL=%s/v1", fakeai_url(fake));
    env[n++] = cm_xstrdup("GEMINI_API_KEY=" FAKEAI_GEMINI_KEY);
    env[n++] = cm_xasprintf("GEMINI_BASE_URL=%s/v1beta", fakeai_url(fake));
    env[n++] = cm_xstrdup("GEMINI_MODEL=models/gemini-test");
    env[n++] = cm_xstrdup("AI_TIMEOUT=2s");
    env[n++] = cm_xasprintf("AI_BREAKER_FAILURES=%s", failures);
    env[n++] = cm_xasprintf("AI_BREAKER_COOLDOWN=%s", cooldown);
    env[n] = NULL;
    port = th_stack_start(&st, p, "ai-suggest", (const char *const *)env);
    for (int i = 0; i < n; i++)
        free(env[i]);
    return port;
}

/* ai.suggest as domsctl sends it; returns the reply (free it) and its duration. */
static cJSON *suggest(long *ms)
{
    char req[256];
    int64_t t0 = th_now_ms();
    cJSON *r;

    snprintf(req, sizeof(req), "{\"actor\":\"operator\",\"conversation_id\":\"%s\"}", conv);
    r = th_stack_request(&st, "ai.suggest", req);
    if (ms != NULL)
        *ms = (long)(th_now_ms() - t0);
    return r;
}

static char *rows(void)
{
    return th_stack_sql(&st, "SELECT count(*) FROM ai.suggestions");
}

/* Scripts OpenAI, asks, and expects Gemini's draft with OpenAI tried `attempts` times. */
static void expect_fallback(enum fakeai_mode openai, int attempts, const char *reason_hint)
{
    long ms = 0;
    cJSON *r;

    fakeai_reset(fake);
    fakeai_set(fake, FAKEAI_OPENAI, openai);
    r = suggest(&ms);
    CHECK_MSG(th_json_str(r, "result", "provider") != NULL &&
                  strcmp(th_json_str(r, "result", "provider"), "gemini") == 0,
              "mode %d: no fallback to gemini (%s)", (int)openai,
              th_json_str(r, "error", "message") ? th_json_str(r, "error", "message") : "?");
    CHECK_STR(th_json_str(r, "result", "text"), FAKEAI_GEMINI_DRAFT);
    CHECK_STR(th_json_str(r, "result", "model"), FAKEAI_GEMINI_MODEL);
    /* A connection closed without an answer may be retried once more by libcurl itself
     * when it was a reused one: the server then counts one request more than our attempts. */
    CHECK_MSG(fakeai_count(fake, FAKEAI_OPENAI) >= attempts &&
                  fakeai_count(fake, FAKEAI_OPENAI) <= attempts + (openai == FAKEAI_CLOSE),
              "mode %d: %d attempts, want %d", (int)openai, fakeai_count(fake, FAKEAI_OPENAI),
              attempts);
    CHECK_INT(fakeai_count(fake, FAKEAI_GEMINI), 1);
    CHECK_MSG(ms < 8000, "mode %d took %ld ms", (int)openai, ms);
    cJSON_Delete(r);
    /* The reason is in ai-suggest's log (the request succeeded, so it is not in the reply). */
    {
        char *log = th_proc_output(&ai);
        CHECK_MSG(strstr(log, reason_hint) != NULL, "mode %d: no \"%s\" in the log", (int)openai,
                  reason_hint);
        free(log);
    }
}

/* Scripts both, asks, and expects the error code and each hint in the message. */
static void expect_failure(enum fakeai_mode openai, enum fakeai_mode gemini, const char *code,
                           const char *hint1, const char *hint2)
{
    char *before = rows(), *after;
    cJSON *r;

    fakeai_reset(fake);
    fakeai_set(fake, FAKEAI_OPENAI, openai);
    fakeai_set(fake, FAKEAI_GEMINI, gemini);
    r = suggest(NULL);
    CHECK_STR(th_json_str(r, "error", "code"), code);
    CHECK_CONTAINS(th_json_str(r, "error", "message"), hint1);
    CHECK_CONTAINS(th_json_str(r, "error", "message"), hint2);
    printf("   reason: %s\n", th_json_str(r, "error", "message"));
    /* Nothing is stored half. */
    after = rows();
    CHECK_STR(after, before);
    free(before);
    free(after);
    cJSON_Delete(r);
}

/* --- tests ----------------------------------------------------------------------------- */

static void test_setup(void)
{
    cJSON *out = NULL;
    int64_t t = th_now_ms();

    th_stack_workspace(&st, "Maison Bleue", true, ws);
    th_stack_connect(&st, ws, "messenger", PAGE, "short-f", NULL, NULL);
    CHECK_INT(th_stack_message(&st, false, PAGE, t, PSID, t, "m_f_1", TEXT, NULL), 200);
    for (int i = 0; i < 200 && conv == NULL; i++) {
        const char *list[] = {"conversations", "list", "--workspace", ws, NULL};
        CHECK_INT(th_stack_domsctl(&st, &out, NULL, list), 0);
        if (cJSON_GetArraySize(out) > 0)
            conv = cm_xstrdup(th_json_str(cJSON_GetArrayItem(out, 0), "conversation_id", NULL));
        cJSON_Delete(out);
        if (conv == NULL)
            th_sleep_ms(50);
    }
    CHECK(conv != NULL);
    if (conv == NULL)
        conv = cm_xstrdup("none");
}

static void test_gemini_format(void)
{
    char *path, *key, *sent;
    cJSON *body;
    const char *text;

    /* OpenAI down (500 every time): 3 attempts, then Gemini. */
    expect_fallback(FAKEAI_500, 3, "server error");
    path = fakeai_last_path(fake, FAKEAI_GEMINI);
    key = fakeai_last_header(fake, FAKEAI_GEMINI, "x-goog-api-key");
    CHECK_STR(path, "/v1beta/models/gemini-test:generateContent");
    CHECK_STR(key, FAKEAI_GEMINI_KEY);
    sent = fakeai_last_body(fake, FAKEAI_GEMINI);
    body = cJSON_Parse(sent);
    text =
        th_json_str(cJSON_GetArrayItem(
                        cJSON_GetObjectItem(
                            cJSON_GetArrayItem(cJSON_GetObjectItem(body, "contents"), 0), "parts"),
                        0),
                    "text", NULL);
    CHECK_CONTAINS(text,
                   "Customer: Bonjour, la veste bleue existe en taille M ? Mon mail: [email]");
    CHECK(strstr(sent, "jean@example.fr") == NULL);
    CHECK(cJSON_GetObjectItem(body, "systemInstruction") != NULL);
    cJSON_Delete(body);
    free(sent);
    free(path);
    free(key);
}

static void test_fallbacks(void)
{
    expect_fallback(FAKEAI_503, 3, "server error");
    expect_fallback(FAKEAI_401, 1, "API key");
    expect_fallback(FAKEAI_429_QUOTA, 1, "quota");
    expect_fallback(FAKEAI_429_LONG, 1, "Retry-After");
    expect_fallback(FAKEAI_MALFORMED, 1, "malformed");
    expect_fallback(FAKEAI_EMPTY, 1, "empty");
    expect_fallback(FAKEAI_REFUSED, 1, "content filter");
    expect_fallback(FAKEAI_CLOSE, 3, "unreachable");
}

/*
 * Scripts provider p to answer 429 once stating a wait of wait_ms (OpenAI failing at once
 * with a wrong key when p is Gemini), asks, and checks that p's second request came no
 * sooner than that wait after its first, by the stand-in's own clock.
 */
static void expect_wait_honoured(enum fakeai_provider p, enum fakeai_mode mode, int wait_ms)
{
    long long at[4] = {0};
    cJSON *r;

    fakeai_reset(fake);
    fakeai_set_retry_delay(fake, p, wait_ms);
    fakeai_set(fake, p, mode);
    if (p == FAKEAI_GEMINI)
        fakeai_set(fake, FAKEAI_OPENAI, FAKEAI_401);
    r = suggest(NULL);
    CHECK_STR(th_json_str(r, "result", "provider"), p == FAKEAI_OPENAI ? "openai" : "gemini");
    CHECK_INT(fakeai_times(fake, p, at, 4), 2);
    CHECK_MSG(at[1] - at[0] >= wait_ms, "mode %d: the retry came %lld ms after the 429, asked %d",
              (int)mode, at[1] - at[0], wait_ms);
    /* Not much later either: the wait is the provider's, not a fixed long one. */
    CHECK_MSG(at[1] - at[0] < wait_ms + 1000, "mode %d: the retry came %lld ms after the 429",
              (int)mode, at[1] - at[0]);
    if (p == FAKEAI_OPENAI)
        CHECK_INT(fakeai_count(fake, FAKEAI_GEMINI), 0);
    cJSON_Delete(r);
}

static void test_retry_after_honoured(void)
{
    /* OpenAI: Retry-After 1 (and x-ratelimit-reset-requests 1s). */
    expect_wait_honoured(FAKEAI_OPENAI, FAKEAI_429_ONCE, 1000);
    /* OpenAI without Retry-After: x-ratelimit-reset-requests 1.5s alone says how long. */
    expect_wait_honoured(FAKEAI_OPENAI, FAKEAI_429_RESET_ONCE, 1500);
    /* Retry-After 2 rounds 1.2 s up; the reset header's 1.2s is shorter: 2 s it is, which
     * AI_TIMEOUT (2 s) cannot allow: Gemini answers instead, after one OpenAI request. */
    {
        cJSON *r;
        fakeai_reset(fake);
        fakeai_set_retry_delay(fake, FAKEAI_OPENAI, 1200);
        fakeai_set(fake, FAKEAI_OPENAI, FAKEAI_429_ONCE);
        r = suggest(NULL);
        CHECK_STR(th_json_str(r, "result", "provider"), "gemini");
        CHECK_INT(fakeai_count(fake, FAKEAI_OPENAI), 1);
        cJSON_Delete(r);
    }
    /* Gemini: no header at all, retryDelay "1.500s" in the body's RetryInfo. */
    expect_wait_honoured(FAKEAI_GEMINI, FAKEAI_429_ONCE, 1500);
    /* Gemini asking for 30 s: its turn ends at once, with the reason. */
    expect_failure(FAKEAI_401, FAKEAI_429_LONG, "unavailable", "openai: the API key was refused",
                   "gemini: rate limited (HTTP 429, RESOURCE_EXHAUSTED); retryDelay 30 s is "
                   "longer than the timeout allows");
    CHECK_INT(fakeai_count(fake, FAKEAI_GEMINI), 1);
}

static void test_slow_provider(void)
{
    long ms = 0;

    /* OpenAI answers after 10 s; AI_TIMEOUT is 2 s. */
    fakeai_set_delay(fake, FAKEAI_OPENAI, 10000);
    expect_fallback(FAKEAI_HANG, 1, "no answer");
    {
        cJSON *r;
        fakeai_reset(fake);
        fakeai_set(fake, FAKEAI_OPENAI, FAKEAI_HANG);
        r = suggest(&ms);
        CHECK_STR(th_json_str(r, "result", "provider"), "gemini");
        CHECK_MSG(ms >= 1900 && ms < 6000, "the timeout took %ld ms", ms);
        cJSON_Delete(r);
    }
}

/*
 * Ten suggestions wait on providers that do not answer, more than ai.suggest's 8 workers:
 * ai.suggestion.get is still answered at once, by the other lane. With one pool it waited
 * for a worker, past AI_TIMEOUT (2 s).
 */
static void test_provider_lane(void)
{
    natsSubscription *sub = NULL;
    natsMsg *reply = NULL;
    cJSON *answer = NULL;
    char req[256];
    int64_t deadline;
    int answered = 0;

    fakeai_reset(fake);
    fakeai_set_delay(fake, FAKEAI_OPENAI, 10000);
    fakeai_set_delay(fake, FAKEAI_GEMINI, 10000);
    fakeai_set(fake, FAKEAI_OPENAI, FAKEAI_HANG);
    fakeai_set(fake, FAKEAI_GEMINI, FAKEAI_HANG);
    CHECK(natsConnection_SubscribeSync(&sub, st.nc, "_INBOX.lanetest.>") == NATS_OK);
    snprintf(req, sizeof(req), "{\"actor\":\"operator\",\"conversation_id\":\"%s\"}", conv);
    for (int i = 0; i < 10; i++) {
        char inbox[40];
        snprintf(inbox, sizeof(inbox), "_INBOX.lanetest.%d", i);
        CHECK(natsConnection_PublishRequestString(st.nc, "ai.suggest.operator", inbox, req) ==
              NATS_OK);
    }
    CHECK(natsConnection_FlushTimeout(st.nc, 5000) == NATS_OK);
    /* Ready when every worker of the lane waits on OpenAI. */
    deadline = th_now_ms() + 10000;
    while (fakeai_count(fake, FAKEAI_OPENAI) < 8 && th_now_ms() < deadline)
        nats_Sleep(20);
    CHECK_MSG(fakeai_count(fake, FAKEAI_OPENAI) >= 8, "only %d suggestions reached OpenAI",
              fakeai_count(fake, FAKEAI_OPENAI));
    CHECK(cm_nats_request_as(&reply, st.nc, "operator", "ai.suggestion.get",
                             "{\"suggestion_id\":\"sug_nosuch\"}", 1500) == NATS_OK);
    if (reply != NULL)
        answer =
            cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    CHECK_STR(th_json_str(answer, "error", "code"), "not_found");
    cJSON_Delete(answer);
    natsMsg_Destroy(reply);
    /* Every suggestion ends (no provider answered in time) before the next test. */
    deadline = th_now_ms() + 60000;
    while (answered < 10 && th_now_ms() < deadline) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 1000) == NATS_OK) {
            answered++;
            natsMsg_Destroy(m);
        }
    }
    CHECK_INT(answered, 10);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    fakeai_reset(fake);
}

static void test_no_provider_answers(void)
{
    expect_failure(FAKEAI_500, FAKEAI_401, "unavailable",
                   "openai: server error (HTTP 500, server_error) after 3 attempts",
                   "gemini: the API key was refused (HTTP 400, INVALID_ARGUMENT/API_KEY_INVALID)");
    expect_failure(FAKEAI_429, FAKEAI_503, "unavailable", "openai: rate limited (HTTP 429",
                   "gemini: server error (HTTP 503, UNAVAILABLE)");
    expect_failure(FAKEAI_MALFORMED, FAKEAI_EMPTY, "unavailable", "openai: malformed answer",
                   "gemini: no candidates");
    expect_failure(FAKEAI_HANG, FAKEAI_CLOSE, "unavailable", "openai: no answer within 2 s",
                   "gemini: unreachable");
    /* Both filters refused the prompt: a refusal, not an outage. */
    expect_failure(FAKEAI_REFUSED, FAKEAI_REFUSED, "refused",
                   "openai: refused by the content filter (content_filter)",
                   "gemini: refused by the safety filter (finishReason SAFETY)");
    expect_failure(FAKEAI_REFUSED, FAKEAI_BLOCKED, "refused", "openai: refused",
                   "gemini: refused by the safety filter (blockReason SAFETY)");
}

/* The value of a metric line from ai's /metrics (the line's last field), or -1. */
static double metric(int port, const char *series)
{
    char url[96];
    struct th_resp r;
    double v = -1;
    const char *line;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    th_http(&r, "GET", url, NULL, NULL, 0);
    line = r.body.data != NULL ? strstr(r.body.data, series) : NULL;
    if (line != NULL)
        v = atof(line + strlen(series));
    th_resp_cleanup(&r);
    return v;
}

static void test_circuit_breaker(void)
{
    const char *open_series = "ai_provider_circuit_open{provider=\"openai\"} ";
    int port;
    cJSON *r;

    /* A second daemon alone, whose breaker opens after 2 failures for 3 s. */
    /* A clean exit: SIGTERM honoured, and no leak reported under the sanitizers. */
    CHECK_INT(th_proc_stop(&ai), 0);
    port = start_ai(&ai2, "2", "3s");
    CHECK(metric(port, open_series) == 0);

    fakeai_reset(fake);
    fakeai_set(fake, FAKEAI_OPENAI, FAKEAI_500);
    for (int i = 0; i < 2; i++) {
        r = suggest(NULL);
        CHECK_STR(th_json_str(r, "result", "provider"), "gemini");
        cJSON_Delete(r);
    }
    CHECK_INT(fakeai_count(fake, FAKEAI_OPENAI), 6);
    CHECK(metric(port, open_series) == 1);
    /* Open: OpenAI is skipped without a request; Gemini answers at once. */
    for (int i = 0; i < 3; i++) {
        long ms = 0;
        r = suggest(&ms);
        CHECK_STR(th_json_str(r, "result", "provider"), "gemini");
        CHECK_MSG(ms < 1500, "a skipped provider still cost %ld ms", ms);
        cJSON_Delete(r);
    }
    CHECK_INT(fakeai_count(fake, FAKEAI_OPENAI), 6);
    /* Gemini failing too: the reason says OpenAI was skipped. */
    fakeai_set(fake, FAKEAI_GEMINI, FAKEAI_503);
    r = suggest(NULL);
    CHECK_CONTAINS(th_json_str(r, "error", "message"), "openai: skipped, failing repeatedly");
    cJSON_Delete(r);
    CHECK_INT(fakeai_count(fake, FAKEAI_OPENAI), 6);
    fakeai_set(fake, FAKEAI_GEMINI, FAKEAI_OK);

    /* After the cooldown one probe goes to OpenAI; it is healthy again: closed. */
    th_sleep_ms(3200);
    fakeai_set(fake, FAKEAI_OPENAI, FAKEAI_OK);
    r = suggest(NULL);
    CHECK_STR(th_json_str(r, "result", "provider"), "openai");
    cJSON_Delete(r);
    r = suggest(NULL);
    CHECK_STR(th_json_str(r, "result", "provider"), "openai");
    cJSON_Delete(r);
    CHECK_INT(fakeai_count(fake, FAKEAI_OPENAI), 8);
    CHECK(metric(port, open_series) == 0);
    CHECK(metric(port, "ai_provider_skipped_total{provider=\"openai\"} ") == 4);
}

int main(void)
{
    th_init("ai_faults");
    th_stack_init(&st);
    if (fakeai_start(&fake) != 0)
        return 1;
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    th_stack_start(&st, &router, "conversation-router", NULL);
    /* A breaker that does not open during the fault tests: each test starts healthy. */
    start_ai(&ai, "1000", "1s");

    RUN(test_setup);
    RUN(test_gemini_format);
    RUN(test_fallbacks);
    RUN(test_retry_after_honoured);
    RUN(test_slow_provider);
    RUN(test_provider_lane);
    RUN(test_no_provider_answers);
    RUN(test_circuit_breaker);
    CHECK_INT(th_proc_stop(&ai2), 0);
    th_stack_stop(&st);
    fakeai_stop(fake);
    free(conv);
    return check_summary();
}
