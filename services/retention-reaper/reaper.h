/*
 * reaper.h - retention-reaper: the retention schedule, Meta's data-deletion requests, the
 * workspace purges and the audit log. It decides when Platform Data must go and asks each
 * service to delete its own slice (proto/purge.md); it keeps the audit trail of it all.
 */
#ifndef REAPER_REAPER_H
#define REAPER_REAPER_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/keyring.h"
#include "common/rpc.h"
#include "common/service.h"

#define REAPER_SERVICE "retention-reaper"
#define REAPER_SCHEMA  "reaper"

/* How long a purge request may take before it is retried (a large workspace). */
#define REAPER_PURGE_TIMEOUT_MS (5L * 60 * 1000)
/* Every other request to another service. */
#define REAPER_CALL_TIMEOUT_MS 10000L

/* A numeric macro as a string literal, for limits written into SQL. */
#define REAPER_STR_(x) #x
#define REAPER_STR(x)  REAPER_STR_(x)

struct reaper_cfg {
    struct cm_base_cfg base; /* first: cm_service_configure() relies on it */
    char *listen;
    int64_t retention_tokens;   /* seconds; at most 7 days */
    int64_t retention_messages; /* seconds; at most 90 days */
    int64_t retention_audit;    /* seconds; at most 365 days */
    int64_t interval;           /* seconds between passes */
};

/* The kinds of data a deletion counts, in the order of `domsctl retention run`. */
enum reaper_kind {
    REAPER_TOKENS,
    REAPER_INTEGRATIONS,
    REAPER_CONTACTS,
    REAPER_CONVERSATIONS,
    REAPER_MESSAGES,
    REAPER_SUGGESTIONS,
    REAPER_RAW_EVENTS,
    REAPER_AUDIT,
    REAPER_NKINDS
};

extern const char *const reaper_kind_names[REAPER_NKINDS];

struct reaper_counts {
    long n[REAPER_NKINDS];
};

struct reaper_deleter;
struct reaper_scheduler;
struct reaper_audit;

struct reaper {
    struct cm_service svc;
    const struct reaper_cfg *cfg;
    struct cm_keyring *keyring;
    struct cm_rpc *rpc;
    struct cm_outbox *outbox;
    struct reaper_audit *audit;
    struct reaper_deleter *deleter;
    struct reaper_scheduler *scheduler;
    unsigned char *pepper; /* 32 bytes in sodium_malloc memory: the key of user_key */

    struct cm_metric *m_appended;             /* audit entries appended */
    struct cm_metric *m_deletions;            /* deletion requests completed */
    struct cm_metric *m_passes;               /* retention passes run */
    struct cm_metric *m_passes_skipped;       /* scheduled passes another replica held off */
    struct cm_metric *m_open;                 /* open deletion requests */
    struct cm_metric *m_open_age;             /* age of the oldest open one */
    struct cm_metric *m_last_pass;            /* time of the last pass */
    struct cm_metric *m_held[REAPER_NKINDS];  /* reaper_overdue_seconds{kind} */
    struct cm_metric *m_limit[REAPER_NKINDS]; /* reaper_retention_limit_seconds{kind} */
};

/* --- counts.c: counts by kind, and small helpers shared by the files below ------------- */

/* Adds every "<kind>": N of obj (a purge reply's "deleted") to c; unknown kinds are ignored. */
void reaper_counts_add_json(struct reaper_counts *c, const cJSON *obj);
/* A new JSON object with every kind of c (0 included). kinds_mask selects kinds (bit per kind). */
cJSON *reaper_counts_json(const struct reaper_counts *c, unsigned kinds_mask);
/* True when obj (a purge reply's "remaining") holds no positive count. */
bool reaper_counts_none_left(const cJSON *obj);

#define REAPER_ALL_KINDS  ((1u << REAPER_NKINDS) - 1)
#define REAPER_DATA_KINDS (REAPER_ALL_KINDS & ~(1u << REAPER_AUDIT))

/* True for a NATS subject token we may build a purge filter from: [A-Za-z0-9_-]{1,64}. */
bool reaper_subject_token(const char *s);
/* True for an id we accept from outside: [A-Za-z0-9._:-]{1,max}. */
bool reaper_valid_id(const char *s, size_t max);

/* --- calls.c: requests to the other services ------------------------------------------ */

/*
 * What another service answered. code is "" on success, or the contract's error code; message
 * is the service's own message, or for a service that did not answer "<subject>: why".
 */
struct reaper_reply {
    cJSON *result; /* owned: the "result" member, detached; free with reaper_reply_cleanup */
    char code[24];
    char message[384];
};

/*
 * Sends req (a JSON object; "actor" is set to retention-reaper when absent) to subject and
 * waits up to timeout_ms, on the calling thread (never the loop). Returns CM_OK with
 * out->result set; CM_UNAVAIL when nobody answers (no responders, a timeout, NATS down,
 * or the service answered unavailable or busy), out->message saying which; CM_INVALID,
 * CM_DENIED, CM_NOTFOUND, CM_CONFLICT or CM_ERR for the other error codes (out->code keeps
 * the service's own code, e.g. "refused"). req is borrowed.
 */
int reaper_call(struct reaper *r, const char *subject, cJSON *req, long timeout_ms,
                struct reaper_reply *out) CM_MUST_CHECK;
void reaper_reply_cleanup(struct reaper_reply *rep);

/* --- secrets.c: the pepper ------------------------------------------------------------- */

/* Loads (or creates, once across replicas) the sealed pepper into r->pepper. Start-up only. */
int reaper_pepper_load(struct reaper *r) CM_MUST_CHECK;
void reaper_pepper_free(struct reaper *r);
/* Writes the hex HMAC-SHA256 of user_id under the pepper into out (65 bytes). */
void reaper_user_key(const struct reaper *r, const char *user_id, char out[65]);

/* --- audit.c: the audit log ------------------------------------------------------------ */

/* Starts the durable consumer of the AUDIT stream and serves reaper.audit.*. */
int reaper_audit_start(struct reaper *r) CM_MUST_CHECK;
void reaper_audit_stop(struct reaper *r);

/*
 * Deletes, in batches, the oldest entries whose time is before cutoff (epoch seconds),
 * keeping the chain verifiable: the anchor becomes the hash of the last entry deleted. Only
 * a prefix of the chain goes (see audit.c). *deleted receives the count. Returns CM_OK or the
 * database's error (what was deleted before it stays deleted, consistently).
 */
int reaper_audit_expire(struct reaper *r, struct cm_pg *pg, int64_t cutoff,
                        long *deleted) CM_MUST_CHECK;

/* --- purge.c: one deletion across the services ----------------------------------------- */

/* What a purge covers: a workspace, or the integrations named in a deletion request. */
struct reaper_scope {
    const char *scope;         /* "workspace" or "integration" */
    const char *workspace_id;  /* scope workspace */
    const cJSON *integrations; /* [{integration_id, platform, account_id}], borrowed */
    bool keep_live_accounts;   /* leave raw events of an account now live elsewhere */
};

struct reaper_purge_result {
    struct reaper_counts deleted; /* what this run deleted */
    bool clean;                   /* every service reported nothing left */
    int retry_s;                  /* when not clean: seconds worth waiting (0: the default) */
    char pending[384];            /* when not clean: who is missing or what is left */
};

/*
 * Runs every purge target of proto/purge.md, in order (router, ai-suggest, raw events,
 * token-vault, integration state events), each at most once. A target that does not
 * answer is skipped and makes the result not clean; token-vault runs only when every target
 * before it is clean, so that the integration ids stay known until the rest is gone.
 * Idempotent: a repeat reports zero for what is already gone. Blocking (worker threads).
 */
void reaper_purge(struct reaper *r, const struct reaper_scope *scope,
                  struct reaper_purge_result *out);

/* --- jetstream.c: the raw events, purged by subject ------------------------------------ */

/*
 * Purges META_EVENTS of meta.events.<platform>.<account>.> and counts what went (*purged)
 * and what is still there (*left). Returns CM_OK (a missing stream holds nothing),
 * CM_INVALID for a platform or account that is not a safe subject token, or CM_UNAVAIL.
 */
int reaper_js_purge_account(struct reaper *r, const char *platform, const char *account,
                            long *purged, long *left) CM_MUST_CHECK;

/*
 * Purges vault.events.integration.<id> from VAULT_EVENTS once its last state is "purged" and
 * every consumer of the stream has seen it (or GRACE passed). *left is 0 when the subject
 * holds nothing any more. Returns CM_OK, CM_AGAIN (not yet: wait a little), CM_INVALID or
 * CM_UNAVAIL.
 */
int reaper_js_purge_integration_state(struct reaper *r, const char *integration_id,
                                      long *left) CM_MUST_CHECK;

/* --- deletion.c: Meta's data-deletion requests ----------------------------------------- */

/* Serves reaper.deletion.request and reaper.deletion.status; starts the deletion worker. */
int reaper_deletion_start(struct reaper *r) CM_MUST_CHECK;
void reaper_deletion_stop(struct reaper *r);
/* Asks the worker to retry every open request now (a pass, or a new request). */
void reaper_deletion_kick(struct reaper *r);

/* --- workspace.c: workspace deletion ---------------------------------------------------- */

/* Serves reaper.workspace.delete. */
void reaper_workspace_register(struct reaper *r);

/*
 * Disconnects, through token-vault, every live integration of the workspace and records
 * tokens_done when none is left. Returns CM_OK, or CM_UNAVAIL (retried by the next pass).
 */
int reaper_workspace_disconnect(struct reaper *r, struct cm_pg *pg, const char *workspace_id,
                                const char *actor, long *ended) CM_MUST_CHECK;

/* --- pass.c: the schedule -------------------------------------------------------------- */

/* Serves reaper.retention.run and starts the thread that runs a pass every interval. */
int reaper_schedule_start(struct reaper *r) CM_MUST_CHECK;
void reaper_schedule_stop(struct reaper *r);

#endif
