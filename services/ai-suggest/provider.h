/*
 * provider.h - the language models behind a suggestion: OpenAI Chat Completions and Google
 * Gemini generateContent, spoken in their own wire formats through libcommon's HTTP client.
 *
 * Every way a provider can fail ends as one enum ai_fail and one line of reason meant for
 * the operator ("openai: rate limited (HTTP 429, rate_limit_exceeded) after 3 attempts").
 * A reason is built from the HTTP status, the provider's error identifiers (type, code,
 * status) and our own words, never from the provider's free-text message, which may echo
 * part of the prompt or of the API key. Nothing here logs a prompt, a completion or a key.
 */
#ifndef AI_PROVIDER_H
#define AI_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "common/httpc.h"
#include "common/mem.h"

enum ai_provider_kind {
    AI_PROVIDER_OPENAI = 0,
    AI_PROVIDER_GEMINI = 1,
};
#define AI_PROVIDER_KINDS 2

/* Why a call gave no usable draft. AI_FAIL_NONE: it did. */
enum ai_fail {
    AI_FAIL_NONE = 0,
    AI_FAIL_AUTH,      /* 401 or 403: the API key was refused */
    AI_FAIL_RATE,      /* 429, still after the retries or Retry-After allowed */
    AI_FAIL_SERVER,    /* 5xx, still after the retries */
    AI_FAIL_REJECTED,  /* another 4xx: the request was refused (unknown model, too long...) */
    AI_FAIL_TIMEOUT,   /* no answer within AI_TIMEOUT */
    AI_FAIL_NETWORK,   /* could not connect, or the connection broke */
    AI_FAIL_MALFORMED, /* not JSON, or JSON without the expected fields */
    AI_FAIL_EMPTY,     /* no choice or candidate, or only an empty text */
    AI_FAIL_REFUSED,   /* a content filter or safety block refused the prompt or the draft */
};
#define AI_FAIL_KINDS 10

/* A short label for metrics ("auth", "rate_limited", "timeout"...). */
const char *ai_fail_label(enum ai_fail f);

/*
 * True for failures that say the provider is unwell or unusable, which count against its
 * circuit breaker; false for AI_FAIL_NONE and AI_FAIL_REFUSED.
 */
bool ai_fail_counts(enum ai_fail f);

/* A draft as a provider returned it. Embedded: zero it, then ai_completion_cleanup(). */
struct ai_completion {
    char *text; /* the draft (heap, NUL-terminated); Platform Data-derived */
    size_t len;
    char model[96];         /* the model that answered, as the provider names it */
    long prompt_tokens;     /* -1 when the provider did not say */
    long completion_tokens; /* -1 when the provider did not say */
    char finish[32];        /* finish_reason / finishReason, "" when absent */
};

/* Wipes and frees the text; leaves c zeroed. */
void ai_completion_cleanup(struct ai_completion *c);

/* --- wire formats (parse.c): pure functions, unit-tested and fuzzed ----------------------- */

/*
 * Appends the Chat Completions request body to out: {"model", "messages": [system, user]}.
 * The texts are JSON-escaped. out should be reserved by the caller when it will be wiped.
 */
void ai_openai_body(struct cm_buf *out, const char *model, const char *system, const char *user);

/*
 * Appends the generateContent request body to out: {"systemInstruction": {"parts"},
 * "contents": [{"role": "user", "parts": [{"text"}]}]}.
 */
void ai_gemini_body(struct cm_buf *out, const char *system, const char *user);

/*
 * Reads a provider's answer: status is the HTTP status (> 0), body its len bytes. On success
 * fills out (model defaulting to fallback_model) and returns AI_FAIL_NONE; otherwise returns
 * the failure and writes the reason, without the provider's name, into why (cap bytes).
 * out is left empty on failure. Any bytes are safe.
 */
enum ai_fail ai_openai_parse(long status, const char *body, size_t len, const char *fallback_model,
                             struct ai_completion *out, char *why, size_t cap);
enum ai_fail ai_gemini_parse(long status, const char *body, size_t len, const char *fallback_model,
                             struct ai_completion *out, char *why, size_t cap);

/* --- rate-limit delays (parse.c) ------------------------------------------------------- */

/*
 * Parses a duration as the providers write them into milliseconds (rounded up): Go's
 * time.Duration text in OpenAI's x-ratelimit-reset-* headers ("1s", "6m0s", "20ms",
 * "1h2m3.5s", "1.5s") and protobuf's Duration JSON in Gemini's retryDelay ("7s", "0.5s",
 * "1.200s"). Returns -1 for anything else (empty, negative, no unit, trailing text).
 */
long ai_duration_ms(const char *text);

/*
 * The retryDelay of a google.rpc.RetryInfo in Gemini's error body
 * ({"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
 * "retryDelay": "7s"}]}}) in ms, or -1 when there is none. Any bytes are safe.
 */
long ai_gemini_retry_ms(const char *body, size_t len);

/*
 * The reset time OpenAI gives for the limit a 429 names: error.type "requests" reads
 * x-ratelimit-reset-requests, "tokens" x-ratelimit-reset-tokens, anything else the longer
 * of the two. In ms, or -1 when absent or unreadable.
 */
long ai_openai_reset_ms(const struct cm_httpc_response *resp);

/*
 * How long a provider asked us to wait before the next attempt after the answer in resp,
 * in ms, or -1 when it said nothing: the longest of every delay it stated, so that no retry
 * comes sooner than any of them. Both: Retry-After (resp->retry_after_ms). OpenAI also
 * retry-after-ms and ai_openai_reset_ms(); Gemini ai_gemini_retry_ms(). *source (may be
 * NULL) receives the name of the field that set the delay ("Retry-After", "retryDelay",
 * "x-ratelimit-reset-requests", ...), static text.
 */
long ai_retry_delay_ms(enum ai_provider_kind kind, const struct cm_httpc_response *resp,
                       const char **source);

/* --- calls (provider.c) ----------------------------------------------------------------- */

/* One configured provider. Strings are borrowed from the settings for the process's life. */
struct ai_provider {
    enum ai_provider_kind kind;
    const char *name;     /* "openai", "gemini" */
    const char *base_url; /* OPENAI_BASE_URL, GEMINI_BASE_URL */
    const char *key;      /* the API key (sodium memory); never logged */
    const char *model;
    long timeout_ms;  /* AI_TIMEOUT: the whole call, retries and waits included */
    int max_attempts; /* 0: 3 */
};

/*
 * Asks p for a draft of the reply to the conversation in user, under the instructions in
 * system. http may be NULL (a connection for this call only). Retries 429 and 5xx answers
 * and connection failures with backoff, all within p->timeout_ms; a wait the provider asks
 * for (ai_retry_delay_ms()) replaces the backoff, and one longer than the time left ends
 * the call at once. An OpenAI 429 "insufficient_quota" is final at once (waiting will not
 * help). Returns
 * AI_FAIL_NONE with out filled, or the failure with why ("<name>: <reason>") filled and out
 * empty. *attempts and *elapsed_ms (may be NULL) receive what the call took.
 */
enum ai_fail ai_provider_call(const struct ai_provider *p, struct cm_httpc *http,
                              const char *system, const char *user, const char *log_id,
                              struct ai_completion *out, char *why, size_t cap, int *attempts,
                              long *elapsed_ms);

/*
 * Turns an HTTP client outcome without a usable status into a failure and its reason:
 * rc is cm_httpc_do()'s result, resp its response. Shared with the voice client.
 * Returns AI_FAIL_NONE when resp holds an answer to parse.
 */
enum ai_fail ai_provider_transport(int rc, const struct cm_httpc_response *resp, long timeout_ms,
                                   char *why, size_t cap);

#endif
