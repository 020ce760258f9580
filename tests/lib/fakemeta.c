/*
 * fakemeta.c - Meta's Graph API stand-in (see fakemeta.h).
 */
#include "fakemeta.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char seen[256][80]; /* recipients that already had their first (failing) attempt */
static int nseen;
static int sent_seq;

static void token_json(struct fakehttp_response *resp, const char *token, long expires_in)
{
    char body[512];

    if (expires_in > 0)
        snprintf(body, sizeof(body),
                 "{\"access_token\":\"%s\",\"token_type\":\"bearer\",\"expires_in\":%ld}", token,
                 expires_in);
    else
        snprintf(body, sizeof(body), "{\"access_token\":\"%s\",\"id\":\"x\"}", token);
    fakehttp_json(resp, 200, body);
}

/* True the first time a recipient is seen. */
static bool first_time(const char *recipient)
{
    bool first = true;

    pthread_mutex_lock(&lock);
    for (int i = 0; i < nseen; i++) {
        if (strcmp(seen[i], recipient) == 0)
            first = false;
    }
    if (first && nseen < 256)
        snprintf(seen[nseen++], sizeof(seen[0]), "%s", recipient);
    pthread_mutex_unlock(&lock);
    return first;
}

static void send_api(const struct fakehttp_request *req, struct fakehttp_response *resp)
{
    cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
    const char *to =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "recipient"), "id"));
    const char *auth = fakehttp_header(req, "Authorization");
    char ok[256];

    if (to == NULL || auth == NULL || strncmp(auth, "Bearer ", 7) != 0) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) The parameter recipient is required");
    } else if (strncmp(to, "fail-window", 11) == 0) {
        fakehttp_meta_error(resp, 400, 10, 2018278,
                            "(#10) This message is sent outside of allowed window.");
    } else if (strncmp(to, "fail-token", 10) == 0) {
        fakehttp_meta_error(resp, 400, 190, 0, "Invalid OAuth access token.");
    } else if (strncmp(to, "fail-gone", 9) == 0) {
        fakehttp_meta_error(resp, 400, 551, 1545041, "This person isn't available right now.");
    } else if (strncmp(to, "fail-param", 10) == 0) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Invalid parameter");
    } else if (strncmp(to, "down", 4) == 0) {
        fakehttp_json(resp, 503,
                      "{\"error\":{\"message\":\"Service temporarily unavailable\","
                      "\"type\":\"OAuthException\",\"code\":2,"
                      "\"fbtrace_id\":\"AdownXYZ\"}}");
    } else if (strncmp(to, "flaky", 5) == 0 && first_time(to)) {
        fakehttp_reply(resp, 500, "Internal Server Error", 21);
    } else if (strncmp(to, "throttled", 9) == 0 && first_time(to)) {
        fakehttp_meta_error(resp, 400, 613, 0, "Calls to this api have exceeded the rate limit.");
    } else {
        pthread_mutex_lock(&lock);
        snprintf(ok, sizeof(ok), "{\"recipient_id\":\"%s\",\"message_id\":\"m_sent_%d\"}", to,
                 ++sent_seq);
        pthread_mutex_unlock(&lock);
        fakehttp_json(resp, 200, ok);
    }
    cJSON_Delete(body);
}

static void on_request(const struct fakehttp_request *req, struct fakehttp_response *resp,
                       void *arg)
{
    char *access = fakehttp_query_param(req, "access_token");
    char *secret = fakehttp_query_param(req, "client_secret");
    char *fbx = fakehttp_query_param(req, "fb_exchange_token");
    size_t plen = strlen(req->path);
    char token[300];

    (void)arg;
    if (strcmp(req->method, "POST") == 0 && plen > 9 &&
        strcmp(req->path + plen - 9, "/messages") == 0) {
        send_api(req, resp);
    } else if (strcmp(req->path, "/access_token") == 0) {
        if (secret == NULL || strcmp(secret, FAKEMETA_APP_SECRET) != 0 || access == NULL)
            fakehttp_meta_error(resp, 400, 101, 0, "Error validating client secret.");
        else if (strcmp(access, "expired") == 0)
            fakehttp_meta_error(resp, 400, 190, 463, "Session has expired");
        else {
            snprintf(token, sizeof(token), "IGLL-%s", access);
            token_json(resp, token, 5184000);
        }
    } else if (strstr(req->path, "/oauth/access_token") != NULL) {
        if (secret == NULL || strcmp(secret, FAKEMETA_APP_SECRET) != 0 || fbx == NULL)
            fakehttp_meta_error(resp, 400, 101, 0, "Error validating application.");
        else {
            snprintf(token, sizeof(token), "EAAU-%s", fbx);
            token_json(resp, token, 5184000);
        }
    } else if (strstr(req->path, "/debug_token") != NULL) {
        fakehttp_json(resp, 200, "{\"data\":{\"is_valid\":true,\"type\":\"PAGE\"}}");
    } else if (strcmp(req->path, "/refresh_access_token") == 0) {
        snprintf(token, sizeof(token), "%s-r", access ? access : "");
        token_json(resp, token, 5184000);
    } else if (strncmp(req->path, "/v", 2) == 0 && strchr(req->path + 1, '/') != NULL) {
        const char *page = strchr(req->path + 1, '/') + 1;
        if (access == NULL || strncmp(access, "EAAU-", 5) != 0)
            fakehttp_meta_error(resp, 400, 190, 0, "Invalid OAuth access token.");
        else {
            snprintf(token, sizeof(token), "PAGE-%s-%s", page, access + 5);
            token_json(resp, token, 0);
        }
    } else {
        fakehttp_meta_error(resp, 404, 803, 0, "Unknown path");
    }
    free(access);
    free(secret);
    free(fbx);
}

int fakemeta_start(struct fakehttp **out)
{
    return fakehttp_start(out, on_request, NULL);
}

int fakemeta_start_at(struct fakehttp **out, int port)
{
    return fakehttp_start_at(out, port, on_request, NULL);
}

int fakemeta_sends(struct fakehttp *srv)
{
    int n = 0, total = fakehttp_count(srv);

    for (int i = 0; i < total; i++) {
        const struct fakehttp_request *r = fakehttp_get(srv, i);
        size_t plen = strlen(r->path);
        if (strcmp(r->method, "POST") == 0 && plen > 9 &&
            strcmp(r->path + plen - 9, "/messages") == 0)
            n++;
    }
    return n;
}

char *fakemeta_last_send(struct fakehttp *srv, const char *recipient)
{
    char *found = NULL;
    char needle[160];

    snprintf(needle, sizeof(needle), "\"recipient\":{\"id\":\"%s\"}", recipient);
    for (int i = 0; i < fakehttp_count(srv); i++) {
        const struct fakehttp_request *r = fakehttp_get(srv, i);
        if (r->body != NULL && strstr(r->body, needle) != NULL) {
            free(found);
            found = cm_xstrdup(r->body);
        }
    }
    return found;
}
