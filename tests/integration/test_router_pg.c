/*
 * test_router_pg - PostgreSQL stopped and restarted under conversation-router mid-stream:
 * nothing is acknowledged while it is down, ingest keeps accepting (JetStream holds the
 * events), readiness says what is missing, and when PostgreSQL returns every event is
 * stored exactly once, with no restart of any daemon. A malformed event in the stream goes
 * to the dead letters and does not block the ones behind it.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "stack.h"

#define PAGE "106000000000002"

static struct th_pg pg;
static struct th_stack st;
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
    const char *create[] = {"workspace", "create", "--name", "PG outage", NULL};
    cJSON *out = NULL;

    CHECK_INT(th_stack_domsctl(&st, &out, NULL, create), 0);
    {
        const char *connect[] = {
            "integration", "connect",   "--workspace", th_json_str(out, "workspace_id", NULL),
            "--platform",  "messenger", "--account",   PAGE,
            "--token",     "t",         NULL};
        fakemeta_issue(st.meta, FAKEMETA_USER_SHORT, "t", NULL);
        CHECK_INT(th_stack_domsctl(&st, NULL, NULL, connect), 0);
    }
    cJSON_Delete(out);
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
    info = th_stack_request(&st, "$JS.API.STREAM.INFO.ROUTER_DEAD", "");
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
        info =
            th_stack_request(&st, "$JS.API.STREAM.INFO.ROUTER_DEAD", "{\"subjects_filter\":\">\"}");
        CHECK(cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(info, "state"), "messages")) == 0);
        cJSON_Delete(info);
        free(integration);
    }
    jsCtx_Destroy(js);
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
