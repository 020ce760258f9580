/*
 * test_rpc - request/reply on worker threads and the transactional outbox, against the real
 * nats-server and PostgreSQL: replies and errors in the wire contract, a request with
 * invalid JSON, a handler that forgets to reply, outbox events published when and only
 * when their transaction commits, and the audit stream receiving them (the events of one
 * relay pass together in one message); a batch route given the calls queued together.
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/audit.h"
#include "common/nats.h"
#include "common/outbox.h"
#include "common/pg.h"
#include "common/rpc.h"
#include "harness.h"

static struct th_db db;
static struct th_nats server;

static void echo(struct cm_rpc_call *call, void *arg)
{
    const char *word = cm_rpc_str(call, "word");
    cJSON *out;

    (void)arg;
    if (word == NULL) {
        cm_rpc_fail(call, "invalid", "word is required");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "word", word);
    cJSON_AddStringToObject(out, "actor", call->actor);
    cJSON_AddStringToObject(out, "caller", call->caller);
    cJSON_AddNumberToObject(out, "worker", call->worker);
    cm_rpc_reply(call, out);
}

/*
 * Writes an audit event in a transaction that commits or rolls back on request; with
 * "count": n, n events (subjects "<subject>-<i>") in the one transaction.
 */
static void audited(struct cm_rpc_call *call, void *arg)
{
    const char *subject = cm_rpc_str(call, "subject");
    int commit = cJSON_IsTrue(cJSON_GetObjectItem(call->req, "commit"));
    const cJSON *count = cJSON_GetObjectItem(call->req, "count");
    int n = cJSON_IsNumber(count) ? (int)count->valuedouble : 0;
    int rc;

    (void)arg;
    rc = cm_pg_begin(call->pg);
    if (rc == CM_OK && n == 0)
        rc = cm_audit_add(call->pg, "test", call->actor, "thing.read", subject);
    for (int i = 0; rc == CM_OK && i < n; i++) {
        char one[64];
        snprintf(one, sizeof(one), "%s-%d", subject, i);
        rc = cm_audit_add(call->pg, "test", call->actor, "thing.read", one);
    }
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "database");
        return;
    }
    if (commit) {
        if (cm_pg_commit(call->pg) != CM_OK) {
            cm_rpc_fail(call, "unavailable", "commit");
            return;
        }
    } else {
        cm_pg_rollback(call->pg);
    }
    cm_rpc_reply(call, cJSON_CreateTrue());
}

static void forgetful(struct cm_rpc_call *call, void *arg)
{
    (void)call;
    (void)arg;
}

/* --- batches: a lane of one worker, held while requests queue behind it ------------------ */

static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static bool holding, released;
static int batch_sizes[8], nbatches; /* under hold_lock */

/* Holds its worker until the test releases it. */
static void hold(struct cm_rpc_call *call, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&hold_lock);
    holding = true;
    pthread_cond_broadcast(&hold_cond);
    while (!released)
        pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
    cm_rpc_reply(call, cJSON_CreateTrue());
}

/* Answers each call of a batch with its word, its actor and the batch's size. */
static void batched(struct cm_rpc_call *const *calls, int n, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&hold_lock);
    if (nbatches < 8)
        batch_sizes[nbatches++] = n;
    pthread_mutex_unlock(&hold_lock);
    for (int i = 0; i < n; i++) {
        const char *word = cm_rpc_str(calls[i], "word");
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "word", word != NULL ? word : "");
        cJSON_AddStringToObject(out, "actor", calls[i]->actor);
        cJSON_AddNumberToObject(out, "size", n);
        cm_rpc_reply(calls[i], out);
    }
}

/*
 * Eight requests queue behind a held worker: the first four go to the batch handler together,
 * then the next four. Those that fail the common checks (not JSON; an actor the caller may not
 * name) are answered by rpc.c and never reach the handler, which sees 3 and 3; each answer goes
 * to its own request.
 */
static void test_batches(natsConnection *nc, struct cm_rpc *lane)
{
    static const char *const sends[8][2] = {
        {"t.batch.operator", "{\"word\":\"w0\"}"},
        {"t.batch.operator", "not json"},
        {"t.batch.operator", "{\"word\":\"w2\"}"},
        {"t.batch.operator", "{\"word\":\"w3\"}"},
        {"t.batch.webhook-ingest", "{\"word\":\"w4\",\"actor\":\"operator\"}"},
        {"t.batch.operator", "{\"word\":\"w5\"}"},
        {"t.batch.ai-suggest", "{\"word\":\"w6\"}"},
        {"t.batch.operator", "{\"word\":\"w7\"}"},
    };
    natsSubscription *sub = NULL;
    int queued = 0;

    CHECK(natsConnection_PublishRequestString(nc, "t.hold.operator", "_INBOX.doms-test.held",
                                              "{}") == NATS_OK);
    pthread_mutex_lock(&hold_lock);
    for (int i = 0; i < 250 && !holding; i++) {
        pthread_mutex_unlock(&hold_lock);
        th_sleep_ms(20);
        pthread_mutex_lock(&hold_lock);
    }
    CHECK(holding);
    pthread_mutex_unlock(&hold_lock);

    CHECK(natsConnection_SubscribeSync(&sub, nc, "_INBOX.doms-test.batch.*") == NATS_OK);
    for (int i = 0; i < 8; i++) {
        char inbox[64];
        snprintf(inbox, sizeof(inbox), "_INBOX.doms-test.batch.%d", i);
        CHECK(natsConnection_PublishRequestString(nc, sends[i][0], inbox, sends[i][1]) == NATS_OK);
    }
    CHECK(natsConnection_FlushTimeout(nc, 5000) == NATS_OK);
    for (int i = 0; i < 250 && (queued = cm_rpc_queued(lane)) < 8; i++)
        th_sleep_ms(20);
    CHECK_INT(queued, 8);

    pthread_mutex_lock(&hold_lock);
    released = true;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);

    for (int got = 0; got < 8; got++) {
        natsMsg *m = NULL;
        char *text;
        int i;
        if (natsSubscription_NextMsg(&m, sub, 5000) != NATS_OK) {
            CHECK_MSG(false, "only %d of 8 batched requests answered", got);
            break;
        }
        i = atoi(strrchr(natsMsg_GetSubject(m), '.') + 1);
        text = cm_xstrndup(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        if (i == 1) {
            CHECK_CONTAINS(text, "\"code\":\"invalid\"");
        } else if (i == 4) {
            CHECK_CONTAINS(text, "\"code\":\"denied\"");
        } else {
            char want[96];
            snprintf(want, sizeof(want),
                     "{\"result\":{\"word\":\"w%d\",\"actor\":\"%s\",\"size\":3}}", i,
                     i == 6 ? "ai-suggest" : "operator");
            CHECK_STR(text, want);
        }
        free(text);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    pthread_mutex_lock(&hold_lock);
    CHECK_INT(nbatches, 2);
    CHECK_INT(batch_sizes[0], 3);
    CHECK_INT(batch_sizes[1], 3);
    pthread_mutex_unlock(&hold_lock);
}

/* A request as identity (its subject space: "<subject>.<identity>"). */
static char *request_as(natsConnection *nc, const char *identity, const char *subject,
                        const char *body)
{
    natsMsg *reply = NULL;
    char *text;

    if (cm_nats_request_as(&reply, nc, identity, subject, body, 5000) != NATS_OK)
        return cm_xstrdup("(no reply)");
    text = cm_xstrndup(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    return text;
}

static char *request(natsConnection *nc, const char *subject, const char *body)
{
    return request_as(nc, "operator", subject, body);
}

static int wait_ready(struct cm_nats *n)
{
    for (int i = 0; i < 300 && !cm_nats_ready(n); i++)
        th_sleep_ms(20);
    return cm_nats_ready(n);
}

/*
 * The audit stream read from its start: how many messages and events it holds (a message
 * carries one event or an array of them) and its last message, parsed (*last, free it).
 */
static void audit_read(jsCtx *js, long *msgs, long *events, cJSON **last)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    uint64_t first = 1, end = 0;

    *msgs = *events = 0;
    *last = NULL;
    if (js_GetStreamInfo(&si, js, CM_AUDIT_STREAM, NULL, &jerr) == NATS_OK) {
        first = si->State.FirstSeq;
        end = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
    }
    for (uint64_t seq = first; seq >= 1 && seq <= end; seq++) {
        natsMsg *m = NULL;
        cJSON *j;

        if (js_GetMsg(&m, js, CM_AUDIT_STREAM, seq, NULL, &jerr) != NATS_OK)
            continue;
        j = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
        (*msgs)++;
        *events += cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 1;
        cJSON_Delete(*last);
        *last = j;
    }
}

/* Waits until the audit stream holds n events; returns what audit_read() saw last. */
static void audit_wait(jsCtx *js, long n, long *msgs, long *events, cJSON **last)
{
    audit_read(js, msgs, events, last);
    for (int i = 0; i < 200 && *events < n; i++) {
        cJSON_Delete(*last);
        th_sleep_ms(25);
        audit_read(js, msgs, events, last);
    }
}

int main(void)
{
    static const struct cm_migration migrations[] = {{1, "outbox", CM_OUTBOX_SCHEMA_SQL}};
    struct cm_nats *n = NULL;
    struct cm_rpc *rpc = NULL, *lane = NULL;
    struct cm_outbox *ob = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    char *url, *r;

    th_init("rpc");
    th_db_create(&db);
    th_nats_start(&server);
    url = th_db_url(&db, "doms_vault");
    CHECK_INT(cm_pg_migrate_wait(url, "vault", migrations, 1), CM_OK);

    CHECK_INT(cm_nats_create(&n, server.url, "test-rpc", NULL), CM_OK);
    th_nats_identity(n);
    cm_nats_on_connect(n, cm_audit_stream_ensure, NULL);
    CHECK_INT(cm_rpc_create(&rpc, n, "test-rpc", url, "vault", 3, NULL), CM_OK);
    cm_rpc_handle(rpc, "t.echo", echo, NULL);
    cm_rpc_handle(rpc, "t.audited", audited, NULL);
    cm_rpc_handle(rpc, "t.forgetful", forgetful, NULL);
    cm_rpc_delegate(rpc, "t.echo", "retention-reaper");
    CHECK_INT(cm_rpc_start(rpc), CM_OK);
    CHECK_INT(cm_rpc_create_lane(&lane, n, "test-rpc", "batch", url, "vault", 1, NULL), CM_OK);
    cm_rpc_handle(lane, "t.hold", hold, NULL);
    cm_rpc_handle_batch(lane, "t.batch", batched, NULL, 4);
    CHECK_INT(cm_rpc_start(lane), CM_OK);
    CHECK_INT(cm_nats_start(n), CM_OK);
    CHECK(wait_ready(n));
    CHECK_INT(cm_outbox_start(&ob, n, url, "vault", NULL), CM_OK);
    CHECK(th_nats_connect(&nc, server.url) == NATS_OK);
    CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);

    printf("== replies\n");
    r = request(nc, "t.echo", "{\"word\":\"hi\",\"actor\":\"alice\"}");
    CHECK_CONTAINS(
        r, "{\"result\":{\"word\":\"hi\",\"actor\":\"alice\",\"caller\":\"operator\",\"worker\":");
    free(r);
    r = request(nc, "t.echo", "{\"word\":\"hi\"}");
    CHECK_CONTAINS(r, "\"actor\":\"operator\"");
    free(r);
    r = request(nc, "t.echo", "{}");
    CHECK_STR(r, "{\"error\":{\"code\":\"invalid\",\"message\":\"word is required\"}}");
    free(r);
    r = request(nc, "t.echo", "not json");
    CHECK_CONTAINS(r, "\"code\":\"invalid\"");
    free(r);
    r = request(nc, "t.forgetful", "{}");
    CHECK_CONTAINS(r, "\"code\":\"internal\"");
    free(r);

    printf("== callers and actors\n");
    /* The caller is the subject's last token; a daemon without an actor acts as itself. */
    r = request_as(nc, "conversation-router", "t.echo", "{\"word\":\"hi\"}");
    CHECK_CONTAINS(r, "\"actor\":\"conversation-router\"");
    CHECK_CONTAINS(r, "\"caller\":\"conversation-router\"");
    free(r);
    /* Only the operator identity may act as operator... */
    r = request_as(nc, "webhook-ingest", "t.echo", "{\"word\":\"hi\",\"actor\":\"operator\"}");
    CHECK_CONTAINS(r, "\"code\":\"denied\"");
    free(r);
    r = request_as(nc, "webhook-ingest", "t.forgetful", "{\"actor\":\"operator\"}");
    CHECK_CONTAINS(r, "\"code\":\"denied\"");
    free(r);
    /* ...or a daemon given that right on this subject (cm_rpc_delegate). */
    r = request_as(nc, "retention-reaper", "t.echo", "{\"word\":\"hi\",\"actor\":\"operator\"}");
    CHECK_CONTAINS(r, "\"actor\":\"operator\",");
    CHECK_CONTAINS(r, "\"caller\":\"retention-reaper\"");
    free(r);
    /* A label another daemon passes on is kept. */
    r = request_as(nc, "ai-suggest", "t.echo", "{\"word\":\"hi\",\"actor\":\"alice@example.com\"}");
    CHECK_CONTAINS(r, "\"actor\":\"alice@example.com\"");
    free(r);
    /* A malformed actor is refused once, here, for every handler. */
    r = request(nc, "t.echo", "{\"word\":\"hi\",\"actor\":\"a b\"}");
    CHECK_CONTAINS(r, "\"code\":\"invalid\"");
    free(r);
    r = request(nc, "t.echo", "{\"word\":\"hi\",\"actor\":\"\"}");
    CHECK_CONTAINS(r, "\"code\":\"invalid\"");
    free(r);
    r = request(nc, "t.echo", "{\"word\":\"hi\",\"actor\":42}");
    CHECK_CONTAINS(r, "\"code\":\"invalid\"");
    free(r);
    {
        char body[300];
        snprintf(body, sizeof(body), "{\"word\":\"hi\",\"actor\":\"%0129d\"}", 0);
        r = request(nc, "t.echo", body);
        CHECK_CONTAINS(r, "\"code\":\"invalid\"");
        free(r);
    }
    /* The bare subject names no caller: nobody serves it. */
    {
        natsMsg *m = NULL;
        CHECK_INT(natsConnection_RequestString(&m, nc, "t.echo", "{\"word\":\"hi\"}", 2000),
                  NATS_NO_RESPONDERS);
        natsMsg_Destroy(m);
    }

    printf("== batches\n");
    test_batches(nc, lane);

    printf("== outbox\n");
    r = request(nc, "t.audited", "{\"subject\":\"kept\",\"commit\":true}");
    CHECK_STR(r, "{\"result\":true}");
    free(r);
    r = request(nc, "t.audited", "{\"subject\":\"rolled-back\",\"commit\":false}");
    free(r);
    r = request(nc, "t.audited", "{\"subject\":\"kept-too\",\"commit\":true}");
    free(r);
    {
        long msgs, events;
        cJSON *last = NULL;
        const cJSON *ev;
        long before;

        audit_wait(js, 2, &msgs, &events, &last);
        CHECK_INT(events, 2);
        ev = cJSON_IsArray(last) ? cJSON_GetArrayItem(last, cJSON_GetArraySize(last) - 1) : last;
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "subject")), "kept-too");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "action")), "thing.read");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "service")), "test");
        cJSON_Delete(last);
        before = msgs;

        /* Events committed together are relayed together: one message, an array of them in
         * the order they were written. */
        r = request(nc, "t.audited", "{\"subject\":\"many\",\"count\":5,\"commit\":true}");
        CHECK_STR(r, "{\"result\":true}");
        free(r);
        audit_wait(js, 7, &msgs, &events, &last);
        CHECK_INT(events, 7);
        CHECK_INT(msgs, before + 1);
        CHECK(cJSON_IsArray(last));
        CHECK_INT(cJSON_GetArraySize(last), 5);
        for (int i = 0; i < cJSON_GetArraySize(last); i++) {
            char want[32];
            snprintf(want, sizeof(want), "many-%d", i);
            CHECK_STR(
                cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(last, i), "subject")),
                want);
        }
        cJSON_Delete(last);
    }
    {
        PGconn *c = th_db_connect(&db, "doms_vault");
        char *left = th_db_value(c, "SELECT count(*) FROM vault.outbox", NULL, 0);
        CHECK_STR(left, "0");
        free(left);
        PQfinish(c);
    }

    cm_outbox_destroy(ob);
    cm_rpc_destroy(lane);
    cm_rpc_destroy(rpc);
    cm_nats_destroy(n);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    th_nats_stop(&server);
    free(url);
    return check_summary();
}
