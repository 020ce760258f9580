/*
 * test_ingest - webhook-ingest end to end: the real daemon, a real nats-server with
 * JetStream, a real PostgreSQL. Meta's handshake, signed notifications stored once, every
 * refusal path storing nothing, NATS going away and coming back, and SIGTERM under load
 * losing no acknowledged event. The daemon reads its app secret and database URL from
 * files (NAME_FILE), and serves /metrics only on its internal address.
 */
#include <curl/curl.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "harness.h"

#define SECRET      "test-app-secret"
#define OLD_SECRET  "old-app-secret"
#define VERIFY      "verify-me-please"
#define WEBHOOK     "/api/v1/webhooks/meta"
#define FIXTURE_DIR DOMS_SOURCE_DIR "/tests/fixtures/meta/"

static struct th_nats nats;
static struct th_db db;
static struct th_proc ingest;
static char base[64];     /* INGEST_LISTEN: Meta's side */
static char internal[64]; /* WEBHOOK_INGEST_HTTP_LISTEN */
static int port;
static natsConnection *nc;
static jsCtx *js;

/* Writes text into <tmpdir>/name and returns the path (free it). */
static char *write_tmp(const char *name, const char *text)
{
    char *path = cm_xasprintf("%s/%s", th_tmpdir(), name);
    FILE *f = fopen(path, "w");

    if (f == NULL || fputs(text, f) < 0) {
        perror(path);
        exit(1);
    }
    fclose(f);
    return path;
}

static void start_ingest(void)
{
    char *dburl = th_db_url(&db, "doms_ingest");
    char *env[16], ready[128], *text, *db_file, *secret_file;
    int n = 0;

    /* The secrets as an orchestrator mounts them: one with the newline echo leaves, one with
     * an editor's CRLF. Every signed POST below then proves the file's value was used. */
    secret_file = write_tmp("app-secret", SECRET "\n");
    text = cm_xasprintf("%s\r\n", dburl);
    db_file = write_tmp("database-url", text);
    free(text);
    env[n++] = cm_xasprintf("DATABASE_URL_FILE=%s", db_file);
    env[n++] = cm_xasprintf("NATS_URL=%s", nats.url);
    env[n++] = cm_xasprintf("INGEST_LISTEN=127.0.0.1:%d", port);
    env[n++] = cm_xasprintf("WEBHOOK_INGEST_HTTP_LISTEN=%s", internal + strlen("http://"));
    env[n++] = cm_xasprintf("META_APP_SECRET_FILE=%s", secret_file);
    env[n++] = cm_xstrdup("META_APP_SECRET_PREVIOUS=" OLD_SECRET);
    env[n++] = cm_xstrdup("META_VERIFY_TOKEN=" VERIFY);
    env[n++] = cm_xstrdup("INGEST_MAX_BODY=64KiB");
    env[n++] = cm_xstrdup("LOG_LEVEL=debug");
    env[n] = NULL;
    th_proc_start(&ingest, "webhook-ingest", NULL, (const char *const *)env);
    snprintf(ready, sizeof(ready), "%s/readyz", base);
    CHECK_MSG(th_wait_http(ready, 200, 20000), "ingest never ready");
    /* env strings stay referenced by nothing once the child has exec'd */
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(dburl);
    free(db_file);
    free(secret_file);
}

static uint64_t stream_msgs(void)
{
    return th_stream_msgs(js, "META_EVENTS");
}

static uint64_t stream_last_seq(void)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    uint64_t n = 0;

    if (js_GetStreamInfo(&si, js, "META_EVENTS", NULL, &jerr) == NATS_OK) {
        n = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
    }
    return n;
}

/* POSTs body signed with secret (NULL: unsigned, "bad": a wrong signature). */
static long post(const char *body, size_t len, const char *secret, struct th_resp *r)
{
    char sig[80], header[120], url[128];
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};

    if (secret != NULL) {
        th_sign(strcmp(secret, "bad") == 0 ? "not-the-secret" : secret, body, len, sig);
        snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
        headers[1] = header;
    }
    snprintf(url, sizeof(url), "%s%s", base, WEBHOOK);
    return th_http(r, "POST", url, headers, body, len);
}

static long post_fixture(const char *name, const char *secret)
{
    char path[512];
    struct th_resp r;
    char *body;
    long code;

    snprintf(path, sizeof(path), FIXTURE_DIR "%s.json", name);
    body = th_read_file(path);
    code = post(body, strlen(body), secret, &r);
    th_resp_cleanup(&r);
    free(body);
    return code;
}

static void test_handshake(void)
{
    struct th_resp r;
    char url[256];

    snprintf(url, sizeof(url),
             "%s%s?hub.mode=subscribe&hub.verify_token=" VERIFY "&hub.challenge=1158201444", base,
             WEBHOOK);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 200);
    CHECK_STR(r.body.data, "1158201444");
    th_resp_cleanup(&r);

    snprintf(url, sizeof(url),
             "%s%s?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444", base,
             WEBHOOK);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 403);
    CHECK(strstr(r.body.data, "1158201444") == NULL);
    th_resp_cleanup(&r);

    snprintf(url, sizeof(url),
             "%s%s?hub.mode=unsubscribe&hub.verify_token=" VERIFY "&hub.challenge=1", base,
             WEBHOOK);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 403);
    th_resp_cleanup(&r);

    snprintf(url, sizeof(url), "%s%s", base, WEBHOOK);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 403);
    th_resp_cleanup(&r);
}

static void test_signed_post_stored(void)
{
    uint64_t before = stream_msgs(), seq;
    natsMsg *msg = NULL;
    jsErrCode jerr = 0;
    const char *id = NULL;

    CHECK_INT(post_fixture("messenger_text", SECRET), 200);
    CHECK_INT(stream_msgs(), before + 1);
    seq = stream_last_seq();
    CHECK(js_GetMsg(&msg, js, "META_EVENTS", seq, NULL, &jerr) == NATS_OK);
    if (msg != NULL) {
        char *data = cm_xstrndup(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
        CHECK_STR(natsMsg_GetSubject(msg), "meta.events.messenger.106123456789012.message");
        CHECK(natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK);
        CHECK_STR(id, "messenger:106123456789012:message:m_AbCdEf123");
        CHECK_CONTAINS(data, "\"platform\":\"messenger\"");
        CHECK_CONTAINS(data, "\"mid\":\"m_AbCdEf123\"");
        free(data);
        natsMsg_Destroy(msg);
    }
}

static void test_redelivery_once(void)
{
    uint64_t before = stream_msgs();

    /* Meta retries the same body: stored once. */
    CHECK_INT(post_fixture("messenger_text", SECRET), 200);
    CHECK_INT(post_fixture("messenger_text", SECRET), 200);
    CHECK_INT(stream_msgs(), before);
    /* An edit, an unsend and a reaction of one message are new events, each stored once. */
    CHECK_INT(post_fixture("instagram_text", SECRET), 200);
    CHECK_INT(post_fixture("instagram_edit", SECRET), 200);
    CHECK_INT(post_fixture("instagram_unsend", SECRET), 200);
    CHECK_INT(post_fixture("instagram_edit", SECRET), 200);
    CHECK_INT(post_fixture("messenger_reaction", SECRET), 200);
    CHECK_INT(post_fixture("messenger_unreaction", SECRET), 200);
    CHECK_INT(stream_msgs(), before + 5);
    /* A batch of 4 events over two accounts, and the dashboard's test form. */
    CHECK_INT(post_fixture("messenger_batch", SECRET), 200);
    CHECK_INT(post_fixture("instagram_changes_test", SECRET), 200);
    CHECK_INT(stream_msgs(), before + 10);
}

static void test_signatures(void)
{
    uint64_t before = stream_msgs();
    struct th_resp r;

    CHECK_INT(post_fixture("messenger_postback", "bad"), 401);
    CHECK_INT(post_fixture("messenger_postback", NULL), 401);
    CHECK_INT(stream_msgs(), before);
    /* A signature over other bytes than those sent. */
    {
        const char *body = "{\"object\":\"page\",\"entry\":[]}";
        char sig[80], header[120], url[128];
        const char *headers[2] = {header, NULL};
        th_sign(SECRET, "{}", 2, sig);
        snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
        snprintf(url, sizeof(url), "%s%s", base, WEBHOOK);
        CHECK_INT(th_http(&r, "POST", url, headers, body, strlen(body)), 401);
        CHECK_CONTAINS(r.body.data, "\"error\"");
        th_resp_cleanup(&r);
    }
    /* During a rotation the previous secret is still accepted. */
    CHECK_INT(post_fixture("messenger_postback", OLD_SECRET), 200);
    CHECK_INT(stream_msgs(), before + 1);
}

static void test_refusals(void)
{
    uint64_t before = stream_msgs();
    struct th_resp r;
    struct cm_buf big;

    CHECK_INT(post("this is not json", 16, SECRET, &r), 400);
    CHECK_CONTAINS(r.body.data, "\"error\":\"body is not valid JSON\"");
    th_resp_cleanup(&r);
    CHECK_INT(post("{\"hello\":\"world\"}", 17, SECRET, &r), 400);
    CHECK_CONTAINS(r.body.data, "\"error\"");
    th_resp_cleanup(&r);
    CHECK_INT(post("{\"object\":\"page\",\"entry\":[{\"id\":\"1", 33, SECRET, &r), 400);
    th_resp_cleanup(&r);
    CHECK_INT(
        post("{\"object\":\"user\",\"entry\":[{\"id\":\"1\",\"changes\":[]}]}", 51, SECRET, &r),
        200);
    th_resp_cleanup(&r);
    CHECK_INT(post("{\"object\":\"instagram\",\"entry\":[]}", 33, SECRET, &r), 200);
    th_resp_cleanup(&r);
    CHECK_INT(stream_msgs(), before);

    /* Over INGEST_MAX_BODY (64 KiB here): 413, even correctly signed. */
    cm_buf_init(&big);
    cm_buf_puts(&big, "{\"object\":\"page\",\"entry\":[],\"pad\":\"");
    for (int i = 0; i < 70 * 1024; i++)
        cm_buf_append(&big, "a", 1);
    cm_buf_puts(&big, "\"}");
    CHECK_INT(post(big.data, big.len, SECRET, &r), 413);
    th_resp_cleanup(&r);
    cm_buf_cleanup(&big);
    CHECK_INT(stream_msgs(), before);
}

/* Meta's address answers health checks but keeps /metrics to the internal one. */
static void test_two_listeners(void)
{
    const char *paths[] = {"/healthz", "/readyz"};
    struct th_resp r;
    char url[128];

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        snprintf(url, sizeof(url), "%s%s", base, paths[i]);
        CHECK_MSG(th_http(&r, "GET", url, NULL, NULL, 0) == 200, "public %s", paths[i]);
        th_resp_cleanup(&r);
        snprintf(url, sizeof(url), "%s%s", internal, paths[i]);
        CHECK_MSG(th_http(&r, "GET", url, NULL, NULL, 0) == 200, "internal %s", paths[i]);
        th_resp_cleanup(&r);
    }
    snprintf(url, sizeof(url), "%s/metrics", base);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 404);
    CHECK(strstr(r.body.data, "ingest_") == NULL);
    th_resp_cleanup(&r);
    snprintf(url, sizeof(url), "%s/metrics", internal);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 200);
    CHECK_CONTAINS(r.body.data, "ingest_events_stored_total ");
    th_resp_cleanup(&r);
    /* Meta's routes are not on the internal address. */
    snprintf(url, sizeof(url), "%s%s", internal, WEBHOOK);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 404);
    th_resp_cleanup(&r);
}

static void test_metrics_and_logs(void)
{
    struct th_resp r;
    char url[128];
    char *log;

    snprintf(url, sizeof(url), "%s/metrics", internal);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 200);
    CHECK_CONTAINS(r.body.data, "ingest_signature_failures_total 3\n");
    CHECK_CONTAINS(r.body.data, "ingest_not_stored_total{reason=\"other_object\"} 1\n");
    CHECK_CONTAINS(r.body.data, "ingest_not_stored_total{reason=\"empty_entry\"} 1\n");
    CHECK_CONTAINS(r.body.data, "ingest_request_seconds_bucket{le=\"+Inf\"}");
    CHECK_CONTAINS(r.body.data, "# TYPE ingest_request_seconds histogram");
    th_resp_cleanup(&r);

    /* Bodies are Platform Data: never in the log, even at debug level. */
    log = th_proc_output(&ingest);
    CHECK(strstr(log, "blue jacket") == NULL);
    CHECK(strstr(log, "hello from instagram") == NULL);
    CHECK(strstr(log, SECRET) == NULL);
    CHECK(strstr(log, VERIFY) == NULL);
    free(log);
}

static void test_nats_outage(void)
{
    char ready[128];
    uint64_t before;

    snprintf(ready, sizeof(ready), "%s/readyz", base);
    th_nats_stop(&nats);
    CHECK(th_wait_http(ready, 503, 10000));
    /* Nothing can be stored, so nothing is acknowledged: Meta will retry. */
    CHECK_INT(post_fixture("messenger_quick_reply", SECRET), 503);
    th_nats_restart(&nats);
    CHECK_MSG(th_wait_http(ready, 200, 20000), "ingest did not recover after NATS returned");
    before = stream_msgs();
    CHECK_INT(post_fixture("messenger_quick_reply", SECRET), 200);
    CHECK_INT(stream_msgs(), before + 1);
}

/* --- the acknowledgement comes first ------------------------------------------------- */

/* services/webhook-ingest/ingest.h INGEST_PUBLISH_WAIT_MS: how long a POST waits for its
 * JetStream acknowledgements before it is answered 503. */
#define ACK_WAIT_MS 5000

/* One series of ingest's /metrics ("name " or "name{labels} "), or -1. */
static double ingest_metric(const char *series)
{
    struct th_resp r;
    char url[128], line[160];
    const char *p;
    double v = -1;

    snprintf(line, sizeof(line), "\n%s", series);
    snprintf(url, sizeof(url), "%s/metrics", internal);
    if (th_http(&r, "GET", url, NULL, NULL, 0) == 200 && (p = strstr(r.body.data, line)) != NULL)
        v = strtod(p + strlen(line), NULL);
    th_resp_cleanup(&r);
    return v;
}

/* Messages of META_EVENTS from sequence from on whose data holds needle; -1 when the stream
 * cannot be read. */
static long stream_holding(uint64_t from, const char *needle)
{
    uint64_t last = stream_last_seq();
    long n = 0;

    if (last == 0)
        return -1;
    for (uint64_t seq = from; seq <= last; seq++) {
        natsMsg *msg = NULL;
        jsErrCode jerr = 0;
        natsStatus st = js_GetMsg(&msg, js, "META_EVENTS", seq, NULL, &jerr);
        if (st != NATS_OK)
            continue; /* a sequence deleted or purged */
        n += memmem(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), needle,
                    strlen(needle)) != NULL;
        natsMsg_Destroy(msg);
    }
    return n;
}

/*
 * nats-server frozen (SIGSTOP): the connection stays up and the publish leaves ingest, but no
 * acknowledgement comes. Code that answered after publishing, before the acknowledgement,
 * would answer 200 here. Ingest must answer 503 when its deadline passes, count nothing as
 * stored, and when the server thaws and stores the event late, that acknowledgement must not
 * count either; Meta's retry of the same event then gets 200 and the event is held once.
 */
static void test_ack_after_deadline(void)
{
    const char *body = "{\"object\":\"page\",\"entry\":[{\"id\":\"777\",\"time\":1,"
                       "\"messaging\":[{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":"
                       "\"777\"},\"timestamp\":1,\"message\":{\"mid\":\"m_frozen_ack\","
                       "\"text\":\"late\"}}]}]}";
    uint64_t from = stream_last_seq() + 1, before = stream_msgs();
    double stored0 = ingest_metric("ingest_events_stored_total ");
    double dup0 = ingest_metric("ingest_events_duplicate_total ");
    double unavailable0 = ingest_metric("ingest_unavailable_total ");
    long long t0, took;
    struct th_resp r;
    bool late;
    long code;

    CHECK(stored0 >= 0 && dup0 >= 0 && unavailable0 >= 0);
    CHECK(th_nats_freeze(&nats));
    t0 = check_now_ms();
    code = post(body, strlen(body), SECRET, &r); /* curl gives up after 30 s */
    took = check_now_ms() - t0;
    th_resp_cleanup(&r);
    /* Still frozen: ingest's own account of what it stored (its metrics need no NATS). */
    CHECK(ingest_metric("ingest_events_stored_total ") == stored0);
    CHECK(ingest_metric("ingest_unavailable_total ") == unavailable0 + 1);
    th_nats_thaw(&nats);
    CHECK_INT(code, 503);
    /* Answered by the deadline of the acknowledgement (swept every 100 ms), not before it
     * (nothing else here tells ingest that NATS is gone), nor long after. */
    CHECK_MSG(took >= ACK_WAIT_MS - 500 && took <= ACK_WAIT_MS + 3000,
              "503 after %lld ms; the acknowledgement deadline is %d ms", took, ACK_WAIT_MS);

    /* Thawed, the server reads the publish it was sent and stores it: late, unacknowledged
     * as far as Meta knows. */
    late = WAIT_UNTIL(stream_msgs() == before + 1, 10000);
    printf("the frozen publish was %s after the thaw\n", late ? "stored" : "not stored");
    /* Meta retries: 200, and the event is held exactly once (the retry a duplicate of the late
     * store, or the first store). Its acknowledgement comes after the late one on the same
     * connection, so by now ingest has seen that one too. */
    CHECK_INT(post(body, strlen(body), SECRET, &r), 200);
    th_resp_cleanup(&r);
    CHECK_INT(stream_holding(from, "m_frozen_ack"), 1);
    CHECK_INT(stream_msgs(), before + 1);
    /* The late acknowledgement counted as nothing: one event answered 200, once. */
    CHECK(ingest_metric("ingest_events_stored_total ") == stored0 + (late ? 0 : 1));
    CHECK(ingest_metric("ingest_events_duplicate_total ") == dup0 + (late ? 1 : 0));
    CHECK(ingest_metric("ingest_unavailable_total ") == unavailable0 + 1);
}

/* --- SIGTERM under load -------------------------------------------------------------- */

#define LOAD_REQUESTS 400
#define LOAD_PARALLEL 16

struct load_req {
    char body[512];
    char header[120];
    struct curl_slist *headers;
    long code;
};

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static void test_sigterm_under_load(void)
{
    static struct load_req reqs[LOAD_REQUESTS];
    CURLM *multi = curl_multi_init();
    int next = 0, running = 0, done = 0, ok = 0, exit_code;
    bool signalled = false;
    char url[128];
    uint64_t last;

    snprintf(url, sizeof(url), "%s%s", base, WEBHOOK);
    while (done < LOAD_REQUESTS) {
        CURLMsg *m;
        int left;

        while (running < LOAD_PARALLEL && next < LOAD_REQUESTS) {
            struct load_req *q = &reqs[next];
            CURL *e = curl_easy_init();
            char sig[80];
            snprintf(q->body, sizeof(q->body),
                     "{\"object\":\"page\",\"entry\":[{\"id\":\"555\",\"time\":1,\"messaging\":"
                     "[{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"555\"},\"timestamp\":1,"
                     "\"message\":{\"mid\":\"load-%d-\",\"text\":\"load\"}}]}]}",
                     next);
            th_sign(SECRET, q->body, strlen(q->body), sig);
            snprintf(q->header, sizeof(q->header), "X-Hub-Signature-256: %s", sig);
            q->headers = curl_slist_append(NULL, q->header);
            curl_easy_setopt(e, CURLOPT_URL, url);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->headers);
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
            curl_easy_setopt(e, CURLOPT_PRIVATE, q);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
            curl_multi_add_handle(multi, e);
            running++;
            next++;
        }
        curl_multi_perform(multi, &left);
        curl_multi_poll(multi, NULL, 0, 100, NULL);
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            struct load_req *q;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            q->code = 0;
            if (m->data.result == CURLE_OK)
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &q->code);
            ok += q->code == 200;
            curl_multi_remove_handle(multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
            curl_slist_free_all(q->headers);
            running--;
            done++;
        }
        if (!signalled && done >= LOAD_REQUESTS / 4) {
            th_proc_signal(&ingest, SIGTERM);
            signalled = true;
        }
    }
    curl_multi_cleanup(multi);
    exit_code = th_proc_wait(&ingest, 30000);
    CHECK_INT(exit_code, 0);
    CHECK_MSG(ok >= LOAD_REQUESTS / 4, "only %d requests answered 200", ok);

    /* Every request answered 200 has its event in the stream. */
    last = stream_last_seq();
    {
        char *stored = cm_xcalloc(LOAD_REQUESTS, 1);
        for (uint64_t seq = 1; seq <= last; seq++) {
            natsMsg *msg = NULL;
            jsErrCode jerr = 0;
            const char *p;
            if (js_GetMsg(&msg, js, "META_EVENTS", seq, NULL, &jerr) != NATS_OK)
                continue;
            p = strstr(natsMsg_GetData(msg), "\"mid\":\"load-");
            if (p != NULL) {
                int i = atoi(p + strlen("\"mid\":\"load-"));
                if (i >= 0 && i < LOAD_REQUESTS)
                    stored[i] = 1;
            }
            natsMsg_Destroy(msg);
        }
        for (int i = 0; i < LOAD_REQUESTS; i++) {
            if (reqs[i].code == 200)
                CHECK_MSG(stored[i], "request %d was answered 200 but is not stored", i);
        }
        free(stored);
    }
    printf("load: %d of %d answered 200 before and during shutdown\n", ok, LOAD_REQUESTS);
}

/* --- configuration refusals ---------------------------------------------------------- */

static void expect_refusal(const char *const *env, const char *needle)
{
    struct th_proc p;
    char *out;

    th_proc_start(&p, "webhook-ingest", NULL, env);
    CHECK_INT(th_proc_wait(&p, 10000), 78);
    out = th_proc_output(&p);
    CHECK_CONTAINS(out, needle);
    CHECK_MSG(strchr(out, '\n') == out + strlen(out) - 1, "more than one line: %s", out);
    free(out);
}

static void test_bad_settings(void)
{
    const char *missing[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", "META_VERIFY_TOKEN=v",
                             NULL};
    const char *bad_size[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", "META_APP_SECRET=s",
                              "META_VERIFY_TOKEN=v", "INGEST_MAX_BODY=huge", NULL};
    const char *bad_listen[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", "META_APP_SECRET=s",
                                "META_VERIFY_TOKEN=v", "INGEST_LISTEN=nowhere", NULL};
    const char *bad_internal[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", "META_APP_SECRET=s",
                                  "META_VERIFY_TOKEN=v", "WEBHOOK_INGEST_HTTP_LISTEN=nowhere",
                                  NULL};
    const char *print[] = {"DATABASE_URL=postgresql://u:dbpass@127.0.0.1:1/x",
                           "META_APP_SECRET=very-secret-value", "META_VERIFY_TOKEN=v", NULL};
    const char *args[] = {"--print-config", NULL};
    struct th_proc p;
    char *out;

    expect_refusal(missing, "webhook-ingest: META_APP_SECRET is required");
    expect_refusal(bad_size, "webhook-ingest: INGEST_MAX_BODY: \"huge\" is not a size");
    expect_refusal(bad_listen, "webhook-ingest: INGEST_LISTEN: \"nowhere\" is not host:port");
    expect_refusal(bad_internal,
                   "webhook-ingest: WEBHOOK_INGEST_HTTP_LISTEN: \"nowhere\" is not host:port");

    th_proc_start(&p, "webhook-ingest", args, print);
    CHECK_INT(th_proc_wait(&p, 10000), 0);
    out = th_proc_output(&p);
    CHECK_CONTAINS(out, "META_APP_SECRET=********");
    CHECK_CONTAINS(out, "DATABASE_URL=postgresql://u:****@127.0.0.1:1/x");
    CHECK_CONTAINS(out, "INGEST_MAX_BODY=4194304");
    CHECK(strstr(out, "very-secret-value") == NULL);
    CHECK(strstr(out, "dbpass") == NULL);
    free(out);
}

/* NAME_FILE refusals: one line each, naming the variables, never a file's content. */
static void test_bad_setting_files(void)
{
    char *secret_file = write_tmp("refused-secret", "file-secret-value\n");
    char *empty_file = write_tmp("refused-empty", "");
    char *missing = cm_xasprintf("%s/no-such-secret", th_tmpdir());
    char *secret_env = cm_xasprintf("META_APP_SECRET_FILE=%s", secret_file);
    char *empty_env = cm_xasprintf("META_APP_SECRET_FILE=%s", empty_file);
    char *missing_env = cm_xasprintf("DATABASE_URL_FILE=%s", missing);
    char *needle = cm_xasprintf("webhook-ingest: DATABASE_URL_FILE: cannot read %s: No such file "
                                "or directory",
                                missing);
    const char *both[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", "META_APP_SECRET=s",
                          secret_env, "META_VERIFY_TOKEN=v", NULL};
    const char *unreadable[] = {missing_env, "META_APP_SECRET=s", "META_VERIFY_TOKEN=v", NULL};
    const char *empty[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", empty_env,
                           "META_VERIFY_TOKEN=v", NULL};
    const char *print[] = {"DATABASE_URL=postgresql://x@127.0.0.1:1/x", secret_env,
                           "META_VERIFY_TOKEN=v", NULL};
    const char *args[] = {"--print-config", NULL};
    struct th_proc p;
    char *out;

    expect_refusal(both, "webhook-ingest: META_APP_SECRET and META_APP_SECRET_FILE are both set");
    expect_refusal(unreadable, needle);
    expect_refusal(empty, "webhook-ingest: META_APP_SECRET is required");

    th_proc_start(&p, "webhook-ingest", args, print);
    CHECK_INT(th_proc_wait(&p, 10000), 0);
    out = th_proc_output(&p);
    CHECK_CONTAINS(out, "META_APP_SECRET=********");
    CHECK(strstr(out, "file-secret-value") == NULL);
    free(out);

    free(secret_file);
    free(empty_file);
    free(missing);
    free(secret_env);
    free(empty_env);
    free(missing_env);
    free(needle);
}

/* Both addresses bound by one process: a second bind of the same one is refused, 78. */
static void test_same_address_refused(void)
{
    char *dburl = th_db_url(&db, "doms_ingest");
    int p = th_free_port();
    char *env[8], *out, *needle = cm_xasprintf("cannot listen on 127.0.0.1:%d", p);
    struct th_proc proc;
    int n = 0;

    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[n++] = cm_xasprintf("NATS_URL=%s", nats.url);
    env[n++] = cm_xasprintf("INGEST_LISTEN=127.0.0.1:%d", p);
    env[n++] = cm_xasprintf("WEBHOOK_INGEST_HTTP_LISTEN=127.0.0.1:%d", p);
    env[n++] = cm_xstrdup("META_APP_SECRET=s");
    env[n++] = cm_xstrdup("META_VERIFY_TOKEN=v");
    env[n] = NULL;
    th_proc_start(&proc, "webhook-ingest", NULL, (const char *const *)env);
    CHECK_INT(th_proc_wait(&proc, 20000), 78);
    out = th_proc_output(&proc);
    CHECK_CONTAINS(out, needle);
    free(out);
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(needle);
    free(dburl);
}

/* --- META_EVENTS tampered with before the start -------------------------------------- */

/* Creates META_EVENTS as ingest would, then with deny_purge and max_age changed as given. */
static void create_events_stream(bool deny_purge, int64_t max_age_s)
{
    static const char *subjects[] = {"meta.events.>"};
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;

    js_DeleteStream(js, "META_EVENTS", NULL, &jerr);
    jsStreamConfig_Init(&sc);
    sc.Name = "META_EVENTS";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 300LL * 1000000000LL;
    sc.MaxAge = max_age_s * 1000000000LL;
    sc.DenyPurge = deny_purge;
    CHECK(js_AddStream(&si, js, &sc, NULL, &jerr) == NATS_OK);
    jsStreamInfo_Destroy(si);
}

/* Starts a webhook-ingest that must refuse the stream: exits non-zero, naming the field. */
static void expect_stream_refused(const char *field)
{
    char *dburl = th_db_url(&db, "doms_ingest");
    char *env[8], *out;
    struct th_proc proc;
    int n = 0, code;

    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    /* (A password in NATS_URL is kept out of the log: unit.url; this server maps
     * certificates and refuses a CONNECT that names a user.) */
    env[n++] = cm_xasprintf("NATS_URL=%s", nats.url);
    env[n++] = cm_xasprintf("INGEST_LISTEN=127.0.0.1:%d", th_free_port());
    env[n++] = cm_xasprintf("WEBHOOK_INGEST_HTTP_LISTEN=127.0.0.1:%d", th_free_port());
    env[n++] = cm_xstrdup("META_APP_SECRET=s");
    env[n++] = cm_xstrdup("META_VERIFY_TOKEN=v");
    env[n] = NULL;
    th_proc_start(&proc, "webhook-ingest", NULL, (const char *const *)env);
    code = th_proc_wait(&proc, 20000);
    CHECK_MSG(code > 0, "ingest on a tampered stream exited %d", code);
    out = th_proc_output(&proc);
    CHECK_CONTAINS(out, "stream META_EVENTS has ");
    CHECK_CONTAINS(out, field);
    CHECK_CONTAINS(out, "refusing to start");
    free(out);
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(dburl);
}

/*
 * META_EVENTS changed through $JS.API.STREAM.UPDATE before ingest starts: deny_purge set
 * (which NATS never lets anyone unset, so purges of deleted accounts would fail for ever),
 * or max_age 0 (raw events kept for ever). ingest refuses to start, naming the field; once
 * the stream is as intended again, it starts (start_ingest after this test).
 */
static void test_tampered_stream_refused(void)
{
    create_events_stream(true, 7 * 86400);
    expect_stream_refused("deny_purge true on the server, false intended");
    create_events_stream(false, 0);
    expect_stream_refused("max_age 0s on the server, 604800s intended");
    {
        jsErrCode jerr = 0;
        CHECK(js_DeleteStream(js, "META_EVENTS", NULL, &jerr) == NATS_OK);
    }
}

/* domsctl reads NATS_URL through the daemons' loader, so NATS_URL_FILE works there too. */
static void test_domsctl_nats_url_file(void)
{
    char *text = cm_xasprintf("%s\n", nats.url);
    char *file = write_tmp("nats-url", text);
    char *env_file = cm_xasprintf("NATS_URL_FILE=%s", file);
    const char *env[] = {env_file, NULL};
    const char *both_env[] = {env_file, "NATS_URL=nats://127.0.0.1:1", NULL};
    const char *args[] = {"workspace", "create", "--name", "x", NULL};
    char *out;

    /* No router runs here: "no conversation-router is answering" means NATS was reached. */
    CHECK_INT(th_run("domsctl", args, env, &out), 1);
    CHECK_CONTAINS(out, "no conversation-router is answering");
    free(out);
    CHECK_INT(th_run("domsctl", args, both_env, &out), 1);
    CHECK_CONTAINS(out, "domsctl: NATS_URL and NATS_URL_FILE are both set");
    free(out);
    free(text);
    free(file);
    free(env_file);
}

int main(void)
{
    th_init("ingest");
    th_db_create(&db);
    th_nats_start(&nats);
    port = th_free_port();
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    snprintf(internal, sizeof(internal), "http://127.0.0.1:%d", th_free_port());
    if (th_nats_connect(&nc, nats.url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        fprintf(stderr, "cannot connect to the test nats-server\n");
        return 1;
    }
    RUN(test_tampered_stream_refused);
    start_ingest();

    RUN(test_bad_settings);
    RUN(test_bad_setting_files);
    RUN(test_same_address_refused);
    RUN(test_domsctl_nats_url_file);
    RUN(test_two_listeners);
    RUN(test_handshake);
    RUN(test_signed_post_stored);
    RUN(test_redelivery_once);
    RUN(test_signatures);
    RUN(test_refusals);
    RUN(test_metrics_and_logs);
    RUN(test_nats_outage);
    RUN(test_ack_after_deadline);
    RUN(test_sigterm_under_load);

    th_proc_stop(&ingest); /* reaped already: test_sigterm_under_load checked its exit */
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    th_nats_stop(&nats);
    return check_summary();
}
