/*
 * keyring.c - envelope encryption: DEKs in data_keys wrapped by the KEKs of DOMS_KEK_FILE
 * (see keyring.h for the formats and the guarantees).
 *
 * Locking: the mutex guards the cache and the scratch key. It is never held across a
 * database call, but it is held while a DEK is in use (the AEAD of one value), so that the
 * unwrapped DEK is read where it lives, in secure memory, and never copied out of it.
 */
#include "common/id.h"
#include "common/keyring.h"
#include "common/log.h"
#include "keyring_int.h"

#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS  1024 /* DEKs cached at once: 32 KiB of locked memory */
#define REWRAP_BATCH 100  /* rows per transaction; also spelled out in the query */
#define MAX_ATTEMPTS 4    /* rounds of with_dek() when the cache or the table moves under us */

const char cm_keyring_schema_sql[] = "CREATE TABLE data_keys ("
                                     " key_id text NOT NULL,"
                                     " version integer NOT NULL CHECK (version > 0),"
                                     " kek_version integer NOT NULL CHECK (kek_version > 0),"
                                     " wrapped bytea NOT NULL,"
                                     " created_at timestamptz NOT NULL DEFAULT now(),"
                                     " PRIMARY KEY (key_id, version));";

struct cm_keyring {
    pthread_mutex_t mu;
    struct cm_kekset keks;
    struct cm_dekcache cache;
    unsigned char *scratch; /* secure room for a DEK that is not cached; under mu */
};

/* One row of data_keys, as read or as just inserted. */
struct dek_row {
    uint32_t version;
    int kek_version;
    unsigned char wrapped[CM_KEYRING_WRAPPED];
    int current;  /* read as the newest version of its key id, or created */
    char xid[32]; /* created by this call inside that still-open transaction; else "" */
};

/* Called with the DEK (in secure memory, under the mutex) to seal or open one value. */
typedef int (*dek_fn)(const unsigned char *dek, uint32_t version, void *arg);

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* --- wrapping ------------------------------------------------------------------------- */

/* The additional data of a wrapped DEK: "doms-dek" 0 key_id 0 version (u32 BE). */
static void dek_aad(struct cm_buf *b, const char *key_id, uint32_t version)
{
    unsigned char v[4];

    put_u32(v, version);
    cm_buf_append(b, "doms-dek", 9); /* with its NUL */
    cm_buf_append(b, key_id, strlen(key_id) + 1);
    cm_buf_append(b, v, 4);
}

static int wrap_dek(const struct cm_kek *kek, const char *key_id, uint32_t version,
                    const unsigned char *dek, unsigned char out[CM_KEYRING_WRAPPED])
{
    struct cm_buf aad;
    int rc;

    cm_buf_init(&aad);
    dek_aad(&aad, key_id, version);
    cm_crypto_random(out, CM_AEAD_NONCE_LEN);
    rc = cm_aead_seal(kek->key, out, aad.data, aad.len, dek, CM_AEAD_KEY_LEN,
                      out + CM_AEAD_NONCE_LEN);
    cm_buf_cleanup(&aad);
    return rc;
}

static int unwrap_dek(const struct cm_kek *kek, const char *key_id, uint32_t version,
                      const unsigned char wrapped[CM_KEYRING_WRAPPED], unsigned char *dek)
{
    struct cm_buf aad;
    int rc;

    cm_buf_init(&aad);
    dek_aad(&aad, key_id, version);
    rc = cm_aead_open(kek->key, wrapped, aad.data, aad.len, wrapped + CM_AEAD_NONCE_LEN,
                      CM_AEAD_KEY_LEN + CM_AEAD_TAG_LEN, dek);
    cm_buf_cleanup(&aad);
    return rc;
}

/* --- data_keys ------------------------------------------------------------------------ */

/* Reads row i of a binary result (version, kek_version, wrapped, from column col). */
static int read_row(struct cm_pg *pg, int i, int col, const char *key_id, struct dek_row *r)
{
    if (cm_pg_length(pg, i, col) != 4 || cm_pg_length(pg, i, col + 1) != 4) {
        CM_ERROR("keyring: unexpected column types in data_keys");
        return CM_ERR;
    }
    r->version = get_u32((const unsigned char *)cm_pg_value(pg, i, col));
    r->kek_version = (int)get_u32((const unsigned char *)cm_pg_value(pg, i, col + 1));
    if (cm_pg_length(pg, i, col + 2) != CM_KEYRING_WRAPPED) {
        CM_ERROR("keyring: the DEK of %s version %u is %d bytes wrapped, want %d (altered row)",
                 key_id, r->version, cm_pg_length(pg, i, col + 2), CM_KEYRING_WRAPPED);
        return CM_DENIED;
    }
    memcpy(r->wrapped, cm_pg_value(pg, i, col + 2), CM_KEYRING_WRAPPED);
    return CM_OK;
}

static int db_failed(struct cm_pg *pg, const char *what, int rc)
{
    CM_WARN("keyring: %s: %s (%s)", what, cm_pg_error(pg), cm_err_str(rc));
    return rc;
}

/* Reads the DEK row of key_id and version (0: the newest). CM_NOTFOUND when there is none. */
static int fetch_dek(struct cm_pg *pg, const char *key_id, uint32_t version, struct dek_row *r)
{
    char v[16];
    const char *params[2] = {key_id, v};
    int rc;

    snprintf(v, sizeof(v), "%u", version);
    if (version == 0)
        rc = cm_pg_exec_params(pg,
                               "SELECT version, kek_version, wrapped FROM data_keys"
                               " WHERE key_id = $1 ORDER BY version DESC LIMIT 1",
                               1, params, NULL, NULL, 1);
    else
        rc = cm_pg_exec_params(pg,
                               "SELECT version, kek_version, wrapped FROM data_keys"
                               " WHERE key_id = $1 AND version = $2",
                               2, params, NULL, NULL, 1);
    if (rc != CM_OK)
        return db_failed(pg, "reading data_keys", rc);
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    memset(r, 0, sizeof(*r));
    r->current = version == 0;
    return read_row(pg, 0, 0, key_id, r);
}

/*
 * Creates version 1 of key_id's DEK under the newest KEK, unless a row is there already
 * (a replica won the race): CM_OK with r filled when this call inserted it, CM_CONFLICT when
 * it did not (read the row instead).
 */
static int create_dek(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id,
                      struct dek_row *r)
{
    const struct cm_kek *kek = &kr->keks.keys[kr->keks.newest];
    char kv[16];
    const char *values[3] = {key_id, kv, (const char *)r->wrapped};
    const int lengths[3] = {0, 0, CM_KEYRING_WRAPPED};
    const int formats[3] = {0, 0, 1};
    int rc;

    memset(r, 0, sizeof(*r));
    r->version = 1;
    r->kek_version = kek->version;
    r->current = 1;
    snprintf(kv, sizeof(kv), "%d", kek->version);
    pthread_mutex_lock(&kr->mu);
    cm_crypto_random(kr->scratch, CM_AEAD_KEY_LEN);
    rc = wrap_dek(kek, key_id, 1, kr->scratch, r->wrapped);
    sodium_memzero(kr->scratch, CM_AEAD_KEY_LEN);
    pthread_mutex_unlock(&kr->mu);
    if (rc != CM_OK)
        return rc;
    /* A racing insert of the same key waits for ours (or we for it), then does nothing. */
    rc = cm_pg_exec_params(pg,
                           "INSERT INTO data_keys (key_id, version, kek_version, wrapped)"
                           " VALUES ($1, 1, $2, $3) ON CONFLICT (key_id, version) DO NOTHING"
                           " RETURNING pg_current_xact_id()::text",
                           3, values, lengths, formats, 0);
    if (rc != CM_OK)
        return db_failed(pg, "creating a DEK", rc);
    if (cm_pg_ntuples(pg) != 1)
        return CM_CONFLICT;
    /* Outside a transaction block the insert has committed already. */
    if (cm_pg_in_transaction(pg))
        snprintf(r->xid, sizeof(r->xid), "%s", cm_pg_value(pg, 0, 0));
    CM_INFO("keyring: created the DEK of %s under KEK version %d", key_id, kek->version);
    return CM_OK;
}

/* Reads key_id's DEK row (version 0: the newest), creating it when asked and missing. */
static int load_dek(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, uint32_t version,
                    int create, struct dek_row *r)
{
    int rc = fetch_dek(pg, key_id, version, r);

    if (rc != CM_NOTFOUND || !create)
        return rc;
    rc = create_dek(kr, pg, key_id, r);
    if (rc == CM_CONFLICT) {
        rc = fetch_dek(pg, key_id, 0, r);
        if (rc == CM_NOTFOUND) /* shredded between the two: start over */
            rc = CM_CONFLICT;
    }
    return rc;
}

/* --- the cache against the database ------------------------------------------------- */

enum pending_verdict {
    PENDING_USE,     /* our own open transaction created it and the row is still there */
    PENDING_CONFIRM, /* its creator committed: trust it for the TTL */
    PENDING_BYPASS,  /* another transaction, still open, created it: not ours to use */
    PENDING_DROP,    /* rolled back (or gone): forget it */
};

/*
 * Decides about a cache entry created by transaction xid, which may have rolled back since:
 * its row must still be there, byte for byte, and either committed or ours.
 * Returns a verdict (>= 0) or a database error.
 */
static int check_pending(struct cm_pg *pg, const char *key_id, uint32_t version,
                         const unsigned char wrapped[CM_KEYRING_WRAPPED], const char *xid)
{
    char v[16];
    const char *params[3] = {key_id, v, xid};
    const char *status, *cur;
    int rc, matches, ours;

    snprintf(v, sizeof(v), "%u", version);
    rc = cm_pg_exec_params(pg,
                           "SELECT (SELECT wrapped FROM data_keys WHERE key_id = $1"
                           " AND version = $2), pg_xact_status($3::xid8)::text,"
                           " pg_current_xact_id_if_assigned()::text",
                           3, params, NULL, NULL, 1);
    if (rc != CM_OK)
        return db_failed(pg, "checking a new DEK", rc);
    matches = !cm_pg_is_null(pg, 0, 0) && cm_pg_length(pg, 0, 0) == CM_KEYRING_WRAPPED &&
              memcmp(cm_pg_value(pg, 0, 0), wrapped, CM_KEYRING_WRAPPED) == 0;
    status = cm_pg_is_null(pg, 0, 1) ? "" : cm_pg_value(pg, 0, 1);
    cur = cm_pg_is_null(pg, 0, 2) ? "" : cm_pg_value(pg, 0, 2);
    ours = strcmp(cur, xid) == 0;
    if (matches && strcmp(status, "committed") == 0)
        return PENDING_CONFIRM;
    if (matches && ours)
        return PENDING_USE;
    if (strcmp(status, "in progress") == 0 && !ours)
        return PENDING_BYPASS;
    return PENDING_DROP;
}

/* The entry still as snapshotted (same transaction, same wrapped bytes), or NULL. */
static struct cm_dek_entry *refind(struct cm_keyring *kr, const char *key_id,
                                   const struct cm_dek_entry *snap)
{
    struct cm_dek_entry *e = cm_dekcache_find(&kr->cache, key_id, snap->version);

    if (e == NULL || !e->pending || strcmp(e->xid, snap->xid) != 0 ||
        memcmp(e->wrapped, snap->wrapped, CM_KEYRING_WRAPPED) != 0)
        return NULL;
    return e;
}

/*
 * Unwraps the row's DEK into the cache (or, with bypass or a full cache, into the scratch
 * key) and calls fn with it, all under the mutex.
 */
static int use_row(struct cm_keyring *kr, const char *key_id, const struct dek_row *r, int bypass,
                   dek_fn fn, void *arg)
{
    const struct cm_kek *kek;
    struct cm_dek_entry *e = NULL;
    unsigned char *dek;
    int rc;

    pthread_mutex_lock(&kr->mu);
    kek = cm_kekset_find(&kr->keks, r->kek_version);
    if (kek == NULL) {
        pthread_mutex_unlock(&kr->mu);
        CM_ERROR("keyring: the DEK of %s version %u is wrapped by KEK version %d, which "
                 "DOMS_KEK_FILE lacks",
                 key_id, r->version, r->kek_version);
        return CM_NOTFOUND;
    }
    if (!bypass)
        e = cm_dekcache_put(&kr->cache, key_id, r->version);
    dek = e != NULL ? e->key : kr->scratch;
    if (unwrap_dek(kek, key_id, r->version, r->wrapped, dek) != CM_OK) {
        if (e != NULL)
            cm_dekcache_drop(&kr->cache, e);
        pthread_mutex_unlock(&kr->mu);
        CM_ERROR("keyring: the DEK of %s version %u does not verify under KEK version %d "
                 "(a different KEK under that version, or an altered row)",
                 key_id, r->version, r->kek_version);
        return CM_DENIED;
    }
    if (e != NULL) {
        memcpy(e->wrapped, r->wrapped, CM_KEYRING_WRAPPED);
        if (r->xid[0] != '\0')
            cm_dekcache_set_pending(&kr->cache, e, r->xid);
        else
            cm_dekcache_confirm(&kr->cache, e, r->current);
    }
    rc = fn(dek, r->version, arg);
    if (e == NULL)
        sodium_memzero(kr->scratch, CM_AEAD_KEY_LEN);
    pthread_mutex_unlock(&kr->mu);
    return rc;
}

/*
 * Finds key_id's DEK of that version (0: the current one, created when create is set) in
 * the cache or the database, and calls fn with it. Returns fn's result or an error.
 */
static int with_dek(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, uint32_t version,
                    int create, dek_fn fn, void *arg)
{
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        struct cm_dek_entry snap, *e;
        struct dek_row row;
        int rc, bypass = 0;

        pthread_mutex_lock(&kr->mu);
        e = cm_dekcache_find(&kr->cache, key_id, version);
        if (e != NULL && !e->pending) {
            rc = fn(e->key, e->version, arg);
            pthread_mutex_unlock(&kr->mu);
            return rc;
        }
        if (e != NULL)
            snap = *e;
        pthread_mutex_unlock(&kr->mu);

        if (e != NULL) {
            rc = check_pending(pg, key_id, snap.version, snap.wrapped, snap.xid);
            if (rc < 0)
                return rc;
            if (rc == PENDING_USE || rc == PENDING_CONFIRM) {
                pthread_mutex_lock(&kr->mu);
                e = refind(kr, key_id, &snap);
                if (e != NULL && rc == PENDING_CONFIRM)
                    cm_dekcache_confirm(&kr->cache, e, e->current);
                if (e != NULL)
                    rc = fn(e->key, e->version, arg);
                pthread_mutex_unlock(&kr->mu);
                if (e != NULL)
                    return rc;
                continue; /* replaced meanwhile: look again */
            }
            if (rc == PENDING_DROP) {
                pthread_mutex_lock(&kr->mu);
                e = refind(kr, key_id, &snap);
                if (e != NULL)
                    cm_dekcache_drop(&kr->cache, e);
                pthread_mutex_unlock(&kr->mu);
            }
            /* Bypass: read (or create, after its creator ends) without caching. */
            bypass = rc == PENDING_BYPASS;
        }
        rc = load_dek(kr, pg, key_id, version, create, &row);
        if (rc == CM_CONFLICT)
            continue;
        if (rc != CM_OK)
            return rc;
        return use_row(kr, key_id, &row, bypass, fn, arg);
    }
    CM_WARN("keyring: the DEK of %s kept changing; giving up for now", key_id);
    return CM_AGAIN;
}

/* --- the API ---------------------------------------------------------------------------- */

int cm_keyring_load(struct cm_keyring **out, const char *path, char *err, size_t errlen)
{
    struct cm_keyring *kr;
    int rc;

    *out = NULL;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return CM_ERR;
    }
    kr = cm_xcalloc(1, sizeof(*kr));
    rc = cm_kekset_load(&kr->keks, path, err, errlen);
    if (rc != CM_OK) {
        free(kr);
        return rc;
    }
    pthread_mutex_init(&kr->mu, NULL);
    cm_dekcache_init(&kr->cache, CACHE_SLOTS, (int64_t)CM_KEYRING_CACHE_TTL * 1000);
    kr->scratch = sodium_malloc(CM_AEAD_KEY_LEN);
    if (kr->scratch == NULL)
        abort();
    CM_INFO("keyring: %zu KEK version(s) loaded from DOMS_KEK_FILE; version %d wraps new keys",
            kr->keks.n, cm_keyring_kek_version(kr));
    *out = kr;
    return CM_OK;
}

void cm_keyring_destroy(struct cm_keyring *kr)
{
    if (kr == NULL)
        return;
    cm_dekcache_cleanup(&kr->cache);
    cm_kekset_cleanup(&kr->keks);
    sodium_free(kr->scratch);
    pthread_mutex_destroy(&kr->mu);
    free(kr);
}

int cm_keyring_kek_version(const struct cm_keyring *kr)
{
    return kr->keks.keys[kr->keks.newest].version;
}

void cm_keyring_set_cache_ttl(struct cm_keyring *kr, int seconds)
{
    int64_t limit;

    pthread_mutex_lock(&kr->mu);
    kr->cache.ttl_ms = (int64_t)(seconds > 0 ? seconds : 0) * 1000;
    limit = cm_dekcache_now_ms() + kr->cache.ttl_ms;
    /* Shorten what is cached already, so the new bound holds from now. */
    for (size_t i = 0; i < kr->cache.cap; i++) {
        if (kr->cache.e[i].expires_ms > limit)
            kr->cache.e[i].expires_ms = limit;
    }
    pthread_mutex_unlock(&kr->mu);
}

struct value_op {
    const char *key_id;
    const char *aad;
    const unsigned char *in; /* plaintext to seal, or the sealed value to open */
    size_t len;
    struct cm_buf *out;
};

/* The additional data of a value: its 5 header bytes, key_id, 0, aad. */
static void value_aad(struct cm_buf *b, const unsigned char *header, const struct value_op *op)
{
    cm_buf_init(b);
    cm_buf_append(b, header, 5);
    cm_buf_append(b, op->key_id, strlen(op->key_id) + 1);
    cm_buf_puts(b, op->aad);
}

static int seal_with(const unsigned char *dek, uint32_t version, void *arg)
{
    struct value_op *op = arg;
    struct cm_buf aad;
    unsigned char *p;
    int rc;

    cm_buf_reserve(op->out, CM_KEYRING_OVERHEAD + op->len);
    p = (unsigned char *)op->out->data + op->out->len;
    p[0] = CM_KEYRING_FORMAT;
    put_u32(p + 1, version);
    cm_crypto_random(p + 5, CM_AEAD_NONCE_LEN);
    value_aad(&aad, p, op);
    rc = cm_aead_seal(dek, p + 5, aad.data, aad.len, op->in, op->len, p + 5 + CM_AEAD_NONCE_LEN);
    cm_buf_cleanup(&aad);
    if (rc != CM_OK)
        return rc;
    op->out->len += CM_KEYRING_OVERHEAD + op->len;
    op->out->data[op->out->len] = '\0';
    return CM_OK;
}

static int open_with(const unsigned char *dek, uint32_t version, void *arg)
{
    struct value_op *op = arg;
    size_t n = op->len - CM_KEYRING_OVERHEAD;
    struct cm_buf aad;
    unsigned char *p;
    int rc;

    (void)version;
    cm_buf_reserve(op->out, n);
    p = (unsigned char *)op->out->data + op->out->len;
    value_aad(&aad, op->in, op);
    rc = cm_aead_open(dek, op->in + 5, aad.data, aad.len, op->in + 5 + CM_AEAD_NONCE_LEN,
                      n + CM_AEAD_TAG_LEN, p);
    cm_buf_cleanup(&aad);
    if (rc != CM_OK)
        return rc; /* the bytes written were zeroed */
    op->out->len += n;
    op->out->data[op->out->len] = '\0';
    return CM_OK;
}

int cm_keyring_seal(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
                    const void *pt, size_t len, struct cm_buf *out)
{
    struct value_op op = {key_id, aad, pt, len, out};

    if (key_id == NULL || *key_id == '\0' || aad == NULL)
        return CM_INVALID;
    return with_dek(kr, pg, key_id, 0, 1, seal_with, &op);
}

int cm_keyring_open(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
                    const void *ct, size_t len, struct cm_buf *out)
{
    struct value_op op = {key_id, aad, ct, len, out};
    const unsigned char *p = ct;
    uint32_t version;

    if (key_id == NULL || *key_id == '\0' || aad == NULL)
        return CM_INVALID;
    /* What the header says is checked again by the tag, which covers it. */
    if (len < CM_KEYRING_OVERHEAD || p[0] != CM_KEYRING_FORMAT)
        return CM_DENIED;
    version = get_u32(p + 1);
    if (version == 0 || version > INT32_MAX)
        return CM_DENIED;
    return with_dek(kr, pg, key_id, version, 0, open_with, &op);
}

int cm_keyring_shred(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, long *destroyed)
{
    const char *params[1] = {key_id};
    int rc;

    if (destroyed != NULL)
        *destroyed = 0;
    if (key_id == NULL || *key_id == '\0')
        return CM_INVALID;
    rc = cm_pg_exec(pg, "DELETE FROM data_keys WHERE key_id = $1", 1, params);
    /* Dropped whatever the outcome: a key read again later costs one query. */
    pthread_mutex_lock(&kr->mu);
    cm_dekcache_drop_key(&kr->cache, key_id);
    pthread_mutex_unlock(&kr->mu);
    if (rc != CM_OK)
        return db_failed(pg, "shredding a DEK", rc);
    if (destroyed != NULL)
        *destroyed = cm_pg_affected(pg);
    CM_INFO("keyring: shredded %ld DEK version(s) of %s", cm_pg_affected(pg), key_id);
    return CM_OK;
}

/* --- scopes ---------------------------------------------------------------------------- */

void cm_keyring_scope_id(char out[CM_KEYRING_SCOPE_ID_LEN], const char *ws, const char *integration)
{
    int n = integration != NULL
                ? snprintf(out, CM_KEYRING_SCOPE_ID_LEN, "ws:%s:int:%s", ws, integration)
                : snprintf(out, CM_KEYRING_SCOPE_ID_LEN, "ws:%s", ws);

    /* Only ids longer than CM_ID_MAX can overflow it, and a truncated key id could name
     * another scope's key: that is a caller's bug, never data to carry on with. */
    if (n < 0 || (size_t)n >= CM_KEYRING_SCOPE_ID_LEN)
        abort();
}

int cm_keyring_shred_scope(struct cm_keyring *kr, struct cm_pg *pg, enum cm_key_scope scope,
                           const char *id, long *destroyed)
{
    const char *params[1] = {id};
    const char *sql =
        scope == CM_KEY_SCOPE_WORKSPACE
            ? "SELECT DISTINCT key_id FROM data_keys WHERE key_id = 'ws:' || $1"
              " OR (split_part(key_id, ':', 1) = 'ws' AND split_part(key_id, ':', 2) = $1"
              " AND split_part(key_id, ':', 3) = 'int' AND split_part(key_id, ':', 4) <> ''"
              " AND split_part(key_id, ':', 5) = '')"
            : "SELECT DISTINCT key_id FROM data_keys WHERE split_part(key_id, ':', 1) = 'ws'"
              " AND split_part(key_id, ':', 2) <> '' AND split_part(key_id, ':', 3) = 'int'"
              " AND split_part(key_id, ':', 4) = $1 AND split_part(key_id, ':', 5) = ''";
    char **ids;
    int n, rc;

    *destroyed = 0;
    if (!cm_id_valid(id, CM_ID_MAX))
        return CM_INVALID;
    rc = cm_pg_exec(pg, sql, 1, params);
    if (rc != CM_OK)
        return db_failed(pg, "finding a scope's DEKs", rc);
    /* Copied out: each shred runs a statement on pg, which replaces the result. */
    n = cm_pg_ntuples(pg);
    ids = cm_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        ids[i] = cm_xstrdup(cm_pg_value(pg, i, 0));
    for (int i = 0; i < n && rc == CM_OK; i++) {
        long one = 0;
        rc = cm_keyring_shred(kr, pg, ids[i], &one);
        *destroyed += one;
    }
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return rc;
}

/* --- rewrap ----------------------------------------------------------------------------- */

struct rewrap_row {
    char *key_id;
    struct dek_row r;
};

/* Re-wraps one locked row under the newest KEK. */
static int rewrap_one(struct cm_keyring *kr, struct cm_pg *pg, struct rewrap_row *row)
{
    const struct cm_kek *newest = &kr->keks.keys[kr->keks.newest], *old;
    unsigned char wrapped[CM_KEYRING_WRAPPED];
    char v[16], kv[16];
    const char *values[4] = {row->key_id, v, kv, (const char *)wrapped};
    const int lengths[4] = {0, 0, 0, CM_KEYRING_WRAPPED};
    const int formats[4] = {0, 0, 0, 1};
    int rc;

    pthread_mutex_lock(&kr->mu);
    old = cm_kekset_find(&kr->keks, row->r.kek_version);
    rc = old == NULL ? CM_NOTFOUND
                     : unwrap_dek(old, row->key_id, row->r.version, row->r.wrapped, kr->scratch);
    if (rc == CM_OK)
        rc = wrap_dek(newest, row->key_id, row->r.version, kr->scratch, wrapped);
    sodium_memzero(kr->scratch, CM_AEAD_KEY_LEN);
    pthread_mutex_unlock(&kr->mu);
    if (rc != CM_OK) {
        CM_ERROR("keyring: cannot rewrap the DEK of %s version %u: %s", row->key_id, row->r.version,
                 rc == CM_NOTFOUND ? "its KEK version is not in DOMS_KEK_FILE"
                                   : "it does not verify under its KEK");
        return rc;
    }
    snprintf(v, sizeof(v), "%u", row->r.version);
    snprintf(kv, sizeof(kv), "%d", newest->version);
    rc = cm_pg_exec_params(pg,
                           "UPDATE data_keys SET kek_version = $3, wrapped = $4"
                           " WHERE key_id = $1 AND version = $2",
                           4, values, lengths, formats, 0);
    return rc == CM_OK ? CM_OK : db_failed(pg, "rewrapping a DEK", rc);
}

/*
 * Locks and rewraps the next batch after (*last_key, *last_version), in its own
 * transaction. *n receives the rows seen, *moved those rewrapped, *skipped the first
 * refusal (CM_NOTFOUND or CM_DENIED) of a row left as it was.
 */
static int rewrap_batch(struct cm_keyring *kr, struct cm_pg *pg, char **last_key,
                        char last_version[16], int *n, long *moved, int *skipped)
{
    char kv[16];
    const char *params[3] = {kv, *last_key, last_version};
    struct rewrap_row *rows = NULL;
    int rc, count = 0, done = 0;

    *n = 0;
    snprintf(kv, sizeof(kv), "%d", cm_keyring_kek_version(kr));
    rc = cm_pg_begin(pg);
    if (rc == CM_OK)
        rc = cm_pg_exec_params(pg,
                               "SELECT key_id, version, kek_version, wrapped FROM data_keys"
                               " WHERE kek_version < $1 AND (key_id, version) > ($2, $3)"
                               " ORDER BY key_id, version LIMIT 100 FOR UPDATE",
                               3, params, NULL, NULL, 1);
    if (rc != CM_OK) {
        db_failed(pg, "reading data_keys for rewrap", rc);
        goto err;
    }
    count = cm_pg_ntuples(pg);
    rows = cm_xcalloc((size_t)count + 1, sizeof(*rows));
    for (int i = 0; i < count; i++) {
        rows[i].key_id = cm_xstrndup(cm_pg_value(pg, i, 0), (size_t)cm_pg_length(pg, i, 0));
        if (read_row(pg, i, 1, rows[i].key_id, &rows[i].r) != CM_OK)
            rows[i].r.kek_version = -1; /* refused below without touching it */
    }
    for (int i = 0; i < count; i++) {
        int one = rows[i].r.kek_version < 0 ? CM_DENIED : rewrap_one(kr, pg, &rows[i]);
        if (one == CM_NOTFOUND || one == CM_DENIED) {
            if (*skipped == CM_OK)
                *skipped = one;
            continue;
        }
        if (one != CM_OK) {
            rc = one;
            goto err;
        }
        done++;
    }
    rc = cm_pg_commit(pg);
    if (rc != CM_OK) {
        db_failed(pg, "committing a rewrap batch", rc);
        goto err;
    }
    *moved += done;
    *n = count;
    if (count > 0) {
        free(*last_key);
        *last_key = cm_xstrdup(rows[count - 1].key_id);
        snprintf(last_version, 16, "%u", rows[count - 1].r.version);
    }
    goto done;
err:
    cm_pg_rollback(pg);
done:
    for (int i = 0; rows != NULL && i < count; i++)
        free(rows[i].key_id);
    free(rows);
    return rc;
}

int cm_keyring_rewrap(struct cm_keyring *kr, struct cm_pg *pg, long *rewrapped)
{
    char *last_key = cm_xstrdup(""); /* sorts before every key id, all being non-empty */
    char last_version[16] = "0";
    long moved = 0;
    int rc = CM_OK, skipped = CM_OK, n = REWRAP_BATCH;

    if (cm_pg_in_transaction(pg)) {
        CM_ERROR("keyring: rewrap needs a connection outside any transaction");
        rc = CM_CONFLICT;
        n = 0;
    }
    while (rc == CM_OK && n == REWRAP_BATCH)
        rc = rewrap_batch(kr, pg, &last_key, last_version, &n, &moved, &skipped);
    free(last_key);
    if (rewrapped != NULL)
        *rewrapped = moved;
    if (rc == CM_OK)
        CM_INFO("keyring: rewrapped %ld DEK(s) under KEK version %d", moved,
                cm_keyring_kek_version(kr));
    return rc != CM_OK ? rc : skipped;
}
