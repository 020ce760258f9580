/*
 * metrics.c - the metrics registry (see metrics.h).
 */
#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum kind { COUNTER, GAUGE, HISTOGRAM };

static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define NBUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

struct cm_metric {
    enum kind kind;
    char *name;
    char *labels; /* may be NULL */
    char *help;
    _Atomic uint64_t count;             /* counter value, or histogram observation count */
    _Atomic uint64_t bits;              /* gauge value as the bits of a double */
    _Atomic uint64_t sum_ns;            /* histogram sum in nanoseconds */
    _Atomic uint64_t buckets[NBUCKETS]; /* histogram, non-cumulative */
    struct cm_metric *next;
};

struct cm_metrics {
    pthread_mutex_t lock;
    struct cm_metric *head;
    struct cm_metric *tail;
};

struct cm_metrics *cm_metrics_create(void)
{
    struct cm_metrics *m = cm_xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void cm_metrics_destroy(struct cm_metrics *m)
{
    struct cm_metric *s, *next;

    if (m == NULL)
        return;
    for (s = m->head; s != NULL; s = next) {
        next = s->next;
        free(s->name);
        free(s->labels);
        free(s->help);
        free(s);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int same_labels(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static struct cm_metric *series(struct cm_metrics *m, enum kind kind, const char *name,
                                const char *labels, const char *help)
{
    struct cm_metric *s;

    if (labels != NULL && *labels == '\0')
        labels = NULL;
    pthread_mutex_lock(&m->lock);
    for (s = m->head; s != NULL; s = s->next) {
        if (s->kind == kind && strcmp(s->name, name) == 0 && same_labels(s->labels, labels))
            goto done;
    }
    s = cm_xcalloc(1, sizeof(*s));
    s->kind = kind;
    s->name = cm_xstrdup(name);
    s->labels = labels ? cm_xstrdup(labels) : NULL;
    s->help = cm_xstrdup(help ? help : "");
    if (m->tail != NULL)
        m->tail->next = s;
    else
        m->head = s;
    m->tail = s;
done:
    pthread_mutex_unlock(&m->lock);
    return s;
}

struct cm_metric *cm_metrics_counter(struct cm_metrics *m, const char *name, const char *labels,
                                     const char *help)
{
    return series(m, COUNTER, name, labels, help);
}

struct cm_metric *cm_metrics_gauge(struct cm_metrics *m, const char *name, const char *labels,
                                   const char *help)
{
    return series(m, GAUGE, name, labels, help);
}

struct cm_metric *cm_metrics_histogram(struct cm_metrics *m, const char *name, const char *labels,
                                       const char *help)
{
    return series(m, HISTOGRAM, name, labels, help);
}

void cm_metrics_inc(struct cm_metric *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->count, n, memory_order_relaxed);
}

static uint64_t dbits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b;
}

static double bitsd(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

void cm_metrics_set(struct cm_metric *g, double v)
{
    atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

void cm_metrics_add(struct cm_metric *g, double delta)
{
    uint64_t old = atomic_load_explicit(&g->bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(&g->bits, &old, dbits(bitsd(old) + delta))) {
        /* old was reloaded by the failed exchange */
    }
}

void cm_metrics_observe(struct cm_metric *h, double seconds)
{
    size_t i;

    if (!(seconds >= 0)) /* also rejects NaN */
        seconds = 0;
    for (i = 0; i < NBUCKETS; i++) {
        if (seconds <= bucket_bounds[i]) {
            atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)llround(seconds * 1e9), memory_order_relaxed);
}

double cm_metrics_value(const struct cm_metric *s)
{
    if (s->kind == GAUGE)
        return bitsd(atomic_load_explicit(&s->bits, memory_order_relaxed));
    return (double)atomic_load_explicit(&s->count, memory_order_relaxed);
}

/* Writes name{labels,extra} with the braces only when there is a label. */
static void series_name(struct cm_buf *out, const struct cm_metric *s, const char *suffix,
                        const char *extra)
{
    cm_buf_puts(out, s->name);
    cm_buf_puts(out, suffix);
    if (s->labels == NULL && extra == NULL)
        return;
    cm_buf_puts(out, "{");
    if (s->labels != NULL)
        cm_buf_puts(out, s->labels);
    if (s->labels != NULL && extra != NULL)
        cm_buf_puts(out, ",");
    if (extra != NULL)
        cm_buf_puts(out, extra);
    cm_buf_puts(out, "}");
}

static void render_series(struct cm_buf *out, const struct cm_metric *s)
{
    uint64_t cumulative = 0;
    char le[48];

    switch (s->kind) {
    case COUNTER:
        series_name(out, s, "", NULL);
        cm_buf_printf(out, " %llu\n", (unsigned long long)atomic_load(&s->count));
        break;
    case GAUGE:
        series_name(out, s, "", NULL);
        cm_buf_printf(out, " %.17g\n", bitsd(atomic_load(&s->bits)));
        break;
    case HISTOGRAM:
        for (size_t i = 0; i < NBUCKETS; i++) {
            cumulative += atomic_load(&s->buckets[i]);
            snprintf(le, sizeof(le), "le=\"%g\"", bucket_bounds[i]);
            series_name(out, s, "_bucket", le);
            cm_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
        }
        series_name(out, s, "_bucket", "le=\"+Inf\"");
        cm_buf_printf(out, " %llu\n", (unsigned long long)atomic_load(&s->count));
        series_name(out, s, "_sum", NULL);
        cm_buf_printf(out, " %.9f\n", (double)atomic_load(&s->sum_ns) / 1e9);
        series_name(out, s, "_count", NULL);
        cm_buf_printf(out, " %llu\n", (unsigned long long)atomic_load(&s->count));
        break;
    }
}

void cm_metrics_render(struct cm_metrics *m, struct cm_buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};

    pthread_mutex_lock(&m->lock);
    for (struct cm_metric *s = m->head; s != NULL; s = s->next) {
        struct cm_metric *first = m->head;
        /* Group each name's series under one HELP/TYPE, at its first appearance. */
        while (first != s && strcmp(first->name, s->name) != 0)
            first = first->next;
        if (first != s)
            continue;
        cm_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name,
                      type_names[s->kind]);
        for (struct cm_metric *t = s; t != NULL; t = t->next) {
            if (strcmp(t->name, s->name) == 0)
                render_series(out, t);
        }
    }
    pthread_mutex_unlock(&m->lock);
}
