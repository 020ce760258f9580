/*
 * ask.h - NATS requests to other services (the reaper, token-vault) on behalf of an HTTP
 * request, made on worker threads and answered on the loop.
 */
#ifndef INGEST_ASK_H
#define INGEST_ASK_H

#include <cjson/cJSON.h>

#include "common/err.h"

struct ingest;

/* How long a callback waits for the service it asks: well inside Meta's deadline. */
#define INGEST_ASK_WAIT_MS 5000

/* The answer to one request, borrowed for the callback's duration. */
struct ingest_answer {
    int rc;              /* CM_OK; CM_UNAVAIL when nobody answered in time (or "unavailable",
                            "busy"); CM_INVALID, CM_NOTFOUND, CM_DENIED... for the others */
    const char *code;    /* the contract's error code, "" on success */
    const char *message; /* the service's message, or why nobody answered */
    const cJSON *result; /* the "result" member on success */
};

/* Runs on the loop thread with the answer; arg is the caller's. */
typedef void (*ingest_ask_fn)(struct ingest *ing, void *arg, const struct ingest_answer *a);

/*
 * Queues a request of body (a JSON text, owned from here on) to subject. done runs later on
 * the loop, exactly once (at once, with CM_UNAVAIL, when too many requests are queued). The
 * request counts as in flight, so that a shutdown waits for its answer. Loop thread only.
 */
void ingest_ask(struct ingest *ing, const char *subject, char *body, ingest_ask_fn done, void *arg);

/* Starts the worker threads. Returns CM_OK or CM_ERR. */
int ingest_ask_start(struct ingest *ing) CM_MUST_CHECK;

/*
 * Stops the workers after the loop has ended: requests still queued are dropped without a
 * callback (their HTTP connections are gone with the server). Accepts a never-started pool.
 */
void ingest_ask_stop(struct ingest *ing);

#endif
