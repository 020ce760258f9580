/*
 * reaper_stack.c - the shared set-up of the retention-reaper tests (see reaper_stack.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "common/crypto.h"
#include "common/mem.h"
#include "reaper_stack.h"

struct rs rs;

void rs_init(void)
{
    th_stack_init(&rs.st);
    if (natsConnection_JetStream(&rs.js, rs.st.nc, NULL) != NATS_OK)
        exit(1);
    /* token-vault asks the router who may connect, end and list integrations (authz.c). */
    rs.workspaces = cm_xcalloc(1, sizeof(*rs.workspaces));
    rs_fake_start(rs.workspaces, "router.workspace.get", NULL);
}

void rs_cleanup(void)
{
    rs_fake_stop(rs.workspaces);
    free(rs.workspaces);
    jsCtx_Destroy(rs.js);
    th_stack_stop(&rs.st);
}

void rs_start_vault(void)
{
    th_stack_start(&rs.st, &rs.vault, "token-vault", NULL);
}

void rs_start_reaper(const char *const *extra)
{
    const char *env[16] = {"REAPER_INTERVAL=1d"};
    int n = 1;

    for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    rs.reaper_port = th_stack_start(&rs.st, &rs.reaper, "retention-reaper", env);
}

void rs_start_ingest(void)
{
    const char *env[] = {"META_APP_SECRET_PREVIOUS=" RS_OLD_SECRET,
                         "PUBLIC_BASE_URL=https://dms.example.test/", NULL};

    th_stack_start(&rs.st, &rs.ingest, "webhook-ingest", env);
    snprintf(rs.ingest_base, sizeof(rs.ingest_base), "%s", rs.st.ingest_url);
}

int rs_domsctl(cJSON **out, char **text, const char *const *args)
{
    return th_stack_domsctl(&rs.st, out, text, args);
}

cJSON *rs_request(const char *subject, const char *body)
{
    return th_stack_request(&rs.st, subject, body);
}

char *rs_sql(const char *q)
{
    return th_stack_sql(&rs.st, q);
}

long rs_sql_long(const char *q)
{
    return th_stack_count(&rs.st, q);
}

char *rs_connect(const char *ws, const char *platform, const char *account, const char *asid)
{
    char token[96], id[64];

    /* The short-lived token Meta's Login would have given the business for this account. */
    snprintf(token, sizeof(token), "st-%s", account);
    return cm_xstrdup(th_stack_connect(&rs.st, ws, platform, account, token, asid, id) ? id : "");
}

char *rs_token(const char *integration_id)
{
    char body[256];
    cJSON *r;
    const char *t;
    char *copy = NULL;

    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\"}", integration_id);
    r = th_stack_request_as(&rs.st, "conversation-router", "vault.token.get", body);
    t = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "token"));
    if (t != NULL)
        copy = cm_xstrdup(t);
    cJSON_Delete(r);
    return copy;
}

void rs_post_event(const char *account, const char *mid)
{
    char body[1024];

    snprintf(body, sizeof(body),
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"%s\",\"time\":1732870000123,"
             "\"messaging\":[{\"sender\":{\"id\":\"990011\"},\"recipient\":{\"id\":\"%s\"},"
             "\"timestamp\":1732870000000,\"message\":{\"mid\":\"%s\",\"text\":\"hello\"}}]}]}",
             account, account, mid);
    CHECK_INT(th_stack_webhook(&rs.st, body), 200);
}

long rs_stream_count(const char *stream, const char *filter)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    long n = 0;

    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = filter;
    if (js_GetStreamInfo(&si, rs.js, stream, &o, &jerr) != NATS_OK)
        return -1;
    for (int i = 0; si->State.Subjects != NULL && i < si->State.Subjects->Count; i++)
        n += (long)si->State.Subjects->List[i].Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

char *rs_signed_request(const char *secret, const char *payload_json)
{
    size_t len = strlen(payload_json);
    char *payload = cm_xmalloc(len * 4 / 3 + 8);
    unsigned char mac[CM_SHA256_LEN];
    char sig[64];
    char *out;

    cm_base64url_encode(payload_json, len, payload);
    cm_crypto_hmac_sha256(secret, strlen(secret), payload, strlen(payload), mac);
    cm_base64url_encode(mac, sizeof(mac), sig);
    out = cm_xasprintf("%s.%s", sig, payload);
    free(payload);
    return out;
}

long rs_post_callback(struct th_resp *r, const char *path, const char *sr)
{
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    char url[256];
    char *body = sr ? cm_xasprintf("signed_request=%s", sr) : cm_xstrdup("other=1");
    long code;

    snprintf(url, sizeof(url), "%s%s", rs.ingest_base, path);
    code = th_http(r, "POST", url, headers, body, strlen(body));
    free(body);
    return code;
}

bool rs_wait_due(const char *ws, int timeout_ms)
{
    char q[200];

    snprintf(q, sizeof(q),
             "SELECT count(*) FROM reaper.workspace_deletions WHERE workspace_id = '%s'"
             " AND purge_due_at <= now()",
             ws);
    return WAIT_UNTIL(rs_sql_long(q) == 1, timeout_ms);
}

cJSON *rs_wait_status(const char *code, const char *want, int timeout_ms)
{
    const char *args[] = {"deletion", "status", code, NULL};
    cJSON *out = NULL;

    for (int waited = 0; waited <= timeout_ms; waited += 200) {
        cJSON_Delete(out);
        out = NULL;
        if (rs_domsctl(&out, NULL, args) == 0) {
            const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(out, "status"));
            if (s != NULL && strcmp(s, want) == 0)
                return out;
        }
        th_sleep_ms(200);
    }
    return out;
}

/* --- stand-ins ------------------------------------------------------------------------- */

static void on_fake(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct rs_fake *f = closure;
    cJSON *req = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    const char *actor = cJSON_GetStringValue(cJSON_GetObjectItem(req, "actor"));
    const char *ws = cJSON_GetStringValue(cJSON_GetObjectItem(req, "workspace_id"));
    char *reply;

    (void)sub;
    atomic_fetch_add(&f->received, 1);
    if (atomic_load(&f->delay_ms) > 0)
        th_sleep_ms(atomic_load(&f->delay_ms));
    for (int waited = 0; atomic_load(&f->hold) && waited < 60000; waited += 10)
        th_sleep_ms(10);
    atomic_fetch_add(&f->calls, 1);
    if (atomic_load(&f->fail)) {
        reply = cm_xstrdup("{\"error\":{\"code\":\"unavailable\",\"message\":\"stand-in down\"}}");
    } else if (strcmp(f->subject, "router.workspace.get") == 0) {
        if (actor != NULL && strcmp(actor, "mallory") == 0)
            reply = cm_xasprintf("{\"error\":{\"code\":\"denied\",\"message\":\"mallory may not"
                                 " do this in workspace %s (needs the viewer role)\"}}",
                                 ws ? ws : "");
        else
            reply = cm_xasprintf("{\"result\":{\"workspace_id\":\"%s\",\"status\":\"active\","
                                 "\"role\":\"owner\"}}",
                                 ws ? ws : "");
    } else if (strcmp(f->subject, "router.workspace.delete") == 0) {
        if (actor != NULL && strcmp(actor, "mallory") == 0) {
            reply = cm_xstrdup("{\"error\":{\"code\":\"denied\",\"message\":\"mallory is not the"
                               " owner of this workspace\"}}");
        } else {
            char now[32];
            time_t t = time(NULL);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
            reply = cm_xasprintf("{\"result\":{\"workspace_id\":\"%s\",\"deleted_at\":\"%s\"}}",
                                 ws ? ws : "", now);
        }
    } else {
        reply = cm_xasprintf("{\"result\":{\"deleted\":%s,\"remaining\":{\"messages\":0}}}",
                             f->deleted ? f->deleted : "{}");
    }
    pthread_mutex_lock(&f->lock);
    cJSON_Delete(f->last);
    f->last = req;
    pthread_mutex_unlock(&f->lock);
    natsConnection_PublishString(nc, natsMsg_GetReply(msg), reply);
    free(reply);
    natsMsg_Destroy(msg);
}

/* nats.c: the subscription is closed and on_fake has returned for the last time. */
static void on_fake_done(void *closure)
{
    struct rs_fake *f = closure;

    atomic_store(&f->done, true);
}

void rs_fake_start(struct rs_fake *f, const char *subject, const char *deleted_json)
{
    char pattern[160];

    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    snprintf(f->subject, sizeof(f->subject), "%s", subject);
    f->deleted = deleted_json;
    /* A service subject is served on "<subject>.*": the last token names the caller. */
    snprintf(pattern, sizeof(pattern), "%s.*", subject);
    if (natsConnection_Subscribe(&f->sub, rs.st.nc, pattern, on_fake, f) != NATS_OK ||
        natsSubscription_SetOnCompleteCB(f->sub, on_fake_done, f) != NATS_OK)
        exit(1);
    natsConnection_Flush(rs.st.nc);
}

void rs_fake_stop(struct rs_fake *f)
{
    /* A callback may be in flight (sleeping its delay_ms): the lock and f->last are freed
     * only once nats.c says no callback runs or will start. */
    CHECK(natsSubscription_Unsubscribe(f->sub) == NATS_OK);
    CHECK_WAIT(atomic_load(&f->done), 30000);
    natsSubscription_Destroy(f->sub);
    f->sub = NULL;
    if (!atomic_load(&f->done))
        return; /* failed above; leaking beats freeing what a callback still uses */
    cJSON_Delete(f->last);
    f->last = NULL;
    pthread_mutex_destroy(&f->lock);
}

char *rs_fake_last(struct rs_fake *f, const char *field)
{
    char *copy = NULL;
    const cJSON *v;

    pthread_mutex_lock(&f->lock);
    v = cJSON_GetObjectItem(f->last, field);
    if (cJSON_IsString(v))
        copy = cm_xstrdup(v->valuestring);
    else if (v != NULL)
        copy = cJSON_PrintUnformatted(v);
    pthread_mutex_unlock(&f->lock);
    return copy;
}
