/*
 * ai.h - ai-suggest: reply drafts from OpenAI or Gemini for workspaces that turned AI on,
 * with the conversation masked before it leaves, each draft sealed at rest under its
 * workspace's key, and purged with it.
 *
 * main.c holds the settings and the loop, context.c asks conversation-router for the
 * conversation, suggest.c serves ai.suggest, store.c owns the schema, purge.c serves
 * ai.purge, read.c ai.suggestion.get. mask.c, prompt.c, parse.c, provider.c, breaker.c and voice.c
 * are the pieces that know nothing of NATS or PostgreSQL (the ai_core library the tests link).
 */
#ifndef AI_AI_H
#define AI_AI_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "breaker.h"
#include "common/httpc.h"
#include "common/keyring.h"
#include "common/rpc.h"
#include "common/service.h"
#include "context.h"
#include "provider.h"
#include "voice.h"

#define AI_SERVICE "ai-suggest"
#define AI_SCHEMA  "ai"

/* suggestion.created events (proto/ai.md); never "ai.>", which holds the request subjects. */
#define AI_EVENTS_STREAM   "AI_EVENTS"
#define AI_EVENTS_SUBJECTS "ai.events.>"
#define AI_EVENT_CREATED   "ai.events.suggestion.created"

/* Worker threads of ai.suggest's lane: each spends most of a request waiting on a provider. */
#define AI_WORKERS 8
/* Worker threads of the rest (ai.suggestion.get, ai.purge): PostgreSQL only. */
#define AI_READ_WORKERS 4

struct ai_cfg {
    struct cm_base_cfg base; /* first: cm_service_configure() relies on it */
    char *listen;
    char *providers; /* "openai,gemini" */
    char *openai_key;
    char *openai_url;
    char *openai_model;
    char *gemini_key;
    char *gemini_url;
    char *gemini_model;
    int64_t timeout; /* seconds */
    char *eleven_key;
    char *eleven_url;
    char *eleven_voice;
    char *eleven_model;
    int64_t context_chars;
    int64_t breaker_failures;
    int64_t breaker_cooldown; /* seconds */
};

struct ai {
    struct cm_service svc;
    const struct ai_cfg *cfg;
    struct cm_keyring *keyring;
    struct cm_rpc *rpc;          /* ai.suggestion.get, ai.purge: the suite's own data */
    struct cm_rpc *provider_rpc; /* ai.suggest, which waits on the providers: a lane */
    struct cm_outbox *outbox;

    /* The providers with a key, in AI_PROVIDERS order, each with its breaker. */
    struct ai_provider providers[AI_PROVIDER_KINDS];
    struct ai_breaker breakers[AI_PROVIDER_KINDS];
    int nproviders;
    bool voice_on;
    struct ai_voice voice;
    /* One HTTP client per worker of the provider lane, so that connections to a provider
     * stay open. */
    struct cm_httpc *http[AI_WORKERS];

    struct cm_metric *m_suggestions[AI_PROVIDER_KINDS];
    struct cm_metric *m_latency[AI_PROVIDER_KINDS];
    struct cm_metric *m_skipped[AI_PROVIDER_KINDS];
    struct cm_metric *m_breaker[AI_PROVIDER_KINDS];
    struct cm_metric *m_refused;
    struct cm_metric *m_no_text;
    struct cm_metric *m_failed;
    struct cm_metric *m_masked;
    struct cm_metric *m_voice;
    struct cm_metric *m_seconds;
};

/* --- suggest.c: ai.suggest -------------------------------------------------------------- */

/* Routes ai.suggest to its handler on ai->rpc (before cm_rpc_start). */
void ai_suggest_register(struct ai *ai);

/* --- store.c: the ai schema ------------------------------------------------------------- */

/* One suggestion to store; every pointer borrowed. */
struct ai_record {
    const char *id;
    const struct ai_context *ctx; /* workspace, integration, conversation */
    const char *actor;
    const char *provider;
    const struct ai_completion *draft;
    const void *audio; /* NULL without voice */
    size_t audio_len;
    const char *audio_type;
    long latency_ms;
    int masked; /* items masked in what was sent out */
};

/*
 * Seals the draft (and the audio) under the data key of its integration (or of its workspace
 * when it has none: cm_keyring_scope_id(), the router's key id for the same Platform Data, so
 * that the integration's purge shreds it), each bound to its row and column,
 * and writes the row, the suggestion.created event and the suggestion.create audit event in
 * one statement of one transaction on pg (committed without waiting for the WAL flush): the
 * suggestion exists with its event and audit or not at all. Writes its created_at (RFC 3339)
 * into created (cap bytes). Returns CM_OK or the keyring's or the database's error (logged).
 */
int ai_store_suggestion(struct ai *ai, struct cm_pg *pg, const struct ai_record *r, char *created,
                        size_t cap) CM_MUST_CHECK;

/* --- purge.c: ai.purge ----------------------------------------------------------------------- */

/* Routes ai.purge (proto/purge.md) to its handler on ai->rpc. */
void ai_purge_register(struct ai *ai);

/* --- read.c: ai.suggestion.get ------------------------------------------------------------- */

/* Routes ai.suggestion.get to its handler on ai->rpc. */
void ai_read_register(struct ai *ai);

/* --- shared helpers (suggest.c) ---------------------------------------------------------- */

/* True for an opaque id of the suite: 1..max of [A-Za-z0-9_.:-]. */
bool ai_valid_id(const char *s, size_t max);

#endif
