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
