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
    /* Purging an account's events by subject needs purges allowed (the default). */
    static const struct cm_stream_spec spec = {
        .name = INGEST_STREAM,
        .subjects = INGEST_SUBJECTS,
        .max_age_s = INGEST_MAX_AGE_S,
        .dup_window_s = INGEST_DUP_WINDOW_S,
    };

    (void)arg;
    return cm_nats_stream_declare(n, &spec);
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
