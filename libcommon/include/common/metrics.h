/*
 * metrics.h - counters, gauges and latency histograms in Prometheus text format.
 *
 * A registry holds series, each a metric name plus a fixed label set. Registration takes
 * a lock and returns the existing series for a (name, labels) pair already known, so a
 * rarely used label combination may be looked up where it is needed. Updates are lock-free
 * atomics and safe from any thread, nats.c's callback threads included.
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stdint.h>

#include "common/mem.h"

struct cm_metrics;
struct cm_metric;

/* Creates an empty registry; free with cm_metrics_destroy(), which accepts NULL. */
struct cm_metrics *cm_metrics_create(void);
void cm_metrics_destroy(struct cm_metrics *m);

/*
 * Returns the series for name and labels, creating it on first use. labels is the
 * Prometheus label text without braces (`code="200",route="webhook"`) or NULL. name,
 * labels and help are copied. The returned series lives as long as the registry.
 */
struct cm_metric *cm_metrics_counter(struct cm_metrics *m, const char *name, const char *labels,
                                     const char *help);
struct cm_metric *cm_metrics_gauge(struct cm_metrics *m, const char *name, const char *labels,
                                   const char *help);
/* A histogram with latency buckets from 0.5 ms to 10 s; observations are in seconds. */
struct cm_metric *cm_metrics_histogram(struct cm_metrics *m, const char *name, const char *labels,
                                       const char *help);

/* Adds n to a counter. */
void cm_metrics_inc(struct cm_metric *c, uint64_t n);
/* Sets or moves a gauge. */
void cm_metrics_set(struct cm_metric *g, double v);
void cm_metrics_add(struct cm_metric *g, double delta);
/* Records one observation, in seconds, in a histogram. */
void cm_metrics_observe(struct cm_metric *h, double seconds);

/* Reads a counter's or gauge's current value (tests and readiness use this). */
double cm_metrics_value(const struct cm_metric *s);

/* Appends the whole registry in Prometheus text exposition format 0.0.4. */
void cm_metrics_render(struct cm_metrics *m, struct cm_buf *out);

#endif
