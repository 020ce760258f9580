/*
 * url.c - credentials masked out of URLs before they are shown (url.h).
 */
#include "common/url.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "common/mem.h"

#define MASK "****"

/* True for a query parameter name (len bytes) that names a credential. */
static bool secret_name(const char *name, size_t len)
{
    static const char *const words[] = {"pass", "secret", "token", "key"};

    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++) {
            if (strncasecmp(name + i, words[w], wl) == 0)
                return true;
        }
    }
    return false;
}

/* Appends the query string q (len bytes, after '?') with credential values masked. */
static void redact_query(struct cm_buf *b, const char *q, size_t len)
{
    const char *end = q + len;

    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));

        if (eq != NULL && secret_name(q, (size_t)(eq - q))) {
            cm_buf_append(b, q, (size_t)(eq - q) + 1);
            cm_buf_puts(b, MASK);
        } else {
            cm_buf_append(b, q, (size_t)(stop - q));
        }
        if (amp != NULL)
            cm_buf_puts(b, "&");
        q = amp ? amp + 1 : end;
    }
}

/* Appends one URL (len bytes, no ',') with its credentials masked. */
static void redact_one(struct cm_buf *b, const char *u, size_t len)
{
    const char *end = u + len, *p = u, *scheme = NULL, *auth_end, *at = NULL, *q;

    for (const char *s = u; s + 3 <= end; s++) {
        if (memcmp(s, "://", 3) == 0) {
            scheme = s;
            break;
        }
    }
    if (scheme != NULL) {
        const char *auth = scheme + 3;
        cm_buf_append(b, u, (size_t)(auth - u));
        auth_end = auth;
        while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
            auth_end++;
        for (const char *s = auth; s < auth_end; s++) {
            if (*s == '@')
                at = s;
        }
        if (at != NULL) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            if (colon != NULL)
                cm_buf_append(b, auth, (size_t)(colon - auth) + 1);
            cm_buf_puts(b, MASK);
            auth = at;
        }
        cm_buf_append(b, auth, (size_t)(auth_end - auth));
        p = auth_end;
    }
    q = memchr(p, '?', (size_t)(end - p));
    if (q == NULL) {
        cm_buf_append(b, p, (size_t)(end - p));
        return;
    }
    cm_buf_append(b, p, (size_t)(q - p) + 1);
    {
        const char *hash = memchr(q + 1, '#', (size_t)(end - q - 1));
        const char *qend = hash ? hash : end;
        redact_query(b, q + 1, (size_t)(qend - q - 1));
        cm_buf_append(b, qend, (size_t)(end - qend));
    }
}

void cm_url_redact(const char *url, char *out, size_t cap)
{
    struct cm_buf b;
    const char *p = url ? url : "";

    if (cap == 0)
        return;
    cm_buf_init(&b);
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        redact_one(&b, p, len);
        if (comma == NULL)
            break;
        cm_buf_puts(&b, ",");
        p = comma + 1;
    }
    if (b.len >= cap) {
        memcpy(out, b.data, cap - 1);
        out[cap - 1] = '\0';
    } else {
        memcpy(out, b.data ? b.data : "", b.len);
        out[b.len] = '\0';
    }
    cm_buf_cleanup(&b);
}
