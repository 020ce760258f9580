/*
 * fakemeta_account.c - what the stand-in says about a token and an account (see
 * fakemeta.h): whether a token is valid (debug_token), who granted it (GET /me), and the
 * app's webhook subscription of an account (subscribed_apps).
 * Handlers run on the listeners' threads, under fakemeta.c's lock (fakemeta_int.h).
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "fakemeta.h"
#include "fakemeta_int.h"

/* GET /vX/debug_token?input_token=...&access_token=<app id>|<app secret> */
void fm_debug_token(struct fakemeta *m, const struct fakehttp_request *req,
                    struct fakehttp_response *resp)
{
    static const char *const types[] = {"USER", "USER", "PAGE", "USER", "USER"};
    char *access = fakehttp_query_param(req, "access_token");
    char *input = fakehttp_query_param(req, "input_token");
    struct token t = {0};
    bool found = false;
    int64_t now = 0;
    cJSON *out, *data, *scopes;
    char *text;

    if (access == NULL || strcmp(access, FAKEMETA_APP_ID "|" FAKEMETA_APP_SECRET) != 0) {
        fakehttp_meta_error(resp, 400, 190, 0, INVALID_190);
        goto done;
    }
    if (!fm_proof_ok(m, req, access, resp))
        goto done;
    if (input == NULL) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) The parameter input_token is required");
        goto done;
    }
    pthread_mutex_lock(&m->lock);
    if (fm_find_locked(m, input) != NULL) {
        t = *fm_find_locked(m, input);
        found = fm_host_of(t.kind) == FAKEMETA_FACEBOOK;
    }
    now = fm_now_locked(m);
    pthread_mutex_unlock(&m->lock);
    out = cJSON_CreateObject();
    data = cJSON_AddObjectToObject(out, "data");
    if (!found) {
        cJSON *err = cJSON_AddObjectToObject(data, "error");
        cJSON_AddNumberToObject(err, "code", 190);
        cJSON_AddStringToObject(err, "message", INVALID_190);
        cJSON_AddBoolToObject(data, "is_valid", false);
        cJSON_AddArrayToObject(data, "scopes");
    } else {
        bool expired = t.expires_at != 0 && now >= t.expires_at;
        cJSON_AddStringToObject(data, "app_id", FAKEMETA_APP_ID);
        cJSON_AddStringToObject(data, "type", types[t.kind]);
        cJSON_AddStringToObject(data, "application", "Doms test app");
        cJSON_AddNumberToObject(data, "data_access_expires_at", (double)(t.issued_at + 7776000));
        cJSON_AddNumberToObject(data, "expires_at", (double)t.expires_at);
        cJSON_AddBoolToObject(data, "is_valid", !t.revoked && !expired);
        cJSON_AddNumberToObject(data, "issued_at", (double)t.issued_at);
        if (t.kind == FAKEMETA_PAGE)
            cJSON_AddStringToObject(data, "profile_id", t.account);
        scopes = cJSON_AddArrayToObject(data, "scopes");
        cJSON_AddItemToArray(scopes, cJSON_CreateString("pages_messaging"));
        cJSON_AddItemToArray(scopes, cJSON_CreateString("pages_manage_metadata"));
        cJSON_AddItemToArray(scopes, cJSON_CreateString("pages_show_list"));
        cJSON_AddStringToObject(data, "user_id", "10000000000001");
        if (t.revoked || expired) {
            cJSON *err = cJSON_AddObjectToObject(data, "error");
            cJSON_AddNumberToObject(err, "code", 190);
            cJSON_AddStringToObject(err, "message",
                                    t.revoked ? "Error validating access token: The session has "
                                                "been invalidated."
                                              : "Error validating access token: Session has "
                                                "expired.");
            cJSON_AddNumberToObject(err, "subcode", t.revoked ? 460 : 463);
        }
    }
    text = cJSON_PrintUnformatted(out);
    fakehttp_json(resp, 200, text);
    cJSON_free(text);
    cJSON_Delete(out);
done:
    free(access);
    free(input);
}

/*
 * GET /vX/me?fields=...&access_token: who granted a user token (Facebook host: a user
 * token; Instagram host: an Instagram token), by their app-scoped id.
 */
void fm_whoami(struct fakemeta *m, int host, const struct fakehttp_request *req,
               struct fakehttp_response *resp)
{
    char *access = fakehttp_query_param(req, "access_token");
    unsigned mask;
    struct token t;

    if (host == BOTH_HOSTS) {
        /* One listener for both (fakemeta_server): the token's kind names its host. */
        struct token *found;
        pthread_mutex_lock(&m->lock);
        found = fm_find_locked(m, access);
        host = found != NULL ? (int)fm_host_of(found->kind) : FAKEMETA_FACEBOOK;
        pthread_mutex_unlock(&m->lock);
    }
    mask = host == FAKEMETA_INSTAGRAM ? (1u << FAKEMETA_IG_SHORT) | (1u << FAKEMETA_IG_LONG)
                                      : (1u << FAKEMETA_USER_SHORT) | (1u << FAKEMETA_USER_LONG);
    if (access == NULL) {
        fakehttp_meta_error(resp, 400, 2500, 0,
                            "An active access token must be used to query information about "
                            "the current user.");
    } else if (fm_valid_token(m, host, access, mask, resp, &t) &&
               fm_proof_ok(m, req, access, resp)) {
        char body[256];
        if (host == FAKEMETA_INSTAGRAM)
            snprintf(body, sizeof(body), "{\"id\":\"%s\",\"user_id\":\"%s\"}", t.person, t.account);
        else
            snprintf(body, sizeof(body), "{\"id\":\"%s\",\"name\":\"Test User\"}", t.person);
        fakehttp_json(resp, 200, body);
    }
    free(access);
}

/* --- webhook subscriptions -------------------------------------------------------------- */

static int sub_find_locked(struct fakemeta *m, const char *account)
{
    for (int i = 0; i < m->nsubs; i++) {
        if (strcmp(m->subs[i].account, account) == 0)
            return i;
    }
    return -1;
}

static void sub_remove_locked(struct fakemeta *m, const char *account)
{
    int i = sub_find_locked(m, account);

    if (i >= 0)
        m->subs[i] = m->subs[--m->nsubs];
}

/*
 * GET, POST and DELETE /vX/<account>/subscribed_apps: the app's webhook subscription for a
 * Page (its Page token) or an Instagram account (/me or its id, with its Instagram token).
 */
void fm_subscribed_apps(struct fakemeta *m, int host, const char *account,
                        const struct fakehttp_request *req, struct fakehttp_response *resp)
{
    char *token = fakehttp_query_param(req, "access_token");
    char *fields = fakehttp_query_param(req, "subscribed_fields");
    unsigned mask = host == FAKEMETA_INSTAGRAM ? 1u << FAKEMETA_IG_LONG : 1u << FAKEMETA_PAGE;
    struct token t;

    if (!fm_account_token(m, host, token, mask, account, req, resp, &t)) {
        /* answered */
    } else if (strncmp(t.account, "998", 3) == 0) {
        /* Scripted: the business did not grant what subscribing needs. */
        fakehttp_meta_error(resp, 403, 200, 0,
                            "(#200) To subscribe to the messages field, one of these permissions "
                            "is needed: pages_messaging");
    } else {
        const char *acct = t.account[0] != '\0' ? t.account : account;
        fm_usage_headers(m, resp, acct, host == FAKEMETA_INSTAGRAM ? "instagram" : "pages");
        pthread_mutex_lock(&m->lock);
        if (strcmp(req->method, "POST") == 0 && (fields == NULL || fields[0] == '\0')) {
            fakehttp_meta_error(resp, 400, 100, 0,
                                "(#100) The parameter subscribed_fields is required");
        } else if (strcmp(req->method, "POST") == 0) {
            int i = sub_find_locked(m, acct);
            if (i < 0 && m->nsubs < MAX_SUBS)
                i = m->nsubs++;
            if (i >= 0) {
                snprintf(m->subs[i].account, sizeof(m->subs[i].account), "%s", acct);
                snprintf(m->subs[i].fields, sizeof(m->subs[i].fields), "%s", fields);
            }
            fakehttp_json(resp, 200, "{\"success\":true}");
        } else if (strcmp(req->method, "DELETE") == 0) {
            sub_remove_locked(m, acct);
            fakehttp_json(resp, 200, "{\"success\":true}");
        } else {
            int i = sub_find_locked(m, acct);
            cJSON *out = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(out, "data");
            char *text;
            if (i >= 0) {
                cJSON *app = cJSON_CreateObject(), *list;
                char copy[256], *save = NULL;
                cJSON_AddStringToObject(app, "id", FAKEMETA_APP_ID);
                cJSON_AddStringToObject(app, "name", "Test App");
                list = cJSON_AddArrayToObject(app, "subscribed_fields");
                snprintf(copy, sizeof(copy), "%s", m->subs[i].fields);
                for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save))
                    cJSON_AddItemToArray(list, cJSON_CreateString(f));
                cJSON_AddItemToArray(data, app);
            }
            text = cJSON_PrintUnformatted(out);
            fakehttp_json(resp, 200, text);
            cJSON_free(text);
            cJSON_Delete(out);
        }
        pthread_mutex_unlock(&m->lock);
    }
    free(token);
    free(fields);
}

char *fakemeta_subscription(struct fakemeta *m, const char *account)
{
    char *fields = NULL;
    int i;

    pthread_mutex_lock(&m->lock);
    i = sub_find_locked(m, account);
    if (i >= 0)
        fields = cm_xstrdup(m->subs[i].fields);
    pthread_mutex_unlock(&m->lock);
    return fields;
}

void fakemeta_forget_subscription(struct fakemeta *m, const char *account)
{
    pthread_mutex_lock(&m->lock);
    sub_remove_locked(m, account);
    pthread_mutex_unlock(&m->lock);
}
