/*
 * bench_post - an open-loop load generator for webhook-ingest: signed Meta webhook POSTs, one
 * event each, sent on a fixed schedule, each timed from when it was due rather than from
 * when it left. wrk's paced mode (a pause before each request of a connection) waits for a
 * slow answer before it schedules the next request, so a stall delays the requests behind it
 * without their wait being measured (coordinated omission); here request k is due at
 * start + k / RATE whatever happened before it, and a request sent late carries its delay.
 *
 * usage: bench_post URL SECRET RUN_ID RATE SECONDS CONNECTIONS
 *   URL      http://127.0.0.1:PORT/api/v1/webhooks/meta (plain HTTP/1.1, kept alive)
 *   RUN_ID   makes every mid unique to this invocation (m_<RUN_ID>_<k>), so that JetStream's
 *            duplicate window never turns a request into the acknowledgement of a duplicate
 *   RATE     requests per second over all connections, SECONDS how long the schedule lasts
 *   CONNECTIONS  senders (threads with a blocking keep-alive connection each): enough that one
 *            slow answer does not hold back the schedule; when all are busy, the requests due
 *            wait, and that wait is in their latency.
 *
 * A request that fails (connection error, a status other than 200, no answer within 10 s)
 * counts in the percentiles as +infinity and in errors=. A schedule that is still not sent
 * 3 x SECONDS + 10 s after the start is abandoned; the requests left count as errors too.
 * Prints one line:
 *   RESULT requests=N sent=S seconds=T rps=R p50_us=U p99_us=U p999_us=U max_us=U errors=E
 *          late_ms_max=L
 * (a percentile that falls on a failed request prints as inf). Exit status 1 when errors > 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../lib/latency.h"
#include "common/crypto.h"

#define PAGE "106123456789012"
#define TEXT                                                                                       \
    "Hi! Is the blue jacket from your summer collection still available in size M? I would "       \
    "like to pick it up this weekend if possible."

struct plan {
    char host[256], port[16], path[256];
    const char *secret, *run_id;
    double rate, seconds, start, give_up;
    long total;           /* requests in the schedule */
    _Atomic long next;    /* the next request no sender has taken */
    _Atomic long sent;    /* requests that left */
    _Atomic long errors;  /* failed or abandoned */
    _Atomic long late_us; /* the largest delay of a send behind its due time */
    double *lat;          /* seconds from due to answer, per request; INFINITY: failed */
};

/* A connected, blocking socket with a 10 s receive and send timeout, or -1. */
static int dial(const struct plan *p)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    struct timeval tv = {10, 0};
    int fd = -1, one = 1;

    if (getaddrinfo(p->host, p->port, &hints, &ai) != 0)
        return -1;
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Reads one HTTP/1.1 response. Returns its status code, or -1 on a connection error, a
 * timeout or a response it cannot frame (then the connection must be closed). *keep is
 * cleared when the server says it closes the connection.
 */
static int read_response(int fd, char *buf, size_t cap, int *keep)
{
    size_t have = 0, need = 0;
    char *end = NULL;
    int status;

    *keep = 1;
    for (;;) {
        ssize_t n;
        if (end == NULL && have > 0) {
            buf[have] = '\0';
            end = strstr(buf, "\r\n\r\n");
            if (end != NULL) {
                const char *cl = strcasestr(buf, "\r\ncontent-length:");
                if (cl == NULL || cl > end)
                    return -1; /* chunked or unframed: not what ingest sends */
                need = (size_t)(end + 4 - buf) + strtoul(cl + 17, NULL, 10);
                if (need >= cap)
                    return -1;
                if (strcasestr(buf, "\r\nconnection: close") != NULL)
                    *keep = 0;
            }
        }
        if (end != NULL && have >= need)
            break;
        if (have + 1 >= cap)
            return -1;
        n = recv(fd, buf + have, cap - 1 - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

/* Builds request k (body signed with the app secret) into req; returns its length. */
static size_t build(const struct plan *p, long k, char *req, size_t cap)
{
    char body[1024], sig[65];
    unsigned char mac[32];
    int blen;

    blen = snprintf(body, sizeof(body),
                    "{\"object\":\"page\",\"entry\":[{\"id\":\"" PAGE "\",\"time\":1732870000123,"
                    "\"messaging\":[{\"sender\":{\"id\":\"7012345678901234\"},\"recipient\":"
                    "{\"id\":\"" PAGE "\"},\"timestamp\":1732870000000,\"message\":{\"mid\":"
                    "\"m_%s_%ld\",\"text\":\"" TEXT "\"}}]}]}",
                    p->run_id, k);
    cm_crypto_hmac_sha256(p->secret, strlen(p->secret), body, (size_t)blen, mac);
    cm_hex_encode(mac, sizeof(mac), sig);
    return (size_t)snprintf(req, cap,
                            "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json"
                            "\r\nX-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n%s",
                            p->path, p->host, p->port, sig, blen, body);
}

static void note_late(struct plan *p, double late)
{
    long us = (long)(late * 1e6), seen = atomic_load(&p->late_us);

    while (us > seen && !atomic_compare_exchange_weak(&p->late_us, &seen, us))
        ;
}

static void *sender(void *arg)
{
    struct plan *p = arg;
    char req[2048], resp[4096];
    int fd = -1;

    for (;;) {
        long k = atomic_fetch_add(&p->next, 1);
        double due, t;
        int status = -1, keep = 0;
        size_t len;

        if (k >= p->total)
            break;
        due = p->start + (double)k / p->rate;
        bench_sleep_until(due);
        t = bench_now();
        if (t > p->give_up) {
            /* Abandoned: this request and every one no sender has taken count as failed
             * (those taken meanwhile are their senders' to count). */
            long end = atomic_exchange(&p->next, p->total);
            p->lat[k] = INFINITY;
            for (long i = end; i < p->total; i++)
                p->lat[i] = INFINITY;
            atomic_fetch_add(&p->errors, 1 + (end < p->total ? p->total - end : 0));
            break;
        }
        note_late(p, t - due);
        len = build(p, k, req, sizeof(req));
        if (fd < 0)
            fd = dial(p);
        if (fd >= 0 && send_all(fd, req, len) == 0) {
            atomic_fetch_add(&p->sent, 1);
            status = read_response(fd, resp, sizeof(resp), &keep);
        }
        if (status == 200) {
            p->lat[k] = bench_now() - due;
        } else {
            p->lat[k] = INFINITY;
            atomic_fetch_add(&p->errors, 1);
        }
        if (status < 0 || !keep) {
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int parse_url(struct plan *p, const char *url)
{
    const char *h = url, *slash, *colon;

    if (strncmp(h, "http://", 7) != 0)
        return -1;
    h += 7;
    slash = strchr(h, '/');
    colon = strchr(h, ':');
    if (slash == NULL || colon == NULL || colon > slash)
        return -1;
    snprintf(p->host, sizeof(p->host), "%.*s", (int)(colon - h), h);
    snprintf(p->port, sizeof(p->port), "%.*s", (int)(slash - colon - 1), colon + 1);
    snprintf(p->path, sizeof(p->path), "%s", slash);
    return 0;
}

int main(int argc, char **argv)
{
    static struct plan p;
    pthread_t *ts;
    int conns;
    double elapsed;
    char p50[32], p99[32], p999[32], max[32];

    if (argc != 7 || parse_url(&p, argv[1]) != 0) {
        fprintf(stderr, "usage: bench_post http://HOST:PORT/PATH SECRET RUN_ID RATE SECONDS "
                        "CONNECTIONS\n");
        return 2;
    }
    p.secret = argv[2];
    p.run_id = argv[3];
    p.rate = atof(argv[4]);
    p.seconds = atof(argv[5]);
    conns = atoi(argv[6]);
    p.total = (long)(p.rate * p.seconds);
    if (p.rate <= 0 || p.total <= 0 || conns <= 0)
        return 2;
    p.lat = calloc((size_t)p.total, sizeof(double));
    ts = calloc((size_t)conns, sizeof(*ts));
    /* The first request is due once every sender is waiting for it. */
    p.start = bench_now() + 0.05;
    p.give_up = p.start + 3 * p.seconds + 10;
    for (int i = 0; i < conns; i++)
        pthread_create(&ts[i], NULL, sender, &p);
    for (int i = 0; i < conns; i++)
        pthread_join(ts[i], NULL);
    elapsed = bench_now() - p.start;
    bench_latency_sort(p.lat, p.total);
    printf("RESULT requests=%ld sent=%ld seconds=%.3f rps=%.0f p50_us=%s p99_us=%s p999_us=%s "
           "max_us=%s errors=%ld late_ms_max=%.1f\n",
           p.total, atomic_load(&p.sent), elapsed, (double)p.total / elapsed,
           bench_latency_pct(p.lat, p.total, 0.50, 1e6, 0, p50),
           bench_latency_pct(p.lat, p.total, 0.99, 1e6, 0, p99),
           bench_latency_pct(p.lat, p.total, 0.999, 1e6, 0, p999),
           bench_latency_pct(p.lat, p.total, 1.0, 1e6, 0, max), atomic_load(&p.errors),
           (double)atomic_load(&p.late_us) / 1000);
    free(p.lat);
    free(ts);
    return atomic_load(&p.errors) > 0;
}
