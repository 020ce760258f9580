/*
 * backfill.c - messages Meta holds that no webhook brought (downtime, a lost subscription,
 * permissions revoked and restored), fetched through the Conversations API and stored
 * through the same statements as a webhook's (store.c's inbound_store()).
 *
 * router.integration.backfill (token-vault only) asks for a backfill of one integration
 * since a time; its job row (schema/008_backfill.sql) holds the progress, not this process:
 * every replica runs one worker that claims a due job with a lease (FOR UPDATE SKIP LOCKED),
 * so one replica at a time works on an account, which keeps Meta's per-account rate. Each
 * conversation's messages and the job's new position commit in one transaction: a crash
 * loses nothing and repeats at most one conversation, whose messages are then found held
 * (one per (integration, mid)). Throttling and full budgets put the job back with
 * not_before, the time Meta gave; passing failures back off; a refusal that will not change
 * (a token Meta rejects, a missing permission) fails the job with Meta's reason.
 *
 * Windows: a backfilled message's time is Meta's created_time, and the window only moves
 * forward (greatest()), so an old message found now never reopens a window Meta closed.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backfill.h"
#include "common/id.h"
#include "common/log.h"
#include "inbound.h"

#define LEASE          "2 minutes"
#define POLL_MS        1000 /* how often an idle worker looks for a due job */
#define MAX_FAILURES   8    /* passing failures in a row before the job fails */
#define MAX_WAIT_MS    30000
#define DEFAULT_WINDOW "7 days" /* since, for an integration that never had a message */

struct backfill {
    struct router *r;
    pthread_t thread;
    bool started;
    atomic_bool stopping;
};

/* A claimed job: the row's identity and position. */
struct job {
    char integration[64];
    char platform[16];
    char account[80];
    char cursor[512];
    int64_t since_ms;
    int page_done;
    int generation;
    double last_call; /* epoch seconds of the account's last Graph call, 0: none */
};

/* --- the request ------------------------------------------------------------------------ */

/*
 * The upsert of a request: a job already pending or running keeps its position and counts
 * unless since moves earlier (then it starts again from Meta's first page, its generation
 * telling its worker so); a finished one starts anew. A throttling wait stands. A job that
 * had already listed conversations when the request came walks once more when it ends
 * (again): what arrived at Meta after its list was read is then found too.
 */
static const char upsert_sql[] =
    "INSERT INTO backfill_jobs AS j (integration_id, since) VALUES ($1, coalesce($2::timestamptz,"
    " (SELECT max(last_inbound_at) - interval '1 hour' FROM conversations"
    "  WHERE integration_id = $1), now() - interval '" DEFAULT_WINDOW "'))"
    " ON CONFLICT (integration_id) DO UPDATE SET"
    " since = CASE WHEN j.state IN ('pending', 'running') THEN least(j.since, excluded.since)"
    "  ELSE excluded.since END,"
    " generation = j.generation + CASE WHEN j.state IN ('pending', 'running')"
    "  AND excluded.since >= j.since THEN 0 ELSE 1 END,"
    " page_cursor = CASE WHEN j.state IN ('pending', 'running') AND excluded.since >= j.since"
    "  THEN j.page_cursor END,"
    " page_done = CASE WHEN j.state IN ('pending', 'running') AND excluded.since >= j.since"
    "  THEN j.page_done ELSE 0 END,"
    " stored = CASE WHEN j.state IN ('pending', 'running') THEN j.stored ELSE 0 END,"
    " duplicates = CASE WHEN j.state IN ('pending', 'running') THEN j.duplicates ELSE 0 END,"
    " calls = CASE WHEN j.state IN ('pending', 'running') THEN j.calls ELSE 0 END,"
    " throttled = CASE WHEN j.state IN ('pending', 'running') THEN j.throttled ELSE 0 END,"
    " failures = CASE WHEN j.state IN ('pending', 'running') THEN j.failures ELSE 0 END,"
    " not_before = CASE WHEN j.state IN ('pending', 'running') THEN j.not_before END,"
    " started_at = CASE WHEN j.state IN ('pending', 'running') THEN j.started_at END,"
    " again = j.state = 'running' OR (j.state = 'pending' AND (j.page_cursor IS NOT NULL"
    "  OR j.page_done > 0)),"
    " state = CASE WHEN j.state = 'running' THEN 'running' ELSE 'pending' END,"
    " error = NULL, finished_at = NULL, requested_at = now()";

int router_backfill_queue(struct cm_pg *pg, const char *id)
{
    const char *params[2] = {id, NULL};

    return cm_pg_exec(pg, upsert_sql, 2, params);
}

/* The job's state as the request's answer reads it. */
static const char state_sql[] =
    "SELECT state, stored, duplicates, calls, throttled, " ROUTER_RFC3339(
        "since") ", " ROUTER_RFC3339("not_before") ", error FROM backfill_jobs WHERE "
                                                   "integration_id = $1";

static cJSON *job_json(struct cm_pg *pg, const char *id)
{
    cJSON *out = cJSON_CreateObject();

    cJSON_AddStringToObject(out, "integration_id", id);
    cJSON_AddStringToObject(out, "state", cm_pg_value(pg, 0, 0));
    cJSON_AddStringToObject(out, "since", cm_pg_value(pg, 0, 5));
    cJSON_AddNumberToObject(out, "stored", atof(cm_pg_value(pg, 0, 1)));
    cJSON_AddNumberToObject(out, "duplicates", atof(cm_pg_value(pg, 0, 2)));
    cJSON_AddNumberToObject(out, "calls", atof(cm_pg_value(pg, 0, 3)));
    cJSON_AddNumberToObject(out, "throttled", atof(cm_pg_value(pg, 0, 4)));
    if (cm_pg_is_null(pg, 0, 6))
        cJSON_AddNullToObject(out, "not_before");
    else
        cJSON_AddStringToObject(out, "not_before", cm_pg_value(pg, 0, 6));
    if (cm_pg_is_null(pg, 0, 7))
        cJSON_AddNullToObject(out, "error");
    else
        cJSON_AddStringToObject(out, "error", cm_pg_value(pg, 0, 7));
    return out;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An RFC 3339 time: date, 'T', time, optional fraction, 'Z' or an offset. */
static bool rfc3339_ok(const char *s)
{
    struct tm tm;
    const char *p;

    memset(&tm, 0, sizeof(tm));
    p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return false;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
        }
    }
    if (*p == 'Z')
        return p[1] == '\0';
    return (*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':';
}

/* Checks the request's fields; false when the call was answered with the refusal. */
static bool valid_request(struct cm_rpc_call *call, const char **since, int *wait_ms)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(call->req, "since");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(call->req, "wait_ms");
    const char *id = cm_rpc_str(call, "integration_id");

    if (call->caller == NULL || strcmp(call->caller, "token-vault") != 0) {
        cm_rpc_fail(call, "denied", "only token-vault asks for a backfill");
        return false;
    }
    if (id == NULL || !cm_id_valid(id, 64)) {
        cm_rpc_fail(call, "invalid", "integration_id is required");
        return false;
    }
    if (s != NULL && !cJSON_IsNull(s) && (!cJSON_IsString(s) || !rfc3339_ok(s->valuestring))) {
        cm_rpc_fail(call, "invalid", "since must be an RFC 3339 time or null");
        return false;
    }
    if (w != NULL && !cJSON_IsNull(w) &&
        (!cJSON_IsNumber(w) || w->valuedouble < 0 || w->valuedouble > MAX_WAIT_MS)) {
        cm_rpc_fail(call, "invalid", "wait_ms must be a number from 0 to %d", MAX_WAIT_MS);
        return false;
    }
    *since = cJSON_IsString(s) ? s->valuestring : NULL;
    *wait_ms = cJSON_IsNumber(w) ? (int)w->valuedouble : 0;
    return true;
}

static void on_backfill(struct cm_rpc_call *call, void *arg)
{
    const char *id = cm_rpc_str(call, "integration_id"), *since = NULL;
    const char *params[2] = {id, NULL};
    int wait_ms = 0;
    int64_t deadline;
    int rc;

    (void)arg;
    if (!valid_request(call, &since, &wait_ms))
        return;
    params[1] = since;
    if (cm_pg_exec(call->pg, "SELECT status FROM routes WHERE integration_id = $1", 1, params) !=
        CM_OK) {
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return;
    }
    if (cm_pg_ntuples(call->pg) == 0) {
        cm_rpc_fail(call, "not_found", "no integration %s at the router", id);
        return;
    }
    if (strcmp(cm_pg_value(call->pg, 0, 0), "connected") != 0) {
        cm_rpc_fail(call, "refused", "integration %s is %s: nothing to backfill", id,
                    cm_pg_value(call->pg, 0, 0));
        return;
    }
    if (cm_pg_exec(call->pg, upsert_sql, 2, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the backfill could not be recorded");
        return;
    }
    CM_INFO("integration %s: backfill asked by %s", id, call->actor);
    /* Any replica's worker runs it; the answer waits for its end, at most wait_ms. */
    deadline = now_ms() + wait_ms;
    for (;;) {
        rc = cm_pg_exec(call->pg, state_sql, 1, params);
        if (rc != CM_OK || cm_pg_ntuples(call->pg) == 0) {
            cm_rpc_fail(call, "unavailable", "the backfill's state could not be read");
            return;
        }
        if (strcmp(cm_pg_value(call->pg, 0, 0), "done") == 0 ||
            strcmp(cm_pg_value(call->pg, 0, 0), "failed") == 0 || now_ms() >= deadline)
            break;
        {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cm_rpc_reply(call, job_json(call->pg, id));
}

/* --- the worker ------------------------------------------------------------------------- */

/* Claims the oldest due job whose lease is free or ran out; CM_NOTFOUND when none. */
static int claim(struct cm_pg *pg, struct job *j)
{
    int rc = cm_pg_exec(
        pg,
        "UPDATE backfill_jobs j SET state = 'running', lease_until = now() + interval '" LEASE "',"
        " started_at = coalesce(j.started_at, now()) FROM routes r"
        " WHERE j.integration_id = (SELECT integration_id FROM backfill_jobs"
        "  WHERE (state = 'pending' OR (state = 'running' AND lease_until < now()))"
        "  AND (not_before IS NULL OR not_before <= now())"
        "  ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " AND r.integration_id = j.integration_id"
        " RETURNING j.integration_id, r.platform, r.account_id, r.status,"
        " floor(extract(epoch FROM j.since) * 1000)::bigint, coalesce(j.page_cursor, ''),"
        " j.page_done, j.generation, coalesce(j.last_call_at, 0)",
        0, NULL);

    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    memset(j, 0, sizeof(*j));
    snprintf(j->integration, sizeof(j->integration), "%s", cm_pg_value(pg, 0, 0));
    snprintf(j->platform, sizeof(j->platform), "%s", cm_pg_value(pg, 0, 1));
    snprintf(j->account, sizeof(j->account), "%s", cm_pg_value(pg, 0, 2));
    j->since_ms = atoll(cm_pg_value(pg, 0, 4));
    snprintf(j->cursor, sizeof(j->cursor), "%s", cm_pg_value(pg, 0, 5));
    j->page_done = atoi(cm_pg_value(pg, 0, 6));
    j->generation = atoi(cm_pg_value(pg, 0, 7));
    j->last_call = atof(cm_pg_value(pg, 0, 8));
    if (strcmp(cm_pg_value(pg, 0, 3), "connected") != 0) {
        const char *params[2] = {j->integration, cm_pg_value(pg, 0, 3)};
        rc = cm_pg_exec(pg,
                        "UPDATE backfill_jobs SET state = 'failed', lease_until = NULL,"
                        " finished_at = now(), error = 'the integration is ' || $2"
                        " WHERE integration_id = $1",
                        2, params);
        return rc == CM_OK ? CM_AGAIN : rc;
    }
    return CM_OK;
}

/*
 * Ends a run of the job: "done", "failed" with why, or back to "pending" after wait_s
 * seconds (throttled: counted; failure: a passing one, counted, failing the job past
 * MAX_FAILURES). "done" of a job asked again while it walked (again) is "pending" from Meta's
 * first page instead. Only the generation the worker ran is touched.
 */
static void release(struct cm_pg *pg, const struct job *j, const char *how, int wait_s,
                    const char *why, long calls, double last_call)
{
    char gen[16], wait[16], ncalls[24], max[16], last[32];
    const char *params[8] = {j->integration, gen, how, wait, why, ncalls, max, last};

    snprintf(gen, sizeof(gen), "%d", j->generation);
    snprintf(wait, sizeof(wait), "%d", wait_s);
    snprintf(ncalls, sizeof(ncalls), "%ld", calls);
    snprintf(max, sizeof(max), "%d", MAX_FAILURES);
    snprintf(last, sizeof(last), "%.3f", last_call);
    if (cm_pg_exec(pg,
                   "UPDATE backfill_jobs SET lease_until = NULL, calls = calls + $6::bigint,"
                   " last_call_at = greatest(last_call_at, $8::double precision),"
                   " throttled = throttled + CASE WHEN $3 = 'throttled' THEN 1 ELSE 0 END,"
                   " failures = CASE WHEN $3 = 'failure' THEN failures + 1 ELSE 0 END,"
                   " state = CASE WHEN $3 = 'done' AND again THEN 'pending'"
                   "  WHEN $3 IN ('done', 'failed') THEN $3"
                   "  WHEN $3 = 'failure' AND failures + 1 >= $7::int THEN 'failed'"
                   "  ELSE 'pending' END,"
                   " not_before = CASE WHEN $3 IN ('throttled', 'failure', 'pending')"
                   "  THEN now() + make_interval(secs => $4::int) END,"
                   " finished_at = CASE WHEN $3 = 'failed' OR ($3 = 'done' AND NOT again)"
                   "  THEN now() END,"
                   " page_cursor = CASE WHEN $3 = 'done' THEN NULL ELSE page_cursor END,"
                   " page_done = CASE WHEN $3 = 'done' THEN 0 ELSE page_done END,"
                   " again = again AND $3 NOT IN ('done', 'failed'),"
                   " error = $5"
                   " WHERE integration_id = $1 AND generation = $2::int AND state = 'running'",
                   8, params) != CM_OK)
        CM_WARN("integration %s: the backfill's state not recorded", j->integration);
}

/*
 * Stores one conversation's messages and the job's new position in one transaction.
 * CM_NOTFOUND when the job's generation changed meanwhile (asked again from earlier): the
 * messages still count, the position is the new request's.
 */
static int store_conversation(struct router *r, struct cm_pg *pg, const struct job *j,
                              cJSON *events, const char *cursor, int page_done, long calls,
                              double last_call)
{
    long stored = 0, held = 0;
    const cJSON *wrap;
    int rc = cm_pg_begin(pg);

    cJSON_ArrayForEach(wrap, events)
    {
        struct inbound_event ev;
        enum inbound_outcome outcome = INBOUND_IGNORED;
        char why[256];
        if (rc != CM_OK)
            break;
        inbound_parse(&ev, wrap);
        rc = inbound_store(r, pg, NULL, &ev, &outcome, why, sizeof(why));
        if (rc == CM_INVALID) {
            CM_WARN("integration %s: a backfilled message skipped: %s", j->integration, why);
            rc = CM_OK;
        }
        stored += outcome == INBOUND_STORED;
        held += outcome == INBOUND_DUPLICATE;
    }
    if (rc == CM_OK) {
        char done[16], gen[16], ns[24], nh[24], nc[24], last[32];
        const char *params[8] = {
            j->integration, cursor[0] ? cursor : NULL, done, gen, ns, nh, nc, last};
        snprintf(done, sizeof(done), "%d", page_done);
        snprintf(gen, sizeof(gen), "%d", j->generation);
        snprintf(ns, sizeof(ns), "%ld", stored);
        snprintf(nh, sizeof(nh), "%ld", held);
        snprintf(nc, sizeof(nc), "%ld", calls);
        snprintf(last, sizeof(last), "%.3f", last_call);
        rc = cm_pg_exec(pg,
                        "UPDATE backfill_jobs SET page_cursor = $2, page_done = $3::int,"
                        " stored = stored + $5::bigint, duplicates = duplicates + $6::bigint,"
                        " calls = calls + $7::bigint, failures = 0,"
                        " last_call_at = greatest(last_call_at, $8::double precision),"
                        " lease_until = now() + interval '" LEASE "'"
                        " WHERE integration_id = $1 AND generation = $4::int AND state = 'running'",
                        8, params);
        if (rc == CM_OK && cm_pg_affected(pg) == 0)
            rc = CM_NOTFOUND;
    }
    if (rc == CM_OK || rc == CM_NOTFOUND) {
        int crc = cm_pg_commit(pg);
        if (crc != CM_OK)
            rc = crc;
    }
    if (rc != CM_OK && rc != CM_NOTFOUND)
        cm_pg_rollback(pg);
    return rc;
}

/*
 * Works through the job's pages from its position. Returns how it ended for release():
 * "done", "failed", "throttled", "failure", or NULL when the job was asked again meanwhile
 * (another generation: the next claim takes it up).
 */
static const char *walk(struct backfill *b, struct cm_pg *pg, struct bf_meta *m, struct job *j)
{
    struct bf_page *page = cm_xcalloc(1, sizeof(*page));
    const char *how = NULL;
    long counted = 0;

    while (how == NULL && !atomic_load(&b->stopping)) {
        int rc = bf_conversations(m, j->cursor[0] ? j->cursor : NULL, page);
        bool reached = false;
        int i;
        if (rc != CM_OK) {
            how = rc == CM_AGAIN ? "throttled" : rc == CM_UNAVAIL ? "failure" : "failed";
            break;
        }
        for (i = j->page_done; i < page->n && how == NULL && !atomic_load(&b->stopping); i++) {
            cJSON *events = NULL;
            /* Most recently updated first: the rest of the list is older than since. */
            if (page->convs[i].updated_ms > 0 && page->convs[i].updated_ms < j->since_ms) {
                reached = true;
                break;
            }
            rc = bf_messages(m, page->convs[i].id, j->since_ms, &events);
            if (rc == CM_OK) {
                rc = store_conversation(b->r, pg, j, events, j->cursor, i + 1, m->calls - counted,
                                        m->last_call);
                counted = m->calls;
                if (rc == CM_AGAIN)
                    rc = CM_UNAVAIL; /* the database's passing failure, not Meta's throttling */
            }
            cJSON_Delete(events);
            if (rc == CM_NOTFOUND)
                how = "";
            else if (rc == CM_AGAIN)
                how = "throttled";
            else if (rc == CM_UNAVAIL || (rc != CM_OK && rc != CM_DENIED && rc != CM_INVALID))
                how = "failure";
            else if (rc != CM_OK)
                how = "failed";
            else if (m->wait_s > 0)
                how = "throttled"; /* a budget near its end: pause before Meta refuses */
        }
        if (how != NULL)
            break;
        if (atomic_load(&b->stopping)) {
            how = "pending";
            break;
        }
        if (reached || !page->more) {
            how = "done";
            break;
        }
        /* The next page, from its first conversation. */
        snprintf(j->cursor, sizeof(j->cursor), "%s", page->after);
        j->page_done = 0;
        rc = store_conversation(b->r, pg, j, NULL, j->cursor, 0, m->calls - counted, m->last_call);
        if (rc != CM_OK)
            how = rc == CM_NOTFOUND ? "" : "failure";
        counted = m->calls;
        if (how == NULL && m->wait_s > 0)
            how = "throttled";
    }
    if (how == NULL)
        how = "pending"; /* stopping: the next replica or start takes it up */
    m->calls -= counted; /* what release() still has to count */
    free(page);
    return how[0] != '\0' ? how : NULL;
}

/* Runs one claimed job until it ends, waits, or the process stops. */
static void run(struct backfill *b, struct cm_pg *pg, struct cm_httpc *http, struct job *j)
{
    struct bf_meta m = {.r = b->r,
                        .http = http,
                        .platform = j->platform,
                        .account = j->account,
                        .last_call = j->last_call};
    char why[512];
    const char *how;
    int rc = router_token_get(b->r, j->integration, &m.token, m.proof, why, sizeof(why));

    if (rc != CM_OK) {
        /* The vault's refusal ends the job; its silence (a restart) is tried again soon. */
        release(pg, j, rc == CM_DENIED ? "failed" : "failure", 5, why, 0, 0);
        return;
    }
    CM_INFO("integration %s: backfill running", j->integration);
    how = walk(b, pg, &m, j);
    sodium_free(m.token);
    if (how == NULL) {
        /* Asked again from earlier meanwhile: free for the next claim at once. */
        const char *params[1] = {j->integration};
        if (cm_pg_exec(pg,
                       "UPDATE backfill_jobs SET lease_until = now() - interval '1 second'"
                       " WHERE integration_id = $1 AND state = 'running'",
                       1, params) != CM_OK)
            CM_WARN("integration %s: the backfill's lease not released", j->integration);
        return;
    }
    if (strcmp(how, "failure") == 0)
        m.wait_s = 30;
    release(pg, j, how, m.wait_s, strcmp(how, "done") == 0 ? NULL : m.why, m.calls, m.last_call);
    CM_INFO("integration %s: backfill %s%s%s", j->integration, how,
            strcmp(how, "done") == 0 ? "" : ": ", strcmp(how, "done") == 0 ? "" : m.why);
}

static void *worker_main(void *arg)
{
    struct backfill *b = arg;
    struct cm_pg *pg = NULL;
    struct cm_httpc *http = NULL;

    if (cm_pg_connect(&pg, b->r->cfg->base.database_url, ROUTER_SCHEMA) == CM_INVALID ||
        cm_httpc_create(&http) != CM_OK) {
        CM_ERROR("backfill: the worker could not start");
        cm_pg_destroy(pg);
        return NULL;
    }
    while (!atomic_load(&b->stopping)) {
        struct job j;
        /* No claim before NATS is up: a job needs the vault's token (the worker starts
         * before the service's connection does). */
        int rc = cm_nats_connected(b->r->svc.nats) ? claim(pg, &j) : CM_NOTFOUND;
        if (rc == CM_OK) {
            run(b, pg, http, &j);
            continue;
        }
        if (rc == CM_AGAIN)
            continue;
        for (int i = 0; i < POLL_MS / 100 && !atomic_load(&b->stopping); i++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cm_httpc_destroy(http);
    cm_pg_destroy(pg);
    return NULL;
}

void router_backfill_register(struct router *r)
{
    cm_rpc_handle(r->rpc, "router.integration.backfill", on_backfill, r);
}

int router_backfill_start(struct router *r)
{
    struct backfill *b = cm_xcalloc(1, sizeof(*b));

    b->r = r;
    atomic_init(&b->stopping, false);
    r->backfill = b;
    if (pthread_create(&b->thread, NULL, worker_main, b) != 0) {
        CM_ERROR("backfill: no worker thread");
        return CM_ERR;
    }
    b->started = true;
    return CM_OK;
}

void router_backfill_stop(struct router *r)
{
    struct backfill *b = r->backfill;

    if (b == NULL)
        return;
    atomic_store(&b->stopping, true);
    if (b->started)
        pthread_join(b->thread, NULL);
    free(b);
    r->backfill = NULL;
}
