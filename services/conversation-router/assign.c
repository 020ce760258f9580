/*
 * assign.c - a new or reopened conversation goes to the workspace's agent who has room
 * and waited longest since their last assignment: round-robin, fair over time, under each
 * agent's capacity (open conversations assigned to them). Nobody with room: it waits,
 * unassigned, and is assigned when room frees (a close, a new agent, a raised capacity).
 *
 * The candidate agent's row is locked FOR UPDATE SKIP LOCKED while their load is read,
 * so replicas assigning at the same time never push one agent over capacity, and the
 * conversation's own row is held by the caller, so it is never assigned twice.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/outbox.h"
#include "router.h"

/* members.open_assigned is the agent's load, kept by a trigger on conversations
 * (schema/004_member_load.sql): one row read per member, however many conversations. */
static const char pick_sql[] =
    "SELECT m.user_id FROM members m WHERE m.workspace_id = $1 AND m.role = 'agent'"
    " AND m.capacity > m.open_assigned"
    " ORDER BY m.last_assigned_at NULLS FIRST, m.user_id LIMIT 1 FOR UPDATE OF m SKIP LOCKED";

/* Publishes the assignment event through the outbox (no Platform Data in it). */
static int assignment_event(struct cm_pg *pg, const char *ws, const char *conv,
                            const char *assignee)
{
    cJSON *ev = cJSON_CreateObject();
    char *payload, msg_id[400];
    int rc;

    cJSON_AddStringToObject(ev, "conversation_id", conv);
    cJSON_AddStringToObject(ev, "workspace_id", ws);
    if (assignee != NULL)
        cJSON_AddStringToObject(ev, "assignee", assignee);
    else
        cJSON_AddNullToObject(ev, "assignee");
    payload = cJSON_PrintUnformatted(ev);
    snprintf(msg_id, sizeof(msg_id), "assign:%s:%s:%ld", conv, assignee ? assignee : "-",
             (long)time(NULL));
    rc = cm_outbox_add(pg, "router.events.assignment", msg_id, payload);
    cJSON_free(payload);
    cJSON_Delete(ev);
    return rc;
}

int router_assign(struct router *r, struct cm_pg *pg, const char *ws, const char *conv_id)
{
    const char *params[1] = {ws};
    char user[256];
    int rc;

    (void)r;
    rc = cm_pg_exec(pg, pick_sql, 1, params);
    if (rc != CM_OK || cm_pg_ntuples(pg) == 0)
        return rc; /* nobody has room: it waits */
    snprintf(user, sizeof(user), "%s", cm_pg_value(pg, 0, 0));
    {
        const char *set[2] = {conv_id, user};
        rc = cm_pg_exec(pg,
                        "UPDATE conversations SET assignee = $2 WHERE id = $1 AND status = 'open'"
                        " AND assignee IS NULL",
                        2, set);
    }
    if (rc == CM_OK && cm_pg_affected(pg) == 1) {
        const char *who[2] = {ws, user};
        rc = cm_pg_exec(pg,
                        "UPDATE members SET last_assigned_at = clock_timestamp()"
                        " WHERE workspace_id = $1 AND user_id = $2",
                        2, who);
        if (rc == CM_OK)
            rc = assignment_event(pg, ws, conv_id, user);
    }
    return rc;
}

int router_assign_waiting(struct router *r, struct cm_pg *pg, const char *ws)
{
    const char *params[1] = {ws};

    for (;;) {
        char conv[64];
        int rc = cm_pg_exec(pg,
                            "SELECT id FROM conversations WHERE workspace_id = $1"
                            " AND status = 'open' AND assignee IS NULL"
                            " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                            1, params);
        if (rc != CM_OK || cm_pg_ntuples(pg) == 0)
            return rc;
        snprintf(conv, sizeof(conv), "%s", cm_pg_value(pg, 0, 0));
        rc = router_assign(r, pg, ws, conv);
        if (rc != CM_OK)
            return rc;
        /* Still unassigned: nobody has room; the rest wait too. */
        {
            const char *p1[1] = {conv};
            rc = cm_pg_exec(pg, "SELECT assignee IS NULL FROM conversations WHERE id = $1", 1, p1);
            if (rc != CM_OK || strcmp(cm_pg_value(pg, 0, 0), "t") == 0)
                return rc;
        }
    }
}
