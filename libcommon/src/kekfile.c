/*
 * kekfile.c - reads DOMS_KEK_FILE into secure memory (see keyring.h for the format).
 *
 * The file's bytes are key material from the first read: they go straight into
 * sodium_malloc memory, are decoded there and wiped with it. Error messages name the
 * variable, the path and the line, and never quote a line.
 */
#include "keyring_int.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEK_FILE_MAX (64 * 1024)

struct parse {
    const char *path;
    char *err;
    size_t errlen;
    unsigned char *tmp; /* secure scratch for decoding, as large as the file */
    size_t tmp_cap;
};

static int refuse(struct parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "DOMS_KEK_FILE: <path>[ line N]: <reason>" into p->err; returns CM_INVALID. */
static int refuse(struct parse *p, int line, const char *fmt, ...)
{
    char reason[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(p->err, p->errlen, "DOMS_KEK_FILE: %s line %d: %s", p->path, line, reason);
    else
        snprintf(p->err, p->errlen, "DOMS_KEK_FILE: %s: %s", p->path, reason);
    return CM_INVALID;
}

/* Reads the whole file into a new secure buffer (*buf, NUL-terminated, *len bytes). */
static int read_file(struct parse *p, unsigned char **buf, size_t *len)
{
    struct stat st;
    unsigned char *b;
    size_t n = 0;
    int fd;

    fd = open(p->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return refuse(p, 0, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & (S_IRWXG | S_IRWXO)))
        CM_WARN("DOMS_KEK_FILE: %s is open to group or others (mode %04o); make it 0600 or "
                "0400, owned by the daemon's user",
                p->path, (unsigned)(st.st_mode & 07777));
    b = sodium_malloc(KEK_FILE_MAX + 1);
    if (b == NULL)
        abort();
    for (;;) {
        ssize_t r = read(fd, b + n, KEK_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            sodium_free(b);
            return refuse(p, 0, "cannot read: %s", strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > KEK_FILE_MAX) {
            close(fd);
            sodium_free(b);
            return refuse(p, 0, "larger than %d KiB", KEK_FILE_MAX / 1024);
        }
    }
    close(fd);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return CM_OK;
}

static int is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Narrows [*s, *e) to its text without surrounding blanks. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && is_blank((unsigned char)**s))
        (*s)++;
    while (*e > *s && is_blank((unsigned char)(*e)[-1]))
        (*e)--;
}

/* Parses a positive decimal int; -1 when the text is anything else. */
static int parse_version(const char *s, const char *e)
{
    long v = 0;

    if (s == e)
        return -1;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > INT_MAX)
            return -1;
    }
    return v > 0 ? (int)v : -1;
}

/* Parses one key line [s, e) (already trimmed, not a comment) into k. */
static int parse_line(struct parse *p, int line, const char *s, const char *e, struct cm_kek *k)
{
    const char *colon = memchr(s, ':', (size_t)(e - s));
    const char *vs = s, *ve = colon, *ks, *ke = e, *end = NULL;
    size_t bin_len = 0;

    if (colon == NULL)
        return refuse(p, line, "expected <version>:<base64 of 32 bytes>");
    trim(&vs, &ve);
    k->version = parse_version(vs, ve);
    if (k->version < 0)
        return refuse(p, line, "the version before ':' must be a positive integer");
    ks = colon + 1;
    trim(&ks, &ke);
    if (ks == ke)
        return refuse(p, line, "no key after the version");
    /* Padding is optional: strip it and decode strictly without. */
    while (ke > ks && ke[-1] == '=')
        ke--;
    if (sodium_base642bin(p->tmp, p->tmp_cap, ks, (size_t)(ke - ks), NULL, &bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
        end != ke)
        return refuse(p, line, "the key is not valid base64");
    if (bin_len != CM_AEAD_KEY_LEN) {
        sodium_memzero(p->tmp, p->tmp_cap);
        return refuse(p, line, "the key is %zu bytes, want %d", bin_len, CM_AEAD_KEY_LEN);
    }
    memcpy(k->key, p->tmp, CM_AEAD_KEY_LEN);
    sodium_memzero(p->tmp, CM_AEAD_KEY_LEN);
    return CM_OK;
}

/* Parses every line of buf into ks->keys, which has room for one key per line (nlines). */
static int parse_all(struct parse *p, struct cm_kekset *ks, const char *buf, size_t len,
                     size_t nlines)
{
    const char *s = buf, *end = buf + len;
    int *key_line = cm_xcalloc(nlines, sizeof(int)); /* where each key was, for duplicates */
    int line = 0, rc = CM_OK;

    while (s < end && rc == CM_OK) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *ls = s, *le = nl ? nl : end;
        struct cm_kek *k = &ks->keys[ks->n];

        s = nl ? nl + 1 : end;
        line++;
        if (memchr(ls, '\0', (size_t)(le - ls)) != NULL) {
            rc = refuse(p, line, "contains a NUL byte");
            break;
        }
        trim(&ls, &le);
        if (ls == le || *ls == '#')
            continue;
        rc = parse_line(p, line, ls, le, k);
        for (size_t i = 0; rc == CM_OK && i < ks->n; i++) {
            if (ks->keys[i].version == k->version)
                rc = refuse(p, line, "version %d repeats line %d", k->version, key_line[i]);
        }
        if (rc != CM_OK)
            break;
        key_line[ks->n] = line;
        if (ks->n == 0 || k->version > ks->keys[ks->newest].version)
            ks->newest = ks->n;
        ks->n++;
    }
    if (rc == CM_OK && ks->n == 0)
        rc = refuse(p, 0, "holds no key (one <version>:<base64 of 32 bytes> a line)");
    free(key_line);
    return rc;
}

int cm_kekset_load(struct cm_kekset *ks, const char *path, char *err, size_t errlen)
{
    struct parse p = {.path = path, .err = err, .errlen = errlen};
    unsigned char *buf = NULL;
    size_t len = 0, lines;
    int rc;

    memset(ks, 0, sizeof(*ks));
    if (path == NULL || *path == '\0') {
        snprintf(err, errlen, "DOMS_KEK_FILE is not set");
        return CM_INVALID;
    }
    rc = read_file(&p, &buf, &len);
    if (rc != CM_OK)
        return rc;
    lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    ks->keys = sodium_allocarray(lines, sizeof(struct cm_kek));
    p.tmp_cap = len + 1;
    p.tmp = sodium_malloc(p.tmp_cap);
    if (ks->keys == NULL || p.tmp == NULL)
        abort();
    rc = parse_all(&p, ks, (const char *)buf, len, lines);
    sodium_free(p.tmp);
    sodium_free(buf);
    if (rc != CM_OK) {
        cm_kekset_cleanup(ks);
        return rc;
    }
    /* From here on a stray write to the KEKs faults instead of corrupting them. */
    sodium_mprotect_readonly(ks->keys);
    return CM_OK;
}

void cm_kekset_cleanup(struct cm_kekset *ks)
{
    if (ks->keys != NULL)
        sodium_free(ks->keys); /* makes it writable, zeroes it, unlocks and unmaps it */
    memset(ks, 0, sizeof(*ks));
}

const struct cm_kek *cm_kekset_find(const struct cm_kekset *ks, int version)
{
    for (size_t i = 0; i < ks->n; i++) {
        if (ks->keys[i].version == version)
            return &ks->keys[i];
    }
    return NULL;
}
