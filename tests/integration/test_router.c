/*
 * test_router - conversation-router end to end: signed webhooks in Meta's format through
 * webhook-ingest, token-vault with the Meta stand-in, two router replicas, domsctl. Every
 * event kind, duplicates (the router's own de-duplication is in test_router_dedup.c, the
 * rules of a reply in test_router_reply.c), an
 * unknown account, assignment under capacity, the three
 * windows from Meta's timestamps, every Send API outcome, roles, and a scan that finds no
 * message text, contact id or profile field in plaintext in the router's schema.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "router_suite.h"

struct th_stack st;
struct th_proc ingest, vault, router1, router2, router1_first;
int router1_port, router2_port;
int64_t now_ms_;
const char *const router_env[] = {"SEND_MAX_ATTEMPTS=3", "META_APP_ID=" FAKEMETA_APP_ID, NULL};
char suite_ws[64];

/* One messaging event for the Page, POSTed through ingest; checks the 200. */
static void post(const char *event)
{
    char body[4096];

    snprintf(body, sizeof(body),
             "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\",\"time\":%lld,"
             "\"messaging\":[%s]}]}",
             (long long)now_ms_, event);
    CHECK_MSG(th_stack_webhook(&st, body) == 200, "webhook refused: %s", event);
}

void suite_message(const char *psid, const char *mid, const char *text, int64_t ts)
{
    CHECK_MSG(th_stack_message(&st, false, PAGE, now_ms_, psid, ts, mid, text, NULL) == 200,
              "webhook refused: %s", mid);
}

static cJSON *conversations_in(const char *workspace)
{
    const char *args[] = {"conversations", "list", "--workspace", workspace, NULL};
    return th_stack_run(&st, 0, args);
}

static cJSON *conversations(void)
{
    return conversations_in(suite_ws);
}

static cJSON *messages(const char *conv)
{
    const char *args[] = {"messages", "list", conv, NULL};
    return th_stack_run(&st, 0, args);
}

/* The id of the conversation of workspace holding a message with text (a new string), or
 * NULL. */
static char *conv_with(const char *workspace, const char *text)
{
    cJSON *list = conversations_in(workspace), *c;
    char *found = NULL;

    /* Newest activity first: the one sought is almost always the first looked at, and each
     * look is a domsctl run (slow under the sanitizers). */
    cJSON_ArrayForEach(c, list)
    {
        const char *id = th_json_str(c, "conversation_id", NULL);
        cJSON *msgs, *m;
        if (found != NULL)
            break;
        msgs = messages(id);
        cJSON_ArrayForEach(m, msgs)
        {
            const char *t = th_json_str(m, "text", NULL);
            if (found == NULL && t != NULL && strcmp(t, text) == 0)
                found = cm_xstrdup(id);
        }
        cJSON_Delete(msgs);
    }
    cJSON_Delete(list);
    return found;
}

char *await_conv_in(const char *workspace, const char *text)
{
    char *id = NULL;

    /* A deadline, not a count of looks: each look lists every conversation's messages. */
    if (WAIT_UNTIL((id = conv_with(workspace, text)) != NULL, 10000))
        return id;
    CHECK_MSG(0, "no conversation of %s ever held \"%s\"", workspace, text);
    return cm_xstrdup("none");
}

char *await_conv(const char *text)
{
    return await_conv_in(suite_ws, text);
}

static const cJSON *conv_row(const cJSON *list, const char *id)
{
    const cJSON *c;

    cJSON_ArrayForEach(c, list)
    {
        if (strcmp(th_json_str(c, "conversation_id", NULL), id) == 0)
            return c;
    }
    return NULL;
}

/* Waits until message i of conv has status (reply delivery is asynchronous). */
cJSON *suite_await_status(const char *conv, const char *text, const char *status)
{
    for (int i = 0; i < 300; i++) {
        cJSON *msgs = messages(conv), *m;
        cJSON_ArrayForEach(m, msgs)
        {
            const char *t = th_json_str(m, "text", NULL);
            const char *s = th_json_str(m, "status", NULL);
            if (t && strcmp(t, text) == 0 && s && strcmp(s, status) == 0) {
                cJSON *copy = cJSON_Duplicate(m, 1);
                cJSON_Delete(msgs);
                return copy;
            }
        }
        cJSON_Delete(msgs);
        th_sleep_ms(100);
    }
    CHECK_MSG(0, "\"%s\" never reached status %s", text, status);
    return NULL;
}

static char suite_int[64]; /* the Page's integration */

static void test_setup(void)
{
    th_stack_workspace(&st, "Acme Outdoor", false, suite_ws);
    {
        const char *a[] = {"member", "add",   "--workspace", suite_ws, "--user", "alice",
                           "--role", "agent", "--capacity",  "1",      NULL};
        const char *b[] = {"member", "add",   "--workspace", suite_ws, "--user", "bob",
                           "--role", "agent", "--capacity",  "1",      NULL};
        const char *v[] = {"member", "add",    "--workspace", suite_ws, "--user",
                           "vic",    "--role", "viewer",      NULL};
        cJSON_Delete(th_stack_run(&st, 0, a));
        cJSON_Delete(th_stack_run(&st, 0, b));
        cJSON_Delete(th_stack_run(&st, 0, v));
    }
    /* With the token Meta's Login dialog would have given the business. */
    CHECK(th_stack_connect(&st, suite_ws, "messenger", PAGE, "short-router", NULL, suite_int));
}

char *suite_c1;
static char *c2;

static void test_messages_and_assignment(void)
{
    cJSON *list, *msgs;
    const cJSON *row1, *row2;

    /* Connected a moment ago: routed at once, whatever the projection knows yet. */
    suite_message("cust-1", "m_c1_a", "Hi, is the blue jacket in stock?", now_ms_ - 3600 * 1000);
    suite_c1 = await_conv("Hi, is the blue jacket in stock?");
    /* Meta delivers the same event again: stored once. */
    suite_message("cust-1", "m_c1_a", "Hi, is the blue jacket in stock?", now_ms_ - 3600 * 1000);
    /* An older message arriving after a newer one lists before it. */
    suite_message("cust-1", "m_c1_b", "size M please", now_ms_ - 1800 * 1000);
    suite_message("cust-1", "m_c1_0", "hello?", now_ms_ - 7200 * 1000);
    post("{\"sender\":{\"id\":\"cust-2\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
         "1732870000000,\"postback\":{\"title\":\"Get Started\",\"payload\":\"GET_STARTED\","
         "\"mid\":\"m_c2_pb\"}}");
    c2 = await_conv("Get Started");
    for (int i = 0; i < 100; i++) {
        msgs = messages(suite_c1);
        int n = cJSON_GetArraySize(msgs);
        cJSON_Delete(msgs);
        if (n == 3)
            break;
        th_sleep_ms(50);
    }
    msgs = messages(suite_c1);
    CHECK_INT(cJSON_GetArraySize(msgs), 3);
    CHECK_STR(th_json_str(cJSON_GetArrayItem(msgs, 0), "text", NULL), "hello?");
    CHECK_STR(th_json_str(cJSON_GetArrayItem(msgs, 1), "text", NULL),
              "Hi, is the blue jacket in stock?");
    CHECK_STR(th_json_str(cJSON_GetArrayItem(msgs, 1), "mid", NULL), "m_c1_a");
    CHECK_STR(th_json_str(cJSON_GetArrayItem(msgs, 1), "direction", NULL), "in");
    CHECK_STR(th_json_str(cJSON_GetArrayItem(msgs, 1), "status", NULL), "received");
    CHECK_CONTAINS(th_json_str(cJSON_GetArrayItem(msgs, 1), "sent_at", NULL), "Z");
    cJSON_Delete(msgs);

    list = conversations();
    row1 = conv_row(list, suite_c1);
    row2 = conv_row(list, c2);
    CHECK_STR(th_json_str(row1, "window", NULL), "open");
    CHECK_STR(th_json_str(row1, "status", NULL), "open");
    CHECK_STR(th_json_str(row1, "platform", NULL), "messenger");
    CHECK(strstr(th_json_str(row1, "contact_id", NULL), "cust-") == NULL);
    /* One each: alice and bob have capacity 1. */
    CHECK(th_json_str(row1, "assignee", NULL) != NULL && th_json_str(row2, "assignee", NULL));
    CHECK(strcmp(th_json_str(row1, "assignee", NULL), th_json_str(row2, "assignee", NULL)) != 0);
    /* The postback's timestamp is long past: window closed. */
    CHECK_STR(th_json_str(row2, "window", NULL), "closed");
    cJSON_Delete(list);
}

static void test_waiting_assignment(void)
{
    cJSON *list;
    char *c3;
    const char *close[] = {"conversation", "close", NULL, NULL};

    suite_message("cust-3", "m_c3", "anyone there?", now_ms_ - 60 * 1000);
    c3 = await_conv("anyone there?");
    list = conversations();
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(conv_row(list, c3), "assignee")));
    cJSON_Delete(list);
    close[2] = c2;
    cJSON_Delete(th_stack_run(&st, 0, close));
    list = conversations();
    CHECK_STR(th_json_str(conv_row(list, c2), "status", NULL), "closed");
    CHECK_MSG(th_json_str(conv_row(list, c3), "assignee", NULL) != NULL,
              "a freed agent did not take the waiting conversation");
    cJSON_Delete(list);
    /* A closed conversation reopens on a new inbound message. */
    post("{\"sender\":{\"id\":\"cust-2\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
         "1732870500000,\"message\":{\"mid\":\"m_c2_again\",\"text\":\"me again\"}}");
    free(await_conv("me again"));
    list = conversations();
    CHECK_STR(th_json_str(conv_row(list, c2), "status", NULL), "open");
    cJSON_Delete(list);
    free(c3);
}

/* Every agent's load as kept by the trigger (members.open_assigned) equals the count of their
 * open conversations, after the paths the tests before took: open, close, reopen, waiting
 * assignment, replicas racing. */
static void test_member_load(void)
{
    char *bad = th_stack_sql(&st, "SELECT count(*) FROM router.members m WHERE m.open_assigned <>"
                                  " (SELECT count(*) FROM router.conversations c WHERE"
                                  " c.workspace_id = m.workspace_id AND c.assignee = m.user_id"
                                  " AND c.status = 'open')");
    char *load = th_stack_sql(&st, "SELECT sum(open_assigned) FROM router.members");

    CHECK_STR(bad, "0");
    CHECK_MSG(load != NULL && atol(load) > 0, "no load kept at all: %s", load ? load : "NULL");
    free(bad);
    free(load);
}

static void test_event_kinds(void)
{
    char ev[1024], *before, *after;
    cJSON *msgs;
    int found_echo = 0;

    /* Echo: the business's own message from the Messenger app: outbound, no reopening. */
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"" PAGE "\"},\"recipient\":{\"id\":\"cust-1\"},"
             "\"timestamp\":%lld,\"message\":{\"mid\":\"m_echo_1\",\"is_echo\":true,"
             "\"app_id\":1517776481860111,\"text\":\"Yes, we have it!\"}}",
             (long long)(now_ms_ - 1700 * 1000));
    post(ev);
    /* Edit of the first message, then an older edit that must not win. */
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"cust-1\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
             "%lld,\"message_edit\":{\"mid\":\"m_c1_a\",\"text\":\"Hi, is the navy jacket in "
             "stock?\",\"num_edit\":2}}",
             (long long)now_ms_);
    post(ev);
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"cust-1\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
             "%lld,\"message_edit\":{\"mid\":\"m_c1_a\",\"text\":\"stale edit\",\"num_edit\":1}}",
             (long long)now_ms_);
    post(ev);
    /* Unsend: the content is wiped. */
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"cust-1\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
             "%lld,\"message\":{\"mid\":\"m_c1_0\",\"is_deleted\":true}}",
             (long long)now_ms_);
    post(ev);
    /* Reaction, read, delivery, referral. */
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"cust-1\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
             "%lld,\"reaction\":{\"mid\":\"m_c1_b\",\"action\":\"react\",\"reaction\":\"love\","
             "\"emoji\":\"\\u2764\"}},"
             "{\"sender\":{\"id\":\"cust-1\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
             "%lld,\"read\":{\"watermark\":%lld}},"
             "{\"sender\":{\"id\":\"cust-1\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
             "%lld,\"delivery\":{\"mids\":[\"m_echo_1\"],\"watermark\":%lld}}",
             (long long)now_ms_, (long long)now_ms_, (long long)now_ms_, (long long)now_ms_,
             (long long)now_ms_);
    post(ev);
    snprintf(ev, sizeof(ev),
             "{\"sender\":{\"id\":\"cust-9\"},\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":"
             "%lld,\"referral\":{\"ref\":\"summer-sale\",\"source\":\"SHORTLINK\",\"type\":"
             "\"OPEN_THREAD\"}}",
             (long long)now_ms_);
    post(ev);

    for (int i = 0; i < 100; i++) {
        msgs = messages(suite_c1);
        const char *t0 = th_json_str(cJSON_GetArrayItem(msgs, 0), "text", NULL);
        bool done = cJSON_GetArraySize(msgs) == 4 && t0 == NULL;
        cJSON_Delete(msgs);
        if (done)
            break;
        th_sleep_ms(50);
    }
    msgs = messages(suite_c1);
    CHECK_INT(cJSON_GetArraySize(msgs), 4);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "text")));
    CHECK_STR(th_json_str(cJSON_GetArrayItem(msgs, 1), "text", NULL),
              "Hi, is the navy jacket in stock?");
    for (int i = 0; i < cJSON_GetArraySize(msgs); i++) {
        const cJSON *m = cJSON_GetArrayItem(msgs, i);
        if (strcmp(th_json_str(m, "direction", NULL), "out") == 0) {
            found_echo++;
            CHECK_STR(th_json_str(m, "mid", NULL), "m_echo_1");
            CHECK_STR(th_json_str(m, "status", NULL), "sent");
        }
    }
    CHECK_INT(found_echo, 1);
    cJSON_Delete(msgs);

    /* Accounts with no connected integration (a Page, an Instagram account): discarded,
     * nothing stored. The account is the entry's id, not the event's recipient. */
    before = th_stack_sql(&st, "SELECT count(*) FROM router.messages");
    CHECK_INT(th_stack_webhook(&st, "{\"object\":\"instagram\",\"entry\":[{\"id\":"
                                    "\"17841499999999999\",\"time\":1,\"messaging\":[{"
                                    "\"sender\":{\"id\":\"cust-x\"},\"recipient\":{\"id\":"
                                    "\"17841499999999999\"},\"timestamp\":1732870000000,"
                                    "\"message\":{\"mid\":\"m_unrouted\",\"text\":"
                                    "\"who am I\"}}]}]}"),
              200);
    {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"object\":\"page\",\"entry\":[{\"id\":\"106999999999999\",\"time\":1,"
                 "\"messaging\":[{\"sender\":{\"id\":\"c\"},\"recipient\":{\"id\":\"x\"},"
                 "\"timestamp\":1732870000000,\"message\":{\"mid\":\"m_nobody\",\"text\":"
                 "\"nobody\"}}]}]}");
        CHECK_INT(th_stack_webhook(&st, body), 200);
    }
    suite_message("cust-1", "m_c1_marker", "marker after unrouted", now_ms_ - 1000);
    free(await_conv("marker after unrouted"));
    /* The marker alone was stored: nothing of either unrouted account. */
    after = th_stack_sql(&st, "SELECT count(*) FROM router.messages");
    CHECK_INT(atol(after ? after : "-1"), atol(before ? before : "-2") + 1);
    free(after);
    after = th_stack_sql(
        &st, "SELECT count(*) FROM router.messages WHERE mid IN ('m_nobody', 'm_unrouted')");
    CHECK_STR(after, "0");
    free(before);
    free(after);
}

static void reply_refused(const char *conv, const char *text, bool human, const char *needle)
{
    const char *args[] = {"reply", conv, "--text", text, human ? "--human-agent" : NULL, NULL};
    char *out = NULL;

    CHECK_INT(th_stack_domsctl(&st, NULL, &out, args), 1);
    CHECK_CONTAINS(out, needle);
    free(out);
}

char *suite_reply_ok(const char *conv, const char *text, bool human)
{
    const char *args[] = {"reply", conv, "--text", text, human ? "--human-agent" : NULL, NULL};
    cJSON *out = th_stack_run(&st, 0, args);
    char *id = cm_xstrdup(
        th_json_str(out, "message_id", NULL) ? th_json_str(out, "message_id", NULL) : "");
    CHECK_STR(th_json_str(out, "status", NULL), "queued");
    cJSON_Delete(out);
    return id;
}

static void test_windows(void)
{
    char *human, *late, *old, *body;
    cJSON *m;

    /* 30 hours ago: the human-agent window. */
    suite_message("cust-human", "m_h", "still there?", now_ms_ - 30LL * 3600 * 1000);
    human = await_conv("still there?");
    /* 8 days ago: closed. */
    suite_message("cust-old", "m_o", "ancient", now_ms_ - 8LL * 86400 * 1000);
    old = await_conv("ancient");
    {
        cJSON *list = conversations();
        CHECK_STR(th_json_str(conv_row(list, human), "window", NULL), "human_agent");
        CHECK_STR(th_json_str(conv_row(list, old), "window", NULL), "closed");
        cJSON_Delete(list);
    }
    reply_refused(human, "automated hello", false, "outside the 24-hour messaging window");
    reply_refused(old, "too late", true, "the messaging window is closed");
    reply_refused(old, "too late", false, "the messaging window is closed");
    /* AI-drafted text is never tagged HUMAN_AGENT. */
    {
        char req[256];
        cJSON *r;
        snprintf(req, sizeof(req),
                 "{\"actor\":\"alice\",\"conversation_id\":\"%s\",\"text\":\"draft\","
                 "\"human_agent\":true,\"ai_drafted\":true}",
                 human);
        r = th_stack_request(&st, "router.reply", req);
        CHECK_STR(th_json_str(r, "error", "code"), "refused");
        CHECK_CONTAINS(th_json_str(r, "error", "message"), "AI-drafted");
        cJSON_Delete(r);
    }
    late = suite_reply_ok(human, "Sorry for the wait, I am here.", true);
    m = suite_await_status(human, "Sorry for the wait, I am here.", "sent");
    CHECK(m != NULL && th_json_str(m, "mid", NULL) != NULL);
    cJSON_Delete(m);
    body = fakemeta_last_send(st.meta, "cust-human");
    CHECK_CONTAINS(body, "\"messaging_type\":\"MESSAGE_TAG\"");
    CHECK_CONTAINS(body, "\"tag\":\"HUMAN_AGENT\"");
    free(body);
    /* Inside 24 hours --human-agent is accepted and sent as a plain RESPONSE. */
    free(suite_reply_ok(suite_c1, "It is in stock.", true));
    cJSON_Delete(suite_await_status(suite_c1, "It is in stock.", "sent"));
    body = fakemeta_last_send(st.meta, "cust-1");
    CHECK_CONTAINS(body, "\"messaging_type\":\"RESPONSE\"");
    CHECK(strstr(body, "HUMAN_AGENT") == NULL);
    /* Exactly one recipient. */
    CHECK_CONTAINS(body, "\"recipient\":{\"id\":\"cust-1\"}");
    free(body);
    free(late);
    free(human);
    free(old);
}

static void test_roles(void)
{
    const char *viewer_list[] = {"--actor", "vic", "messages", "list", suite_c1, NULL};
    const char *viewer_reply[] = {"--actor", "vic", "reply", suite_c1, "--text", "hi", NULL};
    const char *stranger[] = {"--actor", "mallory", "conversations", "list", "--workspace",
                              suite_ws,  NULL};
    const char *agent_member[] = {"--actor", "alice", "member", "add",   "--workspace", suite_ws,
                                  "--user",  "eve",   "--role", "admin", NULL};

    cJSON_Delete(th_stack_run(&st, 0, viewer_list));
    th_stack_refused(&st, viewer_reply, "needs the agent role");
    th_stack_refused(&st, stranger, "mallory may not");
    th_stack_refused(&st, agent_member, "needs the admin role");

    /* token-vault asks this router who the actor is (authz.c). */
    {
        const char *agent_connect[] = {
            "--actor", "alice",      "integration", "connect",   "--workspace",
            suite_ws,  "--platform", "instagram",   "--account", "17841400000000999",
            "--token", "st-roles",   NULL};
        const char *viewer_ints[] = {"--actor",     "vic",    "integration", "list",
                                     "--workspace", suite_ws, NULL};
        const char *stranger_ints[] = {"--actor",     "mallory", "integration", "list",
                                       "--workspace", suite_ws,  NULL};
        const char *nowhere[] = {"integration", "connect",   "--workspace", "ws_nowhere",
                                 "--platform",  "instagram", "--account",   "17841400000000998",
                                 "--token",     "st-roles",  NULL};
        const char *agent_end[] = {"--actor",    "alice",   "integration",
                                   "disconnect", suite_int, NULL};
        cJSON *list;

        th_stack_refused(&st, agent_connect, "alice may not do this in workspace");
        th_stack_refused(&st, agent_connect, "needs the admin role");
        th_stack_refused(&st, agent_end, "needs the admin role");
        list = th_stack_run(&st, 0, viewer_ints);
        CHECK(cJSON_GetArraySize(list) >= 1);
        cJSON_Delete(list);
        th_stack_refused(&st, stranger_ints, "mallory may not");
        th_stack_refused(&st, nowhere, "no workspace ws_nowhere");
        /* Nothing was connected by either refusal. */
        CHECK_INT(th_stack_count(&st, "SELECT count(*) FROM vault.integrations WHERE account_id"
                                      " IN ('17841400000000999', '17841400000000998')"),
                  0);
    }
}

/* Two replicas consume the same stream: every message stored once. */
static void test_replicas(void)
{
    char body[65536], *n;
    size_t len = 0;

    router2_port = th_stack_start(&st, &router2, "conversation-router", router_env);
    for (int round = 0; round < 2; round++) {
        len = (size_t)snprintf(body, sizeof(body),
                               "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
                               "\",\"time\":1,\"messaging\":[");
        for (int i = 0; i < 60; i++)
            len +=
                (size_t)snprintf(body + len, sizeof(body) - len,
                                 "%s{\"sender\":{\"id\":\"burst-%d\"},\"recipient\":{\"id\":\"" PAGE
                                 "\"},\"timestamp\":%lld,\"message\":{\"mid\":\"m_burst_%d\","
                                 "\"text\":\"burst %d\"}}",
                                 i ? "," : "", i % 7, (long long)now_ms_, i, i);
        snprintf(body + len, sizeof(body) - len, "]}]}");
        CHECK_INT(th_stack_webhook(&st, body), 200);
    }
    /* Meta retries after the duplicate window too: the mid keeps it single. */
    for (int i = 0; i < 200; i++) {
        n = th_stack_sql(&st, "SELECT count(*) FROM router.messages WHERE mid LIKE 'm_burst_%'");
        bool done = n && strcmp(n, "60") == 0;
        free(n);
        if (done)
            break;
        th_sleep_ms(50);
    }
    n = th_stack_sql(&st, "SELECT count(*) || '/' || count(DISTINCT mid) FROM router.messages"
                          " WHERE mid LIKE 'm_burst_%'");
    CHECK_STR(n, "60/60");
    free(n);
    n = th_stack_sql(
        &st, "SELECT count(*) FROM (SELECT 1 FROM router.conversations c JOIN router.contacts k"
             " ON k.id = c.contact_id WHERE c.status = 'open' GROUP BY c.integration_id,"
             " c.contact_id HAVING count(*) > 1) s");
    CHECK_MSG(n != NULL && strcmp(n, "0") == 0, "a contact has two open conversations: %s",
              n ? n : "(error)");
    free(n);
}

/* No message text, contact id or profile field in plaintext anywhere in the schema. */
static void test_no_plaintext(void)
{
    const char *needles[] = {
        "blue jacket", "navy jacket",        "size M",      "cust-1", "cust-human",
        "burst 3",     "Sorry for the wait", "summer-sale", "love"};
    char q[2048];

    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
        char *hits;
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM ("
                 " SELECT row_to_json(t)::text r FROM router.messages t UNION ALL"
                 " SELECT encode(body_sealed, 'escape') FROM router.messages UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.contacts t UNION ALL"
                 " SELECT encode(psid_sealed, 'escape') FROM router.contacts UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.conversations t UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.workspaces t UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.members t UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.routes t UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.index_keys t UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.data_keys t UNION ALL"
                 " SELECT row_to_json(t)::text FROM router.outbox t) s WHERE r LIKE '%%%s%%'",
                 needles[i]);
        hits = th_stack_sql(&st, q);
        CHECK_MSG(hits != NULL && strcmp(hits, "0") == 0, "\"%s\" found in the router schema",
                  needles[i]);
        free(hits);
    }
}

static void test_logs_clean(void)
{
    struct th_proc *procs[] = {&ingest, &vault, &router1_first, &router1, &router2};
    const char *needles[] = {"blue jacket", "cust-1\"",          "PAGE-", "EAAU-",
                             "IGLL-",       FAKEMETA_APP_SECRET, NULL};

    for (size_t p = 0; p < sizeof(procs) / sizeof(procs[0]); p++)
        free(th_proc_log_lacks(procs[p], needles));
}

int main(void)
{
    th_init("router");
    th_stack_init(&st);
    now_ms_ = th_now_ms();
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    router1_port = th_stack_start(&st, &router1, "conversation-router", router_env);

    RUN(test_setup);
    RUN(test_messages_and_assignment);
    RUN(test_waiting_assignment);
    RUN(test_member_load);
    RUN(test_event_kinds);
    RUN(test_windows);
    RUN(test_send_outcomes);
    RUN(test_hosts);
    RUN(test_reply_setup);
    RUN(test_reply_limits);
    RUN(test_appsecret_proof);
    RUN(test_throttling);
    RUN(test_roles);
    RUN(test_lists_setup);
    RUN(test_lists_paging);
    RUN(test_lists_newest);
    RUN(test_lists_filters);
    RUN(test_lists_refused);
    RUN(test_thread_setup);
    RUN(test_thread_standby);
    RUN(test_thread_handover);
    RUN(test_thread_meta_refusal);
    RUN(test_mark_seen);
    RUN(test_duplicates_in_one_batch);
    RUN(test_replicas);
    RUN(test_duplicates_racing);
    RUN(test_reply_refused_at_once);
    RUN(test_no_plaintext);
    RUN(test_member_load);
    router_dedup_cleanup();
    th_stack_stop(&st);
    RUN(test_logs_clean);
    free(suite_c1);
    free(c2);
    return check_summary();
}
