/*
 * test_reaper_deletion - Meta's callbacks end to end: webhook-ingest verifies signed
 * requests built the way Meta builds them and refuses forged ones (nothing recorded);
 * retention-reaper records a data-deletion request before the code is answered, runs it at
 * once through token-vault, the stand-ins of conversation-router and ai-suggest and
 * JetStream, waits (in_progress) while a service is missing, survives a SIGKILL in the
 * middle, and completes; the status page in every state, as JSON, as HTML and rendered by
 * headless Chromium, never names the person. The deauthorize callback revokes tokens before
 * its 200.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/mem.h"
#include "reaper_stack.h"

#define DELETE_PATH "/api/v1/integrations/instagram/data-delete"
#define DEAUTH_PATH "/api/v1/integrations/instagram/deauthorize"
#define STATUS_PATH "/api/v1/integrations/instagram/data-delete/status"

#define ROUTER_DELETED "{\"contacts\":1,\"conversations\":2,\"messages\":7}"
#define AI_DELETED     "{\"suggestions\":3}"

static struct rs_fake router, ai;

/* A data-deletion callback for user; returns the code (free it), or NULL on a non-200. */
static char *callback(const char *secret, const char *user, long *http_code, char **url)
{
    char payload[512];
    struct th_resp r;
    cJSON *json;
    char *sr, *code = NULL;

    snprintf(payload, sizeof(payload),
             "{\"algorithm\":\"HMAC-SHA256\",\"expires\":0,\"issued_at\":%ld,\"user_id\":\"%s\"}",
             (long)time(NULL), user);
    sr = rs_signed_request(secret, payload);
    *http_code = rs_post_callback(&r, DELETE_PATH, sr);
    json = cJSON_Parse(r.body.data);
    if (*http_code == 200 && cJSON_GetStringValue(cJSON_GetObjectItem(json, "confirmation_code")))
        code = cm_xstrdup(cJSON_GetStringValue(cJSON_GetObjectItem(json, "confirmation_code")));
    if (url != NULL)
        *url = cJSON_GetStringValue(cJSON_GetObjectItem(json, "url"))
                   ? cm_xstrdup(cJSON_GetStringValue(cJSON_GetObjectItem(json, "url")))
                   : NULL;
    cJSON_Delete(json);
    th_resp_cleanup(&r);
    free(sr);
    return code;
}

static long requests(void)
{
    return rs_sql_long("SELECT count(*) FROM reaper.deletion_requests");
}

static const char *status_of(const cJSON *o)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(o, "status"));
}

static double deleted_of(const cJSON *o, const char *kind)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "deleted"), kind));
}

/* GET the status page, as HTML or JSON. */
static long page(const char *code, bool json, struct th_resp *r)
{
    const char *headers[] = {json ? "Accept: application/json" : "Accept: text/html", NULL};
    char url[256];

    snprintf(url, sizeof(url), "%s%s?code=%s", rs.ingest_base, STATUS_PATH, code);
    return th_http(r, "GET", url, headers, NULL, 0);
}

/* What Chromium renders of the page: its DOM after layout, as text. */
static char *chromium_text(const char *code)
{
    char url[256], dir[600], *argv_url, *out = NULL;
    static int n;

    snprintf(url, sizeof(url), "%s%s?code=%s", rs.ingest_base, STATUS_PATH, code);
    snprintf(dir, sizeof(dir), "%s/chromium-%d", th_tmpdir(), n++);
    mkdir(dir, 0700);
    argv_url = cm_xasprintf("--user-data-dir=%s", dir);
    {
        const char *cmd = "/usr/bin/chromium";
        char *line = cm_xasprintf("%s --headless --no-sandbox --disable-gpu --disable-quic"
                                  " --no-first-run --disable-background-networking"
                                  " --disable-component-update --disable-sync %s --dump-dom '%s'"
                                  " 2>/dev/null",
                                  cmd, argv_url, url);
        FILE *p = popen(line, "r");
        struct cm_buf b;
        char chunk[4096];
        size_t got;

        cm_buf_init(&b);
        while (p != NULL && (got = fread(chunk, 1, sizeof(chunk), p)) > 0)
            cm_buf_append(&b, chunk, got);
        if (p != NULL)
            pclose(p);
        out = cm_buf_steal(&b);
        free(line);
    }
    free(argv_url);
    return out;
}

/* The page must not carry anything that identifies the person or the business. */
static void check_anonymous(const char *text, const char *user, const char *account)
{
    CHECK_MSG(text != NULL && strstr(text, user) == NULL, "the user id %s is not on the page",
              user);
    if (account != NULL)
        CHECK_MSG(text != NULL && strstr(text, account) == NULL, "the account id is not shown");
    CHECK(text != NULL && strstr(text, "int_") == NULL);
}

/* --- tests ----------------------------------------------------------------------------- */

static void test_forged_refused(void)
{
    static const char *const payloads[] = {
        "{\"algorithm\":\"HMAC-SHA1\",\"user_id\":\"5001\"}",
        "{\"algorithm\":\"HMAC-SHA256\",\"expires\":1291840400,\"user_id\":\"5001\"}",
        "{\"algorithm\":\"HMAC-SHA256\",\"issued_at\":1732870000}",
        "[\"HMAC-SHA256\"]",
    };
    long before = requests();
    struct th_resp r;
    char *sr, *cut;

    /* Signed with another secret. */
    sr =
        rs_signed_request("not-the-secret", "{\"algorithm\":\"HMAC-SHA256\",\"user_id\":\"5001\"}");
    CHECK_INT(rs_post_callback(&r, DELETE_PATH, sr), 400);
    CHECK_CONTAINS(r.body.data, "\"error\"");
    CHECK_CONTAINS(r.body.data, "signature");
    th_resp_cleanup(&r);
    CHECK_INT(rs_post_callback(&r, DEAUTH_PATH, sr), 400);
    th_resp_cleanup(&r);
    free(sr);
    /* Truncated: the signature is cut short. */
    sr = rs_signed_request(RS_APP_SECRET, "{\"algorithm\":\"HMAC-SHA256\",\"user_id\":\"5001\"}");
    cut = cm_xstrdup(sr);
    memmove(cut + 10, cut + 20, strlen(cut + 20) + 1);
    CHECK_INT(rs_post_callback(&r, DELETE_PATH, cut), 400);
    th_resp_cleanup(&r);
    /* The payload cut short after signing. */
    cut[0] = '\0';
    snprintf(cut, strlen(sr) + 1, "%.*s", (int)strlen(sr) - 6, sr);
    CHECK_INT(rs_post_callback(&r, DELETE_PATH, cut), 400);
    th_resp_cleanup(&r);
    free(cut);
    free(sr);
    /* Properly signed, but not HMAC-SHA256, expired, without a user, not an object. */
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        sr = rs_signed_request(RS_APP_SECRET, payloads[i]);
        CHECK_MSG(rs_post_callback(&r, DELETE_PATH, sr) == 400, "payload %zu refused", i);
        CHECK_CONTAINS(r.body.data, "\"error\"");
        th_resp_cleanup(&r);
        free(sr);
    }
    /* Properly signed, but stale (issued 10 minutes ago: a replay) or without issued_at;
     * answered as a forged one is, 400 with the reason. */
    {
        char payload[160];
        snprintf(payload, sizeof(payload),
                 "{\"algorithm\":\"HMAC-SHA256\",\"expires\":0,\"issued_at\":%ld,"
                 "\"user_id\":\"5001\"}",
                 (long)time(NULL) - 600);
        sr = rs_signed_request(RS_APP_SECRET, payload);
        CHECK_INT(rs_post_callback(&r, DELETE_PATH, sr), 400);
        CHECK_CONTAINS(r.body.data, "stale");
        th_resp_cleanup(&r);
        CHECK_INT(rs_post_callback(&r, DEAUTH_PATH, sr), 400);
        CHECK_CONTAINS(r.body.data, "stale");
        th_resp_cleanup(&r);
        free(sr);
        sr = rs_signed_request(
            RS_APP_SECRET, "{\"algorithm\":\"HMAC-SHA256\",\"expires\":0,\"user_id\":\"5001\"}");
        CHECK_INT(rs_post_callback(&r, DELETE_PATH, sr), 400);
        CHECK_CONTAINS(r.body.data, "issued_at is missing");
        th_resp_cleanup(&r);
        free(sr);
    }
    /* No signed_request at all, and not a POST. */
    CHECK_INT(rs_post_callback(&r, DELETE_PATH, NULL), 400);
    th_resp_cleanup(&r);
    {
        char url[256];
        snprintf(url, sizeof(url), "%s%s", rs.ingest_base, DELETE_PATH);
        CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 405);
        th_resp_cleanup(&r);
    }
    CHECK_INT(requests(), before);
}

static void test_no_data_held(void)
{
    long code_http = 0;
    char *url = NULL, *code = callback(RS_APP_SECRET, "880000000000001", &code_http, &url);
    cJSON *st;

    CHECK_INT(code_http, 200);
    CHECK(code != NULL && strlen(code) >= 22); /* at least 128 bits */
    CHECK(url != NULL && strncmp(url, "https://dms.example.test" STATUS_PATH "?code=",
                                 strlen("https://dms.example.test" STATUS_PATH "?code=")) == 0);
    CHECK(url != NULL && code != NULL && strcmp(url + strlen(url) - strlen(code), code) == 0);
    st = rs_wait_status(code, "completed", 10000);
    CHECK_STR(status_of(st), "completed");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(st, "reason")), "no data held");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(st, "completed_at")));
    CHECK(deleted_of(st, "messages") == 0);
    cJSON_Delete(st);
    /* Signed with the previous secret during a rotation: accepted too. */
    {
        char *again = callback(RS_OLD_SECRET, "880000000000002", &code_http, NULL);
        CHECK_INT(code_http, 200);
        free(again);
    }
    /* The code is stored only as a hash; the user id only sealed. */
    {
        char q[256];
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM reaper.deletion_codes c, reaper.deletion_requests r"
                 " WHERE row_to_json(c)::text || row_to_json(r)::text LIKE '%%%s%%'"
                 " OR row_to_json(r)::text LIKE '%%880000000000001%%'",
                 code);
        CHECK_INT(rs_sql_long(q), 0);
    }
    free(code);
    free(url);
}

static char *user_int, *user_account = "17841400000000042";
static char *code_a, *code_b;

static void test_waits_for_missing_services(void)
{
    long http = 0;
    cJSON *st;
    struct th_resp r;

    user_int = rs_connect("ws_1", "instagram", user_account, "asid-500");
    rs_post_event(user_account, "m_del_1");
    rs_post_event(user_account, "m_del_2");
    CHECK_INT(rs_stream_count("META_EVENTS", "meta.events.instagram.17841400000000042.>"), 2);

    /* conversation-router and ai-suggest are not running: no responders. */
    code_a = callback(RS_APP_SECRET, "asid-500", &http, NULL);
    CHECK_INT(http, 200);
    st = rs_wait_status(code_a, "in_progress", 10000);
    CHECK_STR(status_of(st), "in_progress");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(st, "completed_at")));
    cJSON_Delete(st);
    CHECK_WAIT(rs_sql_long("SELECT count(*) FROM reaper.deletion_requests WHERE status ="
                           " 'in_progress' AND last_error LIKE '%router.purge%no responders%'") ==
                   1,
               10000);
    /* Nothing pretended: the vault's integration waits for the rest (it goes last). */
    {
        char q[256];
        snprintf(q, sizeof(q), "SELECT count(*) FROM vault.integrations WHERE id = '%s'", user_int);
        CHECK_INT(rs_sql_long(q), 1);
    }
    /* What could go went at once: the account's raw events. */
    CHECK_INT(rs_stream_count("META_EVENTS", "meta.events.instagram.17841400000000042.>"), 0);

    /* Meta calls again: a second code for the same deletion. */
    code_b = callback(RS_APP_SECRET, "asid-500", &http, NULL);
    CHECK_INT(http, 200);
    CHECK(code_b != NULL && code_a != NULL && strcmp(code_a, code_b) != 0);
    CHECK_INT(rs_sql_long("SELECT count(DISTINCT request_id) FROM reaper.deletion_codes c JOIN"
                          " reaper.deletion_requests r ON r.id = c.request_id"
                          " WHERE r.status = 'in_progress'"),
              1);
    CHECK_INT(page(code_b, true, &r), 200);
    CHECK_CONTAINS(r.body.data, "\"status\":\"in_progress\"");
    th_resp_cleanup(&r);
}

static void test_pages_in_progress(void)
{
    struct th_resp r;
    char *text;

    CHECK_INT(page(code_a, false, &r), 200);
    CHECK_CONTAINS(r.body.data, "In progress");
    CHECK_CONTAINS(r.headers.data, "text/html");
    CHECK_CONTAINS(r.headers.data, "Content-Security-Policy: default-src 'none'");
    check_anonymous(r.body.data, "asid-500", user_account);
    th_resp_cleanup(&r);
    text = chromium_text(code_a);
    CHECK_CONTAINS(text, "Data deletion request");
    CHECK_CONTAINS(text, "In progress");
    CHECK_CONTAINS(text, code_a);
    check_anonymous(text, "asid-500", user_account);
    free(text);
}

static void test_completes_when_services_appear(void)
{
    const char *run[] = {"retention", "run", NULL};
    cJSON *st, *json;
    struct th_resp r;
    char *text;

    rs_fake_start(&router, "router.purge", ROUTER_DELETED);
    rs_fake_start(&ai, "ai.purge", AI_DELETED);
    /* A pass retries open requests at once (else the worker does within 15 s). */
    CHECK_INT(rs_domsctl(NULL, NULL, run), 0);
    st = rs_wait_status(code_a, "completed", 20000);
    CHECK_STR(status_of(st), "completed");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(st, "reason")));
    CHECK(deleted_of(st, "messages") == 7);
    CHECK(deleted_of(st, "conversations") == 2);
    CHECK(deleted_of(st, "contacts") == 1);
    CHECK(deleted_of(st, "suggestions") == 3);
    CHECK(deleted_of(st, "tokens") == 1);
    CHECK(deleted_of(st, "integrations") == 1);
    CHECK(deleted_of(st, "raw_events") == 2);
    cJSON_Delete(st);
    /* The router was asked about exactly this integration. */
    {
        char *scope = rs_fake_last(&router, "scope"),
             *ids = rs_fake_last(&router, "integration_ids");
        CHECK_STR(scope, "integration");
        CHECK_CONTAINS(ids, user_int);
        free(scope);
        free(ids);
    }
    /* Both codes show the same state. */
    CHECK_INT(page(code_b, true, &r), 200);
    json = cJSON_Parse(r.body.data);
    CHECK_STR(status_of(json), "completed");
    CHECK(deleted_of(json, "messages") == 7);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(json, "confirmation_code")), code_b);
    cJSON_Delete(json);
    th_resp_cleanup(&r);
    /* Gone: the token, the integration, its key, its state events, the sealed user id. */
    {
        char q[256];
        snprintf(q, sizeof(q), "SELECT count(*) FROM vault.integrations WHERE id = '%s'", user_int);
        CHECK_INT(rs_sql_long(q), 0);
        snprintf(q, sizeof(q), "SELECT count(*) FROM vault.data_keys WHERE key_id = 'int:%s'",
                 user_int);
        CHECK_INT(rs_sql_long(q), 0);
        snprintf(q, sizeof(q), "vault.events.integration.%s", user_int);
        CHECK_INT(rs_stream_count("VAULT_EVENTS", q), 0);
    }
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.deletion_requests WHERE user_sealed IS NOT"
                          " NULL AND status = 'completed'"),
              0);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.data_keys WHERE key_id LIKE 'del:%'"), 0);
    /* The page a person reads, in Chromium. */
    text = chromium_text(code_b);
    CHECK_CONTAINS(text, "Completed");
    CHECK_CONTAINS(text, "Messages: 7");
    CHECK_CONTAINS(text, "Access tokens: 1");
    CHECK_CONTAINS(text, " UTC");
    check_anonymous(text, "asid-500", user_account);
    free(text);
}

static void test_pages_other_states(void)
{
    long http = 0;
    char *text, *code;
    struct th_resp r;
    cJSON *st;

    /* No data held. */
    code = callback(RS_APP_SECRET, "880000000000009", &http, NULL);
    cJSON_Delete(rs_wait_status(code, "completed", 10000));
    text = chromium_text(code);
    CHECK_CONTAINS(text, "Completed: no data held");
    CHECK_CONTAINS(text, "We held no data about this person");
    check_anonymous(text, "880000000000009", NULL);
    free(text);
    free(code);

    /* Refused: signed by Meta, but no app-scoped id can look like this. */
    code = callback(RS_APP_SECRET, "not an id; DROP TABLE", &http, NULL);
    CHECK_INT(http, 200);
    st = rs_wait_status(code, "refused", 5000);
    CHECK_STR(status_of(st), "refused");
    CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(st, "reason")), "not an app-scoped");
    cJSON_Delete(st);
    text = chromium_text(code);
    CHECK_CONTAINS(text, "Refused");
    CHECK_CONTAINS(text, "not an app-scoped user id");
    check_anonymous(text, "DROP TABLE", NULL);
    free(text);
    free(code);

    /* Received: a request not picked up yet (held back by hand for the test). */
    code = callback(RS_APP_SECRET, "asid-waiting", &http, NULL);
    cJSON_Delete(rs_wait_status(code, "completed", 10000));
    free(rs_sql("UPDATE reaper.deletion_requests SET status = 'received', completed_at = NULL,"
                " reason = NULL, next_attempt_at = now() + interval '1 hour'"
                " WHERE id = (SELECT max(id) FROM reaper.deletion_requests) RETURNING 1"));
    text = chromium_text(code);
    CHECK_CONTAINS(text, "Received");
    CHECK_CONTAINS(text, "The deletion starts at once");
    free(text);
    free(rs_sql("DELETE FROM reaper.deletion_requests WHERE id = (SELECT max(id) FROM"
                " reaper.deletion_requests) RETURNING 1"));
    free(code);

    /* Unknown codes: 404, as HTML and JSON, and a malformed one too. */
    CHECK_INT(page("AAAAAAAAAAAAAAAAAAAAAAAA", false, &r), 404);
    CHECK_CONTAINS(r.body.data, "No data deletion request has this confirmation code");
    th_resp_cleanup(&r);
    CHECK_INT(page("AAAAAAAAAAAAAAAAAAAAAAAA", true, &r), 404);
    CHECK_CONTAINS(r.body.data, "\"error\"");
    th_resp_cleanup(&r);
    CHECK_INT(page("%3Cscript%3E", false, &r), 404);
    th_resp_cleanup(&r);
    text = chromium_text("BBBBBBBBBBBBBBBBBBBBBBBB");
    CHECK_CONTAINS(text, "No data deletion request has this confirmation code");
    free(text);
}

static void test_deauthorize(void)
{
    char *id = rs_connect("ws_2", "instagram", "17841400000000055", "asid-600");
    char *tok = rs_token(id), *sr;
    struct th_resp r;

    CHECK(tok != NULL);
    free(tok);
    /* Forged: refused, and the token still serves. */
    sr = rs_signed_request("wrong", "{\"algorithm\":\"HMAC-SHA256\",\"user_id\":\"asid-600\"}");
    CHECK_INT(rs_post_callback(&r, DEAUTH_PATH, sr), 400);
    th_resp_cleanup(&r);
    free(sr);
    tok = rs_token(id);
    CHECK(tok != NULL);
    free(tok);
    /* Meta's: the 200 comes once the token is unusable. */
    {
        char payload[160];
        snprintf(payload, sizeof(payload),
                 "{\"algorithm\":\"HMAC-SHA256\",\"expires\":0,\"issued_at\":%ld,"
                 "\"user_id\":\"asid-600\"}",
                 (long)time(NULL));
        sr = rs_signed_request(RS_APP_SECRET, payload);
    }
    CHECK_INT(rs_post_callback(&r, DEAUTH_PATH, sr), 200);
    CHECK_CONTAINS(r.body.data, "\"revoked\":1");
    th_resp_cleanup(&r);
    free(sr);
    tok = rs_token(id);
    CHECK(tok == NULL);
    {
        char q[256];
        snprintf(q, sizeof(q), "SELECT count(*) FROM vault.tokens WHERE integration_id = '%s'", id);
        CHECK_INT(rs_sql_long(q), 0);
        snprintf(q, sizeof(q), "SELECT status FROM vault.integrations WHERE id = '%s'", id);
        char *status = rs_sql(q);
        CHECK_STR(status, "revoked");
        free(status);
    }
    free(id);
}

static void test_killed_mid_deletion(void)
{
    long http = 0;
    char *id = rs_connect("ws_3", "messenger", "106000000000077", "asid-700");
    char *code;
    cJSON *st;

    int asked = atomic_load(&router.received);

    /* The router takes its time; the reaper is killed while it waits. */
    atomic_store(&router.delay_ms, 3000);
    code = callback(RS_APP_SECRET, "asid-700", &http, NULL);
    CHECK_INT(http, 200);
    cJSON_Delete(rs_wait_status(code, "in_progress", 10000));
    /* Inside router.purge now: the stand-in holds the request. */
    CHECK_WAIT(atomic_load(&router.received) > asked, 10000);
    th_proc_signal(&rs.reaper, SIGKILL);
    th_proc_wait(&rs.reaper, 5000);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.deletion_requests WHERE status ="
                          " 'in_progress' AND user_sealed IS NOT NULL"),
              1);
    /* Back, with a prompt router: the request is taken up again and completes. */
    atomic_store(&router.delay_ms, 0);
    rs_start_reaper(NULL);
    st = rs_wait_status(code, "completed", 30000);
    CHECK_STR(status_of(st), "completed");
    CHECK(deleted_of(st, "integrations") == 1);
    cJSON_Delete(st);
    {
        char q[256];
        snprintf(q, sizeof(q), "SELECT count(*) FROM vault.integrations WHERE id = '%s'", id);
        CHECK_INT(rs_sql_long(q), 0);
    }
    free(code);
    free(id);
}

static void test_reaper_down(void)
{
    long http = 0, before;
    char *code;
    struct th_resp r;

    CHECK_INT(th_proc_stop(&rs.reaper), 0);
    before = rs_sql_long("SELECT count(*) FROM reaper.deletion_requests");
    code = callback(RS_APP_SECRET, "asid-800", &http, NULL);
    CHECK_INT(http, 503); /* Meta retries */
    CHECK(code == NULL);
    CHECK_INT(page("AAAAAAAAAAAAAAAAAAAAAAAA", true, &r), 503);
    th_resp_cleanup(&r);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.deletion_requests"), before);
    rs_start_reaper(NULL);
}

static void test_logs_clean(void)
{
    const char *needles[] = {"asid-500", "asid-600", "asid-700", "880000000000001"};
    char *logs[2] = {th_proc_output(&rs.reaper), th_proc_output(&rs.ingest)};

    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
            CHECK_MSG(logs[p] != NULL && strstr(logs[p], needles[i]) == NULL,
                      "%s not in the log of %s", needles[i], p ? "ingest" : "the reaper");
        free(logs[p]);
    }
}

int main(void)
{
    th_init("reaper_deletion");
    rs_init();
    rs_start_vault();
    rs_start_reaper(NULL);
    rs_start_ingest();

    RUN(test_forged_refused);
    RUN(test_no_data_held);
    RUN(test_waits_for_missing_services);
    RUN(test_pages_in_progress);
    RUN(test_completes_when_services_appear);
    RUN(test_pages_other_states);
    RUN(test_deauthorize);
    RUN(test_killed_mid_deletion);
    RUN(test_reaper_down);
    RUN(test_logs_clean);

    rs_fake_stop(&router);
    rs_fake_stop(&ai);
    CHECK_INT(th_proc_stop(&rs.ingest), 0);
    CHECK_INT(th_proc_stop(&rs.reaper), 0);
    CHECK_INT(th_proc_stop(&rs.vault), 0);
    free(user_int);
    free(code_a);
    free(code_b);
    rs_cleanup();
    return check_summary();
}
