/*
 * reaper_stack.c - the shared set-up of the retention-reaper tests (see reaper_stack.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "check.h"
#include "common/crypto.h"
#include "common/mem.h"
#include "reaper_stack.h"

struct rs rs;

/* Meta's token endpoints, enough for token-vault to connect Instagram and Page accounts. */
static void on_meta(const struct fakehttp_request *req, struct fakehttp_response *resp, void *arg)
{
    char *access = fakehttp_query_param(req, "access_token");
    char *fbx = fakehttp_query_param(req, "fb_exchange_token");
    char body[512];

    (void)arg;
    if (strcmp(req->path, "/access_token") == 0)
        snprintf(body, sizeof(body),
                 "{\"access_token\":\"IGLL-%s\",\"token_type\":\"bearer\",\"expires_in\":5184000}",
                 access ? access : "");
    else if (strcmp(req->path, "/v23.0/oauth/access_token") == 0)
        snprintf(body, sizeof(body), "{\"access_token\":\"EAAU-%s\",\"expires_in\":5184000}",
                 fbx ? fbx : "");
    else
        snprintf(body, sizeof(body), "{\"access_token\":\"PAGE-%s\",\"id\":\"x\"}",
                 access ? access : "");
    fakehttp_json(resp, 200, body);
    free(access);
    free(fbx);
}

static void write_kek(char *path, size_t cap, const char *name, const char *line)
{
    FILE *f;

    snprintf(path, cap, "%s/%s.kek", th_tmpdir(), name);
    f = fopen(path, "w");
    fputs(line, f);
    fclose(f);
    chmod(path, 0600);
}

void rs_init(void)
{
    th_db_create(&rs.db);
    th_nats_start(&rs.nats);
    if (fakehttp_start(&rs.meta, on_meta, NULL) != 0)
        exit(1);
    write_kek(rs.vault_kek, sizeof(rs.vault_kek), "vault",
              "1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n");
    write_kek(rs.reaper_kek, sizeof(rs.reaper_kek), "reaper",
              "1:cmVhcGVycmVhcGVycmVhcGVycmVhcGVycmVhcGVyMTI=\n");
    if (natsConnection_ConnectTo(&rs.nc, rs.nats.url) != NATS_OK ||
        natsConnection_JetStream(&rs.js, rs.nc, NULL) != NATS_OK)
        exit(1);
    rs.ingest_port = th_free_port();
    snprintf(rs.ingest_base, sizeof(rs.ingest_base), "http://127.0.0.1:%d", rs.ingest_port);
}

void rs_cleanup(void)
{
    jsCtx_Destroy(rs.js);
    natsConnection_Destroy(rs.nc);
    fakehttp_stop(rs.meta);
    th_nats_stop(&rs.nats);
}

/* Starts bin with env (freed here) and waits for its /readyz. */
static void start(struct th_proc *p, const char *bin, char **env, int n, int port)
{
    char ready[96];

    env[n] = NULL;
    th_proc_start(p, bin, NULL, (const char *const *)env);
    snprintf(ready, sizeof(ready), "http://127.0.0.1:%d/readyz", port);
    CHECK_MSG(th_wait_http(ready, 200, 30000), "%s never ready", bin);
    for (int i = 0; i < n; i++)
        free(env[i]);
}

void rs_start_vault(void)
{
    char *dburl = th_db_url(&rs.db, "doms_vault");
    char *env[16];
    int n = 0, port = th_free_port();

    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[n++] = cm_xasprintf("NATS_URL=%s", rs.nats.url);
    env[n++] = cm_xasprintf("DOMS_KEK_FILE=%s", rs.vault_kek);
    env[n++] = cm_xasprintf("TOKEN_VAULT_HTTP_LISTEN=127.0.0.1:%d", port);
    env[n++] = cm_xasprintf("META_GRAPH_URL=%s", fakehttp_url(rs.meta));
    env[n++] = cm_xasprintf("INSTAGRAM_GRAPH_URL=%s", fakehttp_url(rs.meta));
    env[n++] = cm_xstrdup("META_APP_ID=app-1");
    env[n++] = cm_xstrdup("META_APP_SECRET=" RS_APP_SECRET);
    start(&rs.vault, "token-vault", env, n, port);
    free(dburl);
}

void rs_start_reaper(const char *const *extra)
{
    char *dburl = th_db_url(&rs.db, "doms_reaper");
    char *env[32];
    int n = 0;

    rs.reaper_port = th_free_port();
    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[n++] = cm_xasprintf("NATS_URL=%s", rs.nats.url);
    env[n++] = cm_xasprintf("DOMS_KEK_FILE=%s", rs.reaper_kek);
    env[n++] = cm_xasprintf("RETENTION_REAPER_HTTP_LISTEN=127.0.0.1:%d", rs.reaper_port);
    env[n++] = cm_xstrdup("LOG_LEVEL=debug");
    /* The tests drive passes with `domsctl retention run` unless they set an interval. */
    env[n++] = cm_xstrdup("REAPER_INTERVAL=1d");
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 30; i++)
        env[n++] = cm_xstrdup(extra[i]);
    start(&rs.reaper, "retention-reaper", env, n, rs.reaper_port);
    free(dburl);
}

void rs_start_ingest(void)
{
    char *dburl = th_db_url(&rs.db, "doms_ingest");
    char *env[16];
    int n = 0;

    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[n++] = cm_xasprintf("NATS_URL=%s", rs.nats.url);
    env[n++] = cm_xasprintf("INGEST_LISTEN=127.0.0.1:%d", rs.ingest_port);
    env[n++] = cm_xstrdup("META_APP_SECRET=" RS_APP_SECRET);
    env[n++] = cm_xstrdup("META_APP_SECRET_PREVIOUS=" RS_OLD_SECRET);
    env[n++] = cm_xstrdup("META_VERIFY_TOKEN=verify");
    env[n++] = cm_xstrdup("PUBLIC_BASE_URL=https://dms.example.test/");
    env[n++] = cm_xstrdup("LOG_LEVEL=debug");
    start(&rs.ingest, "webhook-ingest", env, n, rs.ingest_port);
    free(dburl);
}

int rs_domsctl(cJSON **out, char **text, const char *const *args)
{
    char nats_env[96];
    const char *env[] = {nats_env, NULL};
    const char *argv[20] = {"--json"};
    char *output = NULL;
    int n = 1, code;

    snprintf(nats_env, sizeof(nats_env), "NATS_URL=%s", rs.nats.url);
    for (int i = 0; args[i] != NULL && n < 19; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    code = th_run("domsctl", argv, env, &output);
    if (out != NULL)
        *out = cJSON_Parse(output);
    if (text != NULL)
        *text = output;
    else
        free(output);
    return code;
}

cJSON *rs_request(const char *subject, const char *body)
{
    natsMsg *reply = NULL;
    cJSON *json = NULL;

    if (natsConnection_RequestString(&reply, rs.nc, subject, body, 30000) == NATS_OK) {
        json = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
    }
    return json;
}

char *rs_sql(const char *q)
{
    PGconn *c = th_db_connect(&rs.db, NULL);
    char err[256] = "";
    char *v = th_db_value(c, q, err, sizeof(err));

    if (err[0] != '\0')
        printf("sql error: %s (%s)\n", err, q);
    PQfinish(c);
    return v;
}

long rs_sql_long(const char *q)
{
    char *v = rs_sql(q);
    long n = v ? strtol(v, NULL, 10) : -1;

    free(v);
    return n;
}

char *rs_connect(const char *ws, const char *platform, const char *account, const char *asid)
{
    const char *args[] = {
        "integration", "connect", "--workspace", ws,   "--platform",           platform,
        "--account",   account,   "--token",     "st", asid ? "--asid" : NULL, asid,
        NULL};
    cJSON *out = NULL;
    const char *id;
    char *copy;

    CHECK_INT(rs_domsctl(&out, NULL, args), 0);
    id = cJSON_GetStringValue(cJSON_GetObjectItem(out, "integration_id"));
    copy = cm_xstrdup(id ? id : "");
    cJSON_Delete(out);
    return copy;
}

char *rs_token(const char *integration_id)
{
    char body[256];
    cJSON *r;
    const char *t;
    char *copy = NULL;

    snprintf(body, sizeof(body),
             "{\"integration_id\":\"%s\",\"requester\":\"conversation-router\"}", integration_id);
    r = rs_request("vault.token.get", body);
    t = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "token"));
    if (t != NULL)
        copy = cm_xstrdup(t);
    cJSON_Delete(r);
    return copy;
}

void rs_post_event(const char *account, const char *mid)
{
    char body[1024], sig[80], url[128], hdr[120];
    const char *headers[] = {"Content-Type: application/json", hdr, NULL};
    struct th_resp r;

    snprintf(body, sizeof(body),
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"%s\",\"time\":1732870000123,"
             "\"messaging\":[{\"sender\":{\"id\":\"990011\"},\"recipient\":{\"id\":\"%s\"},"
             "\"timestamp\":1732870000000,\"message\":{\"mid\":\"%s\",\"text\":\"hello\"}}]}]}",
             account, account, mid);
    th_sign(RS_APP_SECRET, body, strlen(body), sig);
    snprintf(hdr, sizeof(hdr), "X-Hub-Signature-256: %s", sig);
    snprintf(url, sizeof(url), "%s/api/v1/webhooks/meta", rs.ingest_base);
    CHECK_INT(th_http(&r, "POST", url, headers, body, strlen(body)), 200);
    th_resp_cleanup(&r);
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
    if (atomic_load(&f->delay_ms) > 0)
        th_sleep_ms(atomic_load(&f->delay_ms));
    atomic_fetch_add(&f->calls, 1);
    if (atomic_load(&f->fail)) {
        reply = cm_xstrdup("{\"error\":{\"code\":\"unavailable\",\"message\":\"stand-in down\"}}");
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

void rs_fake_start(struct rs_fake *f, const char *subject, const char *deleted_json)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    snprintf(f->subject, sizeof(f->subject), "%s", subject);
    f->deleted = deleted_json;
    if (natsConnection_Subscribe(&f->sub, rs.nc, subject, on_fake, f) != NATS_OK)
        exit(1);
    natsConnection_Flush(rs.nc);
}

void rs_fake_stop(struct rs_fake *f)
{
    natsSubscription_Unsubscribe(f->sub);
    natsSubscription_Destroy(f->sub);
    natsConnection_Flush(rs.nc);
    th_sleep_ms(100); /* a callback in flight finishes */
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
