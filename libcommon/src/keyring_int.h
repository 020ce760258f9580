/*
 * keyring_int.h - the keyring's inner parts, shared by keyring.c, kekfile.c and dekcache.c
 * and by nothing else (not installed under include/).
 */
#ifndef COMMON_KEYRING_INT_H
#define COMMON_KEYRING_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/crypto.h"
#include "common/err.h"
#include "common/keyring.h"

/* --- the KEK file (kekfile.c) --------------------------------------------------------- */

struct cm_kek {
    int version;
    unsigned char key[CM_AEAD_KEY_LEN];
};

/* The KEKs of one file, in sodium_malloc memory made read-only once loaded. */
struct cm_kekset {
    struct cm_kek *keys;
    size_t n;
    size_t newest; /* index of the highest version */
};

/*
 * Reads and checks the file (see cm_keyring_load() for the format and the refusals).
 * Returns CM_OK with ks filled, or CM_INVALID with one line in err and ks empty.
 * Free with cm_kekset_cleanup().
 */
int cm_kekset_load(struct cm_kekset *ks, const char *path, char *err, size_t errlen) CM_MUST_CHECK;

/* Wipes and frees the keys. Safe on a zeroed or cleaned set. */
void cm_kekset_cleanup(struct cm_kekset *ks);

/* The KEK of that version (borrowed, read-only), or NULL when the file has none. */
const struct cm_kek *cm_kekset_find(const struct cm_kekset *ks, int version);

/* --- the DEK cache (dekcache.c); the caller holds the keyring's mutex ----------------- */

struct cm_dek_entry {
    char *key_id;     /* NULL: a free slot */
    uint64_t hash;    /* of key_id, to skip most string comparisons */
    uint32_t version; /* DEK version */
    int current;      /* the newest version known for key_id: what seal uses */
    int pending;      /* created by a transaction not yet seen committed */
    char xid[32];     /* that transaction (pg_current_xact_id() text) when pending */
    unsigned char wrapped[CM_KEYRING_WRAPPED]; /* the row as read or written */
    int64_t expires_ms;                        /* monotonic; not used while pending */
    uint64_t used;                             /* for least-recently-used eviction */
    unsigned char *key;                        /* 32 bytes inside the cache's secure slab */
};

struct cm_dekcache {
    struct cm_dek_entry *e;
    size_t cap;
    unsigned char *slab; /* sodium_malloc(cap * 32): the unwrapped DEKs */
    uint64_t tick;
    int64_t ttl_ms;
};

/* Sets up cap slots (secure memory for their keys). cm_dekcache_cleanup() wipes and frees. */
void cm_dekcache_init(struct cm_dekcache *c, size_t cap, int64_t ttl_ms);
void cm_dekcache_cleanup(struct cm_dekcache *c);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t cm_dekcache_now_ms(void);

/*
 * The live entry of key_id and version (version 0: the current one), or NULL. A confirmed
 * entry past its expiry is wiped and freed here and not returned. Marks the entry used.
 */
struct cm_dek_entry *cm_dekcache_find(struct cm_dekcache *c, const char *key_id, uint32_t version);

/*
 * The slot for key_id and version: the existing entry, or a free one, or the least recently
 * used entry that is not pending, wiped. Returns NULL when every slot is pending. The caller
 * fills key, wrapped and the flags; cm_dekcache_confirm() or _set_pending() finishes it.
 */
struct cm_dek_entry *cm_dekcache_put(struct cm_dekcache *c, const char *key_id, uint32_t version);

/* Makes e trusted for the TTL from now; with current, the current version of its key id. */
void cm_dekcache_confirm(struct cm_dekcache *c, struct cm_dek_entry *e, int current);

/* Marks e created by transaction xid, not yet committed; current for its key id. */
void cm_dekcache_set_pending(struct cm_dekcache *c, struct cm_dek_entry *e, const char *xid);

/* Wipes and frees one entry. */
void cm_dekcache_drop(struct cm_dekcache *c, struct cm_dek_entry *e);

/* Wipes and frees every entry of key_id. */
void cm_dekcache_drop_key(struct cm_dekcache *c, const char *key_id);

#endif
