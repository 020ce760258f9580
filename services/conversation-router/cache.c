/*
 * cache.c - small string maps for the inbound consumer's hot path: an account's route and
 * a contact's internal id, so that a message costs two queries rather than six.
 *
 * One consumer thread owns each cache (no lock). Contacts never change id, so their
 * entries live until the map fills (then it is emptied) or a failure empties it (a contact
 * purged meanwhile). Routes change: their entries expire after a couple of seconds, the
 * bound on how long a disconnected account's events may still be routed.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "common/mem.h"

#define SLOTS    16384
#define MAX_FILL 12000

struct entry {
    char *key;
    char *value;
    time_t expires; /* 0: never */
};

struct cache {
    struct entry slots[SLOTS];
    int used;
    int ttl;
};

struct cache *cache_create(int ttl_seconds)
{
    struct cache *c = cm_xcalloc(1, sizeof(*c));

    c->ttl = ttl_seconds;
    return c;
}

void cache_clear(struct cache *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < SLOTS; i++) {
        free(c->slots[i].key);
        free(c->slots[i].value);
        c->slots[i].key = c->slots[i].value = NULL;
    }
    c->used = 0;
}

void cache_destroy(struct cache *c)
{
    cache_clear(c);
    free(c);
}

/* FNV-1a: short keys, no adversary (keys are our own ids and keyed hashes). */
static unsigned slot_of(const char *key)
{
    unsigned h = 2166136261u;

    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % SLOTS;
}

const char *cache_get(struct cache *c, const char *key)
{
    for (unsigned i = slot_of(key), n = 0; n < SLOTS; i = (i + 1) % SLOTS, n++) {
        struct entry *e = &c->slots[i];
        if (e->key == NULL)
            return NULL;
        if (strcmp(e->key, key) == 0) {
            if (e->expires != 0 && time(NULL) >= e->expires)
                return NULL;
            return e->value;
        }
    }
    return NULL;
}

void cache_put(struct cache *c, const char *key, const char *value)
{
    if (c->used >= MAX_FILL)
        cache_clear(c);
    for (unsigned i = slot_of(key), n = 0; n < SLOTS; i = (i + 1) % SLOTS, n++) {
        struct entry *e = &c->slots[i];
        if (e->key != NULL && strcmp(e->key, key) != 0)
            continue;
        if (e->key == NULL) {
            e->key = cm_xstrdup(key);
            c->used++;
        }
        free(e->value);
        e->value = cm_xstrdup(value);
        e->expires = c->ttl > 0 ? time(NULL) + c->ttl : 0;
        return;
    }
}
