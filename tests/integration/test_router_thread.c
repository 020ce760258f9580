/*
 * test_router_thread.c - thread control (Meta's handover protocol) and mark_seen, end to end
 * through ingest, the vault, the routers and the Meta stand-in: a thread another app holds
 * (its standby events recorded as such, a reply refused at once, the thread taken, then the
 * reply sent), handover webhooks moving the thread and the assignment with it, Meta's own
 * refusal of a send, Instagram's refusal of a take, and mark_seen sent once per newly read
 * inbound message only in a workspace that asks for it. Part of the router test program
 * (router_suite.h).
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "router_suite.h"

/* Accounts of this file only. */
#define PAGE_T "106000000000091"
#define IG_T   "17841400000000092"

static char ws[64];

/* A webhook for PAGE_T with one event in list ("messaging" or "standby"); checks the 200. */
static void post(const char *list, const char *event)
{
    char body[4096];

    snprintf(body, sizeof(body),
             "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE_T "\",\"time\":%lld,\"%s\":[%s]}]}",
             (long long)now_ms_, list, event);
    CHECK_MSG(th_stack_webhook(&st, body) == 200, "webhook refused: %s", event);
}

/* The contact psid wrote text (mid) ago_s seconds ago, to this app or (standby) another. */
static void wrote(const char *list, const char *psid, const char *mid, const char *text, int ago_s)
{
    char ev[1024];

    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"%s\"},\"recipient\":{\"id\":\"" PAGE_T "\"},"
             "\"timestamp\":%lld,\"message\":{\"mid\":\"%s\",\"text\":\"%s\"}}",
             psid, (long long)(now_ms_ - ago_s * 1000LL), mid, text);
    post(list, ev);
}

/* A handover webhook (kind: pass_thread_control, take_thread_control...) about psid. */
static void handover(const char *kind, const char *psid, const char *new_owner, int ago_s)
{
    char ev[1024];

    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"%s\"},\"recipient\":{\"id\":\"" PAGE_T "\"},"
             "\"timestamp\":%lld,\"%s\":{\"previous_owner_app_id\":\"x\","
             "\"new_owner_app_id\":\"%s\",\"requested_owner_app_id\":\"%s\",\"metadata\":\"\"}}",
             psid, (long long)(now_ms_ - ago_s * 1000LL), kind, new_owner, new_owner);
    post("messaging", ev);
}

/* domsctl args: the exit code; *out its JSON, *why what it printed (each may be NULL). */
static int domsctl(cJSON **out, char **why, const char *const *args)
{
    cJSON *o = NULL;
    char *text = NULL;
    int code = th_stack_domsctl(&st, &o, &text, args);

    if (code != 0)
        fprintf(stderr, "domsctl %s %s: exit %d: %s\n", args[0], args[1], code, text ? text : "");
    if (out != NULL)
        *out = o;
    else
        cJSON_Delete(o);
    if (why != NULL)
        *why = text;
    else
        free(text);
    return code;
}

static int reply(const char *conv, const char *text, char **why)
{
    const char *args[] = {"reply", conv, "--text", text, NULL};
    return domsctl(NULL, why, args);
}

/*
 * The router's list (subject) asked directly, as domsctl would (one request, not a domsctl
 * run: the router suite stays within its time under the sanitizers); its rows (free them).
 */
static cJSON *list_of(const char *subject, const char *field, const char *id)
{
    char req[256];
    cJSON *r, *rows;

    snprintf(req, sizeof(req), "{\"actor\":\"operator\",\"%s\":\"%s\",\"limit\":1000}", field, id);
    r = th_stack_request(&st, subject, req);
    rows = cJSON_DetachItemFromObject(r, "result");
    CHECK_MSG(cJSON_IsArray(rows), "%s refused", subject);
    cJSON_Delete(r);
    return rows;
}

/* The conversation's row of conversations list (a new object; free it), or NULL. */
static cJSON *conv_row(const char *conv)
{
    cJSON *list = list_of("router.conversations.list", "workspace_id", ws), *found = NULL, *c;

    cJSON_ArrayForEach(c, list)
    {
        const char *id = th_json_str(c, "conversation_id", NULL);
        if (found == NULL && id != NULL && strcmp(id, conv) == 0)
            found = cJSON_Duplicate(c, 1);
    }
    cJSON_Delete(list);
    return found;
}

/* Does the conversation list show holds_thread as want? */
static bool holds(const char *conv, bool want)
{
    cJSON *row = conv_row(conv);
    bool ok = row != NULL && cJSON_IsBool(cJSON_GetObjectItem(row, "holds_thread")) &&
              cJSON_IsTrue(cJSON_GetObjectItem(row, "holds_thread")) == want;

    cJSON_Delete(row);
    return ok;
}

/* The conversation's assignee (a new string), or NULL. */
static char *assignee(const char *conv)
{
    cJSON *row = conv_row(conv);
    const char *a = th_json_str(row, "assignee", NULL);
    char *copy = a != NULL ? cm_xstrdup(a) : NULL;

    cJSON_Delete(row);
    return copy;
}

/* The message of conv with text (a new object; free it), or NULL: a read, as a member's. */
static cJSON *message_with(const char *conv, const char *text)
{
    cJSON *list = list_of("router.messages.list", "conversation_id", conv), *found = NULL, *m;

    cJSON_ArrayForEach(m, list)
    {
        const char *t = th_json_str(m, "text", NULL);
        if (found == NULL && t != NULL && strcmp(t, text) == 0)
            found = cJSON_Duplicate(m, 1);
    }
    cJSON_Delete(list);
    return found;
}

/* One value of the router's schema about conv (a new string), "" for NULL. */
static char *conv_sql(const char *conv, const char *expr)
{
    char q[512], *v;

    snprintf(q, sizeof(q),
             "SELECT coalesce((%s)::text, '') FROM router.conversations WHERE id = '%s'", expr,
             conv);
    v = th_stack_sql(&st, q);
    return v != NULL ? v : cm_xstrdup("(no row)");
}

static char *connect(const char *platform, const char *account, const char *token)
{
    char id[64];

    th_stack_connect(&st, ws, platform, account, token, NULL, id);
    return cm_xstrdup(id);
}

void test_thread_setup(void)
{
    const char *agent[] = {"member", "add",   "--workspace", NULL, "--user", "tara",
                           "--role", "agent", "--capacity",  "10", NULL};

    th_stack_workspace(&st, "Thread control", false, ws);
    agent[3] = ws;
    CHECK_INT(domsctl(NULL, NULL, agent), 0);
    free(connect("messenger", PAGE_T, "short-thread-fb"));
    free(connect("instagram", IG_T, "short-thread-ig"));
}

/*
 * Meta's Page Inbox holds the thread: what the contact wrote there and the inbox's answer
 * arrive as standby events and are listed as such; the contact's message still moves the
 * window. A reply is refused at once with the reason, nothing queued; the agent takes the
 * thread (take_thread_control with the Page token and its proof), and the reply goes out.
 */
void test_thread_standby(void)
{
    char ev[1024], *conv, *why = NULL, *sent = NULL, *v;
    const char *take[] = {"conversation", "take", NULL, NULL};
    cJSON *m, *out = NULL;
    int sends;

    wrote("messaging", "th-1", "m_th_1", "thread hello", 300);
    conv = await_conv_in(ws, "thread hello");
    CHECK(holds(conv, true));
    fakemeta_set_thread_owner(st.meta, PAGE_T, "th-1", FAKEMETA_INBOX_APP_ID);
    wrote("standby", "th-1", "m_th_sb1", "standby question", 120);
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"" PAGE_T "\"},\"recipient\":{\"id\":\"th-1\"},"
             "\"timestamp\":%lld,\"message\":{\"mid\":\"m_th_sbe1\",\"is_echo\":true,"
             "\"app_id\":" FAKEMETA_INBOX_APP_ID ",\"text\":\"inbox answer\"}}",
             (long long)(now_ms_ - 100000));
    post("standby", ev);

    CHECK_WAIT((m = message_with(conv, "inbox answer")) != NULL, 10000);
    CHECK_STR(th_json_str(m, "direction", NULL), "out");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(m, "standby")));
    cJSON_Delete(m);
    m = message_with(conv, "standby question");
    CHECK_STR(th_json_str(m, "direction", NULL), "in");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(m, "standby")));
    cJSON_Delete(m);
    m = message_with(conv, "thread hello");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(m, "standby")));
    cJSON_Delete(m);
    CHECK(holds(conv, false));
    /* The window counts the contact's standby message (two minutes ago, not five). */
    v = conv_sql(conv, "floor(extract(epoch FROM last_inbound_at))::bigint");
    CHECK_INT(strtoll(v, NULL, 10), (now_ms_ - 120000) / 1000);
    free(v);

    sends = fakemeta_sends(st.meta, FAKEMETA_FACEBOOK);
    CHECK_INT(reply(conv, "reply while held", &why), 1);
    CHECK_CONTAINS(why, "another app holds this conversation's thread");
    CHECK_CONTAINS(why, "domsctl conversation take");
    free(why);
    m = message_with(conv, "reply while held");
    CHECK(m == NULL); /* nothing queued */
    cJSON_Delete(m);

    take[2] = conv;
    CHECK_INT(domsctl(&out, NULL, take), 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(out, "holds_thread")));
    cJSON_Delete(out);
    CHECK_INT(fakemeta_takes(st.meta, "th-1"), 1);
    v = fakemeta_thread_owner(st.meta, PAGE_T, "th-1");
    CHECK_STR(v, FAKEMETA_APP_ID);
    free(v);
    CHECK(holds(conv, true));
    CHECK_INT(fakemeta_sends(st.meta, FAKEMETA_FACEBOOK), sends); /* no send was tried */

    CHECK_INT(reply(conv, "reply after take", &why), 0);
    free(why);
    CHECK_WAIT((sent = fakemeta_last_send(st.meta, "th-1")) != NULL &&
                   strstr(sent, "reply after take") != NULL,
               10000);
    free(sent);
    free(conv);
}

/*
 * Handover webhooks move the thread: take_thread_control (another app took it) and
 * pass_thread_control (passed to this app); request_thread_control changes nothing. A new
 * contact first seen through standby waits unassigned while the agent has room, and is
 * assigned once the thread is passed to this app.
 */
void test_thread_handover(void)
{
    char *conv, *conv3, *who;

    wrote("messaging", "th-2", "m_th_2", "handover hello", 200);
    conv = await_conv_in(ws, "handover hello");
    CHECK(holds(conv, true));
    handover("take_thread_control", "th-2", FAKEMETA_INBOX_APP_ID, 150);
    CHECK_WAIT(holds(conv, false), 10000);
    handover("request_thread_control", "th-2", FAKEMETA_APP_ID, 140);
    handover("pass_thread_control", "th-2", FAKEMETA_APP_ID, 130);
    CHECK_WAIT(holds(conv, true), 10000);
    /* An older take arriving late changes nothing. */
    handover("take_thread_control", "th-2", FAKEMETA_INBOX_APP_ID, 190);
    wrote("messaging", "th-2", "m_th_2b", "after the late take", 100);
    free(await_conv_in(ws, "after the late take"));
    CHECK(holds(conv, true));

    wrote("standby", "th-3", "m_th_3", "first seen in standby", 90);
    conv3 = await_conv_in(ws, "first seen in standby");
    CHECK(holds(conv3, false));
    who = assignee(conv3);
    CHECK_MSG(who == NULL, "a thread another app holds was assigned to %s", who);
    free(who);
    handover("pass_thread_control", "th-3", FAKEMETA_APP_ID, 80);
    CHECK_WAIT(holds(conv3, true), 10000);
    who = assignee(conv3);
    CHECK_STR(who, "tara");
    free(who);
    free(conv);
    free(conv3);
}

/*
 * Meta says it first: the thread moved to another app with no webhook yet. The queued reply
 * fails with Meta's reason, the conversation is marked held elsewhere, and the next reply is
 * refused at once. Instagram (Instagram Login) offers no take: refused with the reason.
 */
void test_thread_meta_refusal(void)
{
    char *conv, *v, *why = NULL, q[256];
    const char *take[] = {"conversation", "take", NULL, NULL};

    wrote("messaging", "th-4", "m_th_4", "refusal hello", 60);
    conv = await_conv_in(ws, "refusal hello");
    fakemeta_set_thread_owner(st.meta, PAGE_T, "th-4", FAKEMETA_INBOX_APP_ID);
    CHECK_INT(reply(conv, "refused by Meta", &why), 0);
    free(why);
    snprintf(q, sizeof(q),
             "SELECT status || ': ' || error FROM router.messages WHERE conversation_id = '%s'"
             " AND direction = 'out' AND status <> 'queued'",
             conv);
    CHECK_WAIT((v = th_stack_sql(&st, q)) != NULL, 10000);
    CHECK_CONTAINS(v, "failed: another app controls this conversation's thread");
    CHECK_CONTAINS(v, "2018300");
    free(v);
    CHECK(holds(conv, false));
    CHECK_INT(reply(conv, "second try", &why), 1);
    CHECK_CONTAINS(why, "another app holds");
    free(why);
    free(conv);

    {
        char body[1024];
        snprintf(body, sizeof(body),
                 "{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_T "\",\"time\":%lld,"
                 "\"messaging\":[{\"sender\":{\"id\":\"th-ig\"},\"recipient\":{\"id\":\"" IG_T
                 "\"},\"timestamp\":%lld,\"message\":{\"mid\":\"m_th_ig\",\"text\":\"ig "
                 "thread\"}}]}]}",
                 (long long)now_ms_, (long long)now_ms_ - 60000);
        CHECK_INT(th_stack_webhook(&st, body), 200);
    }
    conv = await_conv_in(ws, "ig thread");
    take[2] = conv;
    CHECK_INT(domsctl(NULL, &why, take), 1);
    CHECK_CONTAINS(why, "Instagram");
    CHECK_CONTAINS(why, "take_thread_control");
    free(why);
    CHECK_INT(fakemeta_takes(st.meta, "th-ig"), 0);
    free(conv);
}

/*
 * mark_seen: off by default, and a read then sends nothing; on, a read of new inbound messages
 * sends one mark_seen, reading them again (another page) sends none, a newer message read
 * sends one more; a conversation another app holds gets none.
 */
void test_mark_seen(void)
{
    const char *on[] = {"workspace", "update", ws, "--mark-seen", "on", NULL};
    const char *bad[] = {"workspace", "update", ws, "--mark-seen", "yes", NULL};
    const char *get[] = {"messages", "list", NULL, "--limit", "1", NULL};
    char *conv, *held_elsewhere, *v;
    cJSON *out = NULL, *r;
    char req[256];

    snprintf(req, sizeof(req), "{\"actor\":\"operator\",\"workspace_id\":\"%s\"}", ws);
    r = th_stack_request(&st, "router.workspace.get", req);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "mark_seen")));
    cJSON_Delete(r);

    wrote("messaging", "th-5", "m_th_5", "seen hello", 50);
    conv = await_conv_in(ws, "seen hello"); /* a read, with mark_seen off */
    v = conv_sql(conv, "seen_upto");
    CHECK_STR(v, "");
    free(v);

    CHECK_INT(domsctl(NULL, NULL, bad), 2);
    CHECK_INT(domsctl(&out, NULL, on), 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(out, "mark_seen")));
    cJSON_Delete(out);
    cJSON_Delete(message_with(conv, "seen hello"));
    CHECK_WAIT(fakemeta_sender_actions(st.meta, "th-5", "mark_seen") == 1, 10000);
    v = conv_sql(conv, "floor(extract(epoch FROM seen_upto))::bigint");
    CHECK_INT(strtoll(v, NULL, 10), (now_ms_ - 50000) / 1000);
    free(v);

    /* Read again, a page at a time: nothing newer, nothing queued. */
    get[2] = conv;
    CHECK_INT(domsctl(NULL, NULL, get), 0);
    cJSON_Delete(message_with(conv, "seen hello"));
    snprintf(req, sizeof(req), "SELECT count(*) FROM router.outbox WHERE msg_id LIKE 'seen:%s:%%'",
             conv);
    v = th_stack_sql(&st, req);
    CHECK_STR(v, "0"); /* the one queued is relayed; none more */
    free(v);

    wrote("messaging", "th-5", "m_th_5b", "seen again", 40);
    free(await_conv_in(ws, "seen again"));
    CHECK_WAIT(fakemeta_sender_actions(st.meta, "th-5", "mark_seen") == 2, 10000);
    CHECK_INT(fakemeta_sender_actions(st.meta, "th-5", "mark_seen"), 2);

    /* The conversation of test_thread_meta_refusal: held elsewhere, so never marked. */
    held_elsewhere = await_conv_in(ws, "refusal hello");
    v = conv_sql(held_elsewhere, "seen_upto");
    CHECK_STR(v, "");
    free(v);
    CHECK_INT(fakemeta_sender_actions(st.meta, "th-4", "mark_seen"), 0);
    free(held_elsewhere);
    free(conv);
}
