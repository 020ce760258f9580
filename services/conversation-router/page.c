/*
 * page.c - the cursors and page sizes of the router's lists (proto/router.md).
 *
 * A list is read by keyset: each page asks for the rows after the last one it gave, by
 * the list's own sort key, so that a row arriving between two pages shifts nothing (OFFSET
 * would show a row twice or skip one). The cursor carries that sort key, opaque to callers:
 * base64url of "<kind>:<microseconds since the epoch>:<tie-break>". It is checked strictly,
 * because its values reach SQL (as parameters): a cursor that is not exactly what this file
 * would have written is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/id.h"
#include "router.h"

/* "<kind>:<usec>:<key>" never needs more: one letter, 19 digits, a 64-byte id. */
#define PLAIN_MAX 96

/* True when s is 1 to 19 decimal digits (a non-negative int64 with no sign or space). */
static bool digits(const char *s)
{
    size_t n = strspn(s, "0123456789");

    return n > 0 && n <= 19 && s[n] == '\0';
}

void router_cursor_encode(char kind, int64_t usec, const char *key, char *out)
{
    char plain[PLAIN_MAX + 32];
    int n = snprintf(plain, sizeof(plain), "%c:%lld:%s", kind, (long long)usec, key);

    if (n >= (int)sizeof(plain))
        n = (int)sizeof(plain) - 1; /* never for the keys decode accepts */
    cm_base64url_encode(plain, (size_t)n, out);
}

int router_cursor_decode(const char *cursor, char kind, int64_t *usec, char *key, size_t keycap)
{
    unsigned char plain[PLAIN_MAX + 1];
    char again[ROUTER_CURSOR_MAX];
    char *usec_s, *key_s;
    long long v;
    int n;

    if (cursor == NULL || strlen(cursor) >= ROUTER_CURSOR_MAX)
        return CM_INVALID;
    n = cm_base64url_decode(cursor, strlen(cursor), plain, PLAIN_MAX);
    if (n < 5)
        return CM_INVALID;
    plain[n] = '\0';
    if (memchr(plain, '\0', (size_t)n) != NULL || plain[0] != (unsigned char)kind ||
        plain[1] != ':')
        return CM_INVALID;
    usec_s = (char *)plain + 2;
    key_s = strchr(usec_s, ':');
    if (key_s == NULL)
        return CM_INVALID;
    *key_s++ = '\0';
    if (!digits(usec_s))
        return CM_INVALID;
    errno = 0;
    v = strtoll(usec_s, NULL, 10);
    if (errno != 0)
        return CM_INVALID;
    /* The key: a conversation id, or a message's arrival sequence. */
    if (kind == ROUTER_CURSOR_CONVERSATIONS ? !cm_id_valid(key_s, 64) : !digits(key_s))
        return CM_INVALID;
    if (strlen(key_s) >= keycap)
        return CM_INVALID;
    /* Exactly what encode writes: no padding, no leading zeros, no second spelling. */
    router_cursor_encode(kind, (int64_t)v, key_s, again);
    if (strcmp(again, cursor) != 0)
        return CM_INVALID;
    *usec = (int64_t)v;
    snprintf(key, keycap, "%s", key_s);
    return CM_OK;
}

int router_page_size(const cJSON *req, const char *name, int dflt, int max, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);

    if (v == NULL || cJSON_IsNull(v)) {
        *out = dflt;
        return CM_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > max ||
        v->valuedouble != (double)(int)v->valuedouble)
        return CM_INVALID;
    *out = (int)v->valuedouble;
    return CM_OK;
}

int router_whole(const cJSON *req, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, name);

    if (v == NULL || cJSON_IsNull(v))
        return CM_NOTFOUND;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return CM_INVALID;
    *out = (int64_t)v->valuedouble;
    return CM_OK;
}
