/*
 * window.c - Meta's messaging window, computed from the contact's last message.
 *
 * Meta's standard messaging policy: a business may answer within 24 hours of the person's
 * last message; from 24 hours to 7 days only a human agent may, with the HUMAN_AGENT tag;
 * after that, nothing. Times are Meta's event timestamps, never our time of receipt.
 */
#include "router.h"

enum router_window router_window_at(int64_t now_ms, int64_t last_ms)
{
    int64_t age;

    if (last_ms <= 0)
        return ROUTER_WINDOW_NONE;
    age = now_ms - last_ms;
    if (age < ROUTER_WINDOW_OPEN_MS)
        return ROUTER_WINDOW_OPEN;
    if (age < ROUTER_WINDOW_HUMAN_MS)
        return ROUTER_WINDOW_HUMAN_AGENT;
    return ROUTER_WINDOW_CLOSED;
}

const char *router_window_name(enum router_window w)
{
    switch (w) {
    case ROUTER_WINDOW_OPEN:
        return "open";
    case ROUTER_WINDOW_HUMAN_AGENT:
        return "human_agent";
    default:
        return "closed";
    }
}
