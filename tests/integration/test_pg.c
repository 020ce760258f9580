/*
 * test_pg - the libpq wrapper and migrations against a real PostgreSQL: parameters stay
 * data, errors map to the shared codes, migrations apply once, atomically, under a lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/pg.h"
#include "harness.h"

static struct th_db db;

static const struct cm_migration good[] = {
    {1, "first", "CREATE TABLE items (id serial PRIMARY KEY, name text UNIQUE NOT NULL);"},
    {2, "second", "ALTER TABLE items ADD COLUMN note text; CREATE INDEX ON items (note);"},
};

static const struct cm_migration bad[] = {
    {1, "first", "CREATE TABLE items (id serial PRIMARY KEY, name text UNIQUE NOT NULL);"},
    {2, "second", "ALTER TABLE items ADD COLUMN note text; CREATE INDEX ON items (note);"},
    {3, "third", "CREATE TABLE t3 (x int); SELECT * FROM no_such_table;"},
};

static struct cm_pg *connect_as(const char *role, const char *schema)
{
    char *url = th_db_url(&db, role);
    struct cm_pg *pg = NULL;
    int rc = cm_pg_connect(&pg, url, schema);

    CHECK_INT(rc, CM_OK);
    free(url);
    return pg;
}

static void *migrate_thread(void *arg)
{
    char *url = th_db_url(&db, "doms_ingest");
    int *rc = arg;

    *rc = cm_pg_migrate_wait(url, "ingest", good, 2);
    free(url);
    return NULL;
}

static void test_migrations(void)
{
    struct cm_pg *pg;
    pthread_t t[3];
    int rc[3];

    /* Three replicas starting at once apply each migration exactly once. */
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, migrate_thread, &rc[i]);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(rc[i], CM_OK);
    }
    pg = connect_as("doms_ingest", "ingest");
    CHECK_INT(cm_pg_exec(pg, "SELECT count(*) FROM schema_migrations", 0, NULL), CM_OK);
    CHECK_STR(cm_pg_value(pg, 0, 0), "2");

    /* A failing migration leaves nothing of itself behind. */
    CHECK(cm_pg_migrate(pg, "ingest", bad, 3) != CM_OK);
    CHECK_INT(cm_pg_exec(pg, "SELECT to_regclass('ingest.t3') IS NULL", 0, NULL), CM_OK);
    CHECK_STR(cm_pg_value(pg, 0, 0), "t");
    CHECK_INT(cm_pg_exec(pg, "SELECT max(version) FROM schema_migrations", 0, NULL), CM_OK);
    CHECK_STR(cm_pg_value(pg, 0, 0), "2");
    cm_pg_destroy(pg);
}

static void test_params_and_errors(void)
{
    struct cm_pg *pg = connect_as("doms_ingest", "ingest");
    const char *evil[1] = {"x'); DROP TABLE items; --"};
    const char *two[2] = {"dup", NULL};

    CHECK_INT(cm_pg_exec(pg, "INSERT INTO items (name) VALUES ($1)", 1, evil), CM_OK);
    CHECK_INT(cm_pg_affected(pg), 1);
    CHECK_INT(cm_pg_exec(pg, "SELECT name FROM items WHERE name = $1", 1, evil), CM_OK);
    CHECK_STR(cm_pg_value(pg, 0, 0), evil[0]);

    CHECK_INT(cm_pg_exec(pg, "INSERT INTO items (name, note) VALUES ($1, $2)", 2, two), CM_OK);
    CHECK_INT(cm_pg_exec(pg, "INSERT INTO items (name, note) VALUES ($1, $2)", 2, two),
              CM_CONFLICT);
    CHECK_INT(cm_pg_exec(pg, "SELECT note FROM items WHERE name = 'dup'", 0, NULL), CM_OK);
    CHECK(cm_pg_is_null(pg, 0, 0));

    /* Another service's schema is out of reach: insufficient privilege. */
    CHECK_INT(cm_pg_exec(pg, "CREATE TABLE router.stolen (x int)", 0, NULL), CM_DENIED);
    CHECK_CONTAINS(cm_pg_error(pg), "permission denied");

    CHECK_INT(cm_pg_exec(pg, "SELECT * FROM nowhere", 0, NULL), CM_ERR);

    /* A transaction rolled back leaves no row. */
    CHECK_INT(cm_pg_begin(pg), CM_OK);
    CHECK_INT(cm_pg_exec(pg, "INSERT INTO items (name) VALUES ('gone')", 0, NULL), CM_OK);
    cm_pg_rollback(pg);
    CHECK_INT(cm_pg_exec(pg, "SELECT count(*) FROM items WHERE name = 'gone'", 0, NULL), CM_OK);
    CHECK_STR(cm_pg_value(pg, 0, 0), "0");
    cm_pg_destroy(pg);
}

static void pipeline_insert(struct cm_pg *pg, const char *const names[3], PGresult *res[3],
                            int expect)
{
    struct cm_pg_call calls[3];

    for (int i = 0; i < 3; i++)
        calls[i] = (struct cm_pg_call){
            .name = "test_pipeline_insert",
            .sql = "INSERT INTO items (name) VALUES ($1) RETURNING id",
            .n = 1,
            .values = &names[i],
        };
    CHECK_INT(cm_pg_begin(pg), CM_OK);
    CHECK_INT(cm_pg_pipeline(pg, calls, 3, res), expect);
}

static void test_pipeline(void)
{
    struct cm_pg *pg = connect_as("doms_ingest", "ingest");
    const char *fresh[3] = {"p1", "p2", "p3"};
    const char *clash[3] = {"p4", "p1", "p5"};
    PGresult *res[3];

    /* Three statements in one round trip, each answer in its place. */
    pipeline_insert(pg, fresh, res, CM_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(PQresultStatus(res[i]), PGRES_TUPLES_OK);
        CHECK_INT(PQntuples(res[i]), 1);
        PQclear(res[i]);
    }
    CHECK_INT(cm_pg_commit(pg), CM_OK);

    /* The second fails: its error is the pipeline's, the third never runs, and the whole
     * transaction is rolled back by the caller with nothing of it kept. */
    pipeline_insert(pg, clash, res, CM_CONFLICT);
    CHECK_INT(PQresultStatus(res[0]), PGRES_TUPLES_OK);
    CHECK_INT(PQresultStatus(res[1]), PGRES_FATAL_ERROR);
    CHECK(res[2] == NULL || PQresultStatus(res[2]) == PGRES_PIPELINE_ABORTED);
    CHECK_CONTAINS(cm_pg_error(pg), "duplicate key");
    for (int i = 0; i < 3; i++)
        PQclear(res[i]);
    cm_pg_rollback(pg);

    /* A whole transaction in one round trip, its edges included. */
    {
        const char *name[1] = {"p6"};
        const struct cm_pg_call calls[4] = {
            CM_PG_BEGIN,
            CM_PG_ASYNC_COMMIT,
            {.name = "test_pipeline_insert",
             .sql = "INSERT INTO items (name) VALUES ($1) RETURNING id",
             .n = 1,
             .values = name},
            CM_PG_COMMIT,
        };
        PGresult *four[4];
        CHECK_INT(cm_pg_pipeline(pg, calls, 4, four), CM_OK);
        CHECK_INT(cm_pg_in_transaction(pg), 0);
        for (int i = 0; i < 4; i++)
            PQclear(four[i]);
        /* Failing inside: nothing kept, and the failed transaction is the caller's to end. */
        CHECK_INT(cm_pg_pipeline(pg, calls, 4, four), CM_CONFLICT);
        CHECK(four[3] == NULL || PQresultStatus(four[3]) == PGRES_PIPELINE_ABORTED);
        for (int i = 0; i < 4; i++)
            PQclear(four[i]);
        cm_pg_rollback(pg);
        CHECK_INT(cm_pg_in_transaction(pg), 0);
    }

    /* The connection is back to ordinary statements. */
    CHECK_INT(cm_pg_exec(pg, "SELECT count(*) FROM items WHERE name LIKE 'p_'", 0, NULL), CM_OK);
    CHECK_STR(cm_pg_value(pg, 0, 0), "4");
    cm_pg_destroy(pg);
}

/* More statements than the first allocation of the prepared list, each run twice. */
static void test_many_prepared(void)
{
    static const char *const names[40] = {
        "t_many_00", "t_many_01", "t_many_02", "t_many_03", "t_many_04", "t_many_05", "t_many_06",
        "t_many_07", "t_many_08", "t_many_09", "t_many_10", "t_many_11", "t_many_12", "t_many_13",
        "t_many_14", "t_many_15", "t_many_16", "t_many_17", "t_many_18", "t_many_19", "t_many_20",
        "t_many_21", "t_many_22", "t_many_23", "t_many_24", "t_many_25", "t_many_26", "t_many_27",
        "t_many_28", "t_many_29", "t_many_30", "t_many_31", "t_many_32", "t_many_33", "t_many_34",
        "t_many_35", "t_many_36", "t_many_37", "t_many_38", "t_many_39"};
    struct cm_pg *pg = connect_as("doms_ingest", "ingest");

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 40; i++) {
            char num[8];
            const char *params[1] = {num};
            snprintf(num, sizeof(num), "%d", i);
            CHECK_INT(
                cm_pg_exec_prepared(pg, names[i], "SELECT $1::int + 1", 1, params, NULL, NULL),
                CM_OK);
            CHECK_INT(atoi(cm_pg_value(pg, 0, 0)), i + 1);
        }
    }
    cm_pg_destroy(pg);
}

static void test_unreachable(void)
{
    struct cm_pg *pg = NULL;
    char url[128];

    snprintf(url, sizeof(url), "postgresql://doms_ingest@127.0.0.1:%d/x", th_free_port());
    CHECK_INT(cm_pg_connect(&pg, url, NULL), CM_UNAVAIL);
    CHECK_INT(cm_pg_ping(pg), CM_UNAVAIL);
    CHECK(strlen(cm_pg_error(pg)) > 0);
    cm_pg_destroy(pg);

    pg = NULL;
    CHECK_INT(cm_pg_connect(&pg, "postgresql://[broken", NULL), CM_INVALID);
    CHECK(pg == NULL);
}

int main(void)
{
    th_init("pg");
    th_db_create(&db);
    RUN(test_migrations);
    RUN(test_params_and_errors);
    RUN(test_pipeline);
    RUN(test_many_prepared);
    RUN(test_unreachable);
    return check_summary();
}
