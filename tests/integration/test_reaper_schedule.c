/*
 * test_reaper_schedule - workspace deletion and the retention schedule, with durations in
 * seconds: `domsctl workspace delete` (through the router's stand-in, which checks the
 * owner) disconnects every integration at once, tokens gone; the data stays until
 * RETENTION_MESSAGES and is purged by the pass after it (router, ai-suggest, raw events,
 * token-vault), a second workspace keeping every row; passes are idempotent, one at a time
 * across callers, finished after a crash, run by the scheduler on their own; the gauges say
 * how long what is due has been held.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "reaper_stack.h"

#define ROUTER_DELETED "{\"contacts\":1,\"conversations\":2,\"messages\":7}"
#define AI_DELETED     "{\"suggestions\":3}"

#define WS1_AUDITED                                                                                \
    "SELECT count(*) FROM reaper.audit_log WHERE action = 'workspace.delete'"                      \
    " AND subject = 'ws_1' AND actor = 'operator'"

static struct rs_fake wsdel, router, ai;
static const char *const reaper_env[] = {"RETENTION_MESSAGES=6s", "RETENTION_TOKENS=5s", NULL};
/* The same, for a replica started by th_stack_start directly (rs_start_reaper adds this). */
static const char *const reaper_env_long[] = {"REAPER_INTERVAL=1d", "RETENTION_MESSAGES=6s",
                                              "RETENTION_TOKENS=5s", NULL};

static double num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItem(o, a);

    return cJSON_GetNumberValue(b ? cJSON_GetObjectItem(v, b) : v);
}

static int delete_ws(const char *ws, const char *actor, cJSON **out, char **text)
{
    const char *args[] = {"--actor", actor, "workspace", "delete", ws, NULL};

    return rs_domsctl(out, text, args);
}

static cJSON *run_pass(void)
{
    const char *args[] = {"retention", "run", NULL};
    cJSON *out = NULL;

    CHECK_INT(rs_domsctl(&out, NULL, args), 0);
    return out;
}

/* The value of one series in the reaper's /metrics, or -1. */
/* A series' value on the reaper listening on port, -1 if absent. */
static double metric_at(int port, const char *series)
{
    struct th_resp r;
    char url[96];
    const char *p;
    double v = -1;

    char line[160];

    /* At the start of a line: the # HELP line names the metric too. */
    snprintf(line, sizeof(line), "\n%s", series);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    if (th_http(&r, "GET", url, NULL, NULL, 0) == 200 && (p = strstr(r.body.data, line)) != NULL)
        v = strtod(p + strlen(line), NULL);
    th_resp_cleanup(&r);
    return v;
}

static double metric(const char *series)
{
    return metric_at(rs.reaper_port, series);
}

/* 1 once the workspace's purge is recorded as complete; otherwise says what is pending. */
static long purged(const char *ws)
{
    char q[200], *why;
    long n;

    snprintf(q, sizeof(q),
             "SELECT count(*) FROM reaper.workspace_deletions WHERE workspace_id = '%s'"
             " AND purged_at IS NOT NULL",
             ws);
    n = rs_sql_long(q);
    if (n == 0) {
        snprintf(q, sizeof(q),
                 "SELECT coalesce(last_error, '-') FROM reaper.workspace_deletions"
                 " WHERE workspace_id = '%s'",
                 ws);
        why = rs_sql(q);
        printf("workspace %s not purged: %s\n", ws, why ? why : "(no row)");
        free(why);
    }
    return n;
}

/* --- tests ----------------------------------------------------------------------------- */

static void test_router_missing(void)
{
    char *text = NULL;

    CHECK_INT(delete_ws("ws_1", "operator", NULL, &text), 1);
    CHECK_CONTAINS(text, "no responders");
    CHECK_CONTAINS(text, "nothing was deleted");
    free(text);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.workspace_deletions"), 0);
}

static char *a1, *m1, *a2;

static void test_delete_disconnects_at_once(void)
{
    const char *list1[] = {"integration", "list", "--workspace", "ws_1", NULL};
    cJSON *out = NULL, *again = NULL, *it;
    char *text = NULL, *tok, q[512];

    rs_fake_start(&wsdel, "router.workspace.delete", NULL);
    rs_fake_start(&router, "router.purge", ROUTER_DELETED);
    rs_fake_start(&ai, "ai.purge", AI_DELETED);
    a1 = rs_connect("ws_1", "instagram", "17841400000000101", NULL);
    m1 = rs_connect("ws_1", "messenger", "106000000000101", NULL);
    a2 = rs_connect("ws_2", "instagram", "17841400000000202", NULL);
    rs_post_event("17841400000000101", "m_ws1_a");
    rs_post_event("17841400000000101", "m_ws1_b");
    rs_post_event("17841400000000202", "m_ws2_a");

    /* Only the owner may: the router's answer is passed on, and nothing is recorded. */
    CHECK_INT(delete_ws("ws_1", "mallory", NULL, &text), 1);
    CHECK_CONTAINS(text, "not the owner");
    free(text);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.workspace_deletions"), 0);

    CHECK_INT(delete_ws("ws_1", "operator", &out, NULL), 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(out, "workspace_id")), "ws_1");
    snprintf(q, sizeof(q), "SELECT extract(epoch FROM '%s'::timestamptz - '%s'::timestamptz)",
             cJSON_GetStringValue(cJSON_GetObjectItem(out, "purge_due_at")),
             cJSON_GetStringValue(cJSON_GetObjectItem(out, "deleted_at")));
    CHECK_INT(rs_sql_long(q), 6); /* deleted_at + RETENTION_MESSAGES */
    /* Repeating it answers the same deletion. */
    CHECK_INT(delete_ws("ws_1", "operator", &again, NULL), 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(again, "deleted_at")),
              cJSON_GetStringValue(cJSON_GetObjectItem(out, "deleted_at")));
    cJSON_Delete(again);
    cJSON_Delete(out);

    /* Tokens gone at once: far inside RETENTION_TOKENS. */
    CHECK_INT(rs_domsctl(&out, NULL, list1), 0);
    CHECK_INT(cJSON_GetArraySize(out), 2);
    cJSON_ArrayForEach(it, out)
    {
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(it, "status")), "disconnected");
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(it, "token_held")));
    }
    cJSON_Delete(out);
    CHECK(rs_token(a1) == NULL);
    CHECK(rs_token(m1) == NULL);
    snprintf(q, sizeof(q),
             "SELECT (SELECT count(*) FROM vault.tokens WHERE integration_id IN ('%s', '%s')) +"
             " (SELECT count(*) FROM vault.data_keys WHERE key_id IN ('int:%s', 'int:%s'))",
             a1, m1, a1, m1);
    CHECK_INT(rs_sql_long(q), 0);
    /* The other workspace is untouched. */
    tok = rs_token(a2);
    CHECK(tok != NULL);
    free(tok);
    /* Audited once, under the actor who deleted it. */
    for (int i = 0; i < 50 && rs_sql_long(WS1_AUDITED) == 0; i++)
        th_sleep_ms(100);
    CHECK_INT(rs_sql_long(WS1_AUDITED), 1);
}

static void test_not_due_yet(void)
{
    cJSON *out = run_pass();
    const cJSON *d = cJSON_GetObjectItem(out, "deleted");
    const char *kinds[] = {"tokens",   "integrations", "contacts",   "conversations",
                           "messages", "suggestions",  "raw_events", "audit"};

    /* Every kind is there, each 0: the workspace is not due. */
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        CHECK_MSG(cJSON_IsNumber(cJSON_GetObjectItem(d, kinds[i])) &&
                      cJSON_GetNumberValue(cJSON_GetObjectItem(d, kinds[i])) == 0,
                  "%s: 0", kinds[i]);
    cJSON_Delete(out);
    CHECK_INT(atomic_load(&router.calls), 0);
    CHECK_INT(rs_stream_count("META_EVENTS", "meta.events.instagram.17841400000000101.>"), 2);
    /* What is held after its trigger shows on the gauges; the tokens are gone already. */
    CHECK(metric("reaper_overdue_seconds{kind=\"messages\"} ") > 0);
    CHECK(metric("reaper_overdue_seconds{kind=\"tokens\"} ") == 0);
    CHECK(metric("reaper_retention_limit_seconds{kind=\"messages\"} ") == 6);
    CHECK(metric("reaper_retention_limit_seconds{kind=\"audit\"} ") == 365 * 86400);
}

static void test_purged_when_due(void)
{
    cJSON *out;
    char *scope, *ws, *tok, q[256];

    CHECK(rs_wait_due("ws_1", 10000));
    out = run_pass();
    CHECK(num(out, "deleted", "messages") == 7);
    CHECK(num(out, "deleted", "conversations") == 2);
    CHECK(num(out, "deleted", "contacts") == 1);
    CHECK(num(out, "deleted", "suggestions") == 3);
    CHECK(num(out, "deleted", "integrations") == 2);
    CHECK(num(out, "deleted", "raw_events") == 2);
    cJSON_Delete(out);
    CHECK_INT(purged("ws_1"), 1);
    scope = rs_fake_last(&router, "scope");
    ws = rs_fake_last(&router, "workspace_id");
    CHECK_STR(scope, "workspace");
    CHECK_STR(ws, "ws_1");
    free(scope);
    free(ws);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM vault.integrations WHERE workspace_id = 'ws_1'"),
              0);
    CHECK_INT(rs_stream_count("META_EVENTS", "meta.events.instagram.17841400000000101.>"), 0);
    snprintf(q, sizeof(q), "vault.events.integration.%s", a1);
    CHECK_INT(rs_stream_count("VAULT_EVENTS", q), 0);
    /* A second workspace keeps every row: its integration, token, raw events, state. */
    CHECK_INT(rs_sql_long("SELECT count(*) FROM vault.integrations WHERE workspace_id = 'ws_2'"),
              1);
    tok = rs_token(a2);
    CHECK(tok != NULL);
    free(tok);
    CHECK_INT(rs_stream_count("META_EVENTS", "meta.events.instagram.17841400000000202.>"), 1);
    snprintf(q, sizeof(q), "vault.events.integration.%s", a2);
    CHECK_INT(rs_stream_count("VAULT_EVENTS", q), 1);
    /* Idempotent: the next pass finds nothing to do and asks nobody again. */
    {
        int calls = atomic_load(&router.calls);
        out = run_pass();
        CHECK(num(out, "deleted", "messages") == 0);
        CHECK(num(out, "deleted", "integrations") == 0);
        cJSON_Delete(out);
        CHECK_INT(atomic_load(&router.calls), calls);
    }
    CHECK(metric("reaper_overdue_seconds{kind=\"messages\"} ") == 0);
}

struct racer {
    cJSON *out;
    int code;
    const char *timeout; /* domsctl --timeout, seconds */
    char *text;          /* what domsctl printed, for a failure's message */
};

static void *race(void *p)
{
    struct racer *r = p;
    const char *args[] = {"--timeout", r->timeout ? r->timeout : "60", "retention", "run", NULL};

    r->code = rs_domsctl(&r->out, &r->text, args);
    return NULL;
}

static void test_one_pass_at_a_time(void)
{
    struct racer racers[2] = {{0}};
    pthread_t t[2];
    int before;
    char *id = rs_connect("ws_3", "instagram", "17841400000000303", NULL);

    CHECK_INT(delete_ws("ws_3", "operator", NULL, NULL), 0);
    CHECK(rs_wait_due("ws_3", 10000));
    before = atomic_load(&router.calls);
    atomic_store(&router.delay_ms, 2000);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, race, &racers[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    atomic_store(&router.delay_ms, 0);
    /* The second caller waited for the first pass and found the workspace purged. */
    CHECK_INT(racers[0].code, 0);
    CHECK_INT(racers[1].code, 0);
    CHECK_INT(atomic_load(&router.calls) - before, 1);
    CHECK_MSG(
        num(racers[0].out, "deleted", "messages") + num(racers[1].out, "deleted", "messages") == 7,
        "the two passes deleted 7 messages between them; they printed %s and %s", racers[0].text,
        racers[1].text);
    for (int i = 0; i < 2; i++) {
        cJSON_Delete(racers[i].out);
        free(racers[i].text);
    }
    CHECK_INT(purged("ws_3"), 1);
    free(id);
}

/*
 * Two replicas meet on the same due workspace, by construction rather than by luck: the
 * first replica's pass is held inside router.purge (the stand-in does not answer) when the
 * second replica starts, and the second one's start-up pass must find the lock taken and
 * skip its turn. One purge reaches the router; the second replica ran no pass.
 */
static void test_replicas_race(void)
{
    struct racer racer = {0};
    struct th_proc second;
    pthread_t t;
    char *id = rs_connect("ws_7", "instagram", "17841400000000707", NULL);
    int before, asked, port;

    CHECK_INT(delete_ws("ws_7", "operator", NULL, NULL), 0);
    CHECK(rs_wait_due("ws_7", 10000));
    before = atomic_load(&router.calls);
    asked = atomic_load(&router.received);
    atomic_store(&router.hold, true);
    pthread_create(&t, NULL, race, &racer); /* one replica so far: it takes this pass */
    CHECK_WAIT(atomic_load(&router.received) > asked, 10000);
    port = th_stack_start(&rs.st, &second, "retention-reaper", reaper_env_long);
    CHECK_WAIT(metric_at(port, "reaper_passes_skipped_total ") >= 1, 15000);
    atomic_store(&router.hold, false);
    pthread_join(t, NULL);
    CHECK_INT(racer.code, 0);
    CHECK(num(racer.out, "deleted", "messages") == 7);
    cJSON_Delete(racer.out);
    free(racer.text);
    CHECK_INT(atomic_load(&router.calls) - before, 1);
    CHECK(metric_at(port, "reaper_passes_total ") == 0);
    CHECK_INT(purged("ws_7"), 1);
    CHECK_INT(th_proc_stop(&second), 0);
    free(id);
}

static void test_pass_killed_half_way(void)
{
    struct racer racer = {NULL, 0, "8", NULL}; /* its reaper dies: no answer will come */
    pthread_t t;
    char *id = rs_connect("ws_4", "instagram", "17841400000000404", NULL);
    cJSON *out;
    int asked;

    CHECK_INT(delete_ws("ws_4", "operator", NULL, NULL), 0);
    CHECK(rs_wait_due("ws_4", 10000));
    atomic_store(&router.delay_ms, 3000);
    asked = atomic_load(&router.received);
    pthread_create(&t, NULL, race, &racer);
    /* The pass waits for router.purge: the stand-in holds the request. */
    CHECK_WAIT(atomic_load(&router.received) > asked, 10000);
    th_proc_signal(&rs.reaper, SIGKILL);
    th_proc_wait(&rs.reaper, 5000);
    pthread_join(t, NULL);
    CHECK(racer.code != 0);
    cJSON_Delete(racer.out);
    free(racer.text);
    atomic_store(&router.delay_ms, 0);
    CHECK_INT(purged("ws_4"), 0);
    rs_start_reaper(reaper_env);
    /* The next pass finishes it (the one at start-up, or this one). */
    out = run_pass();
    cJSON_Delete(out);
    CHECK_INT(purged("ws_4"), 1);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM vault.integrations WHERE workspace_id = 'ws_4'"),
              0);
    free(id);
}

/*
 * The schedule keeps the bound: with passes SCHED_INTERVAL_S apart and a period of
 * SCHED_PERIOD_S, a pass looks SCHED_AHEAD_S ahead (two intervals, at most a tenth of the
 * period: pass.c), so the pass before the due time purges the workspace, and it is gone by
 * purge_due_at plus what that pass takes. PASS_TAKES_MS is that allowance (the stand-ins
 * answer at once; ASan and a loaded machine make it seconds).
 */
#define SCHED_PERIOD_S   10
#define SCHED_INTERVAL_S 1
#define SCHED_AHEAD_S    1
#define PASS_TAKES_MS    3000
#define STR_(x)          #x
#define STR(x)           STR_(x)

static long purged_quietly(const char *ws)
{
    char q[200];

    snprintf(q, sizeof(q),
             "SELECT count(*) FROM reaper.workspace_deletions WHERE workspace_id = '%s'"
             " AND purged_at IS NOT NULL",
             ws);
    return rs_sql_long(q);
}

static void test_scheduled(void)
{
    const char *env[] = {"RETENTION_MESSAGES=" STR(SCHED_PERIOD_S) "s",
                         "REAPER_INTERVAL=" STR(SCHED_INTERVAL_S) "s", NULL};
    char *id = rs_connect("ws_5", "messenger", "106000000000505", NULL);
    long long due_in_ms, start, late_ms;
    char *v;

    CHECK_INT(th_proc_stop(&rs.reaper), 0);
    rs_start_reaper(env);
    CHECK_INT(delete_ws("ws_5", "operator", NULL, NULL), 0);
    start = check_now_ms();
    v = rs_sql("SELECT round(extract(epoch FROM purge_due_at - clock_timestamp()) * 1000)"
               " FROM reaper.workspace_deletions WHERE workspace_id = 'ws_5'");
    due_in_ms = v ? strtoll(v, NULL, 10) : 0;
    free(v);
    CHECK_MSG(due_in_ms > (SCHED_AHEAD_S + 1) * 1000, "due in %lld ms", due_in_ms);
    th_sleep_ms(1500);
    CHECK_INT(purged("ws_5"), 0);
    /* No command: the scheduler's passes purge it, by its due time plus one pass. */
    CHECK_MSG(WAIT_UNTIL(purged_quietly("ws_5") == 1,
                         due_in_ms - (check_now_ms() - start) + PASS_TAKES_MS),
              "purged by the schedule within %d ms of its due time", PASS_TAKES_MS);
    late_ms = check_now_ms() - start - due_in_ms;
    printf("purged %lld ms after its due time, as the test saw it\n", late_ms);
    /* The database's own clock: purged_at against purge_due_at, the promise itself. */
    v = rs_sql("SELECT round(extract(epoch FROM purged_at - purge_due_at) * 1000)"
               " FROM reaper.workspace_deletions WHERE workspace_id = 'ws_5'");
    late_ms = v ? strtoll(v, NULL, 10) : 1000000;
    CHECK_MSG(v != NULL && late_ms <= PASS_TAKES_MS,
              "purged_at - purge_due_at = %lld ms, bound %d ms", late_ms, PASS_TAKES_MS);
    CHECK_MSG(v != NULL && late_ms >= -SCHED_AHEAD_S * 1000,
              "purged %lld ms before due: more than the look-ahead", -late_ms);
    free(v);
    CHECK(metric("reaper_last_pass_timestamp_seconds ") > 1.7e9);
    CHECK(metric("reaper_passes_total ") >= 2);
    free(id);
}

static void test_disconnect_tokens_gone(void)
{
    char *id = rs_connect("ws_6", "instagram", "17841400000000606", NULL);
    const char *args[] = {"integration", "disconnect", id, NULL};
    char q[256];
    cJSON *out;

    CHECK_INT(rs_domsctl(NULL, NULL, args), 0);
    snprintf(q, sizeof(q), "SELECT count(*) FROM vault.tokens WHERE integration_id = '%s'", id);
    CHECK_INT(rs_sql_long(q), 0);
    out = run_pass();
    CHECK(num(out, "deleted", "tokens") == 0); /* nothing left for the pass to find */
    cJSON_Delete(out);
    CHECK(rs_sql_long("SELECT count(*) FROM reaper.schedule_state WHERE tokens_clean_at >"
                      " now() - interval '1 minute'") == 1);
    CHECK(metric("reaper_overdue_seconds{kind=\"tokens\"} ") == 0);
    free(id);
}

int main(void)
{
    th_init("reaper_schedule");
    rs_init();
    rs_start_vault();
    rs_start_ingest();
    rs_start_reaper(reaper_env);

    RUN(test_router_missing);
    RUN(test_delete_disconnects_at_once);
    RUN(test_not_due_yet);
    RUN(test_purged_when_due);
    RUN(test_one_pass_at_a_time);
    RUN(test_replicas_race);
    RUN(test_pass_killed_half_way);
    RUN(test_disconnect_tokens_gone);
    RUN(test_scheduled);

    rs_fake_stop(&wsdel);
    rs_fake_stop(&router);
    rs_fake_stop(&ai);
    CHECK_INT(th_proc_stop(&rs.reaper), 0);
    CHECK_INT(th_proc_stop(&rs.ingest), 0);
    CHECK_INT(th_proc_stop(&rs.vault), 0);
    free(a1);
    free(m1);
    free(a2);
    rs_cleanup();
    return check_summary();
}
