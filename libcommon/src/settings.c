/*
 * settings.c - environment settings with validation (see settings.h).
 */
#include "common/settings.h"
#include "common/mem.h"
#include "common/url.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char **str_field(void *cfg, const struct cm_setting *s)
{
    return (char **)((char *)cfg + s->offset);
}

static int64_t *int_field(void *cfg, const struct cm_setting *s)
{
    return (int64_t *)((char *)cfg + s->offset);
}

/* Parses a decimal number with an optional unit suffix looked up in units[]. */
struct unit {
    const char *suffix;
    int64_t factor;
};

static int parse_scaled(const char *s, const struct unit *units, int64_t *out)
{
    char *end;
    long long v;

    if (s == NULL || !isdigit((unsigned char)*s))
        return CM_INVALID;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || v < 0)
        return CM_INVALID;
    for (const struct unit *u = units; u->suffix != NULL; u++) {
        if (strcmp(end, u->suffix) == 0) {
            if (u->factor != 0 && v > LLONG_MAX / u->factor)
                return CM_INVALID;
            *out = (int64_t)v * u->factor;
            return CM_OK;
        }
    }
    return CM_INVALID;
}

int cm_parse_duration(const char *s, int64_t *seconds)
{
    static const struct unit units[] = {
        {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}, {NULL, 0},
    };
    /* No bare number: RETENTION_MESSAGES=90 meant as days would purge after 90 seconds. */
    return parse_scaled(s, units, seconds);
}

int cm_parse_size(const char *s, int64_t *bytes)
{
    static const struct unit units[] = {
        {"", 1},
        {"B", 1},
        {"K", 1024},
        {"KB", 1024},
        {"KiB", 1024},
        {"M", 1024 * 1024},
        {"MB", 1024 * 1024},
        {"MiB", 1024 * 1024},
        {"G", 1024 * 1024 * 1024},
        {"GB", 1024 * 1024 * 1024},
        {"GiB", 1024 * 1024 * 1024},
        {NULL, 0},
    };
    return parse_scaled(s, units, bytes);
}

/* Is word (len bytes) one of the '|'-separated choices? */
static int in_choices(const char *choices, const char *word, size_t len)
{
    const char *p = choices;

    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, word, len) == 0)
            return 1;
        if (bar == NULL)
            break;
        p = bar + 1;
    }
    return 0;
}

static int valid_listen(const char *v)
{
    const char *colon = strrchr(v, ':');
    char *end;
    long port;

    if (colon == NULL || colon[1] == '\0')
        return 0;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && port > 0 && port < 65536;
}

static int valid_url(const char *v)
{
    const char *sep = strstr(v, "://");

    if (sep == NULL || sep == v || sep[3] == '\0')
        return 0;
    for (const char *p = v; p < sep; p++) {
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
            return 0;
    }
    return 1;
}

static int valid_list(const struct cm_setting *s, const char *v)
{
    const char *p = v;

    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0)
            return 0;
        if (s->choices != NULL && !in_choices(s->choices, p, n))
            return 0;
        if (comma == NULL)
            break;
        p = comma + 1;
        if (*p == '\0')
            return 0;
    }
    return 1;
}

/* Describes the expected form of a setting for error messages. */
static const char *expected(const struct cm_setting *s)
{
    switch (s->kind) {
    case CM_SET_URL:
        return "a URL such as scheme://host:port";
    case CM_SET_LISTEN:
        return "host:port";
    case CM_SET_INT:
        return "a whole number";
    case CM_SET_SIZE:
        return "a size such as 4194304, 512KiB or 4MiB";
    case CM_SET_DURATION:
        return "a duration such as 30s, 15m, 12h or 7d";
    default:
        return "a non-empty value";
    }
}

/* Renders a bound the way an operator writes it: 7d rather than 604800. */
static void fmt_bound(enum cm_setting_kind kind, int64_t v, char *out, size_t cap)
{
    static const struct unit dur[] = {{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}, {NULL, 0}};
    static const struct unit size[] = {
        {"GiB", 1024 * 1024 * 1024}, {"MiB", 1024 * 1024}, {"KiB", 1024}, {"", 1}, {NULL, 0}};
    const struct unit *u = kind == CM_SET_DURATION ? dur : kind == CM_SET_SIZE ? size : NULL;

    for (; u != NULL && u->suffix != NULL; u++) {
        if (v != 0 && v % u->factor == 0) {
            snprintf(out, cap, "%lld%s", (long long)(v / u->factor), u->suffix);
            return;
        }
    }
    snprintf(out, cap, "%lld", (long long)v);
}

/* The largest NAME_FILE accepted: a key, a token or a URL fits in it many times over. */
#define FILE_VALUE_MAX (64 * 1024)

/*
 * Where a setting's text came from. text is NULL when neither NAME nor NAME_FILE is set;
 * path is NAME_FILE's value when the text is a file's content, held in buf.
 */
struct source {
    const char *text;
    const char *path;
    char *buf; /* sodium_malloc memory, or NULL */
    char file_var[128];
};

static void source_cleanup(struct source *src)
{
    /* sodium_free() wipes the content (sodium_memzero) before unmapping it. */
    if (src->buf != NULL)
        sodium_free(src->buf);
    src->buf = NULL;
}

/* Reads src->path into src->buf and points src->text at it. The content is never quoted in
 * err: it may be a secret. */
static int read_value_file(struct source *src, char *err, size_t errlen)
{
    size_t len = 0;
    int fd;

    fd = open(src->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot read %s: %s", src->file_var, src->path, strerror(errno));
        return CM_INVALID;
    }
    /* Locked, guarded memory: the file is there because its content is a secret. */
    src->buf = sodium_malloc(FILE_VALUE_MAX + 1);
    if (src->buf == NULL) {
        close(fd);
        snprintf(err, errlen, "%s: cannot allocate secure memory", src->file_var);
        return CM_ERR;
    }
    for (;;) {
        ssize_t n = read(fd, src->buf + len, FILE_VALUE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: cannot read %s: %s", src->file_var, src->path,
                     strerror(errno));
            close(fd);
            return CM_INVALID;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        /* One byte more than allowed is enough to refuse; the rest is never read. */
        if (len > FILE_VALUE_MAX) {
            snprintf(err, errlen, "%s: %s is larger than %dKiB", src->file_var, src->path,
                     FILE_VALUE_MAX / 1024);
            close(fd);
            return CM_INVALID;
        }
    }
    close(fd);
    /* A C string would silently end at the NUL: refuse rather than use half a value. */
    if (memchr(src->buf, '\0', len) != NULL) {
        snprintf(err, errlen, "%s: %s contains a NUL byte", src->file_var, src->path);
        return CM_INVALID;
    }
    /* The line ending that echo or an editor leaves; any other whitespace is the value's. */
    if (len >= 2 && src->buf[len - 2] == '\r' && src->buf[len - 1] == '\n')
        len -= 2;
    else if (len >= 1 && src->buf[len - 1] == '\n')
        len -= 1;
    src->buf[len] = '\0';
    src->text = src->buf;
    return CM_OK;
}

/* Finds the setting's text in NAME or in the file NAME_FILE names (postgres's convention). */
static int find_source(const char *name, struct source *src, char *err, size_t errlen)
{
    const char *env = getenv(name);
    const char *file;

    memset(src, 0, sizeof(*src));
    snprintf(src->file_var, sizeof(src->file_var), "%s_FILE", name);
    file = getenv(src->file_var);
    /* Empty means unset, as it always has for NAME: compose's `NAME: ${NAME:-}` gives "". */
    if (env != NULL && *env == '\0')
        env = NULL;
    if (file != NULL && *file == '\0')
        file = NULL;
    if (env != NULL && file != NULL) {
        snprintf(err, errlen, "%s and %s are both set; set only one", name, src->file_var);
        return CM_INVALID;
    }
    if (file == NULL) {
        src->text = env;
        return CM_OK;
    }
    src->path = file;
    return read_value_file(src, err, errlen);
}

/*
 * How a refusal names the value: quoted when it came from the environment, never when it is
 * a secret or a file's content (the file exists to keep it out of sight).
 */
static void describe(const struct cm_setting *s, const struct source *src, const char *v, char *out,
                     size_t cap)
{
    if (src->path != NULL && v == src->text)
        snprintf(out, cap, "%s: the content of %s", src->file_var, src->path);
    else if (s->kind == CM_SET_SECRET)
        snprintf(out, cap, "%s: the value", s->name);
    else
        snprintf(out, cap, "%s: \"%s\"", s->name, v);
}

/* Validates and stores the setting's text (or its default). */
static int apply(const struct cm_setting *s, const struct source *src, void *cfg, char *err,
                 size_t errlen)
{
    const char *v = (src->text != NULL && *src->text != '\0') ? src->text : s->def;
    char what[512];
    int64_t num = 0;
    int rc = CM_OK;

    if (v == NULL) {
        if (s->required && src->path != NULL)
            snprintf(err, errlen, "%s is required (%s); %s %s is empty", s->name, s->help,
                     src->file_var, src->path);
        else if (s->required)
            snprintf(err, errlen, "%s is required (%s)", s->name, s->help);
        return s->required ? CM_INVALID : CM_OK;
    }
    describe(s, src, v, what, sizeof(what));

    switch (s->kind) {
    case CM_SET_INT: {
        char *end;
        errno = 0;
        long long ll = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0')
            rc = CM_INVALID;
        num = (int64_t)ll;
        break;
    }
    case CM_SET_SIZE:
        rc = cm_parse_size(v, &num);
        break;
    case CM_SET_DURATION:
        rc = cm_parse_duration(v, &num);
        break;
    case CM_SET_URL:
        rc = valid_url(v) ? CM_OK : CM_INVALID;
        break;
    case CM_SET_LISTEN:
        rc = valid_listen(v) ? CM_OK : CM_INVALID;
        break;
    case CM_SET_ENUM:
        if (!in_choices(s->choices, v, strlen(v))) {
            snprintf(err, errlen, "%s is not one of %s", what, s->choices);
            return CM_INVALID;
        }
        break;
    case CM_SET_LIST:
        if (!valid_list(s, v)) {
            snprintf(err, errlen, "%s is not a comma-separated list of %s", what,
                     s->choices ? s->choices : "words");
            return CM_INVALID;
        }
        break;
    case CM_SET_STR:
    case CM_SET_SECRET:
        break;
    }
    if (rc != CM_OK) {
        snprintf(err, errlen, "%s is not %s", what, expected(s));
        return CM_INVALID;
    }

    if (s->kind == CM_SET_INT || s->kind == CM_SET_SIZE || s->kind == CM_SET_DURATION) {
        char bound[32];
        if (num < s->min) {
            fmt_bound(s->kind, s->min, bound, sizeof(bound));
            snprintf(err, errlen, "%s is below the minimum %s", what, bound);
            return CM_INVALID;
        }
        if (s->max != 0 && num > s->max) {
            fmt_bound(s->kind, s->max, bound, sizeof(bound));
            snprintf(err, errlen, "%s is above the maximum %s", what, bound);
            return CM_INVALID;
        }
        *int_field(cfg, s) = num;
        return CM_OK;
    }

    if (s->kind == CM_SET_SECRET) {
        size_t len = strlen(v);
        char *copy = sodium_malloc(len + 1);
        if (copy == NULL) {
            snprintf(err, errlen, "%s: cannot allocate secure memory", s->name);
            return CM_ERR;
        }
        memcpy(copy, v, len + 1);
        *str_field(cfg, s) = copy;
    } else {
        *str_field(cfg, s) = cm_xstrdup(v);
    }
    return CM_OK;
}

static int load_one(const struct cm_setting *s, void *cfg, char *err, size_t errlen)
{
    struct source src;
    int rc = find_source(s->name, &src, err, errlen);

    if (rc == CM_OK)
        rc = apply(s, &src, cfg, err, errlen);
    source_cleanup(&src);
    return rc;
}

int cm_settings_load(const struct cm_setting *table, size_t n, void *cfg, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return CM_ERR;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = load_one(&table[i], cfg, err, errlen);
        if (rc != CM_OK)
            return rc;
    }
    return CM_OK;
}

void cm_settings_print(const struct cm_setting *table, size_t n, const void *cfg, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        const struct cm_setting *s = &table[i];
        const void *field = (const char *)cfg + s->offset;

        switch (s->kind) {
        case CM_SET_INT:
        case CM_SET_SIZE:
            fprintf(out, "%s=%lld\n", s->name, (long long)*(const int64_t *)field);
            break;
        case CM_SET_DURATION: {
            /* In a unit, as it is read back: 7d rather than 604800. */
            char v[32];
            int64_t secs = *(const int64_t *)field;
            fmt_bound(s->kind, secs, v, sizeof(v));
            fprintf(out, "%s=%s%s\n", s->name, v, secs == 0 ? "s" : "");
            break;
        }
        case CM_SET_SECRET:
            fprintf(out, "%s=%s\n", s->name, *(char *const *)field ? "********" : "");
            break;
        case CM_SET_URL: {
            const char *v = *(char *const *)field;
            char masked[1024];
            cm_url_redact(v, masked, sizeof(masked));
            fprintf(out, "%s=%s\n", s->name, masked);
            break;
        }
        default: {
            const char *v = *(char *const *)field;
            fprintf(out, "%s=%s\n", s->name, v ? v : "");
        }
        }
    }
}

void cm_settings_help(const struct cm_setting *table, size_t n, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        const struct cm_setting *s = &table[i];
        fprintf(out, "  %-34s %s%s%s%s\n", s->name, s->help, s->required ? " (required)" : "",
                s->def ? "; default " : "", s->def ? s->def : "");
    }
    fprintf(out,
            "\n  Every NAME above also accepts NAME_FILE, the path of a file holding the value\n"
            "  (one trailing newline dropped; at most %dKiB), for secrets mounted as files.\n",
            FILE_VALUE_MAX / 1024);
}

void cm_settings_cleanup(const struct cm_setting *table, size_t n, void *cfg)
{
    for (size_t i = 0; i < n; i++) {
        const struct cm_setting *s = &table[i];
        char **p;

        if (s->kind == CM_SET_INT || s->kind == CM_SET_SIZE || s->kind == CM_SET_DURATION)
            continue;
        p = str_field(cfg, s);
        if (*p == NULL)
            continue;
        if (s->kind == CM_SET_SECRET)
            sodium_free(*p); /* zeroes before freeing */
        else
            free(*p);
        *p = NULL;
    }
}
