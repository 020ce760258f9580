/*
 * fakemeta_conversations.c - Meta's Conversations API in the stand-in: what a backfill
 * reads (fakemeta.h lists the endpoints and the hooks).
 *
 * Conversations are kept per account and host: a test puts messages "at Meta" with
 * fakemeta_conv_add() that no webhook ever carried. The list is most recently updated first
 * and a conversation's messages newest first, each paged by an opaque "after" cursor with a
 * "next" URL while more remain, as Graph pages them. A message has Meta's fields: id,
 * created_time ("2026-12-05T10:00:00+0000"), from and to (with a name and an e-mail on
 * Messenger, a username on Instagram: what the suite must never store), message, and
 * attachments when given (fakemeta_conv_attach(): {"data": [{"id", "mime_type", "name",
 * "size", and "image_data": {"url", "preview_url"}, "video_data": {"url"} or "file_url"}]},
 * Graph's message attachments).
 *
 * Meta's documented limit, 2 calls a second per account, is enforced: a third call within a
 * second answers the business use case code (80006 Messenger, 80002 Instagram) and is
 * counted (fakemeta_conv_over_limit()). fakemeta_conv_throttle() scripts throttling answers
 * mid-way, with X-Business-Use-Case-Usage's estimated_time_to_regain_access.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mem.h"
#include "fakemeta_int.h"
#include "harness.h"

#define MAX_RATES 64

struct fm_msg {
    char mid[96];
    char contact[80];
    char text[512];
    int64_t created_ms;
    bool from_business;
    char att_url[1024], att_mime[64]; /* one attachment, or "" */
    size_t att_size;
};

struct fm_conv {
    char id[128];
    char account[80];
    int host;
    char contact[80];
    struct fm_msg *msgs;
    int n, cap;
    int64_t updated_ms;
};

struct fm_convs {
    struct fm_conv *convs;
    int n, cap;
    int throttle_after, throttle_code, throttle_left, regain_min;
    int usage_pct;
    long calls, over_limit;
    struct {
        char account[80];
        int64_t at[2]; /* the account's last two calls, ms */
    } rates[MAX_RATES];
    int nrates;
};

/* The state, created on first use; under m->lock. */
static struct fm_convs *state(struct fakemeta *m)
{
    if (m->convs == NULL) {
        m->convs = cm_xcalloc(1, sizeof(*m->convs));
        m->convs->usage_pct = 1;
    }
    return m->convs;
}

void fm_conversations_free(struct fakemeta *m)
{
    if (m->convs == NULL)
        return;
    for (int i = 0; i < m->convs->n; i++)
        free(m->convs->convs[i].msgs);
    free(m->convs->convs);
    free(m->convs);
    m->convs = NULL;
}

void fakemeta_conv_add(struct fakemeta *m, enum fakemeta_host host, const char *account,
                       const char *contact, const char *mid, const char *text, int64_t created_ms,
                       bool from_business)
{
    struct fm_convs *s;
    struct fm_conv *c = NULL;
    struct fm_msg *msg;

    pthread_mutex_lock(&m->lock);
    s = state(m);
    for (int i = 0; i < s->n && c == NULL; i++) {
        if (s->convs[i].host == (int)host && strcmp(s->convs[i].account, account) == 0 &&
            strcmp(s->convs[i].contact, contact) == 0)
            c = &s->convs[i];
    }
    if (c == NULL) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 16;
            s->convs = cm_xrealloc(s->convs, (size_t)s->cap * sizeof(*s->convs));
        }
        c = &s->convs[s->n++];
        memset(c, 0, sizeof(*c));
        /* Ids shaped like Meta's: t_ on Messenger, base64 of "ig_" on Instagram. */
        snprintf(c->id, sizeof(c->id), "%s%s", host == FAKEMETA_INSTAGRAM ? "aWdf" : "t_", contact);
        snprintf(c->account, sizeof(c->account), "%s", account);
        snprintf(c->contact, sizeof(c->contact), "%s", contact);
        c->host = (int)host;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->msgs = cm_xrealloc(c->msgs, (size_t)c->cap * sizeof(*c->msgs));
    }
    msg = &c->msgs[c->n++];
    memset(msg, 0, sizeof(*msg));
    snprintf(msg->mid, sizeof(msg->mid), "%s", mid);
    snprintf(msg->contact, sizeof(msg->contact), "%s", contact);
    snprintf(msg->text, sizeof(msg->text), "%s", text);
    msg->created_ms = created_ms;
    msg->from_business = from_business;
    if (created_ms > c->updated_ms)
        c->updated_ms = created_ms;
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_conv_attach(struct fakemeta *m, const char *mid, const char *mime, const char *url,
                          size_t size)
{
    struct fm_convs *s;

    pthread_mutex_lock(&m->lock);
    s = state(m);
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < s->convs[i].n; k++) {
            struct fm_msg *msg = &s->convs[i].msgs[k];
            if (strcmp(msg->mid, mid) != 0)
                continue;
            snprintf(msg->att_url, sizeof(msg->att_url), "%s", url);
            snprintf(msg->att_mime, sizeof(msg->att_mime), "%s", mime);
            msg->att_size = size;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_conv_throttle(struct fakemeta *m, int after, int code, int count, int regain_minutes)
{
    pthread_mutex_lock(&m->lock);
    state(m)->throttle_after = after;
    state(m)->throttle_code = code;
    state(m)->throttle_left = count;
    state(m)->regain_min = regain_minutes;
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_conv_usage(struct fakemeta *m, int pct)
{
    pthread_mutex_lock(&m->lock);
    state(m)->usage_pct = pct;
    pthread_mutex_unlock(&m->lock);
}

long fakemeta_conv_calls(struct fakemeta *m)
{
    long n;

    pthread_mutex_lock(&m->lock);
    n = state(m)->calls;
    pthread_mutex_unlock(&m->lock);
    return n;
}

long fakemeta_conv_over_limit(struct fakemeta *m)
{
    long n;

    pthread_mutex_lock(&m->lock);
    n = state(m)->over_limit;
    pthread_mutex_unlock(&m->lock);
    return n;
}

/* Usage headers of a call for account at pct, with the wait Meta would give. */
static void usage(struct fakehttp_response *resp, const char *account, int host, int pct,
                  int regain_min)
{
    char v[512];

    snprintf(v, sizeof(v), "{\"call_count\":%d,\"total_time\":%d,\"total_cputime\":%d}", pct,
             pct / 2, pct / 2);
    fakehttp_set_header(resp, "X-App-Usage", v);
    snprintf(v, sizeof(v),
             "{\"%s\":[{\"type\":\"%s\",\"call_count\":%d,\"total_cputime\":%d,\"total_time\":%d,"
             "\"estimated_time_to_regain_access\":%d}]}",
             account, host == FAKEMETA_INSTAGRAM ? "instagram" : "messenger", pct, pct / 2, pct / 2,
             regain_min);
    fakehttp_set_header(resp, "X-Business-Use-Case-Usage", v);
}

/*
 * Counts a call of account; answers a throttling error (scripted, or the 2-a-second limit
 * passed) and returns true when the call is refused.
 */
static bool limited(struct fakemeta *m, const char *account, int host,
                    struct fakehttp_response *resp)
{
    struct fm_convs *s;
    int code = 0, regain = 0, pct, slot = -1;
    int64_t t = th_now_ms();
    char body[512];
    const char *text;

    pthread_mutex_lock(&m->lock);
    s = state(m);
    s->calls++;
    for (int i = 0; i < s->nrates && slot < 0; i++) {
        if (strcmp(s->rates[i].account, account) == 0)
            slot = i;
    }
    if (slot < 0 && s->nrates < MAX_RATES) {
        slot = s->nrates++;
        snprintf(s->rates[slot].account, sizeof(s->rates[slot].account), "%s", account);
    }
    /* A third call within a second (a little slack for the network's jitter). */
    if (slot >= 0 && s->rates[slot].at[0] != 0 && t - s->rates[slot].at[0] < 900) {
        s->over_limit++;
        code = host == FAKEMETA_INSTAGRAM ? 80002 : 80006;
    }
    if (slot >= 0) {
        s->rates[slot].at[0] = s->rates[slot].at[1];
        s->rates[slot].at[1] = t;
    }
    if (code == 0 && s->throttle_left != 0) {
        if (s->throttle_after > 0) {
            s->throttle_after--;
        } else {
            code = s->throttle_code;
            regain = s->regain_min;
            if (s->throttle_left > 0)
                s->throttle_left--;
        }
    }
    pct = code != 0 ? 100 : s->usage_pct;
    pthread_mutex_unlock(&m->lock);
    usage(resp, account, host, pct, regain);
    if (code == 0)
        return false;
    switch (code) {
    case 4:
        text = "(#4) Application request limit reached";
        break;
    case 17:
        text = "(#17) User request limit reached";
        break;
    case 32:
        text = "(#32) Page request limit reached";
        break;
    case 613:
        text = "(#613) Calls to this api have exceeded the rate limit.";
        break;
    case 80002:
        text = "(#80002) There have been too many calls to this Instagram account. Wait a bit "
               "and try again. For more info, please refer to "
               "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.";
        break;
    default:
        text = "(#80006) There have been too many messenger api calls to this Page account. Wait "
               "a bit and try again. For more info, please refer to "
               "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.";
        break;
    }
    snprintf(body, sizeof(body),
             "{\"error\":{\"message\":\"%s\",\"type\":\"OAuthException\",\"is_transient\":true,"
             "\"code\":%d,\"fbtrace_id\":\"AFakeTrace%d\"}}",
             text, code, code);
    fakehttp_json(resp, code == 4 || code == 17 || code == 32 ? 403 : 400, body);
    return true;
}

static void iso_time(int64_t ms, char out[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 40, "%Y-%m-%dT%H:%M:%S+0000", &tm);
}

/* A person as Meta describes them in from and to: more than the suite may keep. */
static cJSON *person(int host, const char *id, bool business)
{
    cJSON *p = cJSON_CreateObject();
    char v[160];

    if (host == FAKEMETA_INSTAGRAM) {
        snprintf(v, sizeof(v), business ? "shop_%s" : "user_%s", id);
        cJSON_AddStringToObject(p, "username", v);
    } else {
        snprintf(v, sizeof(v), business ? "Page %s" : "Person %s", id);
        cJSON_AddStringToObject(p, "name", v);
        if (!business) {
            snprintf(v, sizeof(v), "%s@facebook.com", id);
            cJSON_AddStringToObject(p, "email", v);
        }
    }
    cJSON_AddStringToObject(p, "id", id);
    return p;
}

/* Adds Graph's paging to o: the cursors, and "next" (url with after) while more remain. */
static void paging(cJSON *o, const struct fakehttp_request *req, const char *base, int start,
                   int end, int total)
{
    cJSON *p = cJSON_AddObjectToObject(o, "paging"), *cur = cJSON_AddObjectToObject(p, "cursors");
    char a[32], b[32], next[1024];

    snprintf(b, sizeof(b), "QVFI%d", start);
    snprintf(a, sizeof(a), "QVFI%d", end);
    cJSON_AddStringToObject(cur, "before", b);
    cJSON_AddStringToObject(cur, "after", a);
    if (end < total) {
        snprintf(next, sizeof(next), "%s%s?limit=%d&after=%s", base, req->path, end - start, a);
        cJSON_AddStringToObject(p, "next", next);
    }
}

/* The page's bounds from limit (default 25, at most 100) and after. */
static void bounds(const struct fakehttp_request *req, int total, int *start, int *end)
{
    char *limit = fakehttp_query_param(req, "limit"), *after = fakehttp_query_param(req, "after");
    int n = limit ? atoi(limit) : 25;

    if (n <= 0 || n > 100)
        n = 25;
    *start = after && strncmp(after, "QVFI", 4) == 0 ? atoi(after + 4) : 0;
    if (*start < 0 || *start > total)
        *start = total;
    *end = *start + n < total ? *start + n : total;
    free(limit);
    free(after);
}

static int by_update(const void *a, const void *b)
{
    int64_t x = (*(const struct fm_conv *const *)a)->updated_ms;
    int64_t y = (*(const struct fm_conv *const *)b)->updated_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* GET /vX/<account>/conversations?platform=... (me on Instagram). */
static void list_conversations(struct fakemeta *m, int host, const char *account,
                               const struct fakehttp_request *req, struct fakehttp_response *resp,
                               const struct token *t)
{
    const char *acct = t->account[0] ? t->account : account;
    struct fm_conv **mine;
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    int n = 0, start, end;
    char *json, tm[40];

    pthread_mutex_lock(&m->lock);
    mine = cm_xcalloc((size_t)state(m)->n + 1, sizeof(*mine));
    for (int i = 0; i < m->convs->n; i++) {
        if (m->convs->convs[i].host == host && strcmp(m->convs->convs[i].account, acct) == 0)
            mine[n++] = &m->convs->convs[i];
    }
    qsort(mine, (size_t)n, sizeof(*mine), by_update);
    bounds(req, n, &start, &end);
    for (int i = start; i < end; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "id", mine[i]->id);
        iso_time(mine[i]->updated_ms, tm);
        cJSON_AddStringToObject(c, "updated_time", tm);
        cJSON_AddItemToArray(data, c);
    }
    pthread_mutex_unlock(&m->lock);
    paging(o, req, fakehttp_url(m->srv[host == FAKEMETA_INSTAGRAM ? 1 : 0]), start, end, n);
    json = cJSON_PrintUnformatted(o);
    fakehttp_json(resp, 200, json);
    cJSON_free(json);
    cJSON_Delete(o);
    free(mine);
}

/* One message in Meta's fields. */
static cJSON *message_json(const struct fm_conv *c, const struct fm_msg *msg)
{
    cJSON *o = cJSON_CreateObject(), *to;
    char tm[40];

    cJSON_AddStringToObject(o, "id", msg->mid);
    iso_time(msg->created_ms, tm);
    cJSON_AddStringToObject(o, "created_time", tm);
    cJSON_AddItemToObject(
        o, "from",
        person(c->host, msg->from_business ? c->account : c->contact, msg->from_business));
    to = cJSON_AddObjectToObject(o, "to");
    cJSON_AddItemToArray(
        cJSON_AddArrayToObject(to, "data"),
        person(c->host, msg->from_business ? c->contact : c->account, !msg->from_business));
    cJSON_AddStringToObject(o, "message", msg->text);
    if (msg->att_url[0] != '\0') {
        cJSON *a = cJSON_CreateObject();
        char id[128];
        snprintf(id, sizeof(id), "att_%s", msg->mid);
        cJSON_AddStringToObject(a, "id", id);
        cJSON_AddStringToObject(a, "mime_type", msg->att_mime);
        cJSON_AddStringToObject(a, "name", "attachment");
        cJSON_AddNumberToObject(a, "size", (double)msg->att_size);
        if (strncmp(msg->att_mime, "image/", 6) == 0) {
            cJSON *d = cJSON_AddObjectToObject(a, "image_data");
            cJSON_AddStringToObject(d, "url", msg->att_url);
            cJSON_AddStringToObject(d, "preview_url", msg->att_url);
        } else if (strncmp(msg->att_mime, "video/", 6) == 0) {
            cJSON_AddStringToObject(cJSON_AddObjectToObject(a, "video_data"), "url", msg->att_url);
        } else {
            cJSON_AddStringToObject(a, "file_url", msg->att_url);
        }
        cJSON_AddItemToArray(
            cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "attachments"), "data"), a);
    }
    return o;
}

static int by_time_desc(const void *a, const void *b)
{
    int64_t x = ((const struct fm_msg *)a)->created_ms, y = ((const struct fm_msg *)b)->created_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* GET /vX/<conversation-id>/messages?fields=...: the conversation's account's token only. */
static void list_messages(struct fakemeta *m, int host, const char *conv, const char *token,
                          const struct fakehttp_request *req, struct fakehttp_response *resp)
{
    struct fm_conv copy = {0};
    struct token t;
    cJSON *o, *data;
    bool found = false;
    int start, end;
    char *json;

    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < state(m)->n && !found; i++) {
        struct fm_conv *c = &m->convs->convs[i];
        if (c->host == host && strcmp(c->id, conv) == 0) {
            copy = *c;
            copy.msgs = cm_xcalloc((size_t)c->n + 1, sizeof(*c->msgs));
            memcpy(copy.msgs, c->msgs, (size_t)c->n * sizeof(*c->msgs));
            found = true;
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (!found) {
        fakehttp_meta_error(resp, 400, 100, 33,
                            "Unsupported get request. Object does not exist, cannot be loaded "
                            "due to missing permissions, or does not support this operation.");
        return;
    }
    if (!fm_account_token(m, host, token,
                          host == FAKEMETA_INSTAGRAM ? 1u << FAKEMETA_IG_LONG : 1u << FAKEMETA_PAGE,
                          copy.account, req, resp, &t) ||
        limited(m, copy.account, host, resp)) {
        free(copy.msgs);
        return;
    }
    qsort(copy.msgs, (size_t)copy.n, sizeof(*copy.msgs), by_time_desc);
    o = cJSON_CreateObject();
    data = cJSON_AddArrayToObject(o, "data");
    bounds(req, copy.n, &start, &end);
    for (int i = start; i < end; i++)
        cJSON_AddItemToArray(data, message_json(&copy, &copy.msgs[i]));
    paging(o, req, fakehttp_url(m->srv[host == FAKEMETA_INSTAGRAM ? 1 : 0]), start, end, copy.n);
    json = cJSON_PrintUnformatted(o);
    fakehttp_json(resp, 200, json);
    cJSON_free(json);
    cJSON_Delete(o);
    free(copy.msgs);
}

bool fm_conversations(struct fakemeta *m, int host, const char *rest,
                      const struct fakehttp_request *req, struct fakehttp_response *resp)
{
    const char *slash = strchr(rest, '/');
    const char *auth = fakehttp_header(req, "Authorization");
    char *query_token, *platform, id[160];
    const char *token;
    struct token t;

    if (strcmp(req->method, "GET") != 0 || slash == NULL || strchr(slash + 1, '/') != NULL ||
        (strcmp(slash, "/conversations") != 0 && strcmp(slash, "/messages") != 0) ||
        (size_t)(slash - rest) >= sizeof(id))
        return false;
    if (host == BOTH_HOSTS)
        host = strncmp(rest, "aWdf", 4) == 0 || strncmp(rest, "me/", 3) == 0 ? FAKEMETA_INSTAGRAM
                                                                             : FAKEMETA_FACEBOOK;
    snprintf(id, sizeof(id), "%.*s", (int)(slash - rest), rest);
    query_token = fakehttp_query_param(req, "access_token");
    token = auth != NULL && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : query_token;
    if (strcmp(slash, "/messages") == 0) {
        list_messages(m, host, id, token, req, resp);
        free(query_token);
        return true;
    }
    platform = fakehttp_query_param(req, "platform");
    if (platform == NULL ||
        strcmp(platform, host == FAKEMETA_INSTAGRAM ? "instagram" : "messenger") != 0) {
        fakehttp_meta_error(resp, 400, 100, 0,
                            "(#100) The parameter platform is required and must be messenger "
                            "or instagram for this account");
    } else if (fm_account_token(m, host, token,
                                host == FAKEMETA_INSTAGRAM ? 1u << FAKEMETA_IG_LONG
                                                           : 1u << FAKEMETA_PAGE,
                                id, req, resp, &t) &&
               !limited(m, t.account[0] ? t.account : id, host, resp)) {
        list_conversations(m, host, id, req, resp, &t);
    }
    free(platform);
    free(query_token);
    return true;
}
