/*
 * dekcache.c - the keyring's cache of unwrapped DEKs (see keyring_int.h).
 *
 * A fixed table of slots; each slot's 32-byte key lives in one sodium_malloc slab (guard
 * pages, mlock'd where allowed) rather than an allocation of its own, which would cost pages
 * and locked memory per key. A linear scan is enough for the sizes involved (a comparison of
 * hashes per slot, under the keyring's mutex). Every function here expects that mutex held.
 */
#include "keyring_int.h"

#include "common/mem.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t cm_dekcache_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a: cheap, and only a prefilter for strcmp. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void cm_dekcache_init(struct cm_dekcache *c, size_t cap, int64_t ttl_ms)
{
    c->cap = cap;
    c->e = cm_xcalloc(cap, sizeof(*c->e));
    c->slab = sodium_allocarray(cap, CM_AEAD_KEY_LEN);
    if (c->slab == NULL)
        abort();
    sodium_memzero(c->slab, cap * CM_AEAD_KEY_LEN);
    for (size_t i = 0; i < cap; i++)
        c->e[i].key = c->slab + i * CM_AEAD_KEY_LEN;
    c->tick = 0;
    c->ttl_ms = ttl_ms;
}

void cm_dekcache_cleanup(struct cm_dekcache *c)
{
    if (c->e != NULL) {
        for (size_t i = 0; i < c->cap; i++)
            free(c->e[i].key_id);
        free(c->e);
    }
    if (c->slab != NULL)
        sodium_free(c->slab); /* zeroes it first */
    memset(c, 0, sizeof(*c));
}

void cm_dekcache_drop(struct cm_dekcache *c, struct cm_dek_entry *e)
{
    unsigned char *key = e->key;

    (void)c;
    sodium_memzero(key, CM_AEAD_KEY_LEN);
    free(e->key_id);
    memset(e, 0, sizeof(*e));
    e->key = key;
}

static int same(const struct cm_dek_entry *e, uint64_t h, const char *key_id)
{
    return e->key_id != NULL && e->hash == h && strcmp(e->key_id, key_id) == 0;
}

struct cm_dek_entry *cm_dekcache_find(struct cm_dekcache *c, const char *key_id, uint32_t version)
{
    uint64_t h = hash_str(key_id);
    int64_t now = cm_dekcache_now_ms();

    for (size_t i = 0; i < c->cap; i++) {
        struct cm_dek_entry *e = &c->e[i];

        if (!same(e, h, key_id) || (version != 0 ? e->version != version : !e->current))
            continue;
        if (!e->pending && now >= e->expires_ms) {
            cm_dekcache_drop(c, e);
            return NULL;
        }
        e->used = ++c->tick;
        return e;
    }
    return NULL;
}

struct cm_dek_entry *cm_dekcache_put(struct cm_dekcache *c, const char *key_id, uint32_t version)
{
    uint64_t h = hash_str(key_id);
    struct cm_dek_entry *victim = NULL;

    for (size_t i = 0; i < c->cap; i++) {
        struct cm_dek_entry *e = &c->e[i];

        if (same(e, h, key_id) && e->version == version) {
            victim = e;
            break;
        }
        /* A free slot beats any occupied one; then the least recently used. */
        if (e->key_id == NULL) {
            if (victim == NULL || victim->key_id != NULL)
                victim = e;
        } else if (!e->pending &&
                   (victim == NULL || (victim->key_id != NULL && e->used < victim->used))) {
            victim = e;
        }
    }
    if (victim == NULL)
        return NULL;
    cm_dekcache_drop(c, victim);
    victim->key_id = cm_xstrdup(key_id);
    victim->hash = h;
    victim->version = version;
    victim->used = ++c->tick;
    return victim;
}

/* Only one entry of a key id is the one seal uses. */
static void make_current(struct cm_dekcache *c, struct cm_dek_entry *cur)
{
    for (size_t i = 0; i < c->cap; i++) {
        struct cm_dek_entry *e = &c->e[i];
        if (e != cur && same(e, cur->hash, cur->key_id))
            e->current = 0;
    }
    cur->current = 1;
}

void cm_dekcache_confirm(struct cm_dekcache *c, struct cm_dek_entry *e, int current)
{
    e->pending = 0;
    e->xid[0] = '\0';
    e->expires_ms = cm_dekcache_now_ms() + c->ttl_ms;
    if (current)
        make_current(c, e);
}

void cm_dekcache_set_pending(struct cm_dekcache *c, struct cm_dek_entry *e, const char *xid)
{
    e->pending = 1;
    snprintf(e->xid, sizeof(e->xid), "%s", xid);
    make_current(c, e);
}

void cm_dekcache_drop_key(struct cm_dekcache *c, const char *key_id)
{
    uint64_t h = hash_str(key_id);

    for (size_t i = 0; i < c->cap; i++) {
        if (same(&c->e[i], h, key_id))
            cm_dekcache_drop(c, &c->e[i]);
    }
}
