/*
 * test_breaker - the circuit breaker's transitions on a clock the test drives: closed to
 * open after the threshold, skipping while open, one probe when half-open, the probe's
 * success closing it and its failure reopening it; and many threads hammering one breaker.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "breaker.h"
#include "check.h"

static void test_closed_to_open(void)
{
    struct ai_breaker b;
    int64_t wait = -1;

    ai_breaker_init(&b, 3, 1000);
    CHECK_INT(ai_breaker_state(&b, 0), AI_BREAKER_CLOSED);
    CHECK(ai_breaker_allow(&b, 0, &wait));
    CHECK(!ai_breaker_failure(&b, 10));
    CHECK(!ai_breaker_failure(&b, 20));
    /* A success in between restarts the count: failures must be consecutive. */
    ai_breaker_success(&b);
    CHECK(!ai_breaker_failure(&b, 30));
    CHECK(!ai_breaker_failure(&b, 40));
    CHECK_INT(ai_breaker_state(&b, 40), AI_BREAKER_CLOSED);
    CHECK(ai_breaker_failure(&b, 50));
    CHECK_INT(ai_breaker_state(&b, 50), AI_BREAKER_OPEN);
    CHECK_INT(b.opened, 1);
    /* Open: skipped, and told how long until the probe. */
    CHECK(!ai_breaker_allow(&b, 300, &wait));
    CHECK_INT(wait, 750);
    CHECK(!ai_breaker_allow(&b, 1049, &wait));
    CHECK_INT(wait, 1);
    ai_breaker_cleanup(&b);
}

static void test_half_open_probe(void)
{
    struct ai_breaker b;
    int64_t wait = -1;

    ai_breaker_init(&b, 1, 1000);
    CHECK(ai_breaker_failure(&b, 0));
    CHECK_INT(ai_breaker_state(&b, 999), AI_BREAKER_OPEN);
    CHECK_INT(ai_breaker_state(&b, 1000), AI_BREAKER_HALF_OPEN);
    /* One probe goes; the others are still skipped meanwhile. */
    CHECK(ai_breaker_allow(&b, 1000, &wait));
    CHECK(!ai_breaker_allow(&b, 1001, &wait));
    CHECK_INT(wait, 0);
    /* The probe fails: open again for a full cooldown from now. */
    CHECK(ai_breaker_failure(&b, 1500));
    CHECK_INT(ai_breaker_state(&b, 2499), AI_BREAKER_OPEN);
    CHECK(!ai_breaker_allow(&b, 2000, &wait));
    CHECK_INT(wait, 500);
    CHECK_INT(b.opened, 2);
    /* The next probe succeeds: closed, everything goes. */
    CHECK(ai_breaker_allow(&b, 2500, NULL));
    ai_breaker_success(&b);
    CHECK_INT(ai_breaker_state(&b, 2500), AI_BREAKER_CLOSED);
    CHECK(ai_breaker_allow(&b, 2501, NULL));
    CHECK(ai_breaker_allow(&b, 2502, NULL));
    ai_breaker_cleanup(&b);
}

static void test_late_failure_while_open(void)
{
    struct ai_breaker b;

    /* Two calls go out while closed; both fail, the second after the first opened it. */
    ai_breaker_init(&b, 1, 1000);
    CHECK(ai_breaker_allow(&b, 0, NULL));
    CHECK(ai_breaker_allow(&b, 0, NULL));
    CHECK(ai_breaker_failure(&b, 100));
    CHECK(!ai_breaker_failure(&b, 200)); /* already open: not a new opening */
    CHECK_INT(b.opened, 1);
    /* The cooldown counts from the opening, not from the late failure. */
    CHECK_INT(ai_breaker_state(&b, 1100), AI_BREAKER_HALF_OPEN);
    ai_breaker_cleanup(&b);
}

static void test_bounds_and_names(void)
{
    struct ai_breaker b;

    ai_breaker_init(&b, 0, -5);
    CHECK_INT(b.threshold, 1);
    CHECK_INT(b.cooldown_ms, 0);
    CHECK(ai_breaker_failure(&b, 7));
    /* A cooldown of 0: half-open at once. */
    CHECK_INT(ai_breaker_state(&b, 7), AI_BREAKER_HALF_OPEN);
    ai_breaker_cleanup(&b);
    CHECK_STR(ai_breaker_state_name(AI_BREAKER_CLOSED), "closed");
    CHECK_STR(ai_breaker_state_name(AI_BREAKER_OPEN), "open");
    CHECK_STR(ai_breaker_state_name(AI_BREAKER_HALF_OPEN), "half_open");
    CHECK(ai_breaker_now_ms() > 0);
}

/* --- threads: exactly one probe among many callers ---------------------------------------- */

static struct ai_breaker shared;
static _Atomic int probes;

static void *race(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        if (ai_breaker_allow(&shared, 5000, NULL))
            atomic_fetch_add(&probes, 1);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[8];

    ai_breaker_init(&shared, 1, 1000);
    CHECK(ai_breaker_failure(&shared, 0));
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, race, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(atomic_load(&probes), 1);
    ai_breaker_cleanup(&shared);
}

int main(void)
{
    RUN(test_closed_to_open);
    RUN(test_half_open_probe);
    RUN(test_late_failure_while_open);
    RUN(test_bounds_and_names);
    RUN(test_threads);
    return check_summary();
}
