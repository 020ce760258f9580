/*
 * test_router_lists - the lists page with a cursor (proto/router.md): every row once, in
 * order, even when a message arrives between two pages; the newest messages on request; the
 * conversations' filters (status, assignee, window) against what the router's tables hold;
 * a malformed cursor, another list's cursor and a page size out of range refused. Its rows
 * arrive in one webhook POST, and most pages are asked of the router directly: domsctl runs
 * only where its flags are what is checked. Part of the router test program
 * (router_suite.h), with a workspace and a Page of its own.
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "router_suite.h"

#define PAGE_LISTS "106000000000081"
#define HOUR       (3600LL * 1000)
/* Contacts of one message each: 0-9 wrote an hour ago (window open), 10-16 thirty hours ago
 * (human_agent), 17-23 eight days ago (closed); the chat contact wrote CHAT messages. */
#define CONTACTS 24
#define CHAT     30

static char ws[64];
static char *chat; /* the chat contact's conversation */

/* Meta's timestamp of contact i's message. */
static long long contact_ts(int i)
{
    if (i < 10)
        return (long long)(now_ms_ - HOUR - i * 1000);
    if (i < 17)
        return (long long)(now_ms_ - 30 * HOUR - i * 1000);
    return (long long)(now_ms_ - 8 * 24 * HOUR - i * 1000);
}

/* Appends one message event to body (at *len, cap bytes). */
static void add_event(char *body, size_t cap, size_t *len, const char *psid, const char *mid,
                      long long ts)
{
    *len += (size_t)snprintf(body + *len, cap - *len,
                             "%s{\"sender\":{\"id\":\"%s\"},\"recipient\":{\"id\":\"" PAGE_LISTS
                             "\"},\"timestamp\":%lld,\"message\":{\"mid\":\"%s\",\"text\":\"%s "
                             "says hello\"}}",
                             body[*len - 1] == '[' ? "" : ",", psid, ts, mid, psid);
}

/* POSTs the events (a comma-separated list, from add_event) for the Page through ingest. */
static void post_events(char *body, size_t cap, size_t len)
{
    snprintf(body + len, cap - len, "]}]}");
    CHECK_INT(th_stack_webhook(&st, body), 200);
}

static size_t start_body(char *body, size_t cap)
{
    return (size_t)snprintf(body, cap,
                            "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE_LISTS
                            "\",\"time\":%lld,\"messaging\":[",
                            (long long)now_ms_);
}

/* The count the SQL query gives, awaited (the router stores asynchronously) up to want. */
static void await_count(const char *sql, long want)
{
    CHECK_WAIT(th_db_count(&st.db, NULL, sql) == want, 20000);
}

/* A request to the router as the operator, its body from fmt; returns the whole reply (free
 * it). */
static cJSON *ask(const char *subject, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *ask(const char *subject, const char *fmt, ...)
{
    char req[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(req, sizeof(req), fmt, ap);
    va_end(ap);
    return th_stack_request(&st, subject, req);
}

/* domsctl --json args: the exit code, the parsed stdout into *out, all it printed into *text. */
static int ctl(cJSON **out, char **text, const char *const *args)
{
    return th_stack_domsctl(&st, out, text, args);
}

/* The next page's cursor domsctl printed on stderr (a new string), or NULL. */
static char *printed_cursor(const char *text)
{
    const char *p = text ? strstr(text, "more follow: --cursor ") : NULL;
    size_t n;

    if (p == NULL)
        return NULL;
    p += strlen("more follow: --cursor ");
    n = strcspn(p, "\n");
    return cm_xstrndup(p, n);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The field of every row of list, sorted and comma-separated (a new string). */
static char *sorted_ids(const cJSON *list, const char *field)
{
    int n = cJSON_GetArraySize(list);
    char **ids = cm_xcalloc((size_t)n + 1, sizeof(char *));
    size_t len = 1;
    char *out;

    for (int i = 0; i < n; i++) {
        const char *v = th_json_str(cJSON_GetArrayItem(list, i), field, NULL);
        ids[i] = (char *)(v ? v : "");
        len += strlen(ids[i]) + 1;
    }
    qsort(ids, (size_t)n, sizeof(char *), cmp_str);
    out = cm_xcalloc(len, 1);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            strcat(out, ",");
        strcat(out, ids[i]);
    }
    free(ids);
    return out;
}

/* The ids of the workspace's conversations where cond holds, as sorted_ids writes them. */
static char *conversations_where(const char *cond)
{
    char q[512];
    char *v;

    snprintf(q, sizeof(q),
             "SELECT coalesce(string_agg(id, ',' ORDER BY id COLLATE \"C\"), '') FROM"
             " router.conversations WHERE workspace_id = '%s' AND (%s)",
             ws, cond);
    v = th_stack_sql(&st, q);
    return v ? v : cm_xstrdup("(error)");
}

/* True when list has no two rows with the same field. */
static bool distinct(const cJSON *list, const char *field)
{
    int n = cJSON_GetArraySize(list);

    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(th_json_str(cJSON_GetArrayItem(list, i), field, NULL),
                       th_json_str(cJSON_GetArrayItem(list, j), field, NULL)) == 0)
                return false;
    return true;
}

/* Moves the rows of the array rows to the end of all. */
static void append_rows(cJSON *all, cJSON *rows)
{
    cJSON *row;

    while ((row = cJSON_DetachItemFromArray(rows, 0)) != NULL)
        cJSON_AddItemToArray(all, row);
}

/* Moves the rows of reply's result to the end of (or, with front, before) all. */
static void take_rows(cJSON *all, cJSON *reply, bool front)
{
    cJSON *rows = cJSON_GetObjectItem(reply, "result");

    /* Before: what all held goes after the page's rows, then all takes them back. */
    if (front)
        append_rows(rows, all);
    append_rows(all, rows);
}

/* The reply's next_cursor (a new string), or NULL when it is null. */
static char *next_cursor(const cJSON *reply)
{
    const char *c = th_json_str(reply, "next_cursor", NULL);

    CHECK_MSG(cJSON_GetObjectItem(reply, "next_cursor") != NULL, "no next_cursor in the reply");
    return c ? cm_xstrdup(c) : NULL;
}

void test_lists_setup(void)
{
    static char body[65536];
    char psid[32], mid[32];
    size_t len;

    th_stack_workspace(&st, "Lists", false, ws);
    th_stack_connect(&st, ws, "messenger", PAGE_LISTS, "short-lists", "asid-lists", NULL);

    /* Every row of the lists in one POST: 24 contacts, and a chat of 30 messages whose
     * timestamps come in pairs (the arrival order breaks the tie). */
    len = start_body(body, sizeof(body));
    for (int i = 0; i < CONTACTS; i++) {
        snprintf(psid, sizeof(psid), "lst-%d", i);
        snprintf(mid, sizeof(mid), "m_lst_%d", i);
        add_event(body, sizeof(body), &len, psid, mid, contact_ts(i));
    }
    for (int k = 0; k < CHAT; k++) {
        snprintf(mid, sizeof(mid), "m_lst_chat_%02d", k);
        add_event(body, sizeof(body), &len, "lst-chat", mid,
                  (long long)(now_ms_ - 2 * HOUR + (k / 2) * 1000));
    }
    post_events(body, sizeof(body), len);
    await_count("SELECT count(*) FROM router.messages WHERE mid LIKE 'm\\_lst\\_%'",
                CONTACTS + CHAT);
    chat = th_stack_sql(&st, "SELECT conversation_id FROM router.messages"
                             " WHERE mid = 'm_lst_chat_00'");
    CHECK(chat != NULL);
    if (chat == NULL)
        chat = cm_xstrdup("none");
}

/* Messages of chat oldest first in pages of 7, a newer message arriving after the first. */
void test_lists_paging(void)
{
    static char body[4096];
    cJSON *whole, *paged = cJSON_CreateArray(), *r;
    const char *a, *b;
    char *cursor;
    size_t len;
    int pages = 0;

    whole = ask("router.messages.list", "{\"conversation_id\":\"%s\",\"limit\":%s}", chat, "100");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(whole, "result")), CHAT);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(whole, "next_cursor")));

    r = ask("router.messages.list", "{\"conversation_id\":\"%s\",\"limit\":%s}", chat, "7");
    cursor = next_cursor(r);
    take_rows(paged, r, false);
    cJSON_Delete(r);
    pages++;
    /* A message arrives between two pages: the pages go on where they were and end with it. */
    len = start_body(body, sizeof(body));
    add_event(body, sizeof(body), &len, "lst-chat", "m_lst_chat_new",
              (long long)(now_ms_ - 60 * 1000));
    post_events(body, sizeof(body), len);
    await_count("SELECT count(*) FROM router.messages WHERE mid = 'm_lst_chat_new'", 1);
    while (cursor != NULL && pages < 20) {
        {
            char req[512];
            snprintf(req, sizeof(req), "{\"conversation_id\":\"%s\",\"limit\":7,\"cursor\":\"%s\"}",
                     chat, cursor);
            r = th_stack_request(&st, "router.messages.list", req);
        }
        free(cursor);
        CHECK_MSG(cJSON_GetArraySize(cJSON_GetObjectItem(r, "result")) <= 7, "a page of %d",
                  cJSON_GetArraySize(cJSON_GetObjectItem(r, "result")));
        cursor = next_cursor(r);
        take_rows(paged, r, false);
        cJSON_Delete(r);
        pages++;
    }
    CHECK_INT(pages, 5); /* 31 rows, 7 a page */
    CHECK_INT(cJSON_GetArraySize(paged), CHAT + 1);
    CHECK(distinct(paged, "mid"));
    /* The same rows in the same order as one page read before, then the new one. */
    for (int i = 0; i < CHAT; i++) {
        a = th_json_str(cJSON_GetArrayItem(cJSON_GetObjectItem(whole, "result"), i), "mid", NULL);
        b = th_json_str(cJSON_GetArrayItem(paged, i), "mid", NULL);
        CHECK_MSG(a != NULL && b != NULL && strcmp(a, b) == 0, "row %d: %s, not %s", i,
                  b ? b : "(none)", a ? a : "(none)");
    }
    CHECK_STR(th_json_str(cJSON_GetArrayItem(paged, CHAT), "mid", NULL), "m_lst_chat_new");
    cJSON_Delete(whole);
    cJSON_Delete(paged);

    /* domsctl --all follows the cursors: the same list in one array. */
    {
        const char *args[] = {"messages", "list", chat, "--limit", "9", "--all", NULL};
        char *text = NULL;
        cJSON *out = NULL;
        CHECK_INT(ctl(&out, &text, args), 0);
        CHECK_INT(cJSON_GetArraySize(out), CHAT + 1);
        CHECK(distinct(out, "mid"));
        CHECK(strstr(text ? text : "", "more follow") == NULL);
        cJSON_Delete(out);
        free(text);
    }
}

/* The newest N, in reading order, then the N before them with the cursor, to the first. */
void test_lists_newest(void)
{
    const char *args[] = {"messages", "list", chat, "--newest", "3", NULL};
    cJSON *whole, *back = cJSON_CreateArray(), *r, *out = NULL;
    const cJSON *rows;
    char *cursor, *text = NULL;
    int pages = 0;

    whole = ask("router.messages.list", "{\"conversation_id\":\"%s\",\"limit\":%s}", chat, "100");
    rows = cJSON_GetObjectItem(whole, "result");
    CHECK_INT(cJSON_GetArraySize(rows), CHAT + 1);

    CHECK_INT(ctl(&out, &text, args), 0);
    CHECK_INT(cJSON_GetArraySize(out), 3);
    for (int i = 0; i < 3; i++)
        CHECK_STR(th_json_str(cJSON_GetArrayItem(out, i), "mid", NULL),
                  th_json_str(cJSON_GetArrayItem(rows, CHAT + 1 - 3 + i), "mid", NULL));
    cursor = printed_cursor(text);
    CHECK_MSG(cursor != NULL, "no cursor printed: %s", text ? text : "");
    cJSON_Delete(out);
    free(text);
    free(cursor);

    /* Back through the whole conversation, 5 at a time: every message once. */
    r = ask("router.messages.list", "{\"conversation_id\":\"%s\",\"newest\":%s}", chat, "5");
    for (;;) {
        char req[512];
        cursor = next_cursor(r);
        take_rows(back, r, true);
        cJSON_Delete(r);
        pages++;
        if (cursor == NULL || pages >= 20)
            break;
        snprintf(req, sizeof(req), "{\"conversation_id\":\"%s\",\"newest\":5,\"cursor\":\"%s\"}",
                 chat, cursor);
        free(cursor);
        r = th_stack_request(&st, "router.messages.list", req);
    }
    free(cursor);
    CHECK_INT(pages, 7); /* 31 rows, 5 a page */
    CHECK_INT(cJSON_GetArraySize(back), CHAT + 1);
    for (int i = 0; i < cJSON_GetArraySize(back) && i < CHAT + 1; i++)
        CHECK_STR(th_json_str(cJSON_GetArrayItem(back, i), "mid", NULL),
                  th_json_str(cJSON_GetArrayItem(rows, i), "mid", NULL));
    cJSON_Delete(back);
    cJSON_Delete(whole);
}

/* The conversations' list through domsctl's cursor, and each filter against the tables. */
void test_lists_filters(void)
{
    static char body[4096];
    cJSON *paged = cJSON_CreateArray(), *out = NULL, *r;
    char *text = NULL, *cursor, *want, *got, *seen_mid, psid[32], mid[32];
    int pages = 1, idx;
    size_t len;

    {
        const char *args[] = {"conversations", "list", "--workspace", ws, "--limit", "10", NULL};
        CHECK_INT(ctl(&out, &text, args), 0);
    }
    CHECK_INT(cJSON_GetArraySize(out), 10);
    cursor = printed_cursor(text);
    CHECK_MSG(cursor != NULL, "no cursor printed: %s", text ? text : "");
    free(text);
    /* New activity in a conversation already listed moves it to the top, before the cursor:
     * it is not listed twice. (Its window stays what it was: an older timestamp.) */
    {
        char q[256];
        snprintf(q, sizeof(q),
                 "SELECT mid FROM router.messages WHERE conversation_id = '%s'"
                 " ORDER BY seq LIMIT 1",
                 th_json_str(cJSON_GetArrayItem(out, 0), "conversation_id", NULL));
        seen_mid = th_stack_sql(&st, q);
    }
    append_rows(paged, out);
    cJSON_Delete(out);
    idx = seen_mid && strncmp(seen_mid, "m_lst_chat", 10) != 0 ? atoi(seen_mid + 6) : -1;
    snprintf(psid, sizeof(psid), idx >= 0 ? "lst-%d" : "lst-chat", idx);
    snprintf(mid, sizeof(mid), "m_lst_again_%d", idx);
    len = start_body(body, sizeof(body));
    add_event(body, sizeof(body), &len, psid, mid,
              idx >= 0 ? contact_ts(idx) - 1000 : (long long)(now_ms_ - 3 * HOUR));
    post_events(body, sizeof(body), len);
    free(seen_mid);
    await_count("SELECT count(*) FROM router.messages WHERE mid LIKE 'm\\_lst\\_again\\_%'", 1);
    while (cursor != NULL && pages < 10) {
        const char *args[] = {"conversations", "list", "--workspace", ws, "--limit", "10",
                              "--cursor",      cursor, NULL};
        out = NULL;
        text = NULL;
        CHECK_INT(ctl(&out, &text, args), 0);
        free(cursor);
        cursor = printed_cursor(text);
        append_rows(paged, out);
        cJSON_Delete(out);
        free(text);
        pages++;
    }
    free(cursor);
    CHECK_INT(pages, 3);
    CHECK(distinct(paged, "conversation_id"));
    want = conversations_where("true");
    got = sorted_ids(paged, "conversation_id");
    CHECK_STR(got, want);
    free(want);
    free(got);
    cJSON_Delete(paged);

    /* Something to filter on: one conversation assigned to lia, another closed. */
    r = ask("router.member.add",
            "{\"workspace_id\":\"%s\",\"user\":\"lia\",\"role\":\"agent\",\"capacity\":%s}", ws,
            "1");
    cJSON_Delete(r);
    r = ask("router.conversation.assign", "{\"conversation_id\":\"%s\",\"user\":\"%s\"}", chat,
            "lia");
    CHECK_STR(th_json_str(r, "result", "assignee"), "lia");
    cJSON_Delete(r);
    {
        char *victim = conversations_where("assignee IS NULL AND last_inbound_at <"
                                           " now() - interval '7 days'");
        char *comma = strchr(victim, ',');
        if (comma != NULL)
            *comma = '\0';
        r = ask("router.conversation.close", "{\"conversation_id\":\"%s\"%s}", victim, "");
        CHECK_STR(th_json_str(r, "result", "status"), "closed");
        cJSON_Delete(r);
        free(victim);
    }

    {
        static const struct {
            const char *filter; /* request fields */
            const char *where;  /* the same, of the table */
        } cases[] = {
            {"\"status\":\"open\"", "status = 'open'"},
            {"\"status\":\"closed\"", "status = 'closed'"},
            {"\"assignee\":\"lia\"", "assignee = 'lia'"},
            {"\"assignee\":\"none\"", "assignee IS NULL"},
            {"\"window\":\"open\"", "last_inbound_at >= now() - interval '24 hours'"},
            {"\"window\":\"human_agent\"", "last_inbound_at < now() - interval '24 hours' AND"
                                           " last_inbound_at >= now() - interval '7 days'"},
            {"\"window\":\"closed\"", "last_inbound_at IS NULL OR"
                                      " last_inbound_at < now() - interval '7 days'"},
            {"\"window\":\"closed\",\"status\":\"open\",\"assignee\":\"none\"",
             "(last_inbound_at IS NULL OR last_inbound_at < now() - interval '7 days') AND"
             " status = 'open' AND assignee IS NULL"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            r = ask("router.conversations.list", "{\"workspace_id\":\"%s\",%s}", ws,
                    cases[i].filter);
            want = conversations_where(cases[i].where);
            got = sorted_ids(cJSON_GetObjectItem(r, "result"), "conversation_id");
            CHECK_MSG(strcmp(got, want) == 0 && *want != '\0', "%s: %s, want %s", cases[i].filter,
                      got, want);
            CHECK(cJSON_IsNull(cJSON_GetObjectItem(r, "next_cursor")));
            free(want);
            free(got);
            cJSON_Delete(r);
        }
    }
    /* The counts the timestamps make: 10 contacts and the chat within a day, 7 and 7 older. */
    r = ask("router.conversations.list", "{\"workspace_id\":\"%s\",\"window\":\"%s\"}", ws,
            "human_agent");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(r, "result")), 7);
    cJSON_Delete(r);
    r = ask("router.conversations.list", "{\"workspace_id\":\"%s\",\"window\":\"%s\"}", ws, "open");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(r, "result")), 11);
    cJSON_Delete(r);
    /* domsctl's flags are those fields. */
    {
        const char *args[] = {"conversations", "list",   "--workspace", ws,
                              "--status",      "closed", "--window",    "closed",
                              "--assignee",    "none",   NULL};
        out = NULL;
        CHECK_INT(ctl(&out, NULL, args), 0);
        CHECK_INT(cJSON_GetArraySize(out), 1);
        CHECK_STR(th_json_str(cJSON_GetArrayItem(out, 0), "status", NULL), "closed");
        CHECK_STR(th_json_str(cJSON_GetArrayItem(out, 0), "window", NULL), "closed");
        cJSON_Delete(out);
    }
}

/* A refusal of domsctl args: exit code want and a message holding needle. */
static void refused(int want, const char *needle, const char *const *args)
{
    char *text = NULL;

    CHECK_INT(ctl(NULL, &text, args), want);
    CHECK_MSG(text != NULL && strstr(text, needle) != NULL, "\"%s\" not in: %s", needle,
              text ? text : "(nothing)");
    free(text);
}

/* What is not a page request is refused, with the reason, before anything is read. */
void test_lists_refused(void)
{
    cJSON *r;
    char *conv_cursor = NULL, *newest_cursor = NULL;

    r = ask("router.conversations.list", "{\"workspace_id\":\"%s\",\"limit\":%s}", ws, "1");
    conv_cursor = next_cursor(r);
    cJSON_Delete(r);
    r = ask("router.messages.list", "{\"conversation_id\":\"%s\",\"newest\":%s}", chat, "1");
    newest_cursor = next_cursor(r);
    cJSON_Delete(r);
    if (conv_cursor == NULL || newest_cursor == NULL) {
        CHECK_MSG(0, "no cursor to misuse");
        free(conv_cursor);
        free(newest_cursor);
        return;
    }
    {
        const char *garbage[] = {"conversations",    "list", "--workspace", ws, "--cursor",
                                 "bm90IGEgY3Vyc29y", NULL};
        const char *backwards[] = {"messages", "list", chat, "--cursor", newest_cursor, NULL};
        const char *zero[] = {"conversations", "list", "--workspace", ws, "--limit", "0", NULL};
        const char *word[] = {"messages", "list", chat, "--limit", "ten", NULL};
        const char *ajar[] = {"conversations", "list", "--workspace", ws, "--window", "ajar", NULL};
        const char *all_newest[] = {"messages", "list", chat, "--newest", "3", "--all", NULL};
        refused(1, "cursor is malformed or belongs to another list", garbage);
        refused(1, "ask again with newest", backwards);
        refused(1, "limit must be a whole number from 1 to 1000", zero);
        refused(2, "--limit takes a whole number", word);
        refused(2, "--window takes open|human_agent|closed", ajar);
        refused(2, "not with --newest", all_newest);
    }
    /* The router's own reasons (domsctl shows any of them as above, exit 1). */
    {
        static const struct {
            const char *subject, *fields, *reason;
        } cases[] = {
            {"router.conversations.list", "\"limit\":1001",
             "limit must be a whole number from 1 to 1000"},
            {"router.messages.list", "\"newest\":5001",
             "newest must be a whole number from 1 to 5000"},
            {"router.messages.list", "\"newest\":3,\"limit\":3", "give newest or limit"},
        };
        char req[512];
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            snprintf(req, sizeof(req), "{\"workspace_id\":\"%s\",\"conversation_id\":\"%s\",%s}",
                     ws, chat, cases[k].fields);
            r = th_stack_request(&st, cases[k].subject, req);
            CHECK_STR(th_json_str(r, "error", "code"), "invalid");
            CHECK_CONTAINS(th_json_str(r, "error", "message"), cases[k].reason);
            cJSON_Delete(r);
        }
        snprintf(req, sizeof(req), "{\"conversation_id\":\"%s\",\"cursor\":\"%s\"}", chat,
                 conv_cursor);
        r = th_stack_request(&st, "router.messages.list", req);
        CHECK_CONTAINS(th_json_str(r, "error", "message"), "belongs to another list");
        cJSON_Delete(r);
    }
    /* Fields of the wrong type or shape, as another caller might send them. */
    {
        static const char *const bad[] = {
            "\"limit\":\"5\"",
            "\"limit\":2.5",
            "\"cursor\":12",
            "\"status\":\"gone\"",
            "\"status\":5",
            "\"assignee\":\"li a\"",
            "\"window\":\"open|closed\"",
            "\"cursor\":\"\"",
        };
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            r = ask("router.conversations.list", "{\"workspace_id\":\"%s\",%s}", ws, bad[k]);
            CHECK_MSG(th_json_str(r, "error", "code") != NULL &&
                          strcmp(th_json_str(r, "error", "code"), "invalid") == 0,
                      "%s: not refused as invalid", bad[k]);
            cJSON_Delete(r);
        }
    }
    /* Authorization first, as before: a stranger learns nothing, not even that a cursor is
     * malformed. */
    {
        char req[512];
        snprintf(req, sizeof(req),
                 "{\"actor\":\"mallory\",\"workspace_id\":\"%s\",\"cursor\":\"%s\"}", ws,
                 conv_cursor);
        r = th_stack_request(&st, "router.conversations.list", req);
        CHECK_STR(th_json_str(r, "error", "code"), "denied");
        cJSON_Delete(r);
        snprintf(req, sizeof(req),
                 "{\"actor\":\"mallory\",\"conversation_id\":\"%s\",\"newest\":0}", chat);
        r = th_stack_request(&st, "router.messages.list", req);
        CHECK_STR(th_json_str(r, "error", "code"), "denied");
        cJSON_Delete(r);
    }
    free(conv_cursor);
    free(newest_cursor);
    free(chat);
    chat = NULL;
}
