/*
 * fakemeta_profile.c - Meta's User Profile API on both hosts (see fakemeta.h):
 *   graph.facebook.com  GET /vX/<PSID>?fields=first_name,last_name,profile_pic  (Page token)
 *   graph.instagram.com GET /vX/<IGSID>?fields=name,username,profile_pic   (Instagram token)
 * each with the token as "Authorization: Bearer" or access_token, and its appsecret_proof.
 * Each host knows only its own node's fields, as Meta does: a field of the other platform is
 * code 100 "Tried accessing nonexisting field". The person's id scripts what Meta answers.
 * Handlers run on the listeners' threads; the shared state is fakemeta.c's (fakemeta_int.h).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakemeta.h"
#include "fakemeta_int.h"

/* The fields each platform's user node has (Messenger: User; Instagram: InstagramUser). */
static const char fb_fields[] = ",id,name,first_name,last_name,profile_pic,locale,timezone,gender,";
static const char ig_fields[] = ",id,name,username,profile_pic,follower_count,"
                                "is_user_follow_business,is_business_follow_user,"
                                "is_verified_user,";

/* Is the request a profile read (fields of a person) rather than a Page token read? */
static bool asks_profile(const char *fields)
{
    return fields != NULL && strstr(fields, "access_token") == NULL &&
           (strstr(fields, "profile_pic") != NULL || strstr(fields, "first_name") != NULL ||
            strstr(fields, "username") != NULL);
}

/* How many profile reads of id the host answered before this one. */
static int asked_before(struct fakemeta *m, int host, const char *id)
{
    struct fakehttp *srv = m->srv[host == FAKEMETA_INSTAGRAM ? 1 : 0];
    size_t idlen = strlen(id);
    int n = 0, total = fakehttp_count(srv);

    for (int i = 0; i < total; i++) {
        const struct fakehttp_request *r = fakehttp_get(srv, i);
        size_t plen = r != NULL ? strlen(r->path) : 0;
        if (r != NULL && plen > idlen && strcmp(r->path + plen - idlen, id) == 0 &&
            r->path[plen - idlen - 1] == '/' && strstr(r->query, "profile_pic") != NULL)
            n++;
    }
    return n;
}

/* Adds field f of person id to out, as the fake person's profile has it. */
static void add_field(cJSON *out, bool ig, const char *id, const char *f)
{
    char v[400];

    if (strcmp(f, "id") == 0) {
        cJSON_AddStringToObject(out, "id", id);
    } else if (strcmp(f, "first_name") == 0) {
        cJSON_AddStringToObject(out, f, "Ada");
    } else if (strcmp(f, "last_name") == 0) {
        snprintf(v, sizeof(v), "Lovelace-%s", id);
        cJSON_AddStringToObject(out, f, v);
    } else if (strcmp(f, "name") == 0 && strncmp(id, "nameless", 8) != 0) {
        /* Instagram's name is null (left out) for a person who set none. */
        snprintf(v, sizeof(v), ig ? "Grace Hopper-%s" : "Ada Lovelace-%s", id);
        cJSON_AddStringToObject(out, f, v);
    } else if (strcmp(f, "username") == 0) {
        snprintf(v, sizeof(v), "grace.%s", id);
        cJSON_AddStringToObject(out, f, v);
    } else if (strcmp(f, "profile_pic") == 0) {
        if (ig)
            snprintf(v, sizeof(v),
                     "https://scontent-iad3-1.cdninstagram.com/v/t51.2885-19/%s_n.jpg"
                     "?_nc_ht=scontent-iad3-1.cdninstagram.com&oh=00_AfFake&oe=6790A1B2",
                     id);
        else
            snprintf(v, sizeof(v),
                     "https://platform-lookaside.fbsbx.com/platform/profilepic/?psid=%s"
                     "&width=1024&ext=1767225600&hash=AbFakeHash",
                     id);
        cJSON_AddStringToObject(out, f, v);
    }
}

/* The person's fields, or Meta's error for a field the node lacks; true when answered 200. */
static void answer_profile(struct fakehttp_response *resp, bool ig, const char *id,
                           const char *fields)
{
    char list[512], *save = NULL, *f, want[80];
    cJSON *out = cJSON_CreateObject();
    char *text;

    snprintf(list, sizeof(list), "%s", fields);
    for (f = strtok_r(list, ",", &save); f != NULL; f = strtok_r(NULL, ",", &save)) {
        snprintf(want, sizeof(want), ",%s,", f);
        if (strstr(ig ? ig_fields : fb_fields, want) == NULL) {
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "(#100) Tried accessing nonexisting field (%s) on node type (%s)", f,
                     ig ? "InstagramUser" : "User");
            fakehttp_meta_error(resp, 400, 100, 0, msg);
            cJSON_Delete(out);
            return;
        }
        add_field(out, ig, id, f);
    }
    if (cJSON_GetObjectItem(out, "id") == NULL)
        cJSON_AddStringToObject(out, "id", id);
    text = cJSON_PrintUnformatted(out);
    fakehttp_json(resp, 200, text);
    cJSON_free(text);
    cJSON_Delete(out);
}

/* What the person's id scripts, once the token and the proof passed (fakemeta.h). */
static void scripted(struct fakemeta *m, int host, bool ig, const char *id, const char *fields,
                     struct fakehttp_response *resp)
{
    char msg[300];

    if (strncmp(id, "noconsent", 9) == 0) {
        if (ig)
            fakehttp_meta_error(resp, 400, 230, 0,
                                "User consent is required to access user profile");
        else
            fakehttp_meta_error(resp, 400, 100, 2018218, "No profile available for this user.");
    } else if (strncmp(id, "unknown", 7) == 0) {
        snprintf(msg, sizeof(msg),
                 "Unsupported get request. Object with ID '%s' does not exist, cannot be loaded "
                 "due to missing permissions, or does not support this operation. Please read "
                 "the Graph API documentation at https://developers.facebook.com/docs/graph-api",
                 id);
        fakehttp_meta_error(resp, 400, 100, 33, msg);
    } else if (strncmp(id, "throttled", 9) == 0 && asked_before(m, host, id) < 2) {
        fakehttp_json(resp, 400,
                      "{\"error\":{\"message\":\"(#613) Calls to this api have exceeded the rate "
                      "limit.\",\"type\":\"OAuthException\",\"is_transient\":true,\"code\":613,"
                      "\"fbtrace_id\":\"AFakeTrace613\"}}");
    } else {
        answer_profile(resp, ig, id, fields);
    }
}

bool fm_profile(struct fakemeta *m, int host, const char *id, const struct fakehttp_request *req,
                struct fakehttp_response *resp)
{
    char *fields = fakehttp_query_param(req, "fields");
    char *query_token = fakehttp_query_param(req, "access_token");
    const char *auth = fakehttp_header(req, "Authorization");
    const char *token = auth != NULL && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : query_token;
    unsigned mask = host == FAKEMETA_FACEBOOK    ? 1u << FAKEMETA_PAGE
                    : host == FAKEMETA_INSTAGRAM ? 1u << FAKEMETA_IG_LONG
                                                 : (1u << FAKEMETA_PAGE) | (1u << FAKEMETA_IG_LONG);
    bool mine = asks_profile(fields);
    struct token t;

    if (!mine) {
        /* not a profile read: the caller routes it on */
    } else if (token == NULL) {
        fakehttp_meta_error(resp, 400, 2500, 0,
                            "An active access token must be used to query information about "
                            "the current user.");
    } else if (fm_valid_token(m, host, token, mask, resp, &t) && fm_proof_ok(m, req, token, resp)) {
        bool ig = t.kind == FAKEMETA_IG_LONG;
        fm_usage_headers(m, resp, t.account, ig ? "instagram" : "messenger");
        scripted(m, ig ? FAKEMETA_INSTAGRAM : FAKEMETA_FACEBOOK, ig, id, fields, resp);
    }
    free(fields);
    free(query_token);
    return mine;
}

int fakemeta_profile_reads(struct fakemeta *m, const char *id, long long *at_ms, int max)
{
    int n = 0;

    for (int h = 0; h < 2; h++) {
        struct fakehttp *srv = m->srv[h];
        if (h == 1 && srv == m->srv[0])
            break;
        for (int i = 0; i < fakehttp_count(srv); i++) {
            const struct fakehttp_request *r = fakehttp_get(srv, i);
            const char *slash = r != NULL ? strrchr(r->path, '/') : NULL;
            if (slash == NULL || strcmp(r->method, "GET") != 0 ||
                strstr(r->query, "profile_pic") == NULL ||
                (id != NULL && strcmp(slash + 1, id) != 0))
                continue;
            if (at_ms != NULL && n < max)
                at_ms[n] = r->at_ms;
            n++;
        }
    }
    return n;
}
