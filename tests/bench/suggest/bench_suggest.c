/*
 * bench_suggest - ai.suggest under concurrent clients beside the bare HTTP round trip to the
 * same provider, measured the same way in the same run: requests/s and latency p50/p99.
 *
 * usage: bench_suggest NATS_URL CONVERSATION_ID PROVIDER_URL CLIENTS SECONDS [RATE]
 *
 * Two phases, each CLIENTS threads for SECONDS, closed loop or paced at RATE requests/s over
 * all clients:
 *   bare     POST PROVIDER_URL/v1/chat/completions with a Chat Completions body of the size
 *            ai-suggest sends, over a kept-alive connection per client (libcurl), as
 *            ai-suggest's workers do: what the provider costs by itself.
 *   suggest  the NATS request {"actor":"operator","conversation_id"} on ai.suggest: the whole
 *            suite (NATS, router context, masking, provider call, sealing, storing, audit).
 * Paced, request k of a client is due at start + k * CLIENTS / RATE and is timed from then, so a
 * slow answer delays the requests behind it and their wait is measured (no coordinated
 * omission); closed loop, each request is timed from when it left. A failed request (an
 * error, a timeout, a reply with "error") counts in the percentiles as +infinity (printed
 * as inf) and in errors=; the exit status is then 1. Each phase prints one line:
 *   RESULT phase=<bare|suggest> requests=N seconds=S rps=R p50_us=U p99_us=U errors=E
 */
#include <curl/curl.h>
#include <math.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/connect.h"
#include "../lib/latency.h"

#define MAX_SAMPLES 200000

struct client {
    const char *nats_url, *url, *body;
    int bare;
    double seconds, interval;
    double *lat; /* seconds; INFINITY for a failed request */
    int n, errors;
};

static size_t sink(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/*
 * Waits until the paced schedule allows the next request and returns when it was due (the
 * time to measure it from); closed loop, returns now.
 */
static double pace(struct client *c, double *next)
{
    double due = *next, wait;

    if (c->interval <= 0)
        return bench_now();
    wait = due - bench_now();
    if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
    *next += c->interval;
    return due;
}

/* Paced: the schedule's requests, sent however late; closed loop: until the time is up. */
static int more(const struct client *c, double start, double next)
{
    if (c->n >= MAX_SAMPLES)
        return 0;
    return c->interval > 0 ? next < start + c->seconds : bench_now() - start < c->seconds;
}

static void *run_bare(struct client *c)
{
    CURL *curl = curl_easy_init();
    struct curl_slist *h = NULL;
    double start, next;
    long status = 0;

    h = curl_slist_append(h, "Authorization: Bearer sk-test-openai-0123456789abcdef");
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, c->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
    start = next = bench_now();
    while (more(c, start, next)) {
        double t0 = pace(c, &next);
        if (curl_easy_perform(curl) != CURLE_OK ||
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
            c->errors++;
            c->lat[c->n++] = INFINITY;
        } else {
            c->lat[c->n++] = bench_now() - t0;
        }
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(curl);
    return NULL;
}

static void *run_suggest(struct client *c)
{
    natsConnection *nc = NULL;
    double start, next;

    if (bench_connect(&nc, c->nats_url) != NATS_OK) {
        c->errors++;
        return NULL;
    }
    start = next = bench_now();
    while (more(c, start, next)) {
        natsMsg *reply = NULL;
        double t0 = pace(c, &next);
        if (natsConnection_RequestString(&reply, nc, "ai.suggest.operator", c->body, 30000) !=
                NATS_OK ||
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

static void *run_client(void *p)
{
    struct client *c = p;
    return c->bare ? run_bare(c) : run_suggest(c);
}

/* Runs one phase and prints its RESULT line; returns its failed requests. */
static int phase(const char *name, struct client *proto, int clients, double rate)
{
    struct client *cs = calloc((size_t)clients, sizeof(*cs));
    pthread_t *ts = calloc((size_t)clients, sizeof(*ts));
    double *all = calloc((size_t)MAX_SAMPLES * (size_t)clients, sizeof(double));
    double t0, elapsed;
    int total = 0, errors = 0;
    char p50[32], p99[32];

    for (int i = 0; i < clients; i++) {
        cs[i] = *proto;
        cs[i].interval = rate > 0 ? clients / rate : 0;
        cs[i].lat = calloc(MAX_SAMPLES, sizeof(double));
    }
    t0 = bench_now();
    for (int i = 0; i < clients; i++)
        pthread_create(&ts[i], NULL, run_client, &cs[i]);
    for (int i = 0; i < clients; i++)
        pthread_join(ts[i], NULL);
    elapsed = bench_now() - t0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + total, cs[i].lat, (size_t)cs[i].n * sizeof(double));
        total += cs[i].n;
        errors += cs[i].errors;
        free(cs[i].lat);
    }
    bench_latency_sort(all, total);
    printf("RESULT phase=%s requests=%d seconds=%.3f rps=%.1f p50_us=%s p99_us=%s errors=%d\n",
           name, total, elapsed, total / elapsed, bench_latency_pct(all, total, 0.50, 1e6, 0, p50),
           bench_latency_pct(all, total, 0.99, 1e6, 0, p99), errors);
    fflush(stdout);
    free(all);
    free(cs);
    free(ts);
    return errors;
}

int main(int argc, char **argv)
{
    struct client proto = {0};
    char url[512], body[4096], suggest[256];
    int clients, errors = 0;
    double rate = 0;

    if (argc < 6) {
        fprintf(stderr, "usage: bench_suggest NATS_URL CONVERSATION_ID PROVIDER_URL CLIENTS "
                        "SECONDS [RATE]\n");
        return 2;
    }
    clients = atoi(argv[4]);
    if (argc > 6)
        rate = atof(argv[6]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    /* A body the size of ai-suggest's: the instructions and a short conversation. */
    snprintf(url, sizeof(url), "%s/v1/chat/completions", argv[3]);
    snprintf(body, sizeof(body),
             "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"%0*d\"},"
             "{\"role\":\"user\",\"content\":\"Conversation so far, oldest message first:\\n\\n"
             "Customer: Hi, is the blue jacket in stock in size M? Call me on [phone].\\n\\nWrite "
             "the business's next reply.\"}],\"n\":1}",
             1200, 0);
    snprintf(suggest, sizeof(suggest), "{\"actor\":\"operator\",\"conversation_id\":\"%s\"}",
             argv[2]);
    proto.nats_url = argv[1];
    proto.url = url;
    proto.seconds = atof(argv[5]);

    proto.bare = 1;
    proto.body = body;
    errors += phase("bare", &proto, clients, rate);
    proto.bare = 0;
    proto.body = suggest;
    errors += phase("suggest", &proto, clients, rate);
    curl_global_cleanup();
    return errors > 0;
}
