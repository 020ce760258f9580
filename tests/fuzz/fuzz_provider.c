/*
 * fuzz_provider - libFuzzer driver for what OpenAI and Gemini send back: their answers and
 * error bodies (ai_openai_parse, ai_gemini_parse), Gemini's RetryInfo and the durations in
 * OpenAI's x-ratelimit-reset-* headers. The input's first byte picks the HTTP status (200,
 * 400, 401, 429, 500, 503), the rest is the body, and its first line is also read as a
 * duration. Besides not crashing: a draft is never empty, a failure leaves no draft behind,
 * and a delay is -1 or a wait no shorter than zero.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/httpc.h"
#include "provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(enum ai_fail f, const struct ai_completion *c)
{
    if (f == AI_FAIL_NONE && (c->text == NULL || c->len == 0 || strlen(c->text) != c->len))
        abort();
    if (f != AI_FAIL_NONE && c->text != NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 400, 401, 429, 500, 503};
    const char *body = size > 0 ? (const char *)data + 1 : "";
    size_t len = size > 0 ? size - 1 : 0;
    long status = size > 0 ? statuses[data[0] % 6] : 200;
    struct ai_completion c;
    struct cm_httpc_response resp;
    char why[256], line[64];
    const char *nl = memchr(body, '\n', len);
    size_t n = nl != NULL ? (size_t)(nl - body) : len;

    check(ai_openai_parse(status, body, len, "m", &c, why, sizeof(why)), &c);
    ai_completion_cleanup(&c);
    check(ai_gemini_parse(status, body, len, "m", &c, why, sizeof(why)), &c);
    ai_completion_cleanup(&c);
    if (ai_gemini_retry_ms(body, len) < -1)
        abort();

    /* The first line as a header value; the body as the 429's body. */
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    memcpy(line, body, n);
    line[n] = '\0';
    if (ai_duration_ms(line) < -1)
        abort();
    cm_httpc_response_init(&resp);
    resp.status = status;
    cm_buf_append(&resp.body, body, len);
    resp.headers = calloc(2, sizeof(*resp.headers));
    if (resp.headers == NULL)
        abort();
    resp.headers[0].name = strdup("x-ratelimit-reset-requests");
    resp.headers[0].value = strdup(line);
    resp.headers[1].name = strdup("retry-after-ms");
    resp.headers[1].value = strdup(line);
    resp.nheaders = 2;
    if (ai_retry_delay_ms(AI_PROVIDER_OPENAI, &resp, NULL) < -1 ||
        ai_retry_delay_ms(AI_PROVIDER_GEMINI, &resp, NULL) < -1)
        abort();
    cm_httpc_response_cleanup(&resp);
    return 0;
}
