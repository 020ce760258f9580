/*
 * test_vault - token-vault end to end: the real daemon (two replicas for the refresh race),
 * domsctl, nats-server, PostgreSQL, and the Meta stand-in (fakemeta, two hosts that accept
 * only the tokens they issued), with its errors, throttling and garbage. Tokens are
 * exchanged, sealed, served only to the services allowed, refreshed when due and only then
 * (never before Meta's 24 hours), marked needs_reauth on error 190 (revoked, expired) or
 * is_valid false, never served after a disconnect, and never found in plaintext in the
 * schema or the logs.
 */
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "common/mem.h"
#include "common/nats.h"
#include "fakemeta.h"
#include "harness.h"
#include "vault_suite.h"

#define APP_ID     FAKEMETA_APP_ID
#define APP_SECRET FAKEMETA_APP_SECRET

static struct th_db db;
static struct th_nats nats;
struct fakemeta *meta;
static struct th_proc vault[2];
natsConnection *nc;
char kek_path[512];

/* --- helpers ------------------------------------------------------------------------- */

/* Starts a replica that calls Meta at graph and ig, without waiting for it; returns its HTTP
 * port (see await_vault). */
int launch_vault_at(struct th_proc *p, const char *kek, const char *graph, const char *ig)
{
    char *dburl = th_db_url(&db, "doms_vault");
    char *env[16];
    int n = 0, port = th_free_port();

    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[n++] = cm_xasprintf("NATS_URL=%s", nats.url);
    env[n++] = cm_xasprintf("DOMS_KEK_FILE=%s", kek);
    env[n++] = cm_xasprintf("TOKEN_VAULT_HTTP_LISTEN=127.0.0.1:%d", port);
    env[n++] = cm_xasprintf("META_GRAPH_URL=%s", graph);
    env[n++] = cm_xasprintf("INSTAGRAM_GRAPH_URL=%s", ig);
    env[n++] = cm_xstrdup("META_APP_ID=" APP_ID);
    env[n++] = cm_xstrdup("META_APP_SECRET=" APP_SECRET);
    env[n++] = cm_xstrdup("LOG_LEVEL=debug");
    env[n] = NULL;
    th_proc_start(p, "token-vault", NULL, (const char *const *)env);
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(dburl);
    return port;
}

/* Starts a replica calling the Meta stand-in, without waiting for it. */
static int launch_vault(struct th_proc *p, const char *kek)
{
    return launch_vault_at(p, kek, fakemeta_url(meta, FAKEMETA_FACEBOOK),
                           fakemeta_url(meta, FAKEMETA_INSTAGRAM));
}

void await_vault(int port)
{
    char ready[128];

    snprintf(ready, sizeof(ready), "http://127.0.0.1:%d/readyz", port);
    CHECK_MSG(th_wait_http(ready, 200, 20000), "token-vault never ready");
}

static void start_vault(struct th_proc *p, const char *kek)
{
    await_vault(launch_vault(p, kek));
}

/* Runs domsctl --json with args; returns the exit code and the parsed output (or NULL). */
int domsctl(cJSON **out, char **text, const char *const *args)
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
static cJSON *request_as(const char *identity, const char *subject, const char *body)
{
    natsMsg *reply = NULL;
    cJSON *json = NULL;

    if (cm_nats_request_as(&reply, nc, identity, subject, body, 30000) == NATS_OK) {
        json = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
    }
    return json;
}

/* A request as the operator. */
cJSON *request(const char *subject, const char *body)
{
    return request_as("operator", subject, body);
}

const char *str_at(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItem(o, a);
    if (b != NULL)
        v = cJSON_GetObjectItem(v, b);
    return cJSON_GetStringValue(v);
}

/* The short-lived token Meta's Login would have given the business for account. */
void login(const char *platform, const char *account, const char *token)
{
    bool ig = strcmp(platform, "instagram") == 0;

    fakemeta_issue(meta, ig ? FAKEMETA_IG_SHORT : FAKEMETA_USER_SHORT, token, ig ? account : NULL);
}

char *connect_ok(const char *platform, const char *account, const char *token, const char *asid,
                 char **expires)
{
    const char *args[] = {
        "integration", "connect", "--workspace", "ws_1", "--platform",           platform,
        "--account",   account,   "--token",     token,  asid ? "--asid" : NULL, asid,
        NULL};
    cJSON *out = NULL;
    char *id = NULL;
    int code;

    login(platform, account, token);
    code = domsctl(&out, NULL, args);

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

char *token_of(const char *id, const char *requester, char **error_code)
{
    char body[256];
    cJSON *r;
    char *tok = NULL;

    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\"}", id);
    r = request_as(requester, "vault.token.get", body);
    if (str_at(r, "result", "token") != NULL)
        tok = cm_xstrdup(str_at(r, "result", "token"));
    if (error_code != NULL)
        *error_code = cm_xstrdup(str_at(r, "error", "code") ? str_at(r, "error", "code") : "");
    cJSON_Delete(r);
    return tok;
}

char *vault_sql(const char *q)
{
    return th_db_sql(&db, NULL, q);
}

/* Runs an UPDATE ... RETURNING 1 that must change a row. */
void update_one(const char *q)
{
    char *v = th_db_sql(&db, NULL, q);

    CHECK_MSG(v != NULL, "no row changed by: %s", q);
    free(v);
}

const cJSON *find_integration(const cJSON *list, const char *id)
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

char *ig_id, *page_id;

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
    /* Subscribed at connect to the fields the suite consumes, each on its host. */
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(it, "subscribed")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(find_integration(list, page_id), "subscribed")));
    {
        char *ig_fields = fakemeta_subscription(meta, "17841400000000001");
        char *fb_fields = fakemeta_subscription(meta, "106123456789012");
        CHECK_CONTAINS(ig_fields, "messages,messaging_postbacks");
        CHECK_CONTAINS(fb_fields, "message_echoes");
        CHECK_CONTAINS(fb_fields, "standby");
        free(ig_fields);
        free(fb_fields);
    }
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
    {
        /* The old way in: a body that names the router. The caller is the subject's, and the
         * vault refuses it even where a loose server would let it through. */
        char body[256];
        cJSON *r;
        snprintf(body, sizeof(body),
                 "{\"integration_id\":\"%s\",\"requester\":\"conversation-router\"}", page_id);
        r = request_as("webhook-ingest", "vault.token.get", body);
        CHECK_STR(str_at(r, "error", "code"), "denied");
        CHECK(str_at(r, "result", "token") == NULL);
        cJSON_Delete(r);
        /* Over TLS, webhook-ingest's own certificate cannot even ask: no answer comes. */
        if (th_nats_tls()) {
            natsConnection *ing = NULL;
            natsMsg *m = NULL;
            snprintf(body, sizeof(body), "{\"integration_id\":\"%s\"}", page_id);
            CHECK(th_nats_connect_as(&ing, nats.url, "webhook-ingest") == NATS_OK);
            CHECK(cm_nats_request_as(&m, ing, "webhook-ingest", "vault.token.get", body, 2000) !=
                  NATS_OK);
            CHECK(m == NULL);
            natsMsg_Destroy(m);
            natsConnection_Destroy(ing);
        }
        /* A daemon may not act as the operator. */
        snprintf(body, sizeof(body),
                 "{\"actor\":\"operator\",\"platform\":\"messenger\",\"account_id\":\"1\"}");
        r = request_as("conversation-router", "vault.integration.lookup", body);
        CHECK_STR(str_at(r, "error", "code"), "denied");
        cJSON_Delete(r);
    }

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
        login("instagram", "17841400000000001", "t");
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
        {"instagram", "1784", "expired-short", "Session has expired"},
        {"instagram", "1784", "expired-short", "(code 190, subcode 463"},
        {"instagram", "1787", "never-issued", "Cannot parse access token (code 190"},
        {"messenger", "1062", "short-on-ig-only", "Cannot parse access token (code 190"},
        {"instagram", "1785", "garbage", "unexpected (HTTP 200, not JSON)"},
        {"instagram", "1786", "html502", "(HTTP 502)"},
        {"messenger", "999", "short-fb-2", "Object with ID '999' does not exist"},
        {"messenger", "999", "short-fb-2", "(code 100, subcode 33"},
        {"messenger", "1061", "throttled", "User request limit reached (code 17"},
    };
    char *before = th_db_sql(&db, NULL, "SELECT count(*) FROM vault.integrations");

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"integration", "connect",         "--workspace", "ws_1",
                              "--platform",  cases[i].platform, "--account",   cases[i].account,
                              "--token",     cases[i].token,    NULL};
        char *text = NULL;
        if (strcmp(cases[i].token, "expired-short") == 0) {
            /* Issued two hours ago: a short-lived token lasts one. */
            login(cases[i].platform, cases[i].account, cases[i].token);
            fakemeta_age(meta, cases[i].token, 7200);
        } else if (strcmp(cases[i].token, "short-on-ig-only") == 0) {
            /* Issued by Instagram's host: Facebook's does not know it. */
            login("instagram", cases[i].account, cases[i].token);
        } else if (strcmp(cases[i].token, "never-issued") != 0) {
            login(cases[i].platform, cases[i].account, cases[i].token);
        }
        /* Meta throttles the user for good: the vault retried, then gave up with the reason.
         * (User-level: the refresher's debug_token calls, on the app's budget, go on.) */
        if (strcmp(cases[i].token, "throttled") == 0)
            fakemeta_throttle(meta, 17, -1);
        CHECK_INT(domsctl(NULL, &text, args), 1);
        fakemeta_throttle(meta, 0, 0);
        CHECK_CONTAINS(text, cases[i].needle);
        free(text);
    }
    /* Nothing half-stored. */
    {
        char *after = th_db_sql(&db, NULL, "SELECT count(*) FROM vault.integrations");
        CHECK_STR(after, before);
        free(after);
    }
    /* Throttled twice, then answered: the vault's retries carry the exchange through. */
    {
        char *id;
        int calls = fakehttp_count(fakemeta_server(meta, FAKEMETA_FACEBOOK));
        fakemeta_throttle(meta, 17, 2);
        id = connect_ok("messenger", "106000000000111", "short-throttled", NULL, NULL);
        CHECK(id[0] != '\0');
        /* Two refused exchanges, the exchange, the Page token, who connected (GET /me), the
         * webhook subscription. */
        CHECK_INT(fakehttp_count(fakemeta_server(meta, FAKEMETA_FACEBOOK)) - calls, 6);
        free(id);
    }
    free(before);
}

/* The number result.<name> of a service's reply, -1 when it is absent or not a number. */
long result_num(const cJSON *r, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), name);

    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static long refresh_count(void)
{
    struct fakehttp *ig = fakemeta_server(meta, FAKEMETA_INSTAGRAM);
    long n = 0;

    for (int i = 0; i < fakehttp_count(ig); i++) {
        if (strcmp(fakehttp_get(ig, i)->path, "/refresh_access_token") == 0)
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
    update_one(q);
    /* Not due: expiring in five days but obtained an hour ago. */
    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '1 hour',"
             " expires_at = now() + interval '5 days' WHERE integration_id = '%s' RETURNING 1",
             young);
    update_one(q);
    /* Not due: old, but expiring in fifty days. */
    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '10 days',"
             " expires_at = now() + interval '50 days' WHERE integration_id = '%s' RETURNING 1",
             distant);
    update_one(q);
    /* Meta's own record agrees: the token it issued is two days old. */
    fakemeta_age(meta, "IGLL-short-ig-2", 2 * 86400);

    fakemeta_clear(meta);
    r = request("vault.refresh.run", "{}");
    CHECK_INT(result_num(r, "refreshed"), 1);
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 1);
    tok = token_of(ig_id, "conversation-router", NULL);
    CHECK_STR(tok, "IGLL-short-ig-2-r");
    free(tok);
    snprintf(q, sizeof(q),
             "SELECT expires_at > now() + interval '59 days' FROM vault.tokens"
             " WHERE integration_id = '%s'",
             ig_id);
    v = th_db_sql(&db, NULL, q);
    CHECK_STR(v, "t");
    free(v);

    /* Run again: nothing is due any more. */
    r = request("vault.refresh.run", "{}");
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 1);
    free(young);
    free(distant);
}

/* Marks integration id due in the vault's own record: obtained two days ago, expiring soon. */
static void make_due(const char *id)
{
    char q[512];

    snprintf(q, sizeof(q),
             "UPDATE vault.tokens SET obtained_at = now() - interval '2 days',"
             " expires_at = now() + interval '3 days' WHERE integration_id = '%s' RETURNING 1",
             id);
    update_one(q);
}

static char *state_of(const char *id)
{
    char q[256];

    snprintf(q, sizeof(q),
             "SELECT status || ' | ' || coalesce(last_error, '') FROM vault.integrations"
             " WHERE id = '%s'",
             id);
    return th_db_sql(&db, NULL, q);
}

/*
 * Meta's rules win over the vault's record: a token Meta says is under 24 hours old is not
 * refreshed (a passing failure, retried later, the integration still connected), and one
 * Meta says has expired needs the business to log in again.
 */
static void test_refresh_rules(void)
{
    char *early = connect_ok("instagram", "17841400000000006", "short-early", NULL, NULL);
    char *lapsed = connect_ok("instagram", "17841400000000007", "short-lapsed", NULL, NULL);
    char *state;
    cJSON *r;

    make_due(early);
    fakemeta_clear(meta);
    r = request("vault.refresh.run", "{}");
    CHECK_INT(result_num(r, "failed"), 1);
    CHECK_INT(result_num(r, "needs_reauth"), 0);
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 1);
    state = state_of(early);
    CHECK_CONTAINS(state, "connected | ");
    CHECK_CONTAINS(state, "at least 24 hours old (code 100");
    free(state);
    /* Not asked again at once. */
    r = request("vault.refresh.run", "{}");
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 1);

    /* Sixty-one days on Meta's clock for this token: expired, 190/463. */
    make_due(lapsed);
    fakemeta_age(meta, "IGLL-short-lapsed", 61LL * 86400);
    r = request("vault.refresh.run", "{}");
    CHECK_INT(result_num(r, "needs_reauth"), 1);
    cJSON_Delete(r);
    CHECK_INT(refresh_count(), 2);
    state = state_of(lapsed);
    CHECK_CONTAINS(state, "needs_reauth | ");
    CHECK_CONTAINS(state, "subcode 463");
    free(state);
    free(early);
    free(lapsed);
}

/* Refresh calls the Instagram host received for token. */
static int refreshes_of(const char *token)
{
    struct fakehttp *ig = fakemeta_server(meta, FAKEMETA_INSTAGRAM);
    char needle[128];
    int n = 0;

    snprintf(needle, sizeof(needle), "access_token=%s", token);
    for (int i = 0; i < fakehttp_count(ig); i++) {
        const struct fakehttp_request *r = fakehttp_get(ig, i);
        if (strcmp(r->path, "/refresh_access_token") == 0 && strstr(r->uri, needle) != NULL)
            n++;
    }
    return n;
}

static struct th_proc vault_first; /* vault[0] before its restart, for test_logs_clean */

/*
 * Two replicas run a refresh pass at the same moment, forced rather than hoped for: with
 * two tokens due, the test holds vault.integrations locked, starts both replicas (each runs
 * its scheduler's first pass at start-up), waits until both passes are blocked on the lock in
 * their claim, then releases them together. Meta answers slowly, so each claimed row stays
 * held while the other replica looks. Meta must see exactly one refresh per token.
 */
static void test_replicas_refresh_once(void)
{
    const char *tokens[2] = {"IGLL-short-race-1", "IGLL-short-race-2"};
    char *ids[2], q[512];
    PGconn *lock;
    PGresult *res;
    int ports[2];
    bool both = false, idle = false;

    ids[0] = connect_ok("instagram", "17841400000000004", "short-race-1", NULL, NULL);
    ids[1] = connect_ok("instagram", "17841400000000014", "short-race-2", NULL, NULL);
    vault_first = vault[0];
    CHECK_INT(th_proc_stop(&vault[0]), 0);
    for (int i = 0; i < 2; i++) {
        snprintf(q, sizeof(q),
                 "UPDATE vault.tokens SET obtained_at = now() - interval '2 days',"
                 " expires_at = now() + interval '3 days' WHERE integration_id = '%s'"
                 " RETURNING 1",
                 ids[i]);
        update_one(q);
        fakemeta_age(meta, tokens[i], 2 * 86400);
    }
    fakemeta_set_delay(meta, 1500);
    fakemeta_clear(meta);

    lock = th_db_connect(&db, NULL);
    res = PQexec(lock, "BEGIN; LOCK TABLE vault.integrations IN ACCESS EXCLUSIVE MODE");
    CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "lock: %s", PQresultErrorMessage(res));
    PQclear(res);
    ports[0] = launch_vault(&vault[0], kek_path);
    ports[1] = launch_vault(&vault[1], kek_path);
    /* Both schedulers' first passes wait in their claim: they will race for the rows. */
    for (int i = 0; i < 600 && !both; i++) {
        both = th_db_count(&db, NULL,
                           "SELECT count(*) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND usename = 'doms_vault'"
                           " AND wait_event_type = 'Lock' AND query LIKE '%SKIP LOCKED%'") == 2;
        if (!both)
            th_sleep_ms(50);
    }
    CHECK_MSG(both, "the two replicas' refresh passes never both waited on the claim");
    res = PQexec(lock, "COMMIT");
    PQclear(res);
    PQfinish(lock);
    await_vault(ports[0]);
    await_vault(ports[1]);
    /* Both tokens refreshed, and both passes over: no vault connection busy any more. */
    for (int i = 0; i < 600 && !idle; i++) {
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM vault.tokens WHERE integration_id IN ('%s', '%s')"
                 " AND obtained_at > now() - interval '1 hour'",
                 ids[0], ids[1]);
        idle = th_db_count(&db, NULL, q) == 2 &&
               th_db_count(&db, NULL,
                           "SELECT count(*) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND usename = 'doms_vault'"
                           " AND state <> 'idle'") == 0;
        if (!idle)
            th_sleep_ms(50);
    }
    CHECK_MSG(idle, "the raced refresh passes never finished");
    fakemeta_set_delay(meta, 0);
    for (int i = 0; i < 2; i++)
        CHECK_MSG(refreshes_of(tokens[i]) == 1, "%s refreshed %d times", tokens[i],
                  refreshes_of(tokens[i]));
    CHECK_INT(refresh_count(), 2);
    th_proc_stop(&vault[1]);
    free(ids[0]);
    free(ids[1]);
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
    update_one(q);
    /* The Page token fails its daily check. */
    snprintf(q, sizeof(q),
             "UPDATE vault.integrations SET last_checked_at = now() - interval '2 days'"
             " WHERE id = '%s' RETURNING 1",
             page_id);
    update_one(q);
    /* The user removed the app: Meta revoked both tokens. */
    fakemeta_age(meta, "IGLL-revoked-soon", 2 * 86400);
    fakemeta_revoke(meta, "IGLL-revoked-soon");
    fakemeta_revoke(meta, "PAGE-106123456789012-short-fb-1");
    r = request("vault.refresh.run", "{}");
    CHECK_INT(result_num(r, "needs_reauth"), 2);
    cJSON_Delete(r);

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
    fakemeta_clear(meta);
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
    v = th_db_sql(&db, NULL, q);
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

/* No column of the vault schema holds a token or the app secret in plaintext. */
static void test_no_plaintext(void)
{
    const char *needles[] = {"IGLL-",    "EAAU-", "PAGE-",   "short-ig",
                             "short-fb", "asid-", APP_SECRET};
    char q[1024];

    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
        char *hits;
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM (SELECT row_to_json(t)::text AS r FROM vault.integrations t"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.tokens t"
                 " UNION ALL SELECT encode(sealed, 'escape') FROM vault.tokens"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.data_keys t"
                 " UNION ALL SELECT encode(wrapped, 'escape') FROM vault.data_keys"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.index_key t"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.connectors t"
                 " UNION ALL SELECT row_to_json(t)::text FROM vault.outbox t) s"
                 " WHERE r LIKE '%%%s%%'",
                 needles[i]);
        hits = th_db_sql(&db, NULL, q);
        CHECK_MSG(hits != NULL && strcmp(hits, "0") == 0, "%s found in the vault schema",
                  needles[i]);
        free(hits);
    }
}

static void test_logs_clean(void)
{
    const char *needles[] = {"IGLL-", "EAAU-", "PAGE-", "short-ig", APP_SECRET};

    const struct th_proc *procs[3] = {&vault_first, &vault[0], &vault[1]};

    for (int p = 0; p < 3; p++) {
        char *log = th_proc_output(procs[p]);
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
    if (fakemeta_start(&meta) != 0)
        return 1;
    snprintf(kek_path, sizeof(kek_path), "%s/vault.kek", th_tmpdir());
    f = fopen(kek_path, "w");
    fputs("1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n", f);
    fclose(f);
    chmod(kek_path, 0600);
    if (th_nats_connect(&nc, nats.url) != NATS_OK)
        return 1;
    vault_roles_start();
    start_vault(&vault[0], kek_path);

    RUN(test_bad_kek);
    RUN(test_connect_both);
    RUN(test_vault_roles);
    RUN(test_token_burst);
    RUN(test_meta_errors);
    RUN(test_refresh_when_due);
    RUN(test_refresh_rules);
    RUN(test_replicas_refresh_once);
    RUN(test_needs_reauth);
    RUN(test_disconnect);
    RUN(test_deauthorize);
    RUN(test_who_connected);
    RUN(test_subscription);
    RUN(test_no_plaintext);
    RUN(test_find_and_purge);
    CHECK_INT(th_proc_stop(&vault[0]), 0);
    RUN(test_logs_clean);
    RUN(test_meta_lane);

    natsConnection_Destroy(nc);
    fakemeta_stop(meta);
    th_nats_stop(&nats);
    free(ig_id);
    free(page_id);
    return check_summary();
}
