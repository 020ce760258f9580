/*
 * test_nats - libcommon's NATS layer against a real nats-server: start before the server,
 * stream set-up on connect, async publish completions and de-duplication, pull consumers'
 * ack / retry / term, hand-off to the event loop, and recovery after a server restart.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/loopq.h"
#include "common/nats.h"
#include "harness.h"

static struct th_nats server;

static int ensure(struct cm_nats *n, void *arg)
{
    static const char *subjects[] = {"t.>"};
    jsStreamConfig cfg;

    (void)arg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = "T";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = 120LL * 1000000000LL;
    return cm_nats_stream_ensure(n, &cfg);
}

static bool wait_ready(struct cm_nats *n, bool want)
{
    for (int i = 0; i < 300; i++) {
        if (cm_nats_ready(n) == want)
            return true;
        th_sleep_ms(50);
    }
    return false;
}

struct acks {
    _Atomic int ok;
    _Atomic int dup;
    _Atomic int failed;
    _Atomic int timeouts; /* of failed, those with CM_TIMEOUT */
};

static void on_ack(void *arg, int status, uint64_t seq, bool duplicate)
{
    struct acks *a = arg;

    (void)seq;
    if (status == CM_TIMEOUT)
        atomic_fetch_add(&a->timeouts, 1);
    if (status != CM_OK)
        atomic_fetch_add(&a->failed, 1);
    else if (duplicate)
        atomic_fetch_add(&a->dup, 1);
    else
        atomic_fetch_add(&a->ok, 1);
}

static void wait_acks(struct acks *a, int n)
{
    for (int i = 0; i < 400 && a->ok + a->dup + a->failed < n; i++)
        th_sleep_ms(25);
}

struct seen {
    pthread_mutex_t lock;
    int count;
    int retried; /* times "t.retry" was asked to be redelivered */
    int retry_seen;
    int poison;
    struct cm_loopq *q;
};

static enum cm_consume_result handle(void *arg, natsMsg *msg)
{
    struct seen *s = arg;
    const char *subj = natsMsg_GetSubject(msg);
    enum cm_consume_result r = CM_CONSUME_ACK;

    pthread_mutex_lock(&s->lock);
    if (strcmp(subj, "t.retry") == 0) {
        s->retry_seen++;
        if (s->retried++ == 0)
            r = CM_CONSUME_RETRY;
    } else if (strcmp(subj, "t.poison") == 0) {
        s->poison++;
        r = CM_CONSUME_TERM;
    }
    if (r == CM_CONSUME_ACK)
        s->count++;
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void test_publish_and_consume(struct cm_nats *n)
{
    struct acks a = {0};
    struct seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct cm_consumer *c = NULL;
    struct cm_consumer_cfg cc = {
        .stream = "T", .durable = "t-worker", .filter = "t.>", .batch = 16, .retry_delay_ms = 200};
    char id[32];

    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        CHECK_INT(cm_nats_publish_async(n, "t.plain", id, "x", 1, 5000, on_ack, &a), CM_OK);
    }
    /* The same ids again: JetStream reports them as duplicates, stores nothing new. */
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        CHECK_INT(cm_nats_publish_async(n, "t.plain", id, "x", 1, 5000, on_ack, &a), CM_OK);
    }
    CHECK_INT(cm_nats_publish_async(n, "t.retry", "r", "r", 1, 5000, on_ack, &a), CM_OK);
    CHECK_INT(cm_nats_publish_async(n, "t.poison", "p", "p", 1, 5000, on_ack, &a), CM_OK);
    wait_acks(&a, 112);
    CHECK_INT(a.ok, 102);
    CHECK_INT(a.dup, 10);
    CHECK_INT(a.failed, 0);

    /* No stream for this subject: the completion reports the failure. */
    memset(&a, 0, sizeof(a));
    CHECK_INT(cm_nats_publish_async(n, "nostream.x", NULL, "x", 1, 2000, on_ack, &a), CM_OK);
    wait_acks(&a, 1);
    CHECK_INT(a.failed, 1);

    /* Someone receives it but nothing acknowledges it: completed at its deadline, once. */
    {
        natsSubscription *silent = NULL;
        struct timespec t0, t1;
        CHECK(natsConnection_SubscribeSync(&silent, cm_nats_conn(n), "quiet.silent") == NATS_OK);
        natsConnection_Flush(cm_nats_conn(n));
        memset(&a, 0, sizeof(a));
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_INT(cm_nats_publish_async(n, "quiet.silent", NULL, "x", 1, 300, on_ack, &a), CM_OK);
        wait_acks(&a, 1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CHECK_INT(a.timeouts, 1);
        CHECK((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 300);
        th_sleep_ms(250);
        CHECK_INT(a.failed, 1);
        natsSubscription_Destroy(silent);
    }

    CHECK_INT(cm_consumer_start(&c, n, &cc, handle, &s), CM_OK);
    for (int i = 0; i < 400; i++) {
        pthread_mutex_lock(&s.lock);
        bool done = s.count == 101 && s.poison == 1;
        pthread_mutex_unlock(&s.lock);
        if (done)
            break;
        th_sleep_ms(25);
    }
    cm_consumer_destroy(c);
    CHECK_INT(s.count, 101);
    CHECK_INT(s.retry_seen, 2); /* asked to retry once, then acknowledged */
    CHECK_INT(s.poison, 1);     /* terminated: never redelivered */
}

/* The loop queue: work posted from other threads runs on the loop, in order. */
struct order {
    int next;
    int bad;
    struct event_base *base;
};

static void step(void *arg)
{
    struct order *o = arg;

    o->next++;
    if (o->next == 1000)
        event_base_loopexit(o->base, NULL);
}

static void *poster(void *arg)
{
    struct cm_loopq *q = ((void **)arg)[0];
    struct order *o = ((void **)arg)[1];

    for (int i = 0; i < 500; i++)
        cm_loopq_post(q, step, o);
    return NULL;
}

static void test_loopq(void)
{
    struct order o = {0};
    struct cm_loopq *q;
    pthread_t t[2];
    void *args[2];

    evthread_use_pthreads();
    o.base = event_base_new();
    q = cm_loopq_create(o.base);
    args[0] = q;
    args[1] = &o;
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, poster, args);
    event_base_loop(o.base, EVLOOP_NO_EXIT_ON_EMPTY);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(o.next, 1000);
    cm_loopq_destroy(q);
    event_base_free(o.base);
}

static void test_restart(struct cm_nats *n)
{
    struct acks a = {0};

    th_nats_stop(&server);
    CHECK(wait_ready(n, false));
    CHECK_INT(cm_nats_publish_async(n, "t.plain", "while-down", "x", 1, 1000, on_ack, &a),
              CM_UNAVAIL);
    th_nats_restart(&server);
    CHECK(wait_ready(n, true));
    CHECK_INT(cm_nats_publish_async(n, "t.plain", "after", "x", 1, 5000, on_ack, &a), CM_OK);
    wait_acks(&a, 1);
    CHECK_INT(a.ok, 1);
}

int main(void)
{
    struct cm_nats *n = NULL;
    char url[64];

    th_init("nats");
    /* The client starts first, against a port where nothing listens yet. */
    server.port = 0;
    th_nats_start(&server);
    snprintf(url, sizeof(url), "%s", server.url);
    th_nats_stop(&server);

    CHECK_INT(cm_nats_create(&n, url, "test", NULL), CM_OK);
    th_nats_identity(n);
    cm_nats_on_connect(n, ensure, NULL);
    CHECK_INT(cm_nats_start(n), CM_OK);
    CHECK(!cm_nats_ready(n));
    th_nats_restart(&server);
    CHECK(wait_ready(n, true));

    RUN(test_loopq);
    printf("== test_publish_and_consume\n");
    test_publish_and_consume(n);
    printf("== test_restart\n");
    test_restart(n);
    cm_nats_destroy(n);
    th_nats_stop(&server);
    return check_summary();
}
