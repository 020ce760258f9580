/*
 * test_metrics - the Prometheus text format, concurrency-safe counters, histograms.
 */
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "common/metrics.h"

static void *bump(void *arg)
{
    for (int i = 0; i < 100000; i++)
        cm_metrics_inc(arg, 1);
    return NULL;
}

static void test_render(void)
{
    struct cm_metrics *m = cm_metrics_create();
    struct cm_metric *a = cm_metrics_counter(m, "req_total", "code=\"200\"", "Requests");
    struct cm_metric *b = cm_metrics_counter(m, "req_total", "code=\"503\"", "Requests");
    struct cm_metric *g = cm_metrics_gauge(m, "inflight", NULL, "In flight");
    struct cm_metric *h = cm_metrics_histogram(m, "lat_seconds", NULL, "Latency");
    struct cm_buf out;

    CHECK(cm_metrics_counter(m, "req_total", "code=\"200\"", "Requests") == a);
    cm_metrics_inc(a, 3);
    cm_metrics_inc(b, 1);
    cm_metrics_set(g, 5);
    cm_metrics_add(g, -2);
    cm_metrics_observe(h, 0.0004);
    cm_metrics_observe(h, 0.003);
    cm_metrics_observe(h, 30);
    cm_buf_init(&out);
    cm_metrics_render(m, &out);
    CHECK_CONTAINS(out.data, "# HELP req_total Requests\n# TYPE req_total counter\n"
                             "req_total{code=\"200\"} 3\nreq_total{code=\"503\"} 1\n");
    CHECK_CONTAINS(out.data, "# TYPE inflight gauge\ninflight 3\n");
    CHECK_CONTAINS(out.data, "lat_seconds_bucket{le=\"0.0005\"} 1\n");
    CHECK_CONTAINS(out.data, "lat_seconds_bucket{le=\"0.005\"} 2\n");
    CHECK_CONTAINS(out.data, "lat_seconds_bucket{le=\"10\"} 2\n");
    CHECK_CONTAINS(out.data, "lat_seconds_bucket{le=\"+Inf\"} 3\n");
    CHECK_CONTAINS(out.data, "lat_seconds_count 3\n");
    CHECK_CONTAINS(out.data, "lat_seconds_sum 30.003400000\n");
    /* HELP/TYPE once per name. */
    CHECK(strstr(strstr(out.data, "# TYPE req_total") + 1, "# TYPE req_total") == NULL);
    cm_buf_cleanup(&out);
    cm_metrics_destroy(m);
}

static void test_threads(void)
{
    struct cm_metrics *m = cm_metrics_create();
    struct cm_metric *c = cm_metrics_counter(m, "n", NULL, "n");
    pthread_t t[4];

    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, bump, c);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(cm_metrics_value(c) == 400000);
    cm_metrics_destroy(m);
}

int main(void)
{
    RUN(test_render);
    RUN(test_threads);
    return check_summary();
}
