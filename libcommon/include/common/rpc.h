/*
 * rpc.h - NATS request/reply services on a pool of worker threads.
 *
 * A daemon's internal API is a set of request subjects ("vault.integration.connect"). Each
 * is subscribed in a queue group, so replicas share the load. A request is handed to one
 * of N worker threads, each with its own PostgreSQL connection, which runs the handler and
 * replies. Handlers may block (PostgreSQL, Meta's API): they never run on the event loop
 * or on nats.c's threads.
 *
 * The wire contract (proto/README.md): the request is a JSON object; the reply is
 * {"result": <any JSON>} or {"error": {"code": "<code>", "message": "<one line>"}} with
 * code one of invalid, denied, not_found, conflict, refused, unavailable, busy, internal.
 */
#ifndef COMMON_RPC_H
#define COMMON_RPC_H

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdbool.h>

#include "common/err.h"

struct cm_rpc;
struct cm_nats;
struct cm_pg;
struct cm_metrics;

/* One request in a worker's hands. Everything here is borrowed for the handler's call. */
struct cm_rpc_call {
    const char *subject;
    const cJSON *req;   /* the parsed request object */
    const char *caller; /* the identity that sent it: the last token of its subject */
    const char *actor;  /* req.actor (validated), or the caller when absent */
    struct cm_pg *pg;   /* the worker's connection (search_path: the service's schema) */
    int worker;         /* 0..N-1 */
    natsMsg *msg;       /* the NATS message, for its reply subject */
    struct cm_rpc *rpc; /* the server it came through */
    int replied;        /* set by the reply functions */
    int forwarded;      /* handed to another lane by cm_rpc_forward() */
};

/* Handles one call and must reply exactly once (a handler that forgets gets an
 * "internal" error reply on its behalf). */
typedef void (*cm_rpc_fn)(struct cm_rpc_call *call, void *arg);

/*
 * Creates a request server for the service named name with `workers` threads, each
 * connecting to db_url with search_path schema. metrics may be NULL. Free with
 * cm_rpc_destroy().
 */
int cm_rpc_create(struct cm_rpc **out, struct cm_nats *n, const char *name, const char *db_url,
                  const char *schema, int workers, struct cm_metrics *metrics) CM_MUST_CHECK;
/*
 * Like cm_rpc_create(), for a lane: another server of the same service, on the same
 * connection, whose workers serve only the subjects routed to it. Subjects whose handlers
 * wait on a third party (Meta's API, an AI provider, S3) get a lane of their own, so that
 * however many of them hang, the service's other requests still find a free worker. Its
 * metrics carry the label lane="<lane>". lane is copied.
 */
int cm_rpc_create_lane(struct cm_rpc **out, struct cm_nats *n, const char *name, const char *lane,
                       const char *db_url, const char *schema, int workers,
                       struct cm_metrics *metrics) CM_MUST_CHECK;

/*
 * Routes subject to fn (before cm_rpc_start): the server subscribes "<subject>.*", each
 * caller publishing on "<subject>.<its identity>" (cm_nats_request), a subject space the
 * server's permissions give to that identity alone. subject is copied; arg is borrowed.
 */
void cm_rpc_handle(struct cm_rpc *rpc, const char *subject, cm_rpc_fn fn, void *arg);

/* The most calls a batch handler is given at once. */
#define CM_RPC_BATCH_MAX 16

/* Handles n calls of one subject (1 <= n <= the route's max) and must reply to each exactly
 * once, as a cm_rpc_fn does. calls[i]->pg is the same worker connection for all of them. */
typedef void (*cm_rpc_batch_fn)(struct cm_rpc_call *const *calls, int n, void *arg);

/*
 * Routes subject to fn, which serves the calls queued for it together: the worker that takes
 * one also takes up to max - 1 more of the same subject waiting behind it (never waiting for
 * more to come), so that one statement can serve them all and a burst costs fewer round trips.
 * Each call has passed the same checks as for cm_rpc_handle() (its caller, a JSON object, an
 * actor it may name); the others were answered already. max is 1 to CM_RPC_BATCH_MAX.
 */
void cm_rpc_handle_batch(struct cm_rpc *rpc, const char *subject, cm_rpc_batch_fn fn, void *arg,
                         int max);

/* How many requests wait for a worker now (a test's readiness check). Any thread. */
int cm_rpc_queued(struct cm_rpc *rpc);

/*
 * Lets caller name "operator" as the actor of requests on subject, which only the operator
 * identity may do otherwise: for a daemon that passes on what the operator asked of it (the
 * reaper's workspace deletion, ai-suggest's reading for a suggestion). After
 * cm_rpc_handle(subject); caller is copied.
 */
void cm_rpc_delegate(struct cm_rpc *rpc, const char *subject, const char *caller);

/*
 * Declares, on a lane, a subject whose calls another server of the service may hand over with
 * cm_rpc_forward(), served here by fn (which must reply exactly once, as for cm_rpc_handle):
 * nothing is subscribed for it. For a request that waits on the lane's third party only
 * when its body says so (router.reply with a file: S3). subject is copied; arg is borrowed.
 * The lane must outlive every server that forwards to it (cm_rpc_destroy those first).
 */
void cm_rpc_handle_forwarded(struct cm_rpc *lane, const char *subject, cm_rpc_fn fn, void *arg);

/*
 * From a handler: hands the call to lane, whose handler for the subject
 * (cm_rpc_handle_forwarded) serves it anew on one of lane's workers, with that worker's
 * connection, and answers the caller. The handler returns at once after it and touches the
 * call's message no more. When lane's queue is full or it is stopping, the caller is answered
 * "busy" here instead.
 */
void cm_rpc_forward(struct cm_rpc_call *call, struct cm_rpc *lane);

/* True when actor is a well-formed actor: 1 to 128 of A-Z a-z 0-9 . _ : @ + - */
bool cm_rpc_actor_valid(const char *actor);

/* Session settings for every worker's connection (cm_pg_session); before cm_rpc_start. */
void cm_rpc_session(struct cm_rpc *rpc, const char *sql);

/* Starts the workers and subscribes, now or on the first connect. */
int cm_rpc_start(struct cm_rpc *rpc) CM_MUST_CHECK;

/*
 * Stops subscribing (a reconnect after this subscribes nothing), drains the subscriptions and
 * waits until nats.c will call none of their handlers again, answers what is queued, joins
 * the workers and frees. Call before cm_nats_destroy() of its connection. Accepts NULL.
 */
void cm_rpc_destroy(struct cm_rpc *rpc);

/* Replies {"result": result}. Takes ownership of result (may be NULL for JSON null). */
void cm_rpc_reply(struct cm_rpc_call *call, cJSON *result);

/*
 * Replies one page of a list: {"result": result, "next_cursor": next_cursor}, next_cursor
 * null (NULL) on the last page. The result stays what the subject's contract says (an
 * array), so a caller that reads only "result" is unchanged. Takes ownership of result;
 * next_cursor is copied.
 */
void cm_rpc_reply_page(struct cm_rpc_call *call, cJSON *result, const char *next_cursor);

/*
 * Like cm_rpc_reply(), for a result that holds a secret (a token): the serialized reply and
 * every string of result are zeroed before they are freed. (The copy in nats.c's write
 * buffer is overwritten by the next messages.)
 */
void cm_rpc_reply_secret(struct cm_rpc_call *call, cJSON *result);

/* Replies {"error": {"code", "message"}}; code is one of the contract's codes. */
void cm_rpc_fail(struct cm_rpc_call *call, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Maps a shared error code to the contract's code name ("not_found" for CM_NOTFOUND...). */
const char *cm_rpc_code(int err);

/*
 * Asks service (its request subject, for timeout_ms) on call's behalf: req (taken, freed)
 * gets call's actor unless it names one. Returns the answer's "result" (in *reply, which the
 * caller frees whatever the outcome), or NULL after answering call: with the service's refusal
 * as is, "unavailable" when it did not answer, or "internal" when the answer was not the
 * contract's (rpc_ask.c).
 */
const cJSON *cm_rpc_ask(struct cm_rpc_call *call, struct cm_nats *n, const char *service,
                        const char *subject, cJSON *req, long timeout_ms, cJSON **reply);

/* Request fields: a string, or NULL when absent or not a string (borrowed). */
const char *cm_rpc_str(const struct cm_rpc_call *call, const char *name);

#endif
