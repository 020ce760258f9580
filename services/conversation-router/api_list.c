/*
 * api_list.c - the conversations and the messages of a conversation, a page at a time
 * (proto/router.md#pages).
 *
 * Both lists are read by keyset (page.c): the next page starts after the sort key of the
 * last row given, so a row that arrives meanwhile neither repeats nor hides another. The
 * messages' pages are reads of message content and are audited like any; in a workspace that
 * asks for it, a read of new inbound messages also queues Meta's mark_seen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/audit.h"
#include "common/outbox.h"
#include "router.h"

static int64_t now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Page sizes of the lists: the default, and the most one page may hold (proto/router.md). */
#define CONVERSATIONS_PAGE     100
#define CONVERSATIONS_PAGE_MAX 1000
#define MESSAGES_PAGE          200
#define MESSAGES_PAGE_MAX      5000

/* The next page starts after the row whose sort key (a timestamp, in microseconds) is $n. */
#define AFTER_USEC(n) "('epoch'::timestamptz + " n "::bigint * interval '1 microsecond')"

/*
 * A workspace's conversations, most recent activity first, id (descending) breaking ties;
 * filtered when $2 (status), $3 (assignee, "none": unassigned) or $4 (window) is set. The
 * window is computed from the same milliseconds as router_window_at, at the bounds $5 (24
 * hours ago) and $6 (7 days ago) that the caller computes from its own clock. $7, $8: the
 * cursor's key; $9: the page size and one more, to know whether a next page exists. Each row
 * carries its contact's sealed profile (CONV_COLS columns). (One clause a line, by hand: it
 * reads better than the formatter's layout of the macros.)
 */
#define CONV_COLS 11
/* clang-format off */
static const char conversations_sql[] =
    "SELECT id, platform, contact_id, status, assignee, " ROUTER_RFC3339("last_inbound_at") ","
    " last_ms, (extract(epoch FROM last_activity_at) * 1000000)::bigint, integration_id,"
    " profile_sealed, thread_held"
    " FROM (SELECT v.*, k.profile_sealed,"
    " coalesce((extract(epoch FROM v.last_inbound_at) * 1000)::bigint, 0) AS last_ms"
    " FROM conversations v LEFT JOIN contacts k ON k.id = v.contact_id"
    " WHERE v.workspace_id = $1) c"
    " WHERE ($2::text IS NULL OR status = $2)"
    " AND ($3::text IS NULL OR assignee IS NOT DISTINCT FROM nullif($3, 'none'))"
    " AND ($4::text IS NULL OR CASE $4 WHEN 'open' THEN last_ms > $5::bigint"
    " WHEN 'human_agent' THEN last_ms <= $5::bigint AND last_ms > $6::bigint"
    " ELSE last_ms <= $6::bigint END)"
    " AND ($7::bigint IS NULL OR (last_activity_at, id) < (" AFTER_USEC("$7") ", $8::text))"
    " ORDER BY last_activity_at DESC, id DESC LIMIT $9::int";
/* clang-format on */

/* Is the optional field name given (present and not null)? */
static bool given(const cJSON *req, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);

    return v != NULL && !cJSON_IsNull(v);
}

/* An optional string field that must be one of choices ("|a|b|c|"); false: answered. */
static bool choice_field(struct cm_rpc_call *call, const char *name, const char *choices,
                         const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(call->req, name);
    char padded[64];

    *out = NULL;
    if (!given(call->req, name))
        return true;
    snprintf(padded, sizeof(padded), "|%s|", cJSON_IsString(v) ? v->valuestring : "");
    if (!cJSON_IsString(v) || strchr(v->valuestring, '|') != NULL || v->valuestring[0] == '\0' ||
        strstr(choices, padded) == NULL) {
        /* choices is written "|a|b|c|"; shown without the outer bars */
        cm_rpc_fail(call, "invalid", "%s must be one of %.*s", name, (int)strlen(choices) - 2,
                    choices + 1);
        return false;
    }
    *out = v->valuestring;
    return true;
}

/*
 * The page size (field name, dflt, max) and the cursor (of kind) of a list request into
 * *limit, *usec and key (a cursor absent: *usec -1). False: answered.
 */
static bool page_fields(struct cm_rpc_call *call, const char *name, int dflt, int max, char kind,
                        int *limit, int64_t *usec, char *key, size_t keycap)
{
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(call->req, "cursor");

    if (router_page_size(call->req, name, dflt, max, limit) != CM_OK) {
        cm_rpc_fail(call, "invalid", "%s must be a whole number from 1 to %d", name, max);
        return false;
    }
    *usec = -1;
    if (!given(call->req, "cursor"))
        return true;
    if (cJSON_IsString(cur) &&
        router_cursor_decode(cur->valuestring, kind, usec, key, keycap) == CM_OK)
        return true;
    if (cJSON_IsString(cur) && kind != ROUTER_CURSOR_CONVERSATIONS &&
        router_cursor_decode(cur->valuestring,
                             kind == ROUTER_CURSOR_NEWEST ? ROUTER_CURSOR_OLDEST
                                                          : ROUTER_CURSOR_NEWEST,
                             usec, key, keycap) == CM_OK) {
        cm_rpc_fail(call, "invalid",
                    kind == ROUTER_CURSOR_NEWEST
                        ? "cursor pages forward from the oldest messages: ask again without newest"
                        : "cursor pages back from the newest messages: ask again with newest");
        return false;
    }
    cm_rpc_fail(call, "invalid",
                "cursor is malformed or belongs to another list: pass a next_cursor of this"
                " list back unchanged");
    return false;
}

/* The n rows of cols columns of pg's result, copied (NULL for SQL null); free_rows() frees. */
static char **copy_rows(struct cm_pg *pg, int n, int cols)
{
    char **rows = cm_xcalloc((size_t)n * (size_t)cols + 1, sizeof(char *));

    for (int i = 0; i < n * cols; i++)
        rows[i] = cm_pg_is_null(pg, i / cols, i % cols)
                      ? NULL
                      : cm_xstrdup(cm_pg_value(pg, i / cols, i % cols));
    return rows;
}

static void free_rows(char **rows, int count)
{
    for (int i = 0; i < count; i++)
        free(rows[i]);
    free(rows);
}

/* A string field, or null for NULL. */
static void add_str_or_null(cJSON *o, const char *name, const char *v)
{
    if (v != NULL)
        cJSON_AddStringToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

/*
 * One conversation (a row of conversations_sql, CONV_COLS strings) as the list and the read
 * show it; with picture, also the contact's picture URL. *named is set when a name was shown.
 */
static cJSON *conversation_json(struct router *r, struct cm_pg *pg, const char *ws, char **row,
                                int64_t now, bool picture, bool *named)
{
    cJSON *o = cJSON_CreateObject();
    struct router_profile prof;

    router_profile_open(r, pg, ws, row[8], row[2], row[9], &prof);
    cJSON_AddStringToObject(o, "conversation_id", row[0]);
    cJSON_AddStringToObject(o, "platform", row[1]);
    cJSON_AddStringToObject(o, "contact_id", row[2]);
    add_str_or_null(o, "contact_name", prof.name);
    if (picture)
        add_str_or_null(o, "contact_picture_url", prof.picture_url);
    cJSON_AddStringToObject(o, "status", row[3]);
    add_str_or_null(o, "assignee", row[4]);
    add_str_or_null(o, "last_inbound_at", row[5]);
    cJSON_AddStringToObject(o, "window",
                            router_window_name(router_window_at(now, strtoll(row[6], NULL, 10))));
    cJSON_AddBoolToObject(o, "holds_thread", row[10] != NULL && strcmp(row[10], "t") == 0);
    *named = *named || prof.name != NULL || prof.picture_url != NULL;
    router_profile_cleanup(&prof);
    return o;
}

static void on_conversations_list(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *ws = cm_rpc_str(call, "workspace_id");
    const char *status, *assignee, *window;
    char open_after[24], human_after[24], after_usec[24], after_id[72], limit_s[16];
    const char *params[9] = {ws, NULL, NULL, NULL, open_after, human_after, NULL, NULL, limit_s};
    char next[ROUTER_CURSOR_MAX] = "";
    int64_t now = now_ms(), usec;
    bool named = false;
    int limit, n;
    char **rows;
    cJSON *list;

    if (!router_authorize(call, ws, "viewer", false))
        return;
    if (!choice_field(call, "status", "|open|closed|", &status) ||
        !choice_field(call, "window", "|open|human_agent|closed|", &window) ||
        !page_fields(call, "limit", CONVERSATIONS_PAGE, CONVERSATIONS_PAGE_MAX,
                     ROUTER_CURSOR_CONVERSATIONS, &limit, &usec, after_id, sizeof(after_id)))
        return;
    assignee = cm_rpc_str(call, "assignee");
    if (given(call->req, "assignee") && !router_valid_id(assignee, 128)) {
        cm_rpc_fail(call, "invalid", "assignee must be a member's user id, or none");
        return;
    }
    params[1] = status;
    params[2] = assignee;
    params[3] = window;
    snprintf(open_after, sizeof(open_after), "%lld", (long long)(now - ROUTER_WINDOW_OPEN_MS));
    snprintf(human_after, sizeof(human_after), "%lld", (long long)(now - ROUTER_WINDOW_HUMAN_MS));
    if (usec >= 0) {
        snprintf(after_usec, sizeof(after_usec), "%lld", (long long)usec);
        params[6] = after_usec;
        params[7] = after_id;
    }
    snprintf(limit_s, sizeof(limit_s), "%d", limit + 1);
    /* Planned for its parameters each time: a filter left out must not cost an index. */
    if (cm_pg_exec(call->pg, conversations_sql, 9, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return;
    }
    n = cm_pg_ntuples(call->pg);
    if (n > limit) {
        n = limit;
        router_cursor_encode(ROUTER_CURSOR_CONVERSATIONS,
                             strtoll(cm_pg_value(call->pg, n - 1, 7), NULL, 10),
                             cm_pg_value(call->pg, n - 1, 0), next);
    }
    rows = copy_rows(call->pg, n, CONV_COLS);
    list = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(
            list, conversation_json(r, call->pg, ws, &rows[i * CONV_COLS], now, false, &named));
    free_rows(rows, n * CONV_COLS);
    /* A contact's name is Platform Data: its reading is audited. */
    if (named &&
        cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "contacts.read", ws) != CM_OK) {
        cJSON_Delete(list);
        cm_rpc_fail(call, "unavailable", "the read could not be audited; nothing is shown");
        return;
    }
    cm_rpc_reply_page(call, list, next[0] != '\0' ? next : NULL);
}

/*
 * Rows of a conversation's messages: id, mid, direction, sealed, sent_at, status, the sort
 * key (sent_at in microseconds, seq), standby, its attachments (a JSON array, by position). Oldest
 * first from after the cursor ($2, $3), or newest first from before it; $4 rows at most.
 */
#define MESSAGES_COLS 10
/* clang-format off */
#define MESSAGES_SELECT                                                                            \
    "SELECT id, mid, direction, body_sealed, " ROUTER_RFC3339("sent_at") ", status,"               \
    " (extract(epoch FROM sent_at) * 1000000)::bigint, seq, standby,"                              \
    " (SELECT coalesce(json_agg(json_build_object('attachment_id', a.id, 'type', a.type,"          \
    " 'size', a.size, 'state', a.state) ORDER BY a.position), '[]') FROM attachments a"            \
    " WHERE a.message_id = messages.id)"                                                           \
    " FROM messages WHERE conversation_id = $1"
static const char messages_sql[] = MESSAGES_SELECT
    " AND ($2::bigint IS NULL OR (sent_at, seq) > (" AFTER_USEC("$2") ", $3::bigint))"
    " ORDER BY sent_at, seq LIMIT $4::int";
static const char messages_newest_sql[] = MESSAGES_SELECT
    " AND ($2::bigint IS NULL OR (sent_at, seq) < (" AFTER_USEC("$2") ", $3::bigint))"
    " ORDER BY sent_at DESC, seq DESC LIMIT $4::int";
/* clang-format on */

/* One message row (MESSAGES_COLS strings, NULL for SQL null) as the list shows it. */
static cJSON *message_json(struct router *r, struct cm_pg *pg, const struct router_conv *c,
                           char **row)
{
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;

    if (row[1] != NULL)
        cJSON_AddStringToObject(o, "mid", row[1]);
    else
        cJSON_AddNullToObject(o, "mid");
    cJSON_AddStringToObject(o, "direction", row[2]);
    if (row[3] != NULL)
        text = router_body_text(r, pg, c, row[0], row[3]);
    if (text != NULL)
        cJSON_AddStringToObject(o, "text", text);
    else
        cJSON_AddNullToObject(o, "text");
    cJSON_AddStringToObject(o, "sent_at", row[4]);
    cJSON_AddStringToObject(o, "status", row[5]);
    cJSON_AddBoolToObject(o, "standby", strcmp(row[8], "t") == 0);
    {
        /* Each message's attachments, read in the page's one statement. */
        cJSON *atts = row[9] != NULL ? cJSON_Parse(row[9]) : NULL;
        if (!cJSON_IsArray(atts)) {
            cJSON_Delete(atts);
            atts = cJSON_CreateArray();
        }
        cJSON_AddItemToObject(o, "attachments", atts);
    }
    free(text);
    return o;
}

/*
 * Meta's mark_seen for what the member just read, when the workspace asks for it: queued
 * through the outbox in the read's transaction (the read never waits on Meta; sender.c sends
 * it), once per newer inbound message (seen_upto), and only where Meta allows it: the thread
 * this app's, the integration connected, the 24-hour window open. newest_in: the sort key of
 * the newest message the contact sent to this app on the page (0: none).
 */
/* clang-format off */
static const char seen_sql[] =
    "UPDATE conversations SET seen_upto = " AFTER_USEC("$2") " WHERE id = $1"
    " AND (seen_upto IS NULL OR seen_upto < " AFTER_USEC("$2") ")";
/* clang-format on */

static int queue_seen(struct cm_pg *pg, const struct router_conv *c, int64_t newest_in)
{
    char usec[24], subject[160], msg_id[120], payload[120];
    const char *params[2] = {c->id, usec};
    int rc;

    if (!c->mark_seen || !c->thread_held || newest_in <= 0 ||
        strcmp(c->route_status, "connected") != 0 || c->account[0] == '\0' ||
        router_window_at(now_ms(), c->last_inbound_ms) != ROUTER_WINDOW_OPEN)
        return CM_OK;
    snprintf(usec, sizeof(usec), "%lld", (long long)newest_in);
    rc = cm_pg_exec(pg, seen_sql, 2, params);
    if (rc != CM_OK || cm_pg_affected(pg) == 0)
        return rc;
    snprintf(subject, sizeof(subject), "router.send.%s", c->account);
    snprintf(msg_id, sizeof(msg_id), "seen:%s:%s", c->id, usec);
    snprintf(payload, sizeof(payload), "{\"mark_seen\":\"%s\"}", c->id);
    return cm_outbox_add(pg, subject, msg_id, payload);
}

/*
 * One page of a conversation's messages, always in reading order (oldest first): from the
 * oldest by default, or the newest N ("newest") and then, with its cursor, the N before them.
 */
static void on_messages_list(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    bool newest = given(call->req, "newest");
    char after_usec[24], after_seq[24], limit_s[16], next[ROUTER_CURSOR_MAX] = "";
    const char *params[4] = {NULL, NULL, NULL, limit_s};
    struct cm_pg *pg = call->pg;
    struct router_conv c;
    int64_t usec, newest_in = 0;
    int limit, n;
    char **rows;
    cJSON *list;

    if (!router_conv_load(call, "viewer", false, &c))
        return;
    if (newest && given(call->req, "limit")) {
        cm_rpc_fail(call, "invalid", "newest already says how many: give newest or limit");
        return;
    }
    if (!page_fields(call, newest ? "newest" : "limit", MESSAGES_PAGE, MESSAGES_PAGE_MAX,
                     newest ? ROUTER_CURSOR_NEWEST : ROUTER_CURSOR_OLDEST, &limit, &usec, after_seq,
                     sizeof(after_seq)))
        return;
    params[0] = c.id;
    if (usec >= 0) {
        snprintf(after_usec, sizeof(after_usec), "%lld", (long long)usec);
        params[1] = after_usec;
        params[2] = after_seq;
    }
    snprintf(limit_s, sizeof(limit_s), "%d", limit + 1);
    if (router_begin_read_audit(pg) != CM_OK ||
        cm_pg_exec(pg, newest ? messages_newest_sql : messages_sql, 4, params) != CM_OK) {
        cm_pg_rollback(pg);
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return;
    }
    n = cm_pg_ntuples(pg);
    if (n > limit) {
        n = limit;
        router_cursor_encode(newest ? ROUTER_CURSOR_NEWEST : ROUTER_CURSOR_OLDEST,
                             strtoll(cm_pg_value(pg, n - 1, 6), NULL, 10),
                             cm_pg_value(pg, n - 1, 7), next);
    }
    /* Copy the rows out: opening a value may query the key tables on this connection. */
    rows = cm_xcalloc((size_t)n * MESSAGES_COLS + 1, sizeof(char *));
    for (int i = 0; i < n * MESSAGES_COLS; i++)
        rows[i] = cm_pg_is_null(pg, i / MESSAGES_COLS, i % MESSAGES_COLS)
                      ? NULL
                      : cm_xstrdup(cm_pg_value(pg, i / MESSAGES_COLS, i % MESSAGES_COLS));
    for (int i = 0; i < n; i++) {
        char **row = &rows[i * MESSAGES_COLS];
        int64_t key = strtoll(row[6], NULL, 10);
        if (strcmp(row[2], "in") == 0 && strcmp(row[8], "f") == 0 && key > newest_in)
            newest_in = key;
    }
    list = cJSON_CreateArray();
    /* The newest were read newest first: shown, like every page, oldest first. */
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(
            list, message_json(r, pg, &c, &rows[(newest ? n - 1 - i : i) * MESSAGES_COLS]));
    for (int i = 0; i < n * MESSAGES_COLS; i++)
        free(rows[i]);
    free(rows);
    /* Reading message content is an audit event, committed with the read (and mark_seen). */
    if (queue_seen(pg, &c, newest_in) != CM_OK ||
        cm_audit_add(pg, ROUTER_SERVICE, call->actor, "messages.read", c.id) != CM_OK ||
        cm_pg_commit(pg) != CM_OK) {
        cm_pg_rollback(pg);
        cJSON_Delete(list);
        cm_rpc_fail(call, "unavailable", "the read could not be audited; nothing is shown");
        return;
    }
    cm_rpc_reply_page(call, list, next[0] != '\0' ? next : NULL);
}

/* One conversation as the list shows it, with its contact's picture URL (router.conversation.get).
 */
static void on_conversation_get(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *params[1];
    struct router_conv c;
    bool named = false;
    char **rows;
    cJSON *out;

    if (!router_conv_load(call, "viewer", false, &c))
        return;
    params[0] = c.id;
    if (cm_pg_exec(call->pg,
                   "SELECT v.id, v.platform, v.contact_id, v.status, v.assignee, " ROUTER_RFC3339(
                       "v.last_inbound_at") ","
                                            " coalesce((extract(epoch FROM v.last_inbound_at) *"
                                            " 1000)::bigint, 0), 0, v.integration_id,"
                                            " k.profile_sealed, v.thread_held FROM conversations v "
                                            "LEFT JOIN"
                                            " contacts k ON k.id = v.contact_id WHERE v.id = $1",
                   1, params) != CM_OK ||
        cm_pg_ntuples(call->pg) != 1) {
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return;
    }
    rows = copy_rows(call->pg, 1, CONV_COLS);
    out = conversation_json(r, call->pg, c.ws, rows, now_ms(), true, &named);
    free_rows(rows, CONV_COLS);
    if (named &&
        cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "contacts.read", c.id) != CM_OK) {
        cJSON_Delete(out);
        cm_rpc_fail(call, "unavailable", "the read could not be audited; nothing is shown");
        return;
    }
    cm_rpc_reply(call, out);
}

void router_api_list_register(struct router *r)
{
    cm_rpc_handle(r->rpc, "router.conversation.get", on_conversation_get, r);
    cm_rpc_handle(r->rpc, "router.conversations.list", on_conversations_list, r);
    cm_rpc_handle(r->rpc, "router.messages.list", on_messages_list, r);
}
