/*
 * publish.c - one POST's events to JetStream, answered when every acknowledgement is in.
 *
 * Each event is published asynchronously; completions arrive on nats.c's threads and
 * count down the delivery's outstanding events. The last one hands the delivery to the
 * event loop, which answers 200 when all were stored (or already held: a duplicate) and
 * 503 otherwise, so that Meta retries. Nothing answers 200 for an event not stored.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "envelope.h"
#include "ingest.h"
#include "publish.h"

struct delivery {
    struct ingest *ing;
    struct evhttp_request *req;
    char rid[REQUEST_ID_LEN + 1];
    struct timespec start;
    size_t total;
    _Atomic size_t remaining;
    _Atomic size_t failed;
    _Atomic size_t duplicates;
};

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* On the loop: answer, account, and let a pending shutdown proceed. */
static void finish(void *arg)
{
    struct delivery *d = arg;
    struct ingest *ing = d->ing;
    size_t failed = atomic_load(&d->failed);
    char body[96];

    if (failed == 0) {
        snprintf(body, sizeof(body), "{\"status\":\"ok\",\"events\":%zu}", d->total);
        cm_httpd_reply_json(ing->svc.public_httpd, d->req, 200, body);
        cm_metrics_inc(ing->m_published, d->total - atomic_load(&d->duplicates));
        cm_metrics_inc(ing->m_duplicates, atomic_load(&d->duplicates));
        CM_DEBUG_ID(d->rid, "stored %zu events (%zu already held)", d->total,
                    atomic_load(&d->duplicates));
    } else {
        cm_metrics_inc(ing->m_unavailable, 1);
        CM_WARN_ID(d->rid, "%zu of %zu events not stored; answered 503", failed, d->total);
        cm_httpd_reply_error(ing->svc.public_httpd, d->req, 503,
                             "events could not be stored durably; retry later");
    }
    cm_metrics_observe(ing->m_latency, seconds_since(&d->start));
    free(d);

    ing->inflight--;
    cm_metrics_set(ing->m_inflight, ing->inflight);
    if (ing->draining && ing->inflight == 0)
        cm_service_done(&ing->svc);
}

/* Counts one event as settled; the last one hands the delivery to the loop. */
static void settle(struct delivery *d, size_t n)
{
    if (atomic_fetch_sub(&d->remaining, n) == n)
        cm_loopq_post(d->ing->svc.loopq, finish, d);
}

/* nats.c thread: one event's acknowledgement. */
static void on_ack(void *arg, int status, uint64_t seq, bool duplicate)
{
    struct delivery *d = arg;

    (void)seq;
    if (status != CM_OK)
        atomic_fetch_add(&d->failed, 1);
    else if (duplicate)
        atomic_fetch_add(&d->duplicates, 1);
    settle(d, 1);
}

void ingest_publish(struct ingest *ing, struct evhttp_request *req, const char *rid,
                    const struct envelope *env)
{
    struct delivery *d = cm_xcalloc(1, sizeof(*d));
    size_t sent = 0;

    d->ing = ing;
    d->req = req;
    snprintf(d->rid, sizeof(d->rid), "%s", rid);
    clock_gettime(CLOCK_MONOTONIC, &d->start);
    d->total = env->nevents;
    atomic_store(&d->remaining, env->nevents);
    ing->inflight++;
    cm_metrics_set(ing->m_inflight, ing->inflight);

    for (; sent < env->nevents; sent++) {
        const struct envelope_event *ev = &env->events[sent];
        int rc = cm_nats_publish_async(ing->svc.nats, ev->subject, ev->msg_id, ev->payload,
                                       (int)ev->payload_len, INGEST_PUBLISH_WAIT_MS, on_ack, d);
        if (rc != CM_OK)
            break;
    }
    if (sent < env->nevents) {
        /* The rest were never handed to nats.c: they count as failed, settled here. */
        size_t unsent = env->nevents - sent;
        atomic_fetch_add(&d->failed, unsent);
        settle(d, unsent);
    }
}
