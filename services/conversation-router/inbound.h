/*
 * inbound.h - one Meta event as the router reads it, and what became of it.
 */
#ifndef ROUTER_INBOUND_H
#define ROUTER_INBOUND_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/mem.h"
#include "common/pg.h"
#include "router.h"

struct inbound_event {
    const char *platform;   /* messenger | instagram */
    const char *account_id; /* the business's Page or Instagram account */
    const char *kind;       /* message, echo, unsend, edit, reaction, read, delivery, ... */
    const char *sender;
    const char *recipient;
    const char *contact; /* the customer's PSID or IGSID */
    const char *mid;     /* the message the event is about, when it has one */
    int64_t ts_ms;       /* Meta's timestamp */
    const cJSON *event;  /* Meta's event object, borrowed */
};

enum inbound_outcome {
    INBOUND_STORED,    /* a change was stored */
    INBOUND_DUPLICATE, /* already held: nothing to do */
    INBOUND_UNROUTED,  /* no connected integration for the account: discarded */
    INBOUND_IGNORED,   /* a kind the router keeps nothing of */
    INBOUND_LATER,     /* about a message not stored yet: redeliver later */
};

/* The consumer thread's caches (cache.h); NULL members mean no caching. */
struct inbound_caches {
    struct cache *routes;   /* "<platform>:<account>" -> "<integration>\t<workspace>\t<0|1>" */
    struct cache *contacts; /* "<integration>:<blind hex>" -> contact id */
};

/* Reads the wrapper ingest published (proto/meta-events.md). Pointers borrow from wrap. */
void inbound_parse(struct inbound_event *ev, const cJSON *wrap);

/*
 * Stores ev inside the caller's open transaction on pg. Returns CM_OK with *outcome set,
 * CM_INVALID with why set for an event that can never be stored (dead-letter it), or
 * another error for a transient failure (roll back, redeliver).
 */
int inbound_store(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                  const struct inbound_event *ev, enum inbound_outcome *outcome, char *why,
                  size_t cap) CM_MUST_CHECK;

/*
 * The common case, a contact writing into the open conversation, as one statement that can
 * be pipelined with the others of a batch (cm_pg_pipeline). inbound_fast_prepare() finds the
 * route and contact (through the caches, or pg inside the caller's transaction) and seals
 * the body; *eligible is false for every other case, which inbound_store() takes whole.
 * inbound_fast_outcome() reads the statement's result: false when the contact had no open
 * conversation after all, and inbound_fast_finish() then opens (or reopens) one, assigns
 * it, and runs the same statement. inbound_store() takes a single event the same way.
 */
struct inbound_fast {
    bool unrouted; /* no live integration for the account: nothing to store */
    char id[40], ts[32], contact[40];
    struct router_route route;
    struct cm_buf sealed;
    const char *values[9];
    int lengths[9], formats[9];
    struct cm_pg_call call;
};

int inbound_fast_prepare(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                         const struct inbound_event *ev, struct inbound_fast *f,
                         bool *eligible) CM_MUST_CHECK;
bool inbound_fast_outcome(PGresult *res, enum inbound_outcome *outcome);
int inbound_fast_finish(struct router *r, struct cm_pg *pg, const struct inbound_event *ev,
                        struct inbound_fast *f, enum inbound_outcome *outcome) CM_MUST_CHECK;
void inbound_fast_cleanup(struct inbound_fast *f);

#endif
