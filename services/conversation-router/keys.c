/*
 * keys.c - sealing the router's Platform Data, and the blind index of contact ids.
 *
 * Everything sensitive is sealed under a data key of its workspace and integration (key id
 * ws:<ws>:int:<integration>), so destroying the keys of a workspace, or of one integration
 * (Meta's data-deletion callback), makes exactly that data unreadable, backups included. A
 * contact must still be found by its PSID or IGSID without storing it in plaintext: the
 * lookup column holds HMAC-SHA256 of the id under a per-workspace index key, itself sealed
 * under the workspace's data key (table index_keys) and cached here.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/log.h"
#include "common/mem.h"
#include "router.h"

#define INDEX_KEY_LEN 32
#define CACHE_TTL_S   60

struct cached_key {
    char ws[128];
    unsigned char *key; /* sodium_malloc */
    time_t loaded;
    struct cached_key *next;
};

struct router_keys {
    pthread_mutex_t lock;
    struct cached_key *head;
};

int router_keys_create(struct router_keys **out)
{
    struct router_keys *k = cm_xcalloc(1, sizeof(*k));

    pthread_mutex_init(&k->lock, NULL);
    *out = k;
    return CM_OK;
}

void router_keys_destroy(struct router_keys *k)
{
    if (k == NULL)
        return;
    while (k->head != NULL) {
        struct cached_key *c = k->head;
        k->head = c->next;
        sodium_free(c->key);
        free(c);
    }
    pthread_mutex_destroy(&k->lock);
    free(k);
}

void router_new_id(const char *prefix, char out[40])
{
    unsigned char raw[12];
    char hex[25];

    cm_crypto_random(raw, sizeof(raw));
    cm_hex_encode(raw, sizeof(raw), hex);
    snprintf(out, 40, "%s_%s", prefix, hex);
}

int router_seal(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                const char *aad, const void *pt, size_t len, struct cm_buf *out)
{
    char kid[CM_KEYRING_SCOPE_ID_LEN];

    cm_keyring_scope_id(kid, ws, integration);
    cm_buf_reset(out);
    return cm_keyring_seal(r->keyring, pg, kid, aad, pt, len, out);
}

int router_open(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                const char *aad, const char *bytea_text, struct cm_buf *out)
{
    unsigned char *raw;
    size_t raw_len = 0;
    char kid[CM_KEYRING_SCOPE_ID_LEN];
    int rc;

    raw = PQunescapeBytea((const unsigned char *)bytea_text, &raw_len);
    if (raw == NULL)
        return CM_ERR;
    cm_keyring_scope_id(kid, ws, integration);
    cm_buf_reset(out);
    rc = cm_keyring_open(r->keyring, pg, kid, aad, raw, raw_len, out);
    PQfreemem(raw);
    return rc;
}

int router_open_raw(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                    const char *aad, const void *sealed, size_t len, struct cm_buf *out)
{
    char kid[CM_KEYRING_SCOPE_ID_LEN];

    cm_keyring_scope_id(kid, ws, integration);
    cm_buf_reset(out);
    return cm_keyring_open(r->keyring, pg, kid, aad, sealed, len, out);
}

/* Copies a cached, still fresh key of ws into key; true when found. */
static bool cache_get(struct router_keys *k, const char *ws, unsigned char key[INDEX_KEY_LEN])
{
    time_t now = time(NULL);
    bool found = false;

    pthread_mutex_lock(&k->lock);
    for (struct cached_key *c = k->head; c != NULL; c = c->next) {
        if (strcmp(c->ws, ws) == 0 && now - c->loaded < CACHE_TTL_S) {
            memcpy(key, c->key, INDEX_KEY_LEN);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&k->lock);
    return found;
}

static void cache_put(struct router_keys *k, const char *ws, const unsigned char *key)
{
    struct cached_key *c;

    pthread_mutex_lock(&k->lock);
    for (c = k->head; c != NULL; c = c->next) {
        if (strcmp(c->ws, ws) == 0)
            break;
    }
    if (c == NULL) {
        c = cm_xcalloc(1, sizeof(*c));
        snprintf(c->ws, sizeof(c->ws), "%s", ws);
        c->key = sodium_malloc(INDEX_KEY_LEN);
        if (c->key == NULL)
            abort();
        c->next = k->head;
        k->head = c;
    }
    memcpy(c->key, key, INDEX_KEY_LEN);
    c->loaded = time(NULL);
    pthread_mutex_unlock(&k->lock);
}

void router_keys_forget(struct router *r, const char *ws)
{
    struct router_keys *k = r->keys;
    struct cached_key **pp;

    pthread_mutex_lock(&k->lock);
    for (pp = &k->head; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->ws, ws) == 0) {
            struct cached_key *c = *pp;
            *pp = c->next;
            sodium_free(c->key);
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&k->lock);
}

/* Loads (or creates, first use) the workspace's index key. */
static int index_key(struct router *r, struct cm_pg *pg, const char *ws,
                     unsigned char key[INDEX_KEY_LEN])
{
    const char *params[1] = {ws};
    char aad[200];
    struct cm_buf buf;
    int rc;

    if (cache_get(r->keys, ws, key))
        return CM_OK;
    snprintf(aad, sizeof(aad), "router.index_keys.sealed:%s", ws);
    cm_buf_init(&buf);
    rc = cm_pg_exec(pg, "SELECT sealed FROM index_keys WHERE workspace_id = $1", 1, params);
    if (rc == CM_OK && cm_pg_ntuples(pg) == 0) {
        /* First contact of the workspace: a new random key; a racing replica's wins. */
        unsigned char fresh[INDEX_KEY_LEN];
        cm_crypto_random(fresh, sizeof(fresh));
        rc = router_seal(r, pg, ws, NULL, aad, fresh, sizeof(fresh), &buf);
        sodium_memzero(fresh, sizeof(fresh));
        if (rc == CM_OK) {
            const char *values[2] = {ws, buf.data};
            const int lengths[2] = {0, (int)buf.len};
            const int formats[2] = {0, 1};
            rc = cm_pg_exec_params(pg,
                                   "INSERT INTO index_keys (workspace_id, sealed) VALUES ($1, $2)"
                                   " ON CONFLICT (workspace_id) DO NOTHING",
                                   2, values, lengths, formats, 0);
        }
        if (rc == CM_OK)
            rc = cm_pg_exec(pg, "SELECT sealed FROM index_keys WHERE workspace_id = $1", 1, params);
    }
    if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
        rc = CM_NOTFOUND;
    if (rc == CM_OK)
        rc = router_open(r, pg, ws, NULL, aad, cm_pg_value(pg, 0, 0), &buf);
    if (rc == CM_OK && buf.len != INDEX_KEY_LEN)
        rc = CM_DENIED;
    if (rc == CM_OK) {
        memcpy(key, buf.data, INDEX_KEY_LEN);
        cache_put(r->keys, ws, key);
    }
    cm_buf_wipe(&buf);
    return rc;
}

int router_blind(struct router *r, struct cm_pg *pg, const char *ws, const char *integration_id,
                 const char *psid, unsigned char out[32])
{
    unsigned char key[INDEX_KEY_LEN];
    struct cm_buf msg;
    int rc = index_key(r, pg, ws, key);

    if (rc != CM_OK)
        return rc;
    cm_buf_init(&msg);
    cm_buf_printf(&msg, "%s:%s", integration_id, psid);
    cm_crypto_hmac_sha256(key, sizeof(key), msg.data, msg.len, out);
    sodium_memzero(key, sizeof(key));
    cm_buf_wipe(&msg);
    return CM_OK;
}
