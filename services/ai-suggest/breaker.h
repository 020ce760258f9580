/*
 * breaker.h - a circuit breaker per provider, shared by every worker thread.
 *
 * closed     calls go through; each failure counts, a success resets the count. After
 *            `threshold` failures in a row the breaker opens.
 * open       calls are skipped (the next provider is tried at once) until `cooldown_ms`
 *            has passed since it opened; then it is half-open.
 * half_open  exactly one call (the probe) goes through, the others are still skipped. The
 *            probe's success closes the breaker; its failure opens it for another cooldown.
 *
 * What counts as a failure is the caller's choice: ai-suggest counts errors that say the
 * provider is unwell or unusable (timeouts, 5xx, 429, 401, malformed answers), never a
 * content-filter refusal, which is a healthy provider declining one prompt.
 *
 * Time comes in as an argument (milliseconds on a monotonic clock), so that the unit tests
 * drive the transitions without sleeping. Every function is thread-safe.
 */
#ifndef AI_BREAKER_H
#define AI_BREAKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum ai_breaker_state {
    AI_BREAKER_CLOSED = 0,
    AI_BREAKER_OPEN = 1,
    AI_BREAKER_HALF_OPEN = 2,
};

/* Embedded: ai_breaker_init() before use, ai_breaker_cleanup() after. */
struct ai_breaker {
    pthread_mutex_t lock;
    enum ai_breaker_state state;
    int failures;  /* consecutive failures while closed */
    int threshold; /* failures that open it (>= 1) */
    int64_t cooldown_ms;
    int64_t opened_at; /* when it last opened */
    bool probing;      /* half-open: the probe is out */
    long opened;       /* times it opened, for metrics and tests */
};

/* Sets b up closed. threshold below 1 counts as 1; cooldown_ms below 0 as 0. */
void ai_breaker_init(struct ai_breaker *b, int threshold, int64_t cooldown_ms);
/* Releases the mutex; no thread may use b any more. */
void ai_breaker_cleanup(struct ai_breaker *b);

/*
 * Asks whether a call may go out now. Returns true when closed, or when this call becomes
 * the half-open probe (the caller must then report ai_breaker_success() or
 * ai_breaker_failure()). Returns false while open or while another probe is out; *wait_ms
 * (may be NULL) then receives how long until the next probe may go (0 when one is out).
 */
bool ai_breaker_allow(struct ai_breaker *b, int64_t now_ms, int64_t *wait_ms);

/* Records a call that went well: the breaker closes and the count restarts. */
void ai_breaker_success(struct ai_breaker *b);

/*
 * Records a failed call. Returns true when this failure opened the breaker (the
 * threshold reached while closed, or the probe failing).
 */
bool ai_breaker_failure(struct ai_breaker *b, int64_t now_ms);

/* The state now (open turns half-open once the cooldown is over), for metrics and logs. */
enum ai_breaker_state ai_breaker_state(struct ai_breaker *b, int64_t now_ms);

/* "closed", "open" or "half_open". */
const char *ai_breaker_state_name(enum ai_breaker_state s);

/* Milliseconds on CLOCK_MONOTONIC, the clock the daemon passes in. */
int64_t ai_breaker_now_ms(void);

#endif
