/*
 * audit.c - audit events through the outbox (see audit.h).
 */
#include "common/audit.h"
#include "common/crypto.h"
#include "common/mem.h"
#include "common/nats.h"
#include "common/outbox.h"
#include "common/pg.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

/* RFC 3339 UTC with microseconds. */
static void now_rfc3339(char out[40])
{
    struct timeval tv;
    struct tm tm;
    size_t n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%06ldZ", (long)tv.tv_usec);
}

int cm_audit_event(const char *service, const char *actor, const char *action, const char *subject,
                   char **payload, char msg_id[48])
{
    unsigned char raw[16];
    char id[33], at[40];
    cJSON *ev = cJSON_CreateObject();

    cm_crypto_random(raw, sizeof(raw));
    cm_hex_encode(raw, sizeof(raw), id);
    now_rfc3339(at);
    cJSON_AddStringToObject(ev, "id", id);
    cJSON_AddStringToObject(ev, "at", at);
    cJSON_AddStringToObject(ev, "service", service);
    cJSON_AddStringToObject(ev, "actor", actor ? actor : "system");
    cJSON_AddStringToObject(ev, "action", action);
    cJSON_AddStringToObject(ev, "subject", subject ? subject : "");
    *payload = cJSON_PrintUnformatted(ev);
    if (*payload == NULL)
        abort();
    snprintf(msg_id, 48, "audit:%s", id);
    cJSON_Delete(ev);
    return CM_OK;
}

int cm_audit_add(struct cm_pg *pg, const char *service, const char *actor, const char *action,
                 const char *subject)
{
    char subj[128], msg_id[48];
    char *payload = NULL;
    int rc;

    rc = cm_audit_event(service, actor, action, subject, &payload, msg_id);
    snprintf(subj, sizeof(subj), "audit.%s", service);
    if (rc == CM_OK)
        rc = cm_outbox_add(pg, subj, msg_id, payload);
    cJSON_free(payload);
    return rc;
}

int cm_audit_stream_ensure(struct cm_nats *n, void *arg)
{
    /* Transport only: retention-reaper keeps the audit log; the age bounds a backlog. */
    static const struct cm_stream_spec spec = {
        .name = CM_AUDIT_STREAM,
        .subjects = CM_AUDIT_SUBJECTS,
        .max_age_s = 7 * 86400,
        .dup_window_s = 10 * 60,
    };

    (void)arg;
    return cm_nats_stream_declare(n, &spec);
}
