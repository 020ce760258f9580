/*
 * subscription.c - an integration's webhook subscription: made at connect, compared with
 * Meta's view and restored by the reconciliation pass (on a schedule and by
 * vault.integration.check), removed when the integration is disconnected or purged.
 *
 * Meta sends an account's webhooks only while the app is in its subscribed_apps. Making and
 * checking it needs the integration's token, so it lives here; every Meta call happens
 * outside a transaction, and the row records the outcome afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vault.h"

/* Records the outcome of a subscription call: subscribed now, or the reason it is not. */
static int record(struct cm_pg *pg, const char *id, bool subscribed, const char *why)
{
    const char *params[3] = {id, subscribed ? "t" : "f", subscribed ? NULL : why};

    return cm_pg_exec(pg,
                      "UPDATE integrations SET subscription_checked_at = now(),"
                      " subscribed_at = CASE WHEN $2::bool THEN coalesce(subscribed_at, now())"
                      " END, subscription_error = $3 WHERE id = $1",
                      3, params);
}

/* Reads an integration's platform and account into the buffers; CM_NOTFOUND when absent. */
static int load_account(struct cm_pg *pg, const char *id, char platform[16], char account[80])
{
    const char *params[1] = {id};
    int rc =
        cm_pg_exec(pg, "SELECT platform, account_id FROM integrations WHERE id = $1", 1, params);

    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    snprintf(platform, 16, "%s", cm_pg_value(pg, 0, 0));
    snprintf(account, 80, "%s", cm_pg_value(pg, 0, 1));
    return CM_OK;
}

int vault_subscription_make(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                            const char *id, const char *platform, const char *account,
                            const char *token, char *why, size_t cap)
{
    int meta_code = 0;
    int rc =
        vault_meta_subscribe(v->cfg, http, platform, account, token, true, &meta_code, why, cap);

    if (rc != CM_OK)
        CM_WARN("integration %s: webhook subscription failed: %s", id, why);
    if (record(pg, id, rc == CM_OK, why) != CM_OK)
        CM_WARN("integration %s: the subscription's outcome could not be recorded", id);
    return rc;
}

int vault_subscription_check(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                             const char *id, bool *subscribed, bool *resubscribed, char *why,
                             size_t cap)
{
    struct vault_token tok = {0};
    char platform[16], account[80];
    int meta_code = 0, rc;

    *subscribed = *resubscribed = false;
    rc = load_account(pg, id, platform, account);
    if (rc == CM_OK)
        rc = vault_load_token(v, pg, id, &tok);
    if (rc == CM_NOTFOUND) {
        snprintf(why, cap, "the integration holds no token");
        return rc;
    }
    if (rc != CM_OK) {
        snprintf(why, cap, "the vault's database is unavailable");
        return rc;
    }
    rc = vault_meta_subscribed(v->cfg, http, platform, account, tok.token, subscribed, &meta_code,
                               why, cap);
    if (rc == CM_OK && !*subscribed) {
        /* Meta forgot it (permissions revoked and restored, a removed app, a reset). */
        CM_INFO("integration %s: not in Meta's subscribed_apps; subscribing again", id);
        rc = vault_subscription_make(v, pg, http, id, platform, account, tok.token, why, cap);
        *subscribed = *resubscribed = rc == CM_OK;
    } else if (rc == CM_OK) {
        if (record(pg, id, true, NULL) != CM_OK)
            CM_WARN("integration %s: the subscription check could not be recorded", id);
    } else {
        /* Meta did not answer: what is known of the subscription stands; the reason shows. */
        const char *params[2] = {id, why};
        *subscribed = false;
        if (cm_pg_exec(pg, "UPDATE integrations SET subscription_error = $2 WHERE id = $1", 2,
                       params) != CM_OK)
            CM_WARN("integration %s: the subscription check could not be recorded", id);
    }
    vault_token_clear(&tok);
    return rc;
}

void vault_subscription_end(struct vault *v, struct cm_pg *pg, struct cm_httpc *http,
                            const char *id)
{
    const char *params[1] = {id};
    struct vault_token tok = {0};
    char platform[16], account[80], why[640];
    int meta_code = 0, rc;

    rc = cm_pg_exec(pg,
                    "SELECT 1 FROM integrations WHERE id = $1 AND subscribed_at IS NOT NULL"
                    " AND status IN ('connected', 'needs_reauth')",
                    1, params);
    if (rc != CM_OK || cm_pg_ntuples(pg) == 0)
        return;
    if (load_account(pg, id, platform, account) != CM_OK ||
        vault_load_token(v, pg, id, &tok) != CM_OK)
        return;
    /* Best effort: the token goes with the integration, so this is its last chance; the
     * client's retries (throttling, 5xx) are all it gets, and a failure ends nothing less. */
    rc = vault_meta_subscribe(v->cfg, http, platform, account, tok.token, false, &meta_code, why,
                              sizeof(why));
    vault_token_clear(&tok);
    if (rc != CM_OK) {
        CM_WARN("integration %s: the webhook subscription could not be removed: %s", id, why);
        return;
    }
    if (cm_pg_exec(pg, "UPDATE integrations SET subscribed_at = NULL WHERE id = $1", 1, params) !=
        CM_OK)
        CM_WARN("integration %s: unsubscribed, but that could not be recorded", id);
}

long vault_subscription_pass(struct vault *v, struct cm_pg *pg, struct cm_httpc *http)
{
    char **ids;
    bool *resubscribed;
    long checked = 0;
    int n, rc;

    /* Claimed by stamping subscription_checked_at: a replica's pass skips what another took. */
    rc = cm_pg_exec(pg,
                    "UPDATE integrations SET subscription_checked_at = now() WHERE id IN ("
                    " SELECT id FROM integrations WHERE status = 'connected' AND ("
                    "  (subscribed_at IS NULL AND (subscription_checked_at IS NULL OR"
                    "   subscription_checked_at < now() - interval '" VAULT_SUBSCRIPTION_RETRY
                    "')) OR subscription_checked_at IS NULL OR"
                    "  subscription_checked_at < now() - interval '" VAULT_SUBSCRIPTION_CHECK
                    "') ORDER BY subscription_checked_at NULLS FIRST LIMIT 20"
                    " FOR UPDATE SKIP LOCKED) RETURNING id",
                    0, NULL);
    if (rc != CM_OK)
        return 0;
    n = cm_pg_ntuples(pg);
    ids = cm_xcalloc((size_t)n + 1, sizeof(char *));
    resubscribed = cm_xcalloc((size_t)n + 1, sizeof(bool));
    for (int i = 0; i < n; i++)
        ids[i] = cm_xstrdup(cm_pg_value(pg, i, 0));
    for (int i = 0; i < n; i++) {
        bool subscribed;
        char why[640];
        if (vault_subscription_check(v, pg, http, ids[i], &subscribed, &resubscribed[i], why,
                                     sizeof(why)) == CM_OK)
            checked++;
    }
    /* What Meta did not send while the subscription was missing, or while it was silent. */
    vault_backfill_after_pass(v, ids, resubscribed, n);
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(resubscribed);
    return checked;
}
