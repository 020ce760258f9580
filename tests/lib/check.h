/*
 * check.h - the test suite's assertions, in the spirit of Redis's test_<name> units.
 *
 * A failed check prints where and why and counts, and the test goes on, so one run
 * shows every failure. check_summary() prints "N passed, N failed" and returns the exit
 * status for main().
 */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

extern int check_passed;
extern int check_failed;

void check_report(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define CHECK(cond) check_report(!!(cond), __FILE__, __LINE__, "%s", #cond)

#define CHECK_MSG(cond, ...) check_report(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        check_report(check_a_ == check_b_, __FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b,  \
                     check_a_, check_b_);                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        check_report(check_a_ != NULL && check_b_ != NULL && strcmp(check_a_, check_b_) == 0,      \
                     __FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", #a, #b,                    \
                     check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");              \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *check_h_ = (hay), *check_n_ = (needle);                                        \
        check_report(check_h_ != NULL && strstr(check_h_, check_n_) != NULL, __FILE__, __LINE__,   \
                     "%s contains \"%s\"", #hay, check_n_);                                        \
    } while (0)

/* The monotonic clock in milliseconds, for deadlines and for timing what a test awaits. */
long long check_now_ms(void);
/* Sleeps ms milliseconds (WAIT_UNTIL's pause between two looks). */
void check_pause_ms(int ms);

/*
 * Waits for a condition instead of sleeping: evaluates cond (an expression, evaluated again
 * and again) every 50 ms until it holds or timeout_ms of monotonic time have passed, and is
 * true when it held. The last look is taken at or after the deadline, so a condition that
 * holds just in time counts.
 */
#define WAIT_UNTIL(cond, timeout_ms)                                                               \
    __extension__({                                                                                \
        long long wait_end_ = check_now_ms() + (timeout_ms);                                       \
        int wait_ok_;                                                                              \
        for (;;) {                                                                                 \
            int wait_late_ = check_now_ms() >= wait_end_;                                          \
            wait_ok_ = !!(cond);                                                                   \
            if (wait_ok_ || wait_late_)                                                            \
                break;                                                                             \
            check_pause_ms(50);                                                                    \
        }                                                                                          \
        wait_ok_;                                                                                  \
    })

/* A check that cond comes to hold within timeout_ms (see WAIT_UNTIL). */
#define CHECK_WAIT(cond, timeout_ms)                                                               \
    check_report(WAIT_UNTIL(cond, timeout_ms), __FILE__, __LINE__, "%s within %d ms", #cond,       \
                 (int)(timeout_ms))

/* Runs one test function, announcing it. */
#define RUN(test)                                                                                  \
    do {                                                                                           \
        printf("== %s\n", #test);                                                                  \
        fflush(stdout);                                                                            \
        test();                                                                                    \
    } while (0)

/* Prints the closing line and returns 0 when nothing failed. */
int check_summary(void);

#endif
