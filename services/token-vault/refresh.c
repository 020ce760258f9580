/*
 * refresh.c - keeping tokens alive, and noticing when Meta has let them die.
 *
 * Instagram Login tokens last 60 days and can be refreshed once they are 24 hours old: a
 * pass refreshes every connected one that expires within TOKEN_REFRESH_BEFORE. Page tokens
 * do not expire but can be invalidated (password change, app removal): a pass checks each
 * with debug_token once a day. Meta's error 190, or is_valid false, marks the integration
 * needs_reauth and publishes that state, instead of retrying forever; a passing failure
 * waits 15 minutes before the next try.
 *
 * Each integration is handled in a transaction that holds its row with FOR UPDATE SKIP
 * LOCKED, so replicas running passes at the same time never refresh one token twice. An
 * Instagram claim locks the token's row too: a row another replica refreshed after this
 * claim's snapshot is then re-read whole before it is taken (PostgreSQL re-checks only the
 * rows it locks against their newest version; with the integration's row alone it would see
 * the new integration beside the old token, still due, and refresh it again).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/metrics.h"
#include "vault.h"

#define PASS_INTERVAL_S 60

struct vault_refresher {
    pthread_t thread;
    _Atomic bool stopping;
};

/* Marks the held integration needs_reauth; the caller's transaction commits it. */
static int mark_reauth(struct vault *v, struct cm_pg *pg, const char *id, const char *why)
{
    const char *params[2] = {id, why};
    int rc;

    rc = cm_pg_exec(pg,
                    "UPDATE integrations SET status = 'needs_reauth', last_error = $2,"
                    " updated_at = now(), last_checked_at = now() WHERE id = $1",
                    2, params);
    if (rc == CM_OK)
        rc = vault_store_event(pg, id);
    if (rc == CM_OK)
        rc = cm_audit_add(pg, VAULT_SERVICE, "token-vault", "integration.needs_reauth", id);
    if (rc == CM_OK)
        cm_metrics_inc(v->m_reauth, 1);
    CM_WARN("integration %s needs re-authorisation: %s", id, why);
    return rc;
}

/* Records a passing failure; the row waits before its next try. */
static int mark_retry(struct cm_pg *pg, const char *id, const char *why)
{
    const char *params[2] = {id, why};

    CM_WARN("integration %s: refresh or check failed, retrying later: %s", id, why);
    return cm_pg_exec(pg,
                      "UPDATE integrations SET last_error = $2,"
                      " retry_after = now() + interval '15 minutes' WHERE id = $1",
                      2, params);
}

/* Claims one due row with sql (one parameter: refresh_before in seconds) into id. */
static int claim(struct cm_pg *pg, const char *sql, int64_t before, char *id, size_t cap)
{
    char secs[32];
    const char *params[1] = {secs};
    int rc;

    snprintf(secs, sizeof(secs), "%lld", (long long)before);
    rc = vault_begin(pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, sql, 1, params);
    if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
        rc = CM_NOTFOUND;
    if (rc == CM_OK)
        snprintf(id, cap, "%s", cm_pg_value(pg, 0, 0));
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    return rc;
}

static const char due_instagram[] =
    "SELECT i.id FROM integrations i JOIN tokens t ON t.integration_id = i.id"
    " WHERE i.platform = 'instagram' AND i.status = 'connected'"
    " AND t.obtained_at <= now() - interval '24 hours' AND t.expires_at IS NOT NULL"
    " AND t.expires_at <= now() + make_interval(secs => $1::bigint)"
    " AND (i.retry_after IS NULL OR i.retry_after <= now())"
    " ORDER BY t.expires_at LIMIT 1 FOR UPDATE OF i, t SKIP LOCKED";

static const char due_page[] =
    "SELECT i.id FROM integrations i JOIN tokens t ON t.integration_id = i.id"
    " WHERE i.platform = 'messenger' AND i.status = 'connected' AND $1::bigint >= 0"
    " AND (i.last_checked_at IS NULL OR i.last_checked_at <= now() - interval '1 day')"
    " AND (i.retry_after IS NULL OR i.retry_after <= now())"
    " ORDER BY i.last_checked_at NULLS FIRST LIMIT 1 FOR UPDATE OF i SKIP LOCKED";

/* Refreshes or checks the claimed integration id; commits or rolls back. */
static void handle(struct vault *v, struct cm_pg *pg, struct cm_httpc *http, const char *id,
                   bool instagram, struct vault_refresh_counts *counts)
{
    struct vault_token old = {0}, fresh = {0};
    const char *params[1] = {id};
    char why[640] = "";
    bool valid = false;
    int rc, meta = 0;

    rc = vault_load_token(v, pg, id, &old);
    if (rc != CM_OK) {
        /* A token that does not open (a lost KEK version?) must not stall the pass. */
        counts->failed++;
        if (mark_retry(pg, id, "the stored token cannot be decrypted") == CM_OK &&
            cm_pg_commit(pg) == CM_OK)
            return;
        cm_pg_rollback(pg);
        return;
    }
    if (instagram)
        rc = vault_meta_refresh_instagram(v->cfg, http, old.token, &fresh, &meta, why, sizeof(why));
    else
        rc = vault_meta_check_page(v->cfg, http, old.token, &valid, &meta, why, sizeof(why));

    if (rc == CM_OK && instagram) {
        rc = vault_store_token(v, pg, id, &fresh);
        if (rc == CM_OK)
            rc = cm_pg_exec(pg,
                            "UPDATE integrations SET updated_at = now(), last_checked_at = now(),"
                            " last_error = NULL, retry_after = NULL WHERE id = $1",
                            1, params);
        if (rc == CM_OK)
            rc = cm_audit_add(pg, VAULT_SERVICE, "token-vault", "token.refresh", id);
        if (rc == CM_OK) {
            counts->refreshed++;
            cm_metrics_inc(v->m_refreshed, 1);
        }
    } else if (rc == CM_OK && valid) {
        rc = cm_pg_exec(pg,
                        "UPDATE integrations SET last_checked_at = now(), last_error = NULL,"
                        " retry_after = NULL WHERE id = $1",
                        1, params);
        counts->checked++;
    } else if ((rc == CM_OK && !valid) || meta == 190) {
        rc = mark_reauth(v, pg, id, rc == CM_OK ? "Meta says the token is no longer valid" : why);
        counts->needs_reauth++;
    } else {
        rc = mark_retry(pg, id, why);
        counts->failed++;
    }
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    vault_token_clear(&old);
    vault_token_clear(&fresh);
}

void vault_refresh_pass(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                        struct vault_refresh_counts *counts)
{
    char id[64];

    while (claim(pg, due_instagram, v->cfg->refresh_before, id, sizeof(id)) == CM_OK)
        handle(v, pg, http, id, true, counts);
    while (claim(pg, due_page, 0, id, sizeof(id)) == CM_OK)
        handle(v, pg, http, id, false, counts);
    if (counts->refreshed || counts->checked || counts->needs_reauth || counts->failed)
        CM_INFO("refresh pass: %ld refreshed, %ld checked, %ld need re-authorisation, %ld "
                "failed",
                counts->refreshed, counts->checked, counts->needs_reauth, counts->failed);
}

static void *refresher_main(void *arg)
{
    struct vault *v = arg;
    struct vault_refresher *r = v->refresher;
    struct cm_httpc *http = NULL;
    struct cm_pg *pg = NULL;
    long rewrapped = 0;
    bool converted = false;

    if (cm_pg_connect(&pg, v->cfg->base.database_url, VAULT_SCHEMA) == CM_INVALID ||
        cm_httpc_create(&http) != CM_OK) {
        cm_pg_destroy(pg);
        return NULL;
    }
    /* A new KEK version in the file: move every data key under it, data untouched. */
    if (cm_keyring_rewrap(v->keyring, pg, &rewrapped) == CM_OK && rewrapped > 0)
        CM_INFO("re-wrapped %ld data keys under KEK version %d", rewrapped,
                cm_keyring_kek_version(v->keyring));
    while (!atomic_load(&r->stopping)) {
        struct vault_refresh_counts counts = {0};
        vault_refresh_pass(v, pg, http, &counts);
        vault_subscription_pass(v, pg, http);
        if (!converted) {
            vault_asid_convert_legacy(v, pg);
            converted = true;
        }
        for (int i = 0; i < PASS_INTERVAL_S * 10 && !atomic_load(&r->stopping); i++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cm_httpc_destroy(http);
    cm_pg_destroy(pg);
    return NULL;
}

int vault_refresher_start(struct vault *v)
{
    v->refresher = cm_xcalloc(1, sizeof(*v->refresher));
    if (pthread_create(&v->refresher->thread, NULL, refresher_main, v) != 0) {
        free(v->refresher);
        v->refresher = NULL;
        return CM_ERR;
    }
    return CM_OK;
}

void vault_refresher_stop(struct vault *v)
{
    if (v->refresher == NULL)
        return;
    atomic_store(&v->refresher->stopping, true);
    pthread_join(v->refresher->thread, NULL);
    free(v->refresher);
    v->refresher = NULL;
}
