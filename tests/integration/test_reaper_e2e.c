/*
 * test_reaper_e2e - the deletion promises against the real suite: webhook-ingest,
 * token-vault, conversation-router, ai-suggest (its drafts from a local OpenAI stand-in) and
 * retention-reaper, messages sent through signed webhooks the way Meta sends them. After Meta's
 * data-deletion callback, and after a workspace's purge, a scan of every table of every schema
 * finds no row of the deleted account, its contacts or its messages, and JetStream holds none of
 * its raw events; the other workspace keeps every row.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/crypto.h"
#include "common/keyring.h"
#include "common/mem.h"
#include "common/pg.h"
#include "fakeai.h"
#include "stack.h"

#define PAGE_A "106000000000711" /* workspace A, deleted through Meta's callback */
#define PAGE_B "106000000000722" /* workspace B, kept */
#define PAGE_C "106000000000733" /* workspace C, deleted by its owner */
#define PAGE_D "106000000000744" /* workspace D, its route marked as being purged */

static struct th_stack st;
static struct th_proc vault, ingest, router, ai, reaper;
static struct fakeai *providers;
static char ws_a[64], ws_b[64], ws_c[64];
static char int_a[64], int_c[64];
static long long now_ms_;

/* Creates a workspace and connects a Page to it (with the app-scoped id of its owner). */
static void setup_workspace(char ws[64], const char *name, const char *page, const char *asid,
                            char integration[64])
{
    th_stack_workspace(&st, name, true, ws);
    th_stack_connect(&st, ws, "messenger", page, "short", asid, integration);
}

/* A customer's message to a Page, through ingest. */
static void message(const char *page, const char *psid, const char *mid, const char *text)
{
    CHECK_MSG(th_stack_message(&st, false, page, now_ms_, psid, now_ms_ - 60000, mid, text, NULL) ==
                  200,
              "webhook %s refused", mid);
}

/* Rows of the router for a workspace: contacts + conversations + messages. */
static long router_rows(const char *ws)
{
    char q[400];

    snprintf(q, sizeof(q),
             "SELECT (SELECT count(*) FROM router.contacts WHERE workspace_id = '%s') +"
             " (SELECT count(*) FROM router.conversations WHERE workspace_id = '%s') +"
             " (SELECT count(*) FROM router.messages WHERE workspace_id = '%s')",
             ws, ws, ws);
    return th_stack_count(&st, q);
}

static void await_rows(const char *ws, long want)
{
    for (int i = 0; i < 200 && router_rows(ws) < want; i++)
        th_sleep_ms(50);
    CHECK_INT(router_rows(ws), want);
}

/*
 * Rows, in any table of any schema, whose text holds needle. The audit log is left out
 * when skip_audit: it names integrations by our own ids and is kept 12 months by policy.
 */
static long scan(const char *needle, bool skip_audit)
{
    char q[1200], *where;
    long n;

    snprintf(q, sizeof(q),
             "SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml(format("
             "'SELECT count(*) AS c FROM %%I.%%I t WHERE row_to_json(t)::text LIKE %%L',"
             " table_schema, table_name, '%%%s%%'), false, true, '')))[1]::text::bigint), 0)"
             " FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema"
             " IN ('public', 'ingest', 'router', 'vault', 'reaper', 'ai')%s",
             needle,
             skip_audit ? " AND NOT (table_schema = 'reaper' AND table_name = 'audit_log')" : "");
    n = th_stack_count(&st, q);
    if (n != 0) {
        /* Which tables: the failure should say where to look. */
        snprintf(q, sizeof(q),
                 "SELECT string_agg(table_schema || '.' || table_name, ', ') FROM"
                 " information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema"
                 " IN ('public', 'ingest', 'router', 'vault', 'reaper', 'ai') AND (xpath("
                 "'/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %%I.%%I t"
                 " WHERE row_to_json(t)::text LIKE %%L', table_schema, table_name, '%%%s%%'),"
                 " false, true, '')))[1]::text::bigint > 0",
                 needle);
        where = th_stack_sql(&st, q);
        printf("%s: %ld rows, in %s\n", needle, n, where ? where : "(none?)");
        free(where);
    }
    return n;
}

static long stream_count(const char *stream, const char *filter)
{
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    long n = 0;

    natsConnection_JetStream(&js, st.nc, NULL);
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = filter;
    /* A stream that cannot be read is -1, never "none left". */
    if (js_GetStreamInfo(&si, js, stream, &o, &jerr) == NATS_OK) {
        for (int i = 0; si->State.Subjects != NULL && i < si->State.Subjects->Count; i++)
            n += (long)si->State.Subjects->List[i].Msgs;
        jsStreamInfo_Destroy(si);
    } else {
        n = -1;
    }
    jsCtx_Destroy(js);
    return n;
}

/* The last stream sequence the router's consumer acknowledged with all before it (0: none). */
static uint64_t router_ack_floor(jsCtx *js)
{
    jsConsumerInfo *ci = NULL;
    uint64_t floor = 0;

    if (js_GetConsumerInfo(&ci, js, "META_EVENTS", "conversation-router", NULL, NULL) == NATS_OK) {
        floor = ci->AckFloor.Stream;
        jsConsumerInfo_Destroy(ci);
    }
    return floor;
}

/* Waits until the router acknowledged every event META_EVENTS holds now: each was handled,
 * stored or discarded. */
static void await_router_caught_up(void)
{
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    uint64_t last = 0;

    natsConnection_JetStream(&js, st.nc, NULL);
    if (js_GetStreamInfo(&si, js, "META_EVENTS", NULL, NULL) == NATS_OK) {
        last = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
    }
    CHECK(last > 0);
    CHECK_WAIT(router_ack_floor(js) >= last, 30000);
    jsCtx_Destroy(js);
}

/*
 * What the router stores of one contact: PSIDs are only sealed, so a search for the PSID
 * itself could never find a row. It is found by what is stored in the clear: the blind index
 * (HMAC-SHA256 under the workspace's index key of "<integration>:<psid>", computed here the
 * way the router computes it, keys.c), the contact's id and its conversations' ids.
 */
struct trace {
    char blind[2 * CM_SHA256_LEN + 1];
    char contact[64];
    char convs[4][64];
    int nconvs;
};

/* The blind index of psid, as conversation-router computes it; false when it cannot be. */
static bool blind_index(const char *ws, const char *integration, const char *psid,
                        char hex[2 * CM_SHA256_LEN + 1])
{
    char *url = th_db_url(&st.db, "doms_router"), kid[160], aad[200], err[256] = "";
    const char *params[1] = {ws};
    struct cm_keyring *kr = NULL;
    struct cm_pg *pg = NULL;
    struct cm_buf sealed, key, msg;
    unsigned char mac[CM_SHA256_LEN];
    bool ok = false;
    int rc;

    cm_buf_init(&sealed);
    cm_buf_init(&key);
    cm_buf_init(&msg);
    snprintf(kid, sizeof(kid), "ws:%s", ws);
    snprintf(aad, sizeof(aad), "router.index_keys.sealed:%s", ws);
    if (cm_keyring_load(&kr, st.kek, err, sizeof(err)) != CM_OK) {
        printf("keyring: %s\n", err);
        goto done;
    }
    if (cm_pg_connect(&pg, url, "router") != CM_OK ||
        cm_pg_exec_params(pg, "SELECT sealed FROM index_keys WHERE workspace_id = $1", 1, params,
                          NULL, NULL, 1) != CM_OK ||
        cm_pg_ntuples(pg) != 1) {
        printf("index key of %s: %s\n", ws, pg ? cm_pg_error(pg) : "no connection");
        goto done;
    }
    /* A copy: the keyring's own queries on pg clear the result. */
    cm_buf_append(&sealed, cm_pg_value(pg, 0, 0), (size_t)cm_pg_length(pg, 0, 0));
    rc = cm_keyring_open(kr, pg, kid, aad, sealed.data, sealed.len, &key);
    if (rc != CM_OK || key.len != 32) {
        printf("index key of %s: cannot open it (%d, %zu bytes)\n", ws, rc, key.len);
        goto done;
    }
    cm_buf_printf(&msg, "%s:%s", integration, psid);
    cm_crypto_hmac_sha256(key.data, key.len, msg.data, msg.len, mac);
    cm_hex_encode(mac, sizeof(mac), hex);
    ok = true;
done:
    cm_buf_wipe(&key);
    cm_buf_cleanup(&sealed);
    cm_buf_cleanup(&msg);
    cm_pg_destroy(pg);
    cm_keyring_destroy(kr);
    free(url);
    return ok;
}

/* Records what is stored of psid's contact in ws, and checks that it is there to be found. */
static void trace_contact(const char *ws, const char *integration, const char *psid,
                          struct trace *t)
{
    char q[400], *v;

    memset(t, 0, sizeof(*t));
    CHECK_MSG(blind_index(ws, integration, psid, t->blind), "blind index of %s", psid);
    snprintf(q, sizeof(q),
             "SELECT id FROM router.contacts WHERE workspace_id = '%s' AND blind = '\\x%s'", ws,
             t->blind);
    v = th_stack_sql(&st, q);
    CHECK_MSG(v != NULL, "the router holds %s's contact under its blind index", psid);
    snprintf(t->contact, sizeof(t->contact), "%s", v ? v : "none");
    free(v);
    for (t->nconvs = 0; t->nconvs < 4; t->nconvs++) {
        snprintf(q, sizeof(q),
                 "SELECT id FROM router.conversations WHERE contact_id = '%s' ORDER BY id"
                 " OFFSET %d",
                 t->contact, t->nconvs);
        if ((v = th_stack_sql(&st, q)) == NULL)
            break;
        snprintf(t->convs[t->nconvs], sizeof(t->convs[0]), "%s", v);
        free(v);
    }
    CHECK_MSG(t->nconvs > 0, "%s has a conversation", psid);
}

/* No row of any table holds the contact's blind index; none but the audit log (our own ids,
 * kept 12 months by policy, as for integrations) its id or its conversations' ids. */
static void check_trace_gone(const struct trace *t)
{
    if (t->blind[0] == '\0')
        return; /* not computed: failed already, and an empty needle matches every row */
    CHECK_MSG(scan(t->blind, false) == 0, "a row still holds the blind index %s", t->blind);
    CHECK_MSG(scan(t->contact, true) == 0, "a row still names contact %s", t->contact);
    for (int i = 0; i < t->nconvs; i++)
        CHECK_MSG(scan(t->convs[i], true) == 0, "a row still names conversation %s", t->convs[i]);
}

/* A signed_request as Meta builds it (see test_signed_request.c for the vectors). */
static char *signed_request(const char *user)
{
    char payload[256], enc[400], sig[64];
    unsigned char mac[CM_SHA256_LEN];

    snprintf(payload, sizeof(payload),
             "{\"algorithm\":\"HMAC-SHA256\",\"issued_at\":%lld,\"user_id\":\"%s\"}",
             now_ms_ / 1000, user);
    cm_base64url_encode(payload, strlen(payload), enc);
    cm_crypto_hmac_sha256(FAKEMETA_APP_SECRET, strlen(FAKEMETA_APP_SECRET), enc, strlen(enc), mac);
    cm_base64url_encode(mac, sizeof(mac), sig);
    return cm_xasprintf("signed_request=%s.%s", sig, enc);
}

static void check_gone(const char *page, const char *integration, const char *const *needles)
{
    char filter[96];

    CHECK_MSG(scan(page, false) == 0, "a row still names account %s", page);
    CHECK_MSG(scan(integration, true) == 0, "a row still names integration %s", integration);
    for (int i = 0; needles[i] != NULL; i++)
        CHECK_MSG(scan(needles[i], false) == 0, "a row still holds %s", needles[i]);
    snprintf(filter, sizeof(filter), "meta.events.messenger.%s.>", page);
    CHECK_INT(stream_count("META_EVENTS", filter), 0);
    snprintf(filter, sizeof(filter), "vault.events.integration.%s", integration);
    CHECK_INT(stream_count("VAULT_EVENTS", filter), 0);
}

/* ai-suggest drafts a reply for the workspace's first conversation (read from the router). */
static void suggest(const char *ws)
{
    const char *list[] = {"conversations", "list", "--workspace", ws, NULL};
    cJSON *convs = th_stack_run(&st, 0, list), *out;
    const char *conv = th_json_str(cJSON_GetArrayItem(convs, 0), "conversation_id", NULL);
    const char *args[] = {"suggest", conv ? conv : "none", NULL};

    out = th_stack_run(&st, 0, args);
    CHECK(th_json_str(out, "suggestion_id", NULL) != NULL);
    cJSON_Delete(out);
    cJSON_Delete(convs);
}

static long suggestions(const char *ws)
{
    char q[160];

    snprintf(q, sizeof(q), "SELECT count(*) FROM ai.suggestions WHERE workspace_id = '%s'", ws);
    return th_stack_count(&st, q);
}

/* --- tests ----------------------------------------------------------------------------- */

static void test_setup(void)
{
    char int_b[64];

    setup_workspace(ws_a, "Shop A", PAGE_A, "asid-e2e-a", int_a);
    setup_workspace(ws_b, "Shop B", PAGE_B, "asid-e2e-b", int_b);
    setup_workspace(ws_c, "Shop C", PAGE_C, "asid-e2e-c", int_c);
    message(PAGE_A, "cust-a1", "m_e2e_a1", "alpha one");
    message(PAGE_A, "cust-a1", "m_e2e_a2", "alpha two");
    message(PAGE_A, "cust-a2", "m_e2e_a3", "alpha three");
    message(PAGE_B, "cust-b1", "m_e2e_b1", "bravo one");
    message(PAGE_C, "cust-c1", "m_e2e_c1", "charlie one");
    await_rows(ws_a, 2 + 2 + 3);
    await_rows(ws_b, 3);
    await_rows(ws_c, 3);
    CHECK_INT(stream_count("META_EVENTS", "meta.events.messenger." PAGE_A ".>"), 3);
    suggest(ws_a);
    suggest(ws_b);
    suggest(ws_c);
    CHECK_INT(suggestions(ws_a) + suggestions(ws_b) + suggestions(ws_c), 3);
}

static void test_callback_deletes_at_once(void)
{
    /* Meta's message ids are stored in the clear (router.messages.mid); PSIDs only sealed. */
    static const char *const needles[] = {"m_e2e_a1", "m_e2e_a2", "m_e2e_a3", NULL};
    char url[160], q[400], *body = signed_request("asid-e2e-a"), *code;
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    long b_before = router_rows(ws_b);
    struct trace a1, a2;
    struct th_resp r;
    cJSON *out = NULL;

    trace_contact(ws_a, int_a, "cust-a1", &a1);
    trace_contact(ws_a, int_a, "cust-a2", &a2);

    snprintf(url, sizeof(url), "%s/api/v1/integrations/instagram/data-delete", st.ingest_url);
    CHECK_INT(th_http(&r, "POST", url, headers, body, strlen(body)), 200);
    out = cJSON_Parse(r.body.data);
    code = cm_xstrdup(th_json_str(out, "confirmation_code", NULL)
                          ? th_json_str(out, "confirmation_code", NULL)
                          : "none");
    cJSON_Delete(out);
    th_resp_cleanup(&r);
    free(body);
    for (int i = 0; i < 150; i++) {
        const char *args[] = {"deletion", "status", code, NULL};
        out = th_stack_run(&st, 0, args);
        if (th_json_str(out, "status", NULL) &&
            strcmp(th_json_str(out, "status", NULL), "completed") == 0)
            break;
        cJSON_Delete(out);
        out = NULL;
        th_sleep_ms(200);
    }
    CHECK_STR(th_json_str(out, "status", NULL), "completed");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(out, "reason")));
    {
        const cJSON *d = cJSON_GetObjectItem(out, "deleted");
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "messages")), 3);
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "conversations")), 2);
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "contacts")), 2);
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "tokens")), 1);
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "integrations")), 1);
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "raw_events")), 3);
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "suggestions")), 1);
    }
    cJSON_Delete(out);
    free(code);
    CHECK_INT(router_rows(ws_a), 0);
    CHECK_INT(suggestions(ws_a), 0);
    check_gone(PAGE_A, int_a, needles);
    check_trace_gone(&a1);
    check_trace_gone(&a2);
    /* The integration was ended before anything was purged (deleter.c): token-vault's
     * disconnect, by the reaper, is older than the router's purge. */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM reaper.audit_log WHERE service = 'token-vault'"
             " AND action = 'integration.disconnect' AND actor = 'retention-reaper'"
             " AND subject = '%s' AND at <= (SELECT min(at) FROM reaper.audit_log"
             " WHERE service = 'conversation-router' AND action = 'purge')",
             int_a);
    CHECK_WAIT(th_stack_count(&st, q) == 1, 10000);
    /* Nothing else touched. */
    CHECK_INT(router_rows(ws_b), b_before);
    CHECK_INT(suggestions(ws_b), 1);
    CHECK(scan(PAGE_B, false) > 0);
    CHECK_INT(stream_count("META_EVENTS", "meta.events.messenger." PAGE_B ".>"), 1);
}

/*
 * A route being purged stays so until the purge deletes it, whatever token-vault still says:
 * an event for its account finds no route, token-vault answers the integration as connected,
 * and still nothing is stored (routes.c). Here the route is marked as router.purge marks it
 * first, the integration left connected, before any event of the account (none is cached).
 */
static void test_purging_route_stays(void)
{
    char ws_d[64], int_d[64], q[200], *v;

    setup_workspace(ws_d, "Shop D", PAGE_D, "asid-e2e-d", int_d);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM router.routes WHERE integration_id = '%s'"
             " AND status = 'connected'",
             int_d);
    CHECK_WAIT(th_stack_count(&st, q) == 1, 10000);
    v = th_stack_sqlf(&st,
                      "UPDATE router.routes SET status = 'purging' WHERE integration_id = '%s'"
                      " RETURNING status",
                      int_d);
    CHECK_STR(v, "purging");
    free(v);
    message(PAGE_D, "cust-d1", "m_e2e_d2", "delta two");
    await_router_caught_up();
    CHECK_INT(th_stack_count(&st, "SELECT count(*) FROM router.messages WHERE mid = 'm_e2e_d2'"),
              0);
    snprintf(q, sizeof(q), "SELECT status FROM router.routes WHERE integration_id = '%s'", int_d);
    v = th_stack_sql(&st, q);
    CHECK_STR(v, "purging");
    free(v);
}

static void test_workspace_purge(void)
{
    static const char *const needles[] = {"m_e2e_c1", NULL};
    const char *del[] = {"workspace", "delete", ws_c, NULL};
    const char *pass[] = {"retention", "run", NULL};
    long b_before = router_rows(ws_b);
    struct trace c1;
    char q[256];
    cJSON *out;

    trace_contact(ws_c, int_c, "cust-c1", &c1);

    out = th_stack_run(&st, 0, del);
    CHECK(th_json_str(out, "purge_due_at", NULL) != NULL);
    cJSON_Delete(out);
    /* Tokens gone at once; the conversations kept until the period is over. */
    snprintf(q, sizeof(q), "SELECT count(*) FROM vault.tokens WHERE integration_id = '%s'", int_c);
    CHECK_INT(th_stack_count(&st, q), 0);
    CHECK_INT(router_rows(ws_c), 3);
    /* A deleted workspace takes no new integration: its token would outlive the deletion. */
    {
        const char *again[] = {"integration", "connect",    "--workspace", ws_c,
                               "--platform",  "messenger",  "--account",   "106000000000755",
                               "--token",     "short-late", NULL};
        th_stack_refused(&st, again, "is deleted");
        CHECK_INT(th_stack_count(&st, "SELECT count(*) FROM vault.integrations"
                                      " WHERE account_id = '106000000000755'"),
                  0);
    }
    out = th_stack_run(&st, 0, pass);
    CHECK_INT((long)cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(out, "deleted"), "messages")),
              0);
    cJSON_Delete(out);
    CHECK_INT(router_rows(ws_c), 3);
    /* Due by the database's clock, the one the pass compares purge_due_at with. */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM reaper.workspace_deletions WHERE workspace_id = '%s'"
             " AND purge_due_at <= now()",
             ws_c);
    CHECK_WAIT(th_stack_count(&st, q) == 1, 10000);
    out = th_stack_run(&st, 0, pass);
    CHECK_INT((long)cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(out, "deleted"), "messages")),
              1);
    CHECK_INT((long)cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(out, "deleted"), "contacts")),
              1);
    CHECK_INT((long)cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(out, "deleted"), "suggestions")),
              1);
    cJSON_Delete(out);
    CHECK_INT(router_rows(ws_c), 0);
    CHECK_INT(suggestions(ws_c), 0);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.workspaces WHERE id = '%s'", ws_c);
    CHECK_INT(th_stack_count(&st, q), 0);
    check_gone(PAGE_C, int_c, needles);
    check_trace_gone(&c1);
    /* The other workspace keeps every row, and still works. */
    CHECK_INT(router_rows(ws_b), b_before);
    CHECK_INT(suggestions(ws_b), 1);
    message(PAGE_B, "cust-b1", "m_e2e_b2", "bravo two");
    await_rows(ws_b, b_before + 1);
}

int main(void)
{
    const char *const reaper_env[] = {"RETENTION_MESSAGES=5s", "REAPER_INTERVAL=1d", NULL};

    now_ms_ = th_now_ms();
    th_init("reaper_e2e");
    th_stack_init(&st);
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    th_stack_start(&st, &router, "conversation-router", NULL);
    if (fakeai_start(&providers) != 0)
        return 1;
    {
        char *base = cm_xasprintf("OPENAI_BASE_URL=%s/v1", fakeai_url(providers));
        const char *ai_env[] = {"AI_PROVIDERS=openai", "OPENAI_API_KEY=" FAKEAI_OPENAI_KEY, base,
                                NULL};
        th_stack_start(&st, &ai, "ai-suggest", ai_env);
        free(base);
    }
    th_stack_start(&st, &reaper, "retention-reaper", reaper_env);

    RUN(test_setup);
    RUN(test_callback_deletes_at_once);
    RUN(test_purging_route_stays);
    RUN(test_workspace_purge);

    th_stack_stop(&st);
    fakeai_stop(providers);
    return check_summary();
}
