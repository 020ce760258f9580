/*
 * media_fetch.c - the media worker: inbound attachments downloaded from Meta's CDN into the
 * media store, promptly (proto/router.md#media).
 *
 * One thread a replica claims due pending attachments through the database (FOR UPDATE SKIP
 * LOCKED, then a lease), so replicas share the work and one that dies leaves its claims due
 * again when their lease ends. Inbound wakes it when a batch stored attachments; otherwise it
 * looks once a second. For each attachment it opens the sealed CDN URL and downloads it,
 * MEDIA_MAX_BYTES at most (libcurl stops at a larger Content-Length or as soon as more bytes
 * arrive) within MEDIA_TIMEOUT, following a redirect (Instagram's lookaside URLs), then seals the
 * bytes (router.media:<id>) into the store and marks the row stored, its URL dropped, in one
 * transaction.
 *
 * What the CDN answers decides:
 *  - 403, 404, 410: the URL expired (Meta signs CDN URLs for a limited time; its CDN answers
 *    403 "URL signature expired"). Meta's Graph API is asked once for the message's
 *    attachments (Messenger: GET /{version}/{mid}/attachments; Instagram: GET
 *    /{version}/{mid}?fields=attachments), with the integration's token and appsecret_proof,
 *    and the fresh URL downloaded. Meta having none, or refusing: unavailable, with why.
 *  - over MEDIA_MAX_BYTES: unavailable, nothing kept;
 *  - no answer, a timeout, 5xx, 429: asked again after 30 s, doubling to an hour at most, 8
 *    attempts in all, then unavailable.
 * The media store failing after a good download (S3 down, SlowDown, refused credentials) is
 * the router's own trouble, not the attachment's: tried again with the same backoff, with no
 * limit of attempts, so that an outage of S3 or a wrong secret loses nothing.
 * An unavailable attachment keeps no URL. Nothing is downloaded for a deleted workspace: its
 * pending attachments wait for its purge. The same thread forgets story mentions whose 24
 * hours are over, deletes the S3 objects of deleted attachments (router_media_sweep()), and
 * seals again in segments, one a pass, the attachments stored in one piece before segments, in
 * PostgreSQL or S3 (router_media_reseal_next()).
 * Log lines name attachment ids, never a URL (it identifies the media) or a byte.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/httpc.h"
#include "common/log.h"
#include "common/metrics.h"
#include "router.h"

#define TICK_S        1    /* how often an idle worker looks for due attachments */
#define CLAIM         8    /* attachments claimed at once */
#define BACKOFF_S     30   /* the first wait after a transient failure */
#define BACKOFF_CAP_S 3600 /* the longest */
#define MAX_ATTEMPTS  8    /* then unavailable */
#define SWEEP_S       30   /* how often deleted S3 objects are swept (batch after batch) */
#define MAX_HOPS      3    /* redirects followed (Meta's lookaside URLs redirect to the CDN) */

struct media_fetch {
    struct router_worker w; /* first: the pass gets it */
    time_t swept;           /* when deleted S3 objects were last swept */
    bool sweep_more;        /* that sweep took a full batch: more may be due */
    _Atomic bool sweep_now; /* a purge deleted attachments: sweep at the next pass */
};

/* One claimed attachment. */
struct due {
    char id[40];
    char ws[128];
    char integration[64];
    char platform[16];
    char mid[256];
    int position;
    int attempts;
    char *source_sealed;
};

enum outcome { GOT, EXPIRED, TRANSIENT, FINAL };

/* --- asking the CDN and Meta ----------------------------------------------------------- */

/* GETs url (never logged: log lines show the attachment's id) into resp. */
static int get(struct media_fetch *f, const struct due *d, const char *url, const char *what,
               const char *const *headers, size_t max, struct cm_httpc_response *resp)
{
    const struct router_cfg *cfg = f->w.r->cfg;
    struct cm_httpc_request req = {0};
    char log_url[128];
    int rc;

    snprintf(log_url, sizeof(log_url), "https://%s/{attachment %s}", what, d->id);
    req.method = "GET";
    req.url = url;
    req.log_url = log_url;
    req.headers = headers;
    req.max_attempts = 1; /* a failure is tried again later, through due_at */
    req.timeout_ms = (long)cfg->media_timeout * 1000;
    req.deadline_ms = req.timeout_ms;
    req.max_response = max;
    req.meta = headers != NULL;
    req.log_id = d->id;
    rc = cm_httpc_do(f->w.http, &req, resp);
    return rc;
}

/*
 * Downloads url into resp, following redirects: Meta's lookaside URLs (Instagram's
 * attachments) answer 302 to the CDN. At most MAX_HOPS, to absolute http(s) locations only;
 * the size cap and the timeout apply to each.
 */
static int download(struct media_fetch *f, const struct due *d, const char *url,
                    struct cm_httpc_response *resp)
{
    size_t max = (size_t)f->w.r->cfg->media_max_bytes;
    char *next = NULL;
    int rc = get(f, d, url, "cdn", NULL, max, resp);

    for (int hop = 0; hop < MAX_HOPS && rc == CM_OK &&
                      (resp->status == 301 || resp->status == 302 || resp->status == 303 ||
                       resp->status == 307 || resp->status == 308);
         hop++) {
        const char *loc = cm_httpc_header(resp, "Location");
        if (loc == NULL || (strncmp(loc, "https://", 8) != 0 && strncmp(loc, "http://", 7) != 0))
            break;
        if (next != NULL) {
            sodium_memzero(next, strlen(next));
            free(next);
        }
        next = cm_xstrdup(loc);
        rc = get(f, d, next, "cdn", NULL, max, resp);
    }
    if (next != NULL) {
        sodium_memzero(next, strlen(next));
        free(next);
    }
    return rc;
}

/* What a download's answer means; why says it for the row's error. */
static enum outcome classify(int rc, const struct cm_httpc_response *resp, char *why, size_t cap)
{
    if (rc == CM_TOOBIG) {
        snprintf(why, cap, "over MEDIA_MAX_BYTES");
        return FINAL;
    }
    if (rc == CM_INVALID) {
        snprintf(why, cap, "Meta's URL is not one the router can download");
        return FINAL;
    }
    if (resp->status == 200)
        return GOT;
    if (resp->status == 403 || resp->status == 404 || resp->status == 410) {
        snprintf(why, cap, "the CDN URL expired (HTTP %ld)", resp->status);
        return EXPIRED;
    }
    if (resp->status == 0 || resp->status >= 500 || resp->status == 429 || rc != CM_OK) {
        snprintf(why, cap, "the CDN %s", resp->status == 0 ? "did not answer" : "failed");
        if (resp->status != 0)
            snprintf(why, cap, "the CDN answered HTTP %ld", resp->status);
        return TRANSIENT;
    }
    snprintf(why, cap, "the CDN answered HTTP %ld", resp->status);
    return FINAL;
}

/* A path segment of Meta's id, percent-escaped (a mid may hold '=' or '+'). */
static void escape_into(struct cm_buf *out, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c) != NULL)
            cm_buf_append(out, s, 1);
        else
            cm_buf_printf(out, "%%%02X", c);
    }
}

/* The URL of one attachment of Meta's list (Graph's data[] item), borrowed, or NULL. */
static const char *url_of(const cJSON *a)
{
    static const char *const media[] = {"image_data", "video_data", "audio_data", "payload"};
    const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "file_url"));

    for (size_t i = 0; u == NULL && i < sizeof(media) / sizeof(media[0]); i++)
        u = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, media[i]), "url"));
    return u;
}

/*
 * Asks Meta's Graph API for a fresh URL of d (a new string into *url: free it). Returns CM_OK;
 * CM_NOTFOUND when Meta has none or refuses (why says so); CM_UNAVAIL for what a retry may mend.
 */
static int fresh_url(struct media_fetch *f, const struct due *d, char **url, char *why, size_t cap)
{
    struct router *r = f->w.r;
    bool ig = strcmp(d->platform, "instagram") == 0;
    struct cm_httpc_response resp;
    struct cm_buf u, auth;
    char *token = NULL, proof[ROUTER_PROOF_LEN];
    const char *headers[2];
    cJSON *json = NULL;
    const cJSON *data;
    int rc;

    *url = NULL;
    if (d->mid[0] == '\0') {
        snprintf(why, cap, "the CDN URL expired, and the message has no id to ask Meta with");
        return CM_NOTFOUND;
    }
    rc = router_token_get(r, d->integration, &token, proof, why, cap);
    if (rc != CM_OK)
        return rc == CM_DENIED ? CM_NOTFOUND : CM_UNAVAIL;
    cm_buf_init(&u);
    cm_buf_init(&auth);
    cm_httpc_response_init(&resp);
    cm_buf_printf(&u, "%s/%s/", router_graph_base(r, d->platform), r->cfg->graph_version);
    escape_into(&u, d->mid);
    cm_buf_printf(&u, "%s", ig ? "?fields=attachments" : "/attachments");
    if (proof[0] != '\0')
        cm_buf_printf(&u, "%cappsecret_proof=%s", ig ? '&' : '?', proof);
    cm_buf_printf(&auth, "Authorization: Bearer %s", token);
    headers[0] = auth.data;
    headers[1] = NULL;
    rc = get(f, d, u.data, ig ? "graph.instagram.com" : "graph.facebook.com", headers, 0, &resp);
    if (resp.status == 200) {
        json = cJSON_ParseWithLength(resp.body.data, resp.body.len);
        data = cJSON_GetObjectItemCaseSensitive(json, "data");
        if (data == NULL)
            data = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(json, "attachments"), "data");
        const char *got = url_of(cJSON_GetArrayItem(data, d->position));
        if (got != NULL && strncmp(got, "http", 4) == 0) {
            *url = cm_xstrdup(got);
            rc = CM_OK;
        } else {
            snprintf(why, cap, "the CDN URL expired, and Meta no longer has the attachment");
            rc = CM_NOTFOUND;
        }
    } else if (resp.status == 0 || resp.status >= 500 || resp.status == 429 ||
               (resp.has_meta_error && (cm_httpc_meta_throttling(resp.meta_error.code) ||
                                        resp.meta_error.code == 1 || resp.meta_error.code == 2))) {
        snprintf(why, cap, "the CDN URL expired, and Meta's Graph API %s (HTTP %ld)",
                 resp.status == 0 ? "did not answer" : "failed", resp.status);
        rc = CM_UNAVAIL;
    } else {
        /* Meta's message may name the message: only its codes are kept. */
        snprintf(why, cap, "the CDN URL expired, and Meta refused a fresh one (HTTP %ld, code %d)",
                 resp.status, resp.meta_error.code);
        rc = CM_NOTFOUND;
    }
    cJSON_Delete(json);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&auth);
    cm_buf_wipe(&u);
    sodium_free(token);
    return rc;
}

/* --- what is recorded ------------------------------------------------------------------ */

/* A content type worth keeping ("image/jpeg"), else application/octet-stream. */
static const char *content_type(const struct cm_httpc_response *resp, char *out, size_t cap)
{
    const char *t = resp->content_type;
    size_t n = 0;

    if (t == NULL)
        return "application/octet-stream";
    for (; t[n] != '\0' && t[n] != ';' && t[n] != ' ' && n + 1 < cap; n++) {
        if (t[n] < '!' || t[n] > '~')
            return "application/octet-stream";
        out[n] = t[n];
    }
    out[n] = '\0';
    return n > 0 && strchr(out, '/') != NULL ? out : "application/octet-stream";
}

/*
 * Opens a transaction holding d's row, if it is still pending, and its route's FOR SHARE,
 * if it is not being purged (purge.c's shred_scope() waits for it, so no key is created
 * again after its shred). CM_NOTFOUND (rolled back) when either is not so.
 */
static int lock_pending(struct media_fetch *f, const struct due *d)
{
    const char *params[1] = {d->id};
    int rc = cm_pg_begin(f->w.pg);

    if (rc == CM_OK)
        rc = cm_pg_exec(f->w.pg,
                        "SELECT 1 FROM attachments a JOIN routes t ON t.integration_id ="
                        " a.integration_id AND t.status <> 'purging' WHERE a.id = $1 AND"
                        " a.state = 'pending' FOR UPDATE OF a FOR SHARE OF t",
                        1, params);
    if (rc == CM_OK && cm_pg_ntuples(f->w.pg) == 0)
        rc = CM_NOTFOUND;
    if (rc != CM_OK)
        cm_pg_rollback(f->w.pg);
    return rc;
}

/* Seals the bytes into the store and marks d stored, its URL dropped; CM_NOTFOUND when d
 * went meanwhile (purged). */
static int store_got(struct media_fetch *f, const struct due *d,
                     const struct cm_httpc_response *resp)
{
    char ctype[100], size[24];
    bool put = false, committing = false;
    int rc = lock_pending(f, d);

    /* A commit lost to a crash leaves the row pending, downloaded again: no need to wait for
     * the WAL's flush, which would bound the worker to one download per disk sync. */
    if (rc == CM_OK)
        rc = cm_pg_exec(f->w.pg, "SET LOCAL synchronous_commit TO off", 0, NULL);
    if (rc == CM_OK)
        rc = router_media_put(f->w.r, f->w.pg, d->ws, d->integration, d->id, resp->body.data,
                              resp->body.len);
    put = rc == CM_OK;
    if (rc == CM_OK) {
        const char *values[3] = {d->id, size, content_type(resp, ctype, sizeof(ctype))};
        snprintf(size, sizeof(size), "%zu", resp->body.len);
        rc = cm_pg_exec(f->w.pg,
                        "UPDATE attachments SET state = 'stored', size = $2::bigint,"
                        " content_type = $3, source_sealed = NULL, due_at = NULL,"
                        " lease_until = NULL, error = NULL, attempts = attempts + 1"
                        " WHERE id = $1",
                        3, values);
    }
    if (rc == CM_OK) {
        committing = true;
        rc = cm_pg_commit(f->w.pg);
    }
    if (rc != CM_OK)
        cm_pg_rollback(f->w.pg);
    /* The row stays pending, so a later download puts the same object again; this is for a
     * row deleted (purged) before that. */
    if (rc != CM_OK && put && !committing)
        router_media_unput(f->w.r, d->id);
    return rc;
}

/* Nothing can be kept: the row says why and holds no URL. */
static int store_unavailable(struct media_fetch *f, const struct due *d, const char *why)
{
    const char *params[2] = {d->id, why};

    return cm_pg_exec(f->w.pg,
                      "UPDATE attachments SET state = 'unavailable', source_sealed = NULL,"
                      " due_at = NULL, lease_until = NULL, error = $2, attempts = attempts + 1"
                      " WHERE id = $1 AND state = 'pending'",
                      2, params);
}

/* Tried again later; a fresh URL from Meta (may be NULL) replaces the sealed one. */
static int store_later(struct media_fetch *f, const struct due *d, const char *url, const char *why)
{
    char wait[32], aad[96];
    struct cm_buf sealed;
    double s = fmin(BACKOFF_S * pow(2, d->attempts), BACKOFF_CAP_S);
    int rc = CM_OK;

    snprintf(wait, sizeof(wait), "%.0f seconds", s);
    cm_buf_init(&sealed);
    rc = lock_pending(f, d);
    if (rc != CM_OK)
        return rc == CM_NOTFOUND ? CM_OK : rc; /* purged or settled meanwhile: nothing to do */
    if (url != NULL) {
        snprintf(aad, sizeof(aad), "router.attachments.source:%s", d->id);
        rc = router_seal(f->w.r, f->w.pg, d->ws, d->integration, aad, url, strlen(url), &sealed);
    }
    if (rc == CM_OK) {
        const char *values[4] = {d->id, wait, why, url != NULL ? sealed.data : NULL};
        const int lengths[4] = {0, 0, 0, (int)sealed.len};
        const int formats[4] = {0, 0, 0, 1};
        rc = cm_pg_exec_params(f->w.pg,
                               "UPDATE attachments SET attempts = attempts + 1,"
                               " due_at = now() + $2::interval, lease_until = NULL, error = $3,"
                               " source_sealed = coalesce($4::bytea, source_sealed)"
                               " WHERE id = $1 AND state = 'pending'",
                               4, values, lengths, formats, 0);
    }
    if (rc == CM_OK)
        rc = cm_pg_commit(f->w.pg);
    if (rc != CM_OK)
        cm_pg_rollback(f->w.pg);
    cm_buf_wipe(&sealed);
    return rc;
}

/* --- one attachment -------------------------------------------------------------------- */

/* Downloads one claimed attachment and records the outcome. */
static void fetch_one(struct media_fetch *f, const struct due *d)
{
    struct router *r = f->w.r;
    struct cm_httpc_response resp;
    struct cm_buf url;
    char aad[96], why[300] = "", *fresh = NULL;
    enum outcome o;
    bool store_failed = false; /* never counted towards MAX_ATTEMPTS */
    int rc;

    cm_buf_init(&url);
    cm_httpc_response_init(&resp);
    snprintf(aad, sizeof(aad), "router.attachments.source:%s", d->id);
    rc = router_open(r, f->w.pg, d->ws, d->integration, aad, d->source_sealed, &url);
    if (rc != CM_OK) {
        /* The key is gone (a purge shredded it) or the row is damaged: nothing to fetch. */
        snprintf(why, sizeof(why), "the URL does not decrypt");
        o = FINAL;
        goto record;
    }
    rc = download(f, d, url.data, &resp);
    o = classify(rc, &resp, why, sizeof(why));
    if (o == EXPIRED) {
        rc = fresh_url(f, d, &fresh, why, sizeof(why));
        if (rc == CM_OK) {
            cm_httpc_response_cleanup(&resp);
            rc = download(f, d, fresh, &resp);
            o = classify(rc, &resp, why, sizeof(why));
            if (o == EXPIRED) {
                snprintf(why, sizeof(why), "Meta's fresh URL expired too (HTTP %ld)", resp.status);
                o = FINAL;
            }
        } else {
            o = rc == CM_NOTFOUND ? FINAL : TRANSIENT;
        }
    }
record:
    if (o == GOT) {
        rc = store_got(f, d, &resp);
        if (rc == CM_OK) {
            cm_metrics_inc(r->m_media_stored, 1);
            CM_INFO_ID(d->id, "media: attachment stored (%zu bytes)", resp.body.len);
        } else if (rc != CM_NOTFOUND) {
            snprintf(why, sizeof(why), "the media store failed: %s", cm_err_str(rc));
            o = TRANSIENT;
            store_failed = true;
        }
    }
    if (o == TRANSIENT && !store_failed && d->attempts + 1 >= MAX_ATTEMPTS) {
        char last[sizeof(why) + 40];
        snprintf(last, sizeof(last), "gave up after %d attempts: %s", MAX_ATTEMPTS, why);
        last[sizeof(why) - 1] = '\0'; /* cut to fit: the reason's start says enough */
        memcpy(why, last, sizeof(why));
        o = FINAL;
    }
    if (o == TRANSIENT) {
        cm_metrics_inc(r->m_media_retried, 1);
        CM_WARN_ID(d->id, "media: not downloaded, tried again later: %s", why);
        if (store_later(f, d, fresh, why) != CM_OK)
            CM_WARN_ID(d->id, "media: the next attempt was not scheduled: %s",
                       cm_pg_error(f->w.pg));
    } else if (o == FINAL || o == EXPIRED) {
        cm_metrics_inc(r->m_media_unavailable, 1);
        CM_INFO_ID(d->id, "media: attachment unavailable: %s", why);
        if (store_unavailable(f, d, why) != CM_OK)
            CM_WARN_ID(d->id, "media: the outcome was not recorded: %s", cm_pg_error(f->w.pg));
    }
    if (fresh != NULL) {
        sodium_memzero(fresh, strlen(fresh));
        free(fresh);
    }
    /* The bytes and the URL are Platform Data: wiped, not just freed. */
    if (resp.body.data != NULL)
        sodium_memzero(resp.body.data, resp.body.len);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&url);
}

/* --- the thread ------------------------------------------------------------------------ */

/* clang-format off */
static const char claim_sql[] =
    "UPDATE attachments a SET lease_until = now() + $1::interval"
    " FROM (SELECT x.id, m.platform, m.mid FROM attachments x"
    " JOIN messages m ON m.id = x.message_id"
    " JOIN workspaces w ON w.id = x.workspace_id AND w.status = 'active'"
    " WHERE x.state = 'pending' AND x.direction = 'in' AND x.due_at <= now()"
    " AND (x.lease_until IS NULL OR x.lease_until < now())"
    " ORDER BY x.due_at LIMIT $2::int FOR UPDATE OF x SKIP LOCKED) d"
    " WHERE a.id = d.id RETURNING a.id, a.workspace_id, a.integration_id, d.platform,"
    " coalesce(d.mid, ''), a.position, a.attempts, a.source_sealed";
/* clang-format on */

/* Story mentions past their 24 hours: the URL forgotten, the row kept as unavailable. */
static void forget_expired(struct media_fetch *f)
{
    if (cm_pg_exec(f->w.pg,
                   "UPDATE attachments SET state = 'unavailable', source_sealed = NULL,"
                   " due_at = NULL, error = 'story expired'"
                   " WHERE state = 'reference' AND due_at <= now()",
                   0, NULL) != CM_OK)
        CM_WARN("media: expired story mentions not forgotten: %s", cm_pg_error(f->w.pg));
    else if (cm_pg_affected(f->w.pg) > 0)
        CM_INFO("media: %ld story mentions expired and forgotten", (long)cm_pg_affected(f->w.pg));
}

/* Deletes a batch of S3 objects of deleted attachments (nothing to do with the PostgreSQL
 * store); true when more may be due (router_media_sweep()). */
static bool sweep(struct media_fetch *f)
{
    int deleted = 0, rc = cm_pg_begin(f->w.pg);
    bool more = false;

    if (rc == CM_OK)
        rc = router_media_sweep(f->w.r, f->w.pg, &deleted, &more);
    if (rc == CM_OK)
        rc = cm_pg_commit(f->w.pg);
    if (rc != CM_OK) {
        cm_pg_rollback(f->w.pg);
        CM_WARN("media: deleted objects not swept: %s", cm_err_str(rc));
    } else if (deleted > 0) {
        CM_INFO("media: %d objects of deleted attachments removed from S3", deleted);
    }
    return rc == CM_OK && more;
}

/* Claims what is due and downloads it; the number claimed, or -1 when the database failed. */
static int tick(struct media_fetch *f)
{
    char lease[32], claim[16];
    const char *params[2] = {lease, claim};
    struct due *dues;
    int n;

    /* Long enough for every claimed download, a Graph call and a second download. */
    snprintf(lease, sizeof(lease), "%lld seconds",
             (long long)(CLAIM * 3 * f->w.r->cfg->media_timeout + 60));
    snprintf(claim, sizeof(claim), "%d", CLAIM);
    if (cm_pg_exec(f->w.pg, claim_sql, 2, params) != CM_OK) {
        CM_WARN("media: due attachments not claimed: %s", cm_pg_error(f->w.pg));
        return -1;
    }
    n = cm_pg_ntuples(f->w.pg);
    dues = cm_xcalloc((size_t)n + 1, sizeof(*dues));
    /* Copied out: downloading runs other statements on this connection. */
    for (int i = 0; i < n; i++) {
        struct due *d = &dues[i];
        snprintf(d->id, sizeof(d->id), "%s", cm_pg_value(f->w.pg, i, 0));
        snprintf(d->ws, sizeof(d->ws), "%s", cm_pg_value(f->w.pg, i, 1));
        snprintf(d->integration, sizeof(d->integration), "%s", cm_pg_value(f->w.pg, i, 2));
        snprintf(d->platform, sizeof(d->platform), "%s", cm_pg_value(f->w.pg, i, 3));
        snprintf(d->mid, sizeof(d->mid), "%s", cm_pg_value(f->w.pg, i, 4));
        d->position = atoi(cm_pg_value(f->w.pg, i, 5));
        d->attempts = atoi(cm_pg_value(f->w.pg, i, 6));
        d->source_sealed = cm_xstrdup(cm_pg_value(f->w.pg, i, 7));
    }
    for (int i = 0; i < n; i++) {
        fetch_one(f, &dues[i]);
        free(dues[i].source_sealed);
    }
    free(dues);
    return n;
}

/* One pass of the worker; a full claim or a full sweep says more is due: go on at once. A
 * purge of many attachments thus empties the bucket batch after batch, between downloads. */
static bool pass(struct router_worker *w)
{
    struct media_fetch *f = (struct media_fetch *)w;

    forget_expired(f);
    if (atomic_exchange(&f->sweep_now, false) || f->sweep_more ||
        time(NULL) - f->swept >= SWEEP_S) {
        f->sweep_more = sweep(f);
        f->swept = time(NULL);
    }
    if (tick(f) >= CLAIM)
        return true;
    /* At most one attachment stored before segments a pass is sealed again: an unhurried
     * migration, after the downloads. */
    router_media_reseal_next(w->r, w->pg);
    return f->sweep_more;
}

int router_media_fetch_start(struct router *r)
{
    struct media_fetch *f = cm_xcalloc(1, sizeof(*f));

    r->fetch = f;
    return router_worker_start(&f->w, r, "media", TICK_S, pass);
}

void router_media_fetch_wake(struct router *r)
{
    if (r->fetch != NULL)
        router_worker_wake(&r->fetch->w);
}

void router_media_sweep_soon(struct router *r)
{
    if (r->fetch == NULL)
        return;
    atomic_store(&r->fetch->sweep_now, true);
    router_worker_wake(&r->fetch->w);
}

void router_media_fetch_stop(struct router *r)
{
    struct media_fetch *f = r->fetch;

    if (f == NULL)
        return;
    router_worker_stop(&f->w);
    free(f);
    r->fetch = NULL;
}
