/*
 * bench_rpc - NATS request-reply under concurrent clients: requests/s and latency p50/p99
 * of a subject, beside an echo responder on the same server in the same run (the
 * baseline: what request-reply costs with no work behind it).
 *
 * usage: bench_rpc NATS_URL SUBJECT BODY CLIENTS SECONDS [RATE]
 *   SUBJECT "echo" measures the built-in echo responder with a reply of the same size as
 *   the first real reply. RATE (requests/s over all clients) paces the clients; without
 *   it they go as fast as they can (closed loop).
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SAMPLES 2000000

struct client {
    const char *url, *subject, *body;
    double seconds, interval; /* interval 0: closed loop */
    double *lat;
    int n, errors;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run_client(void *p)
{
    struct client *c = p;
    natsConnection *nc = NULL;
    double start, next;

    if (natsConnection_ConnectTo(&nc, c->url) != NATS_OK)
        return NULL;
    start = next = now();
    while (now() - start < c->seconds && c->n < MAX_SAMPLES / 16) {
        natsMsg *reply = NULL;
        double t0;
        if (c->interval > 0) {
            double wait = next - now();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
            next += c->interval;
        }
        t0 = now();
        if (natsConnection_RequestString(&reply, nc, c->subject, c->body, 5000) != NATS_OK ||
            strstr(natsMsg_GetData(reply), "\"error\"") != NULL) {
            c->errors++;
        } else {
            c->lat[c->n++] = now() - t0;
        }
        natsMsg_Destroy(reply);
    }
    natsConnection_Destroy(nc);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char echo_reply[4096];

static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)sub;
    (void)arg;
    natsConnection_PublishString(nc, natsMsg_GetReply(msg), echo_reply);
    natsMsg_Destroy(msg);
}

int main(int argc, char **argv)
{
    const char *subject;
    int clients;
    double seconds, rate = 0, t0, elapsed;
    struct client *cs;
    pthread_t *ts;
    natsConnection *echo_nc = NULL;
    natsSubscription *sub = NULL;
    double *all;
    int total = 0, errors = 0;

    if (argc < 6) {
        fprintf(stderr, "usage: bench_rpc NATS_URL SUBJECT BODY CLIENTS SECONDS [RATE]\n");
        return 2;
    }
    subject = argv[2];
    clients = atoi(argv[4]);
    seconds = atof(argv[5]);
    if (argc > 6)
        rate = atof(argv[6]);
    if (strcmp(subject, "echo") == 0) {
        /* A reply the size of a token reply. */
        memset(echo_reply, 'x', 300);
        echo_reply[300] = '\0';
        subject = "bench.echo";
        natsConnection_ConnectTo(&echo_nc, argv[1]);
        natsConnection_QueueSubscribe(&sub, echo_nc, subject, "echo", on_echo, NULL);
        natsConnection_Flush(echo_nc);
    }
    cs = calloc((size_t)clients, sizeof(*cs));
    ts = calloc((size_t)clients, sizeof(*ts));
    for (int i = 0; i < clients; i++) {
        cs[i].url = argv[1];
        cs[i].subject = subject;
        cs[i].body = argv[3];
        cs[i].seconds = seconds;
        cs[i].interval = rate > 0 ? clients / rate : 0;
        cs[i].lat = calloc(MAX_SAMPLES / 16, sizeof(double));
    }
    t0 = now();
    for (int i = 0; i < clients; i++)
        pthread_create(&ts[i], NULL, run_client, &cs[i]);
    for (int i = 0; i < clients; i++)
        pthread_join(ts[i], NULL);
    elapsed = now() - t0;
    all = calloc(MAX_SAMPLES, sizeof(double));
    for (int i = 0; i < clients; i++) {
        memcpy(all + total, cs[i].lat, (size_t)cs[i].n * sizeof(double));
        total += cs[i].n;
        errors += cs[i].errors;
        free(cs[i].lat);
    }
    qsort(all, (size_t)total, sizeof(double), cmp);
    printf("RESULT requests=%d seconds=%.3f rps=%.0f p50_us=%.0f p99_us=%.0f errors=%d\n", total,
           elapsed, total / elapsed, total ? all[total / 2] * 1e6 : 0,
           total ? all[(size_t)total * 99 / 100] * 1e6 : 0, errors);
    free(all);
    free(cs);
    free(ts);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(echo_nc);
    return 0;
}
