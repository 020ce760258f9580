/*
 * test_fakehttp - the test server itself, driven by plain libcurl (th_http) rather than the
 * client it helps to test: what it records, the answers it builds (Meta's error body byte
 * for byte), delays, closes, chunks, and a stop with answers still owed.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "fakehttp.h"
#include "harness.h"

static struct fakehttp *srv;

static long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void handler(const struct fakehttp_request *req, struct fakehttp_response *resp, void *arg)
{
    int *calls = arg;

    (*calls)++;
    if (strcmp(req->path, "/meta") == 0) {
        fakehttp_meta_error(resp, 400, 190, 463, "Session has \"expired\"");
    } else if (strcmp(req->path, "/meta-nosub") == 0) {
        fakehttp_meta_error(resp, 403, 10, 0, "(#10) Permission denied");
    } else if (strcmp(req->path, "/delay") == 0) {
        resp->delay_ms = 500;
        fakehttp_json(resp, 201, "{\"late\":true}");
    } else if (strcmp(req->path, "/slow") == 0) {
        resp->delay_ms = 10000;
    } else if (strcmp(req->path, "/close") == 0) {
        resp->close = true;
    } else if (strcmp(req->path, "/chunked") == 0) {
        resp->chunked = true;
        fakehttp_reply(resp, 200, "chunk of text", 13);
    } else {
        fakehttp_set_header(resp, "X-Seq", req->seq == 0 ? "first" : "later");
        fakehttp_json(resp, 200, "{\"ok\":true}");
    }
}

static void test_records(void)
{
    const char *const headers[] = {"Authorization: Bearer t0k", "Content-Type: text/plain", NULL};
    const struct fakehttp_request *r;
    struct th_resp resp;
    char url[256];
    char *v;

    fakehttp_clear(srv);
    snprintf(url, sizeof(url),
             "%s/v19.0/oauth/access_token?grant_type=fb_exchange_token"
             "&client_secret=a%%26b%%3Dc%%20d&empty=",
             fakehttp_url(srv));
    CHECK_INT(th_http(&resp, "GET", url, headers, NULL, 0), 200);
    CHECK_STR(resp.body.data, "{\"ok\":true}");
    CHECK_CONTAINS(resp.headers.data, "X-Seq: first");
    CHECK_CONTAINS(resp.headers.data, "Content-Type: application/json");
    th_resp_cleanup(&resp);

    snprintf(url, sizeof(url), "%s/messages", fakehttp_url(srv));
    CHECK_INT(th_http(&resp, "POST", url, headers, "hello\nworld", 11), 200);
    CHECK_CONTAINS(resp.headers.data, "X-Seq: later");
    th_resp_cleanup(&resp);
    CHECK_INT(th_http(&resp, "PATCH", url, NULL, "p", 1), 200);
    th_resp_cleanup(&resp);

    CHECK_INT(fakehttp_count(srv), 3);
    r = fakehttp_get(srv, 0);
    CHECK_INT(r->seq, 0);
    CHECK_STR(r->method, "GET");
    CHECK_STR(r->path, "/v19.0/oauth/access_token");
    CHECK_STR(r->query, "grant_type=fb_exchange_token&client_secret=a%26b%3Dc%20d&empty=");
    CHECK_STR(r->uri, "/v19.0/oauth/access_token?grant_type=fb_exchange_token"
                      "&client_secret=a%26b%3Dc%20d&empty=");
    CHECK_STR(fakehttp_header(r, "AUTHORIZATION"), "Bearer t0k");
    CHECK(fakehttp_header(r, "X-Missing") == NULL);
    v = fakehttp_query_param(r, "client_secret");
    CHECK_STR(v, "a&b=c d");
    free(v);
    v = fakehttp_query_param(r, "empty");
    CHECK_STR(v, "");
    free(v);
    CHECK(fakehttp_query_param(r, "nope") == NULL);

    r = fakehttp_get(srv, 1);
    CHECK_STR(r->method, "POST");
    CHECK_STR(r->query, "");
    CHECK_STR(r->body, "hello\nworld");
    CHECK_INT(r->body_len, 11);
    CHECK_INT(r->seq, 1);
    CHECK_STR(fakehttp_find(srv, "/messages")->method, "PATCH");
    CHECK(fakehttp_find(srv, "/nowhere") == NULL);
    CHECK(fakehttp_get(srv, 3) == NULL);
    CHECK(fakehttp_get(srv, -1) == NULL);

    fakehttp_clear(srv);
    CHECK_INT(fakehttp_count(srv), 0);
    CHECK_INT(th_http(&resp, "GET", url, NULL, NULL, 0), 200);
    CHECK_CONTAINS(resp.headers.data, "X-Seq: first");
    th_resp_cleanup(&resp);
}

static void test_answers(void)
{
    struct th_resp resp;
    char url[256];
    long t0;

    snprintf(url, sizeof(url), "%s/meta", fakehttp_url(srv));
    CHECK_INT(th_http(&resp, "GET", url, NULL, NULL, 0), 400);
    CHECK_STR(resp.body.data,
              "{\"error\":{\"message\":\"Session has \\\"expired\\\"\",\"type\":\"OAuthException\","
              "\"code\":190,\"error_subcode\":463,\"fbtrace_id\":\"AFakeTrace190\"}}");
    CHECK_CONTAINS(resp.headers.data, "WWW-Authenticate: OAuth \"Facebook Platform\"");
    th_resp_cleanup(&resp);

    snprintf(url, sizeof(url), "%s/meta-nosub", fakehttp_url(srv));
    CHECK_INT(th_http(&resp, "GET", url, NULL, NULL, 0), 403);
    CHECK_STR(resp.body.data, "{\"error\":{\"message\":\"(#10) Permission denied\",\"type\":"
                              "\"OAuthException\",\"code\":10,\"fbtrace_id\":\"AFakeTrace10\"}}");
    th_resp_cleanup(&resp);

    snprintf(url, sizeof(url), "%s/chunked", fakehttp_url(srv));
    CHECK_INT(th_http(&resp, "GET", url, NULL, NULL, 0), 200);
    CHECK_STR(resp.body.data, "chunk of text");
    CHECK_CONTAINS(resp.headers.data, "Transfer-Encoding: chunked");
    th_resp_cleanup(&resp);

    /* The delay holds one answer back without holding the server. */
    snprintf(url, sizeof(url), "%s/delay", fakehttp_url(srv));
    t0 = mono_ms();
    CHECK_INT(th_http(&resp, "GET", url, NULL, NULL, 0), 201);
    CHECK_MSG(mono_ms() - t0 >= 500, "answered after %ld ms", mono_ms() - t0);
    CHECK_STR(resp.body.data, "{\"late\":true}");
    th_resp_cleanup(&resp);

    /* A close is no answer at all. */
    snprintf(url, sizeof(url), "%s/close", fakehttp_url(srv));
    CHECK_INT(th_http(&resp, "GET", url, NULL, NULL, 0), 0);
    th_resp_cleanup(&resp);
}

struct waiting {
    char url[256];
    long code;
};

static void *wait_main(void *arg)
{
    struct waiting *w = arg;
    struct th_resp resp;

    w->code = th_http(&resp, "GET", w->url, NULL, NULL, 0);
    th_resp_cleanup(&resp);
    return NULL;
}

static void test_delay_does_not_block(void)
{
    struct waiting w;
    struct th_resp resp;
    pthread_t t;
    char url[256];

    /* While one request waits out its 10 s delay, others are answered. */
    fakehttp_clear(srv);
    snprintf(w.url, sizeof(w.url), "%s/slow", fakehttp_url(srv));
    w.code = -1;
    pthread_create(&t, NULL, wait_main, &w);
    for (int i = 0; i < 500 && fakehttp_count(srv) < 1; i++)
        th_sleep_ms(10);
    snprintf(url, sizeof(url), "%s/other", fakehttp_url(srv));
    CHECK_INT(th_http(&resp, "GET", url, NULL, NULL, 0), 200);
    th_resp_cleanup(&resp);
    CHECK_INT(w.code, -1);

    /* Stopping drops the owed answer: the client sees its connection close. */
    fakehttp_stop(srv);
    pthread_join(t, NULL);
    CHECK_INT(w.code, 0);
}

int main(void)
{
    int calls = 0;

    th_init("fakehttp");
    CHECK_INT(fakehttp_start(&srv, handler, &calls), 0);
    if (srv == NULL)
        return check_summary();
    CHECK(fakehttp_port(srv) > 0);
    RUN(test_records);
    RUN(test_answers);
    RUN(test_delay_does_not_block);
    CHECK(calls >= 10);
    fakehttp_stop(NULL);

    /* No handler: every request gets 200 and an empty body. */
    CHECK_INT(fakehttp_start(&srv, NULL, NULL), 0);
    {
        struct th_resp resp;
        CHECK_INT(th_http(&resp, "GET", fakehttp_url(srv), NULL, NULL, 0), 200);
        CHECK_STR(resp.body.data, "");
        th_resp_cleanup(&resp);
    }
    fakehttp_stop(srv);
    return check_summary();
}
