/*
 * commands.h - domsctl's command table: words, arguments, the NATS subject each becomes.
 */
#ifndef DOMSCTL_COMMANDS_H
#define DOMSCTL_COMMANDS_H

#include <cjson/cJSON.h>

enum opt_kind {
    OPT_STRING, /* --name VALUE */
    OPT_INT,    /* --capacity 3 */
    OPT_ONOFF,  /* --ai on|off, sent as a boolean */
    OPT_FLAG,   /* --human-agent, sent as true */
    OPT_CHOICE, /* --role owner|admin|agent|viewer */
    OPT_TIME,   /* --since 2026-11-01T00:00:00Z */
    OPT_ALL,    /* --all: domsctl follows the list's cursors itself; nothing is sent */
    OPT_FILE,   /* --file PATH: domsctl reads and uploads it (upload.c); the path is not sent */
};

struct option_spec {
    const char *name;  /* without the dashes */
    const char *field; /* request field (NULL for OPT_ALL) */
    enum opt_kind kind;
    int required;
    const char *choices; /* for OPT_CHOICE: "a|b|c" */
};

#define MAX_OPTS 8

struct command {
    const char *words[2];   /* "integration", "connect"; words[1] may be NULL */
    const char *positional; /* request field of the one positional argument, or NULL */
    const char *positional_name;
    struct option_spec opts[MAX_OPTS];
    const char *subject; /* NATS request subject */
    const char *service; /* who answers, for "not running" messages */
    const char *usage;   /* one line */
};

/* The table, terminated by an entry whose words[0] is NULL. */
extern const struct command domsctl_commands[];

/*
 * Finds the command named by argv (one or two words). Returns it and sets *consumed to
 * the number of words used, or NULL.
 */
const struct command *domsctl_find(int argc, char **argv, int *consumed);

/*
 * Builds the request object from the arguments after the command words; *all is set when
 * --all asks domsctl to follow a paged list to its end. On a usage error returns NULL and
 * writes one line into err. The caller frees the object (cJSON_Delete).
 */
cJSON *domsctl_build(const struct command *cmd, int argc, char **argv, const char *actor, int *all,
                     char *err, size_t errlen);

/* Prints every command's usage line. */
void domsctl_usage(FILE *out);

#endif
