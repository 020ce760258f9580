/*
 * backfill_meta.c - Meta's Conversations API, as a backfill reads it.
 *
 * Messenger: GET graph.facebook.com/{version}/{page-id}/conversations?platform=messenger with
 * the Page token; Instagram (Instagram API with Instagram Login): GET
 * graph.instagram.com/{version}/me/conversations?platform=instagram with the account's
 * token. Both list the account's conversations most recently updated first, paged by
 * cursors; each conversation's messages come from its messages edge, newest first, with
 * id, created_time, from, to, message and attachments. Every call carries appsecret_proof.
 *
 * Pacing and throttling: calls of one job are spaced to Meta's documented 2 a second per
 * account. A throttling answer (4, 17, 32, 613, the business use case codes 80001-80014:
 * 80006 Messenger's, 80002 Instagram's) stops the job for the time
 * X-Business-Use-Case-Usage's estimated_time_to_regain_access gives (minutes), or a minute;
 * usage at BACKFILL_USAGE_PAUSE_PCT of any budget (X-App-Usage, the business use case's)
 * pauses it the same way before Meta has to refuse. The job (backfill.c) records the wait.
 *
 * What is kept of a message is what a webhook gives: ids, Meta's time, the text and the
 * attachments. Names, usernames and e-mail addresses Meta adds to from and to are dropped
 * here, never sealed or stored.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backfill.h"
#include "common/log.h"

/* Wall-clock seconds: the last call's time is shared through the job's row, across processes. */
static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until a call is due under the account's rate (a worker thread: sleeping is pacing). */
static void pace(struct bf_meta *m)
{
    double gap = 1.0 / BACKFILL_CALLS_PER_S, wait = m->last_call + gap - wall_s();

    if (wait > gap)
        wait = gap; /* another host's clock ahead of ours: never more than one gap */
    if (m->last_call > 0 && wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
        nanosleep(&ts, NULL);
    }
    m->last_call = wall_s();
}

int64_t bf_meta_time_ms(const char *s)
{
    struct tm tm;
    const char *end;

    if (s == NULL)
        return 0;
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S%z", &tm);
    if (end == NULL || *end != '\0')
        return 0;
    return ((int64_t)timegm(&tm) - tm.tm_gmtoff) * 1000;
}

/* The largest percentage of a usage object's budgets (call_count, total_time,
 * total_cputime). */
static double usage_pct(const cJSON *o)
{
    static const char *const keys[] = {"call_count", "total_time", "total_cputime"};
    double max = 0;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (cJSON_IsNumber(v) && v->valuedouble > max)
            max = v->valuedouble;
    }
    return max;
}

/*
 * What Meta's usage headers say of the next call: the wait in seconds they ask for
 * (estimated_time_to_regain_access, in minutes), a minute when a budget is near its end,
 * else 0.
 */
static int usage_wait_s(const struct cm_httpc_response *resp)
{
    cJSON *app = cJSON_Parse(cm_httpc_header(resp, "X-App-Usage") ?: "null");
    cJSON *buc = cJSON_Parse(cm_httpc_header(resp, "X-Business-Use-Case-Usage") ?: "null");
    const cJSON *acct, *uc;
    double pct = usage_pct(app);
    int wait = 0;

    cJSON_ArrayForEach(acct, buc)
    {
        cJSON_ArrayForEach(uc, acct)
        {
            const cJSON *regain =
                cJSON_GetObjectItemCaseSensitive(uc, "estimated_time_to_regain_access");
            if (cJSON_IsNumber(regain) && regain->valuedouble * 60 > wait)
                wait = (int)(regain->valuedouble * 60);
            if (usage_pct(uc) > pct)
                pct = usage_pct(uc);
        }
    }
    cJSON_Delete(app);
    cJSON_Delete(buc);
    if (wait == 0 && pct >= BACKFILL_USAGE_PAUSE_PCT)
        wait = BACKFILL_THROTTLE_WAIT_S;
    return wait;
}

/* httpc retries what got no answer and 5xx; throttling is the job's to wait out. */
static bool retry_policy(const struct cm_httpc_response *resp, void *arg)
{
    (void)arg;
    if (resp->has_meta_error && cm_httpc_meta_throttling(resp->meta_error.code))
        return false;
    return resp->status == 0 || resp->status >= 500;
}

/*
 * GETs url (path and query, the proof added here) from the account's host into *json.
 * Returns as bf_conversations().
 */
static int get(struct bf_meta *m, const char *path, const char *query, cJSON **json)
{
    struct cm_httpc_request req = {0};
    struct cm_httpc_response resp;
    struct cm_buf url, auth;
    const char *headers[2];
    bool ig = strcmp(m->platform, "instagram") == 0;
    int rc;

    *json = NULL;
    cm_buf_init(&url);
    cm_buf_init(&auth);
    cm_httpc_response_init(&resp);
    cm_buf_printf(&url, "%s/%s/%s?%s", ig ? m->r->cfg->ig_graph_url : m->r->cfg->graph_url,
                  m->r->cfg->graph_version, path, query);
    if (m->proof[0] != '\0')
        cm_buf_printf(&url, "&appsecret_proof=%s", m->proof);
    cm_buf_printf(&auth, "Authorization: Bearer %s", m->token);
    headers[0] = auth.data;
    headers[1] = NULL;
    req.method = "GET";
    req.url = url.data;
    req.headers = headers;
    req.meta = true;
    req.max_attempts = 3;
    req.timeout_ms = 15000;
    req.deadline_ms = 30000;
    req.retryable = retry_policy;
    pace(m);
    m->calls++;
    rc = cm_httpc_do(m->http, &req, &resp);
    m->wait_s = resp.status != 0 ? usage_wait_s(&resp) : 0;
    if (resp.has_meta_error && cm_httpc_meta_throttling(resp.meta_error.code)) {
        if (m->wait_s == 0)
            m->wait_s = BACKFILL_THROTTLE_WAIT_S;
        snprintf(m->why, sizeof(m->why), "Meta throttled (code %d): %s", resp.meta_error.code,
                 resp.meta_error.message);
        rc = CM_AGAIN;
    } else if (resp.has_meta_error) {
        snprintf(m->why, sizeof(m->why), "Meta refused: %s (code %d, subcode %d)",
                 resp.meta_error.message, resp.meta_error.code, resp.meta_error.subcode);
        rc = resp.status >= 500 || resp.meta_error.code == 1 || resp.meta_error.code == 2
                 ? CM_UNAVAIL
                 : CM_DENIED;
    } else if (resp.status != 200) {
        snprintf(m->why, sizeof(m->why), "Meta answered HTTP %ld%s", resp.status,
                 resp.status == 0 ? " (no answer)" : "");
        rc = resp.status == 0 || resp.status >= 500 || resp.status == 429 ? CM_UNAVAIL : CM_DENIED;
    } else {
        *json = cJSON_ParseWithLength(resp.body.data, resp.body.len);
        rc = cJSON_IsObject(*json) ? CM_OK : CM_INVALID;
        if (rc != CM_OK)
            snprintf(m->why, sizeof(m->why), "Meta's answer is not a JSON object");
    }
    if (rc != CM_OK) {
        cJSON_Delete(*json);
        *json = NULL;
    }
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&auth);
    cm_buf_cleanup(&url);
    return rc;
}

/* Meta's "after" cursor of a page into after, and whether a next page exists. */
static bool next_page(const cJSON *o, char *after, size_t cap)
{
    const cJSON *paging = cJSON_GetObjectItemCaseSensitive(o, "paging");
    const char *a = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(paging, "cursors"), "after"));

    after[0] = '\0';
    if (a == NULL || cJSON_GetObjectItemCaseSensitive(paging, "next") == NULL || strlen(a) >= cap)
        return false;
    snprintf(after, cap, "%s", a);
    return true;
}

/* A query value: Meta's cursors are URL-safe base64, but nothing from outside is trusted. */
static bool url_safe(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("-_.=~", *s) != NULL))
            return false;
    }
    return true;
}

int bf_conversations(struct bf_meta *m, const char *after, struct bf_page *page)
{
    bool ig = strcmp(m->platform, "instagram") == 0;
    char path[128], query[768];
    const cJSON *c;
    cJSON *json;
    int rc;

    memset(page, 0, sizeof(*page));
    if (after != NULL && !url_safe(after)) {
        snprintf(m->why, sizeof(m->why), "a cursor of Meta's with characters it never uses");
        return CM_INVALID;
    }
    snprintf(path, sizeof(path), "%s/conversations", ig ? "me" : m->account);
    snprintf(query, sizeof(query), "platform=%s&fields=id,updated_time&limit=%d%s%s",
             ig ? "instagram" : "messenger", BACKFILL_CONV_PAGE, after ? "&after=" : "",
             after ? after : "");
    rc = get(m, path, query, &json);
    if (rc != CM_OK)
        return rc;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(json, "data"))
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "id"));
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "updated_time"));
        if (page->n == BACKFILL_CONV_PAGE)
            break;
        if (id == NULL || !url_safe(id) || strlen(id) >= sizeof(page->convs[0].id)) {
            rc = CM_INVALID;
            snprintf(m->why, sizeof(m->why), "a conversation without a usable id");
            break;
        }
        snprintf(page->convs[page->n].id, sizeof(page->convs[0].id), "%s", id);
        page->convs[page->n++].updated_ms = bf_meta_time_ms(t);
    }
    page->more = rc == CM_OK && next_page(json, page->after, sizeof(page->after));
    cJSON_Delete(json);
    return rc;
}

/* Meta's attachments ({"data": [{"mime_type", "image_data": {"url"}, "file_url", ...}]}) in
 * the webhook's form ([{"type", "payload": {"url"}}]), added to message. */
static void add_attachments(cJSON *message, const cJSON *atts)
{
    const cJSON *a;
    cJSON *out = NULL;

    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(atts, "data"))
    {
        const char *mime = cJSON_GetStringValue(cJSON_GetObjectItem(a, "mime_type"));
        const char *url =
            cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "image_data"), "url"));
        cJSON *item, *payload;
        if (url == NULL)
            url = cJSON_GetStringValue(
                cJSON_GetObjectItem(cJSON_GetObjectItem(a, "video_data"), "url"));
        if (url == NULL)
            url = cJSON_GetStringValue(cJSON_GetObjectItem(a, "file_url"));
        if (out == NULL)
            out = cJSON_AddArrayToObject(message, "attachments");
        item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "type",
                                mime == NULL                      ? "file"
                                : strncmp(mime, "image/", 6) == 0 ? "image"
                                : strncmp(mime, "video/", 6) == 0 ? "video"
                                : strncmp(mime, "audio/", 6) == 0 ? "audio"
                                                                  : "file");
        payload = cJSON_AddObjectToObject(item, "payload");
        if (url != NULL)
            cJSON_AddStringToObject(payload, "url", url);
        cJSON_AddItemToArray(out, item);
    }
}

/*
 * One message of Meta's list as the event a webhook would have carried; NULL for one
 * without id, time or sender (logged by the caller's count).
 */
static cJSON *event_of(const struct bf_meta *m, const cJSON *msg)
{
    const char *mid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "id"));
    const char *from = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(msg, "from"), "id"));
    const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(msg, "to"), "data"), 0), "id"));
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "message"));
    int64_t ts = bf_meta_time_ms(
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "created_time")));
    bool echo = from != NULL && strcmp(from, m->account) == 0;
    cJSON *wrap, *ev, *message;

    if (mid == NULL || from == NULL || ts <= 0 || (echo && to == NULL))
        return NULL;
    wrap = cJSON_CreateObject();
    cJSON_AddStringToObject(wrap, "platform", m->platform);
    cJSON_AddStringToObject(wrap, "account_id", m->account);
    cJSON_AddStringToObject(wrap, "source", "backfill");
    cJSON_AddStringToObject(wrap, "kind", echo ? "echo" : "message");
    ev = cJSON_AddObjectToObject(wrap, "event");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(ev, "sender"), "id", from);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(ev, "recipient"), "id", echo ? to : m->account);
    cJSON_AddNumberToObject(ev, "timestamp", (double)ts);
    message = cJSON_AddObjectToObject(ev, "message");
    cJSON_AddStringToObject(message, "mid", mid);
    if (echo)
        cJSON_AddBoolToObject(message, "is_echo", true);
    if (text != NULL && text[0] != '\0')
        cJSON_AddStringToObject(message, "text", text);
    add_attachments(message, cJSON_GetObjectItemCaseSensitive(msg, "attachments"));
    return wrap;
}

int bf_messages(struct bf_meta *m, const char *conv, int64_t since_ms, cJSON **out)
{
    char path[200], query[768], after[512] = "";
    cJSON *all = cJSON_CreateArray();
    bool more = true;
    int rc = CM_OK;

    *out = NULL;
    snprintf(path, sizeof(path), "%s/messages", conv);
    while (rc == CM_OK && more) {
        const cJSON *msg;
        cJSON *json;
        snprintf(query, sizeof(query),
                 "fields=id,created_time,from,to,message,attachments&limit=%d%s%s",
                 BACKFILL_MSG_PAGE, after[0] ? "&after=" : "", after);
        rc = get(m, path, query, &json);
        if (rc != CM_OK)
            break;
        more = next_page(json, after, sizeof(after)) && url_safe(after);
        /* Newest first: the page ends the walk once it reaches what is older than since. */
        cJSON_ArrayForEach(msg, cJSON_GetObjectItemCaseSensitive(json, "data"))
        {
            int64_t ts = bf_meta_time_ms(
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "created_time")));
            cJSON *wrap;
            if (ts > 0 && ts < since_ms) {
                more = false;
                break;
            }
            if ((wrap = event_of(m, msg)) != NULL)
                cJSON_InsertItemInArray(all, 0, wrap); /* oldest first */
            else
                CM_WARN("backfill: a message of Meta's without id, time or sender skipped");
        }
        cJSON_Delete(json);
    }
    if (rc == CM_OK)
        *out = all;
    else
        cJSON_Delete(all);
    return rc;
}
