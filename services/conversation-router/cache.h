/*
 * cache.h - a string map owned by one thread, with an optional time to live.
 */
#ifndef ROUTER_CACHE_H
#define ROUTER_CACHE_H

struct cache;

/* Creates a map whose entries expire after ttl_seconds (0: never). cache_destroy frees. */
struct cache *cache_create(int ttl_seconds);
void cache_destroy(struct cache *c);
/* Forgets everything (after a failure that may come from a stale entry). */
void cache_clear(struct cache *c);
/* The value of key (borrowed until the next put or clear), or NULL. */
const char *cache_get(struct cache *c, const char *key);
/* Sets key to value (both copied). */
void cache_put(struct cache *c, const char *key, const char *value);

#endif
