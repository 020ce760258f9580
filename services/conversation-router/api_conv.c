/*
 * api_conv.c - a conversation over NATS (proto/router.md): its context for ai-suggest,
 * assignment, closing and replies. The lists are api_list.c's.
 *
 * A reply is decided here, inside Meta's rules: only in a conversation the contact
 * started, only inside the messaging window, only with the HUMAN_AGENT tag between 24
 * hours and 7 days and then only for a human's own text. It is stored as queued and put
 * on the ROUTER_SEND work queue in the same transaction (the outbox), to exactly the
 * conversation's contact; sender.c delivers it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/outbox.h"
#include "router.h"

static int64_t now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/*
 * Loads the conversation named in the call, with its workspace's settings and the actor's
 * role in it, in one statement, and checks the role; false: answered.
 */
bool router_conv_load(struct cm_rpc_call *call, const char *min, bool live, struct router_conv *c)
{
    const char *id = cm_rpc_str(call, "conversation_id");
    const char *params[2] = {id, call->actor};
    struct cm_pg *pg = call->pg;
    char role[16];

    memset(c, 0, sizeof(*c));
    if (!router_valid_id(id, 64)) {
        cm_rpc_fail(call, "invalid", "conversation_id is required");
        return false;
    }
    if (cm_pg_exec_prepared(
            pg, "router_load_conv",
            "SELECT c.workspace_id, c.integration_id, c.platform, c.contact_id, c.status,"
            " coalesce((extract(epoch FROM c.last_inbound_at) * 1000)::bigint, 0),"
            " coalesce(r.account_id, ''), w.status = 'deleted', m.role, w.ai, w.mask_pii,"
            " ct.psid_sealed, coalesce(r.status, ''), w.mark_seen, c.thread_held"
            " FROM conversations c"
            " JOIN workspaces w ON w.id = c.workspace_id"
            " LEFT JOIN routes r ON r.integration_id = c.integration_id"
            " LEFT JOIN members m ON m.workspace_id = c.workspace_id AND m.user_id = $2"
            " LEFT JOIN contacts ct ON ct.id = c.contact_id WHERE c.id = $1",
            2, params, NULL, NULL) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return false;
    }
    if (cm_pg_ntuples(pg) == 0) {
        cm_rpc_fail(call, "not_found", "no conversation %s", id);
        return false;
    }
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->ws, sizeof(c->ws), "%s", cm_pg_value(pg, 0, 0));
    snprintf(c->integration, sizeof(c->integration), "%s", cm_pg_value(pg, 0, 1));
    snprintf(c->platform, sizeof(c->platform), "%s", cm_pg_value(pg, 0, 2));
    snprintf(c->contact, sizeof(c->contact), "%s", cm_pg_value(pg, 0, 3));
    snprintf(c->status, sizeof(c->status), "%s", cm_pg_value(pg, 0, 4));
    c->last_inbound_ms = strtoll(cm_pg_value(pg, 0, 5), NULL, 10);
    snprintf(c->account, sizeof(c->account), "%s", cm_pg_value(pg, 0, 6));
    router_role_from(call->actor, cm_pg_is_null(pg, 0, 8) ? NULL : cm_pg_value(pg, 0, 8), role);
    c->ai = strcmp(cm_pg_value(pg, 0, 9), "t") == 0;
    c->mask_pii = strcmp(cm_pg_value(pg, 0, 10), "t") == 0;
    /* A sealed id of a few dozen bytes; a longer value would not open anyway. */
    if (cm_pg_length(pg, 0, 11) < (int)sizeof(c->psid_sealed))
        snprintf(c->psid_sealed, sizeof(c->psid_sealed), "%s", cm_pg_value(pg, 0, 11));
    snprintf(c->route_status, sizeof(c->route_status), "%s", cm_pg_value(pg, 0, 12));
    c->mark_seen = strcmp(cm_pg_value(pg, 0, 13), "t") == 0;
    c->thread_held = strcmp(cm_pg_value(pg, 0, 14), "t") == 0;
    return router_allowed(call, c->ws, role, strcmp(cm_pg_value(pg, 0, 7), "t") == 0, min, live);
}

/*
 * A read of message content and its audit row commit together, without waiting for the
 * WAL flush: a PostgreSQL crash may lose the last audit rows of reads, never a change.
 */
int router_begin_read_audit(struct cm_pg *pg)
{
    return cm_pg_exec_simple(pg, "BEGIN; SET LOCAL synchronous_commit TO off");
}

/* The text of a sealed body, or NULL (unsent, or no text such as an attachment alone). */
char *router_body_text(struct router *r, struct cm_pg *pg, const struct router_conv *c,
                       const char *id, const char *sealed)
{
    char aad[96], *text = NULL;
    struct cm_buf plain;
    cJSON *body;

    snprintf(aad, sizeof(aad), "router.messages.body:%s", id);
    cm_buf_init(&plain);
    if (router_open(r, pg, c->ws, c->integration, aad, sealed, &plain) == CM_OK) {
        body = cJSON_ParseWithLength(plain.data, plain.len);
        if (cJSON_IsString(cJSON_GetObjectItem(body, "text")))
            text = cm_xstrdup(cJSON_GetObjectItem(body, "text")->valuestring);
        cJSON_Delete(body);
    } else {
        CM_WARN("message %s does not decrypt", id);
    }
    cm_buf_wipe(&plain);
    return text;
}

/* Cuts text to at most max bytes without splitting a UTF-8 character. */
static void truncate_utf8(char *text, size_t max)
{
    size_t n = strlen(text);

    if (n <= max)
        return;
    while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80)
        max--;
    text[max] = '\0';
}

/*
 * The newest 200 messages of c with content (id, direction, sealed body, sent_at: 4 strings
 * a row, into *rows, to free) and the audit record of their reading, committed together in
 * one round trip before anything is opened. False: the call is answered.
 */
static bool read_audited(struct cm_rpc_call *call, const struct router_conv *c, char ***rows,
                         int *n)
{
    char audit_id[48], *audit = NULL;
    const char *values[4] = {c->id, "audit." ROUTER_SERVICE, audit_id, NULL};
    const struct cm_pg_call calls[4] = {
        CM_PG_BEGIN,
        CM_PG_ASYNC_COMMIT,
        {"router_context_read",
         "WITH audit AS (INSERT INTO outbox (subject, msg_id, payload) VALUES ($2, $3, $4))"
         " SELECT id, direction, body_sealed, " ROUTER_RFC3339(
             "sent_at") " FROM messages"
                        " WHERE conversation_id = $1"
                        " AND body_sealed IS NOT NULL"
                        " ORDER BY sent_at DESC, seq"
                        " DESC LIMIT 200",
         4, values, NULL, NULL},
        CM_PG_COMMIT,
    };
    PGresult *res[4] = {NULL};
    int rc = cm_audit_event(ROUTER_SERVICE, call->actor, "messages.read", c->id, &audit, audit_id);

    values[3] = audit;
    if (rc == CM_OK)
        rc = cm_pg_pipeline(call->pg, calls, 4, res);
    if (rc == CM_OK) {
        *n = PQntuples(res[2]);
        *rows = cm_xcalloc((size_t)*n * 4 + 1, sizeof(char *));
        for (int i = 0; i < *n * 4; i++)
            (*rows)[i] = cm_xstrdup(PQgetvalue(res[2], i / 4, i % 4));
    } else {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "the read could not be audited; nothing is shown");
    }
    for (int i = 0; i < 4; i++)
        PQclear(res[i]);
    cJSON_free(audit);
    return rc == CM_OK;
}

/* The newest texts that fit the budget, for ai-suggest; refused when AI is off. */
static void on_context(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const cJSON *budget_j = cJSON_GetObjectItemCaseSensitive(call->req, "max_chars");
    long budget = cJSON_IsNumber(budget_j) ? (long)budget_j->valuedouble : 4000;
    struct cm_pg *pg = call->pg;
    struct router_conv c;
    cJSON *out, *msgs, *ids;
    char **rows = NULL;
    int n = 0;

    if (!router_conv_load(call, "agent", true, &c))
        return;
    if (!c.ai) {
        cm_rpc_fail(call, "refused", "AI assistance is off for workspace %s", c.ws);
        return;
    }
    if (!read_audited(call, &c, &rows, &n))
        return;
    msgs = cJSON_CreateArray();
    /* Newest first until the budget is spent, then put back in reading order. */
    for (int i = 0; i < n && budget > 0; i++) {
        char *text = router_body_text(r, pg, &c, rows[i * 4], rows[i * 4 + 2]);
        cJSON *m;
        if (text == NULL)
            continue;
        if ((long)strlen(text) > budget) {
            if (cJSON_GetArraySize(msgs) > 0) {
                free(text);
                break;
            }
            /* Even the newest message is longer than the budget: its end, cut at a
             * character boundary, rather than nothing to answer. */
            truncate_utf8(text, (size_t)budget);
        }
        budget -= (long)strlen(text);
        m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "direction", rows[i * 4 + 1]);
        cJSON_AddStringToObject(m, "text", text);
        cJSON_AddStringToObject(m, "sent_at", rows[i * 4 + 3]);
        cJSON_InsertItemInArray(msgs, 0, m);
        free(text);
    }
    for (int i = 0; i < n * 4; i++)
        free(rows[i]);
    free(rows);

    ids = cJSON_CreateArray();
    if (c.psid_sealed[0] != '\0') {
        char aad[96];
        struct cm_buf psid;
        snprintf(aad, sizeof(aad), "router.contacts.psid:%s", c.contact);
        cm_buf_init(&psid);
        if (router_open(r, pg, c.ws, c.integration, aad, c.psid_sealed, &psid) == CM_OK)
            cJSON_AddItemToArray(ids, cJSON_CreateString(psid.data));
        cm_buf_wipe(&psid);
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "conversation_id", c.id);
    cJSON_AddStringToObject(out, "workspace_id", c.ws);
    cJSON_AddStringToObject(out, "integration_id", c.integration);
    cJSON_AddStringToObject(out, "platform", c.platform);
    cJSON_AddBoolToObject(out, "ai", c.ai);
    cJSON_AddBoolToObject(out, "mask_pii", c.mask_pii);
    cJSON_AddItemToObject(out, "contact_ids", ids);
    cJSON_AddItemToObject(out, "messages", msgs);
    cm_rpc_reply(call, out);
}

static void on_assign(struct cm_rpc_call *call, void *arg)
{
    const char *user = cm_rpc_str(call, "user");
    struct router_conv c;
    int rc;
    cJSON *out;

    (void)arg;
    if (!router_conv_load(call, "agent", true, &c))
        return;
    if (strcmp(c.status, "open") != 0) {
        cm_rpc_fail(call, "refused", "conversation %s is closed", c.id);
        return;
    }
    {
        const char *params[2] = {c.ws, user};
        if (!router_valid_id(user, 128) ||
            cm_pg_exec(call->pg,
                       "SELECT 1 FROM members WHERE workspace_id = $1 AND user_id = $2"
                       " AND role <> 'viewer'",
                       2, params) != CM_OK ||
            cm_pg_ntuples(call->pg) == 0) {
            cm_rpc_fail(call, "invalid", "user must be a member of the workspace who may reply");
            return;
        }
    }
    rc = cm_pg_begin(call->pg);
    if (rc == CM_OK) {
        const char *params[2] = {c.id, user};
        rc =
            cm_pg_exec(call->pg, "UPDATE conversations SET assignee = $2 WHERE id = $1", 2, params);
    }
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "conversation.assign", c.id);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "the conversation could not be assigned");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "conversation_id", c.id);
    cJSON_AddStringToObject(out, "assignee", user);
    cm_rpc_reply(call, out);
}

static void on_close(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *params[1];
    struct router_conv c;
    int rc;
    cJSON *out;

    if (!router_conv_load(call, "agent", false, &c))
        return;
    params[0] = c.id;
    rc = cm_pg_begin(call->pg);
    /* The conversation, then the agents (its assignee's load changes), in the order of every
     * assigner (assign.c). */
    if (rc == CM_OK)
        rc =
            cm_pg_exec(call->pg, "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", 1, params);
    if (rc == CM_OK)
        rc = router_lock_agents(call->pg, c.ws);
    if (rc == CM_OK)
        rc = cm_pg_exec(call->pg,
                        "UPDATE conversations SET status = 'closed', closed_at = now()"
                        " WHERE id = $1 AND status = 'open'",
                        1, params);
    /* The assignee has room again: a waiting conversation may take it. */
    if (rc == CM_OK)
        rc = router_assign_waiting(r, call->pg, c.ws);
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "conversation.close", c.id);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "the conversation could not be closed");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "conversation_id", c.id);
    cJSON_AddStringToObject(out, "status", "closed");
    cm_rpc_reply(call, out);
}

/*
 * The number of characters (Unicode code points) in the UTF-8 text s, or -1 when s is not
 * valid UTF-8 (overlong forms, surrogates and code points past U+10FFFF included).
 */
static long utf8_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;

    while (*p != '\0') {
        uint32_t cp;
        int len, k;

        if (*p < 0x80) {
            p++;
            n++;
            continue;
        }
        if ((*p & 0xe0) == 0xc0) {
            len = 2;
            cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            len = 3;
            cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            len = 4;
            cp = *p & 0x07;
        } else {
            return -1;
        }
        for (k = 1; k < len; k++) {
            if ((p[k] & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (p[k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        p += len;
        n++;
    }
    return n;
}

/*
 * Is text a reply Meta takes on the conversation's platform? Meta counts characters, not
 * bytes: at most 2000 on Messenger and 1000 on Instagram.
 */
static bool text_fits(struct cm_rpc_call *call, const struct router_conv *c, const char *text)
{
    long max = strcmp(c->platform, "instagram") == 0 ? 1000 : 2000;
    long n = text != NULL ? utf8_chars(text) : 0;

    if (text == NULL || *text == '\0') {
        cm_rpc_fail(call, "invalid", "text is required");
        return false;
    }
    if (n < 0) {
        cm_rpc_fail(call, "invalid", "text is not valid UTF-8");
        return false;
    }
    if (n > max) {
        cm_rpc_fail(call, "invalid", "text is %ld characters; %s takes at most %ld", n, c->platform,
                    max);
        return false;
    }
    return true;
}

/*
 * May the conversation's integration send now? A reply that Meta would refuse anyway is
 * refused at once, with what the business can do about it, rather than queued to fail.
 */
bool router_integration_live(struct cm_rpc_call *call, const struct router_conv *c)
{
    const char *st = c->route_status;

    if (strcmp(st, "connected") == 0 && c->account[0] != '\0')
        return true;
    if (*st == '\0')
        cm_rpc_fail(call, "refused", "the conversation's integration no longer exists");
    else if (strcmp(st, "disconnected") == 0)
        cm_rpc_fail(call, "refused",
                    "the conversation's integration was disconnected: connect the account"
                    " again to reply");
    else if (strcmp(st, "revoked") == 0)
        cm_rpc_fail(call, "refused",
                    "the business removed this app from its account (deauthorized): it must"
                    " connect again before anyone can reply");
    else if (strcmp(st, "needs_reauth") == 0)
        cm_rpc_fail(call, "refused",
                    "Meta no longer accepts the integration's token (needs_reauth): the"
                    " business must connect the account again to reply");
    else
        cm_rpc_fail(call, "refused", "the conversation's integration is %s", st);
    return false;
}

/* Explains a refusal by the window, in words an agent can act on. */
static bool window_allows(struct cm_rpc_call *call, const struct router_conv *c, bool human,
                          bool ai_drafted, bool *tag)
{
    enum router_window w = router_window_at(now_ms(), c->last_inbound_ms);
    double hours = (double)(now_ms() - c->last_inbound_ms) / 3600000.0;

    *tag = false;
    switch (w) {
    case ROUTER_WINDOW_NONE:
        cm_rpc_fail(call, "refused",
                    "the contact never wrote in this conversation: a business may only answer"
                    " a conversation the person started");
        return false;
    case ROUTER_WINDOW_OPEN:
        return true;
    case ROUTER_WINDOW_HUMAN_AGENT:
        if (!human) {
            cm_rpc_fail(call, "refused",
                        "outside the 24-hour messaging window (the customer last wrote %.0f"
                        " hours ago): only a human agent's reply (--human-agent) may be sent,"
                        " up to 7 days after the customer's last message",
                        hours);
            return false;
        }
        if (ai_drafted) {
            cm_rpc_fail(call, "refused",
                        "AI-drafted text cannot be sent with the HUMAN_AGENT tag: edit it, or"
                        " answer within 24 hours of the customer's message");
            return false;
        }
        *tag = true;
        return true;
    case ROUTER_WINDOW_CLOSED:
        break;
    }
    cm_rpc_fail(call, "refused",
                "the messaging window is closed: the customer last wrote %.1f days ago (more"
                " than 7); Meta allows no reply until they write again",
                hours / 24.0);
    return false;
}

/*
 * Is text an unedited suggestion? Asks ai-suggest for the draft (as the replying actor).
 * Returns true when it is the draft, or when that cannot be known: text that may be a
 * machine's is never tagged as a human's.
 */
static bool unedited_suggestion(struct router *r, const struct cm_rpc_call *call,
                                const char *suggestion_id, const char *text)
{
    natsMsg *reply = NULL;
    cJSON *req = cJSON_CreateObject(), *resp = NULL;
    const char *draft;
    bool same = true;
    char *body;

    cJSON_AddStringToObject(req, "actor", call->actor);
    cJSON_AddStringToObject(req, "suggestion_id", suggestion_id);
    body = cJSON_PrintUnformatted(req);
    if (cm_nats_request(&reply, r->svc.nats, "ai.suggestion.get", body, 5000) == NATS_OK) {
        resp = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        draft =
            cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "result"), "text"));
        if (draft != NULL)
            same = strcmp(draft, text) == 0;
    }
    natsMsg_Destroy(reply);
    cJSON_Delete(resp);
    cJSON_free(body);
    cJSON_Delete(req);
    return same;
}

bool router_conv_sendable(struct cm_rpc_call *call, const struct router_conv *c)
{
    if (!router_integration_live(call, c))
        return false;
    /* Meta refuses a message to a thread another app holds (code 10, 2018300). */
    if (!c->thread_held && strcmp(c->platform, "instagram") == 0) {
        cm_rpc_fail(call, "refused",
                    "another app holds this conversation's thread (Meta's conversation"
                    " routing), so Meta would refuse the reply: answer from the app that holds"
                    " it, or have it pass the thread back to this app");
        return false;
    }
    if (!c->thread_held) {
        cm_rpc_fail(call, "refused",
                    "another app holds this conversation's thread (Meta's handover protocol),"
                    " so Meta would refuse the reply: take control first (domsctl conversation"
                    " take %s), or answer from the app that holds it",
                    c->id);
        return false;
    }
    return true;
}

/* What one reply request queues: its text, its file, or both (the text first). */
struct reply_out {
    const char *text;   /* NULL: none */
    const char *upload; /* NULL: none */
    const char *suggestion;
    bool tag, ai_drafted;
    char text_id[40], file_id[40];
    char type[16]; /* the file's, once attached */
};

/*
 * Inserts outbound message id (sealed body json) and queues its send job (after: the message
 * that must be sent before it, or NULL), in the caller's transaction.
 */
static int insert_out(struct router *r, struct cm_rpc_call *call, const struct router_conv *c,
                      const struct reply_out *o, const char *id, const char *json,
                      const char *after)
{
    char aad[96], subject[160], payload[192], msg_id[64];
    struct cm_buf sealed;
    int rc;

    snprintf(aad, sizeof(aad), "router.messages.body:%s", id);
    cm_buf_init(&sealed);
    rc = router_seal(r, call->pg, c->ws, c->integration, aad, json, strlen(json), &sealed);
    if (rc == CM_OK) {
        const char *values[9] = {id,
                                 c->id,
                                 c->ws,
                                 c->platform,
                                 sealed.data,
                                 o->tag ? "true" : "false",
                                 o->ai_drafted ? "true" : "false",
                                 o->suggestion,
                                 c->integration};
        const int lengths[9] = {0, 0, 0, 0, (int)sealed.len, 0, 0, 0, 0};
        const int formats[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
        rc = cm_pg_exec_params(call->pg,
                               "INSERT INTO messages (id, conversation_id, workspace_id, platform,"
                               " direction, body_sealed, sent_at, status, human_agent, ai_drafted,"
                               " suggestion_id, integration_id) VALUES ($1, $2, $3, $4, 'out', $5,"
                               " now(), 'queued', $6::boolean, $7::boolean, $8, $9)",
                               9, values, lengths, formats, 0);
    }
    cm_buf_cleanup(&sealed);
    /* Queued for the sender in the same transaction: no reply is lost or sent twice. A job with
     * "after" waits until that message is no longer queued (sender.c): the text goes first. */
    if (rc == CM_OK) {
        snprintf(subject, sizeof(subject), "router.send.%s", c->account);
        if (after != NULL)
            snprintf(payload, sizeof(payload), "{\"message_id\":\"%s\",\"after\":\"%s\"}", id,
                     after);
        else
            snprintf(payload, sizeof(payload), "{\"message_id\":\"%s\"}", id);
        snprintf(msg_id, sizeof(msg_id), "send:%s", id);
        rc = cm_outbox_add(call->pg, subject, msg_id, payload);
    }
    return rc;
}

/*
 * Stores and queues the reply o in one transaction. False: the call is answered (why, from
 * router_upload_attach(), or unavailable).
 */
static bool queue_reply(struct router *r, struct cm_rpc_call *call, const struct router_conv *c,
                        struct reply_out *o)
{
    char why[256] = "", att[40] = "";
    char *json = NULL;
    bool committing = false;
    int rc = cm_pg_begin(call->pg);

    if (rc == CM_OK && o->text != NULL) {
        cJSON *body = cJSON_CreateObject();
        router_new_id("msg", o->text_id);
        cJSON_AddStringToObject(body, "text", o->text);
        json = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        rc = insert_out(r, call, c, o, o->text_id, json, NULL);
        cJSON_free(json);
    }
    if (rc == CM_OK && o->upload != NULL) {
        /* The file's message has no text: its content is its attachments row. */
        struct reply_out file = *o;
        file.suggestion = NULL; /* a suggestion is text: it names the text's message */
        router_new_id("msg", o->file_id);
        rc = insert_out(r, call, c, &file, o->file_id, "{}", o->text != NULL ? o->text_id : NULL);
        if (rc == CM_OK)
            rc = router_upload_attach(r, call, c, o->upload, o->file_id, o->type, att, why,
                                      sizeof(why));
    }
    if (rc == CM_OK) {
        const char *params[1] = {c->id};
        rc = cm_pg_exec(call->pg, "UPDATE conversations SET last_activity_at = now() WHERE id = $1",
                        1, params);
    }
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "message.reply", c->id);
    if (rc == CM_OK) {
        committing = true;
        rc = cm_pg_commit(call->pg);
    }
    if (rc == CM_OK)
        return true;
    cm_pg_rollback(call->pg);
    if (!committing)
        router_media_unput(r, att);
    if (rc == CM_NOTFOUND)
        cm_rpc_fail(call, "not_found", "%s", why);
    else if (rc == CM_CONFLICT)
        cm_rpc_fail(call, "conflict", "%s", why);
    else if (rc == CM_INVALID)
        cm_rpc_fail(call, "invalid", "%s", why);
    else
        cm_rpc_fail(call, "unavailable", "the reply could not be queued");
    return false;
}

static void on_reply(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    bool human = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(call->req, "human_agent"));
    struct reply_out o = {0};
    struct router_conv c;
    cJSON *out;

    /* A reply that sends a file moves its bytes (into S3, with MEDIA_STORE=s3): the media
     * lane serves it, as it does router.upload, so that a hanging S3 holds none of these
     * workers. */
    if (call->rpc != r->media_rpc &&
        cJSON_GetObjectItemCaseSensitive(call->req, "upload_id") != NULL) {
        cm_rpc_forward(call, r->media_rpc);
        return;
    }
    o.text = cm_rpc_str(call, "text");
    o.upload = cm_rpc_str(call, "upload_id");
    o.suggestion = cm_rpc_str(call, "suggestion_id");
    o.ai_drafted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(call->req, "ai_drafted"));
    if (!router_conv_load(call, "agent", true, &c))
        return;
    if (cJSON_GetObjectItemCaseSensitive(call->req, "upload_id") != NULL &&
        !router_valid_id(o.upload, 64)) {
        cm_rpc_fail(call, "invalid", "upload_id must be an id from router.upload");
        return;
    }
    /* With a file, text is optional; given, it is held to the same rules. */
    if (o.upload == NULL || cJSON_GetObjectItemCaseSensitive(call->req, "text") != NULL) {
        if (!text_fits(call, &c, o.text))
            return;
    }
    if (!router_conv_sendable(call, &c))
        return;
    /* A suggestion sent as drafted stays AI-drafted, whatever the caller says. */
    if (o.text != NULL && o.suggestion != NULL && !o.ai_drafted &&
        unedited_suggestion(r, call, o.suggestion, o.text))
        o.ai_drafted = true;
    if (!window_allows(call, &c, human, o.ai_drafted, &o.tag))
        return;
    if (!queue_reply(r, call, &c, &o))
        return;
    CM_INFO("reply %s%s%s queued in %s by %s%s", o.text_id, o.upload != NULL ? " with file " : "",
            o.file_id, c.id, call->actor, o.tag ? " (HUMAN_AGENT)" : "");
    out = cJSON_CreateObject();
    /* message_id: the file's message when there is one (the last of the reply), else the
     * text's; message_ids: every message of the reply, in the order they are sent. */
    cJSON_AddStringToObject(out, "message_id", o.upload != NULL ? o.file_id : o.text_id);
    cJSON_AddStringToObject(out, "status", "queued");
    if (o.upload != NULL) {
        cJSON *ids = cJSON_AddArrayToObject(out, "message_ids");
        if (o.text != NULL)
            cJSON_AddItemToArray(ids, cJSON_CreateString(o.text_id));
        cJSON_AddItemToArray(ids, cJSON_CreateString(o.file_id));
    }
    cm_rpc_reply(call, out);
}

void router_api_conv_register(struct router *r)
{
    cm_rpc_handle(r->rpc, "router.conversation.context", on_context, r);
    cm_rpc_handle(r->rpc, "router.conversation.assign", on_assign, r);
    cm_rpc_handle(r->rpc, "router.conversation.close", on_close, r);
    cm_rpc_handle(r->rpc, "router.reply", on_reply, r);
    cm_rpc_handle_forwarded(r->media_rpc, "router.reply", on_reply, r);
    /* ai-suggest reads a conversation for whoever asked it for a suggestion. */
    cm_rpc_delegate(r->rpc, "router.conversation.context", "ai-suggest");
}
