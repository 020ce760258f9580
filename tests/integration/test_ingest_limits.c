/*
 * test_ingest_limits - what webhook-ingest's public address does for itself under abuse,
 * with the real daemon, nats-server and PostgreSQL: a POST of more events than Meta ever
 * sends is refused whole (413, nothing stored); connections past INGEST_MAX_CONNECTIONS
 * are closed at once while the accepted ones are served; a client trickling its headers
 * or its body is cut at INGEST_READ_TIMEOUT, however regularly it sends; a flood of
 * deletion status requests meets 429s and leaves Meta's signed data-deletion callback
 * answered at once; and the status page escapes what the reaper says.
 *
 * The reaper is a stand-in on the test's NATS connection: it answers reaper.deletion.request
 * at once, and holds reaper.deletion.status requests unanswered until told, so that every
 * status request the daemon lets through keeps its worker busy while the callback is timed.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "common/crypto.h"
#include "common/mem.h"
#include "harness.h"

#define SECRET         "limits-app-secret"
#define VERIFY         "limits-verify"
#define WEBHOOK        "/api/v1/webhooks/meta"
#define DELETE_PATH    "/api/v1/integrations/instagram/data-delete"
#define STATUS_PATH    "/api/v1/integrations/instagram/data-delete/status"
#define MAX_EVENTS     5
#define MAX_CONNS      64
#define READ_TIMEOUT_S 2
/* A read deadline of READ_TIMEOUT_S is met by a close before this: the margin covers a
 * loaded machine, and is far below evhttp's idle timeout of 30 s. */
#define CLOSED_BEFORE_MS 6000

static struct th_nats nats;
static struct th_db db;
static struct th_proc ingest;
static char base[64];
static char internal[64];
static int port;
static natsConnection *nc;
static jsCtx *js;

/* --- the reaper's stand-in ------------------------------------------------------------ */

static struct {
    pthread_mutex_t lock;
    bool release;   /* answer status requests (held until then) */
    char *held[64]; /* reply subjects of the held status requests */
    int nheld;
    int status_seen;
} fake = {PTHREAD_MUTEX_INITIALIZER, false, {NULL}, 0, 0};

/* A status whose every value is hostile: the page must show them as text. */
#define HOSTILE_STATUS                                                                             \
    "{\"result\":{\"confirmation_code\":\"<script>alert('code')</script>\",\"status\":"            \
    "\"refused\",\"received_at\":\"2026-12-04T10:00:00Z\",\"completed_at\":null,\"deleted\":{},"   \
    "\"reason\":\"<script>alert(\\\"reason\\\")</script> 'quoted'\"}}"

static void on_fake(natsConnection *c, natsSubscription *sub, natsMsg *msg, void *arg)
{
    const char *subject = natsMsg_GetSubject(msg);
    const char *reply = natsMsg_GetReply(msg);

    (void)sub;
    (void)arg;
    if (strncmp(subject, "reaper.deletion.request.", 24) == 0) {
        natsConnection_PublishString(c, reply, "{\"result\":{\"confirmation_code\":\"limits-1\"}}");
    } else {
        pthread_mutex_lock(&fake.lock);
        fake.status_seen++;
        if (fake.release)
            natsConnection_PublishString(c, reply, HOSTILE_STATUS);
        else if (fake.nheld < 64)
            fake.held[fake.nheld++] = cm_xstrdup(reply);
        pthread_mutex_unlock(&fake.lock);
    }
    natsMsg_Destroy(msg);
}

/* Answers the held status requests and every later one. */
static void fake_release(void)
{
    pthread_mutex_lock(&fake.lock);
    fake.release = true;
    for (int i = 0; i < fake.nheld; i++) {
        natsConnection_PublishString(nc, fake.held[i], HOSTILE_STATUS);
        free(fake.held[i]);
    }
    fake.nheld = 0;
    pthread_mutex_unlock(&fake.lock);
    natsConnection_Flush(nc);
}

static int fake_seen(void)
{
    int n;

    pthread_mutex_lock(&fake.lock);
    n = fake.status_seen;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

/* --- the daemon ----------------------------------------------------------------------- */

static void start_ingest(void)
{
    char *dburl = th_db_url(&db, "doms_ingest");
    char *env[16], ready[128];
    int n = 0;

    env[n++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[n++] = cm_xasprintf("NATS_URL=%s", nats.url);
    env[n++] = cm_xasprintf("INGEST_LISTEN=127.0.0.1:%d", port);
    env[n++] = cm_xasprintf("WEBHOOK_INGEST_HTTP_LISTEN=%s", internal + strlen("http://"));
    env[n++] = cm_xstrdup("META_APP_SECRET=" SECRET);
    env[n++] = cm_xstrdup("META_VERIFY_TOKEN=" VERIFY);
    env[n++] = cm_xasprintf("INGEST_MAX_EVENTS=%d", MAX_EVENTS);
    env[n++] = cm_xasprintf("INGEST_MAX_CONNECTIONS=%d", MAX_CONNS);
    env[n++] = cm_xasprintf("INGEST_READ_TIMEOUT=%ds", READ_TIMEOUT_S);
    env[n] = NULL;
    th_proc_start(&ingest, "webhook-ingest", NULL, (const char *const *)env);
    snprintf(ready, sizeof(ready), "%s/readyz", base);
    CHECK_MSG(th_wait_http(ready, 200, 20000), "ingest never ready");
    for (int i = 0; i < n; i++)
        free(env[i]);
    free(dburl);
}

static uint64_t stream_msgs(void)
{
    return th_stream_msgs(js, "META_EVENTS");
}

/* One series of ingest's /metrics ("name " or "name{labels} "), or -1. */
static double ingest_metric(const char *series)
{
    struct th_resp r;
    char url[128], line[160];
    const char *p;
    double v = -1;

    snprintf(line, sizeof(line), "\n%s", series);
    snprintf(url, sizeof(url), "%s/metrics", internal);
    if (th_http(&r, "GET", url, NULL, NULL, 0) == 200 && (p = strstr(r.body.data, line)) != NULL)
        v = strtod(p + strlen(line), NULL);
    th_resp_cleanup(&r);
    return v;
}

/* A Messenger POST of n message events, each its own mid (tag-i). */
static char *events_body(int n, const char *tag)
{
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_puts(&b, "{\"object\":\"page\",\"entry\":[{\"id\":\"4242\",\"time\":1,\"messaging\":[");
    for (int i = 0; i < n; i++)
        cm_buf_printf(&b,
                      "%s{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"4242\"},\"timestamp\":"
                      "1,\"message\":{\"mid\":\"%s-%d\",\"text\":\"hi\"}}",
                      i ? "," : "", tag, i);
    cm_buf_puts(&b, "]}]}");
    return cm_buf_steal(&b);
}

/* GET url: its status code (0 for no answer); *body (free it) gets the body when wanted. */
static long get(const char *url, char **body)
{
    struct th_resp r;
    long code = th_http(&r, "GET", url, NULL, NULL, 0);

    if (body != NULL)
        *body = cm_xstrdup(r.body.data ? r.body.data : "");
    th_resp_cleanup(&r);
    return code;
}

static long post_signed(const char *body, struct th_resp *r)
{
    char sig[80], header[120], url[128];
    const char *headers[] = {"Content-Type: application/json", header, NULL};

    th_sign(SECRET, body, strlen(body), sig);
    snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
    snprintf(url, sizeof(url), "%s%s", base, WEBHOOK);
    return th_http(r, "POST", url, headers, body, strlen(body));
}

/* --- raw sockets ------------------------------------------------------------------------ */

static int dial(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

/* True once the server has closed fd (end of stream or reset), within timeout_ms. Any bytes
 * it sends first are read and dropped. */
static bool closed_within(int fd, int timeout_ms)
{
    long long end = check_now_ms() + timeout_ms;
    char buf[512];

    for (;;) {
        long long left = end - check_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
}

/*
 * Sends text one byte every pace_ms (poll() on the socket is the pacing, and notices the close
 * at once) until the server closes the connection or text runs out. Returns the milliseconds
 * from the first byte to the close, or -1 when the server never closed it.
 */
static long long trickle(int fd, const char *text, int pace_ms)
{
    long long t0 = check_now_ms();

    for (size_t i = 0; text[i] != '\0'; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (send(fd, &text[i], 1, MSG_NOSIGNAL) != 1)
            return check_now_ms() - t0; /* reset by the server */
        if (poll(&p, 1, pace_ms) > 0) {
            char c;
            ssize_t n = recv(fd, &c, 1, 0);
            if (n <= 0)
                return check_now_ms() - t0;
        }
    }
    return -1;
}

/* Reads one HTTP answer's status line from fd; returns its code or 0. */
static int read_status(int fd, int timeout_ms)
{
    char buf[256];
    size_t len = 0;
    long long end = check_now_ms() + timeout_ms;

    while (len < sizeof(buf) - 1 && memchr(buf, '\n', len) == NULL) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long long left = end - check_now_ms();
        ssize_t n;
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return 0;
        n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : 0;
}

/* --- the tests -------------------------------------------------------------------------- */

/* Meta sends at most 1000 events a POST (INGEST_MAX_EVENTS, MAX_EVENTS here): one more and
 * the whole POST is refused with a JSON error, none of its events stored. */
static void test_events_cap(void)
{
    uint64_t before = stream_msgs();
    char *over = events_body(MAX_EVENTS + 1, "over"), *at = events_body(MAX_EVENTS, "at");
    struct th_resp r;

    CHECK_INT(post_signed(over, &r), 413);
    CHECK_CONTAINS(r.body.data, "\"error\":\"6 events in one POST; at most 5 accepted\"");
    CHECK_CONTAINS(r.headers.data, "application/json");
    th_resp_cleanup(&r);
    CHECK_INT(stream_msgs(), before);
    CHECK(ingest_metric("ingest_not_stored_total{reason=\"too_many_events\"} ") == 1);

    CHECK_INT(post_signed(at, &r), 200);
    th_resp_cleanup(&r);
    CHECK_INT(stream_msgs(), before + MAX_EVENTS);
    free(over);
    free(at);
}

/* The X-Request-Id of an answer: 16 lowercase hex digits into out, or false. */
static bool request_id(const struct th_resp *r, char out[17])
{
    const char *h =
        r->headers.data != NULL ? strcasestr(r->headers.data, "\nX-Request-Id: ") : NULL;

    if (h == NULL || strspn(h + 15, "0123456789abcdef") != 16)
        return false;
    memcpy(out, h + 15, 16);
    out[16] = '\0';
    return true;
}

/* Every answer carries its own request id: 200 sixty-four times, and refusals too. */
static void test_request_ids(void)
{
    char *body = events_body(1, "rid");
    char ids[65][17];
    struct th_resp r;
    int distinct = 0;

    for (int i = 0; i < 64; i++) {
        CHECK_INT(post_signed(body, &r), 200);
        CHECK(request_id(&r, ids[i]));
        th_resp_cleanup(&r);
    }
    CHECK_INT(post_signed("{\"object\":", &r), 400);
    CHECK(request_id(&r, ids[64]));
    th_resp_cleanup(&r);
    for (int i = 0; i < 65; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen = seen || strcmp(ids[i], ids[j]) == 0;
        distinct += !seen;
    }
    CHECK_INT(distinct, 65);
    free(body);
}

/* MAX_CONNS connections held open: one more is closed at once, unanswered, and the held
 * ones are still served. Once they go, new connections are accepted again. */
static void test_connection_cap(void)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    int held[MAX_CONNS], extra;
    double refused0 = ingest_metric("http_connections_refused_total ");
    char url[128];

    for (int i = 0; i < MAX_CONNS; i++)
        held[i] = dial();
    /* evhttp counts a connection when it accepts it: ask on the last one to be sure all
     * MAX_CONNS are accepted before the one too many. */
    CHECK_INT(send(held[MAX_CONNS - 1], req, strlen(req), MSG_NOSIGNAL), (long)strlen(req));
    CHECK_INT(read_status(held[MAX_CONNS - 1], 2000), 200);
    extra = dial();
    /* Closed at once: well before the read deadline, which would close it too. */
    CHECK_MSG(closed_within(extra, READ_TIMEOUT_S * 1000 / 2), "the connection over the cap "
                                                               "was not closed at once");
    close(extra);
    CHECK(ingest_metric("http_connections_refused_total ") >= refused0 + 1);
    /* The accepted ones are unharmed. */
    CHECK_INT(send(held[0], req, strlen(req), MSG_NOSIGNAL), (long)strlen(req));
    CHECK_INT(read_status(held[0], 2000), 200);
    for (int i = 0; i < MAX_CONNS; i++)
        close(held[i]);
    /* Their slots come back as the daemon sees them close. */
    snprintf(url, sizeof(url), "%s/healthz", base);
    CHECK_WAIT(get(url, NULL) == 200, 5000);
}

/*
 * A slow sender cannot stretch the read deadline: headers one byte every 300 ms (far more
 * often than any idle timeout) are cut at INGEST_READ_TIMEOUT; so is a body trickled after
 * headers sent at once.
 */
static void test_read_deadline(void)
{
    static const char headers[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad-1: "
                                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                                  "X-Pad-2: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n";
    char post_head[256];
    long long took;
    int fd;

    fd = dial();
    took = trickle(fd, headers, 300);
    close(fd);
    CHECK_MSG(took >= 0, "a trickled request was never cut");
    CHECK_MSG(took < CLOSED_BEFORE_MS, "headers trickled for %lld ms; deadline %d s", took,
              READ_TIMEOUT_S);
    /* Cut by the deadline, not by something earlier. */
    CHECK_MSG(took >= READ_TIMEOUT_S * 1000 - 500, "cut after %lld ms, before the deadline", took);

    fd = dial();
    snprintf(post_head, sizeof(post_head),
             "POST " WEBHOOK " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: 400\r\n\r\n");
    CHECK_INT(send(fd, post_head, strlen(post_head), MSG_NOSIGNAL), (long)strlen(post_head));
    took = trickle(fd,
                   "{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"pad\":\"aaaaaaaaaaaaaa"
                   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
                   300);
    close(fd);
    CHECK_MSG(took >= 0 && took < CLOSED_BEFORE_MS, "a body trickled for %lld ms; deadline %d s",
              took, READ_TIMEOUT_S);
    CHECK(ingest_metric("http_read_deadline_closed_total ") >= 2);

    /* A kept-alive connection gets a fresh deadline after each answer, and its next request
     * is served when it comes in time. */
    fd = dial();
    CHECK_INT(send(fd, headers, strlen(headers), MSG_NOSIGNAL), (long)strlen(headers));
    CHECK_INT(read_status(fd, 2000), 200);
    CHECK_INT(send(fd, headers, strlen(headers), MSG_NOSIGNAL), (long)strlen(headers));
    CHECK_INT(read_status(fd, 2000), 200);
    /* ...and an idle one is closed at the deadline after its last answer. */
    CHECK(closed_within(fd, CLOSED_BEFORE_MS));
    close(fd);
}

/* --- the status page under a flood ---------------------------------------------------- */

#define FLOOD 120

struct flood {
    long code[FLOOD];
    bool retry_after[FLOOD];
};

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    bool *seen = arg;

    if (size * n >= 12 && strncasecmp(data, "Retry-After:", 12) == 0)
        *seen = true;
    return size * n;
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* Starts FLOOD status GETs at once on multi; they are driven by flood_run(). */
static void flood_start(CURLM *multi, struct flood *f)
{
    char url[160];

    /* A client of a few dozen connections (the daemon's cap is MAX_CONNS), each kept alive. */
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 32L);
    snprintf(url, sizeof(url), "%s" STATUS_PATH "?code=flood", base);
    for (int i = 0; i < FLOOD; i++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, &f->retry_after[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&f->code[i]);
        curl_multi_add_handle(multi, e);
    }
}

/* Drives multi for up to ms, collecting answers; returns how many are still running. */
static int flood_run(CURLM *multi, int ms)
{
    long long end = check_now_ms() + ms;
    int running = 0, left;
    CURLMsg *m;

    do {
        curl_multi_perform(multi, &running);
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            long *code;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&code);
            *code = 0;
            if (m->data.result == CURLE_OK)
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, code);
            curl_multi_remove_handle(multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 50, NULL);
    } while (running > 0 && check_now_ms() < end);
    return running;
}

static char *signed_request(const char *payload_json)
{
    size_t len = strlen(payload_json);
    char *payload = cm_xmalloc(len * 4 / 3 + 8), *out;
    unsigned char mac[CM_SHA256_LEN];
    char sig[64];

    cm_base64url_encode(payload_json, len, payload);
    cm_crypto_hmac_sha256(SECRET, strlen(SECRET), payload, strlen(payload), mac);
    cm_base64url_encode(mac, sizeof(mac), sig);
    out = cm_xasprintf("%s.%s", sig, payload);
    free(payload);
    return out;
}

/*
 * FLOOD status GETs at once, every one the daemon lets through held by the reaper's stand-in:
 * the flood gets 429s with Retry-After, and Meta's signed data-deletion callback sent in the
 * middle of it is answered 200 with its code at once. Then the stand-in answers, and the page
 * shows its hostile values as text.
 */
static void test_status_flood(void)
{
    static struct flood f;
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    char payload[128];
    char *sr;
    char *form;
    CURLM *multi = curl_multi_init();
    char *page = NULL;
    int n429 = 0, n429_retry = 0, answered = 0;
    struct th_resp r;
    char url[160];
    long long t0, took;

    /* Meta's payload is dated: ingest refuses one issued over 5 minutes ago. */
    snprintf(payload, sizeof(payload),
             "{\"algorithm\":\"HMAC-SHA256\",\"issued_at\":%lld,\"user_id\":\"7001\"}",
             (long long)time(NULL));
    sr = signed_request(payload);
    form = cm_xasprintf("signed_request=%s", sr);
    flood_start(multi, &f);
    /* The flood is in: every one of its requests answered or waiting in the daemon. */
    flood_run(multi, 3000);
    CHECK_MSG(fake_seen() >= 1, "no status request reached the reaper's stand-in");

    snprintf(url, sizeof(url), "%s" DELETE_PATH, base);
    t0 = check_now_ms();
    CHECK_INT(th_http(&r, "POST", url, headers, form, strlen(form)), 200);
    took = check_now_ms() - t0;
    CHECK_CONTAINS(r.body.data, "\"confirmation_code\":\"limits-1\"");
    th_resp_cleanup(&r);
    /* Within its deadline: the stand-in answers at once, so anything near the daemon's 5 s
     * wait for a busy worker is a callback stuck behind the flood. */
    CHECK_MSG(took < 2000, "the signed callback took %lld ms under the flood", took);

    fake_release();
    CHECK_MSG(flood_run(multi, 30000) == 0, "the flood's requests were not all answered");
    curl_multi_cleanup(multi);
    for (int i = 0; i < FLOOD; i++) {
        n429 += f.code[i] == 429;
        n429_retry += f.code[i] == 429 && f.retry_after[i];
        answered += f.code[i] == 200;
    }
    printf("flood: %d answered 200, %d answered 429\n", answered, n429);
    CHECK_MSG(n429 > 0, "no 429 in a flood of %d", FLOOD);
    CHECK_INT(n429_retry, n429);
    CHECK(answered > 0);
    CHECK(ingest_metric("ingest_status_page_limited_total{reason=\"rate\"} ") > 0 ||
          ingest_metric("ingest_status_page_limited_total{reason=\"queue\"} ") > 0);

    /* The page itself, once the bucket has a token again: every value escaped. */
    snprintf(url, sizeof(url), "%s" STATUS_PATH "?code=limits-1", base);
    CHECK_WAIT((free(page), get(url, &page)) == 200, 5000);
    CHECK(strstr(page, "<script") == NULL);
    CHECK(strstr(page, "'code'") == NULL && strstr(page, "'quoted'") == NULL);
    CHECK_CONTAINS(page, "&lt;script&gt;alert(&#39;code&#39;)&lt;/script&gt;");
    CHECK_CONTAINS(page, "&lt;script&gt;alert(&quot;reason&quot;)&lt;/script&gt; &#39;quoted&#39;");
    free(page);
    free(sr);
    free(form);
}

int main(void)
{
    natsSubscription *sub_req = NULL, *sub_status = NULL;

    th_init("ingest_limits");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    th_db_create(&db);
    th_nats_start(&nats);
    port = th_free_port();
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    snprintf(internal, sizeof(internal), "http://127.0.0.1:%d", th_free_port());
    if (th_nats_connect(&nc, nats.url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK ||
        natsConnection_Subscribe(&sub_req, nc, "reaper.deletion.request.*", on_fake, NULL) !=
            NATS_OK ||
        natsConnection_Subscribe(&sub_status, nc, "reaper.deletion.status.*", on_fake, NULL) !=
            NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK) {
        fprintf(stderr, "cannot connect to the test nats-server\n");
        return 1;
    }
    start_ingest();

    RUN(test_events_cap);
    RUN(test_request_ids);
    RUN(test_connection_cap);
    RUN(test_read_deadline);
    RUN(test_status_flood);

    th_proc_stop_clean(&ingest);
    natsSubscription_Destroy(sub_req);
    natsSubscription_Destroy(sub_status);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    th_nats_stop(&nats);
    return check_summary();
}
