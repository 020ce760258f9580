/*
 * test_vault - token-vault end to end: the real daemon (two replicas for the refresh race),
 * domsctl, nats-server, PostgreSQL, and a local server speaking Meta's token endpoints,
 * their errors, throttling and garbage. Tokens are exchanged, sealed, served only to the
 * services allowed, refreshed when due and only then, marked needs_reauth on error 190,
 * never served after a disconnect, and never found in plaintext in the schema or the logs.
 */
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "common/mem.h"
#include "fakehttp.h"
#include "harness.h"

#define APP_ID     "app-123"
#define APP_SECRET "vault-app-secret-xyz"

static struct th_db db;
static struct th_nats nats;
static struct fakehttp *meta;
static struct th_proc vault[2];
static natsConnection *nc;
static char kek_path[512];
static _Atomic int page_valid = 1;
static _Atomic int refresh_delay_ms = 0;

/* --- the local Meta ------------------------------------------------------------------ */

static void token_json(struct fakehttp_response *resp, const char *token, long expires_in)
{
    char body[512];

    if (expires_in > 0)
        snprintf(body, sizeof(body),
                 "{\"access_token\":\"%s\",\"token_type\":\"bearer\",\"expires_in\":%ld}", token,
                 expires_in);
    else
        snprintf(body, sizeof(body), "{\"access_token\":\"%s\",\"id\":\"x\"}", token);
    fakehttp_json(resp, 200, body);
}

static void on_meta(const struct fakehttp_request *req, struct fakehttp_response *resp, void *arg)
{
    char *grant = fakehttp_query_param(req, "grant_type");
    char *secret = fakehttp_query_param(req, "client_secret");
    char *access = fakehttp_query_param(req, "access_token");
    char *fbx = fakehttp_query_param(req, "fb_exchange_token");
    char *input = fakehttp_query_param(req, "input_token");
    char token[256];

    (void)arg;
    if (strcmp(req->path, "/access_token") == 0) {
        /* Instagram Login: short-lived to long-lived. */
        if (grant == NULL || strcmp(grant, "ig_exchange_token") != 0 || secret == NULL ||
            strcmp(secret, APP_SECRET) != 0)
            fakehttp_meta_error(resp, 400, 101, 0, "Error validating client secret.");
        else if (strcmp(access, "expired-short") == 0)
            fakehttp_meta_error(resp, 400, 190, 463,
                                "Error validating access token: Session has expired");
        else if (strcmp(access, "garbage") == 0)
            fakehttp_reply(resp, 200, "<html><body>Welcome</body></html>", 33);
        else if (strcmp(access, "html502") == 0)
            fakehttp_reply(resp, 502, "<html><body>Bad Gateway</body></html>", 37);
        else {
            snprintf(token, sizeof(token), "IGLL-%s", access);
            token_json(resp, token, 5184000);
        }
    } else if (strcmp(req->path, "/v23.0/oauth/access_token") == 0) {
        char *client = fakehttp_query_param(req, "client_id");
        if (client == NULL || strcmp(client, APP_ID) != 0 || secret == NULL ||
            strcmp(secret, APP_SECRET) != 0 || fbx == NULL)
            fakehttp_meta_error(resp, 400, 101, 0, "Error validating application.");
        else if (strcmp(fbx, "throttled") == 0)
            fakehttp_meta_error(resp, 400, 4, 0, "Application request limit reached");
        else {
            snprintf(token, sizeof(token), "EAAU-%s", fbx);
            token_json(resp, token, 5184000);
        }
        free(client);
    } else if (strcmp(req->path, "/v23.0/debug_token") == 0) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"data\":{\"app_id\":\"%s\",\"type\":\"PAGE\",\"is_valid\":%s}}", APP_ID,
                 atomic_load(&page_valid) ? "true" : "false");
        (void)input;
        fakehttp_json(resp, 200, body);
    } else if (strcmp(req->path, "/refresh_access_token") == 0) {
        resp->delay_ms = atomic_load(&refresh_delay_ms);
        if (access != NULL && strstr(access, "revoked") != NULL)
            fakehttp_meta_error(resp, 400, 190, 460, "The session has been invalidated.");
        else {
            snprintf(token, sizeof(token), "%s-r", access ? access : "");
            token_json(resp, token, 5184000);
        }
    } else if (strncmp(req->path, "/v23.0/", 7) == 0) {
        /* The Page token from a long-lived user token. */
        const char *page = req->path + 7;
        if (strcmp(page, "999") == 0)
            fakehttp_meta_error(resp, 400, 100, 33,
                                "Unsupported get request. Object with ID '999' does not exist");
        else if (access == NULL || strncmp(access, "EAAU-", 5) != 0)
            fakehttp_meta_error(resp, 400, 190, 0, "Invalid OAuth access token.");
        else {
            snprintf(token, sizeof(token), "PAGE-%s-%s", page, access + 5);
            token_json(resp, token, 0);
        }
    } else {
        fakehttp_meta_error(resp, 404, 803, 0, "Unknown path");
    }
    free(grant);
    free(secret);
    free(access);
    free(fbx);
    free(input);
}

/* --- helpers ------------------------------------------------------------------------- */

static void start_vault(struct th_proc *p, const char *kek)
{
    char *dburl = th_db_url(&db, "doms_vault");
    char *env[16], ready[128];
    int n = 0, port = th_free_port();

    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[n++] = cm_xasprintf("NATS_URL=%s", nats.url);
    env[n++] = cm_xasprintf("DOMS_KEK_FILE=%s", kek);
    env[n++] = cm_xasprintf("TOKEN_VAULT_HTTP_LISTEN=127.0.0.1:%d", port);
    env[n++] = cm_xasprintf("META_GRAPH_URL=%s", fakehttp_url(meta));
    env[n++] = cm_xasprintf("INSTAGRAM_GRAPH_URL=%s", fakehttp_url(meta));
    env[n++] = cm_xstrdup("META_APP_ID=" APP_ID);
    env[n++] = cm_xstrdup("META_APP_SECRET=" APP_SECRET);
    env[n++] = cm_xstrdup("LOG_LEVEL=debug");
    env[n] = NULL;
    th_proc_start(p, "token-vault", NULL, (const char *const *)env);
    snprintf(ready, sizeof(ready), "http://127.0.0.1:%d/readyz", port);
    CHECK_MSG(th_wait_http(ready, 200, 20000), "token-vault never ready");
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(dburl);
}

/* Runs domsctl --json with args; returns the exit code and the parsed output (or NULL). */
static int domsctl(cJSON **out, char **text, const char *const *args)
{
    char nats_env[96];
    const char *env[] = {nats_env, NULL};
    const char *argv[16] = {"--json"};
    char *output = NULL;
    int n = 1, code;

    snprintf(nats_env, sizeof(nats_env), "NATS_URL=%s", nats.url);
    for (int i = 0; args[i] != NULL && n < 15; i++)
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

/* A raw NATS request, as conversation-router would send it; returns the reply (free it). */
static cJSON *request(const char *subject, const char *body)
{
    natsMsg *reply = NULL;
    cJSON *json = NULL;

    if (natsConnection_RequestString(&reply, nc, subject, body, 30000) == NATS_OK) {
        json = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
    }
    return json;
}

static const char *str_at(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItem(o, a);
    if (b != NULL)
        v = cJSON_GetObjectItem(v, b);
    return cJSON_GetStringValue(v);
}

static char *connect_ok(const char *platform, const char *account, const char *token,
                        const char *asid, char **expires)
{
    const char *args[] = {
        "integration", "connect", "--workspace", "ws_1", "--platform",           platform,
        "--account",   account,   "--token",     token,  asid ? "--asid" : NULL, asid,
        NULL};
    cJSON *out = NULL;
    char *id = NULL;
    int code = domsctl(&out, NULL, args);

    CHECK_INT(code, 0);
    if (str_at(out, "integration_id", NULL) != NULL)
        id = cm_xstrdup(str_at(out, "integration_id", NULL));
    if (expires != NULL) {
        const cJSON *e = cJSON_GetObjectItem(out, "expires_at");
        *expires = cJSON_IsString(e) ? cm_xstrdup(e->valuestring) : NULL;
    }
    cJSON_Delete(out);
    return id ? id : cm_xstrdup("");
}

static char *token_of(const char *id, const char *requester, char **error_code)
{
    char body[256];
    cJSON *r;
    char *tok = NULL;

    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\",\"requester\":\"%s\"}", id, requester);
    r = request("vault.token.get", body);
    if (str_at(r, "result", "token") != NULL)
        tok = cm_xstrdup(str_at(r, "result", "token"));
    if (error_code != NULL)
        *error_code = cm_xstrdup(str_at(r, "error", "code") ? str_at(r, "error", "code") : "");
    cJSON_Delete(r);
    return tok;
}

static char *sql(const char *q)
{
    PGconn *c = th_db_connect(&db, NULL);
    char err[256];
    char *v = th_db_value(c, q, err, sizeof(err));

    if (err[0] != '\0')
        printf("sql error: %s\n", err);
    PQfinish(c);
    return v;
}

static const cJSON *find_integration(const cJSON *list, const char *id)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, list)
    {
        if (strcmp(str_at(it, "integration_id", NULL), id) == 0)
            return it;
    }
    return NULL;
}

/* --- tests --------------------------------------------------------------------------- */

static char *ig_id, *page_id;

static void test_connect_both(void)
{
    char *expires = NULL, *tok, *code = NULL;
    const char *args[] = {"integration", "list", "--workspace", "ws_1", NULL};
    cJSON *list = NULL;
    const cJSON *it;

    ig_id = connect_ok("instagram", "17841400000000001", "short-ig-1", "asid-77", &expires);
    CHECK(expires != NULL && strlen(expires) == 20 && expires[19] == 'Z');
    free(expires);
    page_id = connect_ok("messenger", "106123456789012", "short-fb-1", NULL, &expires);
    CHECK_MSG(expires == NULL, "a Page token must not expire");
    free(expires);

    CHECK_INT(domsctl(&list, NULL, args), 0);
    CHECK_INT(cJSON_GetArraySize(list), 2);
    it = find_integration(list, ig_id);
    CHECK_STR(str_at(it, "status", NULL), "connected");
    CHECK_STR(str_at(it, "platform", NULL), "instagram");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(it, "token_held")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(it, "needs_reauth")));
    it = find_integration(list, page_id);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(it, "expires_at")));
    cJSON_Delete(list);

    tok = token_of(ig_id, "conversation-router", NULL);
    CHECK_STR(tok, "IGLL-short-ig-1");
    free(tok);
    tok = token_of(page_id, "ai-suggest", NULL);
    CHECK_STR(tok, "PAGE-106123456789012-short-fb-1");
    free(tok);
    tok = token_of(page_id, "webhook-ingest", &code);
    CHECK(tok == NULL);
    CHECK_STR(code, "denied");
    free(code);

    /* Reconnecting the same account in the same workspace renews it in place. */
    {
        char *again = connect_ok("instagram", "17841400000000001", "short-ig-2", NULL, NULL);
        CHECK_STR(again, ig_id);
        free(again);
        tok = token_of(ig_id, "conversation-router", NULL);
        CHECK_STR(tok, "IGLL-short-ig-2");
        free(tok);
    }
    /* Another workspace cannot take an account that is connected. */
    {
        const char *args2[] = {"integration", "connect",   "--workspace", "ws_2",
                               "--platform",  "instagram", "--account",   "17841400000000001",
                               "--token",     "t",         NULL};
        char *text = NULL;
        CHECK_INT(domsctl(NULL, &text, args2), 1);
        CHECK_CONTAINS(text, "already connected to another workspace");
        free(text);
    }
}

static void test_meta_errors(void)
{
    struct {
        const char *platform, *account, *token, *needle;
    } cases[] = {
        {"instagram", "1784", "expired-short", "Session has expired (code 190"},
        {"instagram", "1785", "garbage", "unexpected (HTTP 200, not JSON)"},
        {"instagram", "1786", "html502", "(HTTP 502)"},
        {"messenger", "999", "short-fb-2", "does not exist (code 100"},
        {"messenger", "1061", "throttled", "Application request limit reached (code 4"},
    };
    char *before = sql("SELECT count(*) FROM vault.integrations");

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"integration", "connect",         "--workspace", "ws_1",
                              "--platform",  cases[i].platform, "--account",   cases[i].account,
                              "--token",     cases[i].token,    NULL};
        char *text = NULL;
        CHECK_INT(domsctl(NULL, &text, args), 1);
        CHECK_CONTAINS(text, cases[i].needle);
        free(text);
    }
    /* Nothing half-stored. */
    {
        char *after = sql("SELECT count(*) FROM vault.integrations");
        CHECK_STR(after, before);
        free(after);
    }
    free(before);
}

static long refresh_count(void)
{
    long n = 0;

    for (int i = 0; i < fakehttp_count(meta); i++) {
        if (strcmp(fakehttp_get(meta, i)->path, "/refresh_access_token") == 0)
            n++;
    }
    return n;
}

static void test_refresh_when_due(void)
{
    char q[512], *tok, *v;
    char *young = connect_ok("instagram", "17841400000000002", "short-young", NULL, NULL);
    char *distant = connect_ok("instagram", "17841400000000003", "short-distant", NULL, NULL);
    cJSON *r;

    /* Due: two days old, expiring in five days. */
    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '2 days',"
             " expires_at = now() + interval '5 days' WHERE integration_id = '%s' RETURNING 1",
             ig_id);
    free(sql(q));
    /* Not due: expiring in five days but obtained an hour ago. */
    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '1 hour',"
             " expires_at = now() + interval '5 days' WHERE integration_id = '%s' RETURNING 1",
             young);
    free(sql(q));
    /* Not due: old, but expiring in fifty days. */
    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '10 days',"
             " expires_at = now() + interval '50 days' WHERE integration_id = '%s' RETURNING 1",
             distant);
    free(sql(q));

    fakehttp_clear(meta);
    r = request("vault.refresh.run", "{}");
    CHECK_INT((long)cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "refreshed")),
              1);
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 1);
    tok = token_of(ig_id, "conversation-router", NULL);
    CHECK_STR(tok, "IGLL-short-ig-2-r");
    free(tok);
    snprintf(q, sizeof(q),
             "SELECT expires_at > now() + interval '59 days' FROM vault.tokens"
             " WHERE integration_id = '%s'",
             ig_id);
    v = sql(q);
    CHECK_STR(v, "t");
    free(v);

    /* Run again: nothing is due any more. */
    r = request("vault.refresh.run", "{}");
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 1);
    free(young);
    free(distant);
}

/* Two vault replicas asked to refresh at once: the slow Meta answer holds the row. */
struct race_arg {
    cJSON *reply;
};

static void *race(void *p)
{
    struct race_arg *a = p;
    a->reply = request("vault.refresh.run", "{}");
    return NULL;
}

static void test_replicas_refresh_once(void)
{
    struct race_arg args[4] = {{0}};
    pthread_t t[4];
    char q[512];
    char *id = connect_ok("instagram", "17841400000000004", "short-race", NULL, NULL);

    start_vault(&vault[1], kek_path);
    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '2 days',"
             " expires_at = now() + interval '3 days' WHERE integration_id = '%s' RETURNING 1",
             id);
    atomic_store(&refresh_delay_ms, 1500);
    fakehttp_clear(meta);
    free(sql(q));
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, race, &args[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cJSON_Delete(args[i].reply);
    }
    atomic_store(&refresh_delay_ms, 0);
    CHECK_INT(refresh_count(), 1);
    th_proc_stop(&vault[1]);
    free(id);
}

static void test_needs_reauth(void)
{
    char q[512], *code = NULL, *tok;
    char *rev = connect_ok("instagram", "17841400000000005", "revoked-soon", NULL, NULL);
    const char *args[] = {"integration", "list", "--workspace", "ws_1", NULL};
    cJSON *list = NULL, *r;

    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '2 days',"
             " expires_at = now() + interval '2 days' WHERE integration_id = '%s' RETURNING 1",
             rev);
    free(sql(q));
    /* The Page token fails its daily check. */
    snprintf(q, sizeof(q),
             "UPDATE vault.integrations SET last_checked_at = now() - interval '2 days'"
             " WHERE id = '%s' RETURNING 1",
             page_id);
    free(sql(q));
    atomic_store(&page_valid, 0);
    r = request("vault.refresh.run", "{}");
    CHECK_INT((long)cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "needs_reauth")),
              2);
    cJSON_Delete(r);
    atomic_store(&page_valid, 1);

    CHECK_INT(domsctl(&list, NULL, args), 0);
    CHECK_STR(str_at(find_integration(list, rev), "status", NULL), "needs_reauth");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(find_integration(list, rev), "needs_reauth")));
    CHECK_STR(str_at(find_integration(list, page_id), "status", NULL), "needs_reauth");
    cJSON_Delete(list);
    tok = token_of(rev, "conversation-router", &code);
    CHECK(tok == NULL);
    CHECK_STR(code, "refused");
    free(code);
    /* No retry storm: a second pass leaves it alone. */
    fakehttp_clear(meta);
    r = request("vault.refresh.run", "{}");
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 0);
    free(rev);
}

static void test_disconnect(void)
{
    const char *args[] = {"integration", "disconnect", ig_id, NULL};
    const char *list_args[] = {"integration", "list", "--workspace", "ws_1", NULL};
    char q[256], *code = NULL, *tok, *v;
    cJSON *out = NULL;

    CHECK_INT(domsctl(&out, NULL, args), 0);
    CHECK_STR(str_at(out, "status", NULL), "disconnected");
    CHECK_STR(str_at(out, "integration_id", NULL), ig_id);
    cJSON_Delete(out);
    tok = token_of(ig_id, "conversation-router", &code);
    CHECK(tok == NULL);
    CHECK_STR(code, "refused");
    free(code);
    snprintf(q, sizeof(q), "SELECT count(*) FROM vault.data_keys WHERE key_id = 'int:%s'", ig_id);
    v = sql(q);
    CHECK_STR(v, "0");
    free(v);
    CHECK_INT(domsctl(&out, NULL, list_args), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(find_integration(out, ig_id), "token_held")));
    CHECK_STR(str_at(find_integration(out, ig_id), "status", NULL), "disconnected");
    cJSON_Delete(out);
    /* Again: idempotent. */
    CHECK_INT(domsctl(&out, NULL, args), 0);
    cJSON_Delete(out);
    /* Unknown: a clear refusal. */
    {
        const char *unknown[] = {"integration", "disconnect", "int_nope", NULL};
        char *text = NULL;
        CHECK_INT(domsctl(NULL, &text, unknown), 1);
        CHECK_CONTAINS(text, "no integration int_nope");
        free(text);
    }
}

static void test_deauthorize(void)
{
    cJSON *r =
        request("vault.integration.deauthorize", "{\"asid\":\"asid-77\",\"actor\":\"meta\"}");
    char *tok, *code = NULL;

    /* ig_id carried asid-77 but is already disconnected: nothing left to revoke there. */
    CHECK(cJSON_GetObjectItem(r, "result") != NULL);
    cJSON_Delete(r);
    {
        char *id = connect_ok("instagram", "17841400000000009", "short-deauth", "asid-88", NULL);
        r = request("vault.integration.deauthorize", "{\"asid\":\"asid-88\",\"actor\":\"meta\"}");
        CHECK_INT((long)cJSON_GetNumberValue(
                      cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "revoked")),
                  1);
        cJSON_Delete(r);
        tok = token_of(id, "conversation-router", &code);
        CHECK(tok == NULL);
        CHECK_STR(code, "refused");
        free(code);
        free(id);
    }
}

static void test_find_and_purge(void)
{
    cJSON *r = request("vault.integration.find", "{\"asid\":\"asid-77\"}");
    const char *list_args[] = {"integration", "list", "--workspace", "ws_1", NULL};
    cJSON *list = NULL;
    char *left;

    /* asid-77's integration is disconnected but still held: find names it. */
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(r, "result")), 1);
    CHECK_STR(
        str_at(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "result"), 0), "integration_id", NULL),
        ig_id);
    cJSON_Delete(r);

    r = request("vault.purge", "{\"actor\":\"retention-reaper\",\"scope\":\"workspace\","
                               "\"workspace_id\":\"ws_1\"}");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "integrations")) >=
          6);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "remaining"),
              "integrations")) == 0);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "remaining"), "tokens")) == 0);
    cJSON_Delete(r);
    CHECK_INT(domsctl(&list, NULL, list_args), 0);
    CHECK_INT(cJSON_GetArraySize(list), 0);
    cJSON_Delete(list);
    left =
        sql("SELECT (SELECT count(*) FROM vault.tokens) + (SELECT count(*) FROM vault.data_keys)");
    CHECK_STR(left, "0");
    free(left);
    /* Repeating it is harmless. */
    r = request("vault.purge", "{\"scope\":\"workspace\",\"workspace_id\":\"ws_1\"}");
    CHECK(cJSON_GetObjectItem(r, "result") != NULL);
    cJSON_Delete(r);
    r = request("vault.purge", "{\"scope\":\"everything\"}");
    CHECK_STR(str_at(r, "error", "code"), "invalid");
    cJSON_Delete(r);
}

/* No column of the vault schema holds a token or the app secret in plaintext. */
static void test_no_plaintext(void)
{
    const char *needles[] = {"IGLL-", "EAAU-", "PAGE-", "short-ig", "short-fb", APP_SECRET};
    char q[1024];

    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
        char *hits;
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM (SELECT row_to_json(t)::text AS r FROM vault.integrations t"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.tokens t"
                 " UNION ALL SELECT encode(sealed, 'escape') FROM vault.tokens"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.data_keys t"
                 " UNION ALL SELECT encode(wrapped, 'escape') FROM vault.data_keys"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.outbox t) s"
                 " WHERE r LIKE '%%%s%%'",
                 needles[i]);
        hits = sql(q);
        CHECK_MSG(hits != NULL && strcmp(hits, "0") == 0, "%s found in the vault schema",
                  needles[i]);
        free(hits);
    }
}

static void test_logs_clean(void)
{
    const char *needles[] = {"IGLL-", "EAAU-", "PAGE-", "short-ig", APP_SECRET};

    for (int p = 0; p < 2; p++) {
        char *log = th_proc_output(&vault[p]);
        for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
            CHECK_MSG(strstr(log, needles[i]) == NULL, "%s in the log of vault %d", needles[i], p);
        free(log);
    }
}

static void test_bad_kek(void)
{
    char bad[600], *out = NULL;
    const char *env[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", "META_APP_ID=a",
                         "META_APP_SECRET=s", bad, NULL};
    FILE *f;

    snprintf(bad, sizeof(bad), "DOMS_KEK_FILE=%s/missing.kek", th_tmpdir());
    CHECK_INT(th_run("token-vault", NULL, env, &out), 78);
    CHECK_CONTAINS(out, "DOMS_KEK_FILE");
    free(out);
    snprintf(bad, sizeof(bad), "DOMS_KEK_FILE=%s/bad.kek", th_tmpdir());
    f = fopen(bad + strlen("DOMS_KEK_FILE="), "w");
    fputs("1:not-base64-at-all\n", f);
    fclose(f);
    CHECK_INT(th_run("token-vault", NULL, env, &out), 78);
    CHECK_CONTAINS(out, "DOMS_KEK_FILE");
    CHECK(strstr(out, "not-base64-at-all") == NULL);
    free(out);
}

int main(void)
{
    FILE *f;

    th_init("vault");
    th_db_create(&db);
    th_nats_start(&nats);
    if (fakehttp_start(&meta, on_meta, NULL) != 0)
        return 1;
    snprintf(kek_path, sizeof(kek_path), "%s/vault.kek", th_tmpdir());
    f = fopen(kek_path, "w");
    fputs("1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n", f);
    fclose(f);
    chmod(kek_path, 0600);
    if (natsConnection_ConnectTo(&nc, nats.url) != NATS_OK)
        return 1;
    start_vault(&vault[0], kek_path);

    RUN(test_bad_kek);
    RUN(test_connect_both);
    RUN(test_meta_errors);
    RUN(test_refresh_when_due);
    RUN(test_replicas_refresh_once);
    RUN(test_needs_reauth);
    RUN(test_disconnect);
    RUN(test_deauthorize);
    RUN(test_no_plaintext);
    RUN(test_find_and_purge);
    CHECK_INT(th_proc_stop(&vault[0]), 0);
    RUN(test_logs_clean);

    natsConnection_Destroy(nc);
    fakehttp_stop(meta);
    th_nats_stop(&nats);
    free(ig_id);
    free(page_id);
    return check_summary();
}
