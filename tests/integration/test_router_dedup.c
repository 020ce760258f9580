/*
 * test_router_dedup - the router's own de-duplication, past JetStream's: the same event
 * published again under another Nats-Msg-Id (or none), as Meta's redelivery after the
 * duplicate window looks, is stored once, whether both copies meet in one pipelined batch or
 * two workers and two replicas race for them. Part of test_router (router_suite.h), on its
 * stack.
 */
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "router_suite.h"

static jsCtx *js;

/*
 * Publishes a message event of contact psid straight into META_EVENTS, as ingest would,
 * with the Nats-Msg-Id msg_id (NULL: none). JetStream must take it as new: a different id,
 * or none, is what an event redelivered after the 5-minute duplicate window looks like.
 * Returns its stream sequence (0 on failure, which fails the test).
 */
static uint64_t publish_event(const char *psid, const char *mid, const char *text,
                              const char *msg_id)
{
    char subject[128], body[1024];
    jsPubOptions o;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    uint64_t seq = 0;
    natsStatus s;

    snprintf(subject, sizeof(subject), "meta.events.messenger.%s.message", PAGE);
    snprintf(body, sizeof(body),
             "{\"platform\":\"messenger\",\"account_id\":\"" PAGE "\",\"source\":\"messaging\","
             "\"kind\":\"message\",\"entry_time\":%lld,\"event\":{\"sender\":{\"id\":\"%s\"},"
             "\"recipient\":{\"id\":\"" PAGE "\"},\"timestamp\":%lld,\"message\":{\"mid\":\"%s\","
             "\"text\":\"%s\"}}}",
             (long long)now_ms_, psid, (long long)now_ms_ - 5000, mid, text);
    jsPubOptions_Init(&o);
    o.MsgId = msg_id;
    s = js_Publish(&ack, js, subject, body, (int)strlen(body), &o, &jerr);
    CHECK_MSG(s == NATS_OK, "publish of %s: %s (%d)", mid, natsStatus_GetText(s), (int)jerr);
    if (s == NATS_OK) {
        CHECK_MSG(!ack->Duplicate, "JetStream absorbed %s (msg id %s)", mid,
                  msg_id ? msg_id : "none");
        seq = ack->Sequence;
        jsPubAck_Destroy(ack);
    }
    return seq;
}

/* A number at path a.b of a JetStream API reply (-1 when absent). */
static double js_num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItem(o, a);

    if (b != NULL)
        v = cJSON_GetObjectItem(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Waits (60 s at most) until the router's durable consumer acknowledged every event up to seq:
 * each was handled and committed, whichever worker or replica took it. */
static void await_acked(uint64_t seq)
{
    double floor = -1;

    for (int i = 0; i < 600; i++) {
        cJSON *info = th_stack_js(&st, "$JS.API.CONSUMER.INFO.META_EVENTS.conversation-router", "");
        floor = js_num(info, "ack_floor", "stream_seq");
        cJSON_Delete(info);
        if (floor >= (double)seq)
            return;
        th_sleep_ms(100);
    }
    CHECK_MSG(0, "events up to seq %llu never all acknowledged (ack floor %.0f)",
              (unsigned long long)seq, floor);
}

/* How many inbound dead letters ROUTER_DEAD holds (-1 when the stream cannot be asked). */
static long dead_inbound(void)
{
    cJSON *info = th_stack_js(&st, "$JS.API.STREAM.INFO.ROUTER_DEAD",
                              "{\"subjects_filter\":\"router.dead.inbound.>\"}");
    const cJSON *subjects = cJSON_GetObjectItem(cJSON_GetObjectItem(info, "state"), "subjects");
    const cJSON *n;
    long total = info != NULL && cJSON_GetObjectItem(info, "state") != NULL ? 0 : -1;

    cJSON_ArrayForEach(n, subjects) total += (long)n->valuedouble;
    cJSON_Delete(info);
    return total;
}

/* router_events_total{outcome="<outcome>"} of the router on port (-1 when unreadable). */
static long events_metric(int port, const char *outcome)
{
    char url[96], line[96];
    struct th_resp r;
    long v = -1;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    snprintf(line, sizeof(line), "router_events_total{outcome=\"%s\"} ", outcome);
    if (th_http(&r, "GET", url, NULL, NULL, 0) == 200 && r.body.data != NULL) {
        const char *at = strstr(r.body.data, line);
        if (at != NULL)
            v = atol(at + strlen(line));
    }
    th_resp_cleanup(&r);
    return v;
}

/*
 * Both copies of an event in one pipelined batch: published while the router is stopped,
 * each pair back to back, so that the restarted router's workers take them as a backlog (a
 * worker takes whatever has arrived, up to 64, as one batch). The consumer's queue group
 * spreads messages over the two workers at random, so a pair shares one worker's batch with
 * probability 1/2 and is otherwise raced by the two: with 20 pairs both cases occur (all 20
 * pairs split has probability 2^-20). JetStream stores both copies (different ids, or none);
 * the router stores each message once and counts the other copy as its own duplicate. Half
 * the pairs are of a contact with an open conversation (the pipelined statement for both
 * copies), half of new contacts (a conversation opened by the first copy, found by the
 * second).
 */
void test_duplicates_in_one_batch(void)
{
    char mid[64], text[64], id1[64], id2[64], *v;
    long dead = dead_inbound(), convs;
    uint64_t last = 0;

    CHECK(natsConnection_JetStream(&js, st.nc, NULL) == NATS_OK);
    /* dd-open's conversation is open before the batch. */
    await_acked(publish_event("dd-open", "m_dd_first", "dd first", "dd-first"));
    free(await_conv("dd first"));
    v = th_stack_sql(&st, "SELECT count(*) FROM router.conversations");
    convs = atol(v ? v : "-1");
    free(v);

    CHECK_INT(th_proc_stop(&router1), 0);
    for (int i = 0; i < 20; i++) {
        char psid[32];
        snprintf(psid, sizeof(psid), i < 10 ? "dd-open" : "dd-new-%d", i);
        snprintf(mid, sizeof(mid), "m_dd_%d", i);
        snprintf(text, sizeof(text), "dd copy %d", i);
        snprintf(id1, sizeof(id1), "dd-%d-a", i);
        snprintf(id2, sizeof(id2), "dd-%d-b", i);
        publish_event(psid, mid, text, id1);
        /* The second copy under another id, or none at all. */
        last = publish_event(psid, mid, text, i % 2 ? id2 : NULL);
    }
    /* router1's first life keeps its log for test_logs_clean. */
    router1_first = router1;
    router1_port = th_stack_start(&st, &router1, "conversation-router", router_env);
    await_acked(last);

    v = th_stack_sql(&st, "SELECT count(*) || '/' || count(DISTINCT mid) FROM router.messages"
                          " WHERE mid LIKE 'm_dd_%' AND mid <> 'm_dd_first'");
    CHECK_STR(v, "20/20");
    free(v);
    /* Ten new contacts, one conversation each; dd-open kept its one. */
    v = th_stack_sql(&st, "SELECT count(*) FROM router.conversations");
    CHECK_INT(atol(v ? v : "-1"), convs + 10);
    free(v);
    /* The restarted router saw every copy: 20 stored, 20 recognised as its own duplicates. */
    CHECK_INT(events_metric(router1_port, "stored"), 20);
    CHECK_INT(events_metric(router1_port, "duplicate"), 20);
    CHECK_INT(dead_inbound(), dead);
}

/*
 * Four inbound workers (two replicas of two) race on duplicate pairs: each mid stored once,
 * no contact with two open conversations, nothing dead-lettered.
 */
void test_duplicates_racing(void)
{
    long dead = dead_inbound();
    long stored = events_metric(router1_port, "stored") + events_metric(router2_port, "stored");
    uint64_t last = 0;
    char mid[64], text[64], psid[32], id[64], *v;

    for (int i = 0; i < 150; i++) {
        snprintf(psid, sizeof(psid), "race-%d", i % 15);
        snprintf(mid, sizeof(mid), "m_race_%d", i);
        snprintf(text, sizeof(text), "race %d", i);
        snprintf(id, sizeof(id), "race-%d-a", i);
        publish_event(psid, mid, text, id);
        snprintf(id, sizeof(id), "race-%d-b", i);
        last = publish_event(psid, mid, text, i % 3 ? id : NULL);
    }
    await_acked(last);
    v = th_stack_sql(&st, "SELECT count(*) || '/' || count(DISTINCT mid) FROM router.messages"
                          " WHERE mid LIKE 'm_race_%'");
    CHECK_STR(v, "150/150");
    free(v);
    v = th_stack_sql(
        &st, "SELECT count(*) FROM (SELECT 1 FROM router.conversations WHERE status = 'open'"
             " GROUP BY integration_id, contact_id HAVING count(*) > 1) s");
    CHECK_STR(v, "0");
    free(v);
    /* Exactly one insert per mid committed, on whichever replica. */
    CHECK_INT(events_metric(router1_port, "stored") + events_metric(router2_port, "stored"),
              stored + 150);
    CHECK_INT(dead_inbound(), dead);
}

void router_dedup_cleanup(void)
{
    jsCtx_Destroy(js);
    js = NULL;
}
