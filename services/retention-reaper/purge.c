/*
 * purge.c - one deletion across the services, as a table (proto/purge.md).
 *
 * The table below is the whole list of who is asked to delete what, in order. Each
 * service crypto-shreds its slice first, deletes it in bounded batches, and answers what it
 * deleted and what is left; the reaper calls a deletion done only when every target says
 * nothing is left. A target that is not running (a NATS "no responders") leaves the deletion
 * in progress, to be retried: nothing is reported deleted that was not.
 *
 * token-vault comes last because it holds the map from integration to account: while the
 * other slices are not gone, the reaper must still be able to find them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "reaper.h"

struct target;
typedef bool (*target_fn)(struct reaper *r, const struct target *t, const struct reaper_scope *s,
                          struct reaper_purge_result *out);

struct target {
    const char *name;  /* the purge subject, or the stream */
    const char *owner; /* who deletes, for the messages an operator reads */
    target_fn run;     /* returns true when the target holds nothing of the scope any more */
    bool after_clean;  /* runs only once every target before it reported nothing left */
};

static bool by_request(struct reaper *r, const struct target *t, const struct reaper_scope *s,
                       struct reaper_purge_result *out);
static bool raw_events(struct reaper *r, const struct target *t, const struct reaper_scope *s,
                       struct reaper_purge_result *out);
static bool state_events(struct reaper *r, const struct target *t, const struct reaper_scope *s,
                         struct reaper_purge_result *out);

static const struct target targets[] = {
    {"router.purge", "conversation-router", by_request, false}, /* contacts, conversations,
                                                                   messages */
    {"ai.purge", "ai-suggest", by_request, false},              /* suggestions */
    {"META_EVENTS", "JetStream (raw Meta events)", raw_events, false},
    {"vault.purge", "token-vault", by_request, true}, /* tokens, integrations */
    {"VAULT_EVENTS", "JetStream (integration state events)", state_events, true},
};

#define NTARGETS (sizeof(targets) / sizeof(targets[0]))

/* Appends one reason why the scope is not clean yet. */
static void pending(struct reaper_purge_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void pending(struct reaper_purge_result *out, const char *fmt, ...)
{
    size_t n = strlen(out->pending);
    va_list ap;

    if (n + 4 >= sizeof(out->pending))
        return;
    if (n > 0) {
        snprintf(out->pending + n, sizeof(out->pending) - n, "; ");
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(out->pending + n, sizeof(out->pending) - n, fmt, ap);
    va_end(ap);
}

static bool by_request(struct reaper *r, const struct target *t, const struct reaper_scope *s,
                       struct reaper_purge_result *out)
{
    cJSON *req = cJSON_CreateObject(), *ids;
    const cJSON *it;
    struct reaper_reply rep;
    bool clean = false;
    int rc;

    cJSON_AddStringToObject(req, "scope", s->scope);
    if (strcmp(s->scope, "workspace") == 0) {
        cJSON_AddStringToObject(req, "workspace_id", s->workspace_id);
    } else {
        ids = cJSON_AddArrayToObject(req, "integration_ids");
        cJSON_ArrayForEach(it, s->integrations)
        {
            const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "integration_id"));
            if (id != NULL)
                cJSON_AddItemToArray(ids, cJSON_CreateString(id));
        }
    }
    rc = reaper_call(r, t->name, req, REAPER_PURGE_TIMEOUT_MS, &rep);
    cJSON_Delete(req);
    if (rc != CM_OK) {
        pending(out, "%s (%s)", rep.message, t->owner);
        return false;
    }
    reaper_counts_add_json(&out->deleted, cJSON_GetObjectItemCaseSensitive(rep.result, "deleted"));
    clean = reaper_counts_none_left(cJSON_GetObjectItemCaseSensitive(rep.result, "remaining"));
    if (!clean)
        pending(out, "%s still holds data of this %s after its purge", t->owner, s->scope);
    reaper_reply_cleanup(&rep);
    return clean;
}

/* True when the account is connected again, to another workspace than the one purged. */
static bool live_elsewhere(struct reaper *r, const struct reaper_scope *s, const char *platform,
                           const char *account, int *rc)
{
    cJSON *req = cJSON_CreateObject();
    struct reaper_reply rep;
    const char *ws;
    bool elsewhere = false;

    cJSON_AddStringToObject(req, "platform", platform);
    cJSON_AddStringToObject(req, "account_id", account);
    *rc = reaper_call(r, "vault.integration.lookup", req, REAPER_CALL_TIMEOUT_MS, &rep);
    cJSON_Delete(req);
    if (*rc == CM_NOTFOUND) {
        *rc = CM_OK;
    } else if (*rc == CM_OK) {
        ws = cJSON_GetStringValue(cJSON_GetObjectItem(rep.result, "workspace_id"));
        elsewhere = ws != NULL && s->workspace_id != NULL && strcmp(ws, s->workspace_id) != 0;
    }
    reaper_reply_cleanup(&rep);
    return elsewhere;
}

static bool raw_events(struct reaper *r, const struct target *t, const struct reaper_scope *s,
                       struct reaper_purge_result *out)
{
    const cJSON *it;
    bool clean = true;

    cJSON_ArrayForEach(it, s->integrations)
    {
        const char *platform = cJSON_GetStringValue(cJSON_GetObjectItem(it, "platform"));
        const char *account = cJSON_GetStringValue(cJSON_GetObjectItem(it, "account_id"));
        long purged = 0, left = 0;
        int rc = CM_OK;

        /* An account connected again elsewhere after a workspace deletion: its events are
         * the new workspace's now (the deleted one's are older than the stream keeps). */
        if (s->keep_live_accounts && live_elsewhere(r, s, platform, account, &rc))
            continue;
        if (rc == CM_OK)
            rc = reaper_js_purge_account(r, platform, account, &purged, &left);
        out->deleted.n[REAPER_RAW_EVENTS] += purged;
        if (rc == CM_INVALID) {
            /* Not an id that can name a subject: it cannot have events either. */
            CM_WARN("purge: integration with an unusable account id skipped");
        } else if (rc != CM_OK || left > 0) {
            pending(out, "%s: %s", t->owner,
                    rc != CM_OK ? "unreachable" : "events still arriving; purged again later");
            clean = false;
        }
    }
    return clean;
}

static bool state_events(struct reaper *r, const struct target *t, const struct reaper_scope *s,
                         struct reaper_purge_result *out)
{
    const cJSON *it;
    bool clean = true;

    cJSON_ArrayForEach(it, s->integrations)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "integration_id"));
        long left = 0;
        int rc = reaper_js_purge_integration_state(r, id, &left);

        if (rc == CM_AGAIN) {
            out->retry_s = 2; /* the vault's last event is on its way */
            pending(out, "%s: %s", t->owner, "waiting for the final state to be seen");
            clean = false;
        } else if (rc == CM_UNAVAIL || (rc == CM_OK && left > 0)) {
            pending(out, "%s: %s", t->owner, "not purged yet");
            clean = false;
        }
    }
    return clean;
}

void reaper_purge(struct reaper *r, const struct reaper_scope *scope,
                  struct reaper_purge_result *out)
{
    bool clean = true;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < NTARGETS; i++) {
        const struct target *t = &targets[i];

        if (t->after_clean && !clean) {
            pending(out, "%s waits for the targets before it", t->owner);
            continue;
        }
        if (!t->run(r, t, scope, out))
            clean = false;
    }
    out->clean = clean;
}
