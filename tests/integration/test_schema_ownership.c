/*
 * test_schema_ownership - each service's role owns its schema and cannot read or write
 * another's: the isolation that makes "reach another service only over NATS" true.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "harness.h"

static const char *const roles[] = {"doms_ingest", "doms_router", "doms_vault", "doms_reaper",
                                    "doms_ai"};
static const char *const schemas[] = {"ingest", "router", "vault", "reaper", "ai"};
#define NSVC 5

static int run(PGconn *c, const char *sql, char *state, size_t cap)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);

    snprintf(state, cap, "%s", code ? code : "");
    PQclear(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

int main(void)
{
    struct th_db db;
    PGconn *c[NSVC];
    char sql[256], state[16];

    th_init("schema_ownership");
    th_db_create(&db);

    for (int i = 0; i < NSVC; i++) {
        c[i] = th_db_connect(&db, roles[i]);
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE %s.probe (secret text); "
                 "INSERT INTO %s.probe VALUES ('mine')",
                 schemas[i], schemas[i]);
        CHECK_MSG(run(c[i], sql, state, sizeof(state)), "%s cannot use its own schema (%s)",
                  roles[i], state);
    }
    for (int i = 0; i < NSVC; i++) {
        for (int j = 0; j < NSVC; j++) {
            if (i == j)
                continue;
            snprintf(sql, sizeof(sql), "SELECT secret FROM %s.probe", schemas[j]);
            CHECK_MSG(!run(c[i], sql, state, sizeof(state)) && strcmp(state, "42501") == 0,
                      "%s read %s (%s)", roles[i], schemas[j], state);
            snprintf(sql, sizeof(sql), "INSERT INTO %s.probe VALUES ('theirs')", schemas[j]);
            CHECK_MSG(!run(c[i], sql, state, sizeof(state)) && strcmp(state, "42501") == 0,
                      "%s wrote %s (%s)", roles[i], schemas[j], state);
            snprintf(sql, sizeof(sql), "CREATE TABLE %s.intruder (x int)", schemas[j]);
            CHECK_MSG(!run(c[i], sql, state, sizeof(state)) && strcmp(state, "42501") == 0,
                      "%s created in %s (%s)", roles[i], schemas[j], state);
        }
        /* Nor is there a shared back door in public. */
        CHECK_MSG(!run(c[i], "CREATE TABLE public.shared (x int)", state, sizeof(state)),
                  "%s created a table in public", roles[i]);
    }
    for (int i = 0; i < NSVC; i++)
        PQfinish(c[i]);
    return check_summary();
}
