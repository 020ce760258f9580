/*
 * test_router_backfill - messages Meta holds that no webhook brought, fetched through the
 * Conversations API of the stand-in (tests/lib/fakemeta_conversations.c) by
 * conversation-router's backfill, asked by token-vault: on demand (domsctl integration
 * check), across a gap with Meta throttling mid-way (a business use case code with its
 * estimated time to regain access, then a rate limit code without one), messages already
 * stored by webhooks not stored twice, a picture downloaded like a webhook's, the business's
 * own messages as echoes, Meta's 2 calls a second per account kept, an old message that does
 * not reopen the window, the scheduled detection of a silent account, a replica stopped and
 * one killed mid-way, an integration back from needs_reauth, and the refusals of
 * router.integration.backfill. Nothing Meta says of a person beyond their id reaches the
 * schema or the logs.
 */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "stack.h"

#define PAGE "106000000000077"
#define IG   "17841400000000077"

static struct th_stack st;
static struct th_proc ingest, vault, router, router_lives[2];
static char ws[64], page_int[64], ig_int[64];
static int64_t t0; /* the run's start, epoch ms: Meta's times are relative to it */

/* The job's "state|throttled" etc.: the first value of sql about the integration id. */
static char *job_field(const char *id, const char *expr)
{
    char q[512];

    snprintf(q, sizeof(q), "SELECT %s FROM router.backfill_jobs WHERE integration_id = '%s'", expr,
             id);
    return th_stack_sql(&st, q);
}

static bool job_is(const char *id, const char *expr, const char *want)
{
    char *v = job_field(id, expr);
    bool ok = v != NULL && strcmp(v, want) == 0;

    free(v);
    return ok;
}

/* A contact's message to the Page through ingest, as Meta's webhook carries it. */
static void webhook(const char *psid, const char *mid, const char *text, int64_t ts)
{
    CHECK_INT(th_stack_message(&st, false, PAGE, ts, psid, ts, mid, text, NULL), 200);
}

/* How many messages with mids like pattern are stored, and how many distinct mids. */
static char *stored(const char *pattern)
{
    char q[256];

    snprintf(q, sizeof(q),
             "SELECT count(*) || '/' || count(DISTINCT mid) FROM router.messages"
             " WHERE mid LIKE '%s'",
             pattern);
    return th_stack_sql(&st, q);
}

static bool stored_is(const char *pattern, const char *want)
{
    char *v = stored(pattern);
    bool ok = v != NULL && strcmp(v, want) == 0;

    free(v);
    return ok;
}

/* router.integration.backfill as identity (the tests' connection may speak for any). */
static cJSON *ask_backfill(const char *identity, const char *body)
{
    return th_stack_request_as(&st, identity, "router.integration.backfill", body);
}

static void test_setup(void)
{
    th_stack_workspace(&st, "Backfill Outdoor", false, ws);
    {
        const char *a[] = {"member", "add",   "--workspace", ws,    "--user", "alice",
                           "--role", "agent", "--capacity",  "100", NULL};
        cJSON_Delete(th_stack_run(&st, 0, a));
        th_stack_connect(&st, ws, "messenger", PAGE, "short-bf", NULL, page_int);
        th_stack_connect(&st, ws, "instagram", IG, "short-bf-ig", NULL, ig_int);
    }
    /* The router learns of integrations from the vault's events, a moment later. */
    CHECK_WAIT(
        th_stack_count(&st, "SELECT count(*) FROM router.routes WHERE status = 'connected'") == 2,
        10000);
}

/*
 * domsctl integration check I on the Instagram account, whose webhooks never came: the check
 * backfills its conversation and answers how many messages it stored, the business's reply
 * from another tool stored as outbound; asked again, it stores nothing twice.
 */
static void test_check_on_demand(void)
{
    const char *args[] = {"integration", "check", ig_int, NULL};
    cJSON *out;

    fakemeta_conv_add(st.meta, FAKEMETA_INSTAGRAM, IG, "ig-bf-1", "m_bfig_1", "ig hello there",
                      t0 - 20 * 60 * 1000, false);
    fakemeta_conv_add(st.meta, FAKEMETA_INSTAGRAM, IG, "ig-bf-1", "m_bfig_2",
                      "answered from the app", t0 - 19 * 60 * 1000, true);
    fakemeta_conv_add(st.meta, FAKEMETA_INSTAGRAM, IG, "ig-bf-1", "m_bfig_3", "ig thanks!",
                      t0 - 18 * 60 * 1000, false);
    out = th_stack_run(&st, 0, args);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(out, "subscribed")));
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "backfilled")), 3);
    CHECK_STR(th_json_str(out, "backfill", NULL), "done");
    cJSON_Delete(out);
    CHECK(stored_is("m_bfig_%", "3/3"));
    CHECK_INT(th_stack_count(&st, "SELECT count(*) FROM router.messages WHERE mid = 'm_bfig_2'"
                                  " AND direction = 'out' AND status = 'sent'"),
              1);
    /* The window is Meta's time of the contact's last message. */
    CHECK_INT(th_stack_count(&st, "SELECT round(extract(epoch FROM max(last_inbound_at)) * 1000)"
                                  " FROM router.conversations c JOIN router.messages m"
                                  " ON m.conversation_id = c.id WHERE m.mid = 'm_bfig_3'"),
              (t0 - 18 * 60 * 1000) / 1000 * 1000);
    /* Asked again: everything is held, nothing stored twice. */
    out = th_stack_run(&st, 0, args);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "backfilled")), 0);
    CHECK_STR(th_json_str(out, "backfill", NULL), "done");
    cJSON_Delete(out);
    CHECK(stored_is("m_bfig_%", "3/3"));
}

/*
 * A picture in a message no webhook brought: the backfill stores the message with its
 * attachment (pending, the CDN URL sealed), the media worker downloads it from Meta's CDN as
 * it does a webhook's, and attachment get reads back exactly its bytes.
 */
static void test_backfilled_media(void)
{
    static const unsigned char pic[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
                                        '\n', 'b', 'f', '-', 'p',  'i',  'c'};
    char *url = fakemeta_cdn_put(st.meta, "bf-pic", "image/png", pic, sizeof(pic));
    const char *check[] = {"integration", "check", ig_int, NULL};
    char path[512], *att, *got;
    cJSON *out;

    fakemeta_conv_add(st.meta, FAKEMETA_INSTAGRAM, IG, "ig-bf-1", "m_bfig_4", "ig a picture",
                      t0 - 17 * 60 * 1000, false);
    fakemeta_conv_attach(st.meta, "m_bfig_4", "image/png", url, sizeof(pic));
    out = th_stack_run(&st, 0, check);
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "backfilled")), 1);
    cJSON_Delete(out);
    CHECK_WAIT(th_stack_count(&st,
                              "SELECT count(*) FROM router.attachments a"
                              " JOIN router.messages m ON m.id = a.message_id"
                              " WHERE m.mid = 'm_bfig_4' AND a.state = 'stored'"
                              " AND a.type = 'image' AND a.size = 14 AND a.direction = 'in'") == 1,
               15000);
    CHECK_INT(fakemeta_cdn_gets(st.meta, "bf-pic"), 1);
    att = th_stack_sql(&st, "SELECT a.id FROM router.attachments a JOIN router.messages m"
                            " ON m.id = a.message_id WHERE m.mid = 'm_bfig_4'");
    snprintf(path, sizeof(path), "%s/bf-pic.png", th_tmpdir());
    {
        const char *get[] = {"attachment", "get", att != NULL ? att : "att_none",
                             "--out",      path,  NULL};
        cJSON_Delete(th_stack_run(&st, 0, get));
    }
    got = th_read_file(path);
    CHECK(got != NULL && memcmp(got, pic, sizeof(pic)) == 0);
    free(got);
    free(att);
    free(url);
}

/*
 * A gap on the Page: 27 conversations at Meta (two pages of the list), one with 60 messages
 * (two pages of its own), some already stored by webhooks before the gap, an echo of the
 * business. Meta throttles mid-way, first with 80006 and 5 minutes to regain access, then
 * with 613 and no estimate: each time the job waits (not_before) and Meta's time is moved on
 * by the test. In the end every message is stored once, and no second held more than Meta's
 * 2 calls.
 */
static void test_gap_with_throttling(void)
{
    char psid[32], mid[48], text[64], body[256];
    long calls;
    cJSON *r;

    /* Before the gap, by webhook: stored, and at Meta too. */
    webhook("bf-0", "m_bf_0_0", "before the gap", t0 - 3 * 3600 * 1000);
    fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, "bf-0", "m_bf_0_0", "before the gap",
                      t0 - 3 * 3600 * 1000, false);
    CHECK_WAIT(stored_is("m_bf_0_0", "1/1"), 10000);
    for (int c = 0; c < 27; c++) {
        int n = c == 1 ? 60 : 2;
        snprintf(psid, sizeof(psid), "bf-%d", c);
        for (int i = c == 0 ? 1 : 0; i < n; i++) {
            snprintf(mid, sizeof(mid), "m_bf_%d_%d", c, i);
            snprintf(text, sizeof(text), "gap text %d %d", c, i);
            fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, psid, mid, text,
                              t0 - 2 * 3600 * 1000 + c * 60000 + i * 1000, false);
        }
    }
    /* The business answered bf-2 from Meta's inbox during the gap. */
    fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, "bf-2", "m_bf_echo", "sent from the inbox",
                      t0 - 3600 * 1000, true);

    /* Meta throttles the sixth call: 80006, 5 minutes to regain access. */
    fakemeta_conv_throttle(st.meta, 5, 80006, 1, 5);
    calls = fakemeta_conv_calls(st.meta);
    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\",\"since\":null,\"wait_ms\":0}",
             page_int);
    r = ask_backfill("token-vault", body);
    CHECK_STR(th_json_str(r, "result", "integration_id"), page_int);
    cJSON_Delete(r);
    CHECK_WAIT(job_is(page_int, "state || '/' || throttled", "pending/1"), 30000);
    /* Meta's estimate is kept: no call before it. */
    CHECK(job_is(page_int, "(not_before > now() + interval '4 minutes')::text", "true"));
    CHECK_INT(fakemeta_conv_calls(st.meta), calls + 6);
    {
        char *err = job_field(page_int, "error");
        CHECK_CONTAINS(err, "80006");
        free(err);
    }
    /* Part of it stored, nothing twice. */
    CHECK(th_stack_count(&st, "SELECT count(*) FROM router.messages WHERE mid LIKE 'm\\_bf\\_%'") >=
          1);

    /* Five minutes later: then 613, which names no wait (a minute, Meta's windows roll). */
    fakemeta_conv_throttle(st.meta, 3, 613, 1, 0);
    free(th_stack_sql(&st, "UPDATE router.backfill_jobs SET not_before = now() RETURNING 1"));
    CHECK_WAIT(job_is(page_int, "state || '/' || throttled", "pending/2"), 30000);
    CHECK(job_is(page_int,
                 "(not_before > now() + interval '45 seconds' AND"
                 " not_before < now() + interval '2 minutes')::text",
                 "true"));
    free(th_stack_sql(&st, "UPDATE router.backfill_jobs SET not_before = now() RETURNING 1"));
    CHECK_WAIT(job_is(page_int, "state", "done"), 60000);

    /* 27 conversations: 2 + 60 + 25 * 2 messages and the echo, each stored once. */
    CHECK(stored_is("m\\_bf\\_%", "113/113"));
    CHECK_INT(th_stack_count(
                  &st, "SELECT count(*) FROM router.conversations c JOIN router.routes r"
                       " ON r.integration_id = c.integration_id WHERE r.account_id = '" PAGE "'"),
              27);
    CHECK_INT(th_stack_count(&st, "SELECT count(*) FROM router.messages WHERE mid = 'm_bf_echo'"
                                  " AND direction = 'out'"),
              1);
    /* The backfill stored all but the one a webhook had brought, which it found held. */
    CHECK(job_is(page_int, "stored || '/' || duplicates", "112/1"));
    CHECK_INT(fakemeta_conv_over_limit(st.meta), 0);
    /* What Meta says of a person beyond the id is never kept, sealed or not. */
    CHECK_INT(th_stack_count(&st, "SELECT count(*) FROM router.messages WHERE position("
                                  "convert_to('gap text', 'UTF8') IN body_sealed) > 0"),
              0);
    {
        const char *args[] = {"conversations", "list", "--workspace", ws, NULL};
        cJSON *list = th_stack_run(&st, 0, args);
        char *s = cJSON_PrintUnformatted(list);
        CHECK(s != NULL && strstr(s, "Person bf") == NULL && strstr(s, "@facebook.com") == NULL);
        cJSON_free(s);
        cJSON_Delete(list);
    }
}

/*
 * Meta's times decide the window: a message of 10 days ago found now leaves it closed, and an
 * older message found after a newer one does not move it back.
 */
static void test_old_message_window(void)
{
    char body[256];
    cJSON *r;
    int64_t old = t0 - 10LL * 86400 * 1000, recent = t0 - 30 * 60 * 1000;

    fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, "bf-old", "m_bfo_1", "ten days ago", old,
                      false);
    webhook("bf-recent", "m_bfr_2", "half an hour ago", recent);
    CHECK_WAIT(stored_is("m_bfr_2", "1/1"), 10000);
    fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, "bf-recent", "m_bfr_2", "half an hour ago",
                      recent, false);
    fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, "bf-recent", "m_bfr_1", "three days ago",
                      t0 - 3LL * 86400 * 1000, false);
    snprintf(body, sizeof(body),
             "{\"integration_id\":\"%s\",\"since\":\"2000-01-01T00:00:00Z\",\"wait_ms\":30000}",
             page_int);
    r = ask_backfill("token-vault", body);
    CHECK_STR(th_json_str(r, "result", "state"), "done");
    cJSON_Delete(r);
    CHECK(stored_is("m_bfo_1", "1/1"));
    CHECK(stored_is("m_bfr_1", "1/1"));
    CHECK_INT(th_stack_count(&st, "SELECT round(extract(epoch FROM c.last_inbound_at) * 1000)"
                                  " FROM router.conversations c JOIN router.messages m"
                                  " ON m.conversation_id = c.id WHERE m.mid = 'm_bfo_1'"),
              old / 1000 * 1000);
    CHECK_INT(th_stack_count(&st, "SELECT round(extract(epoch FROM c.last_inbound_at) * 1000)"
                                  " FROM router.conversations c JOIN router.messages m"
                                  " ON m.conversation_id = c.id WHERE m.mid = 'm_bfr_1'"),
              recent);
    /* What the operator sees: closed for the old one, open for the recent one. */
    {
        const char *args[] = {"conversations", "list",   "--workspace", ws,
                              "--window",      "closed", NULL};
        cJSON *list = th_stack_run(&st, 0, args), *c;
        int closed = 0;
        cJSON_ArrayForEach(c, list)
        {
            closed++;
        }
        CHECK_INT(closed, 1);
        cJSON_Delete(list);
    }
}

/*
 * The vault's scheduled pass: an account silent for BACKFILL_AFTER_SILENCE (1 s here) while
 * a contact wrote within 7 days is backfilled without anyone asking.
 */
static void test_scheduled_silence(void)
{
    cJSON *r;

    fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, "bf-silent", "m_bfs_1", "nobody heard this",
                      th_now_ms() - 60 * 1000, false);
    free(th_stack_sql(&st, "UPDATE vault.integrations SET subscription_checked_at = now() -"
                           " interval '7 hours' RETURNING 1"));
    r = th_stack_request(&st, "vault.refresh.run", "{}");
    CHECK(th_json_str(r, "error", "code") == NULL);
    cJSON_Delete(r);
    CHECK_WAIT(stored_is("m_bfs_1", "1/1"), 30000);
}

/* Prints the job's row and the end of the router's log: why a wait ran out. */
static void dump_job(const char *id)
{
    char *j = job_field(id, "row_to_json(backfill_jobs)::text");
    char *log = th_proc_output(&router);
    size_t n = log != NULL ? strlen(log) : 0;

    fprintf(stderr, "job: %s\nrouter log:\n%s\n", j ? j : "(none)",
            log != NULL ? log + (n > 4000 ? n - 4000 : 0) : "");
    free(j);
    free(log);
}

/*
 * A replica stopped mid-way puts its job back where it was; one killed leaves its lease,
 * which another process claims once it runs out (moved on by the test): every message is
 * stored once, the conversation being stored when it died repeated and found held.
 */
static void test_crash_midway(void)
{
    char psid[32], mid[48], text[64], body[256];
    int64_t base = th_now_ms() - 10 * 60 * 1000;
    cJSON *r;

    for (int c = 0; c < 10; c++) {
        snprintf(psid, sizeof(psid), "bf-c-%d", c);
        for (int i = 0; i < 3; i++) {
            snprintf(mid, sizeof(mid), "m_bfc_%d_%d", c, i);
            snprintf(text, sizeof(text), "crash text %d %d", c, i);
            fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, psid, mid, text,
                              base + c * 10000 + i * 1000, false);
        }
    }
    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\",\"since\":null,\"wait_ms\":0}",
             page_int);
    r = ask_backfill("token-vault", body);
    CHECK_STR(th_json_str(r, "result", "integration_id"), page_int);
    cJSON_Delete(r);
    /* SIGTERM once a conversation is stored: back to pending, at its position. */
    CHECK_WAIT(th_stack_count(
                   &st, "SELECT count(*) FROM router.messages WHERE mid LIKE 'm\\_bfc\\_%'") >= 3,
               30000);
    CHECK_INT(th_proc_stop(&router), 0);
    router_lives[0] = router;
    CHECK(job_is(page_int, "state || '/' || (lease_until IS NULL)::text", "pending/true"));
    CHECK(job_is(page_int, "(page_done > 0)::text", "true"));
    th_stack_start(&st, &router, "conversation-router", NULL);
    /* SIGKILL once another is stored: the lease stays until it runs out. */
    if (!WAIT_UNTIL(th_stack_count(
                        &st, "SELECT count(*) FROM router.messages WHERE mid LIKE 'm\\_bfc\\_%'") >=
                        9,
                    30000)) {
        CHECK_MSG(0, "the restarted router never went on with the job");
        dump_job(page_int);
    }
    th_proc_signal(&router, SIGKILL);
    CHECK_INT(th_proc_wait(&router, 10000), 128 + SIGKILL);
    router_lives[1] = router;
    CHECK(job_is(page_int, "state || '/' || (lease_until > now())::text", "running/true"));
    th_stack_start(&st, &router, "conversation-router", NULL);
    free(th_stack_sql(&st, "UPDATE router.backfill_jobs SET lease_until = now() - interval"
                           " '1 second' RETURNING 1"));
    CHECK_WAIT(job_is(page_int, "state", "done"), 60000);
    CHECK(stored_is("m\\_bfc\\_%", "30/30"));
}

/*
 * Permissions revoked (the Page token fails its check: needs_reauth) and restored (the
 * business connects again): the router backfills what Meta held meanwhile by itself.
 */
static void test_back_from_reauth(void)
{
    const char *connect[] = {"integration", "connect",    "--workspace", ws,
                             "--platform",  "messenger",  "--account",   PAGE,
                             "--token",     "short-bf-2", NULL};
    char q[256];
    cJSON *r;

    snprintf(q, sizeof(q),
             "UPDATE vault.integrations SET last_checked_at = now() - interval '2 days'"
             " WHERE id = '%s' RETURNING 1",
             page_int);
    free(th_stack_sql(&st, q));
    fakemeta_revoke(st.meta, "PAGE-" PAGE "-short-bf");
    r = th_stack_request(&st, "vault.refresh.run", "{}");
    cJSON_Delete(r);
    CHECK_WAIT(th_stack_count(&st,
                              "SELECT count(*) FROM router.routes WHERE account_id = '" PAGE "'"
                              " AND status = 'needs_reauth'") == 1,
               10000);
    fakemeta_conv_add(st.meta, FAKEMETA_FACEBOOK, PAGE, "bf-reauth", "m_bfa_1",
                      "written while we could not read", th_now_ms() - 30 * 1000, false);
    fakemeta_issue(st.meta, FAKEMETA_USER_SHORT, "short-bf-2", NULL);
    r = th_stack_run(&st, 0, connect);
    CHECK_STR(th_json_str(r, "integration_id", NULL), page_int);
    cJSON_Delete(r);
    if (!WAIT_UNTIL(stored_is("m_bfa_1", "1/1"), 30000)) {
        CHECK_MSG(0, "nothing backfilled after the integration came back");
        dump_job(page_int);
    }
}

static void test_refusals(void)
{
    char body[256];
    cJSON *r;

    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\"}", page_int);
    r = ask_backfill("operator", body);
    CHECK_STR(th_json_str(r, "error", "code"), "denied");
    cJSON_Delete(r);
    r = ask_backfill("token-vault", "{\"integration_id\":\"int_nope\"}");
    CHECK_STR(th_json_str(r, "error", "code"), "not_found");
    cJSON_Delete(r);
    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\",\"since\":\"yesterday\"}", page_int);
    r = ask_backfill("token-vault", body);
    CHECK_STR(th_json_str(r, "error", "code"), "invalid");
    cJSON_Delete(r);
    snprintf(body, sizeof(body), "{\"integration_id\":\"%s\",\"wait_ms\":3600000}", page_int);
    r = ask_backfill("token-vault", body);
    CHECK_STR(th_json_str(r, "error", "code"), "invalid");
    cJSON_Delete(r);
}

static void test_logs_clean(void)
{
    struct th_proc *procs[] = {&ingest, &vault, &router, &router_lives[0], &router_lives[1]};
    const char *needles[] = {"gap text", "Person bf", "@facebook.com", "user_ig", "PAGE-",
                             "IGLL-",    NULL};

    for (size_t p = 0; p < sizeof(procs) / sizeof(procs[0]); p++)
        free(th_proc_log_lacks(procs[p], needles));
}

int main(void)
{
    const char *const vault_env[] = {"BACKFILL_AFTER_SILENCE=1s", NULL};

    th_init("router_backfill");
    th_stack_init(&st);
    t0 = th_now_ms();
    th_stack_start(&st, &vault, "token-vault", vault_env);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    th_stack_start(&st, &router, "conversation-router", NULL);

    RUN(test_setup);
    RUN(test_check_on_demand);
    RUN(test_backfilled_media);
    RUN(test_gap_with_throttling);
    RUN(test_old_message_window);
    RUN(test_scheduled_silence);
    RUN(test_crash_midway);
    RUN(test_back_from_reauth);
    RUN(test_refusals);
    th_stack_stop(&st);
    RUN(test_logs_clean);
    return check_summary();
}
