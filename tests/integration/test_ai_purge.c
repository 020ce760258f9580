/*
 * test_ai_purge.c - part of test_ai: ai-suggest's purges. An integration's purge shreds its
 * key before its rows go (a copy of a draft taken before no longer opens with the KEK); by
 * conversation and by age; malformed ids and times refused; a deleted workspace refused and
 * purged, shred first (held rows stay while the key is already gone); idempotent.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "ai_suite.h"
#include "check.h"
#include "common/keyring.h"
#include "common/mem.h"

/* deleted.suggestions of an ai.purge reply, or -1. */
static int deleted_of(const cJSON *r)
{
    const cJSON *n = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "suggestions");

    return cJSON_IsNumber(n) ? n->valueint : -1;
}

/*
 * Asks the workspace purge req of ws_a while the test's own transaction holds the
 * workspace's suggestion rows (FOR SHARE): the purge must stop after its shred, with the
 * key gone and committed, the rows still there and no draft readable through
 * ai.suggestion.get; released, it completes. Returns its reply (free it).
 */
static cJSON *purge_held(const char *req)
{
    char q[512], get[256], *sug;
    natsSubscription *sub = NULL;
    natsMsg *reply = NULL;
    cJSON *r = NULL;
    PGconn *lock;
    bool stopped = false;

    snprintf(q, sizeof(q), "SELECT id FROM ai.suggestions WHERE workspace_id = '%s' LIMIT 1", ws_a);
    sug = th_stack_sql(&st, q);
    CHECK(sug != NULL);
    /* Readable up to the purge (the workspace's deletion alone does not hide it), so that an
     * error below is the shred's doing. */
    snprintf(get, sizeof(get), "{\"actor\":\"operator\",\"suggestion_id\":\"%s\"}", sug ? sug : "");
    r = th_stack_request(&st, "ai.suggestion.get", get);
    CHECK_MSG(th_json_str(r, "result", "text") != NULL,
              "the draft was unreadable before the purge");
    cJSON_Delete(r);
    snprintf(q, sizeof(q), "SELECT id FROM ai.suggestions WHERE workspace_id = '%s' FOR SHARE",
             ws_a);
    lock = th_db_hold(&st.db, q, 1);
    CHECK(natsConnection_SubscribeSync(&sub, st.nc, "_TEST.ai.purge") == NATS_OK);
    CHECK(natsConnection_PublishRequestString(st.nc, "ai.purge.retention-reaper", "_TEST.ai.purge",
                                              req) == NATS_OK);
    snprintf(q, sizeof(q),
             "SELECT (SELECT count(*) FROM ai.data_keys WHERE left(key_id, length('ws:%s:'))"
             " = 'ws:%s:' OR key_id = 'ws:%s') +"
             " (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
             " AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM suggestions%%') * 10",
             ws_a, ws_a, ws_a);
    for (int i = 0; i < 600 && !stopped; i++) {
        stopped = th_db_count(&st.db, NULL, q) == 10; /* no key, one DELETE waiting */
        if (!stopped)
            th_sleep_ms(50);
    }
    CHECK_MSG(stopped, "the purge never stopped after the shred, before the rows");
    snprintf(q, sizeof(q), "SELECT count(*) FROM ai.suggestions WHERE workspace_id = '%s'", ws_a);
    CHECK_INT(th_db_count(&st.db, NULL, q), 1);
    r = th_stack_request(&st, "ai.suggestion.get", get);
    CHECK_MSG(r != NULL && cJSON_GetObjectItem(r, "error") != NULL &&
                  th_json_str(r, "result", "text") == NULL,
              "a shredded draft was served: %s",
              th_json_str(r, "error", "message") ? th_json_str(r, "error", "message") : "");
    cJSON_Delete(r);
    r = NULL;
    th_db_release(lock);
    CHECK(natsSubscription_NextMsg(&reply, sub, 60000) == NATS_OK);
    if (reply != NULL) {
        r = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
    }
    natsSubscription_Destroy(sub);
    free(sug);
    return r;
}

/* A draft as a backup would hold it: its row id, key id and sealed text (free ct). */
struct sealed_draft {
    char id[64], key_id[200];
    struct cm_buf ct;
};

/* Copies one sealed draft of int_a into d, then opens it as ai-suggest would, with the
 * suite's KEK and no cache; returns the keyring's code (CM_ERR when there is none). */
static int draft_open(struct sealed_draft *d, bool load)
{
    char err[256], aad[128], *url = th_db_url(&st.db, "doms_ai");
    const char *params[1] = {int_a};
    struct cm_keyring *kr = NULL;
    struct cm_pg *conn = NULL;
    struct cm_buf out;
    int rc = cm_keyring_load(&kr, st.kek, err, sizeof(err));

    cm_buf_init(&out);
    if (load) {
        memset(d, 0, sizeof(*d));
        cm_buf_init(&d->ct);
    }
    if (rc == CM_OK)
        rc = cm_pg_connect(&conn, url, "ai");
    if (rc == CM_OK && load) {
        rc = cm_pg_exec_params(conn,
                               "SELECT id, key_id, text_sealed FROM suggestions"
                               " WHERE integration_id = $1 ORDER BY id LIMIT 1",
                               1, params, NULL, NULL, 1);
        if (rc == CM_OK && cm_pg_ntuples(conn) == 1) {
            snprintf(d->id, sizeof(d->id), "%s", cm_pg_value(conn, 0, 0));
            snprintf(d->key_id, sizeof(d->key_id), "%s", cm_pg_value(conn, 0, 1));
            cm_buf_append(&d->ct, cm_pg_value(conn, 0, 2), (size_t)cm_pg_length(conn, 0, 2));
        } else {
            rc = CM_ERR;
        }
    }
    if (rc == CM_OK) {
        cm_keyring_set_cache_ttl(kr, 0);
        snprintf(aad, sizeof(aad), "ai.suggestions.text:%s", d->id);
        rc = cm_keyring_open(kr, conn, d->key_id, aad, d->ct.data, d->ct.len, &out);
    }
    cm_buf_wipe(&out);
    cm_pg_destroy(conn);
    cm_keyring_destroy(kr);
    free(url);
    return rc;
}

void test_deleted_workspace_purged(void)
{
    const char *del[] = {"workspace", "delete", ws_a, NULL};
    const char *args[] = {"suggest", conv_pii, NULL};
    char req[256], q[512], *v, *text = NULL;
    int before;
    cJSON *r;

    /* Purge by integration first: its key is shredded, then the rows go (the three drafts of
     * the tests before, and the one test_suggestion_sent sent). A draft copied before, as a
     * backup holds it, opens with the KEK until then, and never after. */
    struct sealed_draft d;
    CHECK_INT(draft_open(&d, true), CM_OK);
    snprintf(req, sizeof(req),
             "{\"actor\":\"retention-reaper\",\"scope\":\"integration\",\"integration_ids\":"
             "[\"%s\"]}",
             int_a);
    r = th_stack_request(&st, "ai.purge", req);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "suggestions")),
              4);
    cJSON_Delete(r);
    snprintf(q, sizeof(q), "SELECT count(*) FROM ai.data_keys WHERE key_id = 'ws:%s:int:%s'", ws_a,
             int_a);
    v = th_stack_sql(&st, q);
    CHECK_STR(v, "0");
    free(v);
    CHECK_INT(draft_open(&d, false), CM_NOTFOUND);
    cm_buf_cleanup(&d.ct);

    /* By conversation, and by age: nothing is older than the year 2000; a bad time is
     * refused rather than taken for an outage. */
    cJSON_Delete(run(0, NULL, args));
    snprintf(req, sizeof(req),
             "{\"actor\":\"retention-reaper\",\"scope\":\"conversation\","
             "\"conversation_ids\":[\"%s\"]}",
             conv_pii);
    r = th_stack_request(&st, "ai.purge", req);
    CHECK_INT(deleted_of(r), 1);
    cJSON_Delete(r);
    cJSON_Delete(run(0, NULL, args));
    r = th_stack_request(&st, "ai.purge",
                         "{\"scope\":\"due\",\"older_than\":\"2000-01-01T00:00:00Z\"}");
    CHECK_INT(deleted_of(r), 0);
    cJSON_Delete(r);
    r = th_stack_request(&st, "ai.purge", "{\"scope\":\"due\",\"older_than\":\"yesterday\"}");
    CHECK_STR(th_json_str(r, "error", "code"), "invalid");
    cJSON_Delete(r);
    /* Ids are exact: a malformed one is refused, never used. */
    r = th_stack_request(&st, "ai.purge", "{\"scope\":\"workspace\",\"workspace_id\":\"ws_%\"}");
    CHECK_STR(th_json_str(r, "error", "code"), "invalid");
    cJSON_Delete(r);
    r = th_stack_request(&st, "ai.purge",
                         "{\"scope\":\"integration\",\"integration_ids\":[\"int_1\",\"a:b\"]}");
    CHECK_STR(th_json_str(r, "error", "code"), "invalid");
    cJSON_Delete(r);

    cJSON_Delete(run(0, NULL, del));
    before = all_requests();
    cJSON_Delete(run(1, &text, args));
    CHECK_INT(all_requests(), before);
    free(text);

    snprintf(req, sizeof(req),
             "{\"actor\":\"retention-reaper\",\"scope\":\"workspace\",\"workspace_id\":\"%s\"}",
             ws_a);
    r = purge_held(req);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "suggestions")),
              1);
    CHECK_INT(
        cJSON_GetNumberValue(cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "remaining"), "suggestions")),
        0);
    cJSON_Delete(r);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM ai.data_keys WHERE key_id = 'ws:%s'"
             " OR left(key_id, length('ws:%s:')) = 'ws:%s:'",
             ws_a, ws_a, ws_a);
    v = th_stack_sql(&st, q);
    CHECK_STR(v, "0");
    free(v);
    /* Idempotent. */
    r = th_stack_request(&st, "ai.purge", req);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "suggestions")),
              0);
    cJSON_Delete(r);
    r = th_stack_request(&st, "ai.purge", "{\"scope\":\"everything\"}");
    CHECK_STR(th_json_str(r, "error", "code"), "invalid");
    cJSON_Delete(r);
}
