/*
 * bench_router - the router's benchmark programs:
 *   preload NATS_URL N          publish N distinct message events into META_EVENTS, as ingest
 *                               would, for the router to drain
 *   baseline PG_URL N           insert the same N rows unencrypted with plain libpq, 64 to a
 *                               transaction, into a scratch table: the baseline
 *   latency INGEST_URL SECRET PG_URL RATE SECONDS
 *                               POST signed webhooks at RATE events/s and time each event from
 *                               its POST to its row being visible in router.messages
 * Each prints one RESULT line.
 */
#include <curl/curl.h>
#include <libpq-fe.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"

#define PAGE "106000000000777"
#define TEXT                                                                                       \
    "Hi! Is the blue jacket from your summer collection still available in size M? I would "       \
    "like to pick it up this weekend if possible."

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int event_json(char *out, size_t cap, const char *prefix, int i, long long ts)
{
    return snprintf(out, cap,
                    "{\"sender\":{\"id\":\"contact-%d\"},\"recipient\":{\"id\":\"" PAGE "\"},"
                    "\"timestamp\":%lld,\"message\":{\"mid\":\"%s%d\",\"text\":\"" TEXT "\"}}",
                    i % 500, ts, prefix, i);
}

static int preload(const char *url, int n)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    char ev[1024], wrap[1400], id[128];
    jsPubOptions po;
    long long ts = (long long)(now() * 1000);

    if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        return 1;
    for (int i = 0; i < n; i++) {
        event_json(ev, sizeof(ev), "m_pre_", i, ts + i);
        int len = snprintf(wrap, sizeof(wrap),
                           "{\"platform\":\"messenger\",\"account_id\":\"" PAGE "\",\"source\":"
                           "\"messaging\",\"kind\":\"message\",\"entry_time\":%lld,\"event\":%s}",
                           ts, ev);
        snprintf(id, sizeof(id), "messenger:" PAGE ":message:m_pre_%d", i);
        jsPubOptions_Init(&po);
        po.MsgId = id;
        if (js_PublishAsync(js, "meta.events.messenger." PAGE ".message", wrap, len, &po) !=
            NATS_OK)
            return 1;
    }
    js_PublishAsyncComplete(js, NULL);
    printf("RESULT published=%d\n", n);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return 0;
}

static int baseline(const char *url, int n)
{
    PGconn *c = PQconnectdb(url);
    double t0, t1;
    char mid[32], sent[32];
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK)
        return 1;
    r = PQexec(c, "DROP TABLE IF EXISTS bench_plain; CREATE TABLE bench_plain (id text PRIMARY"
                  " KEY, seq bigserial, conversation_id text NOT NULL, workspace_id text NOT NULL,"
                  " platform text NOT NULL, mid text, direction text NOT NULL, kind text NOT NULL,"
                  " body text, sent_at timestamptz NOT NULL, status text NOT NULL, created_at"
                  " timestamptz NOT NULL DEFAULT now(), UNIQUE (platform, mid))");
    PQclear(r);
    t0 = now();
    for (int i = 0; i < n; i++) {
        char id[32], body[512];
        const char *values[6] = {id, "cv_bench", "ws_bench", mid, body, sent};
        if (i % 64 == 0)
            PQclear(PQexec(c, "BEGIN"));
        snprintf(id, sizeof(id), "msg_%d", i);
        snprintf(mid, sizeof(mid), "m_plain_%d", i);
        snprintf(sent, sizeof(sent), "%.3f", now());
        snprintf(body, sizeof(body), "{\"text\":\"" TEXT "\"}");
        r = PQexecParams(c,
                         "INSERT INTO bench_plain (id, conversation_id, workspace_id, platform,"
                         " mid, direction, kind, body, sent_at, status) VALUES ($1, $2, $3,"
                         " 'messenger', $4, 'in', 'message', $5, to_timestamp($6::float8),"
                         " 'received') ON CONFLICT (platform, mid) DO NOTHING",
                         6, NULL, values, NULL, NULL, 0);
        PQclear(r);
        if (i % 64 == 63 || i == n - 1)
            PQclear(PQexec(c, "COMMIT"));
    }
    t1 = now();
    printf("RESULT rows=%d seconds=%.3f rate=%.0f\n", n, t1 - t0, n / (t1 - t0));
    PQclear(PQexec(c, "DROP TABLE bench_plain"));
    PQfinish(c);
    return 0;
}

/* --- latency ------------------------------------------------------------------------- */

static const char *ingest_url, *secret;
static _Atomic(double) *sent_at;
static double *seen_at;
static int total;
static double rate, seconds;
static _Atomic int posted;

static size_t sink(char *p, size_t s, size_t n, void *a)
{
    (void)p;
    (void)a;
    return s * n;
}

static void *poster(void *arg)
{
    int me = (int)(long)arg, threads = 4;
    CURL *c = curl_easy_init();
    char url[256], body[1500], ev[1024], sig[80], header[128];
    unsigned char mac[32];
    double start = now(), interval = threads / rate;

    snprintf(url, sizeof(url), "%s/api/v1/webhooks/meta", ingest_url);
    for (int i = me; i < total; i += threads) {
        struct curl_slist *h = NULL;
        double due = start + (double)(i / threads) * interval, wait = due - now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        event_json(ev, sizeof(ev), "lat_", i, (long long)(now() * 1000));
        snprintf(body, sizeof(body),
                 "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\",\"time\":1,"
                 "\"messaging\":[%s]}]}",
                 ev);
        cm_crypto_hmac_sha256(secret, strlen(secret), body, strlen(body), mac);
        strcpy(sig, "sha256=");
        cm_hex_encode(mac, 32, sig + 7);
        snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
        h = curl_slist_append(h, header);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
        sent_at[i] = now();
        curl_easy_perform(c);
        curl_slist_free_all(h);
        atomic_fetch_add(&posted, 1);
    }
    curl_easy_cleanup(c);
    return NULL;
}

/*
 * Marks which of the posted, not yet seen events have become visible: one look through the
 * unique index on (platform, mid) for at most 500 of them. (Rows cannot be followed by their
 * seq: two transactions commit in either order, so a later seq may be visible first.)
 */
static int look(PGconn *c, int *lo)
{
    char arr[500 * 16 + 4];
    size_t len = 0;
    int asked = 0, found = 0;

    while (*lo < total && seen_at[*lo] > 0)
        (*lo)++;
    arr[len++] = '{';
    for (int i = *lo; i < total && asked < 500; i++) {
        if (seen_at[i] > 0 || atomic_load(&sent_at[i]) == 0)
            continue;
        len += (size_t)snprintf(arr + len, sizeof(arr) - len, "%slat_%d", asked ? "," : "", i);
        asked++;
    }
    arr[len++] = '}';
    arr[len] = '\0';
    if (asked > 0) {
        const char *params[1] = {arr};
        PGresult *r = PQexecParams(c,
                                   "SELECT mid FROM router.messages WHERE platform = 'messenger'"
                                   " AND mid = ANY($1::text[])",
                                   1, NULL, params, NULL, NULL, 0);
        double when = now();
        for (int i = 0; i < PQntuples(r); i++) {
            int k = atoi(PQgetvalue(r, i, 0) + 4);
            if (k >= 0 && k < total && seen_at[k] == 0) {
                seen_at[k] = when;
                found++;
            }
        }
        PQclear(r);
    }
    return found;
}

static int latency(const char *pg_url)
{
    PGconn *c = PQconnectdb(pg_url);
    pthread_t t[4];
    int seen = 0, lo = 0;
    double deadline;
    double *lat;

    if (PQstatus(c) != CONNECTION_OK)
        return 1;
    total = (int)(rate * seconds);
    sent_at = calloc((size_t)total, sizeof(*sent_at));
    seen_at = calloc((size_t)total, sizeof(double));
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, poster, (void *)i);
    deadline = now() + seconds + 30;
    /* Every 2 ms: which of our rows became visible since the last look. */
    while (seen < total && now() < deadline) {
        struct timespec ts = {0, 2000000};
        seen += look(c, &lo);
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    lat = calloc((size_t)total, sizeof(double));
    int n = 0;
    for (int i = 0; i < total; i++) {
        if (seen_at[i] > 0 && sent_at[i] > 0)
            lat[n++] = seen_at[i] - sent_at[i];
    }
    qsort(lat, (size_t)n, sizeof(double), cmp);
    printf("RESULT events=%d visible=%d rate=%.0f p50_ms=%.1f p99_ms=%.1f\n", total, n, rate,
           n ? lat[n / 2] * 1000 : 0, n ? lat[(size_t)n * 99 / 100] * 1000 : 0);
    free(lat);
    free((void *)sent_at);
    free(seen_at);
    PQfinish(c);
    return n == total ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "preload") == 0)
        return preload(argv[2], atoi(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "baseline") == 0)
        return baseline(argv[2], atoi(argv[3]));
    if (argc >= 7 && strcmp(argv[1], "latency") == 0) {
        ingest_url = argv[2];
        secret = argv[3];
        rate = atof(argv[5]);
        seconds = atof(argv[6]);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        return latency(argv[4]);
    }
    fprintf(stderr, "usage: see the comment at the top of bench_router.c\n");
    return 2;
}
