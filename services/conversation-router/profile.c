/*
 * profile.c - contacts' names and pictures from Meta's User Profile API, in the background.
 *
 * Messenger: GET /{version}/{PSID}?fields=first_name,last_name,profile_pic with the Page
 * token; Instagram (Instagram Login): GET graph.instagram.com/{version}/{IGSID}?fields=name,
 * username,profile_pic with the Instagram token; both with appsecret_proof (graph.c). Inbound
 * never waits for it: a new contact is only due (schema/007_profile.sql), and one thread per
 * replica claims due contacts through the database once a second, at most as many as the
 * shared bucket allows (PROFILE_RATE a minute, every replica together), so replicas never
 * fetch one contact twice at once and no replica holds state another needs.
 *
 * What Meta answers decides:
 *  - the profile: sealed under the integration's data key like message text, fetched again
 *    after PROFILE_REFRESH (the picture's URL expires within days);
 *  - a refusal (no consent, a blocked or unknown user, no permission): whatever was held is
 *    dropped; only the fact and when to ask again (PROFILE_REFUSED_RETRY) are kept;
 *  - throttling (4, 17, 32, 613, 80001-80014, HTTP 429): the contact and every other due
 *    contact of the integration wait (PROFILE_BACKOFF doubling, or Meta's
 *    estimated_time_to_regain_access when longer); code 4, the app's own limit, pauses every
 *    replica's fetching;
 *  - a failure (no answer, 5xx, a token Meta or the vault refuses): the contact waits alone.
 * Neither a profile nor a contact's id is ever logged; Meta's error message can name the
 * id, so only its code is.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/httpc.h"
#include "common/log.h"
#include "common/metrics.h"
#include "router.h"

#define TICK_S        1    /* how often a replica claims due contacts */
#define BACKOFF_CAP_S 3600 /* the longest wait after throttling or a failure */

struct router_profiles {
    struct router_worker w; /* first: the pass gets it */
};

/* One claimed contact. */
struct due {
    char id[40];
    char ws[128];
    char integration[64];
    char platform[16];
    char *psid_sealed;
    bool live;
};

enum outcome { FETCHED, REFUSED, THROTTLED, FAILED };

/* --- what Meta answered ---------------------------------------------------------------- */

/* Minutes until access returns, from X-Business-Use-Case-Usage (0 when it says nothing). */
static long regain_minutes(const struct cm_httpc_response *resp)
{
    const char *h = cm_httpc_header(resp, "X-Business-Use-Case-Usage");
    cJSON *json = h != NULL ? cJSON_Parse(h) : NULL, *account, *use;
    long most = 0;

    cJSON_ArrayForEach(account, json)
    {
        cJSON_ArrayForEach(use, account)
        {
            const cJSON *t =
                cJSON_GetObjectItemCaseSensitive(use, "estimated_time_to_regain_access");
            if (cJSON_IsNumber(t) && t->valuedouble > most)
                most = (long)t->valuedouble;
        }
    }
    cJSON_Delete(json);
    return most;
}

static enum outcome classify(const struct cm_httpc_response *resp)
{
    int code = resp->has_meta_error ? resp->meta_error.code : 0;

    if (resp->status == 200)
        return FETCHED;
    if (resp->status == 429 || cm_httpc_meta_throttling(code))
        return THROTTLED;
    /* No answer, Meta's own trouble, or a token it no longer takes: nothing about the
     * contact, so it is asked again soon. */
    if (resp->status == 0 || resp->status >= 500 || code == 1 || code == 2 || code == 190)
        return FAILED;
    /* A 4xx that is not Graph's (a proxy's page) says nothing about the person either. */
    if (!resp->has_meta_error)
        return FAILED;
    /* Any other refusal is about this person: no consent (Instagram 230; Messenger 100 with
     * subcode 2018218, no profile), an unknown or blocked user (100/33), no permission. */
    return REFUSED;
}

/* The profile fields asked of each platform, and kept. */
static const char *fields_of(const char *platform)
{
    return strcmp(platform, "instagram") == 0 ? "name,username,profile_pic"
                                              : "first_name,last_name,profile_pic";
}

/* What is kept of Meta's answer: the string fields asked for, nothing else. NULL when the
 * answer is not a JSON object. A new string: free it with cJSON_free(). */
static char *kept_json(const struct due *d, const struct cm_httpc_response *resp)
{
    cJSON *in = cJSON_ParseWithLength(resp->body.data, resp->body.len), *out;
    char fields[64], *save = NULL, *f;
    char *json = NULL;

    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return NULL;
    }
    out = cJSON_CreateObject();
    snprintf(fields, sizeof(fields), "%s", fields_of(d->platform));
    for (f = strtok_r(fields, ",", &save); f != NULL; f = strtok_r(NULL, ",", &save)) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, f);
        if (cJSON_IsString(v) && v->valuestring[0] != '\0')
            cJSON_AddStringToObject(out, f, v->valuestring);
    }
    json = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    cJSON_Delete(in);
    return json;
}

/* --- what is recorded ------------------------------------------------------------------ */

/* Seals and stores the profile, unless the contact went (purged) or its integration or
 * workspace stopped (a purge may follow): then nothing is sealed, not even a key made. */
static int store_fetched(struct router_profiles *p, const struct due *d, const char *json)
{
    struct router *r = p->w.r;
    const char *params[1] = {d->id};
    char aad[96], refresh[32];
    struct cm_buf sealed;
    int rc;

    snprintf(aad, sizeof(aad), "router.contacts.profile:%s", d->id);
    snprintf(refresh, sizeof(refresh), "%lld seconds", (long long)r->cfg->profile_refresh);
    cm_buf_init(&sealed);
    rc = cm_pg_begin(p->w.pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(p->w.pg,
                        "SELECT 1 FROM contacts c JOIN routes t ON t.integration_id ="
                        " c.integration_id AND t.status = 'connected' JOIN workspaces w ON w.id ="
                        " c.workspace_id AND w.status = 'active' WHERE c.id = $1"
                        " FOR NO KEY UPDATE OF c FOR SHARE OF t, w",
                        1, params);
    if (rc == CM_OK && cm_pg_ntuples(p->w.pg) == 0) {
        cm_pg_rollback(p->w.pg);
        return CM_NOTFOUND;
    }
    if (rc == CM_OK)
        rc = router_seal(r, p->w.pg, d->ws, d->integration, aad, json, strlen(json), &sealed);
    if (rc == CM_OK) {
        const char *values[3] = {d->id, sealed.data, refresh};
        const int lengths[3] = {0, (int)sealed.len, 0};
        const int formats[3] = {0, 1, 0};
        rc = cm_pg_exec_params(p->w.pg,
                               "UPDATE contacts SET profile_sealed = $2, profile_state = 'fetched',"
                               " profile_at = now(), profile_attempts = 0,"
                               " profile_due_at = now() + $3::interval WHERE id = $1",
                               3, values, lengths, formats, 0);
    }
    if (rc == CM_OK)
        rc = cm_pg_commit(p->w.pg);
    if (rc != CM_OK)
        cm_pg_rollback(p->w.pg);
    cm_buf_wipe(&sealed);
    return rc;
}

/* Meta refused: nothing of the person stays, only the refusal and when to ask again. */
static int store_refused(struct router_profiles *p, const struct due *d)
{
    char retry[32];
    const char *params[2] = {d->id, retry};

    snprintf(retry, sizeof(retry), "%lld seconds", (long long)p->w.r->cfg->profile_refused_retry);
    return cm_pg_exec(p->w.pg,
                      "UPDATE contacts SET profile_sealed = NULL, profile_state = 'refused',"
                      " profile_at = now(), profile_attempts = 0,"
                      " profile_due_at = now() + $2::interval WHERE id = $1",
                      2, params);
}

/* The wait after the attempts-th failure in a row: PROFILE_BACKOFF doubling, capped. */
static int64_t backoff_s(const struct router_profiles *p, int attempts)
{
    double s = (double)p->w.r->cfg->profile_backoff * pow(2, attempts > 0 ? attempts - 1 : 0);

    return (int64_t)fmin(s, BACKOFF_CAP_S);
}

/*
 * Asks again later, the profile held unchanged. Throttled: every due contact of the
 * integration waits as long (and, for code 4, every replica's fetching); wait_s overrides
 * the backoff when Meta said how long.
 */
static int store_later(struct router_profiles *p, const struct due *d, int attempts, bool throttled,
                       int meta_code, int64_t wait_s)
{
    char when[32];
    const char *params[3] = {d->id, when, d->integration};
    int rc;

    if (wait_s <= 0)
        wait_s = backoff_s(p, attempts);
    snprintf(when, sizeof(when), "%lld seconds", (long long)wait_s);
    rc = cm_pg_exec(p->w.pg,
                    "UPDATE contacts SET profile_attempts = profile_attempts + 1,"
                    " profile_due_at = now() + $2::interval WHERE id = $1",
                    2, params);
    if (rc == CM_OK && throttled)
        rc = cm_pg_exec(p->w.pg,
                        "UPDATE contacts SET profile_due_at = now() + $2::interval"
                        " WHERE integration_id = $3 AND profile_due_at < now() + $2::interval"
                        " AND id <> $1",
                        3, params);
    if (rc == CM_OK && meta_code == 4)
        rc = cm_pg_exec(p->w.pg,
                        "UPDATE profile_pace SET paused_until = now() + $2::interval"
                        " WHERE id AND coalesce(paused_until, now()) < now() + $2::interval",
                        2, params);
    return rc;
}

/* --- one contact ----------------------------------------------------------------------- */

/* Asks Meta for d's profile with the integration's token; resp receives the answer. */
static int ask_meta(struct router_profiles *p, const struct due *d, const char *psid,
                    const char *token, const char *proof, struct cm_httpc_response *resp)
{
    const struct router_cfg *cfg = p->w.r->cfg;
    const char *base = router_graph_base(p->w.r, d->platform);
    struct cm_buf url, log_url, auth;
    struct cm_httpc_request req = {0};
    const char *headers[2];
    const char *params[5] = {"fields", fields_of(d->platform), "appsecret_proof", proof, NULL};
    char path[200];
    int rc;

    cm_buf_init(&url);
    cm_buf_init(&log_url);
    cm_buf_init(&auth);
    if (*proof == '\0')
        params[2] = NULL;
    snprintf(path, sizeof(path), "%s/%s", cfg->graph_version, psid);
    cm_httpc_url(&url, base, path, params);
    /* The path names the person: log lines show our contact id instead. */
    cm_buf_printf(&log_url, "%s/%s/{contact %s}", base, cfg->graph_version, d->id);
    cm_buf_printf(&auth, "Authorization: Bearer %s", token);
    headers[0] = auth.data;
    headers[1] = NULL;
    req.method = "GET";
    req.url = url.data;
    req.log_url = log_url.data;
    req.headers = headers;
    req.meta = true;
    req.max_attempts = 1; /* a failure is asked again later, through the due time */
    req.timeout_ms = 10000;
    req.deadline_ms = 15000;
    req.log_id = d->id;
    rc = cm_httpc_do(p->w.http, &req, resp);
    cm_buf_wipe(&auth);
    cm_buf_wipe(&url);
    cm_buf_cleanup(&log_url);
    return rc;
}

/* Fetches one claimed contact's profile and records the outcome. */
static void fetch_one(struct router_profiles *p, const struct due *d, int attempts)
{
    struct router *r = p->w.r;
    struct cm_httpc_response resp;
    struct cm_buf psid;
    char *token = NULL, proof[ROUTER_PROOF_LEN], why[512], aad[96];
    enum outcome o = FAILED;
    int64_t wait_s = 0;
    int rc;

    cm_buf_init(&psid);
    cm_httpc_response_init(&resp);
    snprintf(aad, sizeof(aad), "router.contacts.psid:%s", d->id);
    rc = router_open(r, p->w.pg, d->ws, d->integration, aad, d->psid_sealed, &psid);
    if (rc != CM_OK) {
        CM_WARN_ID(d->id, "profile: the contact's id does not decrypt (%s)", cm_err_str(rc));
        goto later;
    }
    rc = router_token_get(r, d->integration, &token, proof, why, sizeof(why));
    if (rc != CM_OK) {
        /* The integration cannot call Meta now (needs_reauth, the vault away): later. */
        CM_INFO_ID(d->id, "profile: not asked (%s)", why);
        goto later;
    }
    (void)ask_meta(p, d, psid.data, token, proof, &resp);
    o = classify(&resp);
    if (o == FETCHED) {
        char *json = kept_json(d, &resp);
        rc = json != NULL ? store_fetched(p, d, json) : CM_INVALID;
        if (json != NULL) {
            sodium_memzero(json, strlen(json));
            cJSON_free(json);
        }
        if (rc == CM_OK || rc == CM_NOTFOUND) {
            if (rc == CM_OK)
                cm_metrics_inc(r->m_profile_fetched, 1);
            CM_DEBUG_ID(d->id, "profile: %s", rc == CM_OK ? "fetched" : "contact gone meanwhile");
            goto done;
        }
        CM_WARN_ID(d->id, "profile: answer not kept (%s)", cm_err_str(rc));
        o = FAILED;
    } else if (o == REFUSED) {
        if (store_refused(p, d) != CM_OK)
            CM_WARN_ID(d->id, "profile: the refusal was not recorded");
        cm_metrics_inc(r->m_profile_refused, 1);
        CM_INFO_ID(d->id, "profile: Meta refused (HTTP %ld, code %d, subcode %d); nothing kept",
                   resp.status, resp.meta_error.code, resp.meta_error.subcode);
        goto done;
    } else if (o == THROTTLED) {
        wait_s = regain_minutes(&resp) * 60;
        cm_metrics_inc(r->m_profile_throttled, 1);
        CM_WARN_ID(d->id, "profile: Meta throttled (HTTP %ld, code %d): backing off", resp.status,
                   resp.meta_error.code);
    } else {
        CM_WARN_ID(d->id, "profile: Meta answered HTTP %ld (code %d); asked again later",
                   resp.status, resp.meta_error.code);
    }
later:
    if (o != THROTTLED)
        cm_metrics_inc(r->m_profile_failed, 1);
    if (store_later(p, d, attempts + 1, o == THROTTLED, resp.meta_error.code,
                    wait_s > BACKOFF_CAP_S ? BACKOFF_CAP_S : wait_s) != CM_OK)
        CM_WARN_ID(d->id, "profile: the next attempt was not scheduled: %s", cm_pg_error(p->w.pg));
done:
    if (token != NULL)
        sodium_free(token);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&psid);
}

/* --- the thread ------------------------------------------------------------------------ */

/* Claims what is due and fetches it; the number claimed, or -1 when the database failed. */
static int tick(struct router_profiles *p)
{
    const struct router_cfg *cfg = p->w.r->cfg;
    double per_s = (double)cfg->profile_rate / 60.0;
    int burst = (int)fmax(1.0, ceil(per_s));
    char per_s_s[32], burst_s[16], lease[32], refresh[32];
    const char *params[4] = {per_s_s, burst_s, burst_s, lease};
    struct due *dues;
    int *attempts, n;

    snprintf(per_s_s, sizeof(per_s_s), "%.6f", per_s);
    snprintf(burst_s, sizeof(burst_s), "%d", burst);
    /* Long enough for the whole batch to be asked: a replica that dies mid-batch leaves its
     * contacts due again after it. */
    snprintf(lease, sizeof(lease), "%d seconds", 60 + 20 * burst);
    snprintf(refresh, sizeof(refresh), "%lld seconds", (long long)cfg->profile_refresh);
    /* Everything from the function, nothing joined to it: this statement's snapshot predates
     * the function's, and would miss a contact committed in between yet claimed (013). */
    if (cm_pg_exec(p->w.pg,
                   "SELECT o_id, o_workspace, o_integration, o_platform, o_psid, o_live,"
                   " o_attempts FROM profile_claim($1::float8, $2::float8, $3::int,"
                   " $4::interval)",
                   4, params) != CM_OK) {
        CM_WARN("profile: due contacts not claimed: %s", cm_pg_error(p->w.pg));
        return -1;
    }
    n = cm_pg_ntuples(p->w.pg);
    dues = cm_xcalloc((size_t)n + 1, sizeof(*dues));
    attempts = cm_xcalloc((size_t)n + 1, sizeof(*attempts));
    /* Copied out: fetching runs other statements on this connection. */
    for (int i = 0; i < n; i++) {
        snprintf(dues[i].id, sizeof(dues[i].id), "%s", cm_pg_value(p->w.pg, i, 0));
        snprintf(dues[i].ws, sizeof(dues[i].ws), "%s", cm_pg_value(p->w.pg, i, 1));
        snprintf(dues[i].integration, sizeof(dues[i].integration), "%s",
                 cm_pg_value(p->w.pg, i, 2));
        snprintf(dues[i].platform, sizeof(dues[i].platform), "%s", cm_pg_value(p->w.pg, i, 3));
        dues[i].psid_sealed = cm_xstrdup(cm_pg_value(p->w.pg, i, 4));
        dues[i].live = strcmp(cm_pg_value(p->w.pg, i, 5), "t") == 0;
        attempts[i] = atoi(cm_pg_value(p->w.pg, i, 6));
    }
    for (int i = 0; i < n; i++) {
        if (dues[i].live) {
            fetch_one(p, &dues[i], attempts[i]);
        } else {
            /* Not connected (or its workspace deleted): nothing asked, looked at again later. */
            const char *later[2] = {dues[i].id, refresh};
            if (cm_pg_exec(p->w.pg,
                           "UPDATE contacts SET profile_due_at = now() + $2::interval"
                           " WHERE id = $1",
                           2, later) != CM_OK)
                CM_WARN_ID(dues[i].id, "profile: not rescheduled: %s", cm_pg_error(p->w.pg));
        }
        free(dues[i].psid_sealed);
    }
    free(dues);
    free(attempts);
    return n;
}

/* One pass of the fetcher; then it waits TICK_S. */
static bool pass(struct router_worker *w)
{
    (void)tick((struct router_profiles *)w);
    return false;
}

int router_profiles_start(struct router *r)
{
    struct router_profiles *p;

    if (r->cfg->profile_rate == 0) {
        CM_INFO("profile: PROFILE_RATE is 0: contacts' profiles are not fetched");
        return CM_OK;
    }
    p = cm_xcalloc(1, sizeof(*p));
    r->profiles = p;
    return router_worker_start(&p->w, r, "profile", TICK_S, pass);
}

void router_profiles_stop(struct router *r)
{
    struct router_profiles *p = r->profiles;

    if (p == NULL)
        return;
    router_worker_stop(&p->w);
    free(p);
    r->profiles = NULL;
}

/* --- reading ---------------------------------------------------------------------------- */

void router_profile_open(struct router *r, struct cm_pg *pg, const char *ws,
                         const char *integration, const char *contact, const char *sealed,
                         struct router_profile *out)
{
    const char *first, *last, *name, *user, *pic;
    struct cm_buf plain;
    char aad[96];
    cJSON *json;

    memset(out, 0, sizeof(*out));
    if (sealed == NULL || sealed[0] == '\0')
        return;
    snprintf(aad, sizeof(aad), "router.contacts.profile:%s", contact);
    cm_buf_init(&plain);
    if (router_open(r, pg, ws, integration, aad, sealed, &plain) != CM_OK) {
        CM_WARN("the profile of contact %s does not decrypt", contact);
        cm_buf_wipe(&plain);
        return;
    }
    json = cJSON_ParseWithLength(plain.data, plain.len);
    first = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "first_name"));
    last = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "last_name"));
    name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "name"));
    user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "username"));
    pic = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "profile_pic"));
    if (first != NULL || last != NULL) {
        struct cm_buf b;
        cm_buf_init(&b);
        cm_buf_printf(&b, "%s%s%s", first ? first : "", first && last ? " " : "", last ? last : "");
        out->name = cm_xstrdup(b.data);
        cm_buf_wipe(&b);
    } else if (name != NULL || user != NULL) {
        out->name = cm_xstrdup(name != NULL ? name : user);
    }
    if (pic != NULL)
        out->picture_url = cm_xstrdup(pic);
    cJSON_Delete(json);
    cm_buf_wipe(&plain);
}

void router_profile_cleanup(struct router_profile *p)
{
    if (p->name != NULL) {
        sodium_memzero(p->name, strlen(p->name));
        free(p->name);
    }
    if (p->picture_url != NULL) {
        sodium_memzero(p->picture_url, strlen(p->picture_url));
        free(p->picture_url);
    }
    memset(p, 0, sizeof(*p));
}
