/*
 * deletion.c - Meta's data-deletion requests: reaper.deletion.request records one (webhook-
 * ingest calls it from Meta's callback) and answers its confirmation code;
 * reaper.deletion.status answers what the status page and `domsctl deletion status` show.
 * The deletion itself runs on the worker of deleter.c, at once.
 *
 * A request is recorded durably before its code is answered. The code is 144 random bits
 * (base64url, 24 characters); only its SHA-256 is stored, so the table does not reveal it.
 * The user id is sealed with the keyring under a key of the request's own, shredded when the
 * request completes. A callback for a user whose deletion is still open (Meta retrying, or
 * the user asking twice) gets a second code for the same deletion.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/crypto.h"
#include "common/log.h"
#include "deletion.h"
#include "reaper.h"

#define CODE_BYTES 18 /* 144 bits */
#define CODE_LEN   24 /* base64url without padding */

/* Draws a new code and its hash (the stored form). */
static void new_code(char code[CODE_LEN + 1], char hash[65])
{
    unsigned char raw[CODE_BYTES], digest[CM_SHA256_LEN];

    cm_crypto_random(raw, sizeof(raw));
    cm_base64url_encode(raw, sizeof(raw), code);
    cm_crypto_sha256(code, strlen(code), digest);
    cm_hex_encode(digest, sizeof(digest), hash);
}

/* The hash of a code given by someone, or false when it cannot be one of ours. */
static bool code_hash(const char *code, char hash[65])
{
    unsigned char digest[CM_SHA256_LEN];

    if (code == NULL || strlen(code) != CODE_LEN)
        return false;
    for (const char *p = code; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    }
    cm_crypto_sha256(code, strlen(code), digest);
    cm_hex_encode(digest, sizeof(digest), hash);
    return true;
}

void reaper_deletion_names(long long id, char key_id[48], char aad[96])
{
    snprintf(key_id, 48, "del:%lld", id);
    snprintf(aad, 96, "reaper.deletion_requests.user_sealed:%lld", id);
}

/* A user id we can act on: Meta's are digits; any id token-vault stores as an asid will do. */
static bool acceptable_user_id(const char *s)
{
    return reaper_valid_id(s, 64);
}

/* Records a refused request (nothing of the user is kept) and its code. */
static int record_refused(struct cm_pg *pg, const char *hash, const char *reason, const char *actor,
                          long long *id)
{
    const char *params[2] = {reason, hash};
    char subject[40];
    int rc = cm_pg_begin(pg);

    if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        "WITH r AS (INSERT INTO deletion_requests (status, reason)"
                        " VALUES ('refused', $1) RETURNING id)"
                        " INSERT INTO deletion_codes (code_hash, request_id) SELECT $2, id FROM r"
                        " RETURNING request_id",
                        2, params);
    if (rc == CM_OK) {
        *id = strtoll(cm_pg_value(pg, 0, 0), NULL, 10);
        snprintf(subject, sizeof(subject), "deletion:%lld", *id);
        rc = cm_audit_add(pg, REAPER_SERVICE, actor, "deletion.refused", subject);
    }
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    return rc;
}

/* Inserts a new request with the user id sealed under its own key; inside a transaction. */
static int insert_request(struct reaper *r, struct cm_pg *pg, const char *user_id,
                          const char *user_key, const char *issued, long long *id)
{
    char kid[48], aad[96], idtext[24];
    struct cm_buf sealed;
    int rc;

    rc = cm_pg_exec(pg, "SELECT nextval(pg_get_serial_sequence('deletion_requests', 'id'))", 0,
                    NULL);
    if (rc != CM_OK)
        return rc;
    *id = strtoll(cm_pg_value(pg, 0, 0), NULL, 10);
    snprintf(idtext, sizeof(idtext), "%lld", *id);
    reaper_deletion_names(*id, kid, aad);
    cm_buf_init(&sealed);
    rc = cm_keyring_seal(r->keyring, pg, kid, aad, user_id, strlen(user_id), &sealed);
    if (rc == CM_OK) {
        const char *values[4] = {idtext, sealed.data, user_key, issued};
        const int lengths[4] = {0, (int)sealed.len, 0, 0};
        const int formats[4] = {0, 1, 0, 0};
        rc =
            cm_pg_exec_params(pg,
                              "INSERT INTO deletion_requests (id, user_sealed, user_key, issued_at)"
                              " VALUES ($1, $2, $3, $4)",
                              4, values, lengths, formats, 0);
    }
    cm_buf_cleanup(&sealed);
    return rc;
}

/*
 * Records the request of user_id (or joins the open one of that user, or the one this very
 * callback created before), and the new code. *status receives the request's status.
 * CM_CONFLICT when a concurrent callback of the same user created the open request first.
 */
static int record(struct reaper *r, struct cm_pg *pg, const char *user_id, const char *issued,
                  const char *hash, const char *actor, long long *id, char status[16])
{
    char user_key[65], idtext[24], subject[40];
    bool fresh = false;
    int rc;

    reaper_user_key(r, user_id, user_key);
    rc = cm_pg_begin(pg);
    if (rc == CM_OK) {
        const char *params[2] = {user_key, issued};
        rc = cm_pg_exec(pg,
                        "SELECT id, status FROM deletion_requests WHERE user_key = $1 AND"
                        " (status IN ('received', 'in_progress') OR issued_at = $2::bigint)"
                        " ORDER BY id DESC LIMIT 1 FOR UPDATE",
                        2, params);
    }
    if (rc == CM_OK && cm_pg_ntuples(pg) == 1) {
        *id = strtoll(cm_pg_value(pg, 0, 0), NULL, 10);
        snprintf(status, 16, "%s", cm_pg_value(pg, 0, 1));
    } else if (rc == CM_OK) {
        rc = insert_request(r, pg, user_id, user_key, issued, id);
        snprintf(status, 16, "received");
        fresh = true;
    }
    if (rc == CM_OK) {
        const char *params[2] = {hash, idtext};
        snprintf(idtext, sizeof(idtext), "%lld", *id);
        rc = cm_pg_exec(pg, "INSERT INTO deletion_codes (code_hash, request_id) VALUES ($1, $2)", 2,
                        params);
    }
    if (rc == CM_OK) {
        snprintf(subject, sizeof(subject), "deletion:%lld", *id);
        rc = cm_audit_add(pg, REAPER_SERVICE, actor, fresh ? "deletion.request" : "deletion.repeat",
                          subject);
    }
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    return rc;
}

static void on_request(struct cm_rpc_call *call, void *arg)
{
    struct reaper *r = arg;
    const char *user_id = cm_rpc_str(call, "user_id");
    const cJSON *issued = cJSON_GetObjectItemCaseSensitive(call->req, "issued_at");
    char code[CODE_LEN + 1], hash[65], issued_s[24], status[16] = "refused";
    const char *issued_p = NULL;
    long long id = 0;
    cJSON *out;
    int rc;

    if (user_id == NULL || *user_id == '\0' || strlen(user_id) > 1024) {
        cm_rpc_fail(call, "invalid", "user_id is required");
        return;
    }
    if (cJSON_IsNumber(issued) && issued->valuedouble > 0 && issued->valuedouble < 1e15) {
        snprintf(issued_s, sizeof(issued_s), "%.0f", issued->valuedouble);
        issued_p = issued_s;
    }
    new_code(code, hash);
    if (!acceptable_user_id(user_id)) {
        /* Signed by Meta, yet not an id any integration can carry: say so on the page. */
        rc = record_refused(call->pg, hash, REAPER_REFUSED_MALFORMED, call->actor, &id);
    } else {
        rc = record(r, call->pg, user_id, issued_p, hash, call->actor, &id, status);
        if (rc == CM_CONFLICT) /* the same user's callback raced us: join its request */
            rc = record(r, call->pg, user_id, issued_p, hash, call->actor, &id, status);
    }
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the deletion request could not be recorded: %s",
                    cm_err_str(rc));
        return;
    }
    CM_INFO("deletion request %lld %s (a code was issued)", id, status);
    reaper_deletion_kick(r);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "confirmation_code", code);
    cJSON_AddStringToObject(out, "status", status);
    cm_rpc_reply(call, out);
}

/* The counts of a request: every kind a data deletion touches, 0 where nothing went. */
static cJSON *deleted_json(const char *stored)
{
    cJSON *in = cJSON_Parse(stored);
    struct reaper_counts c = {{0}};

    reaper_counts_add_json(&c, in);
    cJSON_Delete(in);
    return reaper_counts_json(&c, REAPER_DATA_KINDS);
}

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static void on_status(struct cm_rpc_call *call, void *arg)
{
    const char *code = cm_rpc_str(call, "confirmation_code");
    char hash[65];
    const char *params[1] = {hash};
    struct cm_pg *pg = call->pg;
    cJSON *out;

    (void)arg;
    if (!code_hash(code, hash)) {
        cm_rpc_fail(call, "not_found", "no deletion request has that confirmation code");
        return;
    }
    if (cm_pg_exec(pg,
                   "SELECT r.status, " TS("r.received_at") ", " TS(
                       "r.completed_at") ","
                                         " r.deleted, r.reason FROM deletion_codes c"
                                         " JOIN deletion_requests r ON r.id = c.request_id WHERE "
                                         "c.code_hash = $1",
                   1, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the reaper's database is unavailable");
        return;
    }
    if (cm_pg_ntuples(pg) == 0) {
        cm_rpc_fail(call, "not_found", "no deletion request has that confirmation code");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "confirmation_code", code);
    cJSON_AddStringToObject(out, "status", cm_pg_value(pg, 0, 0));
    cJSON_AddStringToObject(out, "received_at", cm_pg_value(pg, 0, 1));
    if (cm_pg_is_null(pg, 0, 2))
        cJSON_AddNullToObject(out, "completed_at");
    else
        cJSON_AddStringToObject(out, "completed_at", cm_pg_value(pg, 0, 2));
    cJSON_AddItemToObject(out, "deleted", deleted_json(cm_pg_value(pg, 0, 3)));
    if (cm_pg_is_null(pg, 0, 4))
        cJSON_AddNullToObject(out, "reason");
    else
        cJSON_AddStringToObject(out, "reason", cm_pg_value(pg, 0, 4));
    cm_rpc_reply(call, out);
}

int reaper_deletion_start(struct reaper *r)
{
    cm_rpc_handle(r->rpc, "reaper.deletion.request", on_request, r);
    cm_rpc_handle(r->rpc, "reaper.deletion.status", on_status, r);
    return reaper_deleter_start(r);
}

void reaper_deletion_stop(struct reaper *r)
{
    reaper_deleter_stop(r);
}
