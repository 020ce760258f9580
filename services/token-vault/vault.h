/*
 * vault.h - token-vault: Meta access tokens, encrypted, refreshed, served to the two
 * services that send on a business's behalf, and gone when the integration ends.
 */
#ifndef VAULT_VAULT_H
#define VAULT_VAULT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/httpc.h"
#include "common/keyring.h"
#include "common/rpc.h"
#include "common/service.h"

#define VAULT_SERVICE "token-vault"
#define VAULT_SCHEMA  "vault"

/* Integration state events: the latest state of each integration, one subject each. */
#define VAULT_EVENTS_STREAM   "VAULT_EVENTS"
#define VAULT_EVENTS_SUBJECTS "vault.events.integration.>"

struct vault_cfg {
    struct cm_base_cfg base; /* first: cm_service_configure() relies on it */
    char *listen;
    char *app_id;
    char *app_secret;
    char *graph_url;
    char *ig_graph_url;
    char *graph_version;
    int64_t refresh_before;   /* seconds */
    int64_t backfill_silence; /* seconds without a message before an active account is
                                 backfilled (BACKFILL_AFTER_SILENCE) */
};

struct vault {
    struct cm_service svc;
    const struct vault_cfg *cfg;
    struct cm_keyring *keyring;
    struct cm_rpc *rpc;      /* requests answered from the vault's own data */
    struct cm_rpc *meta_rpc; /* the lane of those that wait on Meta's API */
    struct cm_outbox *outbox;
    struct vault_refresher *refresher;

    struct cm_metric *m_served;
    struct cm_metric *m_refused;
    struct cm_metric *m_refreshed;
    struct cm_metric *m_reauth;
};

/* --- meta.c: Meta's Graph API ---------------------------------------------------------- */

/* A token Meta gave us; token is in sodium_malloc memory, freed by vault_token_clear(). */
struct vault_token {
    char *token;
    int64_t expires_at; /* epoch seconds; 0 for a token that does not expire */
};

void vault_token_clear(struct vault_token *t);

#define VAULT_PROOF_LEN 65 /* 64 hex digits and a NUL */
#define VAULT_ASID_LEN  65 /* an app-scoped user id (Meta's are digits, under 20) and a NUL */

/*
 * Meta's appsecret_proof for token: the hex HMAC-SHA256 of the token under the app secret.
 * Every Graph call made with an access token carries it, so a token that leaks is useless
 * without the app secret (Meta refuses it when the app requires the proof). Only the vault
 * holds the secret: it hands the proof out with each token it serves.
 */
void vault_meta_proof(const struct vault_cfg *cfg, const char *token, char proof[VAULT_PROOF_LEN]);

/*
 * Each returns CM_OK with *out filled, or CM_DENIED (Meta refused: why holds Meta's message
 * and code), CM_INVALID (Meta answered something unexpected), CM_UNAVAIL or CM_TIMEOUT.
 * meta_code receives Meta's error code when there is one (190: the token is invalid).
 * The http client is the caller's (one per thread).
 */
int vault_meta_exchange_instagram(const struct vault_cfg *cfg, struct cm_httpc *http,
                                  const char *short_token, struct vault_token *out, int *meta_code,
                                  char *why, size_t cap) CM_MUST_CHECK;
/* user receives the long-lived user token the Page token was read with (may be NULL). */
int vault_meta_exchange_page(const struct vault_cfg *cfg, struct cm_httpc *http,
                             const char *page_id, const char *short_token, struct vault_token *out,
                             struct vault_token *user, int *meta_code, char *why,
                             size_t cap) CM_MUST_CHECK;
int vault_meta_refresh_instagram(const struct vault_cfg *cfg, struct cm_httpc *http,
                                 const char *token, struct vault_token *out, int *meta_code,
                                 char *why, size_t cap) CM_MUST_CHECK;
/* debug_token: *valid false when Meta says the token is no longer valid. */
int vault_meta_check_page(const struct vault_cfg *cfg, struct cm_httpc *http, const char *token,
                          bool *valid, int *meta_code, char *why, size_t cap) CM_MUST_CHECK;

/*
 * GET /me with a user token (Messenger: the long-lived user token; Instagram: the Instagram
 * user token) on the host the token belongs to: the app-scoped id of the person who
 * granted it, which Meta's deauthorize and data-deletion callbacks name. Returns as above;
 * CM_INVALID when the answer has no id.
 */
int vault_meta_whoami(const struct vault_cfg *cfg, struct cm_httpc *http, const char *platform,
                      const char *user_token, char asid[VAULT_ASID_LEN], int *meta_code, char *why,
                      size_t cap) CM_MUST_CHECK;

/*
 * Subscribes the account to the app's webhooks for the fields the suite consumes (on), or
 * removes the subscription: POST or DELETE {graph}/{version}/{page-id}/subscribed_apps with
 * the Page token, or {instagram graph}/{version}/me/subscribed_apps with the Instagram token.
 */
int vault_meta_subscribe(const struct vault_cfg *cfg, struct cm_httpc *http, const char *platform,
                         const char *account, const char *token, bool on, int *meta_code, char *why,
                         size_t cap) CM_MUST_CHECK;
/* GET subscribed_apps: *subscribed when the app is there with every field the suite needs. */
int vault_meta_subscribed(const struct vault_cfg *cfg, struct cm_httpc *http, const char *platform,
                          const char *account, const char *token, bool *subscribed, int *meta_code,
                          char *why, size_t cap) CM_MUST_CHECK;

/* --- subscription.c: the account's webhook subscription ------------------------------- */

/* How often a subscription that holds is compared with Meta's; how soon a failed one is
 * tried again (PostgreSQL intervals). */
#define VAULT_SUBSCRIPTION_CHECK "6 hours"
#define VAULT_SUBSCRIPTION_RETRY "5 minutes"

/* Subscribes the integration's account and records the outcome; why holds a failure. */
int vault_subscription_make(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                            const char *id, const char *platform, const char *account,
                            const char *token, char *why, size_t cap);
/*
 * Compares Meta's subscribed_apps with what the suite needs and subscribes again when it is
 * missing (*resubscribed). CM_NOTFOUND: no token; a Meta failure leaves the record as it was.
 */
int vault_subscription_check(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                             const char *id, bool *subscribed, bool *resubscribed, char *why,
                             size_t cap);
/* Removes a live integration's subscription before it ends: best effort, never fails. */
void vault_subscription_end(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                            const char *id);
/* Checks up to 20 due integrations (safe across replicas); returns how many answered. */
long vault_subscription_pass(struct vault *v, struct cm_pg *pg, struct cm_httpc *http);

/* --- backfill.c: asking conversation-router to backfill an account ------------------------ */

/* How long vault.integration.check waits for the backfill it asks for. */
#define VAULT_BACKFILL_WAIT_MS 20000

/*
 * Asks conversation-router to backfill integration id since its last message
 * (router.integration.backfill), waiting up to wait_ms for the job to end. *result receives
 * the job's state (free it: cJSON_Delete). Returns CM_OK, CM_DENIED (the router refused:
 * why) or CM_UNAVAIL (no answer: why).
 */
int vault_backfill_ask(struct vault *v, const char *id, int wait_ms, cJSON **result, char *why,
                       size_t cap) CM_MUST_CHECK;
/*
 * After the reconciliation pass checked ids[0..n): asks for a backfill, without waiting, of
 * each one re-subscribed, and of each silent for BACKFILL_AFTER_SILENCE while a contact
 * wrote within 7 days (router.integration.activity). Failures are logged.
 */
void vault_backfill_after_pass(struct vault *v, char *const *ids, const bool *resubscribed, int n);

/* --- asid.c: the blind index of who connected ------------------------------------------ */

#define VAULT_BLIND_LEN 65 /* 64 hex digits and a NUL */

/* HMAC-SHA256 of asid under the vault's index key (created on first use), in hex. */
int vault_asid_blind(struct vault *v, struct cm_pg *pg, const char *asid,
                     char out[VAULT_BLIND_LEN]) CM_MUST_CHECK;

/* Drops the index key from memory (at exit). */
void vault_asid_forget_key(void);

/* Turns the plaintext asid column that earlier versions wrote into the blind index. */
void vault_asid_convert_legacy(struct vault *v, struct cm_pg *pg);

/* --- store.c: the vault schema --------------------------------------------------------- */

/*
 * Begins a transaction whose commit waits for the WAL flush. The request workers run with
 * synchronous_commit off, which only a token read's audit row relies on: every change of
 * integrations or tokens is begun here.
 */
int vault_begin(struct cm_pg *pg) CM_MUST_CHECK;

/* Publishes the integration's current state through the outbox (inside a transaction). */
int vault_store_event(struct cm_pg *pg, const char *integration_id) CM_MUST_CHECK;

/* Seals token for integration id and upserts its row (inside a transaction). */
int vault_store_token(struct vault *v, struct cm_pg *pg, const char *integration_id,
                      const struct vault_token *token) CM_MUST_CHECK;

/*
 * Opens a sealed token read as bytea text into plain (NUL-terminated), for a caller that
 * only passes it on and wipes it at once (cm_buf_wipe): serving a token takes no secure
 * allocation, whose guard pages cost system calls on every request.
 */
int vault_open_token_buf(struct vault *v, struct cm_pg *pg, const char *integration_id,
                         const char *sealed_text, struct cm_buf *plain) CM_MUST_CHECK;
/* Opens a sealed token read as bytea text into out (sodium memory; vault_token_clear). */
int vault_open_token(struct vault *v, struct cm_pg *pg, const char *integration_id,
                     const char *sealed_text, int64_t expires_at,
                     struct vault_token *out) CM_MUST_CHECK;

/* Opens the integration's token into out (sodium memory; vault_token_clear frees it). */
int vault_load_token(struct vault *v, struct cm_pg *pg, const char *integration_id,
                     struct vault_token *out) CM_MUST_CHECK;

/*
 * Ends an integration (status "disconnected" or "revoked"): crypto-shreds its data key,
 * deletes its token and publishes the new state, all in one transaction of its own. *tokens
 * (may be NULL) is set to the token rows deleted. CM_CONFLICT when it had ended already.
 */
int vault_store_end(struct vault *v, struct cm_pg *pg, const char *integration_id,
                    const char *status, const char *actor, const char *action,
                    long *tokens) CM_MUST_CHECK;

/* Publishes the final "purged" state of an integration about to be deleted. */
int vault_store_purged_event(struct cm_pg *pg, const char *integration_id) CM_MUST_CHECK;

/* One integration as the API shows it (a new object), or NULL after an error. */
cJSON *vault_store_describe(struct cm_pg *pg, int row);

/* --- authz.c: who may act on a workspace's integrations --------------------------------- */

/*
 * Whether call's actor holds at least role min ("viewer" < "agent" < "admin" < "owner") in
 * workspace ws, as conversation-router says (router.workspace.get on the actor's behalf);
 * live: ws must not be deleted either. A daemon's call (not the operator identity's) passes:
 * the subject's permissions let it call. False: the call is answered (denied, not_found,
 * refused, or unavailable when the router does not answer).
 */
bool vault_authorize(struct vault *v, struct cm_rpc_call *call, const char *ws, const char *min,
                     bool live);

/* --- api.c: the NATS request subjects -------------------------------------------------- */

void vault_api_register(struct vault *v);

/* --- purge.c: vault.purge and vault.integration.find (proto/purge.md) ------------------ */

void vault_purge_register(struct vault *v);

/* --- refresh.c: the refresh scheduler -------------------------------------------------- */

struct vault_refresh_counts {
    long refreshed;
    long checked;
    long needs_reauth;
    long failed;
};

/* Runs one pass over the due integrations on pg; safe across replicas (SKIP LOCKED). */
void vault_refresh_pass(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                        struct vault_refresh_counts *counts);

/* Starts the thread that runs a pass every minute (and rewraps data keys once at start). */
int vault_refresher_start(struct vault *v) CM_MUST_CHECK;
void vault_refresher_stop(struct vault *v);

#endif
