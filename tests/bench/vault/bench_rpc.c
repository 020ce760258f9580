/*
 * bench_rpc - NATS request-reply under concurrent clients: requests/s and latency p50/p99
 * of a subject, beside an echo responder on the same server in the same run (the
 * baseline: what request-reply costs with no work behind it).
 *
 * usage: bench_rpc NATS_URL SUBJECT BODY CLIENTS SECONDS [RATE [IDS_FILE]]
 *        bench_rpc connect NATS_URL WORKSPACE COUNT
 *   SUBJECT "echo" measures the built-in echo responder with a reply of the same size as
 *   a token reply. RATE (requests/s over all clients, 0: closed loop) paces the clients on
 *   a fixed schedule: each request is due at start + k * CLIENTS / RATE for its client and is
 *   timed from then, so a slow reply delays the requests behind it and their wait is
 *   measured (no coordinated omission); without RATE they go as fast as they can and each
 *   request is timed from when it left. IDS_FILE (one integration id a line) spreads the
 *   requests over those ids, one drawn at random for each request: BODY then holds one %s,
 *   where the id goes.
 *   A request that fails (a NATS error, a timeout of 5 s, a reply with "error") counts in the
 *   percentiles as +infinity (printed as inf) and in errors=; the exit status is then 1.
 *   "connect" connects COUNT Instagram accounts through vault.integration.connect, 8 at a
 *   time, and prints their integration ids, one a line.
 */
#include <math.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/connect.h"
#include "../lib/latency.h"

#define MAX_SAMPLES 2000000
#define TIMEOUT_MS  5000

struct client {
    const char *url, *subject, *body;
    double seconds, interval; /* interval 0: closed loop */
    char **ids;               /* NULL: body as it is */
    int nids;
    unsigned seed;
    double *lat; /* seconds; INFINITY for a failed request */
    int n, errors;
};

static void *run_client(void *p)
{
    struct client *c = p;
    natsConnection *nc = NULL;
    double start, due;
    char body[1024];

    if (bench_connect(&nc, c->url) != NATS_OK) {
        c->errors++;
        return NULL;
    }
    start = due = bench_now();
    /* Paced: the schedule has seconds / interval requests, sent however late they become. */
    while (c->n < MAX_SAMPLES / 16 &&
           (c->interval > 0 ? due < start + c->seconds : bench_now() - start < c->seconds)) {
        natsMsg *reply = NULL;
        const char *msg = c->body;
        double t0;

        if (c->interval > 0) {
            bench_sleep_until(due);
            t0 = due;
            due += c->interval;
        } else {
            t0 = bench_now();
        }
        if (c->ids != NULL) {
            const char *hole = strstr(c->body, "%s");
            snprintf(body, sizeof(body), "%.*s%s%s", (int)(hole - c->body), c->body,
                     c->ids[rand_r(&c->seed) % (unsigned)c->nids], hole + 2);
            msg = body;
        }
        if (natsConnection_RequestString(&reply, nc, c->subject, msg, TIMEOUT_MS) != NATS_OK ||
            strstr(natsMsg_GetData(reply), "\"error\"") != NULL) {
            if (reply != NULL && c->errors == 0)
                fprintf(stderr, "first error: %.300s\n", natsMsg_GetData(reply));
            c->errors++;
            c->lat[c->n++] = INFINITY;
        } else {
            c->lat[c->n++] = bench_now() - t0;
        }
        natsMsg_Destroy(reply);
    }
    natsConnection_Destroy(nc);
    return NULL;
}

static char echo_reply[4096];

static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)sub;
    (void)arg;
    natsConnection_PublishString(nc, natsMsg_GetReply(msg), echo_reply);
    natsMsg_Destroy(msg);
}

/* Reads one id a line; returns how many, the array in *out (freed by the process's exit). */
static int read_ids(const char *path, char ***out)
{
    FILE *f = fopen(path, "r");
    char line[256];
    int n = 0, cap = 0;

    *out = NULL;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            *out = realloc(*out, (size_t)cap * sizeof(char *));
        }
        (*out)[n++] = strdup(line);
    }
    fclose(f);
    return n;
}

/* --- connect ------------------------------------------------------------------------- */

static const char *connect_url, *connect_ws;
static int connect_count;
static _Atomic int connect_next, connect_failed;
static char **connect_ids;

static void *connector(void *arg)
{
    natsConnection *nc = NULL;
    char body[512];
    int k;

    (void)arg;
    if (bench_connect(&nc, connect_url) != NATS_OK) {
        atomic_fetch_add(&connect_failed, 1);
        return NULL;
    }
    while ((k = atomic_fetch_add(&connect_next, 1)) < connect_count) {
        natsMsg *reply = NULL;
        const char *id;
        snprintf(body, sizeof(body),
                 "{\"workspace_id\":\"%s\",\"platform\":\"instagram\","
                 "\"account_id\":\"17841%010d\",\"token\":\"bench-short\"}",
                 connect_ws, k);
        if (natsConnection_RequestString(&reply, nc, "vault.integration.connect.operator", body,
                                         30000) != NATS_OK ||
            (id = strstr(natsMsg_GetData(reply), "\"integration_id\":\"")) == NULL) {
            if (reply != NULL)
                fprintf(stderr, "connect %d: %.300s\n", k, natsMsg_GetData(reply));
            atomic_fetch_add(&connect_failed, 1);
        } else {
            id += strlen("\"integration_id\":\"");
            connect_ids[k] = strndup(id, strcspn(id, "\""));
        }
        natsMsg_Destroy(reply);
    }
    natsConnection_Destroy(nc);
    return NULL;
}

static int connect_many(const char *url, const char *ws, int count)
{
    pthread_t ts[8];

    connect_url = url;
    connect_ws = ws;
    connect_count = count;
    connect_ids = calloc((size_t)count, sizeof(char *));
    for (int i = 0; i < 8; i++)
        pthread_create(&ts[i], NULL, connector, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(ts[i], NULL);
    for (int i = 0; i < count; i++) {
        if (connect_ids[i] != NULL)
            printf("%s\n", connect_ids[i]);
    }
    return atomic_load(&connect_failed) > 0;
}

int main(int argc, char **argv)
{
    const char *subject;
    int clients, nids = 0;
    double seconds, rate = 0, t0, elapsed;
    struct client *cs;
    pthread_t *ts;
    natsConnection *echo_nc = NULL;
    natsSubscription *sub = NULL;
    double *all;
    char **ids = NULL;
    int total = 0, errors = 0;
    char p50[32], p99[32], p999[32];
    FILE *urandom;

    if (argc == 5 && strcmp(argv[1], "connect") == 0)
        return connect_many(argv[2], argv[3], atoi(argv[4]));
    if (argc < 6) {
        fprintf(stderr, "usage: bench_rpc NATS_URL SUBJECT BODY CLIENTS SECONDS [RATE [IDS_FILE]]\n"
                        "       bench_rpc connect NATS_URL WORKSPACE COUNT\n");
        return 2;
    }
    subject = argv[2];
    clients = atoi(argv[4]);
    seconds = atof(argv[5]);
    if (argc > 6)
        rate = atof(argv[6]);
    if (argc > 7 && (nids = read_ids(argv[7], &ids)) == 0) {
        fprintf(stderr, "bench_rpc: no ids in %s\n", argv[7]);
        return 2;
    }
    if (nids > 0 && strstr(argv[3], "%s") == NULL) {
        fprintf(stderr, "bench_rpc: with IDS_FILE, BODY needs a %%s for the id\n");
        return 2;
    }
    if (strcmp(subject, "echo") == 0) {
        /* A reply the size of a token reply. */
        memset(echo_reply, 'x', 300);
        echo_reply[300] = '\0';
        subject = "bench.echo";
        bench_connect(&echo_nc, argv[1]);
        natsConnection_QueueSubscribe(&sub, echo_nc, subject, "echo", on_echo, NULL);
        natsConnection_Flush(echo_nc);
    }
    cs = calloc((size_t)clients, sizeof(*cs));
    ts = calloc((size_t)clients, sizeof(*ts));
    urandom = fopen("/dev/urandom", "rb");
    for (int i = 0; i < clients; i++) {
        cs[i].url = argv[1];
        cs[i].subject = subject;
        cs[i].body = argv[3];
        cs[i].seconds = seconds;
        cs[i].interval = rate > 0 ? clients / rate : 0;
        cs[i].ids = ids;
        cs[i].nids = nids;
        if (urandom == NULL || fread(&cs[i].seed, sizeof(cs[i].seed), 1, urandom) != 1)
            cs[i].seed = (unsigned)i * 2654435761u ^ (unsigned)time(NULL);
        cs[i].lat = calloc(MAX_SAMPLES / 16, sizeof(double));
    }
    if (urandom != NULL)
        fclose(urandom);
    t0 = bench_now();
    for (int i = 0; i < clients; i++)
        pthread_create(&ts[i], NULL, run_client, &cs[i]);
    for (int i = 0; i < clients; i++)
        pthread_join(ts[i], NULL);
    elapsed = bench_now() - t0;
    all = calloc(MAX_SAMPLES, sizeof(double));
    for (int i = 0; i < clients; i++) {
        memcpy(all + total, cs[i].lat, (size_t)cs[i].n * sizeof(double));
        total += cs[i].n;
        errors += cs[i].errors;
        free(cs[i].lat);
    }
    bench_latency_sort(all, total);
    printf("RESULT requests=%d seconds=%.3f rps=%.0f p50_us=%s p99_us=%s p999_us=%s errors=%d\n",
           total, elapsed, total / elapsed, bench_latency_pct(all, total, 0.50, 1e6, 0, p50),
           bench_latency_pct(all, total, 0.99, 1e6, 0, p99),
           bench_latency_pct(all, total, 0.999, 1e6, 0, p999), errors);
    free(all);
    free(cs);
    free(ts);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(echo_nc);
    return errors > 0;
}
