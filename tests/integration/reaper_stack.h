/*
 * reaper_stack.h - what the retention-reaper integration tests share, on top of
 * tests/lib/stack.h: the real token-vault, retention-reaper and webhook-ingest, domsctl,
 * and stand-ins answering the purge subjects with the contract's replies where a test must
 * script a service's absence or slowness (and for ai-suggest, not in the tree yet).
 */
#ifndef TESTS_REAPER_STACK_H
#define TESTS_REAPER_STACK_H

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fakemeta.h"
#include "stack.h"

/* The app secrets Meta signs with (the stand-in's, and the previous one of a rotation). */
#define RS_APP_SECRET FAKEMETA_APP_SECRET
#define RS_OLD_SECRET "reaper-test-old-secret"

/* The lead's whole-suite stack (tests/lib/stack.h), plus what these tests look at. */
struct rs_fake;

struct rs {
    struct th_stack st; /* database, nats-server, Meta's stand-in, the KEK file */
    jsCtx *js;
    struct th_proc vault;
    struct th_proc reaper;
    struct th_proc ingest;
    int reaper_port;
    char ingest_base[64];
    struct rs_fake *workspaces; /* router.workspace.get, for token-vault (rs_init) */
};

extern struct rs rs;

/* The stack and a JetStream context. Call after th_init. */
void rs_init(void);
/* Stops what rs_init started; a daemon the test left running is stopped and must exit 0. */
void rs_cleanup(void);

void rs_start_vault(void);
/* Starts the reaper with the settings given ("NAME=value", NULL-terminated) on top of the
 * stack's and a long REAPER_INTERVAL (the tests run passes themselves); waits until ready. */
void rs_start_reaper(const char *const *extra);
/* Ingest with the previous app secret set and a public base URL of its own. */
void rs_start_ingest(void);

/* domsctl --json args...; returns the exit code, *out the parsed output, *text the raw. */
int rs_domsctl(cJSON **out, char **text, const char *const *args);
/* A NATS request; returns the parsed reply (free it) or NULL. */
cJSON *rs_request(const char *subject, const char *body);
/* The first column of the first row of q, run as the admin (free it). */
char *rs_sql(const char *q);
/* rs_sql() for a count. */
long rs_sql_long(const char *q);

/* Connects an integration through domsctl; returns its id (free it). */
char *rs_connect(const char *ws, const char *platform, const char *account, const char *asid);
/* A token for the integration as conversation-router would get it, or NULL. */
char *rs_token(const char *integration_id);
/* Posts a signed webhook with one message event for an Instagram account to ingest. */
void rs_post_event(const char *account, const char *mid);
/* Messages in META_EVENTS (or VAULT_EVENTS) under a subject filter. */
long rs_stream_count(const char *stream, const char *filter);

/* A signed_request as Meta builds it: base64url(payload) signed with HMAC-SHA256 under
 * secret, the signature base64url without padding. Free it. */
char *rs_signed_request(const char *secret, const char *payload_json);
/* POSTs signed_request=<sr> to an ingest path; fills r. */
long rs_post_callback(struct th_resp *r, const char *path, const char *sr);

/* Waits (timeout_ms at most) until the workspace's purge is due by the database's clock, the
 * one the reaper's passes compare purge_due_at with; false when it did not come due. */
bool rs_wait_due(const char *ws, int timeout_ms);

/* Polls `deletion status` until its status is want (or timeout_ms); returns the result. */
cJSON *rs_wait_status(const char *code, const char *want, int timeout_ms);

/* --- stand-ins for conversation-router and ai-suggest ---------------------------------- */

struct rs_fake {
    natsSubscription *sub;
    char subject[64];
    _Atomic int received; /* requests that reached the stand-in (counted before the delay) */
    _Atomic int calls;    /* requests answered */
    _Atomic int delay_ms; /* before answering */
    _Atomic bool hold;    /* while set (at most a minute), requests wait unanswered */
    _Atomic bool done;    /* nats.c will call on_fake no more (its completion callback ran) */
    _Atomic int fail;     /* answer {"error": unavailable} */
    cJSON *last;          /* the last request (guarded by lock) */
    pthread_mutex_t lock;
    const char *deleted; /* the "deleted" object answered by a purge */
};

/* Subscribes a stand-in on subject (router.purge, ai.purge, router.workspace.delete, and
 * router.workspace.get: every workspace active, every actor but mallory its owner). */
void rs_fake_start(struct rs_fake *f, const char *subject, const char *deleted_json);
/* Unsubscribes and waits (bounded) until no callback runs or can start, then frees. */
void rs_fake_stop(struct rs_fake *f);
/* A copy of a field of the last request (free it), or NULL. */
char *rs_fake_last(struct rs_fake *f, const char *field);

#endif
