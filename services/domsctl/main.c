/*
 * domsctl - the operator CLI. Each command is one NATS request to the daemon that owns the
 * data (see commands.c and proto/). Exit status: 0 done, 1 refused or failed (the reason on
 * stderr), 2 a usage error.
 *
 *   domsctl [--json] [--actor ID] [--timeout SECONDS] <command> [arguments]
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/nats.h"
#include "common/settings.h"
#include "common/url.h"
#include "commands.h"
#include "output.h"

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

/* Sends req to cmd's subject over url and returns the parsed reply, or NULL with *why set. */
static cJSON *request(const struct command *cmd, const cJSON *req, const struct domsctl_cfg *cfg,
                      const char *identity, long timeout_ms, char *why, size_t cap)
{
    natsConnection *nc = NULL;
    natsOptions *opts = NULL;
    natsMsg *reply = NULL;
    char *body = cJSON_PrintUnformatted(req);
    const char *url = cfg->nats_url;
    cJSON *parsed = NULL;
    natsStatus s;

    s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, "domsctl");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, 5000);
    if (s == NATS_OK)
        s = cm_nats_options_identity(opts, identity, cfg->nats_ca_file, cfg->nats_cert_file,
                                     cfg->nats_key_file);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, opts);
    if (s != NATS_OK) {
        char masked[256];
        cm_url_redact(url, masked, sizeof(masked));
        snprintf(why, cap, "cannot reach NATS at %s: %s", masked, natsStatus_GetText(s));
        goto done;
    }
    s = cm_nats_request_as(&reply, nc, identity, cmd->subject, body, timeout_ms);
    if (s == NATS_NO_RESPONDERS) {
        snprintf(why, cap, "no %s is answering on %s (is it running?)", cmd->service, cmd->subject);
        goto done;
    }
    if (s != NATS_OK) {
        snprintf(why, cap, "%s did not answer on %s: %s", cmd->service, cmd->subject,
                 natsStatus_GetText(s));
        goto done;
    }
    parsed = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    if (parsed == NULL)
        snprintf(why, cap, "%s answered something that is not JSON", cmd->service);
done:
    natsMsg_Destroy(reply);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    cJSON_free(body);
    return parsed;
}

int main(int argc, char **argv)
{
    const char *actor = "operator";
    long timeout_ms = 60000;
    int json = 0, i = 1, consumed = 0, rc = 0;
    const struct command *cmd;
    char err[512] = "";
    cJSON *req, *reply;
    const cJSON *result, *error;
    struct domsctl_cfg cfg = {0};
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
    req = domsctl_build(cmd, argc - i - consumed, argv + i + consumed, actor, err, sizeof(err));
    if (req == NULL) {
        fprintf(stderr, "domsctl: %s; usage: domsctl %s\n", err, cmd->usage);
        return EXIT_USAGE;
    }

    if (cm_settings_load(settings, NSETTINGS, &cfg, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "domsctl: %s\n", err);
        cJSON_Delete(req);
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return EXIT_REFUSED;
    }
    if (cm_nats_identity(cfg.nats_ca_file, cfg.nats_cert_file, cfg.nats_key_file, "operator",
                         identity, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "domsctl: %s\n", err);
        cJSON_Delete(req);
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return EXIT_REFUSED;
    }
    reply = request(cmd, req, &cfg, identity, timeout_ms, err, sizeof(err));
    cJSON_Delete(req);
    cm_settings_cleanup(settings, NSETTINGS, &cfg);
    if (reply == NULL) {
        fprintf(stderr, "domsctl: %s\n", err);
        nats_Close();
        return EXIT_REFUSED;
    }
    error = cJSON_GetObjectItemCaseSensitive(reply, "error");
    result = cJSON_GetObjectItemCaseSensitive(reply, "result");
    if (error != NULL) {
        const char *message = cJSON_GetStringValue(cJSON_GetObjectItem(error, "message"));
        fprintf(stderr, "domsctl: %s\n", message ? message : "refused");
        rc = EXIT_REFUSED;
    } else if (result == NULL) {
        fprintf(stderr, "domsctl: %s gave neither a result nor an error\n", cmd->service);
        rc = EXIT_REFUSED;
    } else {
        domsctl_print(stdout, result, json);
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
