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
    bool standby;        /* from standby[]: another app held the thread (thread.c) */
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
 * media_in.c: the attachments of a message that the router keeps as rows of their own
 * (schema/009_media.sql): image, video, audio and file are downloaded later (state
 * pending), a story mention is only referred to until it expires (state reference). Every
 * other kind (share, reel, template, fallback, location, sticker...) stays in the sealed body
 * as Meta sent it. Pointers borrow from the event.
 */
#define INBOUND_MEDIA_MAX 10 /* Meta sends at most 10 attachments a message */

struct inbound_media {
    int n;
    struct {
        char id[40];      /* the attachment's id, "att_<hex>" */
        const char *type; /* Meta's type */
        const char *url;  /* its payload.url, Meta's CDN */
        int position;     /* its index in message.attachments */
        bool reference;   /* a story mention: never downloaded */
    } a[INBOUND_MEDIA_MAX];
};

/* Finds what of ev's message.attachments becomes rows into m (m->n 0: nothing, the common
 * case, with no allocation). */
void inbound_media_plan(const struct inbound_event *ev, struct inbound_media *m);
/*
 * Inserts m's rows for message msg_id inside the caller's transaction, each URL sealed under
 * the integration's key. Nothing is inserted unless msg_id is a stored message (so a
 * duplicate, which never got msg_id, adds nothing). Returns CM_OK or a pg or key error.
 */
int inbound_media_insert(struct router *r, struct cm_pg *pg, const struct router_route *route,
                         const char *msg_id, const struct inbound_event *ev,
                         const struct inbound_media *m) CM_MUST_CHECK;

/*
 * A contact writing (message, postback, referral) as one statement that can be pipelined with
 * the others of a batch (cm_pg_pipeline). inbound_fast_prepare() finds the route and the
 * contact's blind index (and id, when the worker's cache knows it), seals the body, and, for
 * a contact it does not know, seals the contact's id under a new contact id; *eligible is
 * false for every other kind of event, which inbound_store() takes whole. A known contact's
 * statement is the short one: its open conversation's window moved and the message inserted.
 * Any other contact's is the full one, schema/005_inbound_message.sql's inbound_message():
 * the contact found or created, the conversation found, reopened or opened, the message
 * inserted. Neither assigns: a batch assigns last, in each workspace where a conversation it
 * wrote into has no assignee (router_assign_call()).
 * Keys stay here; the statements get sealed bytes and blind indexes only.
 */
struct inbound_fast {
    const struct inbound_event *ev; /* borrowed from inbound_fast_prepare()'s caller */
    bool unrouted;                  /* no live integration for the account: nothing to store */
    bool known;                     /* the contact's id came from the cache: the short statement */
    bool waiting; /* set by inbound_fast_outcome(): the conversation has no assignee */
    char id[40], ts[32], contact[40], conversation[40];
    unsigned char blind[32];
    char cache_key[160]; /* the contacts cache's key of this contact */
    struct router_route route;
    struct cm_buf sealed;       /* the message's body */
    struct cm_buf psid_sealed;  /* the contact's id, for a contact not known (full statement) */
    struct inbound_media media; /* attachments to insert once the message is stored */
    const char *values[12];
    int lengths[12], formats[12];
    struct cm_pg_call call;
};

int inbound_fast_prepare(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                         const struct inbound_event *ev, struct inbound_fast *f,
                         bool *eligible) CM_MUST_CHECK;
/*
 * Reads the result of f's statement: CM_OK with *outcome (INBOUND_STORED or
 * INBOUND_DUPLICATE) and f->waiting set, the contact's id cached in caches (may be NULL);
 * CM_NOTFOUND when the short statement found no open conversation (inbound_fast_full(), then
 * run it again); CM_AGAIN when the contact is gone (purged since it was cached) or the result
 * is not the statement's.
 */
int inbound_fast_outcome(struct inbound_caches *caches, struct inbound_fast *f, PGresult *res,
                         enum inbound_outcome *outcome) CM_MUST_CHECK;
/* Turns f's statement into the full one, for a known contact without an open conversation. */
void inbound_fast_full(struct inbound_fast *f);
/* Wipes what f sealed; f may be zeroed and never prepared. */
void inbound_fast_cleanup(struct inbound_fast *f);

/*
 * store.c's steps, shared with thread.c's standby events. inbound_contact_of(): the contact of
 * psid (created when create is set; CM_NOTFOUND when absent and not created) into contact_id.
 * inbound_conversation_of(): the conversation of a contact's event (see store.c).
 * inbound_insert_echo(): the business's own message, sealed (marked standby per ev).
 * inbound_body_json(): the sealed part of a message (a new string: cJSON_free()); an
 * attachment of media (may be NULL) is only {"type", "attachment_id"} in it.
 */
int inbound_contact_of(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                       const struct router_route *route, const char *platform, const char *psid,
                       bool create, char contact_id[40]) CM_MUST_CHECK;
int inbound_conversation_of(struct cm_pg *pg, const struct router_route *route,
                            const struct inbound_event *ev, const char *contact_id, bool inbound,
                            char conv_id[40], bool *opened, bool *duplicate) CM_MUST_CHECK;
int inbound_insert_echo(struct router *r, struct cm_pg *pg, const struct router_route *route,
                        const char *conv, const struct inbound_event *ev,
                        bool *inserted) CM_MUST_CHECK;
char *inbound_body_json(const struct inbound_event *ev, const struct inbound_media *media);
/* Formats Meta's epoch milliseconds for PostgreSQL's to_timestamp(). */
void inbound_ts_param(char out[32], int64_t ms);

/*
 * store_change.c: an unsend, edit or reaction (ev->kind; ev->mid set) of a message of the
 * route's integration, inside the caller's transaction; INBOUND_LATER when the message is not
 * stored yet.
 */
int inbound_store_change(struct router *r, struct cm_pg *pg, const struct router_route *route,
                         const struct inbound_event *ev,
                         enum inbound_outcome *outcome) CM_MUST_CHECK;

/*
 * thread.c: a standby event (ev->standby) or a handover webhook (kind "handover"), inside the
 * caller's transaction, as inbound_store() does for the others.
 */
int thread_store_standby(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                         const struct router_route *route, const struct inbound_event *ev,
                         enum inbound_outcome *outcome) CM_MUST_CHECK;
int thread_store_handover(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                          const struct router_route *route, const struct inbound_event *ev,
                          enum inbound_outcome *outcome) CM_MUST_CHECK;

#endif
