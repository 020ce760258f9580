/*
 * latency.c - the benchmarks' monotonic clock, and sorting and percentiles of their latency
 * arrays (latency.h).
 */
#include "latency.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_sleep_until(double t)
{
    struct timespec ts = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

void bench_latency_sort(double *lat, long n)
{
    if (n > 0)
        qsort(lat, (size_t)n, sizeof(double), cmp);
}

const char *bench_latency_pct(const double *lat, long n, double q, double scale, int decimals,
                              char out[32])
{
    /* The nearest-rank percentile: the smallest value with at least q of them at or below. */
    long i = (long)ceil(q * (double)n) - 1;

    if (n == 0)
        return strcpy(out, "0");
    if (i < 0)
        i = 0;
    if (isinf(lat[i]))
        return strcpy(out, "inf");
    snprintf(out, 32, "%.*f", decimals, lat[i] * scale);
    return out;
}
