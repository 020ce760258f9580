/*
 * meta.c - the Graph API calls that turn a short-lived token into a long-lived one, keep it
 * fresh, and check that it still works. Base URLs come from settings so that tests and
 * staging point them at local servers speaking Meta's format.
 *
 * Tokens and the app secret travel in query strings, as Meta's API requires: the URLs are
 * built in buffers that are wiped after use, and the HTTP client logs URLs without them.
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/log.h"
#include "common/mem.h"
#include "vault.h"

void vault_token_clear(struct vault_token *t)
{
    if (t->token != NULL)
        sodium_free(t->token); /* zeroes the memory first */
    t->token = NULL;
    t->expires_at = 0;
}

/* Copies text into sodium memory as the token. */
static void take_token(struct vault_token *t, const char *text)
{
    size_t len = strlen(text);

    vault_token_clear(t);
    t->token = sodium_malloc(len + 1);
    if (t->token == NULL)
        abort();
    memcpy(t->token, text, len + 1);
}

/* Sends method to url (holding secrets) and parses the JSON answer into *json. */
static int call_json(struct cm_httpc *http, const char *method, struct cm_buf *url, cJSON **json,
                     int *meta_code, char *why, size_t cap)
{
    struct cm_httpc_request req = {0};
    struct cm_httpc_response resp;
    int rc;

    *json = NULL;
    *meta_code = 0;
    req.method = method;
    req.url = url->data;
    req.meta = true;
    req.timeout_ms = 10000;
    req.deadline_ms = 20000;
    req.max_attempts = 4;
    cm_httpc_response_init(&resp);
    rc = cm_httpc_do(http, &req, &resp);
    cm_buf_wipe(url);
    if (resp.has_meta_error) {
        *meta_code = resp.meta_error.code;
        snprintf(why, cap, "Meta refused: %s (code %d%s%.0d, fbtrace_id %s)",
                 resp.meta_error.message, resp.meta_error.code,
                 resp.meta_error.subcode ? ", subcode " : "", resp.meta_error.subcode,
                 resp.meta_error.fbtrace_id[0] ? resp.meta_error.fbtrace_id : "-");
        rc = cm_httpc_meta_throttling(resp.meta_error.code) ? CM_UNAVAIL : CM_DENIED;
        goto done;
    }
    if (rc == CM_TIMEOUT) {
        snprintf(why, cap, "Meta did not answer in time");
        goto done;
    }
    if (rc != CM_OK) {
        snprintf(why, cap, "Meta is unreachable or failing (HTTP %ld)", resp.status);
        rc = rc == CM_INVALID ? CM_INVALID : CM_UNAVAIL;
        goto done;
    }
    *json = cJSON_ParseWithLength(resp.body.data, resp.body.len);
    if (resp.status != 200 || !cJSON_IsObject(*json)) {
        snprintf(why, cap, "Meta answered something unexpected (HTTP %ld, %s)", resp.status,
                 cJSON_IsObject(*json) ? "JSON without the expected fields" : "not JSON");
        cJSON_Delete(*json);
        *json = NULL;
        rc = CM_INVALID;
    }
done:
    /* The body may hold a token: wipe it with the response. */
    if (resp.body.data != NULL)
        sodium_memzero(resp.body.data, resp.body.len);
    cm_httpc_response_cleanup(&resp);
    return rc;
}

static int get_json(struct cm_httpc *http, struct cm_buf *url, cJSON **json, int *meta_code,
                    char *why, size_t cap)
{
    return call_json(http, "GET", url, json, meta_code, why, cap);
}

/* Reads {"access_token", "expires_in"} into out; CM_INVALID when the token is missing. */
static int token_from(const cJSON *json, struct vault_token *out, char *why, size_t cap)
{
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(json, "access_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(json, "expires_in");

    if (!cJSON_IsString(tok) || tok->valuestring[0] == '\0') {
        snprintf(why, cap, "Meta's answer has no access_token");
        return CM_INVALID;
    }
    take_token(out, tok->valuestring);
    out->expires_at = cJSON_IsNumber(exp) && exp->valuedouble > 0
                          ? (int64_t)time(NULL) + (int64_t)exp->valuedouble
                          : 0;
    return CM_OK;
}

/* Zeroes every string in json, recursively: Meta's answers hold tokens. */
static void wipe_strings(cJSON *json)
{
    cJSON *item;

    cJSON_ArrayForEach(item, json)
    {
        if (cJSON_IsString(item))
            sodium_memzero(item->valuestring, strlen(item->valuestring));
        else if (cJSON_IsObject(item) || cJSON_IsArray(item))
            wipe_strings(item);
    }
}

static void wipe_json(cJSON *json)
{
    if (json != NULL)
        wipe_strings(json);
    cJSON_Delete(json);
}

void vault_meta_proof(const struct vault_cfg *cfg, const char *token, char proof[VAULT_PROOF_LEN])
{
    unsigned char mac[CM_SHA256_LEN];

    cm_crypto_hmac_sha256(cfg->app_secret, strlen(cfg->app_secret), token, strlen(token), mac);
    cm_hex_encode(mac, sizeof(mac), proof);
    sodium_memzero(mac, sizeof(mac));
}

int vault_meta_exchange_instagram(const struct vault_cfg *cfg, struct cm_httpc *http,
                                  const char *short_token, struct vault_token *out, int *meta_code,
                                  char *why, size_t cap)
{
    char proof[VAULT_PROOF_LEN];
    const char *params[] = {"grant_type",
                            "ig_exchange_token",
                            "client_secret",
                            cfg->app_secret,
                            "access_token",
                            short_token,
                            "appsecret_proof",
                            proof,
                            NULL};
    struct cm_buf url;
    cJSON *json;
    int rc;

    vault_meta_proof(cfg, short_token, proof);
    cm_buf_init(&url);
    cm_httpc_url(&url, cfg->ig_graph_url, "access_token", params);
    rc = get_json(http, &url, &json, meta_code, why, cap);
    if (rc == CM_OK)
        rc = token_from(json, out, why, cap);
    wipe_json(json);
    return rc;
}

int vault_meta_exchange_page(const struct vault_cfg *cfg, struct cm_httpc *http,
                             const char *page_id, const char *short_token, struct vault_token *out,
                             struct vault_token *user_out, int *meta_code, char *why, size_t cap)
{
    const char *exchange[] = {"grant_type",        "fb_exchange_token", "client_id",
                              cfg->app_id,         "client_secret",     cfg->app_secret,
                              "fb_exchange_token", short_token,         NULL};
    struct vault_token user = {0};
    struct cm_buf url, path;
    cJSON *json = NULL;
    int rc;

    cm_buf_init(&url);
    cm_buf_init(&path);
    cm_buf_printf(&path, "%s/oauth/access_token", cfg->graph_version);
    cm_httpc_url(&url, cfg->graph_url, path.data, exchange);
    rc = get_json(http, &url, &json, meta_code, why, cap);
    if (rc == CM_OK)
        rc = token_from(json, &user, why, cap);
    wipe_json(json);
    json = NULL;
    if (rc == CM_OK) {
        /* A Page token derived from a long-lived user token does not expire. */
        char proof[VAULT_PROOF_LEN];
        const char *page[] = {
            "fields", "access_token", "access_token", user.token, "appsecret_proof", proof, NULL};
        vault_meta_proof(cfg, user.token, proof);
        cm_buf_reset(&path);
        cm_buf_printf(&path, "%s/%s", cfg->graph_version, page_id);
        cm_httpc_url(&url, cfg->graph_url, path.data, page);
        rc = get_json(http, &url, &json, meta_code, why, cap);
        if (rc == CM_OK)
            rc = token_from(json, out, why, cap);
        if (rc == CM_OK)
            out->expires_at = 0;
    }
    wipe_json(json);
    if (rc == CM_OK && user_out != NULL) {
        *user_out = user;
        user.token = NULL;
    }
    vault_token_clear(&user);
    cm_buf_cleanup(&path);
    cm_buf_wipe(&url);
    return rc;
}

int vault_meta_whoami(const struct vault_cfg *cfg, struct cm_httpc *http, const char *platform,
                      const char *user_token, char asid[VAULT_ASID_LEN], int *meta_code, char *why,
                      size_t cap)
{
    bool ig = strcmp(platform, "instagram") == 0;
    char proof[VAULT_PROOF_LEN];
    const char *params[] = {"fields", "id", "access_token", user_token, "appsecret_proof",
                            proof,    NULL};
    const cJSON *id;
    struct cm_buf url, path;
    cJSON *json = NULL;
    int rc;

    vault_meta_proof(cfg, user_token, proof);
    cm_buf_init(&url);
    cm_buf_init(&path);
    cm_buf_printf(&path, "%s/me", cfg->graph_version);
    cm_httpc_url(&url, ig ? cfg->ig_graph_url : cfg->graph_url, path.data, params);
    rc = get_json(http, &url, &json, meta_code, why, cap);
    if (rc == CM_OK) {
        id = cJSON_GetObjectItemCaseSensitive(json, "id");
        if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
            strlen(id->valuestring) >= VAULT_ASID_LEN) {
            snprintf(why, cap, "Meta's answer to /me has no usable id");
            rc = CM_INVALID;
        } else {
            snprintf(asid, VAULT_ASID_LEN, "%s", id->valuestring);
        }
    }
    wipe_json(json);
    cm_buf_cleanup(&path);
    return rc;
}

int vault_meta_refresh_instagram(const struct vault_cfg *cfg, struct cm_httpc *http,
                                 const char *token, struct vault_token *out, int *meta_code,
                                 char *why, size_t cap)
{
    char proof[VAULT_PROOF_LEN];
    const char *params[] = {
        "grant_type", "ig_refresh_token", "access_token", token, "appsecret_proof", proof, NULL};
    struct cm_buf url;
    cJSON *json;
    int rc;

    vault_meta_proof(cfg, token, proof);
    cm_buf_init(&url);
    cm_httpc_url(&url, cfg->ig_graph_url, "refresh_access_token", params);
    rc = get_json(http, &url, &json, meta_code, why, cap);
    if (rc == CM_OK)
        rc = token_from(json, out, why, cap);
    wipe_json(json);
    return rc;
}

int vault_meta_check_page(const struct vault_cfg *cfg, struct cm_httpc *http, const char *token,
                          bool *valid, int *meta_code, char *why, size_t cap)
{
    struct cm_buf url, path, app_token;
    const cJSON *data, *is_valid;
    cJSON *json = NULL;
    int rc;

    cm_buf_init(&url);
    cm_buf_init(&path);
    cm_buf_init(&app_token);
    /* An app access token is "<app id>|<app secret>". */
    cm_buf_printf(&app_token, "%s|%s", cfg->app_id, cfg->app_secret);
    cm_buf_printf(&path, "%s/debug_token", cfg->graph_version);
    {
        char proof[VAULT_PROOF_LEN];
        const char *params[] = {
            "input_token", token, "access_token", app_token.data, "appsecret_proof", proof, NULL};
        vault_meta_proof(cfg, app_token.data, proof);
        cm_httpc_url(&url, cfg->graph_url, path.data, params);
    }
    cm_buf_wipe(&app_token);
    rc = get_json(http, &url, &json, meta_code, why, cap);
    *valid = false;
    if (rc == CM_OK) {
        data = cJSON_GetObjectItemCaseSensitive(json, "data");
        is_valid = cJSON_GetObjectItemCaseSensitive(data, "is_valid");
        if (!cJSON_IsBool(is_valid)) {
            snprintf(why, cap, "Meta's debug_token answer has no data.is_valid");
            rc = CM_INVALID;
        } else {
            *valid = cJSON_IsTrue(is_valid);
        }
    }
    wipe_json(json);
    cm_buf_cleanup(&path);
    return rc;
}

/* The webhook fields the suite consumes, per platform (what the router and ingest handle). */
static const char fb_fields[] = "messages,messaging_postbacks,message_reactions,message_echoes,"
                                "messaging_seen,message_edits,messaging_handovers,standby";
static const char ig_fields[] = "messages,messaging_postbacks,message_reactions,messaging_seen";

/* {graph}/{version}/{page}/subscribed_apps, or Instagram's /me/subscribed_apps. */
static void subscribed_apps_url(const struct vault_cfg *cfg, const char *platform,
                                const char *account, const char *const *params, struct cm_buf *url)
{
    bool ig = strcmp(platform, "instagram") == 0;
    struct cm_buf path;

    cm_buf_init(&path);
    cm_buf_printf(&path, "%s/%s/subscribed_apps", cfg->graph_version, ig ? "me" : account);
    cm_httpc_url(url, ig ? cfg->ig_graph_url : cfg->graph_url, path.data, params);
    cm_buf_cleanup(&path);
}

int vault_meta_subscribe(const struct vault_cfg *cfg, struct cm_httpc *http, const char *platform,
                         const char *account, const char *token, bool on, int *meta_code, char *why,
                         size_t cap)
{
    char proof[VAULT_PROOF_LEN];
    const char *fields = strcmp(platform, "instagram") == 0 ? ig_fields : fb_fields;
    const char *with_fields[] = {
        "subscribed_fields", fields, "access_token", token, "appsecret_proof", proof, NULL};
    const char *without[] = {"access_token", token, "appsecret_proof", proof, NULL};
    const cJSON *ok;
    struct cm_buf url;
    cJSON *json = NULL;
    int rc;

    vault_meta_proof(cfg, token, proof);
    cm_buf_init(&url);
    subscribed_apps_url(cfg, platform, account, on ? with_fields : without, &url);
    rc = call_json(http, on ? "POST" : "DELETE", &url, &json, meta_code, why, cap);
    if (rc == CM_OK) {
        ok = cJSON_GetObjectItemCaseSensitive(json, "success");
        if (!cJSON_IsTrue(ok)) {
            snprintf(why, cap, "Meta's answer to subscribed_apps is not {\"success\": true}");
            rc = CM_INVALID;
        }
    }
    wipe_json(json);
    cm_buf_wipe(&url);
    return rc;
}

int vault_meta_subscribed(const struct vault_cfg *cfg, struct cm_httpc *http, const char *platform,
                          const char *account, const char *token, bool *subscribed, int *meta_code,
                          char *why, size_t cap)
{
    char proof[VAULT_PROOF_LEN];
    const char *params[] = {"access_token", token, "appsecret_proof", proof, NULL};
    const char *want = strcmp(platform, "instagram") == 0 ? ig_fields : fb_fields;
    const cJSON *data, *app, *apps;
    struct cm_buf url;
    cJSON *json = NULL;
    int rc;

    *subscribed = false;
    vault_meta_proof(cfg, token, proof);
    cm_buf_init(&url);
    subscribed_apps_url(cfg, platform, account, params, &url);
    rc = get_json(http, &url, &json, meta_code, why, cap);
    data = cJSON_GetObjectItemCaseSensitive(json, "data");
    if (rc == CM_OK && !cJSON_IsArray(data)) {
        snprintf(why, cap, "Meta's subscribed_apps answer has no data list");
        rc = CM_INVALID;
    }
    /* Ours is the entry with the app's id, holding every field the suite consumes. */
    apps = rc == CM_OK ? data : NULL;
    cJSON_ArrayForEach(app, apps)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(app, "id");
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(app, "subscribed_fields");
        const char *p = want;
        bool all = cJSON_IsArray(fields);

        if (!cJSON_IsString(id) || strcmp(id->valuestring, cfg->app_id) != 0)
            continue;
        while (all && *p != '\0') {
            size_t n = strcspn(p, ",");
            const cJSON *f;
            bool has = false;
            cJSON_ArrayForEach(f, fields)
            {
                if (cJSON_IsString(f) && strlen(f->valuestring) == n &&
                    strncmp(f->valuestring, p, n) == 0)
                    has = true;
            }
            all = has;
            p += n + (p[n] == ',');
        }
        *subscribed = all;
    }
    wipe_json(json);
    cm_buf_wipe(&url);
    return rc;
}
