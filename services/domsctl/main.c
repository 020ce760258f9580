/*
 * domsctl - the operator CLI. Each command is one NATS request to the daemon that owns the
 * data (see commands.c and proto/). Exit status: 0 done, 1 refused or failed (the reason on
 * stderr), 2 a usage error.
 *
 *   domsctl [--json] [--actor ID] [--timeout SECONDS] <command> [arguments]
 */
#include <errno.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/nats.h"
#include "common/settings.h"
#include "common/url.h"
#include "commands.h"
#include "output.h"
#include "upload.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE   2

struct domsctl_cfg {
    char *nats_url;
    char *nats_ca_file; /* the operator's identity: all three, or none for plaintext */
    char *nats_cert_file;
    char *nats_key_file;
};

/* The daemons' own loader, so that NATS_URL_FILE works here as it does for them. */
static const struct cm_setting settings[] = {
    {"NATS_URL", CM_SET_URL, offsetof(struct domsctl_cfg, nats_url), "nats://127.0.0.1:4222", 0, 0,
     0, NULL, "NATS server URL(s), comma-separated"},
    {"NATS_CA_FILE", CM_SET_STR, offsetof(struct domsctl_cfg, nats_ca_file), NULL, 0, 0, 0, NULL,
     "CA certificate (PEM) that signed nats-server's certificate"},
    {"NATS_CERT_FILE", CM_SET_STR, offsetof(struct domsctl_cfg, nats_cert_file), NULL, 0, 0, 0,
     NULL, "the operator's certificate (PEM)"},
    {"NATS_KEY_FILE", CM_SET_STR, offsetof(struct domsctl_cfg, nats_key_file), NULL, 0, 0, 0, NULL,
     "the operator's private key (PEM)"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "domsctl: %s%s (domsctl --help lists the commands)\n", what, arg);
    return EXIT_USAGE;
}

/* Connects to NATS as identity into *nc; false with *why set. */
static bool connect_nats(natsConnection **nc, const struct domsctl_cfg *cfg, const char *identity,
                         char *why, size_t cap)
{
    natsOptions *opts = NULL;
    natsStatus s;

    *nc = NULL;
    s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, cfg->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, "domsctl");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, 5000);
    if (s == NATS_OK)
        s = cm_nats_options_identity(opts, identity, cfg->nats_ca_file, cfg->nats_cert_file,
                                     cfg->nats_key_file);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, opts);
    if (s != NATS_OK) {
        char masked[256];
        cm_url_redact(cfg->nats_url, masked, sizeof(masked));
        snprintf(why, cap, "cannot reach NATS at %s: %s", masked, natsStatus_GetText(s));
    }
    natsOptions_Destroy(opts);
    return s == NATS_OK;
}

/* Sends req to cmd's subject and returns the parsed reply (free it), or NULL with *why set. */
static cJSON *request(natsConnection *nc, const struct command *cmd, const cJSON *req,
                      const char *identity, long timeout_ms, char *why, size_t cap)
{
    natsMsg *reply = NULL;
    char *body = cJSON_PrintUnformatted(req);
    cJSON *parsed = NULL;
    natsStatus s;

    s = cm_nats_request_as(&reply, nc, identity, cmd->subject, body, timeout_ms);
    if (s == NATS_NO_RESPONDERS)
        snprintf(why, cap, "no %s is answering on %s (is it running?)", cmd->service, cmd->subject);
    else if (s != NATS_OK)
        snprintf(why, cap, "%s did not answer on %s: %s", cmd->service, cmd->subject,
                 natsStatus_GetText(s));
    if (s == NATS_OK) {
        parsed =
            cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        if (parsed == NULL)
            snprintf(why, cap, "%s answered something that is not JSON", cmd->service);
    }
    natsMsg_Destroy(reply);
    cJSON_free(body);
    return parsed;
}

/*
 * The result of a reply (borrowed from it), or NULL when the reply is an error or has no
 * result, with the reason in why.
 */
static const cJSON *result_of(const struct command *cmd, const cJSON *reply, char *why, size_t cap)
{
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(reply, "error");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(reply, "result");

    if (error != NULL) {
        const char *message = cJSON_GetStringValue(cJSON_GetObjectItem(error, "message"));
        snprintf(why, cap, "%s", message ? message : "refused");
        return NULL;
    }
    if (result == NULL)
        snprintf(why, cap, "%s gave neither a result nor an error", cmd->service);
    return result;
}

/*
 * --all: asks for the pages after the one in *reply until the last, and appends their rows
 * to its result. Returns 0, or EXIT_REFUSED with the reason in why (nothing is printed then:
 * part of a list is not the list asked for).
 */
static int follow_pages(natsConnection *nc, const struct command *cmd, cJSON *req, cJSON *reply,
                        const char *identity, long timeout_ms, char *why, size_t cap)
{
    cJSON *rows = cJSON_GetObjectItemCaseSensitive(reply, "result");

    while (cJSON_IsArray(rows) &&
           cJSON_IsString(cJSON_GetObjectItemCaseSensitive(reply, "next_cursor"))) {
        const char *cursor = cJSON_GetObjectItemCaseSensitive(reply, "next_cursor")->valuestring;
        const cJSON *page, *cursor_item;
        cJSON *next, *row;

        cJSON_DeleteItemFromObjectCaseSensitive(req, "cursor");
        cJSON_AddStringToObject(req, "cursor", cursor);
        next = request(nc, cmd, req, identity, timeout_ms, why, cap);
        page = next != NULL ? result_of(cmd, next, why, cap) : NULL;
        if (!cJSON_IsArray(page)) {
            if (page != NULL)
                snprintf(why, cap, "%s answered a page that is not a list", cmd->service);
            cJSON_Delete(next);
            return EXIT_REFUSED;
        }
        while ((row = cJSON_DetachItemFromArray((cJSON *)page, 0)) != NULL)
            cJSON_AddItemToArray(rows, row);
        cursor_item = cJSON_GetObjectItemCaseSensitive(next, "next_cursor");
        cJSON_ReplaceItemInObjectCaseSensitive(reply, "next_cursor",
                                               cJSON_IsString(cursor_item)
                                                   ? cJSON_CreateString(cursor_item->valuestring)
                                                   : cJSON_CreateNull());
        cJSON_Delete(next);
    }
    return 0;
}

/*
 * attachment get: asks router.attachment.get chunk by chunk (NATS carries 1 MiB at most) and
 * writes them to FILE.tmp (mode 0600), renamed to FILE once complete, so FILE is never a
 * part. Returns 0 with *out the result to print (free it), or EXIT_REFUSED with why.
 */
static int get_attachment(natsConnection *nc, const struct command *cmd, cJSON *req,
                          const char *identity, long timeout_ms, cJSON **out, char *why, size_t cap)
{
    const char *out_field = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "out"));
    char path[4096], tmp[4096];
    long long offset = 0;
    bool eof = false;
    int fd, rc = 0;
    cJSON *last = NULL;

    *out = NULL;
    /* Copied: the request's field goes before the request is sent. */
    if (out_field == NULL || strlen(out_field) + 5 > sizeof(path)) {
        snprintf(why, cap, "--out needs a shorter path");
        return EXIT_REFUSED;
    }
    snprintf(path, sizeof(path), "%s", out_field);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        snprintf(why, cap, "--out needs a shorter path");
        return EXIT_REFUSED;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        snprintf(why, cap, "cannot write %.300s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EXIT_REFUSED;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(req, "out");
    while (rc == 0 && !eof) {
        cJSON *reply;
        const cJSON *result;
        const char *data;
        unsigned char *bin;
        size_t len = 0, dlen;

        cJSON_DeleteItemFromObjectCaseSensitive(req, "offset");
        cJSON_AddNumberToObject(req, "offset", (double)offset);
        reply = request(nc, cmd, req, identity, timeout_ms, why, cap);
        result = reply != NULL ? result_of(cmd, reply, why, cap) : NULL;
        data = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(result, "data"));
        if (data == NULL) {
            if (result != NULL)
                snprintf(why, cap, "%s answered without the attachment's data", cmd->service);
            cJSON_Delete(reply);
            rc = EXIT_REFUSED;
            break;
        }
        dlen = strlen(data);
        bin = malloc(dlen + 1);
        if (bin == NULL ||
            sodium_base642bin(bin, dlen + 1, data, dlen, NULL, &len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            (len > 0 && write(fd, bin, len) != (ssize_t)len)) {
            snprintf(why, cap, "the attachment could not be written to %.300s", tmp);
            rc = EXIT_REFUSED;
        }
        free(bin);
        eof = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "eof"));
        if (rc == 0 && len == 0 && !eof) {
            snprintf(why, cap, "%s sent an empty chunk before the end", cmd->service);
            rc = EXIT_REFUSED;
        }
        offset += (long long)len;
        cJSON_Delete(last);
        last = cJSON_Duplicate(result, 1);
        cJSON_Delete(reply);
    }
    if (fsync(fd) != 0 && rc == 0) {
        snprintf(why, cap, "cannot write %.300s: %s", tmp, strerror(errno));
        rc = EXIT_REFUSED;
    }
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(why, cap, "cannot rename %.300s: %s", tmp, strerror(errno));
        rc = EXIT_REFUSED;
    }
    if (rc != 0) {
        unlink(tmp);
        cJSON_Delete(last);
        return rc;
    }
    *out = cJSON_CreateObject();
    cJSON_AddItemToObject(
        *out, "attachment_id",
        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(last, "attachment_id"), 1));
    cJSON_AddItemToObject(*out, "type",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(last, "type"), 1));
    cJSON_AddItemToObject(
        *out, "content_type",
        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(last, "content_type"), 1));
    cJSON_AddNumberToObject(*out, "size", (double)offset);
    cJSON_AddStringToObject(*out, "file", path);
    cJSON_Delete(last);
    return 0;
}

int main(int argc, char **argv)
{
    const char *actor = "operator";
    long timeout_ms = 60000;
    int json = 0, i = 1, consumed = 0, rc = 0, all = 0;
    const struct command *cmd;
    char err[512] = "";
    natsConnection *nc = NULL;
    cJSON *req, *reply;
    const cJSON *result;
    struct domsctl_cfg cfg = {0};
    struct domsctl_file file = {0};
    char identity[CM_NATS_IDENTITY_MAX];

    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--actor") == 0 && i + 1 < argc && argv[i + 1][0] != '\0') {
            actor = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc && atol(argv[i + 1]) > 0) {
            timeout_ms = atol(argv[++i]) * 1000;
        } else if (strcmp(argv[i], "--help") == 0) {
            domsctl_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("domsctl %s\n", DOMS_VERSION);
            return 0;
        } else {
            return usage_error("unknown or incomplete global option ", argv[i]);
        }
    }
    if (i >= argc)
        return usage_error("no command given", "");
    cmd = domsctl_find(argc - i, argv + i, &consumed);
    if (cmd == NULL)
        return usage_error("unknown command ", argv[i]);
    req =
        domsctl_build(cmd, argc - i - consumed, argv + i + consumed, actor, &all, err, sizeof(err));
    if (req == NULL) {
        fprintf(stderr, "domsctl: %s; usage: domsctl %s\n", err, cmd->usage);
        return EXIT_USAGE;
    }
    /* --file: a file that cannot be read is a usage error, found before anything is asked. */
    if (cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "file")) != NULL) {
        if (domsctl_file_open(&file, cJSON_GetObjectItemCaseSensitive(req, "file")->valuestring,
                              err, sizeof(err)) != 0) {
            fprintf(stderr, "domsctl: %s\n", err);
            cJSON_Delete(req);
            return EXIT_USAGE;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(req, "file");
    }

    if (cm_settings_load(settings, NSETTINGS, &cfg, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "domsctl: %s\n", err);
        cJSON_Delete(req);
        domsctl_file_close(&file);
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return EXIT_REFUSED;
    }
    if (cm_nats_identity(cfg.nats_ca_file, cfg.nats_cert_file, cfg.nats_key_file, "operator",
                         identity, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "domsctl: %s\n", err);
        cJSON_Delete(req);
        domsctl_file_close(&file);
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return EXIT_REFUSED;
    }
    if (!connect_nats(&nc, &cfg, identity, err, sizeof(err))) {
        fprintf(stderr, "domsctl: %s\n", err);
        cJSON_Delete(req);
        domsctl_file_close(&file);
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        natsConnection_Destroy(nc);
        nats_Close();
        return EXIT_REFUSED;
    }
    cm_settings_cleanup(settings, NSETTINGS, &cfg);
    if (strcmp(cmd->subject, "router.attachment.get") == 0) {
        cJSON *got = NULL;
        rc = get_attachment(nc, cmd, req, identity, timeout_ms, &got, err, sizeof(err));
        cJSON_Delete(req);
        natsConnection_Destroy(nc);
        if (rc != 0)
            fprintf(stderr, "domsctl: %s\n", err);
        else
            domsctl_print(stdout, got, json);
        cJSON_Delete(got);
        nats_Close();
        return rc;
    }
    if (file.fp != NULL &&
        domsctl_file_send(nc, identity, &file, req, timeout_ms, err, sizeof(err)) != 0)
        reply = NULL; /* refused or failed: err says why */
    else
        reply = request(nc, cmd, req, identity, timeout_ms, err, sizeof(err));
    domsctl_file_close(&file);
    result = reply != NULL ? result_of(cmd, reply, err, sizeof(err)) : NULL;
    if (result != NULL && all)
        rc = follow_pages(nc, cmd, req, reply, identity, timeout_ms, err, sizeof(err));
    cJSON_Delete(req);
    natsConnection_Destroy(nc);
    if (result == NULL || rc != 0) {
        fprintf(stderr, "domsctl: %s\n", err);
        rc = EXIT_REFUSED;
    } else {
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(reply, "next_cursor");
        domsctl_print(stdout, result, json);
        /* More pages: how to ask for the next, on stderr, after the page itself, so that
         * stdout stays the one JSON value the interface promises. */
        if (cJSON_IsString(next)) {
            fflush(stdout);
            fprintf(stderr, "domsctl: more follow: --cursor %s\n", next->valuestring);
        }
        /* A verdict that is a refusal in itself, such as a broken audit chain. */
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(result, "ok"))) {
            fprintf(stderr, "domsctl: %s reported a failure\n", cmd->service);
            rc = EXIT_REFUSED;
        }
    }
    cJSON_Delete(reply);
    nats_Close();
    return rc;
}
