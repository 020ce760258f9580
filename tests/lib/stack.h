/*
 * stack.h - the whole suite for an end-to-end test: a private database and nats-server,
 * the Meta stand-in, a KEK file, and any of the daemons started with the settings a local
 * deployment would give them. Tests then drive it the way Meta and operators do: signed
 * webhooks into ingest, domsctl, NATS requests.
 */
#ifndef TESTS_STACK_H
#define TESTS_STACK_H

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/mem.h"
#include "fakehttp.h"
#include "fakemeta.h"
#include "harness.h"

#define STACK_VERIFY_TOKEN "stack-verify-token"

struct th_stack {
    struct th_db db;
    struct th_nats nats;
    struct fakemeta *meta; /* two hosts: graph.facebook.com and graph.instagram.com */
    natsConnection *nc;
    char kek[512];
    char ingest_url[64]; /* http://127.0.0.1:PORT once ingest runs */
    struct th_proc *procs[16];
    int nprocs;
};

/* Sets up the database, nats-server, the Meta stand-in and a KEK file. */
void th_stack_init(struct th_stack *s);
/* The same, with the database on the PostgreSQL server of admin_url (a th_pg). */
void th_stack_init_at(struct th_stack *s, const char *admin_url);

/*
 * Starts daemon (e.g. "conversation-router") as p with the standard settings plus extra
 * ("NAME=value", NULL-terminated, may be NULL; they win), and waits until it is ready.
 * Returns its HTTP port.
 */
int th_stack_start(struct th_stack *s, struct th_proc *p, const char *daemon,
                   const char *const *extra);

/* POSTs body to ingest's webhook route, signed with the app secret; returns the status. */
long th_stack_webhook(struct th_stack *s, const char *body);

/* Runs domsctl --json args; returns the exit code, *out the parsed stdout (may be NULL),
 * *text everything printed (may be NULL). Free both. */
int th_stack_domsctl(struct th_stack *s, cJSON **out, char **text, const char *const *args);

/*
 * Posts through ingest a signed webhook of one message as Meta delivers it: mid from psid to
 * account (a Page's id; with ig, an Instagram account's, object "instagram"), in an entry of
 * Meta's time entry_ms, the message itself of Meta's time ts_ms, with text and attachments (a
 * JSON array's text), each left out when NULL; neither is escaped. Returns ingest's status.
 */
long th_stack_message(struct th_stack *s, bool ig, const char *account, int64_t entry_ms,
                      const char *psid, int64_t ts_ms, const char *mid, const char *text,
                      const char *attachments);
/* Waits (10 s at most) until the router has stored message mid, and returns its conversation's
 * id (free it); after 10 s, fails the test and returns NULL. */
char *th_stack_await_conv(struct th_stack *s, const char *mid);

/* Creates a workspace named name, with AI suggestions on when ai (domsctl workspace create,
 * which must exit 0), and writes its id into ws ("none" when the answer has none). */
void th_stack_workspace(struct th_stack *s, const char *name, bool ai, char ws[64]);
/*
 * Connects account to workspace ws on platform ("messenger": a Page's id, "instagram": an
 * Instagram account's) as a business would: the stand-in first issues token as the short-lived
 * token Meta's Login dialog gives (a Facebook user's, or an Instagram user's for Instagram), then
 * domsctl integration connect (with --asid asid, the owner's app-scoped id, unless NULL), which
 * must exit 0. Writes the integration's id into id (may be NULL; "none" when the answer has
 * none); returns whether the answer had one.
 */
bool th_stack_connect(struct th_stack *s, const char *ws, const char *platform, const char *account,
                      const char *token, const char *asid, char id[64]);

/* Runs domsctl --json args as th_stack_domsctl does, and checks that it exits want (a failed
 * check shows the first two arguments and what it printed). Returns the parsed stdout (free
 * it), or NULL when it printed no JSON. */
cJSON *th_stack_run(struct th_stack *s, int want, const char *const *args);
/* Checks that domsctl --json args is refused: exit 1, with want in the reason it printed. */
void th_stack_refused(struct th_stack *s, const char *const *args, const char *want);

/* A request to a service subject as the operator (published on "<subject>.operator"); the
 * parsed reply (free it) or NULL. */
cJSON *th_stack_request(struct th_stack *s, const char *subject, const char *body);
/* The same as identity: the tests' connection stands in for that daemon. */
cJSON *th_stack_request_as(struct th_stack *s, const char *identity, const char *subject,
                           const char *body);
/* A request on subject as it is (JetStream's API, $JS.API...); the parsed reply or NULL. */
cJSON *th_stack_js(struct th_stack *s, const char *subject, const char *body);
/* The last message of stream on subject, parsed (free it), or NULL when there is none yet; of
 * a message that carries several events (an array, as the audit's batches), the last of them.
 * One look: a test that waits for it polls. */
cJSON *th_stack_last_event(struct th_stack *s, const char *stream, const char *subject);

/* Runs sql as the admin; returns the first value (free it), or NULL when there is no row.
 * A query that fails fails the test (and returns NULL). */
char *th_stack_sql(struct th_stack *s, const char *sql);
/* The same as role (NULL: the admin). */
char *th_stack_sql_as(struct th_stack *s, const char *role, const char *sql);
/* th_stack_sql of the query fmt makes of the arguments, by printf's rules (SQL's % is %%). */
char *th_stack_sqlf(struct th_stack *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* th_stack_sql's value as a number (a count), as the admin; -1 when there is no row. */
long th_stack_count(struct th_stack *s, const char *sql);

/* Seals len bytes of data as the router sealed attachment att before segments (one piece, its
 * integration's key, router.media:<att> bound in) into out: an old store's bytes, rebuilt. 0 on
 * success; a failure fails the test. */
int th_stack_seal_media(struct th_stack *s, const char *att, const void *data, size_t len,
                        struct cm_buf *out);

/* Stops every daemon started that is still running (SIGTERM), each of which must exit 0 (the
 * test fails naming it and its status), then the stand-in and nats-server. */
void th_stack_stop(struct th_stack *s);

/* Convenience: a JSON string at o.a (or o.a.b when b is not NULL), borrowed, or NULL. */
const char *th_json_str(const cJSON *o, const char *a, const char *b);

#endif
