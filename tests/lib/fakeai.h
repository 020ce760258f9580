/*
 * fakeai.h - one local server standing in for OpenAI, Google Gemini and ElevenLabs, speaking
 * their real wire formats: the request each expects (path, key header, JSON body), their
 * answers, and their error bodies, rate limits and slowness, as scripted by the test.
 *
 *   OpenAI      POST /v1/chat/completions, "Authorization: Bearer FAKEAI_OPENAI_KEY",
 *               {"model", "messages"}; errors {"error": {"message", "type", "param", "code"}}
 *   Gemini      POST /v1beta/models/<model>:generateContent, "x-goog-api-key:
 *               FAKEAI_GEMINI_KEY", {"contents": [{"parts": [...]}]}; errors
 *               {"error": {"code", "message", "status"}}
 *   ElevenLabs  POST /v1/text-to-speech/<voice>, "xi-api-key: FAKEAI_ELEVEN_KEY",
 *               {"text", "model_id"}; answers audio/mpeg; errors {"detail": {"status",
 *               "message"}}
 * A request with a wrong key or a malformed body gets the provider's own 401/400 whatever
 * the scripted mode, so a test also proves that ai-suggest speaks the format.
 *
 * Rate limits, each provider's way, stating the wait set by fakeai_set_retry_delay():
 *   OpenAI      429 {"error": {"message", "type": "requests", "code": "rate_limit_exceeded"}}
 *               with Retry-After (whole seconds, rounded up) and x-ratelimit-limit-*,
 *               -remaining-* and -reset-* headers (Go durations: "1.5s", "6m0s", "20ms")
 *   Gemini      429 RESOURCE_EXHAUSTED, the wait only in the body: details[] holds a
 *               google.rpc.RetryInfo {"retryDelay": "1.500s"}; no Retry-After
 *   ElevenLabs  429 with Retry-After (whole seconds)
 *
 * Base URLs for ai-suggest: OPENAI_BASE_URL=<url>/v1, GEMINI_BASE_URL=<url>/v1beta,
 * ELEVENLABS_BASE_URL=<url>.
 */
#ifndef TESTS_FAKEAI_H
#define TESTS_FAKEAI_H

#include "fakehttp.h"

#define FAKEAI_OPENAI_KEY "sk-test-openai-0123456789abcdef"
#define FAKEAI_GEMINI_KEY "AIzaTestGemini0123456789abcdef"
#define FAKEAI_ELEVEN_KEY "xi-test-eleven-0123456789abcdef"

/* The drafts the stand-ins write (the OpenAI one holds an address, for the voice masking). */
#define FAKEAI_OPENAI_DRAFT                                                                        \
    "Yes, the blue jacket is in stock in size M. Write to orders@acme-outdoor.example to hold it."
#define FAKEAI_GEMINI_DRAFT "Oui, la veste bleue est disponible en taille M."
#define FAKEAI_OPENAI_MODEL "gpt-4o-mini-2024-07-18"
#define FAKEAI_GEMINI_MODEL "gemini-2.5-flash-001"

enum fakeai_provider {
    FAKEAI_OPENAI = 0,
    FAKEAI_GEMINI = 1,
    FAKEAI_ELEVEN = 2,
};

enum fakeai_mode {
    FAKEAI_OK = 0,         /* a draft (audio for ElevenLabs) */
    FAKEAI_500,            /* the provider's 500 error body, every time */
    FAKEAI_503,            /* 503 (Gemini: UNAVAILABLE "The model is overloaded") */
    FAKEAI_401,            /* the key is refused (Gemini: 400 API_KEY_INVALID) */
    FAKEAI_429,            /* rate limited (see above), every time */
    FAKEAI_429_ONCE,       /* rate limited on the first request after scripting it, then OK */
    FAKEAI_429_QUOTA,      /* OpenAI: 429 insufficient_quota (others: like FAKEAI_429) */
    FAKEAI_429_LONG,       /* rate limited, stating a wait of 30 s */
    FAKEAI_429_RESET_ONCE, /* like FAKEAI_429_ONCE, but OpenAI's answer has no Retry-After:
                            * only its x-ratelimit-reset-* headers say how long to wait */
    FAKEAI_MALFORMED,      /* 200 with a truncated JSON body */
    FAKEAI_EMPTY,          /* 200 with no choice / candidate */
    FAKEAI_REFUSED,        /* content filter (OpenAI), finishReason SAFETY (Gemini) */
    FAKEAI_BLOCKED,        /* Gemini: promptFeedback.blockReason SAFETY */
    FAKEAI_HANG,           /* answers only after the delay (fakeai_set_delay, default 30 s) */
    FAKEAI_CLOSE,          /* closes the connection without answering */
};

struct fakeai;

/* Starts the server on 127.0.0.1 and a free port, every provider in FAKEAI_OK. Returns 0 or -1. */
int fakeai_start(struct fakeai **out);
/* The same on a given port (for tests/tools/fakeai_server). */
int fakeai_start_at(struct fakeai **out, int port);
/* Stops the server and frees f; accepts NULL. */
void fakeai_stop(struct fakeai *f);
/* "http://127.0.0.1:PORT", borrowed. */
const char *fakeai_url(const struct fakeai *f);

/* Scripts a provider (thread-safe; takes effect for the next request). */
void fakeai_set(struct fakeai *f, enum fakeai_provider p, enum fakeai_mode m);
/* How long FAKEAI_HANG waits before answering (ms). */
void fakeai_set_delay(struct fakeai *f, enum fakeai_provider p, int ms);
/* The wait the 429 modes (but FAKEAI_429_LONG) state, in ms (default 1000). */
void fakeai_set_retry_delay(struct fakeai *f, enum fakeai_provider p, int ms);

/* Requests the provider received since the start or the last fakeai_reset(). */
int fakeai_count(struct fakeai *f, enum fakeai_provider p);
/* The body of the provider's last request (a new string; free it), or NULL. */
char *fakeai_last_body(struct fakeai *f, enum fakeai_provider p);
/* Every body the provider received, joined by newlines (a new string; free it). */
char *fakeai_all_bodies(struct fakeai *f, enum fakeai_provider p);
/* The value of header name in the provider's last request (a new string), or NULL. */
char *fakeai_last_header(struct fakeai *f, enum fakeai_provider p, const char *name);
/* The path of the provider's last request (a new string), or NULL. */
char *fakeai_last_path(struct fakeai *f, enum fakeai_provider p);

/*
 * When the provider's requests arrived (fakehttp's at_ms, CLOCK_MONOTONIC ms), in order:
 * fills at most max of them into at and returns how many there are.
 */
int fakeai_times(struct fakeai *f, enum fakeai_provider p, long long *at, int max);

/* The underlying fakehttp server (its recorded requests), borrowed. */
struct fakehttp *fakeai_server(struct fakeai *f);

/* Forgets the recorded requests and puts every provider back in FAKEAI_OK, stating 1 s. */
void fakeai_reset(struct fakeai *f);

#endif
