/*
 * test_reaper_audit - the audit log end to end: token-vault's audit events reach the
 * reaper's hash chain exactly once each; `domsctl audit verify` passes, and fails at the
 * right seq once a row is edited or removed by hand as the database admin; two replicas
 * append one chain; RETENTION_AUDIT deletes the old entries and leaves the rest verifiable.
 * An event with malformed fields is recorded with their digests, never dropped. A message
 * carrying several events (an array, as an outbox relay sends them) appends each once, in
 * order, and every token the vault serves reaches the chain.
 * Also: the retention bounds cannot be configured away (RETENTION_TOKENS=8d refused, 78).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/crypto.h"
#include "common/mem.h"
#include "reaper_stack.h"

static struct th_proc second;

/* Publishes an audit event as a service's outbox would, Nats-Msg-Id included. The id is
 * made unique to this run, so that a JetStream store left by an earlier run cannot absorb
 * it as a duplicate. */
static void publish_audit(const char *tag, const char *action, const char *subject)
{
    char body[512], msg_id[64], id[40];
    jsPubOptions po;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;

    snprintf(id, sizeof(id), "%08x%.24s", (unsigned)getpid(), tag);
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"at\":\"2026-11-29T10:00:00.000001Z\",\"service\":\"test\","
             "\"actor\":\"tester\",\"action\":\"%s\",\"subject\":\"%s\"}",
             id, action, subject);
    snprintf(msg_id, sizeof(msg_id), "audit:%s", id);
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    CHECK(js_Publish(&pa, rs.js, "audit.test", body, (int)strlen(body), &po, &jerr) == NATS_OK);
    jsPubAck_Destroy(pa);
}

static long entries(void)
{
    return rs_sql_long("SELECT count(*) FROM reaper.audit_log");
}

/* Waits until the chain holds at least n entries. */
static bool wait_entries(long n, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (entries() >= n)
            return true;
        th_sleep_ms(100);
    }
    return false;
}

/* `domsctl audit verify`: returns the exit code; *broken the broken_at (or 0). */
static int verify(long *count, long *broken)
{
    const char *args[] = {"audit", "verify", NULL};
    char *text = NULL;
    int code = rs_domsctl(NULL, &text, args);
    /* On a broken chain domsctl also says so on stderr (unbuffered, so first). */
    cJSON *out = cJSON_Parse(text && strchr(text, '{') ? strchr(text, '{') : "null");

    free(text);

    *count = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(out, "entries"));
    *broken = cJSON_GetObjectItem(out, "broken_at")
                  ? (long)cJSON_GetNumberValue(cJSON_GetObjectItem(out, "broken_at"))
                  : 0;
    cJSON_Delete(out);
    return code;
}

static void test_bounds(void)
{
    static const char *const cases[][2] = {
        {"RETENTION_TOKENS=8d", "RETENTION_TOKENS"},
        {"RETENTION_MESSAGES=91d", "RETENTION_MESSAGES"},
        {"RETENTION_AUDIT=366d", "RETENTION_AUDIT"},
        {"REAPER_INTERVAL=soon", "REAPER_INTERVAL"},
        /* Days meant, seconds it would have been: a duration needs its unit. */
        {"RETENTION_MESSAGES=90", "RETENTION_MESSAGES"},
    };
    char kek[600];

    snprintf(kek, sizeof(kek), "DOMS_KEK_FILE=%s", rs.st.kek);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *env[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", kek, cases[i][0], NULL};
        char *out = NULL;
        CHECK_INT(th_run("retention-reaper", NULL, env, &out), 78);
        CHECK_CONTAINS(out, cases[i][1]);
        /* One line, naming the variable. */
        CHECK_MSG(out != NULL && strchr(out, '\n') == out + strlen(out) - 1, "one line: %s", out);
        free(out);
    }
    /* At the bound itself it starts (--print-config stops right after the check). */
    {
        const char *env[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x",
                             kek,
                             "RETENTION_TOKENS=7d",
                             "RETENTION_MESSAGES=90d",
                             "RETENTION_AUDIT=365d",
                             NULL};
        const char *args[] = {"--print-config", NULL};
        char *out = NULL;
        CHECK_INT(th_run("retention-reaper", args, env, &out), 0);
        CHECK_CONTAINS(out, "RETENTION_TOKENS=7d\n");
        free(out);
    }
}

static void test_vault_events_chained(void)
{
    const char *list_args[] = {"audit", "list", NULL};
    char *a = rs_connect("ws_a", "instagram", "17841400000000001", NULL);
    char *b = rs_connect("ws_a", "messenger", "106000000000001", NULL);
    const char *disc[] = {"integration", "disconnect", a, NULL};
    cJSON *list = NULL, *first;
    long n, broken;

    CHECK_INT(rs_domsctl(NULL, NULL, disc), 0);
    /* connect, connect, disconnect: three events from token-vault. */
    CHECK_MSG(wait_entries(3, 20000), "three audit entries");
    CHECK_INT(rs_domsctl(&list, NULL, list_args), 0);
    CHECK(cJSON_GetArraySize(list) >= 3);
    first = cJSON_GetArrayItem(list, 0);
    CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(first, "seq")), 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(first, "service")), "token-vault");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(first, "action")), "integration.connect");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(first, "actor")), "operator");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(first, "subject")), a);
    CHECK(strlen(cJSON_GetStringValue(cJSON_GetObjectItem(first, "hash"))) == 64);
    {
        const char *at = cJSON_GetStringValue(cJSON_GetObjectItem(first, "at"));
        CHECK(at != NULL && at[strlen(at) - 1] == 'Z' && at[10] == 'T');
    }
    cJSON_Delete(list);
    /* Reading the integrations, and a check that may store what Meta holds, are audited. */
    {
        const char *ints[] = {"integration", "list", "--workspace", "ws_a", NULL};
        const char *check[] = {"integration", "check", b, NULL};
        char q[256];
        CHECK_INT(rs_domsctl(NULL, NULL, ints), 0);
        CHECK_INT(rs_domsctl(NULL, NULL, check), 0);
        CHECK_WAIT(rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE service ="
                               " 'token-vault' AND action = 'integrations.list' AND subject ="
                               " 'ws_a' AND actor = 'operator'") == 1,
                   10000);
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM reaper.audit_log WHERE service = 'token-vault'"
                 " AND action = 'integration.check' AND subject = '%s'",
                 b);
        CHECK_WAIT(rs_sql_long(q) == 1, 10000);
    }
    CHECK_INT(verify(&n, &broken), 0);
    CHECK_INT(n, entries());
    free(a);
    free(b);
}

static void test_duplicates_once(void)
{
    long before = entries();

    /* A redelivery (the same id, even past JetStream's duplicate window) is kept once. */
    publish_audit("0123456789abcdef0123456789abcdef", "test.once", "x1");
    publish_audit("0123456789abcdef0123456789abcdef", "test.once", "x1");
    CHECK(wait_entries(before + 1, 10000));
    /* Garbage on the stream is dropped, not retried forever, and appends nothing. */
    {
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        CHECK(js_Publish(&pa, rs.js, "audit.test", "not json", 8, NULL, &jerr) == NATS_OK);
        jsPubAck_Destroy(pa);
    }
    publish_audit("11111111111111111111111111111111", "test.after", "x2");
    CHECK(wait_entries(before + 2, 10000));
    /* One consumer takes the stream in order: with test.after appended, the redelivery and
     * the garbage before it have been handled, so what is counted now is final. */
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE action = 'test.once'"), 1);
    CHECK_INT(entries(), before + 2);
}

/* Publishes body on audit.test as it is, with msg_id as Nats-Msg-Id. */
static void publish_raw(const char *body, const char *msg_id)
{
    jsPubOptions po;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;

    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    CHECK(js_Publish(&pa, rs.js, "audit.test", body, (int)strlen(body), &po, &jerr) == NATS_OK);
    jsPubAck_Destroy(pa);
}

/* "sha256:<hex>" of s, as the reaper stores a malformed field. */
static void digest(const char *s, char out[72])
{
    unsigned char d[CM_SHA256_LEN];

    cm_crypto_sha256(s, strlen(s), d);
    memcpy(out, "sha256:", 7);
    cm_hex_encode(d, sizeof(d), out + 7);
}

/*
 * An event with malformed fields is recorded, never dropped: an oversized actor, an action
 * with a control character and a subject that is not a string are stored as their digests,
 * an unusable time as the time of appending; the chain still verifies.
 */
static void test_malformed_fields_recorded(void)
{
    char actor[400], body[1024], id[40], msg_id[64], want[72], q[256], *v;
    long before = entries(), n, broken;

    memset(actor, 'a', sizeof(actor) - 1);
    actor[sizeof(actor) - 1] = '\0';
    snprintf(id, sizeof(id), "%08xmalformed", (unsigned)getpid());
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"at\":\"not a time\",\"service\":\"test\",\"actor\":\"%s\","
             "\"action\":\"test.\\u0001bad\",\"subject\":42}",
             id, actor);
    snprintf(msg_id, sizeof(msg_id), "audit:%s", id);
    publish_raw(body, msg_id);
    CHECK(wait_entries(before + 1, 10000));
    snprintf(q, sizeof(q), "SELECT actor FROM reaper.audit_log WHERE event_id = '%s'", id);
    v = rs_sql(q);
    digest(actor, want);
    CHECK_STR(v, want);
    free(v);
    snprintf(q, sizeof(q), "SELECT action FROM reaper.audit_log WHERE event_id = '%s'", id);
    v = rs_sql(q);
    digest("test.\001bad", want);
    CHECK_STR(v, want);
    free(v);
    snprintf(q, sizeof(q), "SELECT subject FROM reaper.audit_log WHERE event_id = '%s'", id);
    v = rs_sql(q);
    digest("42", want);
    CHECK_STR(v, want);
    free(v);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM reaper.audit_log WHERE event_id = '%s' AND service = 'test'"
             " AND at > now() - interval '1 hour'",
             id);
    CHECK_INT(rs_sql_long(q), 1);
    CHECK_INT(verify(&n, &broken), 0);
    CHECK_INT(broken, 0);
}

/*
 * A message may carry several events, a JSON array of them (an outbox relay sends the
 * events of a pass together): each is appended once and in order, one stored already (the
 * same event relayed again in another grouping) is not appended again, an element that is
 * not an object is skipped, and the chain verifies.
 */
static void test_events_together(void)
{
    char body[1024], one[40], two[40], dup[40], q[256];
    long before = entries(), n, broken;

    snprintf(one, sizeof(one), "%08xtogether1", (unsigned)getpid());
    snprintf(two, sizeof(two), "%08xtogether2", (unsigned)getpid());
    /* test_duplicates_once's event, appended already. */
    snprintf(dup, sizeof(dup), "%08x%.24s", (unsigned)getpid(), "0123456789abcdef0123456789abcdef");
#define EV(id, subject)                                                                            \
    "{\"id\":\"" id "\",\"at\":\"2026-11-29T10:00:01.000001Z\",\"service\":\"test\","              \
    "\"actor\":\"tester\",\"action\":\"test.together\",\"subject\":\"" subject "\"}"
    snprintf(body, sizeof(body), "[" EV("%s", "t1") "," EV("%s", "x1") ",42," EV("%s", "t2") "]",
             one, dup, two);
#undef EV
    publish_raw(body, "test:outbox:1-4");
    /* The same events relayed again, grouped otherwise: nothing more is appended. */
    publish_raw(body, "test:outbox:1-5");
    publish_audit("22222222222222222222222222222222", "test.after-together", "x3");
    CHECK(wait_entries(before + 3, 10000));
    /* One consumer takes the stream in order: with the last event in, the rest is final. */
    CHECK_INT(entries(), before + 3);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE action = 'test.once'"), 1);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE action = 'test.together'"),
              2);
    snprintf(q, sizeof(q),
             "SELECT (SELECT seq FROM reaper.audit_log WHERE event_id = '%s') <"
             " (SELECT seq FROM reaper.audit_log WHERE event_id = '%s')",
             one, two);
    {
        char *v = rs_sql(q);
        CHECK_STR(v, "t");
        free(v);
    }
    CHECK_INT(verify(&n, &broken), 0);
    CHECK_INT(broken, 0);
    CHECK_INT(n, entries());
}

/* Every token served reaches the chain, once, however the vault's relay groups them. */
static void test_tokens_served_chained(void)
{
    char *id = rs_connect("ws_a", "instagram", "17841400000000002", NULL);
    char q[256];
    long n, broken;

    snprintf(q, sizeof(q),
             "SELECT count(*) FROM reaper.audit_log WHERE action = 'token.served' AND"
             " subject = '%s' AND actor = 'conversation-router'",
             id);
    for (int i = 0; i < 40; i++) {
        char *t = rs_token(id);
        CHECK(t != NULL);
        free(t);
    }
    for (int i = 0; i < 100 && rs_sql_long(q) < 40; i++)
        th_sleep_ms(100);
    CHECK_INT(rs_sql_long(q), 40);
    CHECK_INT(verify(&n, &broken), 0);
    CHECK_INT(broken, 0);
    free(id);
}

static void test_since(void)
{
    const char *args[] = {"audit", "list", "--since", "2030-01-01T00:00:00Z", NULL};
    const char *bad[] = {"audit", "list", "--since", "2026-13-45T99:00:00Z", NULL};
    cJSON *list = NULL;

    CHECK_INT(rs_domsctl(&list, NULL, args), 0);
    CHECK_INT(cJSON_GetArraySize(list), 0);
    cJSON_Delete(list);
    CHECK_INT(rs_domsctl(NULL, NULL, bad), 1);
}

/* A list longer than a page (2000) comes in pages: the reason says how to ask for the next,
 * and --all gives every entry once, in order. */
static void test_pages(void)
{
    const char *first[] = {"audit", "list", "--since", "2000-01-01T00:00:00Z", NULL};
    const char *all[] = {"audit", "list", "--since", "2000-01-01T00:00:00Z", "--all", NULL};
    long total;
    cJSON *list = NULL;
    char *text = NULL, *cursor;

    for (int i = 0; i < 2050; i++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "page%06d", i);
        publish_audit(tag, "test.page", tag);
    }
    CHECK_WAIT(rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE action = 'test.page'") ==
                   2050,
               60000);
    total = entries();
    CHECK_INT(rs_domsctl(&list, &text, first), 0);
    CHECK_INT(cJSON_GetArraySize(list), 2000);
    cursor = text != NULL ? strstr(text, "more follow: --cursor ") : NULL;
    CHECK(cursor != NULL);
    if (cursor != NULL) {
        char c[24] = "";
        const char *next[] = {"audit",    "list", "--since", "2000-01-01T00:00:00Z",
                              "--cursor", c,      NULL};
        cJSON *rest = NULL;
        sscanf(cursor + strlen("more follow: --cursor "), "%23[0-9]", c);
        CHECK_INT(rs_domsctl(&rest, NULL, next), 0);
        CHECK_INT(cJSON_GetArraySize(rest), total - 2000);
        CHECK_INT(
            (long)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(rest, 0), "seq")),
            atol(c) + 1);
        cJSON_Delete(rest);
    }
    free(text);
    cJSON_Delete(list);
    CHECK_INT(rs_domsctl(&list, NULL, all), 0);
    CHECK_INT(cJSON_GetArraySize(list), total);
    for (int i = 1; i < cJSON_GetArraySize(list); i++)
        CHECK_MSG(
            cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, i), "seq")) >
                cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(list, i - 1), "seq")),
            "entry %d out of order", i);
    cJSON_Delete(list);
}

static void test_tamper(void)
{
    long n, broken;
    char *actor = rs_sql("SELECT actor FROM reaper.audit_log WHERE seq = 2");

    CHECK_INT(verify(&n, &broken), 0);
    /* Edited by hand, as the admin: verify names the edited seq, and domsctl exits 1. */
    free(rs_sql("UPDATE reaper.audit_log SET actor = 'mallory' WHERE seq = 2 RETURNING 1"));
    CHECK_INT(verify(&n, &broken), 1);
    CHECK_INT(broken, 2);
    {
        char q[256];
        snprintf(q, sizeof(q), "UPDATE reaper.audit_log SET actor = '%s' WHERE seq = 2 RETURNING 1",
                 actor);
        free(rs_sql(q));
    }
    CHECK_INT(verify(&n, &broken), 0);
    /* An entry removed from the middle: the chain breaks where it was. */
    free(rs_sql("CREATE TABLE public.saved AS SELECT * FROM reaper.audit_log WHERE seq = 3"));
    free(rs_sql("DELETE FROM reaper.audit_log WHERE seq = 3 RETURNING 1"));
    CHECK_INT(verify(&n, &broken), 1);
    CHECK_INT(broken, 3);
    free(rs_sql("INSERT INTO reaper.audit_log SELECT * FROM public.saved RETURNING 1"));
    free(rs_sql("DROP TABLE public.saved"));
    CHECK_INT(verify(&n, &broken), 0);
    /* The newest entry removed: the chain no longer reaches its head. */
    free(rs_sql("CREATE TABLE public.saved AS SELECT * FROM reaper.audit_log"
                " WHERE seq = (SELECT max(seq) FROM reaper.audit_log)"));
    free(rs_sql("DELETE FROM reaper.audit_log WHERE seq = (SELECT max(seq) FROM public.saved)"
                " RETURNING 1"));
    CHECK_INT(verify(&n, &broken), 1);
    CHECK_INT(broken, rs_sql_long("SELECT max(seq) FROM public.saved"));
    free(rs_sql("INSERT INTO reaper.audit_log SELECT * FROM public.saved RETURNING 1"));
    free(rs_sql("DROP TABLE public.saved"));
    CHECK_INT(verify(&n, &broken), 0);
    free(actor);
}

static void test_two_replicas_one_chain(void)
{
    const char *env[] = {"REAPER_INTERVAL=1d", NULL};
    long before = entries(), n, broken;
    char id[40];

    th_stack_start(&rs.st, &second, "retention-reaper", env);
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "b%023d", i);
        publish_audit(id, "test.burst", "burst");
    }
    CHECK_MSG(wait_entries(before + 200, 30000), "200 burst entries appended");
    CHECK_INT(verify(&n, &broken), 0);
    CHECK_INT(n, entries());
    CHECK_INT(rs_sql_long("SELECT max(seq) - min(seq) + 1 - count(*) FROM reaper.audit_log"), 0);
    CHECK_INT(th_proc_stop(&second), 0);
}

#define KEPT_SEQ                                                                                   \
    "(SELECT seq FROM reaper.audit_log WHERE action = 'integration.connect' AND subject ="         \
    " (SELECT id FROM vault.integrations WHERE account_id = '17841400000000777'))"

static void test_retention(void)
{
    const char *extra[] = {"RETENTION_AUDIT=3s", NULL};
    const char *run[] = {"retention", "run", NULL};
    long n, broken, before;
    cJSON *out = NULL;
    char *id;

    /* Restarted with a 3-second period: its start-up pass may already delete some. */
    CHECK_INT(th_proc_stop(&rs.reaper), 0);
    rs_start_reaper(extra);
    th_sleep_ms(5000); /* what is there now (the start-up pass's own event too) is past 3 s */
    id = rs_connect("ws_keep", "instagram", "17841400000000777", NULL);
    for (int i = 0; i < 100 && rs_sql_long("SELECT count(*) FROM " KEPT_SEQ " k") == 0; i++)
        th_sleep_ms(100);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM " KEPT_SEQ " k"), 1);
    CHECK_INT(rs_domsctl(&out, NULL, run), 0);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(out, "deleted"), "audit")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(out, "deleted"), "tokens")));
    cJSON_Delete(out);
    /* Everything before the recent entry was past its period, and is gone; it stays. */
    CHECK_INT(rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE seq < " KEPT_SEQ), 0);
    CHECK_INT(rs_sql_long("SELECT count(*) FROM " KEPT_SEQ " k"), 1);
    CHECK(rs_sql_long("SELECT anchor_seq FROM reaper.audit_chain") ==
          rs_sql_long("SELECT " KEPT_SEQ " - 1"));
    /* The rest still verifies, from the anchor the deleted entries left. The pass's own
     * audit.expire event may be appended while domsctl reads: it covers at least what was
     * there before it started, and at most what is there after. */
    before = entries();
    CHECK_INT(verify(&n, &broken), 0);
    CHECK(n >= before && n <= entries());
    /* The expiry is itself audited (by this pass or the start-up one). */
    for (int i = 0; i < 50 && rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE action ="
                                          " 'audit.expire'") == 0;
         i++)
        th_sleep_ms(100);
    CHECK(rs_sql_long("SELECT count(*) FROM reaper.audit_log WHERE action = 'audit.expire'") >= 1);
    CHECK_INT(verify(&n, &broken), 0);
    free(id);
}

int main(void)
{
    th_init("reaper_audit");
    rs_init();
    rs_start_vault();
    rs_start_reaper(NULL);

    RUN(test_bounds);
    RUN(test_vault_events_chained);
    RUN(test_duplicates_once);
    RUN(test_malformed_fields_recorded);
    RUN(test_events_together);
    RUN(test_tokens_served_chained);
    RUN(test_since);
    RUN(test_pages);
    RUN(test_tamper);
    RUN(test_two_replicas_one_chain);
    RUN(test_retention);

    CHECK_INT(th_proc_stop(&rs.reaper), 0);
    CHECK_INT(th_proc_stop(&rs.vault), 0);
    rs_cleanup();
    return check_summary();
}
