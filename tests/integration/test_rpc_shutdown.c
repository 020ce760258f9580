/*
 * test_rpc_shutdown - cm_rpc_destroy() against the real nats-server: requests in flight at
 * destroy are answered, and after destroy nothing subscribes again and no handler runs, even
 * when the connection comes back (a reconnect runs the connection's set-up steps anew, which
 * used to call the destroyed server's subscribe step on freed memory: a use after free under
 * ASan, a subscription with a dangling handler without it).
 */
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/nats.h"
#include "common/pg.h"
#include "common/rpc.h"
#include "harness.h"

static struct th_db db;
static struct th_nats server;
static char *db_url;
static _Atomic int passes; /* set-up passes of the connection, counted by count_pass */
static _Atomic int served;

/* A set-up step of the test's own, registered after the server's: when it has run, the pass
 * that would have run the server's step has run too. */
static int count_pass(struct cm_nats *n, void *arg)
{
    (void)n;
    (void)arg;
    atomic_fetch_add(&passes, 1);
    return CM_OK;
}

static void slow_echo(struct cm_rpc_call *call, void *arg)
{
    (void)arg;
    th_sleep_ms(100);
    atomic_fetch_add(&served, 1);
    cm_rpc_reply(call, cJSON_CreateString("done"));
}

/* A request to t.late as the operator: its reply text, or what went wrong in its place. */
static char *ask(natsConnection *nc)
{
    natsMsg *reply = NULL;
    natsStatus s = cm_nats_request_as(&reply, nc, "operator", "t.late", "{}", 3000);
    char *text;

    if (s != NATS_OK)
        return cm_xstrdup(natsStatus_GetText(s));
    text = cm_xstrndup(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    return text;
}

static struct cm_rpc *start_server(struct cm_nats *n)
{
    struct cm_rpc *rpc = NULL;

    CHECK_INT(cm_rpc_create(&rpc, n, "test-rpc", db_url, "vault", 2, NULL), CM_OK);
    cm_rpc_handle(rpc, "t.late", slow_echo, NULL);
    CHECK_INT(cm_rpc_start(rpc), CM_OK);
    return rpc;
}

/* Requests already delivered when destroy begins are served and answered, none dropped. */
static void test_in_flight_answered(void)
{
    struct cm_nats *n = NULL;
    struct cm_rpc *rpc;
    natsConnection *nc = NULL;
    natsSubscription *inbox = NULL;
    int answers = 0;

    CHECK_INT(cm_nats_create(&n, server.url, "test-rpc", NULL), CM_OK);
    th_nats_identity(n);
    rpc = start_server(n);
    CHECK_INT(cm_nats_start(n), CM_OK);
    CHECK_WAIT(cm_nats_ready(n), 10000);
    CHECK(th_nats_connect(&nc, server.url) == NATS_OK);
    CHECK(natsConnection_SubscribeSync(&inbox, nc, "_INBOX.doms-test.late") == NATS_OK);
    atomic_store(&served, 0);
    for (int i = 0; i < 6; i++)
        CHECK(natsConnection_PublishRequestString(nc, "t.late.operator", "_INBOX.doms-test.late",
                                                  "{}") == NATS_OK);
    CHECK(natsConnection_FlushTimeout(nc, 2000) == NATS_OK);
    /* Two workers at 100 ms a request: most are still queued or undelivered now. */
    CHECK_WAIT(atomic_load(&served) >= 1, 5000);
    cm_rpc_destroy(rpc);
    CHECK_INT(atomic_load(&served), 6);
    for (int i = 0; i < 6; i++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, inbox, 2000) != NATS_OK)
            break;
        if (strcmp(natsMsg_GetData(m), "{\"result\":\"done\"}") == 0)
            answers++;
        natsMsg_Destroy(m);
    }
    CHECK_INT(answers, 6);
    natsSubscription_Destroy(inbox);
    natsConnection_Destroy(nc);
    cm_nats_destroy(n);
}

/*
 * Destroyed while disconnected: the connection comes back and runs its set-up steps again;
 * the destroyed server's is no longer among them, its subscription is not restored, and
 * nobody answers its subject.
 */
static void test_reconnect_after_destroy(void)
{
    struct cm_nats *n = NULL;
    struct cm_rpc *rpc;
    natsConnection *nc = NULL;
    char *r;
    int before;

    atomic_store(&passes, 0);
    CHECK_INT(cm_nats_create(&n, server.url, "test-rpc", NULL), CM_OK);
    th_nats_identity(n);
    rpc = start_server(n);
    cm_nats_on_connect(n, count_pass, NULL);
    CHECK_INT(cm_nats_start(n), CM_OK);
    CHECK_WAIT(cm_nats_ready(n), 10000);
    CHECK(th_nats_connect(&nc, server.url) == NATS_OK);
    r = ask(nc);
    CHECK_STR(r, "{\"result\":\"done\"}");
    free(r);
    natsConnection_Destroy(nc);
    nc = NULL;

    th_nats_stop(&server);
    CHECK_WAIT(!cm_nats_connected(n), 10000);
    before = atomic_load(&passes);
    cm_rpc_destroy(rpc);
    th_nats_restart(&server);
    CHECK_WAIT(cm_nats_ready(n) && atomic_load(&passes) > before, 20000);

    CHECK(th_nats_connect(&nc, server.url) == NATS_OK);
    r = ask(nc);
    CHECK_STR(r, natsStatus_GetText(NATS_NO_RESPONDERS));
    free(r);
    natsConnection_Destroy(nc);
    cm_nats_destroy(n);
}

/* Destroyed before the first connect: the step never runs, and nothing subscribes later. */
static void test_destroy_before_connect(void)
{
    struct cm_nats *n = NULL;
    struct cm_rpc *rpc;
    natsConnection *nc = NULL;
    char *r;

    atomic_store(&passes, 0);
    th_nats_stop(&server);
    CHECK_INT(cm_nats_create(&n, server.url, "test-rpc", NULL), CM_OK);
    th_nats_identity(n);
    rpc = start_server(n);
    cm_nats_on_connect(n, count_pass, NULL);
    CHECK_INT(cm_nats_start(n), CM_OK);
    cm_rpc_destroy(rpc);
    th_nats_restart(&server);
    CHECK_WAIT(cm_nats_ready(n) && atomic_load(&passes) > 0, 20000);

    CHECK(th_nats_connect(&nc, server.url) == NATS_OK);
    r = ask(nc);
    CHECK_STR(r, natsStatus_GetText(NATS_NO_RESPONDERS));
    free(r);
    natsConnection_Destroy(nc);
    cm_nats_destroy(n);
}

int main(void)
{
    th_init("rpc_shutdown");
    th_db_create(&db);
    th_nats_start(&server);
    db_url = th_db_url(&db, "doms_vault");

    RUN(test_in_flight_answered);
    RUN(test_reconnect_after_destroy);
    RUN(test_destroy_before_connect);

    th_nats_stop(&server);
    free(db_url);
    return check_summary();
}
