/*
 * stream.c - the JetStream stream of raw Meta events, and the shutdown drain.
 *
 * Raw events are Platform Data: file storage (encrypted at rest by the server's
 * configuration), a duplicate window comfortably longer than Meta's quick retries, and a
 * maximum age so that they do not outlive their use. One account's events are found, and
 * purged, by the subject meta.events.<platform>.<account>.>.
 */
#include <string.h>

#include "common/log.h"
#include "ingest.h"

static int ensure_stream(struct cm_nats *n, void *arg)
{
    static const char *subjects[] = {INGEST_SUBJECTS};
    jsStreamConfig cfg;

    (void)arg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = INGEST_STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.Discard = js_DiscardOld;
    cfg.Duplicates = (int64_t)INGEST_DUP_WINDOW_S * 1000000000LL;
    cfg.MaxAge = (int64_t)INGEST_MAX_AGE_S * 1000000000LL;
    cfg.Replicas = 1;
    cfg.AllowRollup = false;
    cfg.DenyDelete = false; /* deletion callbacks purge an account's events */
    cfg.DenyPurge = false;
    return cm_nats_stream_ensure(n, &cfg);
}

void ingest_stream_register(struct ingest *ing)
{
    cm_nats_on_connect(ing->svc.nats, ensure_stream, ing);
}

void ingest_shutdown(struct cm_service *svc, void *arg)
{
    struct ingest *ing = arg;

    ing->draining = true;
    if (ing->inflight == 0)
        cm_service_done(svc);
    else
        CM_INFO("waiting for %d in-flight webhook POSTs", ing->inflight);
}
