/*
 * pg.c - the libpq wrapper and migrations (see pg.h).
 */
#include "common/pg.h"
#include "common/log.h"
#include "common/mem.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cm_pg {
    char *url;
    char *schema;
    PGconn *conn;
    PGresult *res; /* the last result, owned here */
    char err[512];
    /* Statements prepared on the current connection (forgotten when it is reset): their
     * names, string literals, in an array that grows as needed. */
    const char **prepared;
    int nprepared, cap_prepared;
    char *session_sql; /* run after every (re)connect, see cm_pg_session() */
};

static void clear_result(struct cm_pg *pg)
{
    PQclear(pg->res);
    pg->res = NULL;
}

/* Sets search_path on a fresh connection. */
static int set_schema(struct cm_pg *pg)
{
    const char *params[1] = {pg->schema};
    PGresult *r;
    int ok;

    if (pg->schema != NULL) {
        r = PQexecParams(pg->conn, "SELECT pg_catalog.set_config('search_path', $1, false)", 1,
                         NULL, params, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            CM_ERROR("pg: cannot set search_path: %s", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            return CM_ERR;
    }
    if (pg->session_sql != NULL) {
        r = PQexec(pg->conn, pg->session_sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            CM_ERROR("pg: session settings refused: %s", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            return CM_ERR;
    }
    return CM_OK;
}

int cm_pg_session(struct cm_pg *pg, const char *sql)
{
    free(pg->session_sql);
    pg->session_sql = cm_xstrdup(sql);
    if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK)
        return CM_OK; /* applied on the next connect */
    return cm_pg_exec_simple(pg, sql);
}

/* Server notices ("relation already exists, skipping") belong in the debug log. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    CM_DEBUG("pg: %.*s", (int)strcspn(message, "\n"), message);
}

/* (Re)opens the connection; CM_UNAVAIL when the server does not answer. */
static int ensure_conn(struct cm_pg *pg)
{
    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK)
        return CM_OK;
    pg->nprepared = 0; /* a new session has none of them */
    if (pg->conn != NULL) {
        PQreset(pg->conn);
    } else {
        /* Our defaults come first so that the URL's own settings win. */
        const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
        const char *const values[] = {"5", "doms", pg->url, NULL};
        pg->conn = PQconnectdbParams(keys, values, 1);
        PQsetNoticeProcessor(pg->conn, on_notice, NULL);
    }
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        snprintf(pg->err, sizeof(pg->err), "%s", PQerrorMessage(pg->conn));
        pg->err[strcspn(pg->err, "\n")] = '\0';
        return CM_UNAVAIL;
    }
    return set_schema(pg);
}

int cm_pg_connect(struct cm_pg **out, const char *url, const char *schema)
{
    struct cm_pg *pg = cm_xcalloc(1, sizeof(*pg));
    char *errmsg = NULL;
    PQconninfoOption *opts;

    /* Refuse a malformed URL up front rather than retrying it forever. */
    opts = PQconninfoParse(url, &errmsg);
    if (opts == NULL) {
        CM_ERROR("pg: DATABASE_URL is malformed: %s", errmsg ? errmsg : "out of memory");
        PQfreemem(errmsg);
        free(pg);
        return CM_INVALID;
    }
    PQconninfoFree(opts);
    pg->url = cm_xstrdup(url);
    pg->schema = schema ? cm_xstrdup(schema) : NULL;
    *out = pg;
    return ensure_conn(pg);
}

void cm_pg_destroy(struct cm_pg *pg)
{
    if (pg == NULL)
        return;
    clear_result(pg);
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    free(pg->prepared);
    free(pg->url);
    free(pg->schema);
    free(pg->session_sql);
    free(pg);
}

/* Maps a failed result to the shared error vocabulary by SQLSTATE class. */
static int classify(struct cm_pg *pg)
{
    const char *state = PQresultErrorField(pg->res, PG_DIAG_SQLSTATE);

    snprintf(pg->err, sizeof(pg->err), "%s",
             pg->res ? PQresultErrorMessage(pg->res) : PQerrorMessage(pg->conn));
    pg->err[strcspn(pg->err, "\n")] = '\0';
    if (PQstatus(pg->conn) != CONNECTION_OK)
        return CM_UNAVAIL;
    if (state == NULL)
        return CM_UNAVAIL;
    if (strcmp(state, "23505") == 0)
        return CM_CONFLICT;
    if (strcmp(state, "42501") == 0)
        return CM_DENIED;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0)
        return CM_AGAIN;
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0)
        return CM_UNAVAIL;
    return CM_ERR;
}

static bool succeeded(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/*
 * A connection that died while idle (PostgreSQL restarted) is only noticed by the next
 * statement. When that statement was not inside a transaction, it is worth one more try
 * on a fresh connection: nothing of a transaction is lost. Returns true when the caller
 * should send it again.
 */
static bool reconnected(struct cm_pg *pg, bool was_idle)
{
    if (!was_idle || pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_BAD)
        return false;
    clear_result(pg);
    CM_INFO("pg: connection lost; reconnecting");
    return ensure_conn(pg) == CM_OK;
}

static bool idle(struct cm_pg *pg)
{
    return PQtransactionStatus(pg->conn) == PQTRANS_IDLE;
}

int cm_pg_exec_params(struct cm_pg *pg, const char *sql, int n, const char *const *values,
                      const int *lengths, const int *formats, int result_format)
{
    bool was_idle;
    int rc;

    clear_result(pg);
    pg->err[0] = '\0';
    rc = ensure_conn(pg);
    if (rc != CM_OK)
        return rc;
    was_idle = idle(pg);
    pg->res = PQexecParams(pg->conn, sql, n, NULL, values, lengths, formats, result_format);
    if (!succeeded(pg->res) && reconnected(pg, was_idle))
        pg->res = PQexecParams(pg->conn, sql, n, NULL, values, lengths, formats, result_format);
    if (succeeded(pg->res))
        return CM_OK;
    return classify(pg);
}

int cm_pg_exec_simple(struct cm_pg *pg, const char *sql)
{
    bool was_idle;
    int rc;

    clear_result(pg);
    pg->err[0] = '\0';
    rc = ensure_conn(pg);
    if (rc != CM_OK)
        return rc;
    was_idle = idle(pg);
    pg->res = PQexec(pg->conn, sql);
    if (!succeeded(pg->res) && reconnected(pg, was_idle))
        pg->res = PQexec(pg->conn, sql);
    if (succeeded(pg->res))
        return CM_OK;
    return classify(pg);
}

/* Prepares name on this connection unless it was already. */
static int prepare(struct cm_pg *pg, const char *name, const char *sql, int n)
{
    for (int i = 0; i < pg->nprepared; i++) {
        if (pg->prepared[i] == name || strcmp(pg->prepared[i], name) == 0)
            return CM_OK;
    }
    pg->res = PQprepare(pg->conn, name, sql, n, NULL);
    if (PQresultStatus(pg->res) != PGRES_COMMAND_OK)
        return CM_ERR;
    clear_result(pg);
    if (pg->nprepared == pg->cap_prepared) {
        pg->cap_prepared = pg->cap_prepared ? pg->cap_prepared * 2 : 16;
        pg->prepared = cm_xrealloc(pg->prepared, (size_t)pg->cap_prepared * sizeof(char *));
    }
    pg->prepared[pg->nprepared++] = name;
    return CM_OK;
}

int cm_pg_exec_prepared(struct cm_pg *pg, const char *name, const char *sql, int n,
                        const char *const *values, const int *lengths, const int *formats)
{
    bool was_idle;
    int rc;

    clear_result(pg);
    pg->err[0] = '\0';
    rc = ensure_conn(pg);
    if (rc != CM_OK)
        return rc;
    was_idle = idle(pg);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (prepare(pg, name, sql, n) == CM_OK)
            pg->res = PQexecPrepared(pg->conn, name, n, values, lengths, formats, 0);
        if (succeeded(pg->res))
            return CM_OK;
        if (attempt > 0 || !reconnected(pg, was_idle))
            break;
    }
    return classify(pg);
}

const struct cm_pg_call CM_PG_BEGIN = {.name = "cm_begin", .sql = "BEGIN"};
const struct cm_pg_call CM_PG_ASYNC_COMMIT = {
    .name = "cm_async_commit",
    .sql = "SELECT pg_catalog.set_config('synchronous_commit', 'off', true)",
};
const struct cm_pg_call CM_PG_COMMIT = {.name = "cm_commit", .sql = "COMMIT"};

/*
 * Reads a pipeline's answers up to its sync point into results. Each statement's answer is
 * its result (or PGRES_PIPELINE_ABORTED after an earlier failure) followed by a NULL; the
 * sync point ends the pipeline. Returns false when the connection broke meanwhile.
 */
static bool read_pipeline(struct cm_pg *pg, int n, PGresult **results)
{
    int idx = 0;

    for (;;) {
        PGresult *r = PQgetResult(pg->conn);

        if (r == NULL) {
            if (PQstatus(pg->conn) != CONNECTION_OK || ++idx > n)
                return false;
            continue;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            return true;
        }
        if (idx < n && results[idx] == NULL)
            results[idx] = r;
        else
            PQclear(r);
    }
}

int cm_pg_pipeline(struct cm_pg *pg, const struct cm_pg_call *calls, int n, PGresult **results)
{
    bool sent = true, read;
    int rc;

    clear_result(pg);
    pg->err[0] = '\0';
    memset(results, 0, (size_t)n * sizeof(*results));
    rc = ensure_conn(pg);
    for (int i = 0; rc == CM_OK && i < n; i++) {
        if (prepare(pg, calls[i].name, calls[i].sql, calls[i].n) != CM_OK)
            rc = classify(pg);
    }
    if (rc != CM_OK)
        return rc;
    if (!PQenterPipelineMode(pg->conn)) {
        snprintf(pg->err, sizeof(pg->err), "cannot enter pipeline mode: %s",
                 PQerrorMessage(pg->conn));
        return CM_ERR;
    }
    /* The answers are a few rows each: they fit the socket buffers while the statements are
     * written, so blocking writes cannot deadlock against an unread server. */
    for (int i = 0; sent && i < n; i++)
        sent = PQsendQueryPrepared(pg->conn, calls[i].name, calls[i].n, calls[i].values,
                                   calls[i].lengths, calls[i].formats, 0) == 1;
    sent = sent && PQpipelineSync(pg->conn) == 1;
    read = sent && read_pipeline(pg, n, results);
    if (!read || !PQexitPipelineMode(pg->conn)) {
        /* Half a pipeline is unusable: drop the connection (and its transaction). */
        snprintf(pg->err, sizeof(pg->err), "pipeline failed: %s", PQerrorMessage(pg->conn));
        pg->err[strcspn(pg->err, "\n")] = '\0';
        PQreset(pg->conn);
        pg->nprepared = 0;
        if (PQstatus(pg->conn) == CONNECTION_OK)
            (void)set_schema(pg);
        return CM_UNAVAIL;
    }
    for (int i = 0; i < n; i++) {
        if (results[i] == NULL || !succeeded(results[i])) {
            /* classify() reads pg->res: lend it the failure, then take it back. */
            pg->res = results[i];
            rc = results[i] != NULL ? classify(pg) : CM_ERR;
            pg->res = NULL;
            return rc;
        }
    }
    return CM_OK;
}

int cm_pg_exec(struct cm_pg *pg, const char *sql, int n, const char *const *params)
{
    return cm_pg_exec_params(pg, sql, n, params, NULL, NULL, 0);
}

PGresult *cm_pg_result(struct cm_pg *pg)
{
    return pg->res;
}

int cm_pg_ntuples(struct cm_pg *pg)
{
    return pg->res ? PQntuples(pg->res) : 0;
}

const char *cm_pg_value(struct cm_pg *pg, int row, int col)
{
    return PQgetvalue(pg->res, row, col);
}

int cm_pg_is_null(struct cm_pg *pg, int row, int col)
{
    return PQgetisnull(pg->res, row, col);
}

int cm_pg_length(struct cm_pg *pg, int row, int col)
{
    return PQgetlength(pg->res, row, col);
}

long cm_pg_affected(struct cm_pg *pg)
{
    const char *n = pg->res ? PQcmdTuples(pg->res) : "";
    return *n ? strtol(n, NULL, 10) : 0;
}

const char *cm_pg_error(struct cm_pg *pg)
{
    return pg->err;
}

int cm_pg_begin(struct cm_pg *pg)
{
    return cm_pg_exec(pg, "BEGIN", 0, NULL);
}

int cm_pg_commit(struct cm_pg *pg)
{
    return cm_pg_exec(pg, "COMMIT", 0, NULL);
}

void cm_pg_rollback(struct cm_pg *pg)
{
    if (pg->conn != NULL && PQtransactionStatus(pg->conn) != PQTRANS_IDLE &&
        PQstatus(pg->conn) == CONNECTION_OK) {
        PGresult *r = PQexec(pg->conn, "ROLLBACK");
        PQclear(r);
    }
}

int cm_pg_in_transaction(struct cm_pg *pg)
{
    PGTransactionStatusType st;

    if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK)
        return 0;
    st = PQtransactionStatus(pg->conn);
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR || st == PQTRANS_ACTIVE;
}

int cm_pg_ping(struct cm_pg *pg)
{
    return cm_pg_exec(pg, "SELECT 1", 0, NULL);
}

/* Applies the pending migrations inside the caller's transaction. */
static int apply_pending(struct cm_pg *pg, const char *schema, const struct cm_migration *m,
                         size_t n)
{
    const char *lock_params[1] = {schema};
    int rc;

    rc = cm_pg_exec(pg, "SELECT pg_advisory_xact_lock(hashtext('migrate:' || $1))", 1, lock_params);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())",
                        0, NULL);
    for (size_t i = 0; i < n && rc == CM_OK; i++) {
        char version[16];
        const char *params[2] = {version, m[i].name};

        snprintf(version, sizeof(version), "%d", m[i].version);
        rc = cm_pg_exec(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, params);
        if (rc != CM_OK || cm_pg_ntuples(pg) > 0)
            continue;
        clear_result(pg);
        pg->res = PQexec(pg->conn, m[i].sql);
        if (PQresultStatus(pg->res) != PGRES_COMMAND_OK &&
            PQresultStatus(pg->res) != PGRES_TUPLES_OK) {
            rc = classify(pg);
            CM_ERROR("pg: migration %s %d (%s) failed: %s", schema, m[i].version, m[i].name,
                     pg->err);
            break;
        }
        rc = cm_pg_exec(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                        params);
        if (rc == CM_OK)
            CM_INFO("pg: applied migration %s %d (%s)", schema, m[i].version, m[i].name);
    }
    return rc;
}

int cm_pg_migrate(struct cm_pg *pg, const char *schema, const struct cm_migration *m, size_t n)
{
    int rc = cm_pg_begin(pg);

    if (rc == CM_OK)
        rc = apply_pending(pg, schema, m, n);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK) {
        if (pg->err[0] != '\0')
            CM_WARN("pg: migrations of %s not applied: %s", schema, pg->err);
        cm_pg_rollback(pg);
    }
    return rc;
}

int cm_pg_migrate_wait(const char *url, const char *schema, const struct cm_migration *m, size_t n)
{
    struct cm_pg *pg = NULL;
    int rc;

    rc = cm_pg_connect(&pg, url, schema);
    if (rc == CM_INVALID)
        return rc;
    for (int waited = 0;; waited++) {
        rc = cm_pg_migrate(pg, schema, m, n);
        if (rc != CM_UNAVAIL && rc != CM_AGAIN)
            break;
        if (waited % 5 == 0)
            CM_WARN("postgres: not ready for migrations (%s); retrying", cm_pg_error(pg));
        sleep(1);
    }
    cm_pg_destroy(pg);
    return rc;
}
