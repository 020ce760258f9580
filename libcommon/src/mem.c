/*
 * mem.c - aborting allocators and the growable buffer.
 */
#include "common/mem.h"
#include "common/err.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    /* No allocation and no logging machinery here: we are out of memory. */
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *cm_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *cm_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *cm_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *cm_xstrdup(const char *s)
{
    return cm_xstrndup(s, strlen(s));
}

char *cm_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = cm_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *cm_xasprintf(const char *fmt, ...)
{
    struct cm_buf b;
    va_list ap;

    cm_buf_init(&b);
    va_start(ap, fmt);
    cm_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return cm_buf_steal(&b);
}

const char *cm_err_str(int code)
{
    switch (code) {
    case CM_OK:
        return "ok";
    case CM_AGAIN:
        return "try again";
    case CM_NOTFOUND:
        return "not found";
    case CM_INVALID:
        return "invalid";
    case CM_CONFLICT:
        return "conflict";
    case CM_DENIED:
        return "denied";
    case CM_UNAVAIL:
        return "unavailable";
    case CM_TIMEOUT:
        return "timeout";
    case CM_TOOBIG:
        return "too big";
    default:
        return "error";
    }
}

void cm_buf_init(struct cm_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cm_buf_cleanup(struct cm_buf *b)
{
    free(b->data);
    cm_buf_init(b);
}

void cm_buf_wipe(struct cm_buf *b)
{
    if (b->data != NULL)
        sodium_memzero(b->data, b->cap);
    cm_buf_cleanup(b);
}

void cm_buf_reset(struct cm_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void cm_buf_reserve(struct cm_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap;

    if (need <= b->cap)
        return;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = cm_xrealloc(b->data, cap);
    b->cap = cap;
}

void cm_buf_append(struct cm_buf *b, const void *data, size_t len)
{
    cm_buf_reserve(b, len);
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void cm_buf_puts(struct cm_buf *b, const char *s)
{
    cm_buf_append(b, s, strlen(s));
}

void cm_buf_vprintf(struct cm_buf *b, const char *fmt, va_list ap)
{
    va_list again;
    int n;

    va_copy(again, ap);
    cm_buf_reserve(b, 64);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (n < 0) {
        va_end(again);
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        cm_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
    }
    va_end(again);
    b->len += (size_t)n;
}

void cm_buf_printf(struct cm_buf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cm_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void cm_buf_json_escape(struct cm_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    cm_buf_reserve(b, len);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            cm_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            cm_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            cm_buf_append(b, "\\n", 2);
            break;
        case '\r':
            cm_buf_append(b, "\\r", 2);
            break;
        case '\t':
            cm_buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                cm_buf_append(b, esc, sizeof(esc));
            } else {
                cm_buf_append(b, &s[i], 1);
            }
        }
    }
}

void cm_buf_html_escape(struct cm_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            cm_buf_puts(b, "&amp;");
            break;
        case '<':
            cm_buf_puts(b, "&lt;");
            break;
        case '>':
            cm_buf_puts(b, "&gt;");
            break;
        case '"':
            cm_buf_puts(b, "&quot;");
            break;
        case '\'':
            cm_buf_puts(b, "&#39;");
            break;
        default:
            cm_buf_append(b, s, 1);
        }
    }
}

char *cm_buf_steal(struct cm_buf *b)
{
    char *p = b->data;

    if (p == NULL)
        p = cm_xstrdup("");
    cm_buf_init(b);
    return p;
}
