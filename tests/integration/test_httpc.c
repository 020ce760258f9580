/*
 * test_httpc - the outbound HTTP client against fakehttp: requests arrive intact, the retry
 * contract (5xx, 429 and Retry-After, Meta throttling codes, attempts, deadline), transport
 * failures, hostile answers, and no secret in the log; multipart bodies in
 * test_httpc_parts.c. (The pure helpers: unit/httpc_helpers.)
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/httpc.h"
#include "common/log.h"
#include "fakehttp.h"
#include "harness.h"
#include "httpc_suite.h"

struct fakehttp *srv;

static long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/*
 * The script, by path. req->seq counts requests since the test's fakehttp_clear(), so
 * "first answer X, then Y" is seq == 0.
 */
static void handler(const struct fakehttp_request *req, struct fakehttp_response *resp, void *arg)
{
    (void)arg;
    if (strcmp(req->path, "/echo") == 0) {
        fakehttp_set_header(resp, "X-Seen-Method", req->method);
        fakehttp_json(resp, 200, "{\"ok\":true,\"id\":\"m_1\"}");
    } else if (strcmp(req->path, "/500then200") == 0) {
        if (req->seq == 0)
            fakehttp_json(resp, 500, "{\"error\":\"boom\"}");
        else
            fakehttp_json(resp, 200, "{\"ok\":true}");
    } else if (strcmp(req->path, "/always500") == 0) {
        fakehttp_json(resp, 500, "{\"error\":\"boom\"}");
    } else if (strcmp(req->path, "/429") == 0) {
        char *after = fakehttp_query_param(req, "after");
        if (req->seq == 0) {
            fakehttp_set_header(resp, "Retry-After", after != NULL ? after : "1");
            fakehttp_json(resp, 429, "{\"error\":\"slow down\"}");
        } else {
            fakehttp_json(resp, 200, "{\"ok\":true}");
        }
        free(after);
    } else if (strcmp(req->path, "/429date") == 0) {
        if (req->seq == 0) {
            char date[64];
            time_t when = time(NULL) + 2;
            struct tm tm;
            gmtime_r(&when, &tm);
            strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
            fakehttp_set_header(resp, "Retry-After", date);
            fakehttp_json(resp, 429, "{}");
        } else {
            fakehttp_json(resp, 200, "{\"ok\":true}");
        }
    } else if (starts_with(req->path, "/throttle/")) {
        /* /throttle/<code>/<http status>: Meta throttling once, then success. */
        int code = atoi(req->path + 10);
        const char *st = strchr(req->path + 10, '/');
        if (req->seq == 0)
            fakehttp_meta_error(resp, st != NULL ? atoi(st + 1) : 400, code, 0,
                                "(#4) Application request limit reached");
        else
            fakehttp_json(resp, 200, "{\"recipient_id\":\"1\",\"message_id\":\"m_2\"}");
    } else if (strcmp(req->path, "/meta/190") == 0) {
        fakehttp_meta_error(resp, 400, 190, 460,
                            "Error validating access token: The session has been invalidated");
    } else if (strcmp(req->path, "/meta/100") == 0) {
        fakehttp_meta_error(resp, 400, 100, 2018001, "(#100) No matching user found");
    } else if (strcmp(req->path, "/slow") == 0) {
        resp->delay_ms = 3000;
        fakehttp_json(resp, 200, "{\"late\":true}");
    } else if (strcmp(req->path, "/close") == 0) {
        resp->close = true;
    } else if (strcmp(req->path, "/html502") == 0) {
        const char *html = "<html><head><title>502 Bad Gateway</title></head>"
                           "<body><center><h1>502 Bad Gateway</h1></center></body></html>";
        fakehttp_set_header(resp, "Content-Type", "text/html");
        fakehttp_reply(resp, 502, html, strlen(html));
    } else if (strcmp(req->path, "/big") == 0) {
        char *n = fakehttp_query_param(req, "n");
        char *chunked = fakehttp_query_param(req, "chunked");
        size_t len = n != NULL ? strtoul(n, NULL, 10) : 0;
        char *data = cm_xmalloc(len + 1);
        memset(data, 'x', len);
        fakehttp_reply(resp, 200, data, len);
        resp->chunked = chunked != NULL;
        free(data);
        free(n);
        free(chunked);
    } else if (strcmp(req->path, "/409then200") == 0) {
        if (req->seq == 0)
            fakehttp_json(resp, 409, "{\"error\":{\"type\":\"conflict\"}}");
        else
            fakehttp_json(resp, 200, "{\"ok\":true}");
    } else {
        fakehttp_json(resp, 404, "{\"error\":\"no route\"}");
    }
}

/* A request to path on the fake server, with fast retries unless the test says otherwise. */
void req_init(struct cm_httpc_request *r, struct cm_buf *url, const char *path)
{
    memset(r, 0, sizeof(*r));
    cm_buf_init(url);
    cm_buf_printf(url, "%s%s", fakehttp_url(srv), path);
    r->url = url->data;
    r->backoff_base_ms = 20;
    r->backoff_cap_ms = 2000;
    r->timeout_ms = 10000;
    r->deadline_ms = 30000;
}

/* Runs a call on a fresh response; the caller cleans resp up. */
int run(struct cm_httpc_request *r, struct cm_httpc_response *resp)
{
    cm_httpc_response_init(resp);
    fakehttp_clear(srv);
    return cm_httpc_do(NULL, r, resp);
}

/* --- against the fake server ----------------------------------------------------------- */

static void test_get_and_post_intact(void)
{
    const char *const headers[] = {"Authorization: Bearer sk-test-123", "X-Goog-Api-Key: AIza-test",
                                   NULL};
    const char *const jheaders[] = {"Content-Type: application/json", NULL};
    const char body[] = "{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"h\\u00e9\"}}";
    const char binary[] = {'a', '\0', 'b', '\n', (char)0xff};
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    const struct fakehttp_request *got;
    struct cm_buf url;
    char *v;

    req_init(&r, &url, "/echo?fields=id%2Cname&access_token=EAAB");
    r.headers = headers;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    CHECK_INT(fakehttp_count(srv), 1);
    got = fakehttp_get(srv, 0);
    CHECK_STR(got->method, "GET");
    CHECK_STR(got->path, "/echo");
    CHECK_STR(got->uri, "/echo?fields=id%2Cname&access_token=EAAB");
    CHECK_STR(got->query, "fields=id%2Cname&access_token=EAAB");
    v = fakehttp_query_param(got, "fields");
    CHECK_STR(v, "id,name");
    free(v);
    CHECK_STR(fakehttp_header(got, "authorization"), "Bearer sk-test-123");
    CHECK_STR(fakehttp_header(got, "x-goog-api-key"), "AIza-test");
    CHECK(starts_with(fakehttp_header(got, "User-Agent"), "doms/"));
    CHECK_INT(got->body_len, 0);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    req_init(&r, &url, "/echo");
    r.method = "POST";
    r.headers = jheaders;
    r.body = body;
    r.body_len = strlen(body);
    CHECK_INT(run(&r, &resp), CM_OK);
    got = fakehttp_find(srv, "/echo");
    CHECK(got != NULL);
    CHECK_STR(got->method, "POST");
    CHECK_STR(got->body, body);
    CHECK_INT(got->body_len, strlen(body));
    CHECK_STR(fakehttp_header(got, "Content-Type"), "application/json");
    /* No 100-continue round trip. */
    CHECK(fakehttp_header(got, "Expect") == NULL);
    cm_httpc_response_cleanup(&resp);

    /* Bytes, not a string: NULs and high bytes arrive as sent. Method defaults to POST. */
    r.method = NULL;
    r.body = binary;
    r.body_len = sizeof(binary);
    CHECK_INT(run(&r, &resp), CM_OK);
    got = fakehttp_get(srv, 0);
    CHECK_STR(got->method, "POST");
    CHECK_INT(got->body_len, sizeof(binary));
    CHECK(memcmp(got->body, binary, sizeof(binary)) == 0);
    cm_httpc_response_cleanup(&resp);

    /* Other methods, with and without a body. */
    r.method = "DELETE";
    r.body = NULL;
    r.body_len = 0;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_STR(fakehttp_get(srv, 0)->method, "DELETE");
    CHECK_STR(cm_httpc_header(&resp, "X-Seen-Method"), "DELETE");
    cm_httpc_response_cleanup(&resp);
    r.method = "PUT";
    r.body = "x=1";
    r.body_len = 3;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_STR(fakehttp_get(srv, 0)->method, "PUT");
    CHECK_STR(fakehttp_get(srv, 0)->body, "x=1");
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_json_200(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    req_init(&r, &url, "/echo");
    r.meta = true;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.attempts, 1);
    CHECK_INT(resp.transport, CM_OK);
    CHECK(resp.maybe_sent);
    CHECK_STR(resp.body.data, "{\"ok\":true,\"id\":\"m_1\"}");
    CHECK_INT(resp.body.len, strlen("{\"ok\":true,\"id\":\"m_1\"}"));
    CHECK_STR(resp.content_type, "application/json; charset=UTF-8");
    CHECK_STR(cm_httpc_header(&resp, "content-type"), "application/json; charset=UTF-8");
    CHECK_INT(resp.retry_after_ms, -1);
    CHECK(!resp.has_meta_error);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_500_then_200(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    req_init(&r, &url, "/500then200");
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.attempts, 2);
    CHECK_INT(fakehttp_count(srv), 2);
    CHECK_STR(resp.body.data, "{\"ok\":true}");
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_429_retry_after(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;
    long t0;

    req_init(&r, &url, "/429?after=1");
    t0 = mono_ms();
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_MSG(mono_ms() - t0 >= 1000, "waited %ld ms for Retry-After: 1", mono_ms() - t0);
    CHECK(resp.elapsed_ms >= 1000);
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.attempts, 2);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    /* The HTTP-date form (one-second resolution: just check it is obeyed and succeeds). */
    req_init(&r, &url, "/429date");
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.attempts, 2);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    /* Longer than the cap: no early retry; the caller gets the server's wait. */
    req_init(&r, &url, "/429?after=30");
    CHECK_INT(run(&r, &resp), CM_UNAVAIL);
    CHECK_INT(resp.status, 429);
    CHECK_INT(resp.attempts, 1);
    CHECK_INT(resp.retry_after_ms, 30000);
    CHECK_STR(resp.body.data, "{\"error\":\"slow down\"}");
    cm_httpc_response_cleanup(&resp);

    /* Beyond the deadline likewise. */
    r.backoff_cap_ms = 60000;
    r.deadline_ms = 5000;
    CHECK_INT(run(&r, &resp), CM_UNAVAIL);
    CHECK_INT(resp.attempts, 1);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_meta_throttling_retried(void)
{
    static const int codes[][2] = {{4, 400},   {17, 400}, {32, 400},
                                   {613, 400}, {4, 403},  {80007, 400}};
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;
    char path[64];

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        snprintf(path, sizeof(path), "/throttle/%d/%d", codes[i][0], codes[i][1]);
        req_init(&r, &url, path);
        r.meta = true;
        CHECK_INT(run(&r, &resp), CM_OK);
        CHECK_MSG(resp.status == 200 && resp.attempts == 2, "code %d on %d: status %ld, %d tries",
                  codes[i][0], codes[i][1], resp.status, resp.attempts);
        cm_httpc_response_cleanup(&resp);

        /* Throttled on every attempt: unavailable, with the last Meta error. */
        r.max_attempts = 1;
        CHECK_INT(run(&r, &resp), CM_UNAVAIL);
        CHECK_INT(resp.status, codes[i][1]);
        CHECK(resp.has_meta_error);
        CHECK_INT(resp.meta_error.code, codes[i][0]);
        cm_httpc_response_cleanup(&resp);
        cm_buf_cleanup(&url);
    }

    /* Without meta the same body is just a 400: final, and not parsed. */
    req_init(&r, &url, "/throttle/4/400");
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 400);
    CHECK_INT(resp.attempts, 1);
    CHECK(!resp.has_meta_error);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_meta_errors_not_retried(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_meta_error e;
    struct cm_buf url;

    req_init(&r, &url, "/meta/190");
    r.meta = true;
    r.max_attempts = 5;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 400);
    CHECK_INT(resp.attempts, 1);
    CHECK_INT(fakehttp_count(srv), 1);
    CHECK(resp.has_meta_error);
    CHECK_INT(resp.meta_error.code, 190);
    CHECK_INT(resp.meta_error.subcode, 460);
    CHECK_STR(resp.meta_error.type, "OAuthException");
    CHECK_STR(resp.meta_error.message,
              "Error validating access token: The session has been invalidated");
    CHECK_STR(resp.meta_error.fbtrace_id, "AFakeTrace190");
    CHECK_INT(cm_httpc_meta_error(&resp, &e), CM_OK);
    CHECK_INT(e.code, 190);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    req_init(&r, &url, "/meta/100");
    r.meta = true;
    r.max_attempts = 5;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 400);
    CHECK_INT(resp.attempts, 1);
    CHECK_INT(resp.meta_error.code, 100);
    CHECK_INT(resp.meta_error.subcode, 2018001);
    CHECK_STR(resp.meta_error.message, "(#100) No matching user found");
    CHECK_STR(resp.meta_error.fbtrace_id, "AFakeTrace100");
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_max_attempts(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    req_init(&r, &url, "/always500");
    r.max_attempts = 4;
    CHECK_INT(run(&r, &resp), CM_UNAVAIL);
    CHECK_INT(resp.attempts, 4);
    CHECK_INT(fakehttp_count(srv), 4);
    CHECK_INT(resp.status, 500);
    CHECK_STR(resp.body.data, "{\"error\":\"boom\"}");
    cm_httpc_response_cleanup(&resp);

    /* The default is three. */
    r.max_attempts = 0;
    CHECK_INT(run(&r, &resp), CM_UNAVAIL);
    CHECK_INT(resp.attempts, CM_HTTPC_MAX_ATTEMPTS);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_timeout_and_deadline(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    /* Each attempt times out; the deadline ends the series long before max_attempts. */
    req_init(&r, &url, "/slow");
    r.timeout_ms = 300;
    r.deadline_ms = 3000;
    r.max_attempts = 20;
    r.backoff_base_ms = 50;
    r.backoff_cap_ms = 100;
    CHECK_INT(run(&r, &resp), CM_TIMEOUT);
    CHECK_INT(resp.status, 0);
    CHECK_INT(resp.transport, CM_TIMEOUT);
    CHECK_MSG(resp.attempts >= 2 && resp.attempts < 20, "%d attempts", resp.attempts);
    CHECK_MSG(resp.elapsed_ms >= 2500, "elapsed %ld ms", resp.elapsed_ms);
    cm_httpc_response_cleanup(&resp);

    /*
     * A deadline shorter than the attempt's timeout cuts the attempt: the answer (sent
     * after 3 s, within the 10 s timeout) would have made it CM_OK otherwise.
     */
    r.timeout_ms = 10000;
    r.deadline_ms = 800;
    CHECK_INT(run(&r, &resp), CM_TIMEOUT);
    CHECK_INT(resp.attempts, 1);
    CHECK(resp.elapsed_ms >= 700);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_connection_refused(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    char url[64];

    memset(&r, 0, sizeof(r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v19.0/me/messages", th_free_port());
    r.url = url;
    r.backoff_base_ms = 20;
    cm_httpc_response_init(&resp);
    CHECK_INT(cm_httpc_do(NULL, &r, &resp), CM_UNAVAIL);
    CHECK_INT(resp.attempts, CM_HTTPC_MAX_ATTEMPTS);
    CHECK_INT(resp.status, 0);
    CHECK_INT(resp.transport, CM_UNAVAIL);
    CHECK(!resp.maybe_sent);
    CHECK_INT(resp.body.len, 0);
    cm_httpc_response_cleanup(&resp);
}

static void test_closed_without_answer(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    req_init(&r, &url, "/close");
    r.method = "POST";
    r.body = "{}";
    r.body_len = 2;
    CHECK_INT(run(&r, &resp), CM_UNAVAIL);
    CHECK_INT(resp.attempts, CM_HTTPC_MAX_ATTEMPTS);
    CHECK_INT(fakehttp_count(srv), CM_HTTPC_MAX_ATTEMPTS);
    CHECK_INT(resp.status, 0);
    /* The request went out: a non-idempotent caller must know it may have been acted on. */
    CHECK(resp.maybe_sent);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_html_502(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_meta_error e;
    struct cm_buf url;

    req_init(&r, &url, "/html502");
    r.meta = true;
    r.max_attempts = 2;
    CHECK_INT(run(&r, &resp), CM_UNAVAIL);
    CHECK_INT(resp.status, 502);
    CHECK_INT(resp.attempts, 2);
    CHECK(!resp.has_meta_error);
    CHECK_INT(resp.meta_error.code, 0);
    CHECK_STR(resp.content_type, "text/html");
    CHECK_CONTAINS(resp.body.data, "<html>");
    CHECK_INT(cm_httpc_meta_error(&resp, &e), CM_NOTFOUND);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_response_cap(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    /* Announced by Content-Length, and streamed in chunks with no length: both refused. */
    req_init(&r, &url, "/big?n=100000");
    r.max_response = 65536;
    CHECK_INT(run(&r, &resp), CM_TOOBIG);
    CHECK_INT(resp.attempts, 1);
    CHECK_INT(resp.body.len, 0);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    req_init(&r, &url, "/big?n=100000&chunked=1");
    r.max_response = 65536;
    CHECK_INT(run(&r, &resp), CM_TOOBIG);
    CHECK_INT(resp.attempts, 1);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    /* Exactly the cap is fine. */
    req_init(&r, &url, "/big?n=65536&chunked=1");
    r.max_response = 65536;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.body.len, 65536);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    /* The default cap, 8 MiB. */
    req_init(&r, &url, "/big?n=9000000");
    CHECK_INT(run(&r, &resp), CM_TOOBIG);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

struct policy_log {
    int calls;
};

static bool retry_409(const struct cm_httpc_response *resp, void *arg)
{
    struct policy_log *log = arg;

    log->calls++;
    return resp->status == 409 || cm_httpc_retryable_default(resp, NULL);
}

static bool never(const struct cm_httpc_response *resp, void *arg)
{
    struct policy_log *log = arg;

    (void)resp;
    log->calls++;
    return false;
}

static void test_custom_policy(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct policy_log log = {0};
    struct cm_buf url;

    req_init(&r, &url, "/409then200");
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 409);
    CHECK_INT(resp.attempts, 1);
    cm_httpc_response_cleanup(&resp);

    r.retryable = retry_409;
    r.retry_arg = &log;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.attempts, 2);
    CHECK_INT(log.calls, 2);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);

    /* A policy that retries nothing makes a 500 a final answer. */
    req_init(&r, &url, "/always500");
    log.calls = 0;
    r.retryable = never;
    r.retry_arg = &log;
    CHECK_INT(run(&r, &resp), CM_OK);
    CHECK_INT(resp.status, 500);
    CHECK_INT(resp.attempts, 1);
    CHECK_INT(log.calls, 1);
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
}

static void test_invalid(void)
{
    struct cm_httpc_request r;
    struct cm_httpc_response resp;

    memset(&r, 0, sizeof(r));
    cm_httpc_response_init(&resp);
    CHECK_INT(cm_httpc_do(NULL, &r, &resp), CM_INVALID);
    r.url = "ftp://127.0.0.1/x";
    CHECK_INT(cm_httpc_do(NULL, &r, &resp), CM_INVALID);
    CHECK_INT(resp.attempts, 1);
    r.url = "http://[::1/x";
    CHECK_INT(cm_httpc_do(NULL, &r, &resp), CM_INVALID);
    cm_httpc_response_cleanup(&resp);

    /* A token with a line break must not smuggle a header in; nothing is sent. */
    {
        const char *const evil[] = {"Authorization: Bearer abc\r\nX-Admin: 1", NULL};
        struct cm_buf url;
        req_init(&r, &url, "/echo");
        r.headers = evil;
        CHECK_INT(run(&r, &resp), CM_INVALID);
        CHECK_INT(resp.attempts, 0);
        CHECK_INT(fakehttp_count(srv), 0);
        cm_httpc_response_cleanup(&resp);
        cm_buf_cleanup(&url);
    }
}

struct worker {
    int ok;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct cm_httpc *c = NULL;
    struct cm_httpc_request r;
    struct cm_httpc_response resp;
    struct cm_buf url;

    if (cm_httpc_create(&c) != CM_OK)
        return NULL;
    req_init(&r, &url, "/echo");
    cm_httpc_response_init(&resp);
    /* The same client again and again (kept connections), then one without. */
    for (int i = 0; i < 10; i++) {
        if (cm_httpc_do(i < 9 ? c : NULL, &r, &resp) == CM_OK && resp.status == 200)
            w->ok++;
    }
    cm_httpc_response_cleanup(&resp);
    cm_buf_cleanup(&url);
    cm_httpc_destroy(c);
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    struct worker w[4];

    fakehttp_clear(srv);
    for (int i = 0; i < 4; i++) {
        w[i].ok = 0;
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(w[i].ok, 10);
    }
    CHECK_INT(fakehttp_count(srv), 40);
    cm_httpc_destroy(NULL);
}

/* Runs one call with stderr captured into a file, at debug level; returns the text. */
static char *captured_call(struct cm_httpc_request *r)
{
    char path[600];
    struct cm_httpc_response resp;
    int saved, fd, rc;

    snprintf(path, sizeof(path), "%s/stderr.log", th_tmpdir());
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    cm_log_init("test_httpc", CM_LVL_DEBUG, 1);

    cm_httpc_response_init(&resp);
    fakehttp_clear(srv);
    rc = cm_httpc_do(NULL, r, &resp);
    CHECK_INT(rc, r->meta ? CM_UNAVAIL : CM_OK);
    cm_httpc_response_cleanup(&resp);

    cm_log_init("test_httpc", CM_LVL_INFO, 1);
    dup2(saved, STDERR_FILENO);
    close(saved);
    return th_read_file(path);
}

static void test_logs_keep_secrets(void)
{
    const char *const secret_params[] = {"client_secret", "S3CR3T-xyz", "fb_exchange_token",
                                         "EAAB-token", NULL};
    const char *const headers[] = {"Authorization: Bearer sk-live-SECRETKEY", NULL};
    struct cm_httpc_request r;
    struct cm_buf url, base;
    char *log;

    cm_buf_init(&base);
    cm_buf_printf(&base, "%s/", fakehttp_url(srv));
    memset(&r, 0, sizeof(r));
    cm_buf_init(&url);
    cm_httpc_url(&url, base.data, "/500then200", secret_params);
    r.url = url.data;
    r.headers = headers;
    r.body = "{\"text\":\"private message body\"}";
    r.body_len = strlen(r.body);
    r.backoff_base_ms = 20;
    r.log_id = "req-42";
    log = captured_call(&r);
    CHECK(log != NULL);
    /* The retry was logged, with the path, attempt and status, and nothing secret. */
    CHECK_CONTAINS(log, "/500then200");
    CHECK_CONTAINS(log, "attempt 1/3");
    CHECK_CONTAINS(log, "500");
    CHECK_CONTAINS(log, "req-42");
    CHECK(strstr(log, "S3CR3T") == NULL);
    CHECK(strstr(log, "EAAB-token") == NULL);
    CHECK(strstr(log, "client_secret") == NULL);
    CHECK(strstr(log, "SECRETKEY") == NULL);
    CHECK(strstr(log, "private message") == NULL);
    free(log);

    /* A Meta error: its code is logged, not its message. */
    cm_buf_reset(&url);
    cm_httpc_url(&url, base.data, "/throttle/4/400", secret_params);
    r.url = url.data;
    r.meta = true;
    r.max_attempts = 1;
    log = captured_call(&r);
    CHECK(log != NULL);
    CHECK_CONTAINS(log, "400 meta 4/0");
    CHECK_CONTAINS(log, "giving up");
    CHECK(strstr(log, "request limit") == NULL);
    CHECK(strstr(log, "S3CR3T") == NULL);
    free(log);
    cm_buf_cleanup(&url);
    cm_buf_cleanup(&base);
}

int main(void)
{
    th_init("httpc");
    if (fakehttp_start(&srv, handler, NULL) != 0) {
        printf("FAIL: fakehttp_start\n");
        return 1;
    }
    RUN(test_get_and_post_intact);
    RUN(test_json_200);
    RUN(test_500_then_200);
    RUN(test_429_retry_after);
    RUN(test_meta_throttling_retried);
    RUN(test_meta_errors_not_retried);
    RUN(test_max_attempts);
    RUN(test_timeout_and_deadline);
    RUN(test_connection_refused);
    RUN(test_closed_without_answer);
    RUN(test_html_502);
    RUN(test_response_cap);
    RUN(test_custom_policy);
    RUN(test_streamed_part);
    RUN(test_invalid);
    RUN(test_threads);
    RUN(test_logs_keep_secrets);
    fakehttp_stop(srv);
    return check_summary();
}
