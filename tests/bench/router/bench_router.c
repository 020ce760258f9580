/*
 * bench_router - the router's benchmark programs:
 *   preload NATS_URL N RUN_ID CONTACTS
 *                               publish N distinct message events into META_EVENTS, as ingest
 *                               would, for the router to drain: mids m_<RUN_ID>_<i>; event i
 *                               comes from contact c_<CONTACTS_ID>_<i % CONTACTS>, or from a new
 *                               contact c_<RUN_ID>_<i> each when CONTACTS is 0 (CONTACTS_ID is
 *                               BENCH_CONTACTS_ID, else RUN_ID: another preload's contacts)
 *   baseline PG_URL N           insert the same N rows unencrypted with plain libpq, 64 to a
 *                               transaction, into a scratch table: the baseline
 *   latency INGEST_URL SECRET PG_URL RATE SECONDS RUN_ID CONTACTS
 *                               POST signed webhooks (contacts as for preload) on a schedule
 *                               of RATE events/s and time each event from when its POST was
 *                               due to its row being visible in router.messages; an event
 *                               whose POST failed or whose row never appeared (30 s after the
 *                               schedule) counts as +infinity, and the exit status is 1.
 * Each prints one RESULT line. RUN_ID keeps a run's mids and contacts its own.
 */
#include <curl/curl.h>
#include <libpq-fe.h>
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

/*
 * Event i: mid <prefix><i>, from contact c_<contact_id>_<i % contacts> (contacts 0: i). With
 * BENCH_IMAGE_URL set, it also carries one image, at that URL with i=<i> added to its query
 * (each event its own download).
 */
static int event_json(char *out, size_t cap, const char *prefix, int i, const char *contact_id,
                      int contacts, long long ts)
{
    const char *image = getenv("BENCH_IMAGE_URL");
    char attach[512] = "";

    if (image != NULL && *image != '\0')
        snprintf(attach, sizeof(attach),
                 ",\"attachments\":[{\"type\":\"image\",\"payload\":{\"url\":\"%s%ci=%d\"}}]",
                 image, strchr(image, '?') != NULL ? '&' : '?', i);
    return snprintf(out, cap,
                    "{\"sender\":{\"id\":\"c_%s_%d\"},\"recipient\":{\"id\":\"" PAGE "\"},"
                    "\"timestamp\":%lld,\"message\":{\"mid\":\"%s%d\",\"text\":\"" TEXT "\"%s}}",
                    contact_id, contacts > 0 ? i % contacts : i, ts, prefix, i, attach);
}

static int preload(const char *url, int n, const char *run_id, int contacts)
{
    const char *contact_id = getenv("BENCH_CONTACTS_ID");
    char prefix[96];
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    char ev[1024], wrap[1400], id[192];
    jsPubOptions po;
    long long ts = (long long)(now() * 1000);

    if (contact_id == NULL || *contact_id == '\0')
        contact_id = run_id;
    snprintf(prefix, sizeof(prefix), "m_%s_", run_id);
    if (bench_connect(&nc, url) != NATS_OK || natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        return 1;
    for (int i = 0; i < n; i++) {
        event_json(ev, sizeof(ev), prefix, i, contact_id, contacts, ts + i);
        int len = snprintf(wrap, sizeof(wrap),
                           "{\"platform\":\"messenger\",\"account_id\":\"" PAGE "\",\"source\":"
                           "\"messaging\",\"kind\":\"message\",\"entry_time\":%lld,\"event\":%s}",
                           ts, ev);
        snprintf(id, sizeof(id), "messenger:" PAGE ":message:%s%d", prefix, i);
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

#define POSTERS 16

static const char *ingest_url, *secret, *run_id, *contact_id;
static int contacts;
static char lat_prefix[96];
static _Atomic(double) *due_at; /* when each POST was due; 0 until it has been sent */
static _Atomic int *failed;     /* the POST failed: its row will not come */
static double *seen_at;
static int total;
static double rate, seconds;
static _Atomic int posted, post_errors;

static size_t sink(char *p, size_t s, size_t n, void *a)
{
    (void)p;
    (void)a;
    return s * n;
}

static double start_at;

static void *poster(void *arg)
{
    int me = (int)(long)arg;
    CURL *c = curl_easy_init();
    char url[256], body[1500], ev[1024], sig[80], header[128];
    unsigned char mac[32];

    snprintf(url, sizeof(url), "%s/api/v1/webhooks/meta", ingest_url);
    /* Event i is due at start + i / rate, whichever poster sends it: each takes every
     * POSTERS-th event, and a late one is timed from its due time all the same. */
    for (int i = me; i < total; i += POSTERS) {
        struct curl_slist *h = NULL;
        double due = start_at + (double)i / rate, wait = due - now();
        long status = 0;
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        event_json(ev, sizeof(ev), lat_prefix, i, contact_id, contacts, (long long)(now() * 1000));
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
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        due_at[i] = due;
        if (curl_easy_perform(c) != CURLE_OK ||
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
            failed[i] = 1;
            atomic_fetch_add(&post_errors, 1);
        }
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
    char arr[500 * 112 + 4];
    size_t len = 0;
    int asked = 0, found = 0;

    while (*lo < total && seen_at[*lo] > 0)
        (*lo)++;
    arr[len++] = '{';
    for (int i = *lo; i < total && asked < 500; i++) {
        if (seen_at[i] > 0 || atomic_load(&due_at[i]) == 0 || failed[i])
            continue;
        len += (size_t)snprintf(arr + len, sizeof(arr) - len, "%s%s%d", asked ? "," : "",
                                lat_prefix, i);
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
            int k = atoi(PQgetvalue(r, i, 0) + strlen(lat_prefix));
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
    pthread_t t[POSTERS];
    int seen = 0, lo = 0, n = 0;
    double deadline;
    double *lat;
    char p50[32], p99[32], p999[32];

    if (PQstatus(c) != CONNECTION_OK)
        return 1;
    snprintf(lat_prefix, sizeof(lat_prefix), "m_%s_lat_", run_id);
    total = (int)(rate * seconds);
    due_at = calloc((size_t)total, sizeof(*due_at));
    failed = calloc((size_t)total, sizeof(*failed));
    seen_at = calloc((size_t)total, sizeof(double));
    start_at = now() + 0.05;
    for (long i = 0; i < POSTERS; i++)
        pthread_create(&t[i], NULL, poster, (void *)i);
    deadline = start_at + seconds + 30;
    /* Every 2 ms: which of our rows became visible since the last look. */
    while (seen + atomic_load(&post_errors) < total && now() < deadline) {
        struct timespec ts = {0, 2000000};
        seen += look(c, &lo);
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < POSTERS; i++)
        pthread_join(t[i], NULL);
    lat = calloc((size_t)total, sizeof(double));
    for (int i = 0; i < total; i++) {
        if (seen_at[i] > 0)
            n++;
        lat[i] = seen_at[i] > 0 ? seen_at[i] - due_at[i] : INFINITY;
    }
    bench_latency_sort(lat, total);
    printf("RESULT events=%d visible=%d post_errors=%d rate=%.0f p50_ms=%s p99_ms=%s "
           "p999_ms=%s\n",
           total, n, atomic_load(&post_errors), rate,
           bench_latency_pct(lat, total, 0.50, 1e3, 1, p50),
           bench_latency_pct(lat, total, 0.99, 1e3, 1, p99),
           bench_latency_pct(lat, total, 0.999, 1e3, 1, p999));
    free(lat);
    free((void *)due_at);
    free((void *)failed);
    free(seen_at);
    PQfinish(c);
    return n == total ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "preload") == 0)
        return preload(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
    if (argc >= 4 && strcmp(argv[1], "baseline") == 0)
        return baseline(argv[2], atoi(argv[3]));
    if (argc >= 9 && strcmp(argv[1], "latency") == 0) {
        ingest_url = argv[2];
        secret = argv[3];
        rate = atof(argv[5]);
        seconds = atof(argv[6]);
        run_id = argv[7];
        contacts = atoi(argv[8]);
        contact_id = getenv("BENCH_CONTACTS_ID");
        if (contact_id == NULL || *contact_id == '\0')
            contact_id = run_id;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        return latency(argv[4]);
    }
    fprintf(stderr, "usage: see the comment at the top of bench_router.c\n");
    return 2;
}
