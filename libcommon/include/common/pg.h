/*
 * pg.h - a small synchronous wrapper over libpq, and per-service migrations.
 *
 * One struct cm_pg is one connection, used by one thread at a time (a worker thread, or
 * the start-up sequence); never block the event loop with it. Queries are always
 * parameterised. The result of the last query is borrowed from the wrapper and cleared by
 * the next call, so callers never PQclear.
 *
 * On a broken connection a query returns CM_UNAVAIL and the next call tries to reconnect,
 * so a PostgreSQL restart costs failed calls, never a process.
 */
#ifndef COMMON_PG_H
#define COMMON_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "common/err.h"

struct cm_pg;

/*
 * Connects to url and sets search_path to schema (may be NULL). Returns CM_OK, or
 * CM_UNAVAIL when the server cannot be reached (the object is still created in *out and
 * will retry on the next query), or CM_INVALID for a malformed URL. Free with
 * cm_pg_destroy() in every case where *out is set.
 */
int cm_pg_connect(struct cm_pg **out, const char *url, const char *schema) CM_MUST_CHECK;
void cm_pg_destroy(struct cm_pg *pg);

/*
 * Runs sql with n text parameters (NULL entries are SQL NULL). Returns CM_OK, CM_UNAVAIL
 * (connection lost), CM_CONFLICT (unique violation), CM_DENIED (insufficient privilege),
 * CM_AGAIN (serialization failure or deadlock: retry the transaction) or CM_ERR.
 */
int cm_pg_exec(struct cm_pg *pg, const char *sql, int n, const char *const *params) CM_MUST_CHECK;

/*
 * The full form: lengths and formats per parameter (format 1 = binary, for bytea), and
 * result_format 1 to get binary results. lengths and formats may be NULL for all-text.
 */
int cm_pg_exec_params(struct cm_pg *pg, const char *sql, int n, const char *const *values,
                      const int *lengths, const int *formats, int result_format) CM_MUST_CHECK;

/*
 * Like cm_pg_exec_params (text results) for a statement run often: it is prepared under
 * name on the first use on this connection (again after a reconnect) and executed from
 * then on, sparing the parse and plan. name must be a string literal, sql always the same.
 */
int cm_pg_exec_prepared(struct cm_pg *pg, const char *name, const char *sql, int n,
                        const char *const *values, const int *lengths,
                        const int *formats) CM_MUST_CHECK;

/* One statement of a pipeline: a prepared statement, as for cm_pg_exec_prepared(). */
struct cm_pg_call {
    const char *name; /* a string literal, always with the same sql */
    const char *sql;
    int n;
    const char *const *values;
    const int *lengths; /* may be NULL for all-text parameters */
    const int *formats;
};

/*
 * Sends n statements back to back and then reads their answers, in one round trip instead
 * of n: for statements that do not need each other's results. Run them inside a
 * transaction, which the caller opened or which the calls open and close themselves
 * (CM_PG_BEGIN ... CM_PG_COMMIT): a failed statement aborts it, the ones after it do not
 * run, and the caller rolls back (cm_pg_rollback).
 * results[i] receives statement i's result, to be freed with PQclear(); NULL where it did not
 * run. Returns CM_OK when all succeeded, else the error of the first failure as
 * cm_pg_exec() classifies it, with cm_pg_error() set.
 */
int cm_pg_pipeline(struct cm_pg *pg, const struct cm_pg_call *calls, int n,
                   PGresult **results) CM_MUST_CHECK;

/* A transaction's edges as pipeline calls; CM_PG_ASYNC_COMMIT right after CM_PG_BEGIN lets
 * its commit return before the WAL flush (synchronous_commit off for it alone). */
extern const struct cm_pg_call CM_PG_BEGIN, CM_PG_ASYNC_COMMIT, CM_PG_COMMIT;

/* The last result (borrowed; valid until the next call on pg), and shortcuts into it. */
PGresult *cm_pg_result(struct cm_pg *pg);
int cm_pg_ntuples(struct cm_pg *pg);
/* The value at (row, col), "" for NULL; borrowed like the result. */
const char *cm_pg_value(struct cm_pg *pg, int row, int col);
int cm_pg_is_null(struct cm_pg *pg, int row, int col);
int cm_pg_length(struct cm_pg *pg, int row, int col);
/* The number of rows the last INSERT/UPDATE/DELETE touched. */
long cm_pg_affected(struct cm_pg *pg);
/* The server's message for the last failure (borrowed), or "". */
const char *cm_pg_error(struct cm_pg *pg);

/*
 * Runs sql, which may hold several statements, without parameters (one round trip for
 * "BEGIN; SET LOCAL ..."). Never with values from outside: use cm_pg_exec for those.
 */
int cm_pg_exec_simple(struct cm_pg *pg, const char *sql) CM_MUST_CHECK;

/*
 * Session settings (e.g. "SET synchronous_commit TO off") applied now and after every
 * reconnect. sql is copied. Returns the result of applying it now.
 */
int cm_pg_session(struct cm_pg *pg, const char *sql) CM_MUST_CHECK;

/* Transaction helpers; rollback is safe to call in any state. */
int cm_pg_begin(struct cm_pg *pg) CM_MUST_CHECK;
int cm_pg_commit(struct cm_pg *pg) CM_MUST_CHECK;
void cm_pg_rollback(struct cm_pg *pg);

/*
 * 1 when the connection is inside a transaction block (after BEGIN, before COMMIT or
 * ROLLBACK, including a failed one), 0 when it is idle or not connected: a statement run
 * now commits by itself only when this is 0.
 */
int cm_pg_in_transaction(struct cm_pg *pg);

/* Runs "SELECT 1"; CM_OK when the server answers. */
int cm_pg_ping(struct cm_pg *pg) CM_MUST_CHECK;

/* One schema migration: applied once, in version order, inside a transaction. */
struct cm_migration {
    int version;
    const char *name;
    const char *sql; /* may hold several statements; no parameters */
};

/*
 * Applies, in one transaction under an advisory lock (replicas starting together apply
 * each migration once), every migration whose version is not yet recorded in
 * <schema>.schema_migrations. Returns CM_OK, or an error with nothing applied.
 */
int cm_pg_migrate(struct cm_pg *pg, const char *schema, const struct cm_migration *m,
                  size_t n) CM_MUST_CHECK;

/*
 * Connects to url and applies m like cm_pg_migrate(), retrying once a second while the
 * server cannot be reached (a signal's default action ends the process meanwhile).
 * Returns CM_OK, CM_INVALID for a malformed URL, or the error of a failed migration.
 * Blocking: for start-up, before the daemon listens.
 */
int cm_pg_migrate_wait(const char *url, const char *schema, const struct cm_migration *m,
                       size_t n) CM_MUST_CHECK;

#endif
