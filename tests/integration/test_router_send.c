/*
 * test_router_send.c - part of test_router: replies through Meta's Send API. Every outcome
 * Meta can give (sent, a passing failure tried again, a refusal failing the message at once),
 * the Graph host of each platform, and Meta's throttling of an account honoured.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fakemeta.h"
#include "router_suite.h"

/* Every Send API outcome, scripted by the contact's id (fakemeta.h). */
void test_send_outcomes(void)
{
    struct {
        const char *psid, *status, *needle;
    } cases[] = {
        {"flaky-1", "sent", NULL},         {"throttled-1", "sent", NULL},
        {"fail-window-1", "failed", NULL}, {"fail-token-1", "failed", NULL},
        {"fail-gone-1", "failed", NULL},   {"fail-param-1", "failed", NULL},
        {"down-1", "failed", NULL},
    };
    char mid[64], text[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(mid, sizeof(mid), "m_out_%zu", i);
        snprintf(text, sizeof(text), "question %zu", i);
        suite_message(cases[i].psid, mid, text, now_ms_ - 60000);
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *conv, answer[64];
        cJSON *m;
        snprintf(text, sizeof(text), "question %zu", i);
        snprintf(answer, sizeof(answer), "answer %zu", i);
        conv = await_conv(text);
        free(suite_reply_ok(conv, answer, false));
        m = suite_await_status(conv, answer, cases[i].status);
        if (m != NULL && strcmp(cases[i].status, "sent") == 0)
            CHECK_CONTAINS(th_json_str(m, "mid", NULL), "m_sent_");
        if (m != NULL && strcmp(cases[i].status, "failed") == 0)
            CHECK(cJSON_IsNull(cJSON_GetObjectItem(m, "mid")));
        cJSON_Delete(m);
        free(conv);
    }
    /* Permanent errors fail at once with Meta's reason; the outage exhausted its attempts. */
    {
        char *why = th_stack_sql(&st, "SELECT error FROM router.messages WHERE status = 'failed'"
                                      " AND error LIKE '%2018278%'");
        CHECK_CONTAINS(why, "outside of allowed window");
        free(why);
        why = th_stack_sql(&st, "SELECT attempts FROM router.messages WHERE error LIKE"
                                " '%isn''t available%'");
        CHECK_STR(why, "1");
        free(why);
        why = th_stack_sql(&st, "SELECT attempts || ' ' || error FROM router.messages"
                                " WHERE error LIKE 'gave up%'");
        CHECK_CONTAINS(why, "3 gave up after 3 attempts");
        free(why);
    }
    {
        cJSON *dead = th_stack_js(&st, "$JS.API.STREAM.INFO.ROUTER_DEAD", "");
        CHECK(cJSON_GetNumberValue(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(dead, "state"), "messages")) >= 1);
        cJSON_Delete(dead);
    }
}

/* The last Send API request recorded by srv, borrowed, or NULL. */
static const struct fakehttp_request *last_send(struct fakehttp *srv)
{
    for (int i = fakehttp_count(srv) - 1; i >= 0; i--) {
        const struct fakehttp_request *r = fakehttp_get(srv, i);
        if (strcmp(r->method, "POST") == 0 && strstr(r->path, "/messages") != NULL)
            return r;
    }
    return NULL;
}

/* True when any request srv recorded names text in its URI or body. */
static bool mentions(struct fakehttp *srv, const char *text)
{
    for (int i = 0; i < fakehttp_count(srv); i++) {
        const struct fakehttp_request *r = fakehttp_get(srv, i);
        if (strstr(r->uri, text) != NULL || strstr(r->body, text) != NULL)
            return true;
    }
    return false;
}

/*
 * Each platform's calls go to its own host: Instagram's exchange and replies to
 * graph.instagram.com (POST /v23.0/<ig-id>/messages with the Instagram token, as the
 * Instagram API with Instagram Login documents it), Messenger's to graph.facebook.com, and
 * neither host ever sees the other's account. Each stand-in knows only its own tokens, so
 * a call to the wrong host would also have failed with 190.
 */
void test_hosts(void)
{
    const char *connect[] = {"integration", "connect",         "--workspace", suite_ws,
                             "--platform",  "instagram",       "--account",   IG,
                             "--token",     "short-ig-router", NULL};
    struct fakehttp *fb = fakemeta_server(st.meta, FAKEMETA_FACEBOOK);
    struct fakehttp *ig = fakemeta_server(st.meta, FAKEMETA_INSTAGRAM);
    const struct fakehttp_request *r;
    int fb_sends, ig_sends;
    char body[1024], *conv;
    cJSON *m;

    CHECK(strcmp(fakemeta_url(st.meta, FAKEMETA_FACEBOOK),
                 fakemeta_url(st.meta, FAKEMETA_INSTAGRAM)) != 0);
    fakemeta_issue(st.meta, FAKEMETA_IG_SHORT, "short-ig-router", IG);
    cJSON_Delete(th_stack_run(&st, 0, connect));
    CHECK(fakehttp_find(ig, "/access_token") != NULL);
    snprintf(body, sizeof(body),
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG "\",\"time\":%lld,"
             "\"messaging\":[{\"sender\":{\"id\":\"ig-cust-1\"},\"recipient\":{\"id\":\"" IG
             "\"},\"timestamp\":%lld,\"message\":{\"mid\":\"m_ig_1\",\"text\":\"Hola desde "
             "Instagram\"}}]}]}",
             (long long)now_ms_, (long long)now_ms_ - 60000);
    CHECK_INT(th_stack_webhook(&st, body), 200);
    conv = await_conv("Hola desde Instagram");

    fb_sends = fakemeta_sends(st.meta, FAKEMETA_FACEBOOK);
    ig_sends = fakemeta_sends(st.meta, FAKEMETA_INSTAGRAM);
    free(suite_reply_ok(conv, "Si, tenemos la chaqueta.", false));
    m = suite_await_status(conv, "Si, tenemos la chaqueta.", "sent");
    CHECK(m != NULL && th_json_str(m, "mid", NULL) != NULL);
    cJSON_Delete(m);
    CHECK_INT(fakemeta_sends(st.meta, FAKEMETA_INSTAGRAM), ig_sends + 1);
    CHECK_INT(fakemeta_sends(st.meta, FAKEMETA_FACEBOOK), fb_sends);
    r = last_send(ig);
    CHECK(r != NULL);
    if (r != NULL) {
        CHECK_STR(r->path, "/v23.0/" IG "/messages");
        CHECK_STR(fakehttp_header(r, "Authorization"), "Bearer IGLL-short-ig-router");
        CHECK_CONTAINS(r->body, "\"recipient\":{\"id\":\"ig-cust-1\"}");
    }
    CHECK_MSG(!mentions(fb, IG), "the Facebook host saw the Instagram account");
    CHECK_MSG(!mentions(fb, "ig-cust-1"), "the Facebook host saw the Instagram contact");

    /* And Messenger's reply goes to the Facebook host alone. */
    free(suite_reply_ok(suite_c1, "Only on Messenger.", false));
    cJSON_Delete(suite_await_status(suite_c1, "Only on Messenger.", "sent"));
    CHECK_INT(fakemeta_sends(st.meta, FAKEMETA_FACEBOOK), fb_sends + 1);
    CHECK_INT(fakemeta_sends(st.meta, FAKEMETA_INSTAGRAM), ig_sends + 1);
    r = last_send(fb);
    CHECK(r != NULL);
    if (r != NULL) {
        CHECK_STR(r->path, "/v23.0/" PAGE "/messages");
        CHECK_STR(fakehttp_header(r, "Authorization"), "Bearer PAGE-" PAGE "-short-router");
    }
    CHECK_MSG(!mentions(ig, PAGE), "the Instagram host saw the Page");
    CHECK_MSG(!mentions(ig, "\"cust-1\""), "the Instagram host saw a Messenger contact");
    free(conv);
}

/*
 * The stand-in holds the router to Meta's rules: a user token is no Page token, the
 * Instagram host knows no Page token, and every answer reports usage. When Meta throttles
 * the Page (code 32, HTTP 403) the reply waits and goes on its next attempt.
 */
void test_throttling(void)
{
    const char *user[] = {"Authorization: Bearer EAAU-short-router",
                          "Content-Type: application/json", NULL};
    const char *page[] = {"Authorization: Bearer PAGE-" PAGE "-short-router",
                          "Content-Type: application/json", NULL};
    const char *body = "{\"recipient\":{\"id\":\"cust-1\"},\"message\":{\"text\":\"probe\"}}";
    const char *probe = "{\"recipient\":{\"id\":\"probe-0\"},\"message\":{\"text\":\"probe\"}}";
    char url[300], q[200], *id, *attempts;
    struct th_resp r;

    snprintf(url, sizeof(url), "%s/v23.0/" PAGE "/messages",
             fakemeta_url(st.meta, FAKEMETA_FACEBOOK));
    CHECK_INT(th_http(&r, "POST", url, user, body, strlen(body)), 400);
    CHECK_CONTAINS(r.body.data, "\"code\":190");
    CHECK_CONTAINS(r.headers.data, "X-App-Usage: {\"call_count\":");
    th_resp_cleanup(&r);
    /* The Page's own token, with its proof: accepted, with the Page's business use case
     * usage. */
    {
        char proof[65];
        fakemeta_proof("PAGE-" PAGE "-short-router", proof);
        snprintf(url, sizeof(url), "%s/v23.0/" PAGE "/messages?appsecret_proof=%s",
                 fakemeta_url(st.meta, FAKEMETA_FACEBOOK), proof);
    }
    CHECK_INT(th_http(&r, "POST", url, page, probe, strlen(probe)), 200);
    CHECK_CONTAINS(r.headers.data, "X-Business-Use-Case-Usage: {\"" PAGE "\":[{\"type\":");
    CHECK_CONTAINS(r.headers.data, "X-App-Usage: {\"call_count\":");
    th_resp_cleanup(&r);
    snprintf(url, sizeof(url), "%s/v23.0/" PAGE "/messages",
             fakemeta_url(st.meta, FAKEMETA_INSTAGRAM));
    CHECK_INT(th_http(&r, "POST", url, page, body, strlen(body)), 400);
    CHECK_CONTAINS(r.body.data, "\"code\":190");
    th_resp_cleanup(&r);

    fakemeta_throttle(st.meta, 32, 1);
    id = suite_reply_ok(suite_c1, "After the throttle.", false);
    cJSON_Delete(suite_await_status(suite_c1, "After the throttle.", "sent"));
    snprintf(q, sizeof(q), "SELECT attempts FROM router.messages WHERE id = '%s'", id);
    attempts = th_stack_sql(&st, q);
    CHECK_STR(attempts, "2");
    free(attempts);
    free(id);
}
