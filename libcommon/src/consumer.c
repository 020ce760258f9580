/*
 * consumer.c - durable JetStream consumers on dedicated worker threads.
 *
 * The consumer is a push consumer delivered to a queue group named after the durable, so
 * replicas share its messages, and the worker reads it as a synchronous subscription:
 * it waits for one message, takes whatever else has already arrived (up to the batch
 * size), hands them to the handler and acknowledges by the handler's verdict. A message
 * never waits for a batch to fill, and MaxAckPending bounds what is in flight. (Pull
 * requests were tried first: each empty fetch left a waiting request on the server, and
 * under redeliveries they piled up to "Exceeded MaxWaiting".) Nothing here touches the
 * event loop.
 */
#include "common/log.h"
#include "common/mem.h"
#include "common/nats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FETCH_WAIT_MS 500

struct cm_consumer {
    struct cm_nats *nats;
    char *stream;
    char *durable;
    char *filter;
    int batch;
    int64_t ack_wait_ms;
    int64_t retry_delay_ms;
    int max_deliver;
    cm_consume_fn fn;
    cm_consume_batch_fn batch_fn;
    void *arg;

    pthread_t thread;
    _Atomic bool stopping;
    natsSubscription *sub;
};

/* Sleeps up to ms, waking early when the consumer is stopping. */
static void pause_ms(struct cm_consumer *c, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&c->stopping); slept += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int attach(struct cm_consumer *c)
{
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;

    if (!cm_nats_connected(c->nats))
        return CM_UNAVAIL;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Config.Durable = c->durable;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = c->ack_wait_ms * 1000000LL;
    so.Config.MaxDeliver = c->max_deliver > 0 ? c->max_deliver : -1;
    so.Config.FilterSubject = c->filter;
    so.Config.MaxAckPending = c->batch * 4;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Queue = c->durable;
    so.ManualAck = true;
    s = js_SubscribeSync(&c->sub, cm_nats_js(c->nats), c->filter, NULL, &so, &jerr);
    if (s != NATS_OK) {
        CM_WARN("consumer %s: cannot bind to stream %s: %s (%d)", c->durable, c->stream,
                natsStatus_GetText(s), (int)jerr);
        c->sub = NULL;
        return CM_UNAVAIL;
    }
    CM_INFO("consumer %s: bound to stream %s (%s)", c->durable, c->stream, c->filter);
    return CM_OK;
}

static void detach(struct cm_consumer *c)
{
    /* Destroy without unsubscribing: a durable consumer outlives its subscribers (nats.c
     * deletes only the consumers it created without a durable name). */
    natsSubscription_Destroy(c->sub);
    c->sub = NULL;
}

static void settle(struct cm_consumer *c, natsMsg *msg, enum cm_consume_result verdict)
{
    natsStatus s = NATS_OK;

    switch (verdict) {
    case CM_CONSUME_ACK:
        s = natsMsg_Ack(msg, NULL);
        break;
    case CM_CONSUME_RETRY:
        s = natsMsg_NakWithDelay(msg, c->retry_delay_ms, NULL);
        break;
    case CM_CONSUME_TERM:
        s = natsMsg_Term(msg, NULL);
        break;
    case CM_CONSUME_SETTLED:
        break;
    }
    if (s != NATS_OK) {
        /* The server redelivers after AckWait; handlers are idempotent for this reason. */
        CM_WARN("consumer %s: acknowledgement not sent: %s", c->durable, natsStatus_GetText(s));
    }
}

/*
 * Waits up to FETCH_WAIT_MS for one message, then takes what else has already arrived, up
 * to the batch size, into msgs. Returns how many, 0 on a quiet wait, or a negative error.
 */
static int fetch(struct cm_consumer *c, natsMsg **msgs, natsStatus *status)
{
    int n = 0;

    *status = natsSubscription_NextMsg(&msgs[0], c->sub, FETCH_WAIT_MS);
    if (*status == NATS_TIMEOUT)
        return 0;
    if (*status != NATS_OK)
        return -1;
    n = 1;
    while (n < c->batch && natsSubscription_NextMsg(&msgs[n], c->sub, 0) == NATS_OK)
        n++;
    return n;
}

static void *consumer_main(void *arg)
{
    struct cm_consumer *c = arg;
    natsMsg **msgs = cm_xcalloc((size_t)c->batch, sizeof(*msgs));

    while (!atomic_load(&c->stopping)) {
        natsStatus s;
        int n;

        if (c->sub == NULL && attach(c) != CM_OK) {
            pause_ms(c, 1000);
            continue;
        }
        n = fetch(c, msgs, &s);
        if (n == 0)
            continue;
        if (n < 0) {
            CM_WARN("consumer %s: %s (%s); subscribing again", c->durable, natsStatus_GetText(s),
                    nats_GetLastError(NULL));
            detach(c);
            pause_ms(c, 500);
            continue;
        }
        /* Every message taken is settled, even when stopping: none is left unacked. */
        if (c->batch_fn != NULL) {
            enum cm_consume_result *verdicts = cm_xcalloc((size_t)n, sizeof(*verdicts));
            c->batch_fn(c->arg, msgs, n, verdicts);
            for (int i = 0; i < n; i++)
                settle(c, msgs[i], verdicts[i]);
            free(verdicts);
        } else {
            for (int i = 0; i < n; i++)
                settle(c, msgs[i], c->fn(c->arg, msgs[i]));
        }
        for (int i = 0; i < n; i++)
            natsMsg_Destroy(msgs[i]);
    }
    if (c->sub != NULL)
        detach(c);
    free(msgs);
    return NULL;
}

int cm_consumer_start(struct cm_consumer **out, struct cm_nats *n,
                      const struct cm_consumer_cfg *cfg, cm_consume_fn fn, void *arg)
{
    struct cm_consumer *c = cm_xcalloc(1, sizeof(*c));

    c->nats = n;
    c->stream = cm_xstrdup(cfg->stream);
    c->durable = cm_xstrdup(cfg->durable);
    c->filter = cm_xstrdup(cfg->filter);
    c->batch = cfg->batch > 0 ? cfg->batch : 64;
    c->ack_wait_ms = cfg->ack_wait_ms > 0 ? cfg->ack_wait_ms : 30000;
    c->retry_delay_ms = cfg->retry_delay_ms > 0 ? cfg->retry_delay_ms : 2000;
    c->max_deliver = cfg->max_deliver;
    c->fn = fn;
    c->batch_fn = cfg->batch_fn;
    c->arg = arg;
    if (pthread_create(&c->thread, NULL, consumer_main, c) != 0) {
        CM_ERROR("consumer %s: cannot start its thread", c->durable);
        free(c->stream);
        free(c->durable);
        free(c->filter);
        free(c);
        return CM_ERR;
    }
    *out = c;
    return CM_OK;
}

void cm_consumer_destroy(struct cm_consumer *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->stopping, true);
    pthread_join(c->thread, NULL);
    free(c->stream);
    free(c->durable);
    free(c->filter);
    free(c);
}
