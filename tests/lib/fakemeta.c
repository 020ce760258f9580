/*
 * fakemeta.c - Meta's Graph API stand-in (see fakemeta.h).
 *
 * One token table serves both hosts; each token belongs to the host that issued it, and a
 * listener answers only with its own host's endpoints and tokens. With one listener for
 * both (fakemeta_server PORT) the path decides the host of a token endpoint and the token
 * the host of a Send API call. Handlers run on the listeners' threads; the table is
 * guarded by one lock.
 */
#include "fakemeta.h"
#include "fakemeta_int.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/mem.h"

#define SIXTY_DAYS 5184000
#define ONE_HOUR   3600

int64_t fm_now_locked(const struct fakemeta *m)
{
    return (int64_t)time(NULL) + m->clock_offset;
}

enum fakemeta_host fm_host_of(enum fakemeta_kind kind)
{
    return kind == FAKEMETA_IG_SHORT || kind == FAKEMETA_IG_LONG ? FAKEMETA_INSTAGRAM
                                                                 : FAKEMETA_FACEBOOK;
}

struct token *fm_find_locked(struct fakemeta *m, const char *value)
{
    for (int i = 0; value != NULL && i < m->ntokens; i++) {
        if (strcmp(m->tokens[i].value, value) == 0)
            return &m->tokens[i];
    }
    return NULL;
}

static void issue_locked(struct fakemeta *m, enum fakemeta_kind kind, const char *value,
                         const char *account, int64_t lifetime)
{
    struct token *t = fm_find_locked(m, value);

    if (t == NULL && m->ntokens < MAX_TOKENS)
        t = &m->tokens[m->ntokens++];
    if (t == NULL)
        return;
    memset(t, 0, sizeof(*t));
    snprintf(t->value, sizeof(t->value), "%s", value);
    snprintf(t->account, sizeof(t->account), "%s", account != NULL ? account : "");
    snprintf(t->person, sizeof(t->person), "u-%.60s", value);
    t->kind = kind;
    t->issued_at = fm_now_locked(m);
    t->expires_at = lifetime > 0 ? t->issued_at + lifetime : 0;
}

/* The token derived from another (exchanged, refreshed, a Page's) is the same person's. */
static void inherit_person(struct fakemeta *m, const char *derived, const char *from)
{
    struct token *d, *f;

    pthread_mutex_lock(&m->lock);
    d = fm_find_locked(m, derived);
    f = fm_find_locked(m, from);
    if (d != NULL && f != NULL)
        snprintf(d->person, sizeof(d->person), "%s", f->person);
    pthread_mutex_unlock(&m->lock);
}

static int64_t lifetime_of(enum fakemeta_kind kind)
{
    return kind == FAKEMETA_USER_LONG || kind == FAKEMETA_IG_LONG ? SIXTY_DAYS
           : kind == FAKEMETA_PAGE                                ? 0
                                                                  : ONE_HOUR;
}

/* --- answers --------------------------------------------------------------------------- */

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

/* Meta's usage headers: X-App-Usage always, the business use case one for account. */
void fm_usage_headers(struct fakemeta *m, struct fakehttp_response *resp, const char *account,
                      const char *use_case)
{
    char v[384];
    long pct;

    pthread_mutex_lock(&m->lock);
    m->calls++;
    pct = m->throttle_code != 0 ? 100 : (m->calls < 99 ? m->calls : 99);
    pthread_mutex_unlock(&m->lock);
    snprintf(v, sizeof(v), "{\"call_count\":%ld,\"total_time\":%ld,\"total_cputime\":%ld}", pct,
             pct / 2, pct / 2);
    fakehttp_set_header(resp, "X-App-Usage", v);
    if (account != NULL && account[0] != '\0') {
        snprintf(v, sizeof(v),
                 "{\"%s\":[{\"type\":\"%s\",\"call_count\":%ld,\"total_cputime\":%ld,"
                 "\"total_time\":%ld,\"estimated_time_to_regain_access\":%d}]}",
                 account, use_case, pct, pct / 2, pct / 2, pct == 100 ? 5 : 0);
        fakehttp_set_header(resp, "X-Business-Use-Case-Usage", v);
    }
}

/* Whose budget a call spends: the app's (app token), a user's, or a Page's (Send API). */
enum scope { SCOPE_APP, SCOPE_USER, SCOPE_PAGE };

/* True when throttling code applies to a call of scope: 4 to every call, 17 to calls with
 * a user token, 32 and 613 to the Send API. */
static bool applies(int code, enum scope scope)
{
    return code == 4 || (code == 17 && scope == SCOPE_USER) ||
           ((code == 32 || code == 613) && scope == SCOPE_PAGE);
}

/* Answers the scripted throttling error, if one is due for scope; true when it did. */
static bool throttled(struct fakemeta *m, enum scope scope, struct fakehttp_response *resp)
{
    static const struct {
        int code, status;
        const char *message;
    } codes[] = {
        {4, 403, "(#4) Application request limit reached"},
        {17, 403, "(#17) User request limit reached"},
        {32, 403, "(#32) Page request limit reached"},
        {613, 400, "(#613) Calls to this api have exceeded the rate limit."},
    };
    char body[512];
    int code = 0;

    pthread_mutex_lock(&m->lock);
    if (m->throttle_code != 0 && m->throttle_left != 0 && applies(m->throttle_code, scope)) {
        code = m->throttle_code;
        if (m->throttle_left > 0 && --m->throttle_left == 0)
            m->throttle_code = 0;
    }
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; code != 0 && i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i].code != code)
            continue;
        snprintf(body, sizeof(body),
                 "{\"error\":{\"message\":\"%s\",\"type\":\"OAuthException\",\"is_transient\":"
                 "true,\"code\":%d,\"fbtrace_id\":\"AFakeTrace%d\"}}",
                 codes[i].message, code, code);
        fakehttp_set_header(resp, "WWW-Authenticate", "OAuth \"Facebook Platform\"");
        fakehttp_json(resp, codes[i].status, body);
        return true;
    }
    return false;
}

/*
 * Checks that value is a live token of one of the kinds in mask (bit per kind) issued by
 * host (BOTH_HOSTS: either). Answers Meta's 190 and returns false when it is not; copies
 * the token into *out otherwise.
 */
bool fm_valid_token(struct fakemeta *m, int host, const char *value, unsigned mask,
                    struct fakehttp_response *resp, struct token *out)
{
    struct token *t;
    struct token copy = {0};
    bool found = false;
    int64_t now;

    pthread_mutex_lock(&m->lock);
    t = fm_find_locked(m, value);
    if (t != NULL) {
        copy = *t;
        found = true;
    }
    now = fm_now_locked(m);
    pthread_mutex_unlock(&m->lock);
    if (!found || (host != BOTH_HOSTS && fm_host_of(copy.kind) != (enum fakemeta_host)host) ||
        !(mask & (1u << copy.kind))) {
        fakehttp_meta_error(resp, 400, 190, 0, INVALID_190);
        return false;
    }
    if (copy.revoked) {
        fakehttp_meta_error(resp, 400, 190, 460,
                            "Error validating access token: The session has been invalidated "
                            "because the user changed their password or Facebook has changed the "
                            "session for security reasons.");
        return false;
    }
    if (copy.expires_at != 0 && now >= copy.expires_at) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "Error validating access token: Session has expired at unix time %lld. The "
                 "current unix time is %lld.",
                 (long long)copy.expires_at, (long long)now);
        fakehttp_meta_error(resp, 400, 190, 463, msg);
        return false;
    }
    if (out != NULL)
        *out = copy;
    return true;
}

/*
 * Checks the request's appsecret_proof for the access token it presents: the hex
 * HMAC-SHA256 of the token under the app secret, which Meta requires of every call when the
 * app turns on "Require App Secret" (this stand-in's default). A wrong proof is refused
 * whether or not the app requires one. Answers Meta's error and returns false on a refusal.
 */
bool fm_proof_ok(struct fakemeta *m, const struct fakehttp_request *req, const char *token,
                 struct fakehttp_response *resp)
{
    char *proof = fakehttp_query_param(req, "appsecret_proof");
    char want[2 * CM_SHA256_LEN + 1];
    bool optional, ok;

    pthread_mutex_lock(&m->lock);
    optional = m->proof_optional;
    pthread_mutex_unlock(&m->lock);
    if (proof == NULL) {
        if (!optional)
            fakehttp_meta_error(resp, 400, 100, 0,
                                "API calls from the server require an appsecret_proof argument");
        return optional;
    }
    fakemeta_proof(token, want);
    ok = strlen(proof) == strlen(want) && cm_crypto_equal(proof, want, strlen(want));
    free(proof);
    if (!ok)
        fakehttp_meta_error(resp, 400, 100, 0,
                            "Invalid appsecret_proof provided in the API argument");
    return ok;
}

void fakemeta_proof(const char *token, char out[65])
{
    unsigned char mac[CM_SHA256_LEN];

    cm_crypto_hmac_sha256(FAKEMETA_APP_SECRET, strlen(FAKEMETA_APP_SECRET), token, strlen(token),
                          mac);
    cm_hex_encode(mac, sizeof(mac), out);
}

void fakemeta_set_proof_optional(struct fakemeta *m, bool optional)
{
    pthread_mutex_lock(&m->lock);
    m->proof_optional = optional;
    pthread_mutex_unlock(&m->lock);
}

/* With open login, an unknown token becomes a short-lived one of kind, issued now. */
static void open_login(struct fakemeta *m, const char *value, enum fakemeta_kind kind)
{
    pthread_mutex_lock(&m->lock);
    if (m->open_login && value != NULL && value[0] != '\0' && fm_find_locked(m, value) == NULL)
        issue_locked(m, kind, value, NULL, lifetime_of(kind));
    pthread_mutex_unlock(&m->lock);
}

/* True the first time a recipient is seen. */
static bool first_time(struct fakemeta *m, const char *recipient)
{
    bool first = true;

    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->nseen; i++) {
        if (strcmp(m->seen[i], recipient) == 0)
            first = false;
    }
    if (first && m->nseen < MAX_SEEN)
        snprintf(m->seen[m->nseen++], sizeof(m->seen[0]), "%s", recipient);
    pthread_mutex_unlock(&m->lock);
    return first;
}

/* --- Send API -------------------------------------------------------------------------- */

/* The recipient-scripted outcomes of a send that passed the token checks (fakemeta.h). */
static void deliver(struct fakemeta *m, const char *to, struct fakehttp_response *resp)
{
    char ok[256];

    if (strncmp(to, "fail-window", 11) == 0) {
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
    } else if (strncmp(to, "flaky", 5) == 0 && first_time(m, to)) {
        fakehttp_reply(resp, 500, "Internal Server Error", 21);
    } else if (strncmp(to, "throttled", 9) == 0 && first_time(m, to)) {
        fakehttp_meta_error(resp, 400, 613, 0,
                            "(#613) Calls to this api have exceeded the rate limit.");
    } else {
        pthread_mutex_lock(&m->lock);
        snprintf(ok, sizeof(ok), "{\"recipient_id\":\"%s\",\"message_id\":\"m_sent_%d\"}", to,
                 ++m->sent_seq);
        pthread_mutex_unlock(&m->lock);
        fakehttp_json(resp, 200, ok);
    }
}

bool fm_account_token(struct fakemeta *m, int host, const char *token, unsigned mask,
                      const char *account, const struct fakehttp_request *req,
                      struct fakehttp_response *resp, struct token *out)
{
    if (token == NULL) {
        fakehttp_meta_error(resp, 400, 2500, 0,
                            "An active access token must be used to query information about "
                            "the current user.");
        return false;
    }
    if (!fm_valid_token(m, host, token, mask, resp, out) || !fm_proof_ok(m, req, token, resp))
        return false;
    if (out->account[0] != '\0' && strcmp(account, out->account) != 0 &&
        !(out->kind == FAKEMETA_IG_LONG && strcmp(account, "me") == 0)) {
        /* A Page token for another Page, or another account's Instagram token. */
        fakehttp_meta_error(resp, 400, 190, 0, INVALID_190);
        return false;
    }
    return true;
}

/* POST /vX/<account>/messages: account is the path's id ("me" allowed on Instagram). */
static void send_api(struct fakemeta *m, int host, const char *account,
                     const struct fakehttp_request *req, struct fakehttp_response *resp)
{
    cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
    const char *to =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "recipient"), "id"));
    const char *auth = fakehttp_header(req, "Authorization");
    char *query_token = fakehttp_query_param(req, "access_token");
    const char *token = auth != NULL && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : query_token;
    unsigned mask = host == FAKEMETA_FACEBOOK    ? 1u << FAKEMETA_PAGE
                    : host == FAKEMETA_INSTAGRAM ? 1u << FAKEMETA_IG_LONG
                                                 : (1u << FAKEMETA_PAGE) | (1u << FAKEMETA_IG_LONG);
    struct token t;

    if (!fm_account_token(m, host, token, mask, account, req, resp, &t)) {
        /* answered */
    } else if (to == NULL) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) The parameter recipient is required");
    } else {
        fm_usage_headers(m, resp, t.account[0] ? t.account : account,
                         t.kind == FAKEMETA_PAGE ? "messenger" : "instagram");
        if (!fm_thread_send(m, t.account[0] ? t.account : account, to, body, resp) &&
            !fm_upload_send(m, t.account[0] ? t.account : account, t.kind == FAKEMETA_IG_LONG, body,
                            resp))
            deliver(m, to, resp);
    }
    free(query_token);
    cJSON_Delete(body);
}

/* --- token endpoints ------------------------------------------------------------------- */

/* GET /vX/oauth/access_token?grant_type=fb_exchange_token... */
static void fb_exchange(struct fakemeta *m, const struct fakehttp_request *req,
                        struct fakehttp_response *resp)
{
    char *grant = fakehttp_query_param(req, "grant_type");
    char *client = fakehttp_query_param(req, "client_id");
    char *secret = fakehttp_query_param(req, "client_secret");
    char *fbx = fakehttp_query_param(req, "fb_exchange_token");
    char token[300];
    struct token t;

    if (grant == NULL || strcmp(grant, "fb_exchange_token") != 0) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Invalid grant_type");
    } else if (client == NULL || strcmp(client, FAKEMETA_APP_ID) != 0) {
        fakehttp_meta_error(resp, 400, 101, 0,
                            "Error validating application. Invalid application ID.");
    } else if (secret == NULL || strcmp(secret, FAKEMETA_APP_SECRET) != 0) {
        fakehttp_meta_error(resp, 400, 1, 0, "Error validating client secret.");
    } else if (fbx == NULL) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Missing parameter: fb_exchange_token");
    } else {
        open_login(m, fbx, FAKEMETA_USER_SHORT);
        if (fm_valid_token(m, FAKEMETA_FACEBOOK, fbx,
                           (1u << FAKEMETA_USER_SHORT) | (1u << FAKEMETA_USER_LONG), resp, &t)) {
            /* Exchanging a long-lived token gives it back, renewed. */
            if (t.kind == FAKEMETA_USER_LONG)
                snprintf(token, sizeof(token), "%s", fbx);
            else
                snprintf(token, sizeof(token), "EAAU-%s", fbx);
            fakemeta_issue(m, FAKEMETA_USER_LONG, token, NULL);
            inherit_person(m, token, fbx);
            token_json(resp, token, SIXTY_DAYS - 56);
        }
    }
    free(grant);
    free(client);
    free(secret);
    free(fbx);
}

/* GET /vX/<page-id>?fields=access_token&access_token=<user token> */
static void page_token(struct fakemeta *m, const char *page, const struct fakehttp_request *req,
                       struct fakehttp_response *resp)
{
    char *access = fakehttp_query_param(req, "access_token");
    char *fields = fakehttp_query_param(req, "fields");
    char token[300];
    struct token t;

    if (access == NULL) {
        fakehttp_meta_error(resp, 400, 2500, 0,
                            "An active access token must be used to query information about "
                            "the current user.");
    } else if (!fm_valid_token(m, FAKEMETA_FACEBOOK, access,
                               (1u << FAKEMETA_USER_SHORT) | (1u << FAKEMETA_USER_LONG), resp,
                               &t) ||
               !fm_proof_ok(m, req, access, resp)) {
        /* answered */
    } else if (strncmp(page, "999", 3) == 0) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "Unsupported get request. Object with ID '%s' does not exist, cannot be loaded "
                 "due to missing permissions, or does not support this operation.",
                 page);
        fakehttp_meta_error(resp, 400, 100, 33, msg);
    } else {
        const char *user = strncmp(access, "EAAU-", 5) == 0 ? access + 5 : access;
        snprintf(token, sizeof(token), "PAGE-%s-%s", page, user);
        pthread_mutex_lock(&m->lock);
        /* From a long-lived user token, a Page token does not expire. */
        issue_locked(m, FAKEMETA_PAGE, token, page,
                     t.kind == FAKEMETA_USER_LONG ? 0 : t.expires_at - fm_now_locked(m));
        pthread_mutex_unlock(&m->lock);
        inherit_person(m, token, access);
        fm_usage_headers(m, resp, page, "pages");
        if (fields == NULL || strstr(fields, "access_token") == NULL) {
            char body[200];
            snprintf(body, sizeof(body), "{\"name\":\"Test Page\",\"id\":\"%s\"}", page);
            fakehttp_json(resp, 200, body);
        } else {
            char body[512];
            snprintf(body, sizeof(body), "{\"access_token\":\"%s\",\"id\":\"%s\"}", token, page);
            fakehttp_json(resp, 200, body);
        }
    }
    free(access);
    free(fields);
}

/* GET /access_token?grant_type=ig_exchange_token&client_secret&access_token */
static void ig_exchange(struct fakemeta *m, const struct fakehttp_request *req,
                        struct fakehttp_response *resp)
{
    char *grant = fakehttp_query_param(req, "grant_type");
    char *secret = fakehttp_query_param(req, "client_secret");
    char *access = fakehttp_query_param(req, "access_token");
    char token[300];
    struct token t;

    if (grant == NULL || strcmp(grant, "ig_exchange_token") != 0) {
        fakehttp_meta_error(resp, 400, 100, 0, "Unsupported grant_type");
    } else if (secret == NULL || strcmp(secret, FAKEMETA_APP_SECRET) != 0) {
        fakehttp_meta_error(resp, 400, 101, 0, "Error validating client secret.");
    } else if (access == NULL) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Missing parameter: access_token");
    } else {
        open_login(m, access, FAKEMETA_IG_SHORT);
        if (!fm_valid_token(m, FAKEMETA_INSTAGRAM, access, 1u << FAKEMETA_IG_SHORT, resp, &t) ||
            !fm_proof_ok(m, req, access, resp)) {
            /* answered */
        } else if (strncmp(access, "garbage", 7) == 0) {
            fakehttp_reply(resp, 200, "<html><body>Welcome</body></html>", 33);
        } else if (strncmp(access, "html502", 7) == 0) {
            fakehttp_reply(resp, 502, "<html><body>Bad Gateway</body></html>", 37);
        } else {
            snprintf(token, sizeof(token), "IGLL-%s", access);
            fakemeta_issue(m, FAKEMETA_IG_LONG, token, t.account[0] ? t.account : NULL);
            inherit_person(m, token, access);
            token_json(resp, token, SIXTY_DAYS);
        }
    }
    free(grant);
    free(secret);
    free(access);
}

/* GET /refresh_access_token?grant_type=ig_refresh_token&access_token */
static void ig_refresh(struct fakemeta *m, const struct fakehttp_request *req,
                       struct fakehttp_response *resp)
{
    char *grant = fakehttp_query_param(req, "grant_type");
    char *access = fakehttp_query_param(req, "access_token");
    char token[300];
    struct token t;
    int64_t now;

    if (grant == NULL || strcmp(grant, "ig_refresh_token") != 0) {
        fakehttp_meta_error(resp, 400, 100, 0, "Unsupported grant_type");
    } else if (access == NULL) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Missing parameter: access_token");
    } else if (fm_valid_token(m, FAKEMETA_INSTAGRAM, access, 1u << FAKEMETA_IG_LONG, resp, &t) &&
               fm_proof_ok(m, req, access, resp)) {
        pthread_mutex_lock(&m->lock);
        now = fm_now_locked(m);
        pthread_mutex_unlock(&m->lock);
        if (now - t.issued_at < 86400) {
            fakehttp_meta_error(resp, 400, 100, 0,
                                "(#100) The access token can be refreshed only once it is at "
                                "least 24 hours old");
        } else {
            /* A new token; the old one stays valid until it expires, as Meta's does. */
            snprintf(token, sizeof(token), "%s-r", access);
            fakemeta_issue(m, FAKEMETA_IG_LONG, token, t.account[0] ? t.account : NULL);
            inherit_person(m, token, access);
            token_json(resp, token, SIXTY_DAYS);
        }
    }
    free(grant);
    free(access);
}

/* --- routing --------------------------------------------------------------------------- */

/* The path after "/vNN.N/", or NULL when the path has no version. */
static const char *after_version(const char *path)
{
    const char *slash;

    if (strncmp(path, "/v", 2) != 0 || (slash = strchr(path + 2, '/')) == NULL)
        return NULL;
    return slash + 1;
}

static void on_request(const struct fakehttp_request *req, struct fakehttp_response *resp,
                       void *arg)
{
    struct listener *l = arg;
    struct fakemeta *m = l->m;
    const char *rest = after_version(req->path);
    bool fb = l->host != FAKEMETA_INSTAGRAM, ig = l->host != FAKEMETA_FACEBOOK;
    bool get = strcmp(req->method, "GET") == 0;
    size_t rlen = rest != NULL ? strlen(rest) : 0;
    enum scope scope = SCOPE_USER;

    pthread_mutex_lock(&m->lock);
    resp->delay_ms = m->delay_ms;
    pthread_mutex_unlock(&m->lock);
    if (strcmp(req->method, "POST") == 0)
        scope = SCOPE_PAGE;
    else if (rest != NULL && strcmp(rest, "debug_token") == 0)
        scope = SCOPE_APP;
    if (throttled(m, scope, resp)) {
        fm_usage_headers(m, resp, NULL, NULL);
        return;
    }
    if (strcmp(req->method, "POST") == 0 && rest != NULL && rlen > 9 &&
        strcmp(rest + rlen - 9, "/messages") == 0 && strchr(rest, '/') == rest + rlen - 9) {
        char account[80];
        snprintf(account, sizeof(account), "%.*s", (int)(rlen - 9), rest);
        if (strcmp(account, "me") == 0 && !ig)
            fakehttp_meta_error(resp, 400, 190, 0, INVALID_190);
        else
            send_api(m, l->host, account, req, resp);
    } else if (fb && strcmp(req->method, "POST") == 0 && rest != NULL && rlen > 20 &&
               strcmp(rest + rlen - 20, "/take_thread_control") == 0 &&
               strchr(rest, '/') == rest + rlen - 20) {
        char account[80];
        snprintf(account, sizeof(account), "%.*s", (int)(rlen - 20), rest);
        fm_take_thread_control(m, FAKEMETA_FACEBOOK, account, req, resp);
    } else if (fb && strcmp(req->method, "POST") == 0 && rest != NULL && rlen > 20 &&
               strcmp(rest + rlen - 20, "/message_attachments") == 0 &&
               strchr(rest, '/') == rest + rlen - 20) {
        char account[80];
        snprintf(account, sizeof(account), "%.*s", (int)(rlen - 20), rest);
        fm_upload(m, account, req, resp);
    } else if (ig && get && strcmp(req->path, "/access_token") == 0) {
        ig_exchange(m, req, resp);
    } else if (ig && get && strcmp(req->path, "/refresh_access_token") == 0) {
        ig_refresh(m, req, resp);
    } else if (fb && get && rest != NULL && strcmp(rest, "oauth/access_token") == 0) {
        fb_exchange(m, req, resp);
    } else if (fb && get && rest != NULL && strcmp(rest, "debug_token") == 0) {
        fm_debug_token(m, req, resp);
    } else if (rest != NULL && rlen > 16 && strcmp(rest + rlen - 16, "/subscribed_apps") == 0 &&
               strchr(rest, '/') == rest + rlen - 16) {
        char account[80];
        snprintf(account, sizeof(account), "%.*s", (int)(rlen - 16), rest);
        fm_subscribed_apps(m, ig && !fb ? FAKEMETA_INSTAGRAM : FAKEMETA_FACEBOOK, account, req,
                           resp);
    } else if (get && rest != NULL && strcmp(rest, "me") == 0) {
        fm_whoami(m,
                  ig && !fb   ? FAKEMETA_INSTAGRAM
                  : fb && !ig ? FAKEMETA_FACEBOOK
                              : BOTH_HOSTS,
                  req, resp);
    } else if (fm_media(m, l->host, rest, req, resp)) {
        /* the CDN, or a message's attachments (fakemeta_media.c) */
    } else if (rest != NULL && fm_conversations(m, l->host, rest, req, resp)) {
        /* answered */
    } else if (get && rest != NULL && rlen > 0 && strchr(rest, '/') == NULL &&
               fm_profile(m, l->host, rest, req, resp)) {
        /* a person's profile (fakemeta_profile.c) */
    } else if (fb && get && rest != NULL && rlen > 0 && strchr(rest, '/') == NULL) {
        page_token(m, rest, req, resp);
    } else {
        /* Graph's answer to a path it does not know. */
        fakehttp_meta_error(resp, 400, 100, 33,
                            "Unsupported get request. Object does not exist, cannot be loaded "
                            "due to missing permissions, or does not support this operation.");
    }
    /* Every answer, errors included, says how much of the app's budget is used. */
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (strcmp(resp->headers[i].name, "X-App-Usage") == 0)
            return;
    }
    fm_usage_headers(m, resp, NULL, NULL);
}

/* --- lifecycle and hooks --------------------------------------------------------------- */

int fakemeta_start(struct fakemeta **out)
{
    return fakemeta_start_at(out, 0, 0);
}

int fakemeta_start_at(struct fakemeta **out, int fb_port, int ig_port)
{
    struct fakemeta *m = cm_xcalloc(1, sizeof(*m));

    *out = NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->on[0] = (struct listener){m, ig_port < 0 ? BOTH_HOSTS : FAKEMETA_FACEBOOK};
    m->on[1] = (struct listener){m, FAKEMETA_INSTAGRAM};
    if (fakehttp_start_at(&m->srv[0], fb_port, on_request, &m->on[0]) != 0)
        goto err;
    if (ig_port < 0)
        m->srv[1] = m->srv[0];
    else if (fakehttp_start_at(&m->srv[1], ig_port, on_request, &m->on[1]) != 0)
        goto err;
    *out = m;
    return 0;
err:
    fakehttp_stop(m->srv[0]);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return -1;
}

void fakemeta_stop(struct fakemeta *m)
{
    if (m == NULL)
        return;
    if (m->srv[1] != m->srv[0])
        fakehttp_stop(m->srv[1]);
    fakehttp_stop(m->srv[0]);
    fm_threads_free(m);
    fm_conversations_free(m);
    fm_media_free(m);
    fm_uploads_free(m);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

const char *fakemeta_url(const struct fakemeta *m, enum fakemeta_host host)
{
    return fakehttp_url(m->srv[host]);
}

struct fakehttp *fakemeta_server(struct fakemeta *m, enum fakemeta_host host)
{
    return m->srv[host];
}

void fakemeta_clear(struct fakemeta *m)
{
    fakehttp_clear(m->srv[0]);
    if (m->srv[1] != m->srv[0])
        fakehttp_clear(m->srv[1]);
}

void fakemeta_issue(struct fakemeta *m, enum fakemeta_kind kind, const char *token,
                    const char *account)
{
    pthread_mutex_lock(&m->lock);
    issue_locked(m, kind, token, account, lifetime_of(kind));
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_revoke(struct fakemeta *m, const char *token)
{
    struct token *t;

    pthread_mutex_lock(&m->lock);
    if ((t = fm_find_locked(m, token)) != NULL)
        t->revoked = true;
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_age(struct fakemeta *m, const char *token, int64_t seconds)
{
    struct token *t;

    pthread_mutex_lock(&m->lock);
    if ((t = fm_find_locked(m, token)) != NULL) {
        t->issued_at -= seconds;
        if (t->expires_at != 0)
            t->expires_at -= seconds;
    }
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_set_clock(struct fakemeta *m, int64_t offset_seconds)
{
    pthread_mutex_lock(&m->lock);
    m->clock_offset = offset_seconds;
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_set_open_login(struct fakemeta *m, bool open)
{
    pthread_mutex_lock(&m->lock);
    m->open_login = open;
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_set_delay(struct fakemeta *m, int ms)
{
    pthread_mutex_lock(&m->lock);
    m->delay_ms = ms;
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_throttle(struct fakemeta *m, int code, int count)
{
    pthread_mutex_lock(&m->lock);
    m->throttle_code = count != 0 ? code : 0;
    m->throttle_left = count;
    pthread_mutex_unlock(&m->lock);
}

/* True for a recorded Send API request. */
static bool is_send(const struct fakehttp_request *r)
{
    size_t plen = strlen(r->path);

    return strcmp(r->method, "POST") == 0 && plen > 9 &&
           strcmp(r->path + plen - 9, "/messages") == 0;
}

int fakemeta_sends(struct fakemeta *m, enum fakemeta_host host)
{
    struct fakehttp *srv = m->srv[host];
    int n = 0, total = fakehttp_count(srv);

    for (int i = 0; i < total; i++) {
        if (is_send(fakehttp_get(srv, i)))
            n++;
    }
    return n;
}

char *fakemeta_last_send(struct fakemeta *m, const char *recipient)
{
    char *found = NULL;
    char needle[160];

    snprintf(needle, sizeof(needle), "\"recipient\":{\"id\":\"%s\"}", recipient);
    for (int h = 0; h < 2; h++) {
        if (h == 1 && m->srv[1] == m->srv[0])
            break;
        for (int i = 0; i < fakehttp_count(m->srv[h]); i++) {
            const struct fakehttp_request *r = fakehttp_get(m->srv[h], i);
            if (is_send(r) && r->body != NULL && strstr(r->body, needle) != NULL) {
                free(found);
                found = cm_xstrdup(r->body);
            }
        }
    }
    return found;
}
