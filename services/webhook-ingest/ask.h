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

/* Each lane has its own workers and bounded queue (ask.c). */
enum ingest_lane {
    INGEST_LANE_CALLBACK, /* Meta's signed callbacks */
    INGEST_LANE_STATUS,   /* the public deletion status page */
    INGEST_LANE_MEDIA,    /* reply files Meta fetches by link (media.c) */
};
#define INGEST_LANES 3

/* Status requests queued at most; past it callbacks.c answers 429 without asking. */
#define INGEST_STATUS_QUEUE 16

/* Runs on the loop thread with the answer; arg is the caller's. */
typedef void (*ingest_ask_fn)(struct ingest *ing, void *arg, const struct ingest_answer *a);

/*
 * Queues a request of body (a JSON text, owned from here on) to subject on lane. done runs
 * later on the loop, exactly once (at once, with CM_UNAVAIL, when too many requests are
 * queued on that lane). The request counts as in flight, so that a shutdown waits for its
 * answer. Loop thread only.
 */
void ingest_ask(struct ingest *ing, enum ingest_lane lane, const char *subject, char *body,
                ingest_ask_fn done, void *arg);

/* Starts the worker threads of every lane. Returns CM_OK or CM_ERR. */
int ingest_ask_start(struct ingest *ing) CM_MUST_CHECK;

/*
 * Stops the workers after the loop has ended: requests still queued are dropped without a
 * callback (their HTTP connections are gone with the server). Accepts never-started lanes.
 */
void ingest_ask_stop(struct ingest *ing);

#endif
