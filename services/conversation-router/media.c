/*
 * media.c - the media store: attachment bytes sealed under their integration's key, kept in
 * PostgreSQL (the media table, in the caller's transaction) or in an S3 bucket
 * (media_s3.c), as MEDIA_STORE says. The attachment row records which store holds its
 * bytes, so a change of MEDIA_STORE leaves what is already stored readable as long as the
 * old store's settings remain. S3 objects of deleted attachments are queued in media_doomed
 * by a trigger (schema/009_media.sql) and deleted by router_media_sweep().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/pg.h"
#include "media_s3.h"
#include "router.h"

struct media_store {
    bool s3_default; /* new media goes to S3 */
    struct media_s3 *s3;
};

int router_media_create(struct router *r)
{
    const struct router_cfg *c = r->cfg;
    struct media_store *m = calloc(1, sizeof(*m));
    static const struct {
        const char *name;
        size_t offset;
    } needed[] = {
        {"S3_ENDPOINT", offsetof(struct router_cfg, s3_endpoint)},
        {"S3_BUCKET", offsetof(struct router_cfg, s3_bucket)},
        {"S3_ACCESS_KEY_ID", offsetof(struct router_cfg, s3_access_key)},
        {"S3_SECRET_ACCESS_KEY", offsetof(struct router_cfg, s3_secret_key)},
    };

    if (m == NULL)
        return CM_ERR;
    r->media = m;
    m->s3_default = strcmp(c->media_store, "s3") == 0;
    if (c->s3_endpoint == NULL && !m->s3_default)
        return CM_OK;
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        if (*(char *const *)((const char *)c + needed[i].offset) == NULL) {
            CM_ERROR("%s is required with MEDIA_STORE=s3 or S3_ENDPOINT set", needed[i].name);
            return CM_INVALID;
        }
    }
    struct media_s3_cfg s3 = {.endpoint = c->s3_endpoint,
                              .bucket = c->s3_bucket,
                              .region = c->s3_region,
                              .access_key = c->s3_access_key,
                              .secret_key = c->s3_secret_key,
                              .timeout_s = c->media_timeout};
    return media_s3_create(&s3, &m->s3);
}

void router_media_destroy(struct router *r)
{
    if (r->media == NULL)
        return;
    media_s3_destroy(r->media->s3);
    free(r->media);
    r->media = NULL;
}

static void aad_of(char *out, size_t cap, const char *att)
{
    snprintf(out, cap, "router.media:%s", att);
}

static void object_key(char *out, size_t cap, const char *att)
{
    snprintf(out, cap, "media/%s", att);
}

int router_media_put(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                     const char *att, const void *data, size_t len, const char **store)
{
    char aad[96], key[96];
    struct cm_buf sealed;
    int rc;

    aad_of(aad, sizeof(aad), att);
    cm_buf_init(&sealed);
    rc = router_seal(r, pg, ws, integration, aad, data, len, &sealed);
    if (rc == CM_OK && r->media->s3_default) {
        object_key(key, sizeof(key), att);
        rc = media_s3_put(r->media->s3, key, sealed.data, sealed.len);
        *store = "s3";
    } else if (rc == CM_OK) {
        const char *values[2] = {att, sealed.data};
        const int lengths[2] = {0, (int)sealed.len};
        const int formats[2] = {0, 1};
        rc = cm_pg_exec_params(pg,
                               "INSERT INTO media (attachment_id, sealed) VALUES ($1, $2)"
                               " ON CONFLICT (attachment_id) DO UPDATE SET sealed = $2",
                               2, values, lengths, formats, 0);
        *store = "postgres";
    }
    cm_buf_cleanup(&sealed);
    return rc;
}

void router_media_unput(struct router *r, const char *att)
{
    char key[96];

    if (!r->media->s3_default || att[0] == '\0')
        return;
    object_key(key, sizeof(key), att);
    if (media_s3_delete(r->media->s3, key) != CM_OK)
        CM_WARN("attachment %s: object %s was kept in S3 for a transaction that failed, and could"
                " not be deleted; it is sealed (unreadable) and may be deleted by hand",
                att, key);
}

int router_media_get(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                     const char *att, const char *store, struct cm_buf *out)
{
    char aad[96], key[96];
    struct cm_buf sealed;
    int rc;

    aad_of(aad, sizeof(aad), att);
    cm_buf_init(&sealed);
    if (strcmp(store, "s3") == 0) {
        if (r->media->s3 == NULL) {
            CM_ERROR("attachment %s is in S3, and no S3_ENDPOINT is set", att);
            return CM_UNAVAIL;
        }
        object_key(key, sizeof(key), att);
        rc = media_s3_get(r->media->s3, key, &sealed);
    } else {
        const char *values[1] = {att};
        rc = cm_pg_exec_params(pg, "SELECT sealed FROM media WHERE attachment_id = $1", 1, values,
                               NULL, NULL, 1);
        if (rc == CM_OK && PQntuples(cm_pg_result(pg)) == 0)
            rc = CM_NOTFOUND;
        if (rc == CM_OK) {
            PGresult *res = cm_pg_result(pg);
            cm_buf_append(&sealed, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
        }
    }
    if (rc == CM_OK)
        rc = router_open_raw(r, pg, ws, integration, aad, sealed.data, sealed.len, out);
    cm_buf_cleanup(&sealed);
    return rc;
}

int router_media_sweep(struct router *r, struct cm_pg *pg, int *deleted)
{
    int rc, n;

    *deleted = 0;
    if (r->media->s3 == NULL)
        return CM_OK;
    rc = cm_pg_exec(pg,
                    "SELECT object_key FROM media_doomed ORDER BY since LIMIT 100"
                    " FOR UPDATE SKIP LOCKED",
                    0, NULL);
    if (rc != CM_OK)
        return rc;
    n = cm_pg_ntuples(pg);
    char(*keys)[96] = calloc(n > 0 ? (size_t)n : 1, sizeof(*keys));
    if (keys == NULL)
        return CM_ERR;
    for (int i = 0; i < n; i++)
        snprintf(keys[i], sizeof(keys[i]), "%s", cm_pg_value(pg, i, 0));
    for (int i = 0; i < n && rc == CM_OK; i++) {
        const char *params[1] = {keys[i]};
        int s3 = media_s3_delete(r->media->s3, keys[i]);
        if (s3 == CM_OK) {
            rc = cm_pg_exec(pg, "DELETE FROM media_doomed WHERE object_key = $1", 1, params);
            (*deleted)++;
        } else {
            rc = cm_pg_exec(pg,
                            "UPDATE media_doomed SET attempts = attempts + 1"
                            " WHERE object_key = $1",
                            1, params);
        }
    }
    free(keys);
    return rc;
}
