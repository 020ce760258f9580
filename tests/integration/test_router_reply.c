/*
 * test_router_reply.c - Meta's rules for a reply, checked when the agent sends it rather than
 * found out at Meta later: text limits in characters per platform, a reply refused at once
 * (exit 1, the reason) on an integration that can no longer send, and the appsecret_proof
 * that every Graph call carries. Part of the router test program (router_suite.h).
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "common/crypto.h"
#include "common/mem.h"
#include "router_suite.h"

/* Accounts of this file only: the others' integrations stay connected for later tests. */
#define PAGE_DEAUTH "106000000000071"
#define PAGE_REAUTH "106000000000072"
#define IG_GONE     "17841400000000073"

static char ws[64];
/* The integrations test_reply_limits connects, which test_reply_refused_at_once ends. */
static char *ig_int, *fb_int;

/* One inbound message through ingest, a minute old; returns its conversation (free it). */
static char *inbound(const char *object, const char *account, const char *psid, const char *mid,
                     const char *text)
{
    CHECK_INT(th_stack_message(&st, strcmp(object, "instagram") == 0, account, now_ms_, psid,
                               now_ms_ - 60000, mid, text, NULL),
              200);
    return await_conv_in(ws, text);
}

/* domsctl reply; returns the exit code, *why what it printed (free it). */
static int reply(const char *conv, const char *text, char **why)
{
    const char *args[] = {"reply", conv, "--text", text, NULL};
    cJSON *out = NULL;
    int code = th_stack_domsctl(&st, &out, why, args);

    cJSON_Delete(out);
    return code;
}

/* n copies of the UTF-8 sequence unit (a new string). */
static char *repeat(const char *unit, int n)
{
    size_t len = strlen(unit);
    char *s = cm_xmalloc(len * (size_t)n + 1);

    for (int i = 0; i < n; i++)
        memcpy(s + len * (size_t)i, unit, len);
    s[len * (size_t)n] = '\0';
    return s;
}

/* Connects account with the short-lived token given, as the business would. */
static char *connect(const char *platform, const char *account, const char *token, const char *asid)
{
    char id[64];

    th_stack_connect(&st, ws, platform, account, token, asid, id);
    return cm_xstrdup(id);
}

void test_reply_setup(void)
{
    th_stack_workspace(&st, "Reply rules", false, ws);
}

/*
 * integration list shows, beside the vault's state, when a contact last wrote through each
 * integration (Meta's timestamp, from the router): the inbound messages of a minute ago.
 */
static void check_last_event_at(void)
{
    const char *args[] = {"integration", "list", "--workspace", ws, NULL};
    int64_t at = now_ms_ - 60000;
    time_t secs = (time_t)(at / 1000);
    char want[40], day[32];
    struct tm tm;
    cJSON *list = NULL;
    const cJSON *it;
    int seen = 0;

    gmtime_r(&secs, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(want, sizeof(want), "%s.%03dZ", day, (int)(at % 1000));
    CHECK_INT(th_stack_domsctl(&st, &list, NULL, args), 0);
    cJSON_ArrayForEach(it, list)
    {
        CHECK_STR(th_json_str(it, "last_event_at", NULL), want);
        seen++;
    }
    CHECK_INT(seen, 2);
    cJSON_Delete(list);
}

/*
 * Meta counts characters: 2000 on Messenger and 1000 on Instagram. Two-byte characters up
 * to the limit pass (twice as many bytes as the limit), one character more is refused with
 * the platform's limit, and text that is not UTF-8 is refused.
 */
void test_reply_limits(void)
{
    char *ig_conv, *fb_conv, *text, *why = NULL, *sent;

    ig_int = connect("instagram", IG_GONE, "short-ig-limits", "asid-ig-limits");
    fb_int = connect("messenger", PAGE_DEAUTH, "short-fb-limits", "asid-fb-limits");
    ig_conv = inbound("instagram", IG_GONE, "ig-limits-1", "m_lim_ig", "limits on IG");
    fb_conv = inbound("page", PAGE_DEAUTH, "fb-limits-1", "m_lim_fb", "limits on FB");
    check_last_event_at();

    text = repeat("\xc3\xa9", 1000); /* é */
    CHECK_INT(reply(ig_conv, text, &why), 0);
    free(why);
    CHECK_WAIT((sent = fakemeta_last_send(st.meta, "ig-limits-1")) != NULL, 10000);
    CHECK(sent != NULL && strstr(sent, text) != NULL);
    free(sent);
    free(text);
    text = repeat("a", 1001);
    CHECK_INT(reply(ig_conv, text, &why), 1);
    CHECK_CONTAINS(why, "1001 characters; instagram takes at most 1000");
    free(why);
    free(text);

    text = repeat("\xc3\xa9", 2000);
    CHECK_INT(reply(fb_conv, text, &why), 0);
    free(why);
    /* Sent whole: 4000 bytes reach Meta. */
    CHECK_WAIT((sent = fakemeta_last_send(st.meta, "fb-limits-1")) != NULL, 10000);
    CHECK(sent != NULL && strstr(sent, text) != NULL);
    free(sent);
    free(text);
    text = repeat("\xf0\x9f\x91\x8b", 2001); /* a four-byte character */
    CHECK_INT(reply(fb_conv, text, &why), 1);
    CHECK_CONTAINS(why, "2001 characters; messenger takes at most 2000");
    free(why);
    free(text);

    /* Not UTF-8: an overlong '/', a lone continuation byte, a surrogate. */
    {
        const char *bad[] = {"\xc0\xaf", "ok \x80", "\xed\xa0\x80"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char req[256];
            cJSON *r;
            snprintf(req, sizeof(req),
                     "{\"actor\":\"operator\",\"conversation_id\":\"%s\",\"text\":\"%s\"}", fb_conv,
                     bad[i]);
            r = th_stack_request(&st, "router.reply", req);
            CHECK_STR(th_json_str(r, "error", "code"), "invalid");
            CHECK_CONTAINS(th_json_str(r, "error", "message"), "not valid UTF-8");
            cJSON_Delete(r);
        }
    }
    free(ig_conv);
    free(fb_conv);
}

/*
 * Every Graph call with a token carries its appsecret_proof: the suite's (the exchanges, the
 * Page token read, the sends) and the stand-in requires it, as an app with "Require App
 * Secret" on does; a call without it, or with another token's, is refused with code 100.
 */
void test_appsecret_proof(void)
{
    struct fakehttp *fb = fakemeta_server(st.meta, FAKEMETA_FACEBOOK);
    struct fakehttp *ig = fakemeta_server(st.meta, FAKEMETA_INSTAGRAM);
    const struct fakehttp_request *r;
    const char *page_token = "PAGE-" PAGE_DEAUTH "-short-fb-limits";
    const char *headers[] = {"Authorization: Bearer PAGE-" PAGE_DEAUTH "-short-fb-limits",
                             "Content-Type: application/json", NULL};
    const char *probe = "{\"recipient\":{\"id\":\"proof-probe\"},\"message\":{\"text\":\"x\"}}";
    char want[2 * CM_SHA256_LEN + 1], url[512], *got;
    struct th_resp resp;

    /* The send of test_reply_limits, on each host. */
    r = fakehttp_find(fb, "/v23.0/" PAGE_DEAUTH "/messages");
    CHECK(r != NULL);
    if (r != NULL) {
        fakemeta_proof(page_token, want);
        got = fakehttp_query_param(r, "appsecret_proof");
        CHECK_STR(got, want);
        free(got);
    }
    r = fakehttp_find(ig, "/v23.0/" IG_GONE "/messages");
    CHECK(r != NULL);
    if (r != NULL) {
        fakemeta_proof("IGLL-short-ig-limits", want);
        got = fakehttp_query_param(r, "appsecret_proof");
        CHECK_STR(got, want);
        free(got);
    }
    /* The Page token read at connect, with the long-lived user token. */
    r = fakehttp_find(fb, "/v23.0/" PAGE_DEAUTH);
    CHECK(r != NULL);
    if (r != NULL) {
        fakemeta_proof("EAAU-short-fb-limits", want);
        got = fakehttp_query_param(r, "appsecret_proof");
        CHECK_STR(got, want);
        free(got);
    }

    /* Without the proof, and with another token's, Meta refuses the token itself. */
    snprintf(url, sizeof(url), "%s/v23.0/" PAGE_DEAUTH "/messages",
             fakemeta_url(st.meta, FAKEMETA_FACEBOOK));
    CHECK_INT(th_http(&resp, "POST", url, headers, probe, strlen(probe)), 400);
    CHECK_CONTAINS(resp.body.data, "require an appsecret_proof argument");
    CHECK_CONTAINS(resp.body.data, "\"code\":100");
    th_resp_cleanup(&resp);
    fakemeta_proof("PAGE-" PAGE "-short-router", want);
    snprintf(url, sizeof(url), "%s/v23.0/" PAGE_DEAUTH "/messages?appsecret_proof=%s",
             fakemeta_url(st.meta, FAKEMETA_FACEBOOK), want);
    CHECK_INT(th_http(&resp, "POST", url, headers, probe, strlen(probe)), 400);
    CHECK_CONTAINS(resp.body.data, "Invalid appsecret_proof");
    th_resp_cleanup(&resp);
    fakemeta_proof(page_token, want);
    snprintf(url, sizeof(url), "%s/v23.0/" PAGE_DEAUTH "/messages?appsecret_proof=%s",
             fakemeta_url(st.meta, FAKEMETA_FACEBOOK), want);
    CHECK_INT(th_http(&resp, "POST", url, headers, probe, strlen(probe)), 200);
    th_resp_cleanup(&resp);
}

/* The router's view of an integration's status (a new string; "" once purged). */
static char *route_status(const char *integration)
{
    char q[256], *v;

    snprintf(q, sizeof(q), "SELECT status FROM router.routes WHERE integration_id = '%s'",
             integration);
    v = th_stack_sql(&st, q);
    return v != NULL ? v : cm_xstrdup("");
}

static bool route_is(const char *integration, const char *status)
{
    char *v = route_status(integration);
    bool is = strcmp(v, status) == 0;

    free(v);
    return is;
}

/*
 * Once the router has learnt of the integration's end (from token-vault's event stream,
 * within moments), a reply in conv is refused at once with needle in the reason.
 */
static void expect_refusal(const char *integration, const char *status, const char *conv,
                           const char *needle)
{
    char *why = NULL;

    CHECK_WAIT(route_is(integration, status), 10000);
    CHECK_INT(reply(conv, "Are you still there?", &why), 1);
    CHECK_CONTAINS(why, needle);
    free(why);
}

/*
 * A reply on an integration that can no longer send is refused at once with the reason, and
 * nothing is queued: disconnected, deauthorized (Meta's callback), needs_reauth (Meta no
 * longer takes the token).
 */
void test_reply_refused_at_once(void)
{
    char *reauth = connect("messenger", PAGE_REAUTH, "short-fb-reauth", "asid-fb-reauth");
    char *ig_conv = await_conv_in(ws, "limits on IG");
    char *fb_conv = await_conv_in(ws, "limits on FB");
    char *re_conv = inbound("page", PAGE_REAUTH, "fb-reauth-1", "m_reauth", "reauth soon");
    char q[512], *queued_before, *queued_after;
    cJSON *r;

    queued_before = th_stack_sql(&st, "SELECT count(*) FROM router.messages"
                                      " WHERE direction = 'out'");
    /* Disconnected by the operator. */
    {
        const char *disc[] = {"integration", "disconnect", ig_int, NULL};
        CHECK_INT(th_stack_domsctl(&st, NULL, NULL, disc), 0);
    }
    expect_refusal(ig_int, "disconnected", ig_conv, "was disconnected");

    /* Deauthorized: Meta's callback, relayed by webhook-ingest. */
    r = th_stack_request_as(&st, "webhook-ingest", "vault.integration.deauthorize",
                            "{\"actor\":\"meta\",\"asid\":\"asid-fb-limits\"}");
    CHECK(r != NULL && cJSON_GetObjectItem(r, "result") != NULL);
    cJSON_Delete(r);
    expect_refusal(fb_int, "revoked", fb_conv, "deauthorized");

    /* needs_reauth: the Page token fails its daily check. */
    snprintf(q, sizeof(q),
             "UPDATE vault.integrations SET last_checked_at = now() - interval '2 days'"
             " WHERE id = '%s' RETURNING 1",
             reauth);
    free(th_stack_sql(&st, q));
    fakemeta_revoke(st.meta, "PAGE-" PAGE_REAUTH "-short-fb-reauth");
    r = th_stack_request(&st, "vault.refresh.run", "{\"actor\":\"operator\"}");
    CHECK(r != NULL && cJSON_GetObjectItem(r, "result") != NULL);
    cJSON_Delete(r);
    expect_refusal(reauth, "needs_reauth", re_conv, "needs_reauth");

    /* Nothing was queued by the refusals. */
    queued_after = th_stack_sql(&st, "SELECT count(*) FROM router.messages"
                                     " WHERE direction = 'out'");
    CHECK_STR(queued_after, queued_before);
    free(queued_before);
    free(queued_after);
    free(reauth);
    free(ig_int);
    free(fb_int);
    free(ig_conv);
    free(fb_conv);
    free(re_conv);
}
