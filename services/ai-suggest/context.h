/*
 * context.h - the conversation as conversation-router gives it to ai-suggest, over NATS
 * (router.conversation.context, proto/router.md); ai-suggest never reads the router's schema.
 *
 * The router decides who may read the conversation (the actor's role) and whether AI is on
 * for its workspace; when it is off the router refuses and no message content is sent here.
 */
#ifndef AI_CONTEXT_H
#define AI_CONTEXT_H

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "common/nats.h"
#include "prompt.h"

#define AI_CONTEXT_SUBJECT "router.conversation.context"
/* At most this many messages are read from a context; the budget keeps far fewer. */
#define AI_CONTEXT_MAX_MESSAGES 500

/* A conversation's context. Everything points into root; ai_context_cleanup() frees it. */
struct ai_context {
    cJSON *root; /* the router's reply, owned */
    const char *conversation_id;
    const char *workspace_id;
    const char *integration_id; /* NULL when the router gave none */
    const char *platform;
    bool ai;       /* the workspace's AI opt-in */
    bool mask_pii; /* masking before sending out: true unless the workspace switched it off */
    const char **contact_ids;
    size_t ncontacts;
    struct ai_message *msgs; /* oldest first; text NULL for a message without text */
    size_t nmsgs;
};

/*
 * Reads the router's reply (len bytes: {"result": {...}} or {"error": {"code", "message"}})
 * into ctx, which must be zeroed or cleaned up. Returns CM_OK; CM_DENIED when the router
 * answered an error, whose code (one of the contract's) goes into code (ccap bytes) and
 * whose message into why (cap bytes); CM_INVALID when the reply is not of that shape
 * (code "internal"). ctx is cleaned up on error. Any bytes are safe.
 */
int ai_context_parse(struct ai_context *ctx, const char *reply, size_t len, char *code, size_t ccap,
                     char *why, size_t cap) CM_MUST_CHECK;

/*
 * Requests the context of conversation_id for actor, the newest messages within max_chars,
 * waiting at most timeout_ms, then parses it like ai_context_parse(). Returns the same, or
 * CM_UNAVAIL (code "unavailable") when the router does not answer or NATS is down.
 * Blocking: worker threads only.
 */
int ai_context_fetch(struct cm_nats *n, const char *actor, const char *conversation_id,
                     long max_chars, long timeout_ms, struct ai_context *ctx, char *code,
                     size_t ccap, char *why, size_t cap) CM_MUST_CHECK;

/* Frees what ctx holds and zeroes it. Accepts a zeroed ctx. */
void ai_context_cleanup(struct ai_context *ctx);

#endif
