/*
 * test_status_page - the data-deletion status page in each state: the words a person reads,
 * escaping of every value, no outside asset. (test_reaper_deletion loads it in Chromium.)
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "status_page.h"

static char *render(const char *json)
{
    cJSON *status = cJSON_Parse(json);
    struct cm_buf b;

    cm_buf_init(&b);
    ingest_status_page(status, &b);
    cJSON_Delete(status);
    return cm_buf_steal(&b);
}

/* No script, no external reference of any kind: the page must stand alone. */
static void check_self_contained(const char *html)
{
    CHECK(strstr(html, "<script") == NULL);
    CHECK(strstr(html, "http://") == NULL && strstr(html, "https://") == NULL);
    CHECK(strstr(html, "src=") == NULL && strstr(html, "<link") == NULL);
    CHECK(strstr(html, "@import") == NULL && strstr(html, "url(") == NULL);
    CHECK_CONTAINS(html, "name=\"viewport\"");
}

static void test_states(void)
{
    char *h;

    h = render("{\"confirmation_code\":\"abcDEF123_-xyzabcDEF123\",\"status\":\"received\","
               "\"received_at\":\"2026-11-29T10:00:00Z\",\"completed_at\":null,\"deleted\":{},"
               "\"reason\":null}");
    CHECK_CONTAINS(h, ">Received<");
    CHECK_CONTAINS(h, "abcDEF123_-xyzabcDEF123");
    CHECK_CONTAINS(h, "2026-11-29 10:00:00 UTC");
    check_self_contained(h);
    free(h);

    h = render("{\"confirmation_code\":\"c\",\"status\":\"in_progress\","
               "\"received_at\":\"2026-11-29T10:00:00Z\",\"completed_at\":null,"
               "\"deleted\":{\"messages\":3},\"reason\":null}");
    CHECK_CONTAINS(h, ">In progress<");
    CHECK(strstr(h, "What was deleted") == NULL);
    free(h);

    h = render("{\"confirmation_code\":\"c\",\"status\":\"completed\","
               "\"received_at\":\"2026-11-29T10:00:00Z\",\"completed_at\":\"2026-11-29T10:00:02Z\","
               "\"deleted\":{\"messages\":12,\"conversations\":2,\"contacts\":1,\"tokens\":0,"
               "\"raw_events\":14},\"reason\":null}");
    CHECK_CONTAINS(h, ">Completed<");
    CHECK_CONTAINS(h, "2026-11-29 10:00:02 UTC");
    CHECK_CONTAINS(h, "<li>Messages: 12</li>");
    CHECK_CONTAINS(h, "<li>Conversations: 2</li>");
    CHECK_CONTAINS(h, "<li>Webhook events: 14</li>");
    CHECK(strstr(h, "Access tokens") == NULL); /* a zero count is not listed */
    check_self_contained(h);
    free(h);

    h = render("{\"confirmation_code\":\"c\",\"status\":\"completed\","
               "\"received_at\":\"2026-11-29T10:00:00Z\",\"completed_at\":\"2026-11-29T10:00:00Z\","
               "\"deleted\":{},\"reason\":\"no data held\"}");
    CHECK_CONTAINS(h, "Completed: no data held");
    CHECK_CONTAINS(h, "We held no data about this person");
    free(h);

    h = render("{\"confirmation_code\":\"c\",\"status\":\"refused\","
               "\"received_at\":\"2026-11-29T10:00:00Z\",\"completed_at\":null,\"deleted\":{},"
               "\"reason\":\"the user id is <b>bad</b> & \\\"odd\\\"\"}");
    CHECK_CONTAINS(h, ">Refused<");
    /* Every value is escaped: a reason cannot inject markup. */
    CHECK_CONTAINS(h, "the user id is &lt;b&gt;bad&lt;/b&gt; &amp; &quot;odd&quot;");
    CHECK(strstr(h, "<b>bad") == NULL);
    free(h);
}

/*
 * Every value that reaches the page is escaped: the code, the reason, both times (also one
 * merely shaped like a time), the state. Nothing of the hostile values stands as markup, and
 * no attribute can be closed by a quote.
 */
static void test_every_value_escaped(void)
{
    static const char *const states[] = {"received", "in_progress", "completed", "refused",
                                         "<script>alert(\"s\")</script>"};
    char json[1024];
    char *h;

    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        cJSON *o = cJSON_CreateObject();
        char *text;
        cJSON_AddStringToObject(o, "confirmation_code", "<script>alert('c')</script>\"x");
        cJSON_AddStringToObject(o, "status", states[i]);
        /* Both 20 characters with a T and a Z where a time has them. */
        cJSON_AddStringToObject(o, "received_at", "<script>abT<b>'\"</bZ");
        cJSON_AddStringToObject(o, "completed_at", "2026-11-29T<b>'\"</bZ");
        cJSON_AddStringToObject(o, "reason", "<script>alert(\"r\")</script> & 'q'");
        cJSON_AddItemToObject(o, "deleted", cJSON_CreateObject());
        text = cJSON_PrintUnformatted(o);
        snprintf(json, sizeof(json), "%s", text);
        cJSON_free(text);
        cJSON_Delete(o);
        h = render(json);
        CHECK_MSG(strstr(h, "<script") == NULL, "state %s: a script tag got through", states[i]);
        CHECK_MSG(strstr(h, "<b>") == NULL, "state %s: markup in a time got through", states[i]);
        CHECK_MSG(strstr(h, "'c'") == NULL && strstr(h, "\"x") == NULL,
                  "state %s: a quote of the code got through", states[i]);
        CHECK_CONTAINS(h, "&lt;script&gt;alert(&#39;c&#39;)&lt;/script&gt;&quot;x");
        if (strcmp(states[i], "refused") == 0)
            CHECK_CONTAINS(h,
                           "&lt;script&gt;alert(&quot;r&quot;)&lt;/script&gt; &amp; &#39;q&#39;");
        if (strcmp(states[i], "completed") == 0)
            CHECK_CONTAINS(h, "2026-11-29T&lt;b&gt;&#39;&quot;&lt;/bZ");
        CHECK_CONTAINS(h, "&lt;script&gt;abT&lt;b&gt;&#39;&quot;&lt;/bZ");
        free(h);
    }
}

static void test_unknown(void)
{
    struct cm_buf b;

    cm_buf_init(&b);
    ingest_status_page_unknown(&b);
    CHECK_CONTAINS(b.data, "No data deletion request has this confirmation code");
    check_self_contained(b.data);
    cm_buf_cleanup(&b);
}

int main(void)
{
    RUN(test_states);
    RUN(test_every_value_escaped);
    RUN(test_unknown);
    return check_summary();
}
