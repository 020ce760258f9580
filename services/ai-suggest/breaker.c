/*
 * breaker.c - the per-provider circuit breaker (see breaker.h). One mutex per breaker: the
 * critical sections are a few comparisons, far cheaper than the HTTP call they guard.
 */
#include <time.h>

#include "breaker.h"

void ai_breaker_init(struct ai_breaker *b, int threshold, int64_t cooldown_ms)
{
    pthread_mutex_init(&b->lock, NULL);
    b->state = AI_BREAKER_CLOSED;
    b->failures = 0;
    b->threshold = threshold < 1 ? 1 : threshold;
    b->cooldown_ms = cooldown_ms < 0 ? 0 : cooldown_ms;
    b->opened_at = 0;
    b->probing = false;
    b->opened = 0;
}

void ai_breaker_cleanup(struct ai_breaker *b)
{
    pthread_mutex_destroy(&b->lock);
}

/* Moves an open breaker whose cooldown is over to half-open. Lock held. */
static void advance(struct ai_breaker *b, int64_t now_ms)
{
    if (b->state == AI_BREAKER_OPEN && now_ms - b->opened_at >= b->cooldown_ms) {
        b->state = AI_BREAKER_HALF_OPEN;
        b->probing = false;
    }
}

bool ai_breaker_allow(struct ai_breaker *b, int64_t now_ms, int64_t *wait_ms)
{
    bool ok = false;
    int64_t wait = 0;

    pthread_mutex_lock(&b->lock);
    advance(b, now_ms);
    switch (b->state) {
    case AI_BREAKER_CLOSED:
        ok = true;
        break;
    case AI_BREAKER_HALF_OPEN:
        /* One probe at a time: the others still skip, as if it were open. */
        if (!b->probing) {
            b->probing = true;
            ok = true;
        }
        break;
    case AI_BREAKER_OPEN:
        wait = b->opened_at + b->cooldown_ms - now_ms;
        break;
    }
    pthread_mutex_unlock(&b->lock);
    if (wait_ms != NULL)
        *wait_ms = wait > 0 ? wait : 0;
    return ok;
}

void ai_breaker_success(struct ai_breaker *b)
{
    pthread_mutex_lock(&b->lock);
    b->state = AI_BREAKER_CLOSED;
    b->failures = 0;
    b->probing = false;
    pthread_mutex_unlock(&b->lock);
}

bool ai_breaker_failure(struct ai_breaker *b, int64_t now_ms)
{
    bool opened = false;

    pthread_mutex_lock(&b->lock);
    advance(b, now_ms);
    switch (b->state) {
    case AI_BREAKER_CLOSED:
        if (++b->failures >= b->threshold)
            opened = true;
        break;
    case AI_BREAKER_HALF_OPEN:
        /* The probe failed (or a call that went out before the breaker opened): reopen. */
        opened = true;
        break;
    case AI_BREAKER_OPEN:
        /* A call that started while closed and ended after the opening: already counted. */
        break;
    }
    if (opened) {
        b->state = AI_BREAKER_OPEN;
        b->opened_at = now_ms;
        b->failures = 0;
        b->probing = false;
        b->opened++;
    }
    pthread_mutex_unlock(&b->lock);
    return opened;
}

enum ai_breaker_state ai_breaker_state(struct ai_breaker *b, int64_t now_ms)
{
    enum ai_breaker_state s;

    pthread_mutex_lock(&b->lock);
    advance(b, now_ms);
    s = b->state;
    pthread_mutex_unlock(&b->lock);
    return s;
}

const char *ai_breaker_state_name(enum ai_breaker_state s)
{
    switch (s) {
    case AI_BREAKER_CLOSED:
        return "closed";
    case AI_BREAKER_OPEN:
        return "open";
    case AI_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

int64_t ai_breaker_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
