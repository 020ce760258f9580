/*
 * test_settings - durations, sizes, bounds, required settings, and secrets masked.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
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
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
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
    CHECK(cm_parse_duration("45", &v) == CM_OK && v == 45);
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
    CHECK_CONTAINS(text, "T_RETENTION=604800");
    CHECK(strstr(text, "s3cr3t-value") == NULL);
    CHECK(strstr(text, "hunter2") == NULL);
    free(text);
    cm_settings_cleanup(table, N, &c);
}

int main(void)
{
    RUN(test_parsers);
    RUN(test_defaults);
    RUN(test_refusals);
    RUN(test_print_masks);
    return check_summary();
}
