/*
 * thread.c - who holds the thread with a contact: Meta's handover protocol (Messenger's
 * Conversation Routing, which keeps its API) and what it means for the router.
 *
 * Meta delivers a contact's message to the app that holds the thread through messaging[], and
 * to the other apps of the Page through standby[]. So the router learns the holder from what
 * it receives: a contact's message through messaging[] says this app holds it (store.c, in the
 * statement that stores it); a standby event, or a take_thread_control webhook, says another
 * app does; a pass_thread_control webhook, or our own take, says this app does again. Meta's
 * timestamps order these: an event older than what the conversation already knows changes
 * nothing (thread_at), and an older standby event never undoes a newer message to us.
 *
 * Standby events are stored as what they are (messages.standby): what the contact sent while
 * another app held the thread, and that app's echoes. A contact's standby message moves the
 * window (Meta counts the person's last message to the Page, whichever app it reached), but a
 * conversation another app holds is not dealt to an agent, who could not answer it: it waits
 * until the thread is ours again (schema/006_thread.sql's assign_waiting()).
 *
 * router.conversation.take asks Meta for the thread (take_thread_control, with the Page token
 * and its appsecret_proof from token-vault). Instagram accounts connected with Instagram Login
 * (graph.instagram.com) have no such endpoint: refused with the reason.
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/httpc.h"
#include "common/log.h"
#include "inbound.h"
#include "router.h"

int router_thread_elsewhere(struct cm_pg *pg, const char *conv, int64_t at_ms)
{
    char ts[32];
    const char *params[2] = {conv, NULL};

    if (at_ms > 0) {
        inbound_ts_param(ts, at_ms);
        params[1] = ts;
    }
    return cm_pg_exec(pg,
                      "WITH t AS (SELECT coalesce(to_timestamp($2::double precision), now()) AS at)"
                      " UPDATE conversations c SET thread_held = false,"
                      " thread_at = greatest(c.thread_at, t.at) FROM t"
                      " WHERE c.id = $1 AND ($2::double precision IS NULL"
                      " OR ((c.thread_at IS NULL OR c.thread_at <= t.at) AND NOT EXISTS"
                      " (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
                      " AND m.direction = 'in' AND NOT m.standby AND m.sent_at > t.at)))",
                      2, params);
}

/*
 * Records that this app holds conv's thread as of Meta's time at_ms unless Meta said otherwise
 * after it (0: now, whatever was said: Meta just answered), and deals it to an agent when it
 * waits for one (open, unassigned).
 */
static int held_here(struct router *r, struct cm_pg *pg, const char *ws, const char *conv,
                     int64_t at_ms)
{
    char ts[32];
    const char *params[2] = {conv, NULL};
    int rc;

    if (at_ms > 0) {
        inbound_ts_param(ts, at_ms);
        params[1] = ts;
    }
    rc = cm_pg_exec(pg,
                    "WITH t AS (SELECT coalesce(to_timestamp($2::double precision), now()) AS at)"
                    " UPDATE conversations c SET thread_held = true,"
                    " thread_at = greatest(c.thread_at, t.at) FROM t"
                    " WHERE c.id = $1 AND ($2::double precision IS NULL OR c.thread_at IS NULL"
                    " OR c.thread_at <= t.at) RETURNING c.status = 'open' AND c.assignee IS NULL",
                    2, params);
    if (rc == CM_OK && cm_pg_ntuples(pg) == 1 && strcmp(cm_pg_value(pg, 0, 0), "t") == 0)
        rc = router_assign_waiting(r, pg, ws);
    return rc;
}

/* A contact's message, postback or referral that reached another app: stored, marked. */
static int standby_inbound(struct router *r, struct cm_pg *pg, const struct router_route *route,
                           const struct inbound_event *ev, const char *conv, bool *inserted)
{
    char id[40], aad[96], ts[32];
    struct inbound_media media;
    char *body;
    struct cm_buf sealed;
    int rc;

    inbound_media_plan(ev, &media);
    body = inbound_body_json(ev, &media);
    router_new_id("msg", id);
    snprintf(aad, sizeof(aad), "router.messages.body:%s", id);
    inbound_ts_param(ts, ev->ts_ms);
    cm_buf_init(&sealed);
    rc = router_seal(r, pg, route->workspace_id, route->integration_id, aad, body, strlen(body),
                     &sealed);
    if (rc == CM_OK) {
        const char *values[9] = {id,          conv, route->workspace_id,   ev->platform, ev->mid,
                                 sealed.data, ts,   route->integration_id, ev->kind};
        const int lengths[9] = {0, 0, 0, 0, 0, (int)sealed.len, 0, 0, 0};
        const int formats[9] = {0, 0, 0, 0, 0, 1, 0, 0, 0};
        rc = cm_pg_exec_params(pg,
                               "INSERT INTO messages (id, conversation_id, workspace_id, platform,"
                               " mid, direction, kind, body_sealed, sent_at, status,"
                               " integration_id, standby) VALUES ($1, $2, $3, $4, $5, 'in', $9,"
                               " $6, to_timestamp($7::double precision), 'received', $8, true)"
                               " ON CONFLICT (integration_id, mid) DO NOTHING",
                               9, values, lengths, formats, 0);
    }
    *inserted = rc == CM_OK && cm_pg_affected(pg) == 1;
    if (rc == CM_OK && *inserted && media.n > 0)
        rc = inbound_media_insert(r, pg, route, id, ev, &media);
    /* The person wrote to the business: the window moves, whichever app they reached. */
    if (rc == CM_OK && *inserted) {
        const char *params[2] = {conv, ts};
        rc = cm_pg_exec(pg,
                        "UPDATE conversations SET last_inbound_at = greatest(last_inbound_at,"
                        " to_timestamp($2::double precision)), last_activity_at = now()"
                        " WHERE id = $1",
                        2, params);
    }
    cm_buf_wipe(&sealed);
    cJSON_free(body);
    return rc;
}

int thread_store_standby(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                         const struct router_route *route, const struct inbound_event *ev,
                         enum inbound_outcome *outcome)
{
    bool echo = strcmp(ev->kind, "echo") == 0, opened = false, duplicate = false;
    bool inserted = false;
    char contact[40], conv[40];
    int rc;

    if (ev->mid == NULL && (echo || strcmp(ev->kind, "message") == 0)) {
        *outcome = INBOUND_IGNORED;
        return CM_OK;
    }
    rc = inbound_contact_of(r, pg, caches, route, ev->platform, ev->contact, true, contact);
    if (rc == CM_OK)
        rc = inbound_conversation_of(pg, route, ev, contact, !echo, conv, &opened, &duplicate);
    if (rc != CM_OK || duplicate) {
        *outcome = INBOUND_DUPLICATE;
        return rc;
    }
    if (echo)
        rc = inbound_insert_echo(r, pg, route, conv, ev, &inserted);
    else
        rc = standby_inbound(r, pg, route, ev, conv, &inserted);
    if (rc == CM_OK && inserted)
        rc = router_thread_elsewhere(pg, conv, ev->ts_ms);
    *outcome = inserted ? INBOUND_STORED : INBOUND_DUPLICATE;
    return rc;
}

int thread_store_handover(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                          const struct router_route *route, const struct inbound_event *ev,
                          enum inbound_outcome *outcome)
{
    const cJSON *pass = cJSON_GetObjectItemCaseSensitive(ev->event, "pass_thread_control");
    const cJSON *take = cJSON_GetObjectItemCaseSensitive(ev->event, "take_thread_control");
    const char *owner = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(pass ? pass : take, "new_owner_app_id"));
    const char *app = r->cfg->app_id;
    char contact[40], conv[40];
    bool ours;
    int rc;

    *outcome = INBOUND_IGNORED;
    /* request_thread_control asks the holder to pass the thread: nothing changes yet. */
    if (pass == NULL && take == NULL)
        return CM_OK;
    /* Meta sends pass_thread_control to the app that receives the thread and
     * take_thread_control to the app it was taken from; the new owner, when this router
     * knows its app id, says it outright. */
    ours = app != NULL && *app != '\0' && owner != NULL ? strcmp(owner, app) == 0 : pass != NULL;
    rc = inbound_contact_of(r, pg, caches, route, ev->platform, ev->contact, false, contact);
    if (rc == CM_NOTFOUND)
        return CM_OK; /* someone we hold nothing of: their next message opens it */
    {
        const char *params[2] = {route->integration_id, contact};
        if (rc == CM_OK)
            rc = cm_pg_exec(pg,
                            "SELECT id FROM conversations WHERE integration_id = $1"
                            " AND contact_id = $2 ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
                            2, params);
    }
    if (rc != CM_OK || cm_pg_ntuples(pg) == 0)
        return rc;
    snprintf(conv, sizeof(conv), "%s", cm_pg_value(pg, 0, 0));
    rc = ours ? held_here(r, pg, route->workspace_id, conv, ev->ts_ms)
              : router_thread_elsewhere(pg, conv, ev->ts_ms);
    if (rc == CM_OK)
        *outcome = INBOUND_STORED;
    CM_DEBUG_ID(conv, "handover: the thread is %s", ours ? "this app's" : "another app's");
    return rc;
}

/* Asks Meta for the thread of c's contact; CM_OK, or the call is answered (refused, ...). */
static bool take_at_meta(struct router *r, struct cm_rpc_call *call, const struct router_conv *c)
{
    char *token = NULL, why[640], proof[ROUTER_PROOF_LEN], aad[96];
    struct cm_httpc *http = NULL;
    struct cm_httpc_response resp;
    struct cm_buf psid;
    bool ok = false;
    int rc;

    cm_buf_init(&psid);
    cm_httpc_response_init(&resp);
    snprintf(aad, sizeof(aad), "router.contacts.psid:%s", c->contact);
    rc = router_token_get(r, c->integration, &token, proof, why, sizeof(why));
    if (rc == CM_DENIED) {
        cm_rpc_fail(call, "refused", "%s", why);
        goto done;
    }
    if (rc == CM_OK)
        rc = router_open(r, call->pg, c->ws, c->integration, aad, c->psid_sealed, &psid);
    if (rc == CM_OK)
        rc = cm_httpc_create(&http);
    if (rc == CM_OK) {
        cJSON *o = cJSON_CreateObject();
        char *body;
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "recipient"), "id", psid.data);
        cJSON_AddStringToObject(o, "metadata", "taken by an agent of the business");
        body = cJSON_PrintUnformatted(o);
        rc = router_graph_post(r, http, c->platform, c->account, "take_thread_control", token,
                               proof, body, c->id, &resp);
        sodium_memzero(body, strlen(body));
        cJSON_free(body);
        cJSON_Delete(o);
    }
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the thread could not be asked of Meta now: try again");
        goto done;
    }
    if (resp.status == 200) {
        cJSON *json = cJSON_ParseWithLength(resp.body.data, resp.body.len);
        ok = cJSON_IsTrue(cJSON_GetObjectItem(json, "success"));
        cJSON_Delete(json);
        if (!ok)
            cm_rpc_fail(call, "unavailable", "Meta did not confirm the take: try again");
        goto done;
    }
    router_graph_why(&resp, why, sizeof(why));
    if (resp.status == 0 || resp.status >= 500 || resp.status == 429 ||
        (resp.has_meta_error && cm_httpc_meta_throttling(resp.meta_error.code)))
        cm_rpc_fail(call, "unavailable", "%s: try again", why);
    else
        cm_rpc_fail(call, "refused", "%s", why);
done:
    if (token != NULL)
        sodium_free(token);
    cm_httpc_destroy(http);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&psid);
    return ok;
}

/* router.conversation.take: this app takes the thread, as an agent asks. */
static void on_take(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    struct router_conv c;
    const char *params[1];
    cJSON *out;
    int rc;

    if (!router_conv_load(call, "agent", true, &c))
        return;
    if (strcmp(c.platform, "instagram") == 0) {
        cm_rpc_fail(call, "refused",
                    "Instagram accounts connected with Instagram Login offer no"
                    " take_thread_control: the app holding the thread must pass it back (from"
                    " Meta's Instagram inbox, move the conversation to this app)");
        return;
    }
    if (!router_integration_live(call, &c))
        return;
    if (c.psid_sealed[0] == '\0') {
        cm_rpc_fail(call, "unavailable", "the conversation's contact is gone");
        return;
    }
    if (!take_at_meta(r, call, &c))
        return;
    params[0] = c.id;
    rc = cm_pg_begin(call->pg);
    if (rc == CM_OK)
        rc =
            cm_pg_exec(call->pg, "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", 1, params);
    if (rc == CM_OK)
        rc = held_here(r, call->pg, c.ws, c.id, 0);
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "conversation.take", c.id);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable",
                    "Meta gave this app the thread, but the router could not record it: take"
                    " it again");
        return;
    }
    CM_INFO("conversation %s: thread taken by %s", c.id, call->actor);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "conversation_id", c.id);
    cJSON_AddBoolToObject(out, "holds_thread", true);
    cm_rpc_reply(call, out);
}

void router_api_thread_register(struct router *r)
{
    /* Waits on Meta (take_thread_control): its own lane, so that it never holds up the
     * requests answered from the router's data. */
    cm_rpc_handle(r->meta_rpc, "router.conversation.take", on_take, r);
}
