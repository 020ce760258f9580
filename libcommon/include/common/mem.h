/*
 * mem.h - allocation that cannot fail, and a growable byte buffer.
 *
 * Out of memory is not a condition a daemon can serve through, so every allocation goes
 * through cm_x* which abort with a message instead of returning NULL. Handler code then
 * has no unchecked allocation and no dead error branches.
 */
#ifndef COMMON_MEM_H
#define COMMON_MEM_H

#include <stdarg.h>
#include <stddef.h>

/* malloc/calloc/realloc/strdup that abort on exhaustion. Free with free(). */
void *cm_xmalloc(size_t n);
void *cm_xcalloc(size_t count, size_t size);
void *cm_xrealloc(void *p, size_t n);
char *cm_xstrdup(const char *s);
char *cm_xstrndup(const char *s, size_t n);

/* Returns a newly allocated formatted string; the caller frees it with free(). */
char *cm_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A growable buffer. Embedded: cm_buf_init() before use, cm_buf_cleanup() after.
 * data is always NUL-terminated (the NUL is not counted in len), so text can be used
 * as a C string directly.
 */
struct cm_buf {
    char *data;
    size_t len;
    size_t cap;
};

void cm_buf_init(struct cm_buf *b);
void cm_buf_cleanup(struct cm_buf *b);
/*
 * Like cm_buf_cleanup(), but first zeroes the whole allocation (sodium_memzero, which the
 * compiler cannot drop), for a buffer that held a secret or decrypted Platform Data.
 * Growing a buffer reallocates it, which can leave copies behind: reserve the full size
 * before writing sensitive bytes into it, as cm_keyring_open() does.
 */
void cm_buf_wipe(struct cm_buf *b);
void cm_buf_reset(struct cm_buf *b);
void cm_buf_reserve(struct cm_buf *b, size_t extra);
void cm_buf_append(struct cm_buf *b, const void *data, size_t len);
void cm_buf_puts(struct cm_buf *b, const char *s);
void cm_buf_printf(struct cm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cm_buf_vprintf(struct cm_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Appends s as the body of a JSON string (escaped, without the surrounding quotes). */
void cm_buf_json_escape(struct cm_buf *b, const char *s, size_t len);

/* Appends s with HTML's five special characters escaped, for server-rendered pages. */
void cm_buf_html_escape(struct cm_buf *b, const char *s);

/* Hands the buffer's memory to the caller (free() it) and leaves b empty. */
char *cm_buf_steal(struct cm_buf *b);

#endif
