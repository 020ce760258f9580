/*
 * router.h - conversation-router: every inbound DM becomes an encrypted message in its
 * workspace's conversation, assigned to an agent; every reply goes out through Meta's
 * Send API inside the messaging window.
 */
#ifndef ROUTER_ROUTER_H
#define ROUTER_ROUTER_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/httpc.h"
#include "common/keyring.h"
#include "common/rpc.h"
#include "common/service.h"

#define ROUTER_SERVICE "conversation-router"
#define ROUTER_SCHEMA  "router"

/* How long an inbound worker trusts a cached route (inbound.c): a disconnect reaches it within
 * that, and a purge waits it out before deleting rows (purge.c). */
#define ROUTER_ROUTE_TTL_S 2

/* Outbound work queue and its dead letters. */
#define ROUTER_SEND_STREAM   "ROUTER_SEND"
#define ROUTER_SEND_SUBJECTS "router.send.>"
#define ROUTER_DEAD_STREAM   "ROUTER_DEAD"
#define ROUTER_DEAD_SUBJECTS "router.dead.>"
/* Assignment events. */
#define ROUTER_EVENTS_STREAM   "ROUTER_EVENTS"
#define ROUTER_EVENTS_SUBJECTS "router.events.>"

struct router_cfg {
    struct cm_base_cfg base; /* first: cm_service_configure() relies on it */
    char *listen;
    char *graph_url;
    char *ig_graph_url;
    char *graph_version;
    char *app_id; /* META_APP_ID, NULL when not given (thread.c) */
    int64_t send_max_attempts;
    int64_t profile_rate;          /* profile fetches a minute, every replica together; 0: off */
    int64_t profile_refresh;       /* seconds: a fetched profile is fetched again after this */
    int64_t profile_refused_retry; /* seconds: Meta refused a profile; asked again after this */
    int64_t profile_backoff;       /* seconds: the first wait after throttling or a failure */
    char *media_store;             /* MEDIA_STORE: "postgres" or "s3", where new media goes */
    int64_t media_max_bytes;       /* an attachment over this is not kept */
    int64_t media_timeout;         /* seconds: one download or S3 request */
    char *s3_endpoint, *s3_bucket, *s3_region, *s3_access_key, *s3_secret_key;
    char *public_base_url; /* webhook-ingest's public URL: Instagram fetches reply files there */
};

struct router_keys;     /* blind-index key cache, keys.c */
struct router_limiter;  /* per-account send rate, sender.c */
struct router_profiles; /* the profile fetcher, profile.c */
struct backfill;        /* the backfill worker, backfill.c */
struct media_store;     /* where attachment bytes live, media.c */
struct media_fetch;     /* the download worker, media_fetch.c */

struct router {
    struct cm_service svc;
    const struct router_cfg *cfg;
    struct cm_keyring *keyring;
    struct router_keys *keys;
    struct router_limiter *limiter;
    struct cm_rpc *rpc;
    struct cm_rpc *meta_rpc;  /* the lane of requests that wait on Meta's API (take) */
    struct cm_rpc *media_rpc; /* the lane of requests that move a file's bytes */
    struct cm_outbox *outbox;
    struct inbound *inbound; /* ROUTER_INBOUND_WORKERS of them (inbound.c) */
    struct cm_consumer *routes;
    struct cm_pg *routes_pg; /* the routes consumer's connection */
    struct cm_consumer *senders[2];
    struct sender *sender_state[2];
    struct router_profiles *profiles;
    struct backfill *backfill;
    struct media_store *media;
    struct media_fetch *fetch;

    struct cm_metric *m_stored;
    struct cm_metric *m_duplicate;
    struct cm_metric *m_unrouted;
    struct cm_metric *m_ignored;
    struct cm_metric *m_dead;
    struct cm_metric *m_sent;
    struct cm_metric *m_send_failed;
    struct cm_metric *m_send_retried;
    struct cm_metric *m_profile_fetched;
    struct cm_metric *m_profile_refused;
    struct cm_metric *m_profile_throttled;
    struct cm_metric *m_profile_failed;
    struct cm_metric *m_media_stored;      /* router_media_total{outcome="stored"} */
    struct cm_metric *m_media_unavailable; /* ... "unavailable" */
    struct cm_metric *m_media_retried;     /* ... "retried" */
    struct cm_metric *m_media_resealed;    /* router_media_resealed_total */
};

/* --- keys.c: sealing and the blind index ---------------------------------------------- */

int router_keys_create(struct router_keys **out);
void router_keys_destroy(struct router_keys *k);

/*
 * Seals len bytes into out (reset first) under the key of workspace ws and integration
 * (NULL: the workspace's own key), bound to aad (table.column:row id).
 */
int router_seal(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                const char *aad, const void *pt, size_t len, struct cm_buf *out) CM_MUST_CHECK;
/* Opens a sealed value read from PostgreSQL as text (bytea hex) into out (reset first). */
int router_open(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                const char *aad, const char *bytea_text, struct cm_buf *out) CM_MUST_CHECK;
/* router_open() of sealed bytes already raw (a binary result, an S3 object). */
int router_open_raw(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                    const char *aad, const void *sealed, size_t len,
                    struct cm_buf *out) CM_MUST_CHECK;
/* The blind index of a contact id in workspace ws (32 bytes into out). */
int router_blind(struct router *r, struct cm_pg *pg, const char *ws, const char *integration_id,
                 const char *psid, unsigned char out[32]) CM_MUST_CHECK;
/* Forgets the workspace's cached index key (after its purge). */
void router_keys_forget(struct router *r, const char *ws);

/* A new opaque id "<prefix>_<24 hex>". */
void router_new_id(const char *prefix, char out[40]);

/* --- worker.c: background threads ------------------------------------------------------ */

/* A background thread with its own PostgreSQL connection and HTTP client (embed it). */
struct router_worker {
    struct router *r;
    struct cm_pg *pg;      /* the thread's own connection */
    struct cm_httpc *http; /* and HTTP client */
    /* the rest is worker.c's */
    const char *what;                      /* in log lines: "profile", "media" */
    int idle_s;                            /* the wait after a pass that found nothing more due */
    bool (*pass)(struct router_worker *w); /* one pass; true: more is due, go on at once */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, wake, started, initialised;
};

/* Starts w's thread running pass every idle_s seconds (at once while it returns true). On
 * failure (logged) w must still be stopped with router_worker_stop(). */
int router_worker_start(struct router_worker *w, struct router *r, const char *what, int idle_s,
                        bool (*pass)(struct router_worker *w)) CM_MUST_CHECK;
/* Runs w's next pass now rather than after its wait. */
void router_worker_wake(struct router_worker *w);
/* Stops w after its pass in hand and frees what it holds; harmless when never started. */
void router_worker_stop(struct router_worker *w);

/* --- media.c: the media store (schema/009_media.sql) ---------------------------------- */

/* Opens the store MEDIA_STORE names (and S3 when S3_ENDPOINT is set). CM_INVALID: logged. */
int router_media_create(struct router *r) CM_MUST_CHECK;
void router_media_destroy(struct router *r);
/* A reader's chunk, and the size of the pieces a larger attachment is sealed in: 512 KiB
 * (a NATS message carries 1 MiB, and the chunk goes base64). */
#define ROUTER_MEDIA_SEGMENT (512 * 1024)
/*
 * Seals len bytes of attachment att (workspace ws, integration) under the integration's key,
 * in pieces of ROUTER_MEDIA_SEGMENT bytes when there are more, keeps them in the store new
 * media goes to, and records the store and the pieces' layout in att's row (which must
 * exist). The PostgreSQL store writes in pg's transaction.
 */
int router_media_put(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                     const char *att, const void *data, size_t len) CM_MUST_CHECK;
/*
 * Deletes what router_media_put() kept of att outside a transaction that then failed before
 * its commit: an S3 object (best effort; a failure is logged, the object sealed and unreadable).
 * The PostgreSQL store went with the rollback. Not after a failed COMMIT, whose outcome is
 * unknown: the row may hold it.
 */
void router_media_unput(struct router *r, const char *att);
/*
 * Reads, from the store its row names, and opens only the piece of attachment att that holds
 * byte offset: out (reset first) gets its bytes, *base the offset of its first byte, *size the
 * attachment's size. The piece holding offset == size is the last one. CM_INVALID when offset
 * is past the size; CM_NOTFOUND when nothing is stored; CM_DENIED when it does not open.
 */
int router_media_read(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                      const char *att, long long offset, struct cm_buf *out, long long *base,
                      long long *size) CM_MUST_CHECK;
/*
 * Seals again in segments one attachment stored in one piece larger than a chunk (before
 * segments). In PostgreSQL its bytes are replaced in one transaction with its layout; in S3 they
 * go under a new object key that its row then names, and the old object is deleted ten minutes
 * later (schema/014_media_object.sql). It is claimed for an hour, so a failure (logged) is
 * tried again then. CM_OK when one was claimed, CM_NOTFOUND when none is left (S3's left alone
 * when no S3 is set), else the database's error. pg must not be in a transaction.
 */
int router_media_reseal_next(struct router *r, struct cm_pg *pg);
/* The most doomed objects one sweep takes. */
#define ROUTER_SWEEP_BATCH 100
/*
 * Deletes from S3 up to ROUTER_SWEEP_BATCH objects of deleted attachments (media_doomed) that
 * are due, inside pg's transaction; *deleted counts them. A delete S3 refuses ends the batch,
 * its key due again after 30 s, doubling to an hour. *more: the batch was full and S3 took every
 * delete, so more may be due.
 */
int router_media_sweep(struct router *r, struct cm_pg *pg, int *deleted, bool *more) CM_MUST_CHECK;

/* --- media_fetch.c: the download worker (proto/router.md#media) ---------------------- */

/* Starts the thread that downloads pending attachments, forgets expired references and sweeps
 * deleted S3 objects. CM_OK, or CM_ERR (logged). */
int router_media_fetch_start(struct router *r) CM_MUST_CHECK;
/* Wakes the worker now (new attachments were stored); any thread, a no-op when not started. */
void router_media_fetch_wake(struct router *r);
/* Has the worker sweep deleted S3 objects at its next pass, woken now (a purge deleted
 * attachments); any thread, a no-op when not started. */
void router_media_sweep_soon(struct router *r);
/* Stops the worker (it finishes the download in hand) and frees it; accepts none started. */
void router_media_fetch_stop(struct router *r);

/* --- api_media.c: router.attachment.get ----------------------------------------------- */

void router_api_media_register(struct router *r);

/* --- window.c: Meta's messaging window ------------------------------------------------- */

enum router_window {
    ROUTER_WINDOW_NONE = 0,    /* the contact never wrote */
    ROUTER_WINDOW_OPEN,        /* under 24 hours since the last inbound message */
    ROUTER_WINDOW_HUMAN_AGENT, /* 24 hours to 7 days: only a human agent's reply, tagged */
    ROUTER_WINDOW_CLOSED,      /* after 7 days */
};

/* The windows' lengths: a reply within 24 hours; a human agent's, tagged, within 7 days. */
#define ROUTER_WINDOW_OPEN_MS  (24LL * 3600 * 1000)
#define ROUTER_WINDOW_HUMAN_MS (7LL * 24 * 3600 * 1000)

/* The window at now_ms for a last inbound message at last_ms (0: none), epoch ms. */
enum router_window router_window_at(int64_t now_ms, int64_t last_ms);
/* "open", "human_agent" or "closed" (NONE reads "closed"). */
const char *router_window_name(enum router_window w);

/* --- page.c: cursors and page sizes of the lists -------------------------------------- */

/* The kinds of cursor: one list's cursor is refused by another. */
#define ROUTER_CURSOR_CONVERSATIONS 'c' /* router.conversations.list, by last activity */
#define ROUTER_CURSOR_OLDEST        'm' /* router.messages.list, oldest first */
#define ROUTER_CURSOR_NEWEST        'n' /* router.messages.list with newest, going back */
/* A cursor's size, its NUL included; a longer one is refused. */
#define ROUTER_CURSOR_MAX 192

/*
 * Writes the cursor of a sort key (usec: a timestamp in microseconds since the epoch; key:
 * a conversation id, or a message's seq in decimal) into out (ROUTER_CURSOR_MAX bytes).
 */
void router_cursor_encode(char kind, int64_t usec, const char *key, char *out);
/*
 * Reads a cursor of the given kind back into *usec and key (keycap bytes). Returns CM_OK,
 * or CM_INVALID for anything router_cursor_encode would not have written for that kind.
 */
int router_cursor_decode(const char *cursor, char kind, int64_t *usec, char *key,
                         size_t keycap) CM_MUST_CHECK;
/*
 * A page size from the request's field name: dflt when absent or null, else a whole number
 * from 1 to max into *out. Returns CM_OK, or CM_INVALID (anything else).
 */
int router_page_size(const cJSON *req, const char *name, int dflt, int max, int *out) CM_MUST_CHECK;
/*
 * A count of bytes from the request's field name (an offset, a size) into *out: CM_OK for a
 * whole number from 0 to 10^15, CM_NOTFOUND when absent or null, CM_INVALID otherwise.
 */
int router_whole(const cJSON *req, const char *name, int64_t *out) CM_MUST_CHECK;

/* --- routes.c: account id to workspace ----------------------------------------------- */

struct router_route {
    char integration_id[64];
    char workspace_id[128];
    bool workspace_deleted;
};

/*
 * Finds the live route of (platform, account_id); asks token-vault when this router has
 * none (a route it has not heard of yet). Returns CM_OK, CM_NOTFOUND (no live integration:
 * the event is discarded) or CM_UNAVAIL.
 */
int router_route_find(struct router *r, struct cm_pg *pg, const char *platform,
                      const char *account_id, struct router_route *out) CM_MUST_CHECK;

/* Starts the consumer of token-vault's integration events. */
int router_routes_start(struct router *r) CM_MUST_CHECK;

/* --- inbound.c: Meta's events into conversations ------------------------------------- */

/*
 * Consumer threads per process, each with its own connection: while one waits on
 * PostgreSQL's commit, the other's statements run, so a router uses more than one core of
 * the database. Replicas add theirs.
 */
#define ROUTER_INBOUND_WORKERS 2

int router_inbound_start(struct router *r) CM_MUST_CHECK;
/* Stops the inbound workers (each finishes its batch in hand) and frees them. */
void router_inbound_stop(struct router *r);

/* --- assign.c: round-robin under capacity --------------------------------------------- */

/*
 * Locks every agent row of ws, in one order, inside the caller's transaction: a request that
 * changes an agent's load or role (a close, a member added or removed) takes it after its
 * conversation locks and before its change, so that it and router_assign_waiting() after it
 * hold the agents in the order every assigner takes them. Returns CM_OK or a pg error.
 */
int router_lock_agents(struct cm_pg *pg, const char *ws) CM_MUST_CHECK;
/*
 * Assigns waiting conversations of ws, oldest first, round-robin while agents have room,
 * inside the caller's transaction (schema/005_inbound_message.sql's assign_waiting(), which
 * waits for an agent row another transaction holds rather than skipping it). Call it after
 * every conversation lock the transaction takes (see router_lock_agents()).
 */
int router_assign_waiting(struct router *r, struct cm_pg *pg, const char *ws) CM_MUST_CHECK;
/*
 * router_assign_waiting() as a pipeline call, for the inbound batch: run it after every
 * other statement of the transaction that locks a conversation, for workspaces in one
 * order. ws is borrowed and must outlive the call.
 */
void router_assign_call(struct cm_pg_call *call, const char *const ws[1]);

/* --- api.c, api_conv.c, api_list.c: the NATS request subjects
 * ------------------------------------- */

/* The actor's role in ws ("owner" for operator), or NULL; *deleted when ws is deleted.
 * Returns CM_NOTFOUND for an unknown workspace. */
int router_role(struct cm_pg *pg, const char *ws, const char *actor, char role[16],
                bool *deleted) CM_MUST_CHECK;
/* The role of actor given its members row's role (NULL: none): "owner" for operator. */
void router_role_from(const char *actor, const char *member_role, char role[16]);
/* Does role reach at least min ("viewer" < "agent" < "admin" < "owner")? */
bool router_role_at_least(const char *role, const char *min);
/* Is s a well-formed id of at most max characters? */
bool router_valid_id(const char *s, size_t max);
/*
 * Checks that the call's actor holds at least role min in ws (and, when live, that ws is
 * not deleted); otherwise fails the call with the reason and returns false.
 */
bool router_authorize(struct cm_rpc_call *call, const char *ws, const char *min, bool live);
/* router_authorize(), and the actor's role into role. */
bool router_authorize_role(struct cm_rpc_call *call, const char *ws, const char *min, bool live,
                           char role[16]);
/* The decision of router_authorize() for a role and deletion already read. */
bool router_allowed(struct cm_rpc_call *call, const char *ws, const char *role, bool deleted,
                    const char *min, bool live);

void router_api_register(struct router *r);
void router_api_conv_register(struct router *r);
void router_api_list_register(struct router *r);

/* RFC 3339 UTC with milliseconds, from PostgreSQL: the SQL of a column's text. */
#define ROUTER_RFC3339(col)                                                                        \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* A conversation as a call about it finds it (api_conv.c). */
struct router_conv {
    char id[64];
    char ws[128];
    char integration[64];
    char platform[16];
    char contact[64];
    char status[16];
    char account[80];
    char route_status[16];   /* the integration's status; "" when it was purged */
    int64_t last_inbound_ms; /* 0: the contact never wrote */
    bool ai, mask_pii;       /* the workspace's settings */
    bool mark_seen;          /* the workspace sends mark_seen when a member reads */
    bool thread_held;        /* this app holds the thread (schema/006_thread.sql) */
    char psid_sealed[1024];  /* the contact's id, sealed (bytea text); "" when none */
};

/*
 * Loads the conversation named by the call's conversation_id, with its workspace's settings
 * and the actor's role in it, in one statement, and checks that the role reaches min (and,
 * when live, that the workspace is not deleted). False: the call is answered.
 */
bool router_conv_load(struct cm_rpc_call *call, const char *min, bool live, struct router_conv *c);
/*
 * The text of message id's sealed body (bytea text) in c (a new string: free()), or NULL:
 * unsent, no text (an attachment alone), or a body that does not open (logged).
 */
char *router_body_text(struct router *r, struct cm_pg *pg, const struct router_conv *c,
                       const char *id, const char *sealed);
/*
 * May the conversation's integration send now? Otherwise fails the call (refused) with what
 * the business must do and returns false.
 */
bool router_integration_live(struct cm_rpc_call *call, const struct router_conv *c);
/*
 * Begins the transaction in which a read of message content and its audit row commit
 * together, without waiting for the WAL flush: a crash may lose the last audit rows of
 * reads, never a change.
 */
int router_begin_read_audit(struct cm_pg *pg) CM_MUST_CHECK;

/*
 * May a reply be sent in conversation c now, as far as the integration and the thread go (not
 * the window)? Otherwise fails the call (refused) with what the business must do and returns
 * false. router.reply and router.upload share it.
 */
bool router_conv_sendable(struct cm_rpc_call *call, const struct router_conv *c);

/* --- api_upload.c: a reply's file, in chunks (proto/router.md#routerupload) ---------------- */

/* The largest raw chunk router.upload takes (its base64 stays under NATS's 1 MiB). */
#define ROUTER_UPLOAD_CHUNK (512 * 1024)

void router_api_upload_register(struct router *r);
/*
 * The largest file of type ("image", "video", "audio", "file") Meta takes on platform, within
 * MEDIA_MAX_BYTES; 0 for a type the platform does not take (a "file" on Instagram) or an
 * unknown type or platform.
 */
int64_t router_upload_limit(const struct router *r, const char *platform, const char *type);
/*
 * Inside the caller's transaction: takes the complete upload upload_id of the call's caller and
 * actor in conversation c as the attachment of the new outbound message msg (already inserted):
 * opens and assembles its parts, keeps the bytes in the media store (router_media_put()), adds
 * the attachments row (direction 'out', state 'stored', position 0) and deletes the upload.
 * *type receives its type (16 bytes), att the attachment's id once it has one (else ""): a
 * caller whose transaction then fails gives it to router_media_unput(). Returns CM_OK;
 * CM_NOTFOUND (no such upload of this
 * caller, or expired), CM_CONFLICT (not complete, or for another conversation), CM_INVALID (its
 * parts do not add up) with why (cap bytes) set; or a pg/store error.
 */
int router_upload_attach(struct router *r, struct cm_rpc_call *call, const struct router_conv *c,
                         const char *upload_id, const char *msg, char type[16], char att[40],
                         char *why, size_t cap) CM_MUST_CHECK;

/* --- profile.c: contacts' names and pictures (Meta's User Profile API) ---------------- */

/* Starts the background fetcher (not when PROFILE_RATE is 0). */
int router_profiles_start(struct router *r) CM_MUST_CHECK;
/* Stops it (a fetch in hand ends first) and frees it; accepts a router without one. */
void router_profiles_stop(struct router *r);

/* A contact's profile as shown: both NULL until Meta gives one. Free with
 * router_profile_cleanup(). */
struct router_profile {
    char *name;        /* Messenger: first and last name; Instagram: name, else username */
    char *picture_url; /* Meta's CDN URL of the picture; it expires within days */
};
/*
 * Opens the sealed profile (bytea text, NULL or "" for none) of contact in workspace ws and
 * integration into out. A profile that does not open leaves out empty (logged without it).
 */
void router_profile_open(struct router *r, struct cm_pg *pg, const char *ws,
                         const char *integration, const char *contact, const char *sealed,
                         struct router_profile *out);
void router_profile_cleanup(struct router_profile *p);

/* --- sender.c: replies to Meta's Send API --------------------------------------------- */

int router_senders_start(struct router *r) CM_MUST_CHECK;

/* Frees the senders' state, after their consumers are destroyed. */
void router_senders_free(struct router *r);
void router_limiter_destroy(struct router_limiter *l);

/* --- graph.c: Meta's Graph API with the integration's token ------------------------------ */

struct cm_httpc;
struct cm_httpc_response;

/* appsecret_proof: 64 hex digits and a NUL. */
#define ROUTER_PROOF_LEN 65
/* Meta's error_subcode (code 10) of "another app is controlling this thread now". */
#define ROUTER_SUBCODE_THREAD_ELSEWHERE 2018300

/*
 * Asks token-vault for integration's token (sodium memory in *token: sodium_free() it) and
 * its appsecret_proof (proof; "" from a vault that sends none). Returns CM_OK; CM_DENIED when
 * the vault refuses for good (why says it); CM_UNAVAIL when it may answer later.
 */
int router_token_get(struct router *r, const char *integration, char **token,
                     char proof[ROUTER_PROOF_LEN], char *why, size_t cap) CM_MUST_CHECK;
/* META_GRAPH_URL or INSTAGRAM_GRAPH_URL, for the platform ("messenger", "instagram"). */
const char *router_graph_base(const struct router *r, const char *platform);
/*
 * POSTs the JSON body to <platform's Graph URL>/<version>/<account>/<edge>, the token as
 * Bearer and its proof in the query, once (no retry): cm_httpc_do()'s result, Meta's answer in
 * resp (cm_httpc_response_init() first; the caller cleans it up).
 */
int router_graph_post(struct router *r, struct cm_httpc *http, const char *platform,
                      const char *account, const char *edge, const char *token, const char *proof,
                      const char *body, const char *log_id, struct cm_httpc_response *resp);
/*
 * Makes a public link to outbound attachment att_id for Meta to fetch (Instagram's Send API):
 * a random token whose SHA-256 is kept in media_links for an hour, in pg's transaction or on its
 * own. Writes "<PUBLIC_BASE_URL>/api/v1/media?token=<token>" into url, which the caller wipes:
 * the token opens the file until it expires. Returns CM_OK or a pg error.
 */
#define ROUTER_MEDIA_LINK_PATH "/api/v1/media"
int router_media_link(struct router *r, struct cm_pg *pg, const char *att_id, struct cm_buf *url);
/*
 * Uploads len bytes, read from read(read_arg, ...) as they are sent (an attachment of type, with
 * content_type), to Messenger's Attachment Upload API, POST
 * <META_GRAPH_URL>/<version>/<account>/message_attachments, multipart/form-data with the token as
 * Bearer and its proof in the query, once (no retry). Returns cm_httpc_do()'s result with Meta's
 * answer in resp (cm_httpc_response_init() first; the caller cleans it up); on a 200 with an
 * attachment_id, that id is in id (cap bytes), else id is "". (sender_media.c)
 */
int router_graph_upload(struct router *r, struct cm_httpc *http, const char *account,
                        const char *token, const char *proof, const char *type,
                        const char *content_type, size_t len, cm_httpc_read_fn read, void *read_arg,
                        const char *log_id, struct cm_httpc_response *resp, char *id, size_t cap);
/* Is resp Meta's "another app is controlling this thread now" (code 10, 2018300)? */
bool router_graph_thread_elsewhere(const struct cm_httpc_response *resp);
/* Meta's refusal in words ("Meta refused: ... (code, subcode)", or the HTTP status). */
void router_graph_why(const struct cm_httpc_response *resp, char *why, size_t cap);

/* --- thread.c: who holds the thread (Meta's handover protocol) ------------------------- */

/*
 * Records, in the caller's transaction, that another app holds conversation conv's thread as
 * of Meta's time at_ms, unless Meta said otherwise after it (a message the contact sent to
 * this app, a handover); at_ms 0: now, whatever was said (Meta's own answer to a call).
 * Returns CM_OK or a pg error.
 */
int router_thread_elsewhere(struct cm_pg *pg, const char *conv, int64_t at_ms) CM_MUST_CHECK;
void router_api_thread_register(struct router *r);

/* --- backfill.c: the Conversations API's backfill (proto/router.md#backfill) ------------- */

/*
 * Asks for a backfill of integration id since its last message, as a request with since null
 * does, without waiting (routes.c: an integration back from needs_reauth). CM_OK or a pg
 * error.
 */
int router_backfill_queue(struct cm_pg *pg, const char *id) CM_MUST_CHECK;
/* Serves router.integration.backfill (token-vault only). */
void router_backfill_register(struct router *r);
/* Starts this replica's backfill worker thread. Returns CM_OK or CM_ERR. */
int router_backfill_start(struct router *r) CM_MUST_CHECK;
/* Stops the worker (a job in hand goes back to pending at its position) and frees it. */
void router_backfill_stop(struct router *r);

/* --- purge.c: router.purge and router.workspace.delete --------------------------------- */

void router_purge_register(struct router *r);

#endif
