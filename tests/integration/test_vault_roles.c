/*
 * test_vault_roles.c - who may act on a workspace's integrations (token-vault's authz.c).
 *
 * The vault runs alone here, so this file plays conversation-router's part, as the suite
 * plays the router's other parts (vault.token.get): router.workspace.get, answered from the
 * table below the way the router answers it (its result with the actor's role, or its
 * refusals). test_router and test_reaper_e2e check the same against the real router.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "vault_suite.h"

/* The workspaces the router knows, and whether each is deleted. */
static const char *const live[] = {"ws_1", "ws_2", "ws_lane", NULL};
#define DELETED_WS "ws_gone"

static natsSubscription *sub;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char last_actor[160];

/* A member's role: operator owns every workspace; vic views ws_1, ada administers it. */
static const char *role_of(const char *actor, const char *ws)
{
    if (strcmp(actor, "operator") == 0)
        return "owner";
    if (strcmp(ws, "ws_1") == 0 && strcmp(actor, "vic") == 0)
        return "viewer";
    if (strcmp(ws, "ws_1") == 0 && strcmp(actor, "ada") == 0)
        return "admin";
    return NULL;
}

static void on_get(natsConnection *c, natsSubscription *s, natsMsg *msg, void *closure)
{
    cJSON *req = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    const char *actor = cJSON_GetStringValue(cJSON_GetObjectItem(req, "actor"));
    const char *ws = cJSON_GetStringValue(cJSON_GetObjectItem(req, "workspace_id"));
    bool known = ws != NULL && strcmp(ws, DELETED_WS) == 0;
    const char *role;
    char *reply;

    (void)s;
    (void)closure;
    actor = actor != NULL ? actor : "";
    pthread_mutex_lock(&lock);
    snprintf(last_actor, sizeof(last_actor), "%s", actor);
    pthread_mutex_unlock(&lock);
    for (int i = 0; ws != NULL && live[i] != NULL; i++)
        known = known || strcmp(ws, live[i]) == 0;
    role = known ? role_of(actor, ws) : NULL;
    if (!known)
        reply = cm_xasprintf("{\"error\":{\"code\":\"not_found\",\"message\":\"no workspace %s\"}}",
                             ws ? ws : "");
    else if (role == NULL)
        reply = cm_xasprintf("{\"error\":{\"code\":\"denied\",\"message\":\"%s may not do this in"
                             " workspace %s (needs the viewer role)\"}}",
                             actor, ws);
    else
        reply = cm_xasprintf("{\"result\":{\"workspace_id\":\"%s\",\"name\":\"W\",\"ai\":false,"
                             "\"mask_pii\":false,\"status\":\"%s\",\"mark_seen\":false,"
                             "\"role\":\"%s\"}}",
                             ws, strcmp(ws, DELETED_WS) == 0 ? "deleted" : "active", role);
    natsConnection_PublishString(c, natsMsg_GetReply(msg), reply);
    free(reply);
    cJSON_Delete(req);
    natsMsg_Destroy(msg);
}

void vault_roles_start(void)
{
    /* Served as the router serves it: on "<subject>.<caller>". */
    if (natsConnection_Subscribe(&sub, nc, "router.workspace.get.*", on_get, NULL) != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK)
        exit(1);
}

static void stop(void)
{
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    sub = NULL;
    natsConnection_Flush(nc);
}

/* domsctl's exit code with args; *text its stderr (free it). */
static int run(char **text, const char *const *args)
{
    *text = NULL;
    return domsctl(NULL, text, args);
}

void test_vault_roles(void)
{
    const char *viewer_connect[] = {
        "--actor", "vic",        "integration", "connect",   "--workspace",
        "ws_1",    "--platform", "instagram",   "--account", "17841400000000991",
        "--token", "short-role", NULL};
    const char *admin_connect[] = {
        "--actor", "ada",          "integration", "connect",   "--workspace",
        "ws_1",    "--platform",   "instagram",   "--account", "17841400000000992",
        "--token", "short-role-2", NULL};
    const char *deleted_connect[] = {
        "integration", "connect",      "--workspace", DELETED_WS,
        "--platform",  "instagram",    "--account",   "17841400000000993",
        "--token",     "short-role-3", NULL};
    const char *unknown_connect[] = {
        "integration", "connect",      "--workspace", "ws_nope",
        "--platform",  "instagram",    "--account",   "17841400000000994",
        "--token",     "short-role-4", NULL};
    const char *viewer_list[] = {"--actor",     "vic",  "integration", "list",
                                 "--workspace", "ws_1", NULL};
    const char *stranger_list[] = {"--actor",     "eve",  "integration", "list",
                                   "--workspace", "ws_1", NULL};
    char *text, *id, *q;
    cJSON *out = NULL;

    login("instagram", "17841400000000991", "short-role");
    login("instagram", "17841400000000992", "short-role-2");
    login("instagram", "17841400000000993", "short-role-3");
    login("instagram", "17841400000000994", "short-role-4");

    /* A viewer may list but not connect; the router was asked on the viewer's behalf. */
    CHECK_INT(run(&text, viewer_connect), 1);
    CHECK_CONTAINS(text, "vic may not do this in workspace ws_1 (needs the admin role)");
    free(text);
    pthread_mutex_lock(&lock);
    CHECK_STR(last_actor, "vic");
    pthread_mutex_unlock(&lock);
    CHECK_INT(domsctl(&out, NULL, viewer_list), 0);
    CHECK(cJSON_IsArray(out));
    cJSON_Delete(out);
    /* Someone the router does not know in the workspace: its refusal, passed on. */
    CHECK_INT(run(&text, stranger_list), 1);
    CHECK_CONTAINS(text, "eve may not do this in workspace ws_1");
    free(text);
    /* An admin connects, and ends it. */
    CHECK_INT(domsctl(&out, NULL, admin_connect), 0);
    id = cm_xstrdup(str_at(out, "integration_id", NULL) ? str_at(out, "integration_id", NULL) : "");
    cJSON_Delete(out);
    CHECK(id[0] != '\0');
    {
        const char *viewer_end[] = {"--actor", "vic", "integration", "disconnect", id, NULL};
        const char *admin_end[] = {"--actor", "ada", "integration", "disconnect", id, NULL};
        CHECK_INT(run(&text, viewer_end), 1);
        CHECK_CONTAINS(text, "needs the admin role");
        free(text);
        CHECK_INT(domsctl(NULL, NULL, admin_end), 0);
    }
    free(id);
    /* A deleted workspace takes no integration; nor one the router does not know. */
    CHECK_INT(run(&text, deleted_connect), 1);
    CHECK_CONTAINS(text, "workspace ws_gone is deleted");
    free(text);
    CHECK_INT(run(&text, unknown_connect), 1);
    CHECK_CONTAINS(text, "no workspace ws_nope");
    free(text);
    /* Without the router's word nothing is done. */
    stop();
    CHECK_INT(run(&text, unknown_connect), 1);
    CHECK_CONTAINS(text, "conversation-router is not running; nothing was done");
    free(text);
    vault_roles_start();
    q = vault_sql(
        "SELECT count(*) FROM vault.integrations WHERE account_id IN ('17841400000000991',"
        " '17841400000000993', '17841400000000994')");
    CHECK_STR(q, "0");
    free(q);
}
