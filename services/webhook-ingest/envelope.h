/*
 * envelope.h - Meta's webhook body, split into one publishable message per event.
 *
 * Meta batches: one POST carries entries (one per Page or Instagram account), each with
 * events in messaging[], standby[] or changes[] (the dashboard's test form). This parser
 * takes the raw body and yields, for each event, the subject it is published on, its
 * Nats-Msg-Id and the JSON that is stored. It is pure (no I/O) so that it can be fuzzed.
 */
#ifndef INGEST_ENVELOPE_H
#define INGEST_ENVELOPE_H

#include <stddef.h>

#include "common/err.h"

/* Upper bounds that keep a hostile body from costing more than its size. */
#define ENVELOPE_MAX_ID     64  /* characters of an account id */
#define ENVELOPE_MAX_MSG_ID 200 /* a longer identity is replaced by its digest */

struct envelope_event {
    char *subject; /* meta.events.<platform>.<account>.<kind> */
    char *msg_id;  /* Nats-Msg-Id */
    char *payload; /* {"platform","account_id","source","kind",...,"event":{...}} */
    size_t payload_len;
    const char *kind; /* static string */
};

enum envelope_status {
    ENVELOPE_OK = 0,       /* events (possibly none) extracted */
    ENVELOPE_NOT_JSON,     /* the body is not JSON */
    ENVELOPE_NOT_META,     /* JSON, but without Meta's envelope */
    ENVELOPE_OTHER_OBJECT, /* an object other than page or instagram: dropped */
    ENVELOPE_EMPTY,        /* an empty entry array: dropped */
};

struct envelope {
    enum envelope_status status;
    const char *platform; /* "messenger" or "instagram"; static */
    struct envelope_event *events;
    size_t nevents;
    char error[160]; /* why the body was refused, for the 400 answer */
};

/*
 * Parses body (len bytes, not necessarily NUL-terminated) into env. Always returns with
 * env filled in: check env->status. Free with envelope_cleanup().
 */
void envelope_parse(struct envelope *env, const char *body, size_t len);

/* Frees what envelope_parse() allocated. Safe on a zeroed envelope. */
void envelope_cleanup(struct envelope *env);

#endif
