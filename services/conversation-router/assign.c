/*
 * assign.c - a new or reopened conversation goes to the workspace's agent who has room
 * and waited longest since their last assignment: round-robin, fair over time, under each
 * agent's capacity (open conversations assigned to them). Nobody with room: it waits,
 * unassigned, and is assigned when room frees (a close, a new agent, a raised capacity).
 *
 * One home for the rule: schema/005_inbound_message.sql's assign_waiting(), called by the
 * inbound batch (pipelined, router_assign_call()) and by the requests that free room
 * (router_assign_waiting()). It locks every agent row of the workspace, in one order, and
 * waits for them rather than skipping a locked one, so that two transactions assigning at
 * once never leave a conversation waiting while an agent has room, and never push an agent
 * over capacity. Every transaction takes its conversation locks before the agents' (the
 * batch by its statements, a request by router_lock_conversation() or its own query, then
 * router_lock_agents()), and one holding the agents waits for nothing else: no deadlock.
 */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "router.h"

int router_lock_agents(struct cm_pg *pg, const char *ws)
{
    const char *params[1] = {ws};

    return cm_pg_exec_prepared(pg, "router_lock_agents",
                               "SELECT 1 FROM members WHERE workspace_id = $1 AND role = 'agent'"
                               " ORDER BY user_id FOR UPDATE",
                               1, params, NULL, NULL);
}

int router_assign_waiting(struct router *r, struct cm_pg *pg, const char *ws)
{
    struct cm_pg_call call;
    const char *params[1] = {ws};

    (void)r;
    router_assign_call(&call, params);
    return cm_pg_exec_prepared(pg, call.name, call.sql, call.n, call.values, call.lengths,
                               call.formats);
}

void router_assign_call(struct cm_pg_call *call, const char *const ws[1])
{
    *call = (struct cm_pg_call){
        .name = "router_assign_waiting",
        .sql = "SELECT assign_waiting($1::text)",
        .n = 1,
        .values = ws,
    };
}
