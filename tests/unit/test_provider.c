/*
 * test_provider - OpenAI's and Gemini's wire formats as they really are: the request bodies
 * we send, and every kind of answer: drafts with usage, error bodies (401, 429 rate limit and
 * exhausted quota, 500, 503, a wrong Gemini key), content-filter and safety refusals, empty
 * choice lists, malformed JSON. Also ElevenLabs' answers and the transport outcomes, and the
 * waits a rate-limited provider asks for: Go durations in OpenAI's x-ratelimit-reset-*
 * headers, retry-after-ms and Retry-After; Gemini's google.rpc.RetryInfo in the body.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "provider.h"
#include "voice.h"

static enum ai_fail openai(long status, const char *body, struct ai_completion *c, char *why)
{
    return ai_openai_parse(status, body, strlen(body), "gpt-test", c, why, 256);
}

static enum ai_fail gemini(long status, const char *body, struct ai_completion *c, char *why)
{
    return ai_gemini_parse(status, body, strlen(body), "gemini-test", c, why, 256);
}

static void test_openai_body(void)
{
    struct cm_buf b;
    cJSON *j, *msgs;

    cm_buf_init(&b);
    ai_openai_body(&b, "gpt-4o-mini", "be brief", "Customer: \"hi\"\nnew line é");
    j = cJSON_Parse(b.data);
    CHECK(j != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "gpt-4o-mini");
    msgs = cJSON_GetObjectItem(j, "messages");
    CHECK_INT(cJSON_GetArraySize(msgs), 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "role")),
              "system");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "role")),
              "user");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "content")),
              "Customer: \"hi\"\nnew line é");
    cJSON_Delete(j);
    cm_buf_cleanup(&b);
}

static void test_gemini_body(void)
{
    struct cm_buf b;
    cJSON *j, *c;

    cm_buf_init(&b);
    ai_gemini_body(&b, "be brief", "Customer: hi");
    j = cJSON_Parse(b.data);
    CHECK(j != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(
                  cJSON_GetArrayItem(
                      cJSON_GetObjectItem(cJSON_GetObjectItem(j, "systemInstruction"), "parts"), 0),
                  "text")),
              "be brief");
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "contents"), 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(c, "role")), "user");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(
                  cJSON_GetArrayItem(cJSON_GetObjectItem(c, "parts"), 0), "text")),
              "Customer: hi");
    CHECK(cJSON_GetObjectItem(j, "model") == NULL);
    cJSON_Delete(j);
    cm_buf_cleanup(&b);
}

static void test_openai_success(void)
{
    struct ai_completion c;
    char why[256] = "";
    const char *body =
        "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1732870000,"
        "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":\"  Yes, size M is in stock!\\n\",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":212,"
        "\"completion_tokens\":9,\"total_tokens\":221}}";

    CHECK_INT(openai(200, body, &c, why), AI_FAIL_NONE);
    CHECK_STR(c.text, "Yes, size M is in stock!");
    CHECK_STR(c.model, "gpt-4o-mini-2024-07-18");
    CHECK_INT(c.prompt_tokens, 212);
    CHECK_INT(c.completion_tokens, 9);
    CHECK_STR(c.finish, "stop");
    ai_completion_cleanup(&c);
    CHECK(c.text == NULL);

    /* Without usage or model: -1 and the configured model. */
    CHECK_INT(openai(200, "{\"choices\":[{\"message\":{\"content\":\"ok\"}}]}", &c, why),
              AI_FAIL_NONE);
    CHECK_STR(c.model, "gpt-test");
    CHECK_INT(c.prompt_tokens, -1);
    ai_completion_cleanup(&c);
}

static void test_openai_errors(void)
{
    struct ai_completion c;
    char why[256];

    CHECK_INT(openai(401,
                     "{\"error\":{\"message\":\"Incorrect API key provided: sk-abc***xyz.\","
                     "\"type\":\"invalid_request_error\",\"param\":null,\"code\":"
                     "\"invalid_api_key\"}}",
                     &c, why),
              AI_FAIL_AUTH);
    CHECK_STR(why, "the API key was refused (HTTP 401, invalid_request_error/invalid_api_key)");
    /* The provider's message (here with part of a key) never reaches the reason. */
    CHECK(strstr(why, "sk-") == NULL);
    CHECK(c.text == NULL);

    CHECK_INT(openai(429,
                     "{\"error\":{\"message\":\"Rate limit reached for gpt-4o-mini\",\"type\":"
                     "\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}",
                     &c, why),
              AI_FAIL_RATE);
    CHECK_STR(why, "rate limited (HTTP 429, requests/rate_limit_exceeded)");

    CHECK_INT(openai(429,
                     "{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":"
                     "\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}",
                     &c, why),
              AI_FAIL_RATE);
    CHECK_STR(why, "out of quota (HTTP 429, insufficient_quota)");

    CHECK_INT(openai(500,
                     "{\"error\":{\"message\":\"The server had an error\",\"type\":"
                     "\"server_error\",\"param\":null,\"code\":null}}",
                     &c, why),
              AI_FAIL_SERVER);
    CHECK_STR(why, "server error (HTTP 500, server_error)");

    CHECK_INT(openai(502, "<html>Bad Gateway</html>", &c, why), AI_FAIL_SERVER);
    CHECK_STR(why, "server error (HTTP 502)");

    CHECK_INT(openai(404,
                     "{\"error\":{\"message\":\"The model does not exist\",\"type\":"
                     "\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}",
                     &c, why),
              AI_FAIL_REJECTED);
    CHECK_INT(openai(400,
                     "{\"error\":{\"message\":\"flagged\",\"type\":\"invalid_request_error\","
                     "\"code\":\"content_policy_violation\"}}",
                     &c, why),
              AI_FAIL_REFUSED);
}

static void test_openai_bad_answers(void)
{
    struct ai_completion c;
    char why[256];

    CHECK_INT(openai(200, "{\"choices\":[{\"message\":{\"con", &c, why), AI_FAIL_MALFORMED);
    CHECK_CONTAINS(why, "not JSON");
    CHECK_INT(openai(200, "", &c, why), AI_FAIL_MALFORMED);
    CHECK_INT(openai(200, "[1,2]", &c, why), AI_FAIL_MALFORMED);
    CHECK_INT(openai(200, "{\"object\":\"chat.completion\"}", &c, why), AI_FAIL_MALFORMED);
    CHECK_CONTAINS(why, "no choices");
    CHECK_INT(openai(200, "{\"choices\":[]}", &c, why), AI_FAIL_EMPTY);
    CHECK_STR(why, "an empty list of choices");
    CHECK_INT(openai(200, "{\"choices\":[{\"message\":{\"content\":\"   \"}}]}", &c, why),
              AI_FAIL_EMPTY);
    CHECK_INT(openai(200, "{\"choices\":[{\"message\":{\"content\":42}}]}", &c, why),
              AI_FAIL_MALFORMED);
    CHECK_INT(openai(200, "{\"choices\":[{\"text\":\"legacy\"}]}", &c, why), AI_FAIL_MALFORMED);
    CHECK_INT(openai(200,
                     "{\"choices\":[{\"message\":{\"content\":null},\"finish_reason\":"
                     "\"content_filter\"}]}",
                     &c, why),
              AI_FAIL_REFUSED);
    CHECK_STR(why, "refused by the content filter (content_filter)");
    /* Even with text, a content_filter finish is a refusal: the draft was cut by the filter. */
    CHECK_INT(openai(200,
                     "{\"choices\":[{\"message\":{\"content\":\"partial\"},\"finish_reason\":"
                     "\"content_filter\"}]}",
                     &c, why),
              AI_FAIL_REFUSED);
    CHECK_INT(openai(200,
                     "{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"I can't help "
                     "with that.\"},\"finish_reason\":\"stop\"}]}",
                     &c, why),
              AI_FAIL_REFUSED);
    CHECK_INT(openai(302, "", &c, why), AI_FAIL_MALFORMED);
    CHECK(c.text == NULL);
}

static void test_gemini_success(void)
{
    struct ai_completion c;
    char why[256] = "";
    const char *body =
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"thinking...\",\"thought\":true},"
        "{\"text\":\"Oui, la taille M \"},{\"text\":\"est disponible.\"}],\"role\":\"model\"},"
        "\"finishReason\":\"STOP\",\"index\":0,\"safetyRatings\":[]}],\"usageMetadata\":"
        "{\"promptTokenCount\":180,\"candidatesTokenCount\":12,\"totalTokenCount\":192},"
        "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}";

    CHECK_INT(gemini(200, body, &c, why), AI_FAIL_NONE);
    CHECK_STR(c.text, "Oui, la taille M est disponible.");
    CHECK_STR(c.model, "gemini-2.5-flash");
    CHECK_INT(c.prompt_tokens, 180);
    CHECK_INT(c.completion_tokens, 12);
    CHECK_STR(c.finish, "STOP");
    ai_completion_cleanup(&c);
}

static void test_gemini_errors(void)
{
    struct ai_completion c;
    char why[256];

    CHECK_INT(gemini(400,
                     "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a "
                     "valid API key.\",\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"@type\":"
                     "\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\","
                     "\"domain\":\"googleapis.com\"}]}}",
                     &c, why),
              AI_FAIL_AUTH);
    CHECK_STR(why, "the API key was refused (HTTP 400, INVALID_ARGUMENT/API_KEY_INVALID)");
    CHECK_INT(gemini(403,
                     "{\"error\":{\"code\":403,\"message\":\"denied\",\"status\":"
                     "\"PERMISSION_DENIED\"}}",
                     &c, why),
              AI_FAIL_AUTH);
    CHECK_INT(gemini(429,
                     "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. "
                     "check quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}",
                     &c, why),
              AI_FAIL_RATE);
    CHECK_STR(why, "rate limited (HTTP 429, RESOURCE_EXHAUSTED)");
    CHECK_INT(gemini(503,
                     "{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\","
                     "\"status\":\"UNAVAILABLE\"}}",
                     &c, why),
              AI_FAIL_SERVER);
    CHECK_INT(gemini(500, "{\"error\":{\"code\":500,\"status\":\"INTERNAL\"}}", &c, why),
              AI_FAIL_SERVER);
    CHECK_INT(gemini(404,
                     "{\"error\":{\"code\":404,\"message\":\"models/x is not found\",\"status\":"
                     "\"NOT_FOUND\"}}",
                     &c, why),
              AI_FAIL_REJECTED);
}

static void test_gemini_refusals_and_garbage(void)
{
    struct ai_completion c;
    char why[256];

    CHECK_INT(gemini(200,
                     "{\"promptFeedback\":{\"blockReason\":\"SAFETY\",\"safetyRatings\":[]},"
                     "\"usageMetadata\":{\"promptTokenCount\":9}}",
                     &c, why),
              AI_FAIL_REFUSED);
    CHECK_STR(why, "refused by the safety filter (blockReason SAFETY)");
    CHECK_INT(gemini(200,
                     "{\"candidates\":[{\"finishReason\":\"SAFETY\",\"index\":0,"
                     "\"safetyRatings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\","
                     "\"probability\":\"HIGH\"}]}]}",
                     &c, why),
              AI_FAIL_REFUSED);
    CHECK_STR(why, "refused by the safety filter (finishReason SAFETY)");
    CHECK_INT(gemini(200, "{\"candidates\":[]}", &c, why), AI_FAIL_EMPTY);
    CHECK_INT(gemini(200, "{\"usageMetadata\":{}}", &c, why), AI_FAIL_EMPTY);
    CHECK_INT(gemini(200,
                     "{\"candidates\":[{\"content\":{\"parts\":[]},\"finishReason\":"
                     "\"MAX_TOKENS\"}]}",
                     &c, why),
              AI_FAIL_EMPTY);
    CHECK_STR(why, "an empty draft (finishReason MAX_TOKENS)");
    CHECK_INT(gemini(200, "{\"candidates\":{}}", &c, why), AI_FAIL_MALFORMED);
    CHECK_INT(gemini(200, "{\"candidates\":[{\"content\":{\"parts\":\"x\"}}]}", &c, why),
              AI_FAIL_MALFORMED);
    CHECK_INT(gemini(200, "<html>", &c, why), AI_FAIL_MALFORMED);
    CHECK(c.text == NULL);
}

static enum ai_fail voice(long status, const char *type, const char *body, char *why)
{
    return ai_voice_parse(status, type, body, strlen(body), why, 256);
}

static void test_voice_parse(void)
{
    char why[256];

    CHECK_INT(voice(200, "audio/mpeg", "ID3\x03", why), AI_FAIL_NONE);
    CHECK_INT(voice(200, "application/json", "{}", why), AI_FAIL_MALFORMED);
    CHECK_INT(voice(200, "audio/mpeg", "", why), AI_FAIL_EMPTY);
    CHECK_INT(voice(401, "application/json",
                    "{\"detail\":{\"status\":\"invalid_api_key\",\"message\":\"Invalid API "
                    "key\"}}",
                    why),
              AI_FAIL_AUTH);
    CHECK_STR(why, "the API key was refused (HTTP 401, invalid_api_key)");
    CHECK_INT(voice(429, NULL, "{\"detail\":{\"status\":\"system_busy\"}}", why), AI_FAIL_RATE);
    CHECK_INT(voice(422, NULL, "{\"detail\":[{\"msg\":\"x\"}]}", why), AI_FAIL_REJECTED);
    CHECK_STR(why, "request refused (HTTP 422)");
}

static void test_transport_and_labels(void)
{
    struct cm_httpc_response r;
    char why[256];

    cm_httpc_response_init(&r);
    r.attempts = 3;
    CHECK_INT(ai_provider_transport(CM_TIMEOUT, &r, 2000, why, sizeof(why)), AI_FAIL_TIMEOUT);
    CHECK_STR(why, "no answer within 2 s");
    CHECK_INT(ai_provider_transport(CM_UNAVAIL, &r, 2000, why, sizeof(why)), AI_FAIL_NETWORK);
    CHECK_STR(why, "unreachable (connection failed, 3 attempts)");
    CHECK_INT(ai_provider_transport(CM_TOOBIG, &r, 2000, why, sizeof(why)), AI_FAIL_MALFORMED);
    r.status = 503;
    CHECK_INT(ai_provider_transport(CM_UNAVAIL, &r, 2000, why, sizeof(why)), AI_FAIL_NONE);
    CHECK_STR(ai_fail_label(AI_FAIL_RATE), "rate_limited");
    CHECK_STR(ai_fail_label(AI_FAIL_REFUSED), "refused");
    CHECK(ai_fail_counts(AI_FAIL_AUTH));
    CHECK(ai_fail_counts(AI_FAIL_TIMEOUT));
    CHECK(ai_fail_counts(AI_FAIL_MALFORMED));
    CHECK(!ai_fail_counts(AI_FAIL_REFUSED));
    CHECK(!ai_fail_counts(AI_FAIL_NONE));
}

static void test_durations(void)
{
    /* OpenAI's headers are Go durations. */
    CHECK_INT(ai_duration_ms("1s"), 1000);
    CHECK_INT(ai_duration_ms("6m0s"), 360000);
    CHECK_INT(ai_duration_ms("20ms"), 20);
    CHECK_INT(ai_duration_ms("1.5s"), 1500);
    CHECK_INT(ai_duration_ms("1m30.25s"), 90250);
    CHECK_INT(ai_duration_ms("1h2m3s"), 3723000);
    CHECK_INT(ai_duration_ms("0"), 0);
    CHECK_INT(ai_duration_ms("0s"), 0);
    /* Below a millisecond rounds up: never sooner than asked. */
    CHECK_INT(ai_duration_ms("1500us"), 2);
    CHECK_INT(ai_duration_ms("1500\xc2\xb5s"), 2);
    CHECK_INT(ai_duration_ms("10ns"), 1);
    /* Gemini's retryDelay is protobuf's Duration: seconds, up to nine decimals. */
    CHECK_INT(ai_duration_ms("7s"), 7000);
    CHECK_INT(ai_duration_ms("0.500s"), 500);
    CHECK_INT(ai_duration_ms("1.0001s"), 1001);
    CHECK_INT(ai_duration_ms("0.3s"), 300);
    /* Anything else is unusable. */
    const char *bad[] = {"",    "s",     "1",   "-1s", "1x", "1s ",
                         " 1s", "1.s.s", "1 s", "abc", "ms", "99999999999999s",
                         NULL};
    for (int i = 0; bad[i] != NULL; i++)
        CHECK_MSG(ai_duration_ms(bad[i]) == -1, "\"%s\" was read as %ld ms", bad[i],
                  ai_duration_ms(bad[i]));
    CHECK_INT(ai_duration_ms(NULL), -1);
}

static void test_gemini_retry_info(void)
{
    const char *body =
        "{\"error\":{\"code\":429,\"message\":\"You exceeded your current quota.\","
        "\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":"
        "\"type.googleapis.com/google.rpc.QuotaFailure\",\"violations\":[{\"quotaMetric\":"
        "\"generativelanguage.googleapis.com/generate_content_free_tier_requests\"}]},"
        "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"7s\"}]}}";
    const char *fraction = "{\"error\":{\"code\":429,\"details\":[{\"@type\":"
                           "\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":"
                           "\"1.250s\"}]}}";
    /* A retryDelay outside a RetryInfo is not one. */
    const char *other = "{\"error\":{\"code\":429,\"details\":[{\"@type\":"
                        "\"type.googleapis.com/google.rpc.ErrorInfo\",\"retryDelay\":\"9s\"}]}}";
    const char *none = "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\"}}";
    const char *garbage = "{\"error\":{\"details\":[{\"@type\":"
                          "\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":7}]}}";

    CHECK_INT(ai_gemini_retry_ms(body, strlen(body)), 7000);
    CHECK_INT(ai_gemini_retry_ms(fraction, strlen(fraction)), 1250);
    CHECK_INT(ai_gemini_retry_ms(other, strlen(other)), -1);
    CHECK_INT(ai_gemini_retry_ms(none, strlen(none)), -1);
    CHECK_INT(ai_gemini_retry_ms(garbage, strlen(garbage)), -1);
    CHECK_INT(ai_gemini_retry_ms("not json", 8), -1);
    CHECK_INT(ai_gemini_retry_ms(NULL, 0), -1);
}

/* A response as the HTTP client leaves it: status, body, headers (name, value, ...). */
static void response(struct cm_httpc_response *r, long status, const char *body, long retry_after,
                     const char *const *headers)
{
    cm_httpc_response_init(r);
    r->status = status;
    r->retry_after_ms = retry_after;
    cm_buf_puts(&r->body, body);
    for (int i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        r->headers = cm_xrealloc(r->headers, (r->nheaders + 1) * sizeof(*r->headers));
        r->headers[r->nheaders].name = cm_xstrdup(headers[i]);
        r->headers[r->nheaders].value = cm_xstrdup(headers[i + 1]);
        r->nheaders++;
    }
}

static void test_retry_delays(void)
{
    const char *requests =
        "{\"error\":{\"message\":\"Rate limit reached on requests per min\","
        "\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
    const char *tokens = "{\"error\":{\"message\":\"Rate limit reached on tokens per min\","
                         "\"type\":\"tokens\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
    const char *resets[] = {"x-ratelimit-remaining-requests",
                            "0",
                            "x-ratelimit-reset-requests",
                            "1.5s",
                            "X-RateLimit-Reset-Tokens",
                            "6m0s",
                            NULL};
    const char *gemini_body = "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\","
                              "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc."
                              "RetryInfo\",\"retryDelay\":\"2s\"}]}}";
    const char *ms_header[] = {"retry-after-ms", "2500", NULL};
    struct cm_httpc_response r;
    const char *source = NULL;

    /* OpenAI: the reset of the limit the 429 names, whichever is longer. */
    response(&r, 429, requests, -1, resets);
    CHECK_INT(ai_openai_reset_ms(&r), 1500);
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_OPENAI, &r, &source), 1500);
    CHECK_STR(source, "x-ratelimit-reset-requests");
    cm_httpc_response_cleanup(&r);
    response(&r, 429, tokens, -1, resets);
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_OPENAI, &r, &source), 360000);
    CHECK_STR(source, "x-ratelimit-reset-tokens");
    cm_httpc_response_cleanup(&r);
    /* No type: the longer of the two. */
    response(&r, 429, "{}", -1, resets);
    CHECK_INT(ai_openai_reset_ms(&r), 360000);
    cm_httpc_response_cleanup(&r);
    /* Retry-After longer than the reset: never sooner than any stated wait. */
    response(&r, 429, requests, 3000, resets);
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_OPENAI, &r, &source), 3000);
    CHECK_STR(source, "Retry-After");
    cm_httpc_response_cleanup(&r);
    response(&r, 429, requests, 1000, ms_header);
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_OPENAI, &r, &source), 2500);
    CHECK_STR(source, "retry-after-ms");
    cm_httpc_response_cleanup(&r);
    /* Nothing stated: -1, the caller backs off. */
    response(&r, 429, requests, -1, NULL);
    source = "unchanged";
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_OPENAI, &r, &source), -1);
    CHECK(source == NULL);
    cm_httpc_response_cleanup(&r);

    /* Gemini: the body's RetryInfo; OpenAI's headers mean nothing there. */
    response(&r, 429, gemini_body, -1, resets);
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_GEMINI, &r, &source), 2000);
    CHECK_STR(source, "retryDelay");
    cm_httpc_response_cleanup(&r);
    response(&r, 429, gemini_body, 4000, NULL);
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_GEMINI, &r, &source), 4000);
    CHECK_STR(source, "Retry-After");
    cm_httpc_response_cleanup(&r);
    response(&r, 503, "{\"error\":{\"code\":503,\"status\":\"UNAVAILABLE\"}}", -1, NULL);
    CHECK_INT(ai_retry_delay_ms(AI_PROVIDER_GEMINI, &r, NULL), -1);
    cm_httpc_response_cleanup(&r);
}

int main(void)
{
    RUN(test_openai_body);
    RUN(test_gemini_body);
    RUN(test_openai_success);
    RUN(test_openai_errors);
    RUN(test_openai_bad_answers);
    RUN(test_gemini_success);
    RUN(test_gemini_errors);
    RUN(test_gemini_refusals_and_garbage);
    RUN(test_voice_parse);
    RUN(test_transport_and_labels);
    RUN(test_durations);
    RUN(test_gemini_retry_info);
    RUN(test_retry_delays);
    return check_summary();
}
