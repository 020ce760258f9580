/*
 * test_router_assign.c - part of test_router_pg: assignment under concurrency. Two
 * transactions that each opened a conversation and assign at once leave neither waiting
 * while the agent has room; one assignment over several waiting conversations deals them
 * round-robin under each agent's capacity.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "router_pg_suite.h"

/* Runs sql on c, which must succeed; a failure fails the test with PostgreSQL's message. */
static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st_ = PQresultStatus(r);

    CHECK_MSG(st_ == PGRES_COMMAND_OK || st_ == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

/* One transaction's new waiting conversation in ws (with its contact), not committed. */
static void open_waiting(PGconn *c, const char *ws, const char *tag)
{
    char q[768];

    exec_ok(c, "BEGIN");
    snprintf(q, sizeof(q),
             "INSERT INTO router.contacts (id, workspace_id, integration_id, platform, blind,"
             " psid_sealed) VALUES ('ct_race_%s', '%s', 'int_race', 'messenger', '\\x%s',"
             " '\\x00'); INSERT INTO router.conversations (id, workspace_id, integration_id,"
             " contact_id, platform) VALUES ('cv_race_%s', '%s', 'int_race', 'ct_race_%s',"
             " 'messenger')",
             tag, ws, strcmp(tag, "a") == 0 ? "0a" : "0b", tag, ws, tag);
    exec_ok(c, q);
}

/*
 * Two transactions each open a conversation in a workspace whose one agent has room for both,
 * and assign at the same time: the second waits for the first's hold on the agent and then
 * assigns its own, rather than skipping the agent and leaving its conversation waiting (what
 * a SKIP LOCKED pick did). The agent's load counts both.
 */
void test_assign_racing(void)
{
    char *ws = workspace("Racing");
    const char *add[] = {"member", "add",   "--workspace", ws,  "--user", "racer",
                         "--role", "agent", "--capacity",  "5", NULL};
    PGconn *a = th_db_connect(&st.db, NULL), *b = th_db_connect(&st.db, NULL);
    char q[512], *v;
    bool waiting = false;
    PGresult *r;

    CHECK_INT(th_stack_domsctl(&st, NULL, NULL, add), 0);
    open_waiting(a, ws, "a");
    open_waiting(b, ws, "b");
    snprintf(q, sizeof(q), "SELECT router.assign_waiting('%s')", ws);
    v = th_db_value(a, q, NULL, 0);
    CHECK_STR(v, "1");
    free(v);
    CHECK(PQsendQuery(b, q) == 1);
    for (int i = 0; i < 200 && !waiting; i++) {
        waiting = th_db_count(&st.db, NULL,
                              "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                              " 'Lock' AND query LIKE 'SELECT router.assign_waiting%'") == 1;
        if (!waiting)
            th_sleep_ms(25);
    }
    CHECK_MSG(waiting, "the second assigner did not wait for the first's hold on the agent");
    exec_ok(a, "COMMIT");
    r = PQgetResult(b);
    CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1") == 0,
              "the second assigner assigned %s (%s)",
              PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "?",
              PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(b)) != NULL)
        PQclear(r);
    exec_ok(b, "COMMIT");
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM router.conversations WHERE workspace_id = '%s'"
             " AND status = 'open' AND assignee = 'racer'",
             ws);
    CHECK_INT(th_db_count(&st.db, NULL, q), 2);
    snprintf(q, sizeof(q),
             "SELECT open_assigned FROM router.members WHERE workspace_id = '%s'"
             " AND user_id = 'racer'",
             ws);
    CHECK_INT(th_db_count(&st.db, NULL, q), 2);
    PQfinish(a);
    PQfinish(b);
    free(ws);
}

/*
 * One assign_waiting() call over several waiting conversations deals them round-robin, oldest
 * first: one per agent with room per round, an agent dropping out when its room is used up;
 * the agent served last ends last in the round-robin order.
 */
void test_assign_rounds(void)
{
    char *ws = workspace("Rounds");
    const char *x[] = {"member", "add",   "--workspace", ws,  "--user", "rx",
                       "--role", "agent", "--capacity",  "1", NULL};
    const char *y[] = {"member", "add",   "--workspace", ws,  "--user", "ry",
                       "--role", "agent", "--capacity",  "3", NULL};
    PGconn *c = th_db_connect(&st.db, NULL);
    char q[1024], *v;

    CHECK_INT(th_stack_domsctl(&st, NULL, NULL, x), 0);
    CHECK_INT(th_stack_domsctl(&st, NULL, NULL, y), 0);
    exec_ok(c, "BEGIN");
    for (int i = 0; i < 5; i++) {
        snprintf(q, sizeof(q),
                 "INSERT INTO router.contacts (id, workspace_id, integration_id, platform, blind,"
                 " psid_sealed) VALUES ('ct_round_%d', '%s', 'int_round', 'messenger', '\\x%02d',"
                 " '\\x00'); INSERT INTO router.conversations (id, workspace_id, integration_id,"
                 " contact_id, platform, created_at) VALUES ('cv_round_%d', '%s', 'int_round',"
                 " 'ct_round_%d', 'messenger', now() + interval '%d seconds')",
                 i, ws, i, i, ws, i, i);
        exec_ok(c, q);
    }
    snprintf(q, sizeof(q), "SELECT router.assign_waiting('%s')", ws);
    v = th_db_value(c, q, NULL, 0);
    CHECK_STR(v, "4");
    free(v);
    exec_ok(c, "COMMIT");
    PQfinish(c);
    /* Round 1: rx (never assigned, first by name), ry; rounds 2 and 3: ry; the newest waits. */
    snprintf(q, sizeof(q),
             "SELECT string_agg(coalesce(assignee, '-'), ',' ORDER BY created_at)"
             " FROM router.conversations WHERE workspace_id = '%s'",
             ws);
    v = th_db_sql(&st.db, NULL, q);
    CHECK_STR(v, "rx,ry,ry,ry,-");
    free(v);
    snprintf(q, sizeof(q),
             "SELECT string_agg(user_id, ',' ORDER BY last_assigned_at) FROM router.members"
             " WHERE workspace_id = '%s' AND role = 'agent'",
             ws);
    v = th_db_sql(&st.db, NULL, q);
    CHECK_STR(v, "rx,ry");
    free(v);
    free(ws);
}
