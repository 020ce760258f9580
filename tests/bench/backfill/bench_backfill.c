/*
 * bench_backfill - conversation-router's backfill of BENCH_CONVERSATIONS conversations
 * (default 500) of BENCH_PER_CONVERSATION messages each (default 20: 10,000 messages) held
 * at Meta's stand-in and never sent as webhooks: the time from token-vault's request to the
 * job's end, beside its ceiling, the time Meta's documented limit of 2 Conversations API
 * calls a second per account allows for the calls the backfill needed (the stand-in
 * enforces that limit and answers faster than Meta). Figures only; it fails when a message
 * is missing or stored twice, or when a call went past Meta's limit.
 *
 * Run through tests/bench/backfill/run (tests/run --bench): the suite's own stack of the
 * integration tests (tests/lib/stack.h), one router.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stack.h"

#define PAGE "106000000000099"

static struct th_stack st;
static struct th_proc vault, router;

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v != NULL && atoi(v) > 0 ? atoi(v) : dflt;
}

/* The integration's id after connecting the Page (a new string). */
static char *setup(void)
{
    char ws[64], integration[64], *id;

    th_stack_workspace(&st, "Bench Backfill", false, ws);
    {
        const char *agent[] = {"member", "add",   "--workspace", ws,     "--user", "agent",
                               "--role", "agent", "--capacity",  "1000", NULL};
        CHECK_INT(th_stack_domsctl(&st, NULL, NULL, agent), 0);
        th_stack_connect(&st, ws, "messenger", PAGE, "short-bench", NULL, integration);
        id = strdup(integration);
    }
    CHECK_WAIT(
        th_stack_count(&st, "SELECT count(*) FROM router.routes WHERE status = 'connected'") == 1,
        10000);
    return id;
}

int main(void)
{
    int convs = env_int("BENCH_CONVERSATIONS", 500), per = env_int("BENCH_PER_CONVERSATION", 20);
    long total = (long)convs * per, calls, stored;
    int64_t base, started, took;
    char body[256], q[256], *id;
    double ceiling;
    cJSON *r;

    th_init("bench_backfill");
    th_stack_init(&st);
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &router, "conversation-router",
                   (const char *const[]){"LOG_LEVEL=info", NULL});
    id = setup();
    /* Within the last day, every message of a conversation a second apart. */
    base = th_now_ms() - 86400 * 1000LL;
    for (int c = 0; c < convs; c++) {
        char psid[32], mid[48], text[64];
        snprintf(psid, sizeof(psid), "bench-%d", c);
        for (int i = 0; i < per; i++) {
            snprintf(mid, sizeof(mid), "m_bench_%d_%d", c, i);
            snprintf(text, sizeof(text), "backfilled message %d of %d", i, c);
            fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, psid, mid, text,
                              base + (int64_t)c * 60000 + i * 1000, false);
        }
    }
    snprintf(body, sizeof(body),
             "{\"integration_id\":\"%s\",\"since\":\"2000-01-01T00:00:00Z\",\"wait_ms\":0}", id);
    started = check_now_ms();
    r = th_stack_request_as(&st, "token-vault", "router.integration.backfill", body);
    CHECK(th_json_str(r, "result", "state") != NULL);
    cJSON_Delete(r);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM router.backfill_jobs WHERE integration_id = '%s'"
             " AND state IN ('done', 'failed')",
             id);
    CHECK_WAIT(th_stack_count(&st, q) == 1, 3600 * 1000);
    took = check_now_ms() - started;
    snprintf(q, sizeof(q), "SELECT calls FROM router.backfill_jobs WHERE integration_id = '%s'",
             id);
    calls = th_stack_count(&st, q);
    snprintf(q, sizeof(q), "SELECT stored FROM router.backfill_jobs WHERE integration_id = '%s'",
             id);
    stored = th_stack_count(&st, q);
    CHECK_INT(stored, total);
    CHECK_INT(
        th_stack_count(
            &st, "SELECT count(DISTINCT mid) FROM router.messages WHERE mid LIKE 'm\\_bench\\_%'"),
        total);
    CHECK_INT(
        th_stack_count(&st, "SELECT count(*) FROM router.messages WHERE mid LIKE 'm\\_bench\\_%'"),
        total);
    CHECK_INT(fakemeta_conv_over_limit(st.meta), 0);
    ceiling = (double)calls / 2.0;
    printf("bench backfill: %ld messages in %d conversations: %.1f s, %ld Graph calls;"
           " Meta's ceiling (2 calls/s per account) %.1f s: %.2f of it; %.0f messages/s"
           " (ceiling %.0f)\n",
           total, convs, (double)took / 1000.0, calls, ceiling, ceiling / ((double)took / 1000.0),
           (double)total / ((double)took / 1000.0), (double)total / ceiling);
    free(id);
    th_stack_stop(&st);
    return check_summary();
}
