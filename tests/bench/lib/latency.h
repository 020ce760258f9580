/*
 * latency.h - the benchmarks' clock and percentiles, one way for every load generator.
 *
 * Latencies are seconds in a plain array of doubles; a request that failed or was lost is
 * +INFINITY, so that it counts in the percentiles as infinitely slow instead of vanishing
 * from them (docs/benchmarks.md, "How they measure").
 */
#ifndef BENCH_LATENCY_H
#define BENCH_LATENCY_H

/* Seconds on the monotonic clock: what schedules and latencies are measured on. */
double bench_now(void);
/* Sleeps until bench_now() reaches t (a due time of an open-loop schedule). */
void bench_sleep_until(double t);

/* Sorts n latencies in place, ascending (+INFINITY last). */
void bench_latency_sort(double *lat, long n);

/*
 * Formats percentile q (0.5, 0.99, 1.0 for the maximum) of n sorted latencies into out as
 * the value times scale (1e3 for milliseconds, 1e6 for microseconds) with decimals digits
 * after the point; "inf" when that request failed, "0" when there are none. Returns out.
 */
const char *bench_latency_pct(const double *lat, long n, double q, double scale, int decimals,
                              char out[32]);

#endif
