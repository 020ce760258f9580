/*
 * test_httpc_helpers - the HTTP client's pure parts: the log-safe URL, the query-string
 * builder's escaping, Meta's error body parser and its throttling codes.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/httpc.h"

static void test_log_url(void)
{
    static const char *const cases[][2] = {
        {"https://graph.facebook.com/v19.0/oauth/access_token?grant_type=fb_exchange_token"
         "&client_secret=S3CR3T&fb_exchange_token=EAAB",
         "https://graph.facebook.com/v19.0/oauth/access_token"},
        {"https://user:pa%40ss@api.openai.com:8443/v1/chat?x=1#frag",
         "https://api.openai.com:8443/v1/chat"},
        {"http://127.0.0.1:9/me/messages?access_token=EAAB#x", "http://127.0.0.1:9/me/messages"},
        {"https://host?only=query", "https://host"},
        {"https://host#frag", "https://host"},
        {"https://host/p@th?q=1", "https://host/p@th"},
        {"not a url?secret=1", "not a url"},
        {"", ""},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cm_buf b;
        cm_buf_init(&b);
        cm_httpc_log_url(&b, cases[i][0]);
        CHECK_STR(b.data, cases[i][1]);
        cm_buf_cleanup(&b);
    }
}

static void test_url_builder(void)
{
    const char *const params[] = {
        "grant_type", "fb_exchange_token",        "client_secret", "a&b=c d+e/f?",
        "name",       "caf\xc3\xa9 \xe2\x82\xac", "k&=",           "",
        NULL};
    const char *const one[] = {"fields", "id,name", NULL};
    struct cm_buf b;

    cm_buf_init(&b);
    cm_httpc_url(&b, "https://graph.facebook.com/", "/v19.0/oauth/access_token", params);
    CHECK_STR(b.data, "https://graph.facebook.com/v19.0/oauth/access_token"
                      "?grant_type=fb_exchange_token"
                      "&client_secret=a%26b%3Dc%20d%2Be%2Ff%3F"
                      "&name=caf%C3%A9%20%E2%82%AC"
                      "&k%26%3D=");

    cm_buf_reset(&b);
    cm_httpc_url(&b, "https://graph.facebook.com", "v19.0/me", one);
    CHECK_STR(b.data, "https://graph.facebook.com/v19.0/me?fields=id%2Cname");

    /* A base that already has a query gets '&', no path and no params leave it as is. */
    cm_buf_reset(&b);
    cm_httpc_url(&b, "https://h/x?a=1", NULL, one);
    CHECK_STR(b.data, "https://h/x?a=1&fields=id%2Cname");
    cm_buf_reset(&b);
    cm_httpc_url(&b, "https://h/x", NULL, NULL);
    CHECK_STR(b.data, "https://h/x");
    cm_buf_cleanup(&b);
}

static void test_meta_parse(void)
{
    struct cm_meta_error e;
    const char *full =
        "{\"error\":{\"message\":\"(#613) Calls to this api have exceeded the "
        "rate limit.\",\"type\":\"OAuthException\",\"code\":613,"
        "\"error_subcode\":2446079,\"fbtrace_id\":\"AbC123\",\"is_transient\":true}}";
    const char *openai = "{\"error\":{\"message\":\"Incorrect API key\",\"type\":"
                         "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
    const char *junk[] = {"<html>502</html>",
                          "{\"error\":\"x\"}",
                          "{\"error\":{\"code\":",
                          "[1,2]",
                          "{\"error\":{\"code\":1e300}}",
                          "null",
                          "{}"};
    struct cm_buf big;

    CHECK_INT(cm_httpc_meta_parse(full, strlen(full), &e), CM_OK);
    CHECK_INT(e.code, 613);
    CHECK_INT(e.subcode, 2446079);
    CHECK_STR(e.type, "OAuthException");
    CHECK_STR(e.fbtrace_id, "AbC123");
    CHECK_CONTAINS(e.message, "exceeded the rate limit");

    /* OpenAI's error has a string code: not Meta's. */
    CHECK_INT(cm_httpc_meta_parse(openai, strlen(openai), &e), CM_NOTFOUND);
    CHECK_INT(e.code, 0);
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        CHECK_INT(cm_httpc_meta_parse(junk[i], strlen(junk[i]), &e), CM_NOTFOUND);
    CHECK_INT(cm_httpc_meta_parse(NULL, 0, &e), CM_NOTFOUND);
    /* Only len bytes count: the text cut short is not JSON. */
    CHECK_INT(cm_httpc_meta_parse(full, 20, &e), CM_NOTFOUND);

    /* A long message is cut on a character boundary (3-byte euro signs). */
    cm_buf_init(&big);
    cm_buf_puts(&big, "{\"error\":{\"code\":1,\"message\":\"");
    for (int i = 0; i < 400; i++)
        cm_buf_puts(&big, "\xe2\x82\xac");
    cm_buf_puts(&big, "\"}}");
    CHECK_INT(cm_httpc_meta_parse(big.data, big.len, &e), CM_OK);
    CHECK_INT(strlen(e.message), 510);
    CHECK_INT(e.subcode, 0);
    CHECK_STR(e.type, "");
    cm_buf_cleanup(&big);

    CHECK(cm_httpc_meta_throttling(4));
    CHECK(cm_httpc_meta_throttling(17));
    CHECK(cm_httpc_meta_throttling(32));
    CHECK(cm_httpc_meta_throttling(613));
    CHECK(cm_httpc_meta_throttling(80001));
    CHECK(cm_httpc_meta_throttling(80014));
    CHECK(!cm_httpc_meta_throttling(80015));
    CHECK(!cm_httpc_meta_throttling(190));
    CHECK(!cm_httpc_meta_throttling(100));
    CHECK(!cm_httpc_meta_throttling(0));
}

int main(void)
{
    RUN(test_log_url);
    RUN(test_url_builder);
    RUN(test_meta_parse);
    return check_summary();
}
