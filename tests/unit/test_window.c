/*
 * test_window - Meta's messaging window at its edges, from Meta's timestamps.
 */
#include "check.h"
#include "router.h"

#define H (3600LL * 1000)

static void test_edges(void)
{
    int64_t now = 1732870000000LL;

    CHECK_INT(router_window_at(now, 0), ROUTER_WINDOW_NONE);
    CHECK_INT(router_window_at(now, now), ROUTER_WINDOW_OPEN);
    CHECK_INT(router_window_at(now, now - 24 * H + 1), ROUTER_WINDOW_OPEN);
    CHECK_INT(router_window_at(now, now - 24 * H), ROUTER_WINDOW_HUMAN_AGENT);
    CHECK_INT(router_window_at(now, now - 7 * 24 * H + 1), ROUTER_WINDOW_HUMAN_AGENT);
    CHECK_INT(router_window_at(now, now - 7 * 24 * H), ROUTER_WINDOW_CLOSED);
    /* A message stamped slightly ahead of our clock is still inside the window. */
    CHECK_INT(router_window_at(now, now + 5000), ROUTER_WINDOW_OPEN);
    CHECK_STR(router_window_name(ROUTER_WINDOW_NONE), "closed");
    CHECK_STR(router_window_name(ROUTER_WINDOW_HUMAN_AGENT), "human_agent");
}

int main(void)
{
    RUN(test_edges);
    return check_summary();
}
