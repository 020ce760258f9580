/*
 * test_settings - durations, sizes, bounds, required settings, secrets masked, and values
 * read from the files NAME_FILE names.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/mem.h"
#include "common/nats.h"
#include "common/settings.h"

struct cfg {
    struct cm_base_cfg base;
    char *secret;
    int64_t size;
    int64_t retention;
    int64_t count;
    char *providers;
    char *listen;
};

static const struct cm_setting table[] = {
    CM_BASE_SETTINGS(struct cfg, base),
    {"T_SECRET", CM_SET_SECRET, offsetof(struct cfg, secret), NULL, 1, 0, 0, NULL, "a secret"},
    {"T_SIZE", CM_SET_SIZE, offsetof(struct cfg, size), "4MiB", 0, 1024, 0, NULL, "a size"},
    {"T_RETENTION", CM_SET_DURATION, offsetof(struct cfg, retention), "7d", 0, 1, 7 * 86400, NULL,
     "bounded by policy"},
    {"T_COUNT", CM_SET_INT, offsetof(struct cfg, count), "8", 0, 1, 100, NULL, "a count"},
    {"T_PROVIDERS", CM_SET_LIST, offsetof(struct cfg, providers), "openai,gemini", 0, 0, 0,
     "openai|gemini", "providers"},
    {"T_LISTEN", CM_SET_LISTEN, offsetof(struct cfg, listen), "127.0.0.1:8081", 0, 0, 0, NULL,
     "listen"},
};
#define N (sizeof(table) / sizeof(table[0]))

static void reset_env(void)
{
    const char *names[] = {"DATABASE_URL", "NATS_URL",    "LOG_LEVEL", "LOG_FORMAT",  "T_SECRET",
                           "T_SIZE",       "T_RETENTION", "T_COUNT",   "T_PROVIDERS", "T_LISTEN"};
    char file_var[64];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        unsetenv(names[i]);
        snprintf(file_var, sizeof(file_var), "%s_FILE", names[i]);
        unsetenv(file_var);
    }
    setenv("DATABASE_URL", "postgresql://svc:hunter2@db:5432/doms", 1);
    setenv("T_SECRET", "s3cr3t-value", 1);
}

/* Loads with one variable set; returns the result and leaves the error in err. */
static int load_with(const char *name, const char *value, struct cfg *c, char *err)
{
    int rc;

    reset_env();
    if (name != NULL)
        setenv(name, value, 1);
    memset(c, 0, sizeof(*c));
    rc = cm_settings_load(table, N, c, err, 256);
    return rc;
}

static void test_parsers(void)
{
    int64_t v = 0;

    CHECK(cm_parse_duration("30s", &v) == CM_OK && v == 30);
    CHECK(cm_parse_duration("15m", &v) == CM_OK && v == 900);
    CHECK(cm_parse_duration("12h", &v) == CM_OK && v == 43200);
    CHECK(cm_parse_duration("7d", &v) == CM_OK && v == 604800);
    /* A bare number is refused: 90 meant as days would be 90 seconds. */
    CHECK(cm_parse_duration("45", &v) == CM_INVALID);
    CHECK(cm_parse_duration("0s", &v) == CM_OK && v == 0);
    CHECK(cm_parse_duration("7w", &v) == CM_INVALID);
    CHECK(cm_parse_duration("-1s", &v) == CM_INVALID);
    CHECK(cm_parse_duration("", &v) == CM_INVALID);
    CHECK(cm_parse_duration("d", &v) == CM_INVALID);
    CHECK(cm_parse_duration("99999999999999999999d", &v) == CM_INVALID);
    CHECK(cm_parse_size("4MiB", &v) == CM_OK && v == 4 * 1024 * 1024);
    CHECK(cm_parse_size("512KiB", &v) == CM_OK && v == 512 * 1024);
    CHECK(cm_parse_size("4194304", &v) == CM_OK && v == 4194304);
    CHECK(cm_parse_size("1GiB", &v) == CM_OK && v == 1024LL * 1024 * 1024);
    CHECK(cm_parse_size("4 MiB", &v) == CM_INVALID);
    CHECK(cm_parse_size("lots", &v) == CM_INVALID);
}

static void test_defaults(void)
{
    struct cfg c;
    char err[256];

    CHECK_INT(load_with(NULL, NULL, &c, err), CM_OK);
    CHECK_INT(c.size, 4 * 1024 * 1024);
    CHECK_INT(c.retention, 7 * 86400);
    CHECK_INT(c.count, 8);
    CHECK_STR(c.base.log_level, "info");
    CHECK_STR(c.base.nats_url, "nats://127.0.0.1:4222");
    CHECK_STR(c.secret, "s3cr3t-value");
    cm_settings_cleanup(table, N, &c);
    CHECK(c.secret == NULL);
}

static void test_refusals(void)
{
    struct cfg c;
    char err[256];

    reset_env();
    unsetenv("DATABASE_URL");
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_INVALID);
    CHECK_CONTAINS(err, "DATABASE_URL is required");
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("T_RETENTION", "8d", &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "T_RETENTION");
    CHECK_CONTAINS(err, "above the maximum 7d");
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("T_RETENTION", "7d", &c, err), CM_OK);
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("T_SIZE", "4 megs", &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "T_SIZE: \"4 megs\" is not a size");
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("T_SIZE", "12", &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "below the minimum 1KiB");
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("LOG_LEVEL", "loud", &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "LOG_LEVEL: \"loud\" is not one of debug|info|warn|error");
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("T_PROVIDERS", "openai,,gemini", &c, err), CM_INVALID);
    cm_settings_cleanup(table, N, &c);
    CHECK_INT(load_with("T_PROVIDERS", "openai,claude", &c, err), CM_INVALID);
    cm_settings_cleanup(table, N, &c);
    CHECK_INT(load_with("T_PROVIDERS", "gemini", &c, err), CM_OK);
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("T_LISTEN", "localhost", &c, err), CM_INVALID);
    cm_settings_cleanup(table, N, &c);
    CHECK_INT(load_with("T_LISTEN", ":8080", &c, err), CM_OK);
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("NATS_URL", "not a url", &c, err), CM_INVALID);
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_with("T_COUNT", "8x", &c, err), CM_INVALID);
    cm_settings_cleanup(table, N, &c);
}

/* --print-config shows the values but never a secret or a URL's password. */
static void test_print_masks(void)
{
    struct cfg c;
    char err[256], *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    CHECK_INT(load_with(NULL, NULL, &c, err), CM_OK);
    cm_settings_print(table, N, &c, out);
    fclose(out);
    CHECK_CONTAINS(text, "T_SECRET=********");
    CHECK_CONTAINS(text, "DATABASE_URL=postgresql://svc:****@db:5432/doms");
    /* In a unit, so that the line can be given back as it is. */
    CHECK_CONTAINS(text, "T_RETENTION=7d\n");
    CHECK(strstr(text, "s3cr3t-value") == NULL);
    CHECK(strstr(text, "hunter2") == NULL);
    free(text);
    cm_settings_cleanup(table, N, &c);
}

/* --- NAME_FILE ----------------------------------------------------------------------- */

static char tmp_dir[256];

/* Writes len bytes of content into <tmp_dir>/name; returns the path (static storage). */
static const char *write_file(const char *name, const char *content, size_t len)
{
    static char path[2][320];
    static int next;
    char *p = path[next++ % 2];
    FILE *f;

    snprintf(p, sizeof(path[0]), "%s/%s", tmp_dir, name);
    f = fopen(p, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (f != NULL) {
        CHECK(fwrite(content, 1, len, f) == len);
        fclose(f);
    }
    return p;
}

/* Loads with the environment reset and then name set to value (NULL: unset). */
static int load_file(const char *name, const char *value, struct cfg *c, char *err)
{
    reset_env();
    if (value != NULL)
        setenv(name, value, 1);
    memset(c, 0, sizeof(*c));
    return cm_settings_load(table, N, c, err, 256);
}

static void test_file_values(void)
{
    struct cfg c;
    char err[256];
    const char *path;

    /* A secret from a file, with the newline echo leaves; the variable itself unset. */
    path = write_file("secret", "from-file\n", 10);
    reset_env();
    unsetenv("T_SECRET");
    setenv("T_SECRET_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_OK);
    CHECK_STR(c.secret, "from-file");
    cm_settings_cleanup(table, N, &c);

    /* CRLF is one line ending; the URL with its password comes whole. */
    path = write_file("dburl", "postgresql://svc:filepass@db:5432/doms\r\n", 40);
    reset_env();
    unsetenv("DATABASE_URL");
    setenv("DATABASE_URL_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_OK);
    CHECK_STR(c.base.database_url, "postgresql://svc:filepass@db:5432/doms");
    cm_settings_cleanup(table, N, &c);

    /* Only one line ending goes; other whitespace belongs to the value. */
    path = write_file("spaced", " two words \n\n", 13);
    reset_env();
    unsetenv("T_SECRET");
    setenv("T_SECRET_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_OK);
    CHECK_STR(c.secret, " two words \n");
    cm_settings_cleanup(table, N, &c);

    /* A file without a line ending, and a non-secret setting from a file. */
    path = write_file("count", "42", 2);
    CHECK_INT(load_file("T_COUNT_FILE", path, &c, err), CM_OK);
    CHECK_INT(c.count, 42);
    cm_settings_cleanup(table, N, &c);

    /* An empty variable is unset, so an empty NAME beside NAME_FILE is no conflict. */
    path = write_file("count", "7\n", 2);
    reset_env();
    setenv("T_COUNT", "", 1);
    setenv("T_COUNT_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_OK);
    CHECK_INT(c.count, 7);
    cm_settings_cleanup(table, N, &c);

    /* An empty file for a setting with a default: the default, as for an empty value. */
    path = write_file("empty", "", 0);
    CHECK_INT(load_file("T_SIZE_FILE", path, &c, err), CM_OK);
    CHECK_INT(c.size, 4 * 1024 * 1024);
    cm_settings_cleanup(table, N, &c);
}

/* Every refusal is one line naming the variables; none quotes a file's content. */
static void test_file_refusals(void)
{
    struct cfg c;
    char err[256], missing[400];
    const char *path;
    struct cm_buf big;

    path = write_file("secret", "from-file\n", 10);
    CHECK_INT(load_file("T_SECRET_FILE", path, &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "T_SECRET and T_SECRET_FILE are both set");
    CHECK(strchr(err, '\n') == NULL);
    cm_settings_cleanup(table, N, &c);

    snprintf(missing, sizeof(missing), "%s/no-such-file", tmp_dir);
    CHECK_INT(load_file("T_COUNT_FILE", missing, &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "T_COUNT_FILE: cannot read ");
    CHECK_CONTAINS(err, missing);
    CHECK_CONTAINS(err, "No such file or directory");
    cm_settings_cleanup(table, N, &c);

    CHECK_INT(load_file("T_COUNT_FILE", tmp_dir, &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "T_COUNT_FILE: cannot read ");
    CHECK_CONTAINS(err, "Is a directory");
    cm_settings_cleanup(table, N, &c);

    /* An empty file for a required setting: missing, and the line says which file. */
    path = write_file("empty", "", 0);
    reset_env();
    unsetenv("T_SECRET");
    setenv("T_SECRET_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_INVALID);
    CHECK_CONTAINS(err, "T_SECRET is required");
    CHECK_CONTAINS(err, "T_SECRET_FILE");
    CHECK_CONTAINS(err, path);
    cm_settings_cleanup(table, N, &c);
    CHECK(c.secret == NULL);

    /* A malformed value from a file is named by the file, never quoted. */
    path = write_file("size", "4 megs\n", 7);
    CHECK_INT(load_file("T_SIZE_FILE", path, &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "T_SIZE_FILE: the content of ");
    CHECK_CONTAINS(err, "is not a size");
    CHECK(strstr(err, "megs") == NULL);
    cm_settings_cleanup(table, N, &c);

    path = write_file("url", "postgresql:/svc:filepass@db\n", 28);
    reset_env();
    unsetenv("DATABASE_URL");
    setenv("DATABASE_URL_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_INVALID);
    CHECK_CONTAINS(err, "DATABASE_URL_FILE: the content of ");
    CHECK(strstr(err, "filepass") == NULL);
    cm_settings_cleanup(table, N, &c);

    /* A NUL would cut the value short without a word. */
    path = write_file("nul", "ab\0cd", 5);
    CHECK_INT(load_file("T_COUNT_FILE", path, &c, err), CM_INVALID);
    CHECK_CONTAINS(err, "contains a NUL byte");
    cm_settings_cleanup(table, N, &c);

    /* 64 KiB is the cap: exactly that is read, one byte more refused. */
    cm_buf_init(&big);
    for (int i = 0; i < 64 * 1024; i++)
        cm_buf_append(&big, "k", 1);
    path = write_file("big", big.data, big.len);
    reset_env();
    unsetenv("T_SECRET");
    setenv("T_SECRET_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_OK);
    CHECK(c.secret != NULL && strlen(c.secret) == 64 * 1024);
    cm_settings_cleanup(table, N, &c);
    cm_buf_append(&big, "k", 1);
    path = write_file("big", big.data, big.len);
    reset_env();
    unsetenv("T_SECRET");
    setenv("T_SECRET_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_INVALID);
    CHECK_CONTAINS(err, "T_SECRET_FILE: ");
    CHECK_CONTAINS(err, "is larger than 64KiB");
    CHECK(strstr(err, "kkkk") == NULL);
    cm_settings_cleanup(table, N, &c);
    cm_buf_cleanup(&big);
}

/* A secret read from a file is masked like one from the environment. */
static void test_file_secret_masked(void)
{
    struct cfg c;
    char err[256], *text = NULL;
    size_t len = 0;
    FILE *out;
    const char *path = write_file("secret", "file-secret-value\n", 18);

    reset_env();
    unsetenv("T_SECRET");
    setenv("T_SECRET_FILE", path, 1);
    memset(&c, 0, sizeof(c));
    CHECK_INT(cm_settings_load(table, N, &c, err, sizeof(err)), CM_OK);
    out = open_memstream(&text, &len);
    cm_settings_print(table, N, &c, out);
    fclose(out);
    CHECK_CONTAINS(text, "T_SECRET=********");
    CHECK(strstr(text, "file-secret-value") == NULL);
    free(text);
    cm_settings_cleanup(table, N, &c);
}

/* --help says once that NAME_FILE exists. */
static void test_help_mentions_file(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    const char *first;

    cm_settings_help(table, N, out);
    fclose(out);
    first = strstr(text, "NAME_FILE");
    CHECK(first != NULL);
    CHECK(first != NULL && strstr(first + 1, "NAME_FILE") == NULL);
    CHECK_CONTAINS(text, "T_SECRET");
    free(text);
}

/* NATS_CA_FILE, NATS_CERT_FILE, NATS_KEY_FILE: all three (the CN is the identity) or none. */
static void test_nats_identity(void)
{
    char id[CM_NATS_IDENTITY_MAX], err[256], path[256];
    const char *pki = getenv("DOMS_TEST_PKI");
    FILE *f;

    CHECK_INT(cm_nats_identity(NULL, NULL, NULL, "token-vault", id, err, sizeof(err)), CM_OK);
    CHECK_STR(id, "token-vault");
    CHECK_INT(cm_nats_identity("", "", "", "operator", id, err, sizeof(err)), CM_OK);
    CHECK_STR(id, "operator");
    CHECK_INT(cm_nats_identity("/ca.crt", NULL, NULL, "operator", id, err, sizeof(err)),
              CM_INVALID);
    CHECK_CONTAINS(err,
                   "NATS_CERT_FILE: NATS_CA_FILE, NATS_CERT_FILE and NATS_KEY_FILE go together");
    CHECK_INT(cm_nats_identity("/ca.crt", "/x.crt", NULL, "operator", id, err, sizeof(err)),
              CM_INVALID);
    CHECK_CONTAINS(err, "NATS_KEY_FILE:");
    CHECK_INT(
        cm_nats_identity("/ca.crt", "/nonexistent.crt", "/x.key", "operator", id, err, sizeof(err)),
        CM_INVALID);
    CHECK_CONTAINS(err, "NATS_CERT_FILE: cannot open /nonexistent.crt");
    snprintf(path, sizeof(path), "/tmp/test_settings_%d.crt", (int)getpid());
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("not a certificate\n", f);
        fclose(f);
    }
    CHECK_INT(cm_nats_identity("/ca.crt", path, "/x.key", "operator", id, err, sizeof(err)),
              CM_INVALID);
    CHECK_CONTAINS(err, "holds no PEM certificate");
    unlink(path);
    if (pki != NULL && *pki != '\0') {
        char ca[512], cert[512], key[512];
        snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
        snprintf(cert, sizeof(cert), "%s/ai-suggest.crt", pki);
        snprintf(key, sizeof(key), "%s/ai-suggest.key", pki);
        CHECK_INT(cm_nats_identity(ca, cert, key, "operator", id, err, sizeof(err)), CM_OK);
        CHECK_STR(id, "ai-suggest");
    }
}

int main(void)
{
    const char *base = getenv("DOMS_TEST_TMP");
    int rc;

    snprintf(tmp_dir, sizeof(tmp_dir), "%s/test_settings.XXXXXX", base ? base : "/tmp");
    if (mkdtemp(tmp_dir) == NULL) {
        perror(tmp_dir);
        return 1;
    }
    RUN(test_parsers);
    RUN(test_defaults);
    RUN(test_refusals);
    RUN(test_print_masks);
    RUN(test_file_values);
    RUN(test_file_refusals);
    RUN(test_file_secret_masked);
    RUN(test_help_mentions_file);
    RUN(test_nats_identity);
    rc = check_summary();
    {
        static const char *const names[] = {"secret", "dburl", "spaced", "count", "empty",
                                            "size",   "url",   "nul",    "big"};
        char p[400];
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            snprintf(p, sizeof(p), "%s/%s", tmp_dir, names[i]);
            unlink(p);
        }
        rmdir(tmp_dir);
    }
    return rc;
}
