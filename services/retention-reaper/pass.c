/*
 * pass.c - the retention schedule: a pass every REAPER_INTERVAL and on reaper.retention.run,
 * and the gauges an operator alerts on.
 *
 * A pass, in order: tokens of ended integrations (token-vault's "due" purge); integrations of
 * deleted workspaces not yet disconnected (retried); workspaces whose purge is due (router,
 * ai-suggest, raw events, token-vault: purge.c); audit entries older than RETENTION_AUDIT;
 * deletion records past the same period; and open data-deletion requests retried now.
 *
 * Only one pass runs at a time across replicas: a session advisory lock. The scheduler tries
 * it and skips its turn when another replica holds it; `domsctl retention run` waits (up to
 * PASS_WAIT_S) for the running pass to end and then runs its own, so that its answer covers
 * a pass that started after the command. Every step is idempotent and records its progress
 * as it goes, so a pass that dies half-way is finished by the next one.
 *
 * A pass acts on what falls due before the pass after next (the look-ahead: two intervals,
 * at most a tenth of the period): with passes an interval apart, nothing waits past its due
 * time for the next pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/metrics.h"
#include "reaper.h"

#define PASS_LOCK   "hashtext('reaper.pass')"
#define PASS_WAIT_S 50 /* domsctl's default timeout is 60 s */
#define TICK_S      5  /* how often the gauges are refreshed */
#define DUE_BATCH   100

struct reaper_scheduler {
    struct reaper *r;
    pthread_t thread;
    bool started;
    _Atomic bool stopping;
};

static int64_t lookahead(const struct reaper *r, int64_t period)
{
    int64_t two = 2 * r->cfg->interval, tenth = period / 10;

    return two < tenth ? two : tenth;
}

/* token-vault's tokens of ended integrations; it deletes them when they end already. */
static void tokens_due(struct reaper *r, struct cm_pg *pg, struct reaper_counts *c)
{
    cJSON *req = cJSON_CreateObject();
    struct reaper_reply rep;
    char older[32];
    time_t t = time(NULL) - (time_t)r->cfg->retention_tokens;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(older, sizeof(older), "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(req, "scope", "due");
    cJSON_AddStringToObject(req, "older_than", older);
    if (reaper_call(r, "vault.purge", req, REAPER_PURGE_TIMEOUT_MS, &rep) != CM_OK) {
        CM_WARN("pass: tokens not checked: %s", rep.message);
    } else {
        reaper_counts_add_json(c, cJSON_GetObjectItem(rep.result, "deleted"));
        if (reaper_counts_none_left(cJSON_GetObjectItem(rep.result, "remaining")) &&
            cm_pg_exec(pg, "UPDATE schedule_state SET tokens_clean_at = now()", 0, NULL) != CM_OK)
            CM_WARN("pass: cannot record the tokens check: %s", cm_pg_error(pg));
    }
    reaper_reply_cleanup(&rep);
    cJSON_Delete(req);
}

typedef void (*workspace_fn)(struct reaper *r, struct cm_pg *pg, const char *ws, const char *actor,
                             struct reaper_counts *c);

/*
 * Runs fn for each (workspace_id, deleted_by) that sql selects (param: its one parameter, or
 * NULL). The rows are copied first, since fn runs queries of its own on pg.
 */
static void each_workspace(struct reaper *r, struct cm_pg *pg, const char *sql, const char *param,
                           workspace_fn fn, struct reaper_counts *c)
{
    const char *params[1] = {param};
    char **ws, **actor;
    int n;

    if (cm_pg_exec(pg, sql, param ? 1 : 0, params) != CM_OK)
        return;
    n = cm_pg_ntuples(pg);
    ws = cm_xcalloc((size_t)n + 1, sizeof(char *));
    actor = cm_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        ws[i] = cm_xstrdup(cm_pg_value(pg, i, 0));
        actor[i] = cm_xstrdup(cm_pg_value(pg, i, 1));
    }
    for (int i = 0; i < n; i++) {
        fn(r, pg, ws[i], actor[i], c);
        free(ws[i]);
        free(actor[i]);
    }
    free(ws);
    free(actor);
}

/* A deleted workspace whose integrations token-vault could not end at the time. */
static void disconnect_retry(struct reaper *r, struct cm_pg *pg, const char *ws, const char *actor,
                             struct reaper_counts *c)
{
    long ended = 0;

    (void)c;
    if (reaper_workspace_disconnect(r, pg, ws, actor, &ended) == CM_OK)
        CM_INFO("pass: workspace %s: %ld integrations disconnected", ws, ended);
}

/*
 * Purges one deleted workspace everywhere; records the counts, and the end when clean (when
 * the accounts it remembered for the purge are forgotten too).
 */
static void purge_workspace(struct reaper *r, struct cm_pg *pg, const char *ws, const char *actor,
                            struct reaper_counts *c)
{
    struct reaper_scope scope = {"workspace", ws, NULL, true};
    struct reaper_purge_result res;
    const char *params[3] = {ws, NULL, NULL};
    cJSON *integrations, *counts;
    char *text;
    long ended = 0;

    /* Whatever was connected since (or missed) is ended and remembered first. */
    if (reaper_workspace_disconnect(r, pg, ws, actor, &ended) != CM_OK)
        CM_WARN("pass: workspace %s: token-vault not reachable before the purge", ws);
    if (cm_pg_exec(pg, "SELECT integrations FROM workspace_deletions WHERE workspace_id = $1", 1,
                   params) != CM_OK ||
        cm_pg_ntuples(pg) != 1)
        return;
    integrations = cJSON_Parse(cm_pg_value(pg, 0, 0));
    scope.integrations = integrations;
    reaper_purge(r, &scope, &res);
    cJSON_Delete(integrations);
    for (int k = 0; k < REAPER_NKINDS; k++)
        c->n[k] += res.deleted.n[k];

    counts = reaper_counts_json(&res.deleted, REAPER_DATA_KINDS);
    text = cJSON_PrintUnformatted(counts);
    params[1] = text;
    params[2] = res.clean ? NULL : res.pending;
    if (cm_pg_begin(pg) != CM_OK ||
        cm_pg_exec(pg,
                   "UPDATE workspace_deletions SET last_error = $3::text,"
                   " purged_at = CASE WHEN $3::text IS NULL THEN now() END,"
                   " integrations = CASE WHEN $3::text IS NULL THEN '[]' ELSE integrations END,"
                   " deleted = (SELECT coalesce(jsonb_object_agg(k, coalesce((deleted->>k)::bigint,"
                   " 0) + coalesce(($2::jsonb->>k)::bigint, 0)), '{}')"
                   " FROM jsonb_object_keys(deleted || $2::jsonb) AS k) WHERE workspace_id = $1",
                   3, params) != CM_OK ||
        (res.clean &&
         cm_audit_add(pg, REAPER_SERVICE, REAPER_SERVICE, "workspace.purge", ws) != CM_OK) ||
        cm_pg_commit(pg) != CM_OK) {
        cm_pg_rollback(pg);
        CM_WARN("pass: workspace %s: the purge's progress was not recorded: %s", ws,
                cm_pg_error(pg));
    } else if (res.clean) {
        CM_INFO("pass: workspace %s purged", ws);
    } else {
        CM_WARN("pass: workspace %s not purged yet: %s", ws, res.pending);
    }
    cJSON_free(text);
    cJSON_Delete(counts);
}

static void workspaces_due(struct reaper *r, struct cm_pg *pg, struct reaper_counts *c)
{
    char ahead[24];

    snprintf(ahead, sizeof(ahead), "%lld", (long long)lookahead(r, r->cfg->retention_messages));
    each_workspace(
        r, pg,
        "SELECT workspace_id, deleted_by FROM workspace_deletions WHERE purged_at IS NULL"
        " AND purge_due_at <= now() + make_interval(secs => $1::bigint)"
        " ORDER BY purge_due_at LIMIT " REAPER_STR(DUE_BATCH),
        ahead, purge_workspace, c);
}

/* Audit entries past RETENTION_AUDIT, and deletion records kept as long. */
static void audit_due(struct reaper *r, struct cm_pg *pg, struct reaper_counts *c)
{
    int64_t cutoff =
        (int64_t)time(NULL) - r->cfg->retention_audit + lookahead(r, r->cfg->retention_audit);
    char secs[24], subject[48];
    const char *params[1] = {secs};
    long deleted = 0;

    if (reaper_audit_expire(r, pg, cutoff, &deleted) != CM_OK)
        CM_WARN("pass: audit retention interrupted: %s", cm_pg_error(pg));
    c->n[REAPER_AUDIT] += deleted;
    if (deleted > 0) {
        snprintf(subject, sizeof(subject), "%ld entries", deleted);
        if (cm_audit_add(pg, REAPER_SERVICE, REAPER_SERVICE, "audit.expire", subject) != CM_OK)
            CM_WARN("pass: the audit retention was not itself audited");
        CM_INFO("pass: %ld audit entries past their retention deleted", deleted);
    }
    snprintf(secs, sizeof(secs), "%lld", (long long)r->cfg->retention_audit);
    if (cm_pg_exec(pg,
                   "DELETE FROM deletion_requests WHERE status IN ('completed', 'refused') AND"
                   " coalesce(completed_at, received_at) < now() - make_interval(secs =>"
                   " $1::bigint)",
                   1, params) != CM_OK)
        CM_WARN("pass: old deletion records not deleted: %s", cm_pg_error(pg));
}

/* Runs one pass (see above). wait: block for the lock (domsctl) rather than skip. */
static int pass(struct reaper *r, struct cm_pg *pg, bool wait, struct reaper_counts *c)
{
    int rc;

    memset(c, 0, sizeof(*c));
    if (wait) {
        rc = cm_pg_exec(pg, "SET lock_timeout = '" REAPER_STR(PASS_WAIT_S) "s'", 0, NULL);
        if (rc == CM_OK)
            rc = cm_pg_exec(pg, "SELECT pg_advisory_lock(" PASS_LOCK ")", 0, NULL);
        if (cm_pg_exec(pg, "RESET lock_timeout", 0, NULL) != CM_OK && rc == CM_OK)
            rc = CM_UNAVAIL;
        if (rc != CM_OK)
            return rc;
    } else {
        rc = cm_pg_exec(pg, "SELECT pg_try_advisory_lock(" PASS_LOCK ")", 0, NULL);
        if (rc != CM_OK)
            return rc;
        if (strcmp(cm_pg_value(pg, 0, 0), "t") != 0) {
            cm_metrics_inc(r->m_passes_skipped, 1);
            return CM_CONFLICT; /* another replica's pass is running */
        }
    }
    tokens_due(r, pg, c);
    each_workspace(r, pg,
                   "SELECT workspace_id, deleted_by FROM workspace_deletions WHERE NOT tokens_done"
                   " AND purged_at IS NULL ORDER BY deleted_at LIMIT " REAPER_STR(DUE_BATCH),
                   NULL, disconnect_retry, c);
    workspaces_due(r, pg, c);
    audit_due(r, pg, c);
    /* Open data-deletion requests are retried now rather than at their next attempt. */
    if (cm_pg_exec(pg,
                   "UPDATE deletion_requests SET next_attempt_at = now()"
                   " WHERE status IN ('received', 'in_progress') AND next_attempt_at > now()",
                   0, NULL) == CM_OK)
        reaper_deletion_kick(r);
    rc = cm_pg_exec(pg, "UPDATE schedule_state SET last_pass_at = now()", 0, NULL);
    if (cm_pg_exec(pg, "SELECT pg_advisory_unlock(" PASS_LOCK ")", 0, NULL) != CM_OK)
        CM_DEBUG("pass: lock released with the connection");
    cm_metrics_inc(r->m_passes, 1);
    return rc;
}

/* --- gauges ---------------------------------------------------------------------------- */

static double col(struct cm_pg *pg, int i)
{
    return cm_pg_is_null(pg, 0, i) ? 0 : strtod(cm_pg_value(pg, 0, i), NULL);
}

/* Refreshes the gauges from the reaper's own records (the other services are not asked). */
static void gauges(struct reaper *r, struct cm_pg *pg)
{
    double data, tokens, audit;

    if (cm_pg_exec(pg,
                   "SELECT extract(epoch FROM now() - (SELECT min(deleted_at)"
                   "  FROM workspace_deletions WHERE purged_at IS NULL)),"
                   " extract(epoch FROM now() - (SELECT min(deleted_at) FROM workspace_deletions"
                   "  WHERE purged_at IS NULL AND NOT tokens_done)),"
                   " (SELECT extract(epoch FROM now() - tokens_clean_at) FROM schedule_state"
                   "  WHERE tokens_clean_at < last_pass_at - interval '1 second'),"
                   " extract(epoch FROM now() - (SELECT min(at) FROM audit_log)),"
                   " extract(epoch FROM now() - (SELECT min(received_at) FROM deletion_requests"
                   "  WHERE status IN ('received', 'in_progress'))),"
                   " (SELECT count(*) FROM deletion_requests"
                   "  WHERE status IN ('received', 'in_progress')),"
                   " (SELECT extract(epoch FROM last_pass_at) FROM schedule_state)",
                   0, NULL) != CM_OK)
        return;
    data = col(pg, 0);
    /* A token is held at most since the last time token-vault confirmed none was left. */
    tokens = col(pg, 1) > col(pg, 2) ? col(pg, 1) : col(pg, 2);
    audit = col(pg, 3);
    for (int k = 0; k < REAPER_NKINDS; k++) {
        double held = k == REAPER_TOKENS ? tokens : k == REAPER_AUDIT ? audit : data;
        int64_t limit = k == REAPER_TOKENS  ? r->cfg->retention_tokens
                        : k == REAPER_AUDIT ? r->cfg->retention_audit
                                            : r->cfg->retention_messages;
        cm_metrics_set(r->m_held[k], held);
        cm_metrics_set(r->m_limit[k], (double)limit);
    }
    cm_metrics_set(r->m_open_age, col(pg, 4));
    cm_metrics_set(r->m_open, col(pg, 5));
    cm_metrics_set(r->m_last_pass, col(pg, 6));
}

/* --- reaper.retention.run and the scheduler -------------------------------------------- */

static void on_run(struct cm_rpc_call *call, void *arg)
{
    struct reaper *r = arg;
    struct reaper_counts c;
    cJSON *out;
    int rc = pass(r, call->pg, true, &c);

    if (rc == CM_AGAIN) {
        cm_rpc_fail(call, "busy", "a retention pass has been running for over %ds; retry later",
                    PASS_WAIT_S);
        return;
    }
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the pass could not run: %s", cm_err_str(rc));
        return;
    }
    gauges(r, call->pg);
    out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "deleted", reaper_counts_json(&c, REAPER_ALL_KINDS));
    cm_rpc_reply(call, out);
}

static void *scheduler_main(void *arg)
{
    struct reaper_scheduler *s = arg;
    struct reaper *r = s->r;
    struct cm_pg *pg = NULL;
    time_t next = time(NULL); /* a pass at start-up catches up after downtime */

    if (cm_pg_connect(&pg, r->cfg->base.database_url, REAPER_SCHEMA) == CM_INVALID)
        return NULL;
    while (!atomic_load(&s->stopping)) {
        if (time(NULL) >= next && cm_nats_ready(r->svc.nats)) {
            struct reaper_counts c;
            int rc = pass(r, pg, false, &c);
            if (rc == CM_OK || rc == CM_CONFLICT)
                next = time(NULL) + (time_t)r->cfg->interval;
        }
        gauges(r, pg);
        /* Sleep a tick, in slices so that a stop is quick. */
        for (int i = 0; i < TICK_S * 10 && !atomic_load(&s->stopping) && time(NULL) < next; i++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cm_pg_destroy(pg);
    return NULL;
}

int reaper_schedule_start(struct reaper *r)
{
    struct reaper_scheduler *s = cm_xcalloc(1, sizeof(*s));

    s->r = r;
    r->scheduler = s;
    cm_rpc_handle(r->rpc, "reaper.retention.run", on_run, r);
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        CM_ERROR("cannot start the scheduler");
        return CM_ERR;
    }
    s->started = true;
    return CM_OK;
}

void reaper_schedule_stop(struct reaper *r)
{
    struct reaper_scheduler *s = r->scheduler;

    if (s == NULL)
        return;
    atomic_store(&s->stopping, true);
    if (s->started)
        pthread_join(s->thread, NULL);
    free(s);
    r->scheduler = NULL;
}
