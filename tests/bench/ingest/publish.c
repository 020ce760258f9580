/*
 * bench_publish - the storage ceiling: a bare nats.c program publishing the same events
 * as webhook-ingest, asynchronously, to a stream configured like META_EVENTS, on the same
 * server. Prints events/s and the publish-to-acknowledgement latency p50/p99.
 *
 * usage: bench_publish NATS_URL EVENTS WINDOW
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/connect.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int inflight;
static int acked;
static int failed;
static double *latencies;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sent {
    double at;
};

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    const char *stamp = NULL;

    (void)js;
    (void)closure;
    (void)pae;
    natsMsgHeader_Get(msg, "Bench-At", &stamp);
    pthread_mutex_lock(&lock);
    if (pa != NULL && stamp != NULL)
        latencies[acked++] = now() - atof(stamp);
    else
        failed++;
    inflight--;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    natsMsg_Destroy(msg);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const char *subjects[] = {"bench.>"};
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsStreamConfig sc;
    jsErrCode jerr = 0;
    int events, window;
    double t0, t1;
    char payload[1024], id[64], stamp[32];

    if (argc != 4) {
        fprintf(stderr, "usage: bench_publish NATS_URL EVENTS WINDOW\n");
        return 2;
    }
    events = atoi(argv[2]);
    window = atoi(argv[3]);
    latencies = calloc((size_t)events, sizeof(double));
    if (bench_connect(&nc, argv[1]) != NATS_OK)
        return 1;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.MaxPending = window * 2;
    if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
        return 1;
    jsStreamConfig_Init(&sc);
    sc.Name = "BENCH";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 300LL * 1000000000LL;
    sc.MaxAge = 7LL * 86400 * 1000000000LL;
    js_DeleteStream(js, "BENCH", NULL, &jerr);
    if (js_AddStream(NULL, js, &sc, NULL, &jerr) != NATS_OK) {
        fprintf(stderr, "cannot create the stream (%d)\n", (int)jerr);
        return 1;
    }

    t0 = now();
    for (int i = 0; i < events; i++) {
        natsMsg *msg = NULL;
        jsPubOptions po;
        /* The wrapped event ingest publishes, with a unique mid. */
        int len = snprintf(payload, sizeof(payload),
                           "{\"platform\":\"messenger\",\"account_id\":\"106123456789012\","
                           "\"source\":\"messaging\",\"kind\":\"message\",\"entry_time\":"
                           "1732870000123,\"event\":{\"sender\":{\"id\":\"7012345678901234\"},"
                           "\"recipient\":{\"id\":\"106123456789012\"},\"timestamp\":"
                           "1732870000000,\"message\":{\"mid\":\"m_bare%d\",\"text\":\"Hi! Is "
                           "the blue jacket from your summer collection still available in "
                           "size M? I would like to pick it up this weekend if possible.\"}}}",
                           i);
        snprintf(id, sizeof(id), "messenger:106123456789012:message:m_bare%d", i);
        pthread_mutex_lock(&lock);
        while (inflight >= window)
            pthread_cond_wait(&cond, &lock);
        inflight++;
        pthread_mutex_unlock(&lock);
        natsMsg_Create(&msg, "bench.messenger.106123456789012.message", NULL, payload, len);
        snprintf(stamp, sizeof(stamp), "%.9f", now());
        natsMsgHeader_Set(msg, "Bench-At", stamp);
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.MaxWait = 10000;
        if (js_PublishMsgAsync(js, &msg, &po) != NATS_OK) {
            natsMsg_Destroy(msg);
            pthread_mutex_lock(&lock);
            inflight--;
            failed++;
            pthread_mutex_unlock(&lock);
        }
    }
    pthread_mutex_lock(&lock);
    while (inflight > 0)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    t1 = now();

    qsort(latencies, (size_t)acked, sizeof(double), cmp);
    printf("RESULT events=%d seconds=%.3f p50_us=%.0f p99_us=%.0f failed=%d\n", acked, t1 - t0,
           acked ? latencies[acked / 2] * 1e6 : 0, acked ? latencies[acked * 99 / 100] * 1e6 : 0,
           failed);
    js_DeleteStream(js, "BENCH", NULL, &jerr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    free(latencies);
    return failed != 0;
}
