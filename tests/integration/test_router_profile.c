/*
 * test_router_profile - contacts' profiles end to end (issue 12 item 4): signed webhooks
 * through ingest, token-vault and two router replicas against the Meta stand-in's User
 * Profile API (fakemeta_profile.c). A contact's name appears after their first message, on
 * both platforms (Instagram's username when they set no name); a refusal (no consent, an
 * unknown user) leaves the name null with nothing stored and is not asked again; a throttled
 * read is asked again after the backoff and then succeeds; a contact committed while a claim
 * waits for the bucket is fetched (not left leased and unasked); every read of both replicas
 * together stays within PROFILE_RATE, and a profile is read again after PROFILE_REFRESH and
 * not before; a purge removes the profile with its contact; and neither the name nor the
 * picture's URL is in plaintext in the router's schema or its log.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "router_suite.h"

/* The definitions router_suite.h names, for this program (its helpers are test_router's). */
struct th_stack st;
struct th_proc ingest, vault, router1, router2, router1_first;
int router1_port, router2_port;
int64_t now_ms_;

/* 4 reads a second at most (a bucket of 4), both replicas together. */
#define RATE_PER_MIN 240
#define BURST        4
#define REFRESH_MS   6000
const char *const router_env[] = {"PROFILE_RATE=240", "PROFILE_REFRESH=6s",
                                  "PROFILE_REFUSED_RETRY=1h", "PROFILE_BACKOFF=1s", NULL};

static char ws[64], ig_integration[64];

/* A message from psid (mid "m_<psid>") to the Page, or to the Instagram account when ig. */
static void message(bool ig, const char *psid)
{
    char mid[128], text[128];

    snprintf(mid, sizeof(mid), "m_%s", psid);
    snprintf(text, sizeof(text), "hello from %s", psid);
    CHECK_MSG(th_stack_message(&st, ig, ig ? IG : PAGE, now_ms_, psid, th_now_ms(), mid, text,
                               NULL) == 200,
              "webhook refused for %s", psid);
}

/* The conversation of psid's first message (a new string), once stored; NULL after 10 s. */
static char *conv_of(const char *psid)
{
    char mid[128];

    snprintf(mid, sizeof(mid), "m_%s", psid);
    return th_stack_await_conv(&st, mid);
}

/* router.conversation.get of conv, as the operator (free it). */
static cJSON *conv_get(const char *conv)
{
    char body[256];

    snprintf(body, sizeof(body), "{\"conversation_id\":\"%s\"}", conv);
    return th_stack_request(&st, "router.conversation.get", body);
}

/* The conversation's contact_name (a new string), or NULL while it is null. */
static char *name_of(const char *conv)
{
    cJSON *r = conv_get(conv);
    const char *n = th_json_str(r, "result", "contact_name");
    char *out = n != NULL ? cm_xstrdup(n) : NULL;

    cJSON_Delete(r);
    return out;
}

/* Waits until conv's contact_name is want; checks it. */
static void await_name(const char *conv, const char *want)
{
    char *n = NULL;

    WAIT_UNTIL((free(n), n = name_of(conv)) != NULL && strcmp(n, want) == 0, 15000);
    CHECK_MSG(n != NULL && strcmp(n, want) == 0, "contact_name of %s: %s, want %s", conv,
              n ? n : "null", want);
    free(n);
}

/* The contact's profile columns of psid's conversation: "<state>|<sealed?>" (a new string). */
static char *profile_row(const char *conv)
{
    char q[512];

    snprintf(q, sizeof(q),
             "SELECT k.profile_state || '|' || (k.profile_sealed IS NOT NULL)"
             " FROM router.contacts k JOIN router.conversations c ON c.contact_id = k.id"
             " WHERE c.id = '%s'",
             conv);
    return th_stack_sql(&st, q);
}

static void test_setup(void)
{
    th_stack_workspace(&st, "Profiles", false, ws);
    th_stack_connect(&st, ws, "messenger", PAGE, "short-prof", NULL, NULL);
    th_stack_connect(&st, ws, "instagram", IG, "short-ig-prof", NULL, ig_integration);
}

/*
 * A contact's first message brings their name: Messenger's first and last name, Instagram's
 * name, else the username; the read carries the right token, fields and appsecret_proof.
 */
static void test_name_after_first_message(void)
{
    char *c1, *c2, *c3, proof[65];
    const struct fakehttp_request *r;
    const char *args[] = {"conversation", "get", NULL, NULL};
    cJSON *got;

    message(false, "cust-ada");
    message(true, "ig-grace");
    message(true, "nameless-1");
    c1 = conv_of("cust-ada");
    c2 = conv_of("ig-grace");
    c3 = conv_of("nameless-1");
    await_name(c1, "Ada Lovelace-cust-ada");
    await_name(c2, "Grace Hopper-ig-grace");
    await_name(c3, "grace.nameless-1");

    /* Meta was asked as the User Profile API says, with the Page token and its proof. */
    r = fakehttp_find(fakemeta_server(st.meta, FAKEMETA_FACEBOOK), "/v23.0/cust-ada");
    CHECK(r != NULL);
    if (r != NULL) {
        char *fields = fakehttp_query_param(r, "fields"),
             *p = fakehttp_query_param(r, "appsecret_proof");
        CHECK_STR(fields, "first_name,last_name,profile_pic");
        CHECK_STR(fakehttp_header(r, "Authorization"), "Bearer PAGE-" PAGE "-short-prof");
        fakemeta_proof("PAGE-" PAGE "-short-prof", proof);
        CHECK_STR(p, proof);
        free(fields);
        free(p);
    }
    r = fakehttp_find(fakemeta_server(st.meta, FAKEMETA_INSTAGRAM), "/v23.0/ig-grace");
    CHECK(r != NULL);
    if (r != NULL) {
        char *fields = fakehttp_query_param(r, "fields");
        CHECK_STR(fields, "name,username,profile_pic");
        CHECK_STR(fakehttp_header(r, "Authorization"), "Bearer IGLL-short-ig-prof");
        free(fields);
    }

    /* The read shows the picture's URL too; the list shows the name. */
    args[2] = c1;
    got = th_stack_run(&st, 0, args);
    CHECK_STR(th_json_str(got, "contact_name", NULL), "Ada Lovelace-cust-ada");
    CHECK_CONTAINS(th_json_str(got, "contact_picture_url", NULL),
                   "platform-lookaside.fbsbx.com/platform/profilepic/?psid=cust-ada");
    cJSON_Delete(got);
    {
        const char *list[] = {"conversations", "list", "--workspace", ws, NULL};
        const cJSON *c;
        bool seen = false;
        got = th_stack_run(&st, 0, list);
        cJSON_ArrayForEach(c, got)
        {
            if (strcmp(th_json_str(c, "conversation_id", NULL), c2) == 0) {
                CHECK_STR(th_json_str(c, "contact_name", NULL), "Grace Hopper-ig-grace");
                CHECK(cJSON_GetObjectItem(c, "contact_picture_url") == NULL);
                seen = true;
            }
        }
        CHECK(seen);
        cJSON_Delete(got);
    }
    free(c1);
    free(c2);
    free(c3);
}

/* Waits until n of this database's sessions wait for a lock of a kind like event whose
 * statement is like query (LIKE patterns); checks it. */
static void await_waiting(int n, const char *event, const char *query)
{
    char *q = cm_xasprintf("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                           " current_database() AND wait_event_type = 'Lock' AND wait_event"
                           " LIKE '%s' AND query LIKE '%s'",
                           event, query);

    CHECK_WAIT(th_stack_count(&st, q) == n, 10000);
    free(q);
}

/* Runs sql on c, which must succeed. */
static void hold(PGconn *c, const char *sql)
{
    char err[256], *v = th_db_value(c, sql, err, sizeof(err));

    CHECK_MSG(v != NULL, "%s: %s", sql, err);
    free(v);
}

/*
 * A contact whose transaction began before a replica's claim and committed while the claim
 * waited for the bucket is fetched like any other. The claim's statement took its snapshot
 * before the contact was there, the function inside it claims the contact (a snapshot of its
 * own, once the bucket is free): whatever the router reads of a claimed contact must come from
 * the function, or the contact sits out its lease (minutes) unasked. A trigger holding the
 * contact's transaction and the bucket's row held from here make that interleaving certain.
 */
static void test_claimed_while_created(void)
{
    PGconn *lock = th_db_connect(&st.db, NULL), *pace = th_db_connect(&st.db, NULL);
    char *conv;

    free(th_stack_sql(&st, "CREATE FUNCTION router.test_hold_contact() RETURNS trigger"
                           " LANGUAGE plpgsql AS $$BEGIN PERFORM pg_advisory_xact_lock(4711);"
                           " RETURN NULL; END$$"));
    free(th_stack_sql(&st, "CREATE TRIGGER test_hold_contact AFTER INSERT ON router.contacts"
                           " FOR EACH ROW EXECUTE FUNCTION router.test_hold_contact()"));
    /* The contact's transaction begins, and waits once its row is in... */
    hold(lock, "SELECT pg_advisory_lock(4711)");
    message(false, "late-claim");
    await_waiting(1, "advisory", "%");
    /* ...while both replicas' next claims begin and wait for the bucket... */
    hold(pace, "BEGIN; SELECT 1 FROM router.profile_pace FOR UPDATE");
    await_waiting(2, "%", "%profile_claim(%"); /* a row, or its lock */
    /* ...then the contact commits, and only then the claims go on. */
    hold(lock, "SELECT pg_advisory_unlock(4711)");
    conv = conv_of("late-claim");
    hold(pace, "COMMIT; SELECT 1");
    await_name(conv, "Ada Lovelace-late-claim");
    free(th_stack_sql(&st, "DROP TRIGGER test_hold_contact ON router.contacts;"
                           " DROP FUNCTION router.test_hold_contact(); SELECT 1"));
    PQfinish(lock);
    PQfinish(pace);
    free(conv);
}

/* Refused (no consent, an unknown user): the name stays null, nothing is kept but the refusal,
 * and Meta is not asked again before PROFILE_REFUSED_RETRY (checked at the end). */
static void test_consent_refused(void)
{
    const char *who[] = {"noconsent-fb", "noconsent-ig", "unknown-fb"};
    const bool ig[] = {false, true, false};

    for (int i = 0; i < 3; i++)
        message(ig[i], who[i]);
    for (int i = 0; i < 3; i++) {
        char *conv = conv_of(who[i]), *row = NULL, *name;
        CHECK_WAIT((free(row), row = profile_row(conv)) != NULL &&
                       strcmp(row, "refused|false") == 0,
                   15000);
        CHECK_MSG(row != NULL && strcmp(row, "refused|false") == 0, "%s: %s", who[i],
                  row ? row : "no row");
        name = name_of(conv);
        CHECK_MSG(name == NULL, "%s has a name: %s", who[i], name);
        CHECK_INT(fakemeta_profile_reads(st.meta, who[i], NULL, 0), 1);
        free(name);
        free(row);
        free(conv);
    }
}

/* Throttled twice (613): asked again after PROFILE_BACKOFF, then twice as long, then fetched. */
static void test_throttled_then_success(void)
{
    long long at[8];
    char *conv, *row;

    message(false, "throttled-1");
    conv = conv_of("throttled-1");
    await_name(conv, "Ada Lovelace-throttled-1");
    CHECK_INT(fakemeta_profile_reads(st.meta, "throttled-1", at, 8), 3);
    /* 1 s, then 2 s (the claim runs once a second: up to a second later, never earlier). */
    CHECK_MSG(at[1] - at[0] >= 1000 - 100, "asked again after %lld ms", at[1] - at[0]);
    CHECK_MSG(at[2] - at[1] >= 2000 - 100, "then after %lld ms", at[2] - at[1]);
    row = profile_row(conv);
    CHECK_STR(row, "fetched|true");
    free(row);
    free(conv);
}

/*
 * Twelve new contacts at once: every read of both replicas together stays within the bucket
 * (BURST at once, RATE_PER_MIN a minute), however they are shared between the replicas.
 */
static void test_rate_bounded(void)
{
    long long at[512];
    char psid[32];
    int n, worst = 0;

    for (int i = 0; i < 12; i++) {
        snprintf(psid, sizeof(psid), "rate-%d", i);
        message(i % 2 == 1, psid);
    }
    for (int i = 0; i < 12; i++) {
        snprintf(psid, sizeof(psid), "rate-%d", i);
        CHECK_WAIT(fakemeta_profile_reads(st.meta, psid, NULL, 0) >= 1, 20000);
    }
    n = fakemeta_profile_reads(st.meta, NULL, at, 512);
    CHECK(n >= 12 && n <= 512);
    /* Reads in arrival order per host; merged, sorted. */
    for (int i = 1; i < n && n <= 512; i++) {
        for (int j = i; j > 0 && at[j - 1] > at[j]; j--) {
            long long t = at[j];
            at[j] = at[j - 1];
            at[j - 1] = t;
        }
    }
    /* In any span, at most BURST + rate x span reads (one more for a read in flight). */
    for (int i = 0; i < n && n <= 512; i++) {
        for (int j = i; j < n; j++) {
            double allowed =
                BURST + 1 + (double)RATE_PER_MIN / 60.0 * (double)(at[j] - at[i]) / 1000.0;
            if (j - i + 1 > allowed && j - i + 1 - (int)allowed > worst)
                worst = j - i + 1 - (int)allowed;
        }
    }
    CHECK_MSG(worst == 0, "%d reads more than the rate allows in some span", worst);
}

/* A fetched profile is read again after PROFILE_REFRESH, never sooner; a refused one is not. */
static void test_refresh(void)
{
    long long at[16];
    int n;

    CHECK_WAIT(fakemeta_profile_reads(st.meta, "cust-ada", NULL, 0) >= 2, 20000);
    n = fakemeta_profile_reads(st.meta, "cust-ada", at, 16);
    for (int i = 1; i < n && i < 16; i++)
        CHECK_MSG(at[i] - at[i - 1] >= REFRESH_MS - 100, "read again after %lld ms",
                  at[i] - at[i - 1]);
    CHECK_INT(fakemeta_profile_reads(st.meta, "noconsent-fb", NULL, 0), 1);
    CHECK_INT(fakemeta_profile_reads(st.meta, "noconsent-ig", NULL, 0), 1);
}

/* Neither names nor pictures' URLs in plaintext in the router's schema, sealed columns too. */
static void test_no_plaintext(void)
{
    const char *needles[] = {"Lovelace", "Grace Hopper", "grace.", "lookaside", "cdninstagram"};
    const char *tables[] = {"messages", "contacts",    "conversations", "workspaces",
                            "members",  "routes",      "index_keys",    "data_keys",
                            "outbox",   "profile_pace"};
    char q[4096];

    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++) {
        size_t len = (size_t)snprintf(
            q, sizeof(q),
            "SELECT count(*) FROM (SELECT encode(profile_sealed, 'escape') r FROM router.contacts");
        for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
            len += (size_t)snprintf(q + len, sizeof(q) - len,
                                    " UNION ALL SELECT row_to_json(t)::text FROM router.%s t",
                                    tables[t]);
        snprintf(q + len, sizeof(q) - len, ") s WHERE r LIKE '%%%s%%'", needles[i]);
        char *hits = th_stack_sql(&st, q);
        CHECK_MSG(hits != NULL && strcmp(hits, "0") == 0, "\"%s\" found in the router schema",
                  needles[i]);
        free(hits);
    }
    /* The sealed profiles are there, so the scan had something to miss. */
    {
        char *n = th_stack_sql(&st, "SELECT count(*) > 3 FROM router.contacts"
                                    " WHERE profile_sealed IS NOT NULL");
        CHECK_STR(n, "t");
        free(n);
    }
}

/* Meta's data-deletion path: the Instagram integration's purge removes its contacts' profiles
 * with them (their key shredded first); the Messenger contacts keep theirs. */
static void test_purge(void)
{
    char body[256], q[256], *n;
    cJSON *r;

    snprintf(
        body, sizeof(body),
        "{\"actor\":\"retention-reaper\",\"scope\":\"integration\",\"integration_ids\":[\"%s\"]}",
        ig_integration);
    r = th_stack_request_as(&st, "retention-reaper", "router.purge", body);
    CHECK(th_json_str(r, "error", "code") == NULL);
    cJSON_Delete(r);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.contacts WHERE integration_id = '%s'",
             ig_integration);
    n = th_stack_sql(&st, q);
    CHECK_STR(n, "0");
    free(n);
    snprintf(q, sizeof(q), "SELECT count(*) FROM router.data_keys WHERE key_id LIKE '%%:int:%s'",
             ig_integration);
    n = th_stack_sql(&st, q);
    CHECK_STR(n, "0");
    free(n);
    {
        char *conv = conv_of("cust-ada");
        await_name(conv, "Ada Lovelace-cust-ada");
        free(conv);
    }
}

/* Nothing of a profile, nor a contact's id (in Meta's paths and error messages), in the
 * routers' logs. */
static void test_logs_clean(void)
{
    struct th_proc *procs[] = {&router1, &router2};
    const char *needles[] = {"Lovelace", "Grace Hopper", "lookaside", "cdninstagram", "noconsent-",
                             "unknown-fb", "cust-ada",
                             /* httpc's line on a throttled read shows our contact id instead */
                             "throttled-1", NULL};

    bool throttle_logged = false;

    for (size_t p = 0; p < sizeof(procs) / sizeof(procs[0]); p++) {
        char *log = th_proc_log_lacks(procs[p], needles);
        throttle_logged = throttle_logged || strstr(log, "/{contact ct_") != NULL;
        free(log);
    }
    /* The throttled reads were logged, so their ids' absence above means something. */
    CHECK(throttle_logged);
}

int main(void)
{
    th_init("router_profile");
    th_stack_init(&st);
    now_ms_ = th_now_ms();
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    router1_port = th_stack_start(&st, &router1, "conversation-router", router_env);
    router2_port = th_stack_start(&st, &router2, "conversation-router", router_env);

    RUN(test_setup);
    RUN(test_name_after_first_message);
    RUN(test_claimed_while_created);
    RUN(test_consent_refused);
    RUN(test_throttled_then_success);
    RUN(test_rate_bounded);
    RUN(test_refresh);
    RUN(test_no_plaintext);
    RUN(test_purge);
    th_stack_stop(&st);
    RUN(test_logs_clean);
    return check_summary();
}
