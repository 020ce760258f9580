/*
 * test_vault_accounts.c - a connected account's people and life at Meta: who connected it
 * (GET /me, kept as a blind index), Meta's deauthorize callback, its webhook subscription
 * (made at connect, restored when Meta forgot it, removed at disconnect), and the find and
 * purge a deletion runs. Part of the vault test program (vault_suite.h).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "fakehttp.h"
#include "vault_suite.h"

/* domsctl integration check I: its result (free it), exit code in *code. */
static cJSON *check_integration(const char *id, int *code, char **text)
{
    const char *args[] = {"integration", "check", id, NULL};
    cJSON *out = NULL;

    *code = domsctl(&out, text, args);
    return out;
}

/*
 * The webhook subscription: refused for a missing permission (connected all the same, the
 * reason shown), restored when Meta forgot it, by integration check and by the scheduled
 * pass, and removed by a disconnect (test_disconnect).
 */
void test_subscription(void)
{
    const char *connect[] = {"integration", "connect",       "--workspace", "ws_1",
                             "--platform",  "messenger",     "--account",   "998000000000001",
                             "--token",     "short-no-perm", NULL};
    const char *list_args[] = {"integration", "list", "--workspace", "ws_1", NULL};
    cJSON *out = NULL, *r;
    char *id, *sub, *fields, *text = NULL, q[256];
    int code;

    sub = connect_ok("messenger", "106000000000222", "short-sub", NULL, NULL);
    login("messenger", "998000000000001", "short-no-perm");
    CHECK_INT(domsctl(&out, NULL, connect), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(out, "subscribed")));
    CHECK_CONTAINS(str_at(out, "subscription_error", NULL), "pages_messaging");
    id = cm_xstrdup(str_at(out, "integration_id", NULL) ? str_at(out, "integration_id", NULL)
                                                        : "none");
    cJSON_Delete(out);
    CHECK_INT(domsctl(&out, NULL, list_args), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(find_integration(out, id), "subscribed")));
    CHECK_CONTAINS(str_at(find_integration(out, id), "subscription_error", NULL), "(#200)");
    cJSON_Delete(out);
    /* Checking it now says the same, with Meta's reason, exit 1. */
    cJSON_Delete(check_integration(id, &code, &text));
    CHECK_INT(code, 1);
    CHECK_CONTAINS(text, "pages_messaging");
    free(text);
    text = NULL;

    /* Meta forgets the Page's subscription: integration check restores it. */
    fakemeta_forget_subscription(meta, "106000000000222");
    out = check_integration(sub, &code, NULL);
    CHECK_INT(code, 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(out, "subscribed")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(out, "resubscribed")));
    cJSON_Delete(out);
    fields = fakemeta_subscription(meta, "106000000000222");
    CHECK_CONTAINS(fields, "messages");
    free(fields);
    out = check_integration(sub, &code, NULL);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(out, "resubscribed")));
    cJSON_Delete(out);

    /* And the scheduled pass, once the last check is older than its interval. */
    fakemeta_forget_subscription(meta, "106000000000222");
    snprintf(q, sizeof(q),
             "UPDATE vault.integrations SET subscription_checked_at = now() - interval '7 hours'"
             " WHERE id = '%s' RETURNING 1",
             sub);
    update_one(q);
    r = request("vault.refresh.run", "{}");
    CHECK(result_num(r, "subscriptions_checked") >= 1);
    cJSON_Delete(r);
    fields = fakemeta_subscription(meta, "106000000000222");
    CHECK_CONTAINS(fields, "messages");
    free(fields);

    /* A disconnect removes the subscription at Meta. */
    {
        const char *disc[] = {"integration", "disconnect", sub, NULL};
        CHECK_INT(domsctl(NULL, NULL, disc), 0);
        fields = fakemeta_subscription(meta, "106000000000222");
        CHECK_MSG(fields == NULL, "the Page is still subscribed after its disconnect: %s", fields);
        free(fields);
    }
    free(id);
    free(sub);
}

/* The integrations whose connector has app-scoped id asid, by vault.integration.find. */
static int found_for(const char *asid, const char *want_id)
{
    char body[160];
    cJSON *r, *list;
    int n;

    snprintf(body, sizeof(body), "{\"asid\":\"%s\"}", asid);
    r = request("vault.integration.find", body);
    list = cJSON_GetObjectItem(r, "result");
    n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (want_id != NULL && n == 1)
        CHECK_STR(str_at(cJSON_GetArrayItem(list, 0), "integration_id", NULL), want_id);
    cJSON_Delete(r);
    return n;
}

/*
 * Who connected is learnt from their token (GET /me with appsecret_proof), not typed: a
 * deletion or deauthorize callback for that person reaches what they connected. --asid
 * overrides it. Only a blind index is stored (test_no_plaintext scans for the ids).
 */
void test_who_connected(void)
{
    const char *ig_args[] = {"integration", "connect",     "--workspace", "ws_1",
                             "--platform",  "instagram",   "--account",   "17841400000000011",
                             "--token",     "short-ig-me", NULL};
    const char *typed_args[] = {"integration", "connect",        "--workspace", "ws_1",
                                "--platform",  "instagram",      "--account",   "17841400000000012",
                                "--token",     "short-ig-typed", "--asid",      "asid-typed",
                                NULL};
    struct fakehttp *ig = fakemeta_server(meta, FAKEMETA_INSTAGRAM);
    const struct fakehttp_request *req;
    cJSON *out = NULL, *r;
    char *ig_me, *typed;

    /* The Page of test_connect_both, connected without --asid: its user token's person. */
    CHECK_INT(found_for("u-short-fb-1", page_id), 1);

    login("instagram", "17841400000000011", "short-ig-me");
    CHECK_INT(domsctl(&out, NULL, ig_args), 0);
    CHECK_STR(str_at(out, "connected_by", NULL), "meta");
    ig_me = cm_xstrdup(str_at(out, "integration_id", NULL) ? str_at(out, "integration_id", NULL)
                                                           : "none");
    cJSON_Delete(out);
    /* Asked of Instagram's host, with the long-lived token and its proof. */
    req = fakehttp_find(ig, "/v23.0/me");
    CHECK(req != NULL);
    if (req != NULL) {
        char *p = fakehttp_query_param(req, "appsecret_proof");
        CHECK(p != NULL && strlen(p) == 64);
        free(p);
    }
    CHECK_INT(found_for("u-short-ig-me", ig_me), 1);

    login("instagram", "17841400000000012", "short-ig-typed");
    CHECK_INT(domsctl(&out, NULL, typed_args), 0);
    CHECK_STR(str_at(out, "connected_by", NULL), "operator");
    typed = cm_xstrdup(str_at(out, "integration_id", NULL) ? str_at(out, "integration_id", NULL)
                                                           : "none");
    cJSON_Delete(out);
    CHECK_INT(found_for("asid-typed", typed), 1);
    CHECK_INT(found_for("u-short-ig-typed", NULL), 0);

    /* Meta's deauthorize callback for the person found by /me ends what they connected. */
    r = request("vault.integration.deauthorize", "{\"asid\":\"u-short-ig-me\",\"actor\":\"meta\"}");
    CHECK_INT(result_num(r, "revoked"), 1);
    cJSON_Delete(r);
    free(ig_me);
    free(typed);
}

void test_deauthorize(void)
{
    cJSON *r =
        request("vault.integration.deauthorize", "{\"asid\":\"asid-77\",\"actor\":\"meta\"}");
    char *tok, *code = NULL;

    /* ig_id carried asid-77 but is already disconnected: nothing left to revoke there. */
    CHECK(cJSON_GetObjectItem(r, "result") != NULL);
    cJSON_Delete(r);
    {
        char *id = connect_ok("instagram", "17841400000000009", "short-deauth", "asid-88", NULL);
        r = request("vault.integration.deauthorize", "{\"asid\":\"asid-88\",\"actor\":\"meta\"}");
        CHECK_INT(result_num(r, "revoked"), 1);
        cJSON_Delete(r);
        tok = token_of(id, "conversation-router", &code);
        CHECK(tok == NULL);
        CHECK_STR(code, "refused");
        free(code);
        free(id);
    }
}

void test_find_and_purge(void)
{
    cJSON *r = request("vault.integration.find", "{\"asid\":\"asid-77\"}");
    const char *list_args[] = {"integration", "list", "--workspace", "ws_1", NULL};
    cJSON *list = NULL;
    char *left;

    /* asid-77's integration is disconnected but still held, and was reconnected since by
     * another person (u-short-ig-2): find still names it for the first one. */
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(r, "result")), 1);
    CHECK_STR(
        str_at(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "result"), 0), "integration_id", NULL),
        ig_id);
    cJSON_Delete(r);

    r = request("vault.purge", "{\"actor\":\"retention-reaper\",\"scope\":\"workspace\","
                               "\"workspace_id\":\"ws_1\"}");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "deleted"), "integrations")) >=
          6);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "remaining"),
              "integrations")) == 0);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(
              cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "remaining"), "tokens")) == 0);
    cJSON_Delete(r);
    CHECK_INT(domsctl(&list, NULL, list_args), 0);
    CHECK_INT(cJSON_GetArraySize(list), 0);
    cJSON_Delete(list);
    /* Every integration's key is gone; the vault's own index key (asid.c) stays. */
    left = vault_sql(
        "SELECT (SELECT count(*) FROM vault.tokens) + (SELECT count(*) FROM vault.data_keys"
        " WHERE key_id <> 'vault:index')");
    CHECK_STR(left, "0");
    free(left);
    /* Repeating it is harmless. */
    r = request("vault.purge", "{\"scope\":\"workspace\",\"workspace_id\":\"ws_1\"}");
    CHECK(cJSON_GetObjectItem(r, "result") != NULL);
    cJSON_Delete(r);
    r = request("vault.purge", "{\"scope\":\"everything\"}");
    CHECK_STR(str_at(r, "error", "code"), "invalid");
    cJSON_Delete(r);
    /* Ids are exact: a malformed one is refused, never used. */
    r = request("vault.purge", "{\"scope\":\"workspace\",\"workspace_id\":\"ws_%\"}");
    CHECK_STR(str_at(r, "error", "code"), "invalid");
    cJSON_Delete(r);
    r = request("vault.purge", "{\"scope\":\"integration\",\"integration_ids\":[\"a:b\"]}");
    CHECK_STR(str_at(r, "error", "code"), "invalid");
    cJSON_Delete(r);
    r = request("vault.integration.find", "{\"asid\":\"1 OR 1\"}");
    CHECK_STR(str_at(r, "error", "code"), "invalid");
    cJSON_Delete(r);
}
