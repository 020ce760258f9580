/*
 * commands.c - the operator commands of the interface, as data.
 *
 * Every command is one NATS request to the daemon that owns the data; domsctl itself
 * decides nothing but the shape of the request.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

const struct command domsctl_commands[] = {
    {{"workspace", "create"},
     NULL,
     NULL,
     {{"name", "name", OPT_STRING, 1, NULL}, {"ai", "ai", OPT_ONOFF, 0, NULL}},
     "router.workspace.create",
     "conversation-router",
     "workspace create --name N [--ai on|off]"},
    {{"workspace", "update"},
     "workspace_id",
     "W",
     {{"ai", "ai", OPT_ONOFF, 0, NULL},
      {"mask-pii", "mask_pii", OPT_ONOFF, 0, NULL},
      {"mark-seen", "mark_seen", OPT_ONOFF, 0, NULL}},
     "router.workspace.update",
     "conversation-router",
     "workspace update W [--ai on|off] [--mask-pii on|off] [--mark-seen on|off]"},
    {{"workspace", "delete"},
     "workspace_id",
     "W",
     {{0}},
     "reaper.workspace.delete",
     "retention-reaper",
     "workspace delete W"},
    {{"member", "add"},
     NULL,
     NULL,
     {{"workspace", "workspace_id", OPT_STRING, 1, NULL},
      {"user", "user", OPT_STRING, 1, NULL},
      {"role", "role", OPT_CHOICE, 1, "owner|admin|agent|viewer"},
      {"capacity", "capacity", OPT_INT, 0, NULL}},
     "router.member.add",
     "conversation-router",
     "member add --workspace W --user U --role owner|admin|agent|viewer [--capacity N]"},
    {{"member", "remove"},
     NULL,
     NULL,
     {{"workspace", "workspace_id", OPT_STRING, 1, NULL}, {"user", "user", OPT_STRING, 1, NULL}},
     "router.member.remove",
     "conversation-router",
     "member remove --workspace W --user U"},
    {{"integration", "connect"},
     NULL,
     NULL,
     {{"workspace", "workspace_id", OPT_STRING, 1, NULL},
      {"platform", "platform", OPT_CHOICE, 1, "instagram|messenger"},
      {"account", "account_id", OPT_STRING, 1, NULL},
      {"token", "token", OPT_STRING, 1, NULL},
      {"asid", "asid", OPT_STRING, 0, NULL}},
     "vault.integration.connect",
     "token-vault",
     "integration connect --workspace W --platform instagram|messenger --account ACCOUNT_ID "
     "--token SHORT_LIVED_TOKEN [--asid APP_SCOPED_USER_ID]"},
    {{"integration", "disconnect"},
     "integration_id",
     "I",
     {{0}},
     "vault.integration.disconnect",
     "token-vault",
     "integration disconnect I"},
    {{"integration", "check"},
     "integration_id",
     "I",
     {{0}},
     "vault.integration.check",
     "token-vault",
     "integration check I"},
    {{"integration", "list"},
     NULL,
     NULL,
     {{"workspace", "workspace_id", OPT_STRING, 1, NULL}},
     "vault.integration.list",
     "token-vault",
     "integration list --workspace W"},
    {{"conversations", "list"},
     NULL,
     NULL,
     {{"workspace", "workspace_id", OPT_STRING, 1, NULL},
      {"status", "status", OPT_CHOICE, 0, "open|closed"},
      {"assignee", "assignee", OPT_STRING, 0, NULL},
      {"window", "window", OPT_CHOICE, 0, "open|human_agent|closed"},
      {"limit", "limit", OPT_INT, 0, NULL},
      {"cursor", "cursor", OPT_STRING, 0, NULL},
      {"all", NULL, OPT_ALL, 0, NULL}},
     "router.conversations.list",
     "conversation-router",
     "conversations list --workspace W [--status open|closed] [--assignee USER|none] "
     "[--window open|human_agent|closed] [--limit N] [--cursor C] [--all]"},
    {{"conversation", "get"},
     "conversation_id",
     "C",
     {{0}},
     "router.conversation.get",
     "conversation-router",
     "conversation get C"},
    {{"conversation", "assign"},
     "conversation_id",
     "C",
     {{"user", "user", OPT_STRING, 1, NULL}},
     "router.conversation.assign",
     "conversation-router",
     "conversation assign C --user U"},
    {{"conversation", "close"},
     "conversation_id",
     "C",
     {{0}},
     "router.conversation.close",
     "conversation-router",
     "conversation close C"},
    {{"conversation", "take"},
     "conversation_id",
     "C",
     {{0}},
     "router.conversation.take",
     "conversation-router",
     "conversation take C"},
    {{"messages", "list"},
     "conversation_id",
     "C",
     {{"limit", "limit", OPT_INT, 0, NULL},
      {"newest", "newest", OPT_INT, 0, NULL},
      {"cursor", "cursor", OPT_STRING, 0, NULL},
      {"all", NULL, OPT_ALL, 0, NULL}},
     "router.messages.list",
     "conversation-router",
     "messages list C [--limit N | --newest N] [--cursor C] [--all]"},
    {{"attachment", "get"},
     "attachment_id",
     "ID",
     {{"out", "out", OPT_STRING, 1, NULL}},
     "router.attachment.get",
     "conversation-router",
     "attachment get ID --out FILE"},
    {{"reply", NULL},
     "conversation_id",
     "C",
     {{"text", "text", OPT_STRING, 0, NULL},
      {"file", "file", OPT_FILE, 0, NULL},
      {"human-agent", "human_agent", OPT_FLAG, 0, NULL}},
     "router.reply",
     "conversation-router",
     "reply C --text T [--file PATH] [--human-agent] | reply C --file PATH [--human-agent]"},
    {{"suggest", NULL},
     "conversation_id",
     "C",
     {{"voice", "voice", OPT_FLAG, 0, NULL}},
     "ai.suggest",
     "ai-suggest",
     "suggest C [--voice]"},
    {{"deletion", "status"},
     "confirmation_code",
     "CODE",
     {{0}},
     "reaper.deletion.status",
     "retention-reaper",
     "deletion status CODE"},
    {{"retention", "run"},
     NULL,
     NULL,
     {{0}},
     "reaper.retention.run",
     "retention-reaper",
     "retention run"},
    {{"audit", "list"},
     NULL,
     NULL,
     {{"since", "since", OPT_TIME, 0, NULL},
      {"cursor", "cursor", OPT_STRING, 0, NULL},
      {"all", NULL, OPT_ALL, 0, NULL}},
     "reaper.audit.list",
     "retention-reaper",
     "audit list [--since T] [--cursor C] [--all]"},
    {{"audit", "verify"},
     NULL,
     NULL,
     {{0}},
     "reaper.audit.verify",
     "retention-reaper",
     "audit verify"},
    {{NULL, NULL}, NULL, NULL, {{0}}, NULL, NULL, NULL},
};

const struct command *domsctl_find(int argc, char **argv, int *consumed)
{
    for (const struct command *c = domsctl_commands; c->words[0] != NULL; c++) {
        if (argc < 1 || strcmp(argv[0], c->words[0]) != 0)
            continue;
        if (c->words[1] == NULL) {
            *consumed = 1;
            return c;
        }
        if (argc >= 2 && strcmp(argv[1], c->words[1]) == 0) {
            *consumed = 2;
            return c;
        }
    }
    return NULL;
}

static int in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;

    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        if (bar == NULL)
            break;
        p = bar + 1;
    }
    return 0;
}

/* RFC 3339 with a Z or an offset, checked by shape: the daemon parses it properly. */
static int looks_like_time(const char *v)
{
    return strlen(v) >= 20 && isdigit((unsigned char)v[0]) && v[4] == '-' && v[7] == '-' &&
           (v[10] == 'T' || v[10] == 't') && v[13] == ':';
}

static const struct option_spec *find_opt(const struct command *cmd, const char *name)
{
    for (int i = 0; i < MAX_OPTS && cmd->opts[i].name != NULL; i++) {
        if (strcmp(cmd->opts[i].name, name) == 0)
            return &cmd->opts[i];
    }
    return NULL;
}

/* Adds one option's value to req; returns 0, or -1 with err set. */
static int add_option(cJSON *req, const struct option_spec *o, const char *v, char *err,
                      size_t errlen)
{
    char *end;
    long n;

    switch (o->kind) {
    case OPT_ALL:
        return 0; /* domsctl's own, never sent */
    case OPT_FLAG:
        cJSON_AddTrueToObject(req, o->field);
        return 0;
    case OPT_STRING:
    case OPT_FILE: /* main.c takes the path out of the request before it is sent */
        if (*v == '\0') {
            snprintf(err, errlen, "--%s must not be empty", o->name);
            return -1;
        }
        cJSON_AddStringToObject(req, o->field, v);
        return 0;
    case OPT_INT:
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno != 0 || *end != '\0' || end == v || n < 0 || n > 1000000) {
            snprintf(err, errlen, "--%s takes a whole number, not \"%s\"", o->name, v);
            return -1;
        }
        cJSON_AddNumberToObject(req, o->field, (double)n);
        return 0;
    case OPT_ONOFF:
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
            snprintf(err, errlen, "--%s takes on or off, not \"%s\"", o->name, v);
            return -1;
        }
        cJSON_AddBoolToObject(req, o->field, strcmp(v, "on") == 0);
        return 0;
    case OPT_CHOICE:
        if (!in_choices(o->choices, v)) {
            snprintf(err, errlen, "--%s takes %s, not \"%s\"", o->name, o->choices, v);
            return -1;
        }
        cJSON_AddStringToObject(req, o->field, v);
        return 0;
    case OPT_TIME:
        if (!looks_like_time(v)) {
            snprintf(err, errlen, "--%s takes an RFC 3339 time such as 2026-11-01T00:00:00Z",
                     o->name);
            return -1;
        }
        cJSON_AddStringToObject(req, o->field, v);
        return 0;
    }
    return -1;
}

cJSON *domsctl_build(const struct command *cmd, int argc, char **argv, const char *actor, int *all,
                     char *err, size_t errlen)
{
    cJSON *req = cJSON_CreateObject();
    int have_positional = 0;

    *all = 0;
    cJSON_AddStringToObject(req, "actor", actor);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) == 0) {
            const struct option_spec *o = find_opt(cmd, a + 2);
            if (o == NULL) {
                snprintf(err, errlen, "unknown option %s for \"%s\"", a, cmd->usage);
                goto fail;
            }
            if (o->kind == OPT_ALL ? *all
                                   : cJSON_GetObjectItemCaseSensitive(req, o->field) != NULL) {
                snprintf(err, errlen, "%s given twice", a);
                goto fail;
            }
            if (o->kind == OPT_ALL)
                *all = 1;
            if (o->kind != OPT_FLAG && o->kind != OPT_ALL && i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value", a);
                goto fail;
            }
            if (o->kind != OPT_ALL &&
                add_option(req, o, o->kind == OPT_FLAG ? NULL : argv[++i], err, errlen) != 0)
                goto fail;
        } else if (cmd->positional != NULL && !have_positional) {
            cJSON_AddStringToObject(req, cmd->positional, a);
            have_positional = 1;
        } else {
            snprintf(err, errlen, "unexpected argument \"%s\"", a);
            goto fail;
        }
    }
    if (cmd->positional != NULL && !have_positional) {
        snprintf(err, errlen, "missing %s", cmd->positional_name);
        goto fail;
    }
    /* --newest pages backwards: followed to the end, its pages would print in an order no
     * page has. --newest names a tail, --all the rest of the list. */
    if (*all && cJSON_GetObjectItemCaseSensitive(req, "newest") != NULL) {
        snprintf(err, errlen, "--all reads to the end of the list: not with --newest");
        goto fail;
    }
    /* A reply is text, a file, or both. */
    if (find_opt(cmd, "file") != NULL && cJSON_GetObjectItemCaseSensitive(req, "text") == NULL &&
        cJSON_GetObjectItemCaseSensitive(req, "file") == NULL) {
        snprintf(err, errlen, "missing --text or --file");
        goto fail;
    }
    for (int i = 0; i < MAX_OPTS && cmd->opts[i].name != NULL; i++) {
        if (cmd->opts[i].required &&
            cJSON_GetObjectItemCaseSensitive(req, cmd->opts[i].field) == NULL) {
            snprintf(err, errlen, "missing --%s", cmd->opts[i].name);
            goto fail;
        }
    }
    return req;
fail:
    cJSON_Delete(req);
    return NULL;
}

void domsctl_usage(FILE *out)
{
    fprintf(out, "usage: domsctl [--json] [--actor ID] [--timeout SECONDS] <command>\n"
                 "       domsctl --help | --version\n\n"
                 "commands:\n");
    for (const struct command *c = domsctl_commands; c->words[0] != NULL; c++)
        fprintf(out, "  %s\n", c->usage);
    fprintf(
        out,
        "\nNATS_URL says where the daemons are (default nats://127.0.0.1:4222); NATS_URL_FILE,\n"
        "the path of a file holding it, may be set instead.\n");
}
