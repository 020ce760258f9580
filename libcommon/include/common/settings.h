/*
 * settings.h - a declarative table of environment settings, validated at start-up.
 *
 * Each daemon describes its settings once, in a table of struct cm_setting, with the
 * offset of the field that receives each value. cm_settings_load() fills the struct from
 * the environment, applying defaults and bounds; a missing required setting or a malformed
 * value gives one line naming the variable. cm_settings_print() shows the effective
 * configuration with secrets masked, for --print-config.
 *
 * Every NAME may be given instead as NAME_FILE, the path of a file whose content is the
 * value (the official postgres image's convention, for secrets mounted as files): one
 * trailing newline (LF or CRLF) is dropped and nothing else, the file may hold at most
 * 64 KiB, and an empty file counts as an empty value. An empty variable counts as unset.
 * Setting both NAME and NAME_FILE is refused; so is a file that cannot be read. A refusal
 * never quotes a file's content or a secret.
 */
#ifndef COMMON_SETTINGS_H
#define COMMON_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

enum cm_setting_kind {
    CM_SET_STR,      /* char *, any non-empty text */
    CM_SET_SECRET,   /* char * in sodium_malloc memory; never printed */
    CM_SET_URL,      /* char *, scheme://...; a password in it is masked when printed */
    CM_SET_LISTEN,   /* char *, host:port or :port */
    CM_SET_ENUM,     /* char *, one of choices ("a|b|c") */
    CM_SET_LIST,     /* char *, comma-separated words, each one of choices if given */
    CM_SET_INT,      /* int64_t, decimal, within [min, max] */
    CM_SET_SIZE,     /* int64_t bytes: 1024, 512KiB, 4MiB, 1GiB; within [min, max] */
    CM_SET_DURATION, /* int64_t seconds: 30s, 15m, 12h, 7d; within [min, max] */
};

struct cm_setting {
    const char *name; /* environment variable */
    enum cm_setting_kind kind;
    size_t offset;       /* of the receiving field in the config struct */
    const char *def;     /* default text, or NULL for none */
    int required;        /* refuse to start when unset and without default */
    int64_t min, max;    /* bounds for INT, SIZE, DURATION; max 0 means unbounded */
    const char *choices; /* for ENUM and LIST: "a|b|c" */
    const char *help;    /* one line for --help */
};

/* Settings every daemon has, embedded as the first member of its config struct. */
struct cm_base_cfg {
    char *database_url;
    char *nats_url;
    char *nats_ca_file; /* NATS_CA_FILE, NATS_CERT_FILE, NATS_KEY_FILE: all or none */
    char *nats_cert_file;
    char *nats_key_file;
    char *log_level;
    char *log_format;
    char *kek_file;
    /* Not a setting: who the daemon is on NATS (cm_nats_identity), set by
     * cm_service_configure(). */
    char nats_identity[65];
};

/* The base settings' table entries, for a config struct whose member `field` is the base. */
#define CM_BASE_SETTINGS(type, field)                                                              \
    {"DATABASE_URL",                                                                               \
     CM_SET_URL,                                                                                   \
     offsetof(type, field.database_url),                                                           \
     NULL,                                                                                         \
     1,                                                                                            \
     0,                                                                                            \
     0,                                                                                            \
     NULL,                                                                                         \
     "PostgreSQL URL for this service's own role"},                                                \
        {"NATS_URL",                                                                               \
         CM_SET_URL,                                                                               \
         offsetof(type, field.nats_url),                                                           \
         "nats://127.0.0.1:4222",                                                                  \
         0,                                                                                        \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         "NATS server URL(s), comma-separated"},                                                   \
        {"NATS_CA_FILE",                                                                           \
         CM_SET_STR,                                                                               \
         offsetof(type, field.nats_ca_file),                                                       \
         NULL,                                                                                     \
         0,                                                                                        \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         "CA certificate (PEM) that signed nats-server's certificate; with the next two: TLS"},    \
        {"NATS_CERT_FILE",                                                                         \
         CM_SET_STR,                                                                               \
         offsetof(type, field.nats_cert_file),                                                     \
         NULL,                                                                                     \
         0,                                                                                        \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         "this identity's certificate (PEM); its CN is who the daemon is on NATS"},                \
        {"NATS_KEY_FILE",                                                                          \
         CM_SET_STR,                                                                               \
         offsetof(type, field.nats_key_file),                                                      \
         NULL,                                                                                     \
         0,                                                                                        \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         "the certificate's private key (PEM)"},                                                   \
        {"LOG_LEVEL",                                                                              \
         CM_SET_ENUM,                                                                              \
         offsetof(type, field.log_level),                                                          \
         "info",                                                                                   \
         0,                                                                                        \
         0,                                                                                        \
         0,                                                                                        \
         "debug|info|warn|error",                                                                  \
         "lowest level logged"},                                                                   \
    {                                                                                              \
        "LOG_FORMAT", CM_SET_ENUM, offsetof(type, field.log_format), "json", 0, 0, 0, "json|text", \
            "log line format"                                                                      \
    }

/* The KEK file entry, for daemons that store Platform Data. */
#define CM_KEK_SETTING(type, field)                                                                \
    {                                                                                              \
        "DOMS_KEK_FILE", CM_SET_STR, offsetof(type, field.kek_file), NULL, 1, 0, 0, NULL,          \
            "file of key-encryption keys, one <version>:<base64 32 bytes> a line"                  \
    }

/*
 * Loads every setting of the table from the environment (NAME or NAME_FILE) into cfg. On
 * failure returns CM_INVALID (CM_ERR when secure memory runs out) and writes one line into
 * err naming the variable and what is wrong; fields already loaded stay set, so call
 * cm_settings_cleanup() either way. A file's content passes through sodium_malloc memory,
 * wiped once read; a CM_SET_SECRET value stays in such memory.
 */
int cm_settings_load(const struct cm_setting *table, size_t n, void *cfg, char *err,
                     size_t errlen) CM_MUST_CHECK;

/* Prints NAME=value lines, secrets as "********" and URL passwords masked. */
void cm_settings_print(const struct cm_setting *table, size_t n, const void *cfg, FILE *out);

/* Prints one line per setting with its default and help, then a note on NAME_FILE, for --help. */
void cm_settings_help(const struct cm_setting *table, size_t n, FILE *out);

/* Frees the strings that cm_settings_load() stored (secrets are wiped first). */
void cm_settings_cleanup(const struct cm_setting *table, size_t n, void *cfg);

/* Parses "30s", "15m", "12h", "7d" into *seconds; a number without its unit is CM_INVALID. */
int cm_parse_duration(const char *s, int64_t *seconds) CM_MUST_CHECK;

/* Parses "4194304", "512KiB", "4MiB", "1GiB" (also K, M, G, KB, MB, GB as binary) into *bytes. */
int cm_parse_size(const char *s, int64_t *bytes) CM_MUST_CHECK;

#endif
