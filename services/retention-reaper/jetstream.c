/*
 * jetstream.c - what the suite keeps in JetStream about an account, purged by subject:
 * the raw Meta events of META_EVENTS (webhook-ingest's) and the integration state events
 * of VAULT_EVENTS (token-vault's), which carry the account id.
 *
 * A subject filter built from outside data could match far more than one account ("*",
 * ">", a dot), so every token that goes into one is checked first.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "reaper.h"

#define META_STREAM  "META_EVENTS"
#define STATE_STREAM "VAULT_EVENTS"
/* How long a "purged" state waits for a consumer that has not seen it (the router). */
#define STATE_GRACE_S 300
/* How long one round waits for the final state to be published and seen: 5 s. */
#define STATE_POLLS   25
#define STATE_POLL_MS 200

/* Counts the messages of stream under filter. A stream that does not exist holds none. */
static int count(struct reaper *r, const char *stream, const char *filter, long *n)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    natsStatus s;

    *n = 0;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = filter;
    s = js_GetStreamInfo(&si, cm_nats_js(r->svc.nats), stream, &o, &jerr);
    if (s == NATS_NOT_FOUND)
        return CM_OK;
    if (s != NATS_OK) {
        CM_WARN("jetstream: %s info (%s): %s (%d)", stream, filter, natsStatus_GetText(s),
                (int)jerr);
        return CM_UNAVAIL;
    }
    for (int i = 0; si->State.Subjects != NULL && i < si->State.Subjects->Count; i++)
        *n += (long)si->State.Subjects->List[i].Msgs;
    jsStreamInfo_Destroy(si);
    return CM_OK;
}

static int purge(struct reaper *r, const char *stream, const char *filter)
{
    jsErrCode jerr = 0;
    jsOptions o;
    natsStatus s;

    jsOptions_Init(&o);
    o.Stream.Purge.Subject = filter;
    s = js_PurgeStream(cm_nats_js(r->svc.nats), stream, &o, &jerr);
    if (s == NATS_OK || s == NATS_NOT_FOUND)
        return CM_OK;
    CM_WARN("jetstream: purge of %s (%s): %s (%d)", stream, filter, natsStatus_GetText(s),
            (int)jerr);
    return CM_UNAVAIL;
}

int reaper_js_purge_account(struct reaper *r, const char *platform, const char *account,
                            long *purged, long *left)
{
    char filter[160];
    int rc;

    *purged = *left = 0;
    if (!reaper_subject_token(platform) || !reaper_subject_token(account))
        return CM_INVALID;
    if (!cm_nats_connected(r->svc.nats))
        return CM_UNAVAIL;
    snprintf(filter, sizeof(filter), "meta.events.%s.%s.>", platform, account);
    rc = count(r, META_STREAM, filter, purged);
    if (rc == CM_OK && *purged > 0)
        rc = purge(r, META_STREAM, filter);
    /* Verify: what arrived meanwhile (Meta still sending) is purged by the next round. */
    if (rc == CM_OK)
        rc = count(r, META_STREAM, filter, left);
    if (rc == CM_OK && *purged > 0)
        CM_INFO("jetstream: %ld raw events of %s account %s purged", *purged - *left, platform,
                account);
    if (rc == CM_OK)
        *purged = *purged > *left ? *purged - *left : 0;
    return rc;
}

/* True when every consumer of the state stream has acknowledged seq (or has nothing left). */
static bool consumers_saw(struct reaper *r, uint64_t seq)
{
    jsConsumerInfoList *list = NULL;
    jsErrCode jerr = 0;
    bool all = true;

    natsStatus s = js_Consumers(&list, cm_nats_js(r->svc.nats), STATE_STREAM, NULL, &jerr);

    if (s == NATS_NOT_FOUND)
        return true; /* no consumer at all */
    if (s != NATS_OK)
        return false; /* cannot tell: wait */
    for (int i = 0; i < list->Count; i++) {
        const jsConsumerInfo *ci = list->List[i];
        if (ci->AckFloor.Stream < seq && (ci->NumPending > 0 || ci->NumAckPending > 0))
            all = false;
    }
    jsConsumerInfoList_Destroy(list);
    return all;
}

int reaper_js_purge_integration_state(struct reaper *r, const char *integration_id, long *left)
{
    char subject[128];
    natsMsg *msg = NULL;
    jsErrCode jerr = 0;
    cJSON *state;
    const char *status;
    uint64_t seq;
    int64_t age_s;
    bool purged;
    natsStatus s;

    *left = 0;
    if (!reaper_subject_token(integration_id))
        return CM_INVALID;
    snprintf(subject, sizeof(subject), "vault.events.integration.%s", integration_id);
    /* token-vault publishes the final "purged" state through its outbox, a moment after
     * vault.purge answers; the router drops its route when it sees it. Only then may the
     * subject go, or the router would keep routing an account that is gone. Both usually
     * take well under a second: wait that long here rather than a whole round. */
    for (int tries = 0;; tries++) {
        if (!cm_nats_connected(r->svc.nats))
            return CM_UNAVAIL;
        s = js_GetLastMsg(&msg, cm_nats_js(r->svc.nats), STATE_STREAM, subject, NULL, &jerr);
        if (s == NATS_NOT_FOUND)
            return CM_OK; /* nothing held (or purged by an earlier round) */
        if (s != NATS_OK) {
            CM_WARN("jetstream: last state of %s: %s (%d)", integration_id, natsStatus_GetText(s),
                    (int)jerr);
            return CM_UNAVAIL;
        }
        state = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
        status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(state, "status"));
        purged = status != NULL && strcmp(status, "purged") == 0;
        seq = natsMsg_GetSequence(msg);
        age_s = (int64_t)time(NULL) - natsMsg_GetTime(msg) / 1000000000LL;
        cJSON_Delete(state);
        natsMsg_Destroy(msg);
        msg = NULL;
        if (purged && (age_s >= STATE_GRACE_S || consumers_saw(r, seq)))
            break;
        if (tries == STATE_POLLS) {
            *left = 1;
            return CM_AGAIN;
        }
        nanosleep(&(struct timespec){0, STATE_POLL_MS * 1000000L}, NULL);
    }
    if (purge(r, STATE_STREAM, subject) != CM_OK)
        return CM_UNAVAIL;
    return count(r, STATE_STREAM, subject, left);
}
