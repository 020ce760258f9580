/*
 * media.c - the media store: attachment bytes sealed under their integration's key, kept in
 * PostgreSQL (the media table, in the caller's transaction) or in an S3 bucket
 * (media_s3.c), as MEDIA_STORE says. The attachment row records which store holds its
 * bytes, so a change of MEDIA_STORE leaves what is already stored readable as long as the
 * old store's settings remain. S3 objects of deleted attachments are queued in media_doomed
 * by a trigger (schema/009_media.sql) and deleted by router_media_sweep().
 *
 * An attachment larger than ROUTER_MEDIA_SEGMENT is sealed in segments of that size, laid end
 * to end in one value or object (schema/012_media_segments.sql), so that a reader's chunk
 * costs the read and opening of its segment only: a 25 MB video read in 50 chunks is opened
 * once, not 50 times. One stored before segments, in one piece, is sealed again in segments
 * by the media worker (router_media_reseal_next()). In PostgreSQL also when first read, if
 * that comes sooner (reseal()); in S3 it is put under a new key (schema/014_media_object.sql):
 * the row names its object, and the old one is deleted once no reader can still hold its key.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
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

#define MEDIA_KEY_LEN 128 /* media/<attachment id>[.<16 hex digits>] */

/* schema/015_media_unsegmented.sql's index of attachments to seal again names the segment's
 * size. */
_Static_assert(ROUTER_MEDIA_SEGMENT == 524288, "the claim and its index say 524288");

/* Where and how an attachment's bytes are kept (schema/012_media_segments.sql). */
struct layout {
    char store[16];     /* "postgres", "s3" */
    long long size;     /* plaintext bytes */
    long long segment;  /* plaintext bytes of a segment; 0: one piece */
    long long stride;   /* sealed bytes of a segment */
    long long segments; /* how many: 1 for one piece */
};

/* The associated data of piece index of count: the attachment's id alone for one piece, so
 * that attachments stored before segments stay readable; else its place as well, so that no
 * segment can be moved, dropped or taken from another attachment. */
static void aad_of(char *out, size_t cap, const char *att, long long index, long long count)
{
    if (count == 1)
        snprintf(out, cap, "router.media:%s", att);
    else
        snprintf(out, cap, "router.media:%s:%lld/%lld", att, index, count);
}

/* The key under which router_media_put() keeps att's object (the row's object_key NULL). */
static void object_key(char *out, size_t cap, const char *att)
{
    snprintf(out, cap, "media/%s", att);
}

/* A key no reader can hold yet, for att's bytes sealed again: media/<att>.<16 hex digits>. */
static void new_object_key(char *out, size_t cap, const char *att)
{
    unsigned char nonce[8];
    char hex[2 * sizeof(nonce) + 1];

    randombytes_buf(nonce, sizeof(nonce));
    sodium_bin2hex(hex, sizeof(hex), nonce, sizeof(nonce));
    snprintf(out, cap, "media/%s.%s", att, hex);
}

/* The layout in columns 0 to 3 of row 0 (store, size, segment size, stride; text). */
static int layout_from(struct cm_pg *pg, const char *att, struct layout *l)
{
    snprintf(l->store, sizeof(l->store), "%s", cm_pg_value(pg, 0, 0));
    l->size = strtoll(cm_pg_value(pg, 0, 1), NULL, 10);
    l->segment = strtoll(cm_pg_value(pg, 0, 2), NULL, 10);
    l->stride = strtoll(cm_pg_value(pg, 0, 3), NULL, 10);
    l->segments = l->segment > 0 ? (l->size + l->segment - 1) / l->segment : 1;
    if (l->segment > 0 && (l->stride <= l->segment || l->segments < 2)) {
        CM_ERROR_ID(att, "attachment %s: its row's segment layout is inconsistent", att);
        return CM_DENIED;
    }
    return CM_OK;
}

/* The piece that holds offset (the last one for offset == size). */
static long long piece_at(const struct layout *l, long long offset)
{
    return l->segments == 1 || offset == l->size ? l->segments - 1 : offset / l->segment;
}

/*
 * Loads att's layout, and from PostgreSQL the sealed piece holding offset into sealed, in one
 * statement: the row and the bytes come from one snapshot, so that a piece sealed again
 * meanwhile (reseal()) is never read with the layout it had before. The piece is a substring()
 * of the media table's bytea, read in place: the column is stored uncompressed, so only the
 * toast chunks of the range are read. Its index is computed as piece_at() does. CM_NOTFOUND when
 * att has no stored bytes; CM_INVALID when offset is past its size; for S3 the bytes are left to
 * fetch_sealed(), from the object key names.
 */
static int load_piece(struct cm_pg *pg, const char *att, long long offset, struct layout *l,
                      char key[MEDIA_KEY_LEN], struct cm_buf *sealed)
{
    char from[24];
    const char *values[2] = {att, from};
    int rc;

    snprintf(from, sizeof(from), "%lld", offset);
    rc = cm_pg_exec_params(
        pg,
        "SELECT a.store, a.size::text, coalesce(a.segment_size, 0)::text,"
        " coalesce(a.segment_stride, 0)::text, CASE WHEN a.segment_size IS NULL THEN m.sealed"
        " ELSE substring(m.sealed FROM (least($2::bigint / a.segment_size,"
        " (a.size - 1) / a.segment_size) * a.segment_stride + 1)::integer"
        " FOR a.segment_stride) END, coalesce(a.object_key, 'media/' || a.id)"
        " FROM attachments a LEFT JOIN media m ON m.attachment_id = a.id AND a.store = 'postgres'"
        " WHERE a.id = $1 AND a.store IS NOT NULL AND a.size IS NOT NULL",
        2, values, NULL, NULL, 1);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    rc = layout_from(pg, att, l);
    snprintf(key, MEDIA_KEY_LEN, "%s", cm_pg_value(pg, 0, 5));
    if (rc == CM_OK && offset > l->size)
        rc = CM_INVALID;
    if (rc != CM_OK || strcmp(l->store, "postgres") != 0)
        return rc;
    if (cm_pg_is_null(pg, 0, 4))
        return CM_NOTFOUND;
    cm_buf_append(sealed, cm_pg_value(pg, 0, 4), (size_t)cm_pg_length(pg, 0, 4));
    return CM_OK;
}

/* Seals data in pieces of ROUTER_MEDIA_SEGMENT bytes (one piece when it fits in one) into
 * sealed, and the layout into l. */
static int seal_pieces(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                       const char *att, const unsigned char *data, size_t len, struct layout *l,
                       struct cm_buf *sealed)
{
    struct cm_buf one;
    char aad[128];
    int rc = CM_OK;

    l->size = (long long)len;
    l->segment = len > ROUTER_MEDIA_SEGMENT ? ROUTER_MEDIA_SEGMENT : 0;
    l->stride = l->segment > 0 ? l->segment + CM_KEYRING_OVERHEAD : 0;
    l->segments = l->segment > 0 ? (l->size + l->segment - 1) / l->segment : 1;
    if (l->segments == 1) {
        aad_of(aad, sizeof(aad), att, 0, 1);
        return router_seal(r, pg, ws, integration, aad, data, len, sealed);
    }
    cm_buf_init(&one);
    cm_buf_reserve(sealed, len + (size_t)l->segments * CM_KEYRING_OVERHEAD);
    for (long long i = 0; i < l->segments && rc == CM_OK; i++) {
        size_t from = (size_t)(i * l->segment);
        size_t n = len - from < (size_t)l->segment ? len - from : (size_t)l->segment;
        aad_of(aad, sizeof(aad), att, i, l->segments);
        rc = router_seal(r, pg, ws, integration, aad, data + from, n, &one);
        if (rc == CM_OK)
            cm_buf_append(sealed, one.data, one.len);
    }
    cm_buf_cleanup(&one);
    return rc;
}

int router_media_put(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                     const char *att, const void *data, size_t len)
{
    char key[MEDIA_KEY_LEN], segment[24], stride[24];
    const char *store = r->media->s3_default ? "s3" : "postgres";
    struct cm_buf sealed;
    struct layout l;
    int rc;

    cm_buf_init(&sealed);
    rc = seal_pieces(r, pg, ws, integration, att, data, len, &l, &sealed);
    if (rc == CM_OK && r->media->s3_default) {
        object_key(key, sizeof(key), att);
        rc = media_s3_put(r->media->s3, key, sealed.data, sealed.len);
    } else if (rc == CM_OK) {
        const char *values[2] = {att, sealed.data};
        const int lengths[2] = {0, (int)sealed.len};
        const int formats[2] = {0, 1};
        rc = cm_pg_exec_params(pg,
                               "INSERT INTO media (attachment_id, sealed) VALUES ($1, $2)"
                               " ON CONFLICT (attachment_id) DO UPDATE SET sealed = $2",
                               2, values, lengths, formats, 0);
    }
    cm_buf_cleanup(&sealed);
    if (rc == CM_OK) {
        const char *values[4] = {att, store, l.segment > 0 ? segment : NULL,
                                 l.segment > 0 ? stride : NULL};
        snprintf(segment, sizeof(segment), "%lld", l.segment);
        snprintf(stride, sizeof(stride), "%lld", l.stride);
        rc = cm_pg_exec(pg,
                        "UPDATE attachments SET store = $2, segment_size = $3::integer,"
                        " segment_stride = $4::integer, object_key = NULL WHERE id = $1",
                        4, values);
    }
    return rc;
}

/* Deletes att's object key, put for a transaction that failed before its commit. */
static void unput_key(struct router *r, const char *att, const char *key)
{
    if (media_s3_delete(r->media->s3, key) != CM_OK)
        CM_WARN("attachment %s: object %s was kept in S3 for a transaction that failed, and could"
                " not be deleted; it is sealed (unreadable) and may be deleted by hand",
                att, key);
}

void router_media_unput(struct router *r, const char *att)
{
    char key[MEDIA_KEY_LEN];

    if (!r->media->s3_default || att[0] == '\0')
        return;
    object_key(key, sizeof(key), att);
    unput_key(r, att, key);
}

/* Reads len sealed bytes of att's object key in S3 from offset (len 0: all of them) into
 * sealed, with a Range request. */
static int fetch_sealed(struct router *r, const char *att, const char *key, long long offset,
                        long long len, struct cm_buf *sealed)
{
    if (r->media->s3 == NULL) {
        CM_ERROR("attachment %s is in S3, and no S3_ENDPOINT is set", att);
        return CM_UNAVAIL;
    }
    return len > 0 ? media_s3_get_range(r->media->s3, key, offset, len, sealed)
                   : media_s3_get(r->media->s3, key, sealed);
}

/* The plaintext bytes piece index holds. */
static long long piece_len(const struct layout *l, long long index)
{
    if (l->segments == 1)
        return l->size;
    return index < l->segments - 1 ? l->segment : l->size - index * l->segment;
}

/* Opens piece index of att from len sealed bytes into out (reset first); CM_DENIED when it is
 * not that piece (the tag, its place or its length). */
static int open_piece(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                      const char *att, const struct layout *l, long long index, const void *sealed,
                      size_t len, struct cm_buf *out)
{
    char aad[128];
    int rc;

    aad_of(aad, sizeof(aad), att, index, l->segments);
    rc = router_open_raw(r, pg, ws, integration, aad, sealed, len, out);
    if (rc == CM_OK && (long long)out->len != piece_len(l, index)) {
        CM_ERROR_ID(att, "attachment %s: piece %lld holds %zu bytes, not the %lld its row says",
                    att, index, out->len, piece_len(l, index));
        rc = CM_DENIED;
    }
    return rc;
}

/*
 * Seals a piece stored before segments (plain, its whole bytes) again in segments, once: its
 * layout and bytes change in one statement, and only while the row still has no segments, so
 * that of two readers doing it at once one wins. In the caller's transaction, under a
 * savepoint: a failure here costs the caller's read nothing, and the caller logs it.
 */
static int reseal(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                  const char *att, const struct cm_buf *plain)
{
    char segment[24], stride[24];
    bool in_tx = cm_pg_in_transaction(pg);
    struct cm_buf sealed;
    struct layout l;
    int rc = CM_OK;

    cm_buf_init(&sealed);
    if (in_tx)
        rc = cm_pg_exec_simple(pg, "SAVEPOINT reseal");
    if (rc == CM_OK)
        rc = seal_pieces(r, pg, ws, integration, att, (const unsigned char *)plain->data,
                         plain->len, &l, &sealed);
    if (rc == CM_OK) {
        const char *values[4] = {att, sealed.data, segment, stride};
        const int lengths[4] = {0, (int)sealed.len, 0, 0};
        const int formats[4] = {0, 1, 0, 0};
        snprintf(segment, sizeof(segment), "%lld", l.segment);
        snprintf(stride, sizeof(stride), "%lld", l.stride);
        rc = cm_pg_exec_params(pg,
                               "WITH a AS (UPDATE attachments SET segment_size = $3::integer,"
                               " segment_stride = $4::integer WHERE id = $1"
                               " AND segment_size IS NULL AND store = 'postgres' RETURNING id)"
                               " UPDATE media SET sealed = $2 FROM a"
                               " WHERE media.attachment_id = a.id",
                               4, values, lengths, formats, 0);
    }
    if (in_tx && rc == CM_OK)
        rc = cm_pg_exec_simple(pg, "RELEASE SAVEPOINT reseal");
    if (rc == CM_OK)
        CM_INFO_ID(att, "attachment %s: sealed again in %lld segments", att, l.segments);
    else if (in_tx && cm_pg_exec_simple(pg, "ROLLBACK TO SAVEPOINT reseal") != CM_OK)
        CM_WARN_ID(att, "attachment %s: the savepoint could not be rolled back", att);
    cm_buf_cleanup(&sealed);
    return rc;
}

int router_media_read(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                      const char *att, long long offset, struct cm_buf *out, long long *base,
                      long long *size)
{
    char key[MEDIA_KEY_LEN];
    struct cm_buf sealed;
    struct layout l;
    long long index;
    int rc;

    cm_buf_init(&sealed);
    rc = load_piece(pg, att, offset, &l, key, &sealed);
    if (rc == CM_OK || rc == CM_INVALID)
        *size = l.size;
    if (rc != CM_OK) {
        cm_buf_cleanup(&sealed);
        return rc;
    }
    index = piece_at(&l, offset);
    *base = l.segments == 1 ? 0 : index * l.segment;
    if (strcmp(l.store, "s3") == 0)
        rc = fetch_sealed(r, att, key, l.segments == 1 ? 0 : index * l.stride,
                          l.segments == 1 ? 0 : l.stride, &sealed);
    if (rc == CM_OK)
        rc = open_piece(r, pg, ws, integration, att, &l, index, sealed.data, sealed.len, out);
    cm_buf_cleanup(&sealed);
    if (rc == CM_OK && l.segments == 1 && l.size > ROUTER_MEDIA_SEGMENT &&
        strcmp(l.store, "postgres") == 0) {
        int again = reseal(r, pg, ws, integration, att, out);
        if (again != CM_OK)
            CM_WARN_ID(att, "attachment %s: not sealed again in segments (next read): %s", att,
                       cm_err_str(again));
    }
    return rc;
}

/* An attachment in one piece larger than a chunk, claimed for an hour: its id, owner, size,
 * store and (in S3) object. */
struct unsegmented {
    char id[64], ws[128], integration[64], key[MEDIA_KEY_LEN], store[16];
    long long size;
};

/* clang-format off */
static const char claim_unsegmented_sql[] =
    "UPDATE attachments a SET lease_until = now() + interval '1 hour'"
    " FROM (SELECT x.id FROM attachments x"
    " JOIN workspaces w ON w.id = x.workspace_id AND w.status = 'active'"
    " WHERE x.store IN ('s3', 'postgres') AND (x.store = 'postgres' OR $1::boolean)"
    " AND x.segment_size IS NULL AND x.size > 524288"
    " AND (x.lease_until IS NULL OR x.lease_until < now())"
    " LIMIT 1 FOR UPDATE OF x SKIP LOCKED) d"
    " WHERE a.id = d.id RETURNING a.id, a.workspace_id, a.integration_id, a.size::text,"
    " coalesce(a.object_key, 'media/' || a.id), a.store";
/* clang-format on */

/* Locks u's row while it is still as claimed, and its route while the integration is not
 * being purged; CM_NOTFOUND when either changed (read anew, sealed again elsewhere, purged). */
static int lock_unsegmented(struct cm_pg *pg, const struct unsegmented *u)
{
    const char *params[2] = {u->id, u->key};
    int rc = cm_pg_exec(pg,
                        "SELECT 1 FROM attachments a JOIN routes t ON t.integration_id ="
                        " a.integration_id AND t.status <> 'purging' WHERE a.id = $1"
                        " AND a.store = 's3' AND a.segment_size IS NULL"
                        " AND coalesce(a.object_key, 'media/' || a.id) = $2"
                        " FOR UPDATE OF a FOR SHARE OF t",
                        2, params);

    return rc == CM_OK && cm_pg_ntuples(pg) == 0 ? CM_NOTFOUND : rc;
}

/* Seals u's bytes again in segments, under a new key, in pg's transaction: the row then names
 * the new object, and the trigger dooms the old one once no reader can hold its key. */
static int reseal_object(struct router *r, struct cm_pg *pg, const struct unsegmented *u,
                         const struct cm_buf *sealed, char key[MEDIA_KEY_LEN], bool *put)
{
    struct layout one = {.size = u->size, .segments = 1}, l;
    char segment[24], stride[24];
    struct cm_buf plain, again;
    int rc;

    cm_buf_init(&plain);
    cm_buf_init(&again);
    rc = lock_unsegmented(pg, u);
    if (rc == CM_OK)
        rc = open_piece(r, pg, u->ws, u->integration, u->id, &one, 0, sealed->data, sealed->len,
                        &plain);
    if (rc == CM_OK)
        rc = seal_pieces(r, pg, u->ws, u->integration, u->id, (const unsigned char *)plain.data,
                         plain.len, &l, &again);
    cm_buf_wipe(&plain);
    if (rc == CM_OK) {
        new_object_key(key, MEDIA_KEY_LEN, u->id);
        rc = media_s3_put(r->media->s3, key, again.data, again.len);
        *put = rc == CM_OK;
    }
    cm_buf_cleanup(&again);
    if (rc == CM_OK) {
        const char *values[4] = {u->id, segment, stride, key};
        snprintf(segment, sizeof(segment), "%lld", l.segment);
        snprintf(stride, sizeof(stride), "%lld", l.stride);
        rc = cm_pg_exec(pg,
                        "UPDATE attachments SET segment_size = $2::integer,"
                        " segment_stride = $3::integer, object_key = $4, lease_until = NULL"
                        " WHERE id = $1",
                        4, values);
    }
    return rc;
}

/*
 * Seals u, kept in PostgreSQL, again in segments in pg's transaction: its row is locked while
 * it still has no segments and the integration is not being purged (CM_NOTFOUND otherwise),
 * then read, opened and sealed again as a first read would (reseal()), and the claim let go.
 */
static int reseal_row(struct router *r, struct cm_pg *pg, const struct unsegmented *u)
{
    const char *params[1] = {u->id};
    struct layout one = {.size = u->size, .segments = 1};
    struct cm_buf sealed, plain;
    int rc = cm_pg_exec_params(pg,
                               "SELECT m.sealed FROM attachments a JOIN routes t ON"
                               " t.integration_id = a.integration_id AND t.status <> 'purging'"
                               " JOIN media m ON m.attachment_id = a.id WHERE a.id = $1"
                               " AND a.store = 'postgres' AND a.segment_size IS NULL"
                               " FOR UPDATE OF a FOR SHARE OF t",
                               1, params, NULL, NULL, 1);

    if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
        rc = CM_NOTFOUND;
    cm_buf_init(&sealed);
    cm_buf_init(&plain);
    /* A copy: opening the piece may run statements of its own on pg. */
    if (rc == CM_OK)
        cm_buf_append(&sealed, cm_pg_value(pg, 0, 0), (size_t)cm_pg_length(pg, 0, 0));
    if (rc == CM_OK)
        rc = open_piece(r, pg, u->ws, u->integration, u->id, &one, 0, sealed.data, sealed.len,
                        &plain);
    if (rc == CM_OK)
        rc = reseal(r, pg, u->ws, u->integration, u->id, &plain);
    cm_buf_wipe(&plain);
    cm_buf_cleanup(&sealed);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "UPDATE attachments SET lease_until = NULL WHERE id = $1", 1, params);
    return rc;
}

/* Claims the next attachment in one piece larger than a chunk, if any (CM_NOTFOUND). */
static int claim_unsegmented(struct router *r, struct cm_pg *pg, struct unsegmented *u)
{
    const char *params[1] = {r->media->s3 != NULL ? "true" : "false"};
    int rc = cm_pg_exec(pg, claim_unsegmented_sql, 1, params);

    if (rc != CM_OK || cm_pg_ntuples(pg) == 0)
        return rc == CM_OK ? CM_NOTFOUND : rc;
    snprintf(u->id, sizeof(u->id), "%s", cm_pg_value(pg, 0, 0));
    snprintf(u->ws, sizeof(u->ws), "%s", cm_pg_value(pg, 0, 1));
    snprintf(u->integration, sizeof(u->integration), "%s", cm_pg_value(pg, 0, 2));
    u->size = strtoll(cm_pg_value(pg, 0, 3), NULL, 10);
    snprintf(u->key, sizeof(u->key), "%s", cm_pg_value(pg, 0, 4));
    snprintf(u->store, sizeof(u->store), "%s", cm_pg_value(pg, 0, 5));
    return CM_OK;
}

/* Seals u, kept in S3, again under a new key (reseal_object()); the new object is deleted
 * again when its row could not name it. */
static int reseal_s3(struct router *r, struct cm_pg *pg, const struct unsegmented *u)
{
    char key[MEDIA_KEY_LEN] = "";
    bool put = false, committing = false;
    struct cm_buf sealed;
    int rc;

    /* Read before the transaction: no row stays locked while S3 answers the whole object. */
    cm_buf_init(&sealed);
    rc = media_s3_get(r->media->s3, u->key, &sealed);
    if (rc == CM_OK)
        rc = cm_pg_begin(pg);
    if (rc == CM_OK)
        rc = reseal_object(r, pg, u, &sealed, key, &put);
    if (rc == CM_OK) {
        committing = true;
        rc = cm_pg_commit(pg);
    }
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    if (rc != CM_OK && put && !committing)
        unput_key(r, u->id, key);
    cm_buf_cleanup(&sealed);
    if (rc == CM_OK)
        CM_INFO_ID(u->id,
                   "attachment %s: sealed again in segments, as %s (%s is deleted in 10"
                   " minutes)",
                   u->id, key, u->key);
    return rc;
}

int router_media_reseal_next(struct router *r, struct cm_pg *pg)
{
    struct unsegmented u;
    int rc = claim_unsegmented(r, pg, &u);

    if (rc != CM_OK)
        return rc;
    if (strcmp(u.store, "postgres") == 0) {
        rc = cm_pg_begin(pg);
        if (rc == CM_OK)
            rc = reseal_row(r, pg, &u);
        if (rc == CM_OK)
            rc = cm_pg_commit(pg);
        if (rc != CM_OK)
            cm_pg_rollback(pg);
    } else {
        rc = reseal_s3(r, pg, &u);
    }
    if (rc == CM_OK)
        cm_metrics_inc(r->m_media_resealed, 1);
    else if (rc != CM_NOTFOUND)
        CM_WARN_ID(u.id, "attachment %s: not sealed again in segments (tried again in an hour): %s",
                   u.id, cm_err_str(rc));
    return rc == CM_NOTFOUND ? CM_OK : rc;
}

int router_media_sweep(struct router *r, struct cm_pg *pg, int *deleted, bool *more)
{
    char batch[16];
    const char *limit[1] = {batch};
    bool refused = false;
    int rc, n;

    *deleted = 0;
    *more = false;
    if (r->media->s3 == NULL)
        return CM_OK;
    snprintf(batch, sizeof(batch), "%d", ROUTER_SWEEP_BATCH);
    rc = cm_pg_exec(pg,
                    "SELECT object_key FROM media_doomed WHERE due_at <= now()"
                    " ORDER BY due_at LIMIT $1::int FOR UPDATE SKIP LOCKED",
                    1, limit);
    if (rc != CM_OK)
        return rc;
    n = cm_pg_ntuples(pg);
    char(*keys)[MEDIA_KEY_LEN] = calloc(n > 0 ? (size_t)n : 1, sizeof(*keys));
    if (keys == NULL)
        return CM_ERR;
    for (int i = 0; i < n; i++)
        snprintf(keys[i], sizeof(keys[i]), "%s", cm_pg_value(pg, i, 0));
    /* The first refusal ends the batch: S3 is likely down, and each refusal took its retries. */
    for (int i = 0; i < n && rc == CM_OK && !refused; i++) {
        const char *params[1] = {keys[i]};
        int s3 = media_s3_delete(r->media->s3, keys[i]);
        if (s3 == CM_OK) {
            rc = cm_pg_exec(pg, "DELETE FROM media_doomed WHERE object_key = $1", 1, params);
            (*deleted)++;
        } else {
            /* Due again after 30 s, doubling to an hour: a key S3 keeps refusing never holds
             * the others back. */
            refused = true;
            rc = cm_pg_exec(pg,
                            "UPDATE media_doomed SET attempts = attempts + 1, due_at = now() +"
                            " interval '30 seconds' * least(power(2, attempts), 120)"
                            " WHERE object_key = $1",
                            1, params);
        }
    }
    free(keys);
    *more = rc == CM_OK && !refused && n >= ROUTER_SWEEP_BATCH;
    return rc;
}
