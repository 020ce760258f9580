/*
 * api.c - workspaces and members over NATS (proto/router.md), and the role check every
 * request goes through: viewer reads, agent replies, admin manages members, owner deletes.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/id.h"
#include "common/log.h"
#include "router.h"

static const char *const roles[] = {"viewer", "agent", "admin", "owner", NULL};

static int rank(const char *role)
{
    for (int i = 0; role != NULL && roles[i] != NULL; i++) {
        if (strcmp(role, roles[i]) == 0)
            return i + 1;
    }
    return 0;
}

bool router_role_at_least(const char *role, const char *min)
{
    return rank(role) >= rank(min) && rank(role) > 0;
}

void router_role_from(const char *actor, const char *member_role, char role[16])
{
    /* domsctl's default actor stands for the platform's operator: owner everywhere. */
    if (strcmp(actor, "operator") == 0)
        snprintf(role, 16, "owner");
    else
        snprintf(role, 16, "%s", member_role != NULL ? member_role : "");
}

int router_role(struct cm_pg *pg, const char *ws, const char *actor, char role[16], bool *deleted)
{
    const char *params[2] = {ws, actor};
    int rc;

    role[0] = '\0';
    rc = cm_pg_exec(pg,
                    "SELECT w.status = 'deleted', m.role FROM workspaces w LEFT JOIN members m"
                    " ON m.workspace_id = w.id AND m.user_id = $2 WHERE w.id = $1",
                    2, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    *deleted = strcmp(cm_pg_value(pg, 0, 0), "t") == 0;
    router_role_from(actor, cm_pg_is_null(pg, 0, 1) ? NULL : cm_pg_value(pg, 0, 1), role);
    return CM_OK;
}

bool router_valid_id(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.' && c != '@' && c != ':')
            return false;
    }
    return n > 0 && n <= max;
}

bool router_allowed(struct cm_rpc_call *call, const char *ws, const char *role, bool deleted,
                    const char *min, bool live)
{
    if (!router_role_at_least(role, min)) {
        cm_rpc_fail(call, "denied", "%s may not do this in workspace %s (needs the %s role)",
                    call->actor, ws, min);
        return false;
    }
    if (live && deleted) {
        cm_rpc_fail(call, "refused", "workspace %s is deleted", ws);
        return false;
    }
    return true;
}

bool router_authorize(struct cm_rpc_call *call, const char *ws, const char *min, bool live)
{
    char role[16];

    return router_authorize_role(call, ws, min, live, role);
}

bool router_authorize_role(struct cm_rpc_call *call, const char *ws, const char *min, bool live,
                           char role[16])
{
    bool deleted = false;
    int rc;

    if (!router_valid_id(ws, 128)) {
        cm_rpc_fail(call, "invalid", "workspace_id is required");
        return false;
    }
    rc = router_role(call->pg, ws, call->actor, role, &deleted);
    if (rc == CM_NOTFOUND) {
        cm_rpc_fail(call, "not_found", "no workspace %s", ws);
        return false;
    }
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return false;
    }
    return router_allowed(call, ws, role, deleted, min, live);
}

static void on_workspace_create(struct cm_rpc_call *call, void *arg)
{
    const char *name = cm_rpc_str(call, "name");
    const cJSON *ai = cJSON_GetObjectItemCaseSensitive(call->req, "ai");
    char id[40];
    int rc;
    cJSON *out;

    (void)arg;
    if (name == NULL || *name == '\0' || strlen(name) > 200) {
        cm_rpc_fail(call, "invalid", "name is required (at most 200 characters)");
        return;
    }
    router_new_id("ws", id);
    rc = cm_pg_begin(call->pg);
    if (rc == CM_OK) {
        const char *params[3] = {id, name, cJSON_IsTrue(ai) ? "true" : "false"};
        rc = cm_pg_exec(call->pg,
                        "INSERT INTO workspaces (id, name, ai) VALUES ($1, $2, $3::boolean)", 3,
                        params);
    }
    if (rc == CM_OK && strcmp(call->actor, "operator") != 0) {
        const char *params[2] = {id, call->actor};
        rc = cm_pg_exec(call->pg,
                        "INSERT INTO members (workspace_id, user_id, role) VALUES ($1, $2,"
                        " 'owner')",
                        2, params);
    }
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "workspace.create", id);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "the workspace could not be created");
        return;
    }
    CM_INFO("workspace %s created by %s (ai %s)", id, call->actor, cJSON_IsTrue(ai) ? "on" : "off");
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "workspace_id", id);
    cm_rpc_reply(call, out);
}

static void on_workspace_get(struct cm_rpc_call *call, void *arg)
{
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *params[1] = {ws};
    char role[16];
    cJSON *out;

    (void)arg;
    if (!router_authorize_role(call, ws, "viewer", false, role))
        return;
    if (cm_pg_exec(call->pg,
                   "SELECT name, ai, mask_pii, status, mark_seen FROM workspaces WHERE id = $1", 1,
                   params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "workspace_id", ws);
    cJSON_AddStringToObject(out, "name", cm_pg_value(call->pg, 0, 0));
    cJSON_AddBoolToObject(out, "ai", strcmp(cm_pg_value(call->pg, 0, 1), "t") == 0);
    cJSON_AddBoolToObject(out, "mask_pii", strcmp(cm_pg_value(call->pg, 0, 2), "t") == 0);
    cJSON_AddStringToObject(out, "status", cm_pg_value(call->pg, 0, 3));
    cJSON_AddBoolToObject(out, "mark_seen", strcmp(cm_pg_value(call->pg, 0, 4), "t") == 0);
    cJSON_AddStringToObject(out, "role", role);
    cm_rpc_reply(call, out);
}

/* A setting of router.workspace.update: absent or null leaves it; else it must be a boolean. */
static bool bool_setting(struct cm_rpc_call *call, const char *name, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(call->req, name);

    *out = NULL;
    if (v == NULL || cJSON_IsNull(v))
        return true;
    if (!cJSON_IsBool(v)) {
        cm_rpc_fail(call, "invalid", "%s must be true or false", name);
        return false;
    }
    *out = cJSON_IsTrue(v) ? "true" : "false";
    return true;
}

/* Switches AI assistance, its masking of personal data, and mark_seen on reads (admins). */
static void on_workspace_update(struct cm_rpc_call *call, void *arg)
{
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *params[4] = {ws, NULL, NULL, NULL};
    int rc;

    (void)arg;
    if (!router_authorize(call, ws, "admin", true))
        return;
    if (!bool_setting(call, "ai", &params[1]) || !bool_setting(call, "mask_pii", &params[2]) ||
        !bool_setting(call, "mark_seen", &params[3]))
        return;
    rc = cm_pg_exec(call->pg,
                    "UPDATE workspaces SET ai = coalesce($2::boolean, ai),"
                    " mask_pii = coalesce($3::boolean, mask_pii),"
                    " mark_seen = coalesce($4::boolean, mark_seen) WHERE id = $1",
                    4, params);
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "workspace.update", ws);
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the workspace could not be updated");
        return;
    }
    on_workspace_get(call, arg);
}

static void on_member_add(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *user = cm_rpc_str(call, "user");
    const char *role = cm_rpc_str(call, "role");
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(call->req, "capacity");
    char capacity[16] = "10";
    int rc;
    cJSON *out;

    if (!router_authorize(call, ws, "admin", true))
        return;
    if (!router_valid_id(user, 128) || rank(role) == 0) {
        cm_rpc_fail(call, "invalid", "user and role (owner|admin|agent|viewer) are required");
        return;
    }
    if (cap != NULL) {
        if (!cJSON_IsNumber(cap) || cap->valuedouble < 0 || cap->valuedouble > 100000) {
            cm_rpc_fail(call, "invalid", "capacity must be a whole number from 0");
            return;
        }
        snprintf(capacity, sizeof(capacity), "%d", cap->valueint);
    }
    /* Only an owner makes owners. */
    if (strcmp(role, "owner") == 0 && !router_authorize(call, ws, "owner", true))
        return;
    rc = cm_pg_begin(call->pg);
    /* The agents first, in the order router_assign_waiting() below takes them. */
    if (rc == CM_OK)
        rc = router_lock_agents(call->pg, ws);
    if (rc == CM_OK) {
        const char *params[5] = {ws, user, role, capacity, cap != NULL ? "t" : "f"};
        rc = cm_pg_exec(call->pg,
                        "INSERT INTO members (workspace_id, user_id, role, capacity)"
                        " VALUES ($1, $2, $3, $4::int) ON CONFLICT (workspace_id, user_id)"
                        " DO UPDATE SET role = excluded.role, capacity = CASE WHEN $5 = 't'"
                        " THEN excluded.capacity ELSE members.capacity END",
                        5, params);
    }
    /* An agent with room takes waiting conversations now. */
    if (rc == CM_OK)
        rc = router_assign_waiting(r, call->pg, ws);
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "member.add", ws);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "the member could not be added");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "workspace_id", ws);
    cJSON_AddStringToObject(out, "user", user);
    cJSON_AddStringToObject(out, "role", role);
    cm_rpc_reply(call, out);
}

static void on_member_remove(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *user = cm_rpc_str(call, "user");
    const char *params[2] = {ws, user};
    int rc;
    cJSON *out;

    if (!router_authorize(call, ws, "admin", true))
        return;
    if (!router_valid_id(user, 128)) {
        cm_rpc_fail(call, "invalid", "user is required");
        return;
    }
    rc = cm_pg_begin(call->pg);
    /* Every assigner locks conversations before agents: the member's, then the agents. */
    if (rc == CM_OK)
        rc = cm_pg_exec(call->pg,
                        "SELECT 1 FROM conversations WHERE workspace_id = $1 AND assignee = $2"
                        " AND status = 'open' ORDER BY id FOR UPDATE",
                        2, params);
    if (rc == CM_OK)
        rc = router_lock_agents(call->pg, ws);
    if (rc == CM_OK)
        rc = cm_pg_exec(call->pg, "DELETE FROM members WHERE workspace_id = $1 AND user_id = $2", 2,
                        params);
    if (rc == CM_OK)
        rc = cm_pg_exec(call->pg,
                        "UPDATE conversations SET assignee = NULL WHERE workspace_id = $1"
                        " AND assignee = $2 AND status = 'open'",
                        2, params);
    if (rc == CM_OK)
        rc = router_assign_waiting(r, call->pg, ws);
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "member.remove", ws);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "the member could not be removed");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "workspace_id", ws);
    cJSON_AddStringToObject(out, "user", user);
    cJSON_AddTrueToObject(out, "removed");
    cm_rpc_reply(call, out);
}

/* RFC 3339 UTC with milliseconds, from PostgreSQL. */
#define RFC3339_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/*
 * token-vault's integration list: Meta's time of the last message a contact sent through
 * each integration, {"<integration id>": "...Z" | null}. Ids only, no Platform Data, so no
 * actor's role is checked; only token-vault may ask (the subject space, and here).
 */
static void on_integration_activity(struct cm_rpc_call *call, void *arg)
{
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(call->req, "integration_ids");
    const cJSON *id;
    struct cm_buf list;
    const char *params[1];
    cJSON *out;
    int n = 0;

    (void)arg;
    if (call->caller == NULL || strcmp(call->caller, "token-vault") != 0) {
        cm_rpc_fail(call, "denied", "only token-vault asks for integrations' activity");
        return;
    }
    if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) > 1000) {
        cm_rpc_fail(call, "invalid", "integration_ids is required, at most 1000 ids");
        return;
    }
    cm_buf_init(&list);
    cm_buf_puts(&list, "{");
    cJSON_ArrayForEach(id, ids)
    {
        if (!cJSON_IsString(id) || !cm_id_valid(id->valuestring, 64)) {
            cm_buf_cleanup(&list);
            cm_rpc_fail(call, "invalid", "integration_ids holds a malformed id");
            return;
        }
        cm_buf_printf(&list, "%s%s", n++ ? "," : "", id->valuestring);
    }
    cm_buf_puts(&list, "}");
    params[0] = list.data;
    if (cm_pg_exec(
            call->pg,
            "SELECT i, " RFC3339_UTC(
                "max(c.last_inbound_at)") " FROM unnest($1::text[]) AS i LEFT JOIN conversations c"
                                          " ON c.integration_id = i GROUP BY i",
            1, params) != CM_OK) {
        cm_buf_cleanup(&list);
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return;
    }
    cm_buf_cleanup(&list);
    out = cJSON_CreateObject();
    for (int i = 0; i < cm_pg_ntuples(call->pg); i++) {
        if (cm_pg_is_null(call->pg, i, 1))
            cJSON_AddNullToObject(out, cm_pg_value(call->pg, i, 0));
        else
            cJSON_AddStringToObject(out, cm_pg_value(call->pg, i, 0), cm_pg_value(call->pg, i, 1));
    }
    cm_rpc_reply(call, out);
}

void router_api_register(struct router *r)
{
    cm_rpc_handle(r->rpc, "router.integration.activity", on_integration_activity, r);
    cm_rpc_handle(r->rpc, "router.workspace.create", on_workspace_create, r);
    cm_rpc_handle(r->rpc, "router.workspace.get", on_workspace_get, r);
    cm_rpc_handle(r->rpc, "router.workspace.update", on_workspace_update, r);
    cm_rpc_handle(r->rpc, "router.member.add", on_member_add, r);
    cm_rpc_handle(r->rpc, "router.member.remove", on_member_remove, r);
    /* ai-suggest checks, for whoever asked it for a suggestion, that they may read. */
    cm_rpc_delegate(r->rpc, "router.workspace.get", "ai-suggest");
    cm_rpc_delegate(r->rpc, "router.workspace.get", "token-vault");
}
