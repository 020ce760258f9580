/*
 * test_url - credentials masked out of URLs before they are shown: passwords (with an '@'
 * inside), tokens, query parameters, NATS's comma-separated lists, truncation.
 */
#include <string.h>

#include "check.h"
#include "common/url.h"

static void expect(const char *url, const char *want)
{
    char out[512];

    cm_url_redact(url, out, sizeof(out));
    CHECK_STR(out, want);
}

static void test_userinfo(void)
{
    expect("postgresql://svc:pw@db:5432/doms", "postgresql://svc:****@db:5432/doms");
    /* The last '@' of the authority ends the userinfo: nothing of the password is left. */
    expect("postgresql://svc:p@ss@db/doms", "postgresql://svc:****@db/doms");
    expect("nats://tok3n@127.0.0.1:4222", "nats://****@127.0.0.1:4222");
    expect("http://127.0.0.1:9400/v23.0", "http://127.0.0.1:9400/v23.0");
    expect("https://api.openai.com/v1", "https://api.openai.com/v1");
    /* An '@' after the authority is not userinfo. */
    expect("https://host/path@x", "https://host/path@x");
}

static void test_query_and_lists(void)
{
    expect("postgresql://db/doms?sslmode=require&password=pw&sslpassword=x#f",
           "postgresql://db/doms?sslmode=require&password=****&sslpassword=****#f");
    expect("https://h/v1?api_key=abc&model=m", "https://h/v1?api_key=****&model=m");
    expect("nats://u:a@h1:4222,nats://u:b@h2:4222", "nats://u:****@h1:4222,nats://u:****@h2:4222");
}

static void test_odd_input(void)
{
    char small[12];

    expect("", "");
    expect("not a url", "not a url");
    expect("u:p@host", "u:p@host"); /* no scheme: not a URL */
    cm_url_redact(NULL, small, sizeof(small));
    CHECK_STR(small, "");
    cm_url_redact("postgresql://svc:secretpw@db/doms", small, sizeof(small));
    CHECK_STR(small, "postgresql:");
    cm_url_redact("nats://svc:secretpw@db", small, sizeof(small));
    CHECK(strstr(small, "secret") == NULL);
}

int main(void)
{
    RUN(test_userinfo);
    RUN(test_query_and_lists);
    RUN(test_odd_input);
    return check_summary();
}
