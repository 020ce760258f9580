/*
 * deleter.c - the worker that carries Meta's data-deletion requests out, at once.
 *
 * Durable across crashes: a request is in PostgreSQL as `received` before its code is
 * answered, and stays `received` or `in_progress` until every service has said that nothing
 * of it is left. Any replica's worker claims open requests whose next attempt is due
 * (SELECT ... FOR UPDATE SKIP LOCKED, then a session advisory lock on the request, held while
 * it runs): a replica killed mid-deletion loses its session, and with it the lock, and the
 * next round anywhere takes the request up again. Every step is idempotent, so repeating a
 * half-done deletion only finishes it.
 *
 * The steps: vault.integration.find turns Meta's user id into integrations (remembered in
 * the request, so that a retry after token-vault's purge still knows them); nothing found
 * ever means "no data held"; otherwise each integration found is ended first (disconnected:
 * nothing arriving meanwhile is stored), then purge.c asks every service, and the request
 * completes when all report nothing left. A service that does not answer leaves it
 * in_progress with the reason, to be retried.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/metrics.h"
#include "deletion.h"
#include "reaper.h"

#define CLAIM_CANDIDATES 8
#define MAX_RETRY_S      15

struct reaper_deleter {
    struct reaper *r;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool kicked;
    _Atomic bool stopping;
};

/* A claimed request. */
struct job {
    long long id;
    char idtext[24];
    cJSON *integrations; /* what was found so far (owned) */
    unsigned char *sealed;
    size_t sealed_len;
};

static int retry_seconds(const struct reaper *r)
{
    return r->cfg->interval < MAX_RETRY_S ? (int)r->cfg->interval : MAX_RETRY_S;
}

static void release(struct cm_pg *pg, struct job *j)
{
    const char *params[1] = {j->idtext};

    if (j->id != 0 &&
        cm_pg_exec(pg, "SELECT pg_advisory_unlock(hashtext('reaper.deletion'), $1::int)", 1,
                   params) != CM_OK)
        CM_DEBUG("deletion %lld: unlock lost with the connection", j->id);
    cJSON_Delete(j->integrations);
    if (j->sealed != NULL)
        PQfreemem(j->sealed);
    memset(j, 0, sizeof(*j));
}

/* Claims one due request (see above). Returns CM_OK with j filled, CM_NOTFOUND when none. */
static int claim(struct cm_pg *pg, struct job *j)
{
    long long ids[CLAIM_CANDIDATES];
    int n, rc;

    memset(j, 0, sizeof(*j));
    rc = cm_pg_begin(pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(
            pg,
            "SELECT id FROM deletion_requests WHERE status IN ('received', 'in_progress')"
            " AND next_attempt_at <= now() ORDER BY next_attempt_at, id"
            " LIMIT " REAPER_STR(CLAIM_CANDIDATES) " FOR UPDATE SKIP LOCKED",
            0, NULL);
    if (rc != CM_OK)
        goto done;
    n = cm_pg_ntuples(pg);
    for (int i = 0; i < n; i++)
        ids[i] = strtoll(cm_pg_value(pg, i, 0), NULL, 10);
    /* The row lock ends with this short transaction; the advisory lock is what keeps the
     * request ours while it runs (minutes, for a large account) without holding a
     * transaction open that long, and what a crash releases with the session. */
    rc = CM_NOTFOUND;
    for (int i = 0; i < n && rc == CM_NOTFOUND; i++) {
        const char *params[1] = {j->idtext};
        snprintf(j->idtext, sizeof(j->idtext), "%lld", ids[i]);
        if (cm_pg_exec(pg, "SELECT pg_try_advisory_lock(hashtext('reaper.deletion'), $1::int)", 1,
                       params) != CM_OK)
            goto done;
        if (strcmp(cm_pg_value(pg, 0, 0), "t") == 0) {
            j->id = ids[i];
            rc = CM_OK;
        }
    }
    if (rc == CM_OK) {
        const char *params[1] = {j->idtext};
        rc = cm_pg_exec(pg,
                        "UPDATE deletion_requests SET status = 'in_progress',"
                        " attempts = attempts + 1, started_at = coalesce(started_at, now())"
                        " WHERE id = $1 RETURNING user_sealed, integrations",
                        1, params);
    }
    if (rc == CM_OK) {
        j->integrations = cJSON_Parse(cm_pg_value(pg, 0, 1));
        if (!cm_pg_is_null(pg, 0, 0))
            j->sealed =
                PQunescapeBytea((const unsigned char *)cm_pg_value(pg, 0, 0), &j->sealed_len);
        rc = cm_pg_commit(pg);
    }
done:
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        release(pg, j); /* the advisory lock outlives the transaction */
    }
    return rc;
}
/* Not done yet: say why, and when to try again. */
static void defer(struct cm_pg *pg, const struct job *j, const char *why, int seconds)
{
    char secs[16];
    const char *params[3] = {j->idtext, why, secs};

    snprintf(secs, sizeof(secs), "%d", seconds);
    if (cm_pg_exec(pg,
                   "UPDATE deletion_requests SET last_error = $2,"
                   " next_attempt_at = now() + make_interval(secs => $3::int) WHERE id = $1",
                   3, params) != CM_OK)
        CM_WARN("deletion %lld: cannot record the retry: %s", j->id, cm_pg_error(pg));
    CM_INFO("deletion %lld in progress: %s; retry in %ds", j->id, why, seconds);
}

/*
 * Adds this round's counts to the request's. Each service reports only what it deleted in
 * this call, so a repeat after a crash adds zeros and the sum stays right.
 */
static int add_counts(struct cm_pg *pg, const struct job *j, const struct reaper_counts *c)
{
    cJSON *o = reaper_counts_json(c, REAPER_DATA_KINDS);
    char *text = cJSON_PrintUnformatted(o);
    const char *params[2] = {j->idtext, text};
    int rc;

    rc = cm_pg_exec(pg,
                    "UPDATE deletion_requests SET deleted = (SELECT coalesce(jsonb_object_agg(k,"
                    " coalesce((deleted->>k)::bigint, 0) + coalesce(($2::jsonb->>k)::bigint, 0)),"
                    " '{}') FROM jsonb_object_keys(deleted || $2::jsonb) AS k) WHERE id = $1",
                    2, params);
    cJSON_free(text);
    cJSON_Delete(o);
    return rc;
}

/*
 * Ends the request as completed (reason NULL or "no data held") or refused, shreds the user
 * id's key and forgets the integrations and accounts it named: from here on the reaper
 * cannot tell whose request it was.
 */
static int finish(struct reaper *r, struct cm_pg *pg, const struct job *j, const char *status,
                  const char *reason)
{
    const char *params[3] = {j->idtext, status, reason};
    char kid[48], aad[96], subject[40];
    int rc;

    reaper_deletion_names(j->id, kid, aad);
    snprintf(subject, sizeof(subject), "deletion:%lld", j->id);
    rc = cm_pg_begin(pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        "UPDATE deletion_requests SET status = $2, reason = $3, user_sealed = NULL,"
                        " integrations = '[]', last_error = NULL,"
                        " completed_at = CASE WHEN $2 = 'completed' THEN now() END WHERE id = $1",
                        3, params);
    if (rc == CM_OK)
        rc = cm_keyring_shred(r->keyring, pg, kid, NULL);
    if (rc == CM_OK)
        rc = cm_audit_add(
            pg, REAPER_SERVICE, REAPER_SERVICE,
            strcmp(status, "completed") == 0 ? "deletion.complete" : "deletion.refused", subject);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    if (strcmp(status, "completed") == 0)
        cm_metrics_inc(r->m_deletions, 1);
    CM_INFO("deletion %lld %s%s%s", j->id, status, reason ? ": " : "", reason ? reason : "");
    return CM_OK;
}

/* Adds to j->integrations every integration of found that it does not name yet. */
static bool merge(struct job *j, const cJSON *found)
{
    const cJSON *it, *known;
    bool changed = false;

    if (!cJSON_IsArray(j->integrations)) {
        cJSON_Delete(j->integrations);
        j->integrations = cJSON_CreateArray();
    }
    cJSON_ArrayForEach(it, found)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "integration_id"));
        bool have = false;
        cJSON *keep;

        if (id == NULL)
            continue;
        cJSON_ArrayForEach(known, j->integrations)
        {
            const char *kid = cJSON_GetStringValue(cJSON_GetObjectItem(known, "integration_id"));
            have = have || (kid != NULL && strcmp(kid, id) == 0);
        }
        if (have)
            continue;
        keep = cJSON_CreateObject();
        cJSON_AddStringToObject(keep, "integration_id", id);
        cJSON_AddItemToObject(keep, "platform",
                              cJSON_Duplicate(cJSON_GetObjectItem(it, "platform"), 1));
        cJSON_AddItemToObject(keep, "account_id",
                              cJSON_Duplicate(cJSON_GetObjectItem(it, "account_id"), 1));
        cJSON_AddItemToArray(j->integrations, keep);
        changed = true;
    }
    return changed;
}

/* Asks token-vault which integrations the user has; records them. CM_OK or the call's error. */
static int find(struct reaper *r, struct cm_pg *pg, struct job *j, char *why, size_t cap)
{
    char kid[48], aad[96];
    struct reaper_reply rep = {0};
    struct cm_buf plain;
    cJSON *req;
    int rc;

    if (j->sealed == NULL)
        return CM_OK; /* shredded already: what was found is all there is */
    reaper_deletion_names(j->id, kid, aad);
    /* The user id is in the clear only for the one request that needs it. */
    cm_buf_init(&plain);
    rc = cm_keyring_open(r->keyring, pg, kid, aad, j->sealed, j->sealed_len, &plain);
    if (rc != CM_OK) {
        snprintf(why, cap, "the sealed user id cannot be opened (%s)", cm_err_str(rc));
        cm_buf_wipe(&plain);
        return rc == CM_NOTFOUND || rc == CM_DENIED ? CM_ERR : rc;
    }
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "asid", plain.data);
    rc = reaper_call(r, "vault.integration.find", req, REAPER_CALL_TIMEOUT_MS, &rep);
    cJSON_Delete(req);
    cm_buf_wipe(&plain);
    if (rc != CM_OK) {
        snprintf(why, cap, "%s", rep.message);
        return rc;
    }
    if (merge(j, rep.result)) {
        char *text = cJSON_PrintUnformatted(j->integrations);
        const char *params[2] = {j->idtext, text};
        rc = cm_pg_exec(pg, "UPDATE deletion_requests SET integrations = $2 WHERE id = $1", 2,
                        params);
        cJSON_free(text);
    }
    reaper_reply_cleanup(&rep);
    return rc;
}

/*
 * Ends every integration found before anything is purged, the same as `integration
 * disconnect` (its token deleted, its key shredded, Meta's webhooks unsubscribed): from then
 * on token-vault no longer answers it as live, so an event, a backfill page or a
 * reconciliation that comes during the purge finds no route to be stored under. Without it,
 * the router, its slice purged and its routes gone, asked token-vault (still "connected" until
 * its own slice, the last) and stored what came after the purge under a fresh key. Already
 * ended or already purged (a retry) is fine. What the ends deleted (tokens) is added to ended.
 * CM_OK when every one is ended.
 */
static int end_integrations(struct reaper *r, const struct job *j, struct reaper_counts *ended,
                            char *why, size_t cap)
{
    const cJSON *it;
    int rc = CM_OK;

    cJSON_ArrayForEach(it, j->integrations)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "integration_id"));
        struct reaper_reply rep = {0};
        cJSON *req;
        int one;

        if (id == NULL)
            continue;
        req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "integration_id", id);
        one = reaper_call(r, "vault.integration.disconnect", req, REAPER_CALL_TIMEOUT_MS, &rep);
        cJSON_Delete(req);
        if (one == CM_OK)
            reaper_counts_add_json(ended, cJSON_GetObjectItemCaseSensitive(rep.result, "deleted"));
        if (one != CM_OK && strcmp(rep.code, "not_found") != 0) {
            snprintf(why, cap, "integration %.64s not ended first: %.300s", id, rep.message);
            rc = one;
        }
        reaper_reply_cleanup(&rep);
        if (rc != CM_OK)
            break;
    }
    return rc;
}

static void run(struct reaper *r, struct cm_pg *pg, struct job *j)
{
    struct reaper_scope scope = {"integration", NULL, NULL, false};
    struct reaper_counts ended = {0};
    struct reaper_purge_result res;
    char why[400] = "";
    int rc = find(r, pg, j, why, sizeof(why));

    /* token-vault will never accept this id: retrying would keep the request open forever,
     * so it ends refused, with a reason the page can show. */
    if (rc == CM_INVALID) {
        if (finish(r, pg, j, "refused", REAPER_REFUSED_UNKNOWN_ID) != CM_OK)
            defer(pg, j, "could not record the refusal", retry_seconds(r));
        return;
    }
    if (rc != CM_OK) {
        defer(pg, j, why[0] ? why : cm_err_str(rc), retry_seconds(r));
        return;
    }
    if (cJSON_GetArraySize(j->integrations) == 0) {
        /* token-vault never had an integration of this user: nothing else can hold data
         * received through one (it is the last to forget an integration). */
        if (finish(r, pg, j, "completed", REAPER_NO_DATA_HELD) != CM_OK)
            defer(pg, j, "could not record the completion", retry_seconds(r));
        return;
    }
    rc = end_integrations(r, j, &ended, why, sizeof(why));
    /* Counted even when one could not be ended: the others will not be counted again. */
    if (add_counts(pg, j, &ended) != CM_OK) {
        defer(pg, j, "could not record the counts", retry_seconds(r));
        return;
    }
    if (rc != CM_OK) {
        defer(pg, j, why, retry_seconds(r));
        return;
    }
    scope.integrations = j->integrations;
    reaper_purge(r, &scope, &res);
    if (add_counts(pg, j, &res.deleted) != CM_OK) {
        defer(pg, j, "could not record the counts", retry_seconds(r));
        return;
    }
    if (!res.clean) {
        defer(pg, j, res.pending, res.retry_s > 0 ? res.retry_s : retry_seconds(r));
        return;
    }
    if (finish(r, pg, j, "completed", NULL) != CM_OK)
        defer(pg, j, "could not record the completion", retry_seconds(r));
}

static void *deleter_main(void *arg)
{
    struct reaper_deleter *d = arg;
    struct reaper *r = d->r;
    struct cm_pg *pg = NULL;

    if (cm_pg_connect(&pg, r->cfg->base.database_url, REAPER_SCHEMA) == CM_INVALID)
        return NULL;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        struct timespec until;
        struct job j;

        d->kicked = false;
        pthread_mutex_unlock(&d->lock);
        /* Every due request, one after the other; a deferred one is due again later. */
        while (!d->stopping && claim(pg, &j) == CM_OK) {
            run(r, pg, &j);
            release(pg, &j);
        }
        pthread_mutex_lock(&d->lock);
        if (d->stopping || d->kicked)
            continue;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&d->cond, &d->lock, &until);
    }
    pthread_mutex_unlock(&d->lock);
    cm_pg_destroy(pg);
    return NULL;
}

void reaper_deletion_kick(struct reaper *r)
{
    struct reaper_deleter *d = r->deleter;

    if (d == NULL)
        return;
    pthread_mutex_lock(&d->lock);
    d->kicked = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

int reaper_deleter_start(struct reaper *r)
{
    struct reaper_deleter *d = cm_xcalloc(1, sizeof(*d));

    d->r = r;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    r->deleter = d;
    if (pthread_create(&d->thread, NULL, deleter_main, d) != 0) {
        CM_ERROR("cannot start the deletion worker");
        return CM_ERR;
    }
    d->started = true;
    return CM_OK;
}

void reaper_deleter_stop(struct reaper *r)
{
    struct reaper_deleter *d = r->deleter;

    if (d == NULL)
        return;
    pthread_mutex_lock(&d->lock);
    atomic_store(&d->stopping, true);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (d->started)
        pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
    r->deleter = NULL;
}
