/*
 * test_router_pg - PostgreSQL stopped and restarted under conversation-router mid-stream:
 * nothing is acknowledged while it is down, ingest keeps accepting (JetStream holds the
 * events), readiness says what is missing, and when PostgreSQL returns every event is
 * stored exactly once, with no restart of any daemon. A malformed event in the stream goes
 * to the dead letters and does not block the ones behind it.
 *
 * And the router's crypto-shredding, scope by scope: after an integration's purge its data
 * key is gone while the workspace's and the other integration's stay; after a workspace's
 * purge every key of it and its index key are gone while another workspace keeps its own. A
 * purge held by the test's own row locks after its shred shows the keys gone (committed)
 * while the rows remain, unreadable through the router and with the KEK itself. Ids are
 * matched exactly (and Meta's mids within one integration: another integration's unsend,
 * edit or reaction naming them changes nothing): a purge of a prefix of another workspace's or
 * integration's id leaves their keys, and a malformed id is refused as invalid.
 *
 * And assignment (test_router_assign.c).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/keyring.h"
#include "common/mem.h"
#include "common/pg.h"
#include "router_pg_suite.h"
#include "stack.h"

#define PAGE "106000000000002"

static struct th_pg pg;
struct th_stack st;
static struct th_proc ingest, vault, router;
static int router_port;

static void post_batch(int from, int to)
{
    char body[32768];
    size_t len = (size_t)snprintf(body, sizeof(body),
                                  "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE
                                  "\",\"time\":1,\"messaging\":[");

    for (int i = from; i < to; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "%s{\"sender\":{\"id\":\"p-%d\"},\"recipient\":{\"id\":\"" PAGE
                                "\"},\"timestamp\":1732870000%03d,\"message\":{\"mid\":"
                                "\"m_pg_%d\",\"text\":\"text %d\"}}",
                                i > from ? "," : "", i % 5, i, i, i);
    snprintf(body + len, sizeof(body) - len, "]}]}");
    CHECK_INT(th_stack_webhook(&st, body), 200);
}

static long stored(void)
{
    char *n = th_stack_sql(&st, "SELECT count(*) FROM router.messages WHERE mid LIKE 'm_pg_%'");
    long v = n ? atol(n) : -1;

    free(n);
    return v;
}

static void test_outage(void)
{
    char ready[128];
    struct th_resp r;
    char ws[64];

    th_stack_workspace(&st, "PG outage", false, ws);
    th_stack_connect(&st, ws, "messenger", PAGE, "t", NULL, NULL);
    post_batch(0, 20);
    for (int i = 0; i < 200 && stored() < 20; i++)
        th_sleep_ms(50);
    CHECK_INT(stored(), 20);

    th_pg_stop(&pg);
    snprintf(ready, sizeof(ready), "http://127.0.0.1:%d/readyz", router_port);
    CHECK(th_wait_http(ready, 503, 10000));
    CHECK_INT(th_http(&r, "GET", ready, NULL, NULL, 0), 503);
    CHECK_CONTAINS(r.body.data, "\"postgres\":false");
    th_resp_cleanup(&r);
    /* Ingest needs only JetStream: Meta's events keep being accepted. */
    post_batch(20, 50);
    /* The router must have tried, failed and kept the events before the server returns. */
    {
        bool tried = false;
        for (int i = 0; i < 300 && !tried; i++) {
            char *log = th_proc_output(&router);
            tried = strstr(log, "will be redelivered") != NULL;
            free(log);
            if (!tried)
                th_sleep_ms(50);
        }
        CHECK_MSG(tried, "the router never reported an event it could not store");
    }
    th_pg_restart(&pg);
    CHECK_MSG(th_wait_http(ready, 200, 30000), "the router did not recover with PostgreSQL");
    for (int i = 0; i < 600 && stored() < 50; i++)
        th_sleep_ms(50);
    CHECK_INT(stored(), 50);
    {
        char *n = th_stack_sql(&st, "SELECT count(DISTINCT mid) FROM router.messages"
                                    " WHERE mid LIKE 'm_pg_%'");
        CHECK_STR(n, "50");
        free(n);
    }
}

static void test_dead_letter(void)
{
    natsMsg *m = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    cJSON *info;

    /* Straight into the stream, as a broken publisher would: not the shape of proto. */
    CHECK(natsConnection_JetStream(&js, st.nc, NULL) == NATS_OK);
    CHECK(js_Publish(NULL, js, "meta.events.messenger." PAGE ".message", "{\"nonsense\":1}", 14,
                     NULL, &jerr) == NATS_OK);
    CHECK(js_Publish(NULL, js, "meta.events.messenger." PAGE ".message", "not json", 8, NULL,
                     &jerr) == NATS_OK);
    post_batch(50, 52);
    for (int i = 0; i < 200 && stored() < 52; i++)
        th_sleep_ms(50);
    CHECK_INT(stored(), 52);
    info = th_stack_js(&st, "$JS.API.STREAM.INFO.ROUTER_DEAD", "");
    CHECK(cJSON_GetNumberValue(
              cJSON_GetObjectItem(cJSON_GetObjectItem(info, "state"), "messages")) == 2);
    /* Each with its reason, in whichever order the router's workers met them. */
    {
        uint64_t first = (uint64_t)cJSON_GetNumberValue(
            cJSON_GetObjectItem(cJSON_GetObjectItem(info, "state"), "first_seq"));
        struct cm_buf reasons;
        cm_buf_init(&reasons);
        for (uint64_t seq = first; seq < first + 2; seq++) {
            if (js_GetMsg(&m, js, "ROUTER_DEAD", seq, NULL, &jerr) == NATS_OK) {
                CHECK_STR(natsMsg_GetSubject(m), "router.dead.inbound.messenger." PAGE);
                cm_buf_append(&reasons, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
                natsMsg_Destroy(m);
            }
        }
        CHECK_CONTAINS(reasons.data ? reasons.data : "", "\"reason\":\"not a JSON object\"");
        CHECK_CONTAINS(reasons.data ? reasons.data : "", "\"reason\":\"not an event of proto");
        cm_buf_cleanup(&reasons);
    }
    cJSON_Delete(info);
    /* The account's dead letters go with its data. */
    {
        char *integration = th_stack_sql(&st, "SELECT integration_id FROM router.routes LIMIT 1");
        char req[256];
        snprintf(req, sizeof(req),
                 "{\"actor\":\"retention-reaper\",\"scope\":\"integration\","
                 "\"integration_ids\":[\"%s\"]}",
                 integration ? integration : "");
        cJSON_Delete(th_stack_request(&st, "router.purge", req));
        info = th_stack_js(&st, "$JS.API.STREAM.INFO.ROUTER_DEAD", "{\"subjects_filter\":\">\"}");
        CHECK(cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(info, "state"), "messages")) == 0);
        cJSON_Delete(info);
        free(integration);
    }
    jsCtx_Destroy(js);
}

/* --- shredding: keys before rows, per purge scope -------------------------------------- */

#define PAGE_A1 "106000000000021"
#define PAGE_A2 "106000000000022"
#define PAGE_B  "106000000000023"
#define PAGE_C  "106000000000024"

/* How many data keys the router holds whose key id is key_id or starts with key_id ":". */
static long keys_under(const char *key_id)
{
    char q[1024];

    snprintf(q, sizeof(q),
             "SELECT count(*) FROM router.data_keys WHERE key_id = '%s'"
             " OR left(key_id, length('%s:')) = '%s:'",
             key_id, key_id, key_id);
    return th_db_count(&st.db, NULL, q);
}

char *workspace(const char *name)
{
    char ws[64];

    th_stack_workspace(&st, name, false, ws);
    return cm_xstrdup(ws);
}

/* Connects page to ws; returns the integration id (a new string). */
static char *connect_page(const char *ws, const char *page)
{
    char token[64], id[64];

    snprintf(token, sizeof(token), "short-%s", page);
    th_stack_connect(&st, ws, "messenger", page, token, NULL, id);
    return cm_xstrdup(id);
}

/* Three messages from two contacts of page, "<page> says <i>", and waits until stored. */
static void post_page(const char *page)
{
    char body[2048], q[256];
    size_t len = (size_t)snprintf(body, sizeof(body),
                                  "{\"object\":\"page\",\"entry\":[{\"id\":\"%s\",\"time\":1,"
                                  "\"messaging\":[",
                                  page);

    for (int i = 0; i < 3; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "%s{\"sender\":{\"id\":\"k-%s-%d\"},\"recipient\":{\"id\":\"%s\"},"
                                "\"timestamp\":1732870000%03d,\"message\":{\"mid\":"
                                "\"m_%s_%d\",\"text\":\"%s says %d\"}}",
                                i ? "," : "", page, i % 2, page, i, page, i, page, i);
    snprintf(body + len, sizeof(body) - len, "]}]}");
    CHECK_INT(th_stack_webhook(&st, body), 200);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.messages WHERE mid LIKE 'm_%s_%%'", page);
    for (int i = 0; i < 300 && th_db_count(&st.db, NULL, q) < 3; i++)
        th_sleep_ms(50);
    CHECK_INT(th_db_count(&st.db, NULL, q), 3);
}

/* A conversation of integration (a new string), or NULL. */
static char *conversation_of(const char *integration)
{
    char q[256];

    snprintf(q, sizeof(q),
             "SELECT id FROM router.conversations WHERE integration_id = '%s' ORDER BY id LIMIT 1",
             integration);
    return th_stack_sql(&st, q);
}

/* router.messages.list of conv as the operator, printed (a new string; NULL: no reply). */
static char *read_messages(const char *conv)
{
    char req[256];
    cJSON *r;
    char *text;

    snprintf(req, sizeof(req), "{\"actor\":\"operator\",\"conversation_id\":\"%s\"}", conv);
    r = th_stack_request(&st, "router.messages.list", req);
    text = r ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    return text;
}

/* Asks router.purge; returns the reply (free it). */
static cJSON *purge(const char *body)
{
    cJSON *r = th_stack_request(&st, "router.purge", body);

    CHECK_MSG(cJSON_GetObjectItem(r, "result") != NULL, "router.purge %s failed", body);
    return r;
}

static double result_num(const cJSON *r, const char *a, const char *b)
{
    return cJSON_GetNumberValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), a), b));
}

/* A message's sealed body as a backup would hold it: its id, key id and ciphertext. */
struct sealed_msg {
    char id[64], key_id[200];
    unsigned char *ct;
    size_t len;
};

/* Copies the first sealed message of integration into m (free m->ct); false when none. */
static bool sealed_load(struct sealed_msg *m, const char *integration)
{
    PGconn *c = th_db_connect(&st.db, NULL);
    const char *params[1] = {integration};
    PGresult *r =
        PQexecParams(c,
                     "SELECT m.id, 'ws:' || c.workspace_id || ':int:' || c.integration_id,"
                     " m.body_sealed FROM router.messages m JOIN router.conversations c"
                     " ON c.id = m.conversation_id WHERE c.integration_id = $1"
                     " AND m.body_sealed IS NOT NULL ORDER BY m.id LIMIT 1",
                     1, NULL, params, NULL, NULL, 1);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;

    CHECK_MSG(ok, "no sealed message of %s: %s", integration, PQresultErrorMessage(r));
    memset(m, 0, sizeof(*m));
    if (ok) {
        snprintf(m->id, sizeof(m->id), "%s", PQgetvalue(r, 0, 0));
        snprintf(m->key_id, sizeof(m->key_id), "%s", PQgetvalue(r, 0, 1));
        m->len = (size_t)PQgetlength(r, 0, 2);
        m->ct = cm_xmalloc(m->len);
        memcpy(m->ct, PQgetvalue(r, 0, 2), m->len);
    }
    PQclear(r);
    PQfinish(c);
    return ok;
}

/* Opens m as the router would, with the suite's KEK and no cache: the keyring's code, and
 * on CM_OK the plaintext in *text (free it; NULL otherwise). */
static int sealed_open(const struct sealed_msg *m, char **text)
{
    struct cm_keyring *kr = NULL;
    struct cm_pg *conn = NULL;
    char err[256], aad[128], *url = th_db_url(&st.db, "doms_router");
    struct cm_buf out;
    int rc;

    *text = NULL;
    cm_buf_init(&out);
    rc = cm_keyring_load(&kr, st.kek, err, sizeof(err));
    CHECK_MSG(rc == CM_OK, "keyring: %s", err);
    if (rc == CM_OK)
        rc = cm_pg_connect(&conn, url, "router");
    if (rc == CM_OK) {
        cm_keyring_set_cache_ttl(kr, 0);
        snprintf(aad, sizeof(aad), "router.messages.body:%s", m->id);
        rc = cm_keyring_open(kr, conn, m->key_id, aad, m->ct, m->len, &out);
    }
    if (rc == CM_OK)
        *text = cm_xstrndup(out.data, out.len);
    cm_buf_wipe(&out);
    cm_pg_destroy(conn);
    cm_keyring_destroy(kr);
    free(url);
    return rc;
}

static char *ws_a, *ws_b, *int_a1, *int_a2, *int_b;

static void test_purge_setup(void)
{
    ws_a = workspace("Purge A");
    ws_b = workspace("Purge B");
    int_a1 = connect_page(ws_a, PAGE_A1);
    int_a2 = connect_page(ws_a, PAGE_A2);
    int_b = connect_page(ws_b, PAGE_B);
    post_page(PAGE_A1);
    post_page(PAGE_A2);
    post_page(PAGE_B);
}

/*
 * Meta's mids are looked up within the event's integration: an unsend, an edit and a
 * reaction arriving for Page B, naming mids that exist only on Page A1 (another workspace),
 * change nothing of A1's messages; and B may hold a message of a mid A1 holds too (the
 * unique key is (integration, mid)). B's own message, last in the same POST, is the sign
 * that the events before it were handled.
 */
static void test_mid_scoped_to_integration(void)
{
    char body[4096], q[512];
    const char *from = "{\"sender\":{\"id\":\"k-" PAGE_B "-0\"},\"recipient\":{\"id\":\"" PAGE_B
                       "\"},\"timestamp\":1732870001000,";

    snprintf(body, sizeof(body),
             "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE_B "\",\"time\":1,\"messaging\":["
             "%s\"message\":{\"mid\":\"m_" PAGE_A1 "_0\",\"is_deleted\":true}},"
             "%s\"message_edit\":{\"mid\":\"m_" PAGE_A1 "_1\",\"text\":\"edited by B\","
             "\"num_edit\":2}},"
             "%s\"reaction\":{\"mid\":\"m_" PAGE_A1 "_1\",\"action\":\"react\","
             "\"reaction\":\"love\",\"emoji\":\"\\u2764\"}},"
             "%s\"message\":{\"mid\":\"m_" PAGE_A1 "_2\",\"text\":\"B's own\"}}]}]}",
             from, from, from, from);
    CHECK_INT(th_stack_webhook(&st, body), 200);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM router.messages m JOIN router.conversations c"
             " ON c.id = m.conversation_id WHERE c.integration_id = '%s'"
             " AND m.mid = 'm_" PAGE_A1 "_2'",
             int_b);
    for (int i = 0; i < 300 && th_db_count(&st.db, NULL, q) < 1; i++)
        th_sleep_ms(50);
    CHECK_INT(th_db_count(&st.db, NULL, q), 1);
    /* A1's three messages as they were: not deleted, not edited, no reaction, readable. */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM router.messages m JOIN router.conversations c"
             " ON c.id = m.conversation_id WHERE c.integration_id = '%s' AND NOT m.deleted"
             " AND m.edit_count = 0 AND m.reaction_sealed IS NULL AND m.body_sealed IS NOT NULL",
             int_a1);
    CHECK_INT(th_db_count(&st.db, NULL, q), 3);
    {
        struct sealed_msg m;
        char *text = NULL;
        CHECK(sealed_load(&m, int_a1));
        CHECK_INT(sealed_open(&m, &text), CM_OK);
        CHECK_CONTAINS(text, PAGE_A1 " says");
        CHECK(text == NULL || strstr(text, "edited by B") == NULL);
        free(text);
        free(m.ct);
    }
}

/*
 * integration: that integration's data key is gone, with its rows; the workspace's own key
 * (which seals the blind index's key) and its other integration's key stay, and that
 * integration's messages still read; another workspace keeps everything.
 */
static void test_purge_integration_keys(void)
{
    char key[200], body[256], q[256], *conv, *text;
    struct sealed_msg m;
    cJSON *r;

    snprintf(key, sizeof(key), "ws:%s:int:%s", ws_a, int_a1);
    CHECK_INT(keys_under(key), 1);
    CHECK(sealed_load(&m, int_a1));
    CHECK_INT(sealed_open(&m, &text), CM_OK);
    CHECK_CONTAINS(text, PAGE_A1 " says");
    free(text);

    snprintf(body, sizeof(body),
             "{\"actor\":\"retention-reaper\",\"scope\":\"integration\","
             "\"integration_ids\":[\"%s\"]}",
             int_a1);
    r = purge(body);
    CHECK_INT(result_num(r, "deleted", "messages"), 3);
    CHECK_INT(result_num(r, "remaining", "messages"), 0);
    CHECK_INT(result_num(r, "remaining", "contacts"), 0);
    cJSON_Delete(r);

    CHECK_INT(keys_under(key), 0);
    /* The ciphertext copied before (as a backup would hold it) no longer opens. */
    CHECK_INT(sealed_open(&m, &text), CM_NOTFOUND);
    CHECK(text == NULL);
    free(m.ct);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.conversations WHERE integration_id = '%s'",
             int_a1);
    CHECK_INT(th_db_count(&st.db, NULL, q), 0);
    snprintf(key, sizeof(key), "ws:%s:int:%s", ws_a, int_a2);
    CHECK_INT(keys_under(key), 1);
    snprintf(key, sizeof(key), "ws:%s", ws_a);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.data_keys WHERE key_id = '%s'", key);
    CHECK_INT(th_db_count(&st.db, NULL, q), 1);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.index_keys WHERE workspace_id = '%s'",
             ws_a);
    CHECK_INT(th_db_count(&st.db, NULL, q), 1);
    conv = conversation_of(int_a2);
    text = conv ? read_messages(conv) : NULL;
    CHECK_CONTAINS(text, PAGE_A2 " says");
    free(text);
    free(conv);
    snprintf(key, sizeof(key), "ws:%s", ws_b);
    CHECK_INT(keys_under(key), 2);
}

/* Expects router.purge to answer body with {"error":{"code":"invalid"}}. */
static void purge_invalid(const char *body)
{
    cJSON *r = th_stack_request(&st, "router.purge", body);
    const cJSON *code = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code");

    CHECK_MSG(cJSON_IsString(code) && strcmp(code->valuestring, "invalid") == 0,
              "router.purge %s was not refused as invalid", body);
    cJSON_Delete(r);
}

/*
 * Ids are matched exactly: a purge naming a prefix of another workspace's id, or of another
 * integration's id, shreds nothing of theirs (before, "ws:<prefix>" matched every key id
 * starting with it). A malformed id is refused before anything happens.
 */
static void test_purge_exact_ids(void)
{
    char key[200], body[512], prefix[128], *conv, *text;
    cJSON *r;

    snprintf(key, sizeof(key), "ws:%s", ws_b);
    CHECK_INT(keys_under(key), 2);
    snprintf(prefix, sizeof(prefix), "%.*s", (int)strlen(ws_b) - 1, ws_b);
    snprintf(body, sizeof(body),
             "{\"actor\":\"retention-reaper\",\"scope\":\"workspace\",\"workspace_id\":\"%s\"}",
             prefix);
    r = purge(body);
    CHECK_INT(result_num(r, "deleted", "messages"), 0);
    cJSON_Delete(r);
    snprintf(prefix, sizeof(prefix), "%.*s", (int)strlen(int_b) - 1, int_b);
    snprintf(body, sizeof(body),
             "{\"actor\":\"retention-reaper\",\"scope\":\"integration\","
             "\"integration_ids\":[\"%s\"]}",
             prefix);
    r = purge(body);
    CHECK_INT(result_num(r, "deleted", "messages"), 0);
    cJSON_Delete(r);
    CHECK_INT(keys_under(key), 2);
    conv = conversation_of(int_b);
    text = conv ? read_messages(conv) : NULL;
    CHECK_CONTAINS(text, PAGE_B " says");
    free(text);
    free(conv);

    purge_invalid("{\"actor\":\"retention-reaper\",\"scope\":\"workspace\","
                  "\"workspace_id\":\"ws_%\"}");
    snprintf(body, sizeof(body),
             "{\"actor\":\"retention-reaper\",\"scope\":\"workspace\",\"workspace_id\":\"%s:int\"}",
             ws_b);
    purge_invalid(body);
    snprintf(body, sizeof(body),
             "{\"actor\":\"retention-reaper\",\"scope\":\"integration\","
             "\"integration_ids\":[\"%s\",\"x y\"]}",
             int_b);
    purge_invalid(body);
    CHECK_INT(keys_under(key), 2);
}

/*
 * workspace: every key of the workspace (its own, each integration's) and its index key are
 * gone, with its rows; the other workspace keeps its keys and reads its messages.
 */
static void test_purge_workspace_keys(void)
{
    char key[200], body[256], q[256], *conv, *text;
    cJSON *r;

    snprintf(body, sizeof(body), "{\"actor\":\"operator\",\"workspace_id\":\"%s\"}", ws_a);
    r = th_stack_request(&st, "router.workspace.delete", body);
    CHECK(cJSON_GetObjectItem(r, "result") != NULL);
    cJSON_Delete(r);
    snprintf(key, sizeof(key), "ws:%s", ws_a);
    CHECK_INT(keys_under(key), 2);
    snprintf(body, sizeof(body),
             "{\"actor\":\"retention-reaper\",\"scope\":\"workspace\",\"workspace_id\":\"%s\"}",
             ws_a);
    r = purge(body);
    CHECK_INT(result_num(r, "deleted", "messages"), 3);
    CHECK_INT(result_num(r, "remaining", "messages"), 0);
    CHECK_INT(result_num(r, "remaining", "conversations"), 0);
    CHECK_INT(result_num(r, "remaining", "contacts"), 0);
    cJSON_Delete(r);
    CHECK_INT(keys_under(key), 0);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.index_keys WHERE workspace_id = '%s'",
             ws_a);
    CHECK_INT(th_db_count(&st.db, NULL, q), 0);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.workspaces WHERE id = '%s'", ws_a);
    CHECK_INT(th_db_count(&st.db, NULL, q), 0);

    snprintf(key, sizeof(key), "ws:%s", ws_b);
    CHECK_INT(keys_under(key), 2);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.index_keys WHERE workspace_id = '%s'",
             ws_b);
    CHECK_INT(th_db_count(&st.db, NULL, q), 1);
    conv = conversation_of(int_b);
    text = conv ? read_messages(conv) : NULL;
    CHECK_CONTAINS(text, PAGE_B " says");
    free(text);
    free(conv);
}

/*
 * The purge stopped between the shred and the row deletion: the test's own transaction
 * holds the workspace's message rows (FOR SHARE), so the router's DELETE waits. By then its
 * keys are gone and committed: the rows are still there and cannot be opened, through the
 * router's API or with the KEK. Released, the purge completes.
 */
static void test_purge_keys_before_rows(void)
{
    char *ws_c = workspace("Purge C"), *int_c = connect_page(ws_c, PAGE_C);
    char key[200], body[256], q[512], *conv, *text, *before;
    natsSubscription *sub = NULL;
    natsMsg *reply = NULL;
    struct sealed_msg m;
    PGconn *lock;
    bool stopped = false;

    post_page(PAGE_C);
    snprintf(key, sizeof(key), "ws:%s", ws_c);
    CHECK_INT(keys_under(key), 2);
    conv = conversation_of(int_c);
    before = conv ? read_messages(conv) : NULL;
    CHECK_CONTAINS(before, PAGE_C " says");
    free(before);
    CHECK(sealed_load(&m, int_c));
    CHECK_INT(sealed_open(&m, &text), CM_OK);
    free(text);

    snprintf(q, sizeof(q), "SELECT id FROM router.messages WHERE workspace_id = '%s' FOR SHARE",
             ws_c);
    lock = th_db_hold(&st.db, q, 3);

    snprintf(body, sizeof(body),
             "{\"actor\":\"retention-reaper\",\"scope\":\"workspace\",\"workspace_id\":\"%s\"}",
             ws_c);
    CHECK(natsConnection_SubscribeSync(&sub, st.nc, "_TEST.purge.reply") == NATS_OK);
    CHECK(natsConnection_PublishRequestString(st.nc, "router.purge.retention-reaper",
                                              "_TEST.purge.reply", body) == NATS_OK);
    /* Stopped where the test wants it: keys gone (committed), DELETE waiting on the rows. */
    for (int i = 0; i < 600 && !stopped; i++) {
        stopped = keys_under(key) == 0 &&
                  th_db_count(&st.db, NULL,
                              "SELECT count(*) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                              " AND query LIKE 'DELETE FROM messages%'") == 1;
        if (!stopped)
            th_sleep_ms(50);
    }
    CHECK_MSG(stopped, "the purge never stopped after the shred, before the rows");
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.messages WHERE workspace_id = '%s'", ws_c);
    CHECK_INT(th_db_count(&st.db, NULL, q), 3);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.index_keys WHERE workspace_id = '%s'",
             ws_c);
    CHECK_INT(th_db_count(&st.db, NULL, q), 0);
    /* The rows are there; what they hold is not readable any more. */
    CHECK_INT(sealed_open(&m, &text), CM_NOTFOUND);
    CHECK(text == NULL);
    free(m.ct);
    text = conv ? read_messages(conv) : NULL;
    CHECK_MSG(text != NULL && strstr(text, PAGE_C " says") == NULL,
              "the router read a shredded message: %s", text ? text : "(no reply)");
    free(text);

    th_db_release(lock);
    CHECK(natsSubscription_NextMsg(&reply, sub, 60000) == NATS_OK);
    if (reply != NULL) {
        cJSON *r =
            cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        CHECK_INT(result_num(r, "deleted", "messages"), 3);
        CHECK_INT(result_num(r, "remaining", "messages"), 0);
        CHECK_INT(result_num(r, "remaining", "conversations"), 0);
        CHECK_INT(result_num(r, "remaining", "contacts"), 0);
        cJSON_Delete(r);
        natsMsg_Destroy(reply);
    }
    natsSubscription_Destroy(sub);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.messages WHERE workspace_id = '%s'", ws_c);
    CHECK_INT(th_db_count(&st.db, NULL, q), 0);
    CHECK_INT(keys_under(key), 0);
    snprintf(key, sizeof(key), "ws:%s", ws_b);
    CHECK_INT(keys_under(key), 2);
    free(conv);
    free(ws_c);
    free(int_c);
}

int main(void)
{
    th_init("router_pg");
    th_pg_start(&pg);
    th_stack_init_at(&st, pg.admin_url);
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    router_port = th_stack_start(&st, &router, "conversation-router", NULL);

    RUN(test_outage);
    RUN(test_dead_letter);
    RUN(test_purge_setup);
    RUN(test_mid_scoped_to_integration);
    RUN(test_purge_integration_keys);
    RUN(test_purge_exact_ids);
    RUN(test_purge_workspace_keys);
    RUN(test_purge_keys_before_rows);
    RUN(test_assign_racing);
    RUN(test_assign_rounds);
    /* Through the outage and the redeliveries, the consumers kept their subscriptions. */
    {
        char *log = th_proc_output(&router);
        CHECK_MSG(strstr(log, "subscribing again") == NULL, "a consumer lost its subscription");
        free(log);
    }
    th_stack_stop(&st);
    th_pg_stop(&pg);
    return check_summary();
}
