/*
 * hang.c - a third party that hangs (see hang.h).
 */
#include "hang.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

int th_hang_start(struct th_hang *h)
{
    struct sockaddr_in sa = {0};
    socklen_t salen = sizeof(sa);

    memset(h, 0, sizeof(*h));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->lfd < 0 || bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(h->lfd, TH_HANG_MAX) != 0 ||
        getsockname(h->lfd, (struct sockaddr *)&sa, &salen) != 0) {
        perror("th_hang_start");
        if (h->lfd >= 0)
            close(h->lfd);
        h->lfd = -1;
        return -1;
    }
    snprintf(h->url, sizeof(h->url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    return 0;
}

/* One connection taken within wait_ms, or -1. */
static int take(struct th_hang *h, int wait_ms)
{
    struct pollfd pfd = {.fd = h->lfd, .events = POLLIN};
    int fd;

    if (h->lfd < 0 || poll(&pfd, 1, wait_ms) != 1 || (fd = accept(h->lfd, NULL, NULL)) < 0)
        return -1;
    h->ntaken++;
    return fd;
}

int th_hang_hold(struct th_hang *h, int n, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;

    while (h->nheld < n && h->nheld < TH_HANG_MAX && th_now_ms() < deadline) {
        int fd = take(h, 100);
        if (fd >= 0)
            h->held[h->nheld++] = fd;
    }
    return h->nheld;
}

int th_hang_answer(struct th_hang *h, void (*answer)(int fd), int total, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;

    for (int i = 0; i < h->nheld; i++)
        answer(h->held[i]);
    h->nheld = 0;
    while (h->ntaken < total && th_now_ms() < deadline) {
        int fd = take(h, 100);
        if (fd >= 0)
            answer(fd);
    }
    return h->ntaken;
}

void th_hang_read_request(int fd)
{
    char buf[8192], *end = NULL;
    size_t got = 0, body = 0, have;
    ssize_t n;

    while (end == NULL && got < sizeof(buf) - 1 &&
           (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL)
        return;
    *end = '\0'; /* the head alone, for the searches */
    {
        const char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl != NULL && strcasestr(buf, "\r\nexpect: 100-continue") == NULL)
            body = strtoul(cl + strlen("\r\ncontent-length:"), NULL, 10);
    }
    for (have = got - (size_t)(end + 4 - buf); have < body; have += (size_t)n) {
        if ((n = read(fd, buf, sizeof(buf))) <= 0)
            break;
    }
}

void th_hang_stop(struct th_hang *h)
{
    for (int i = 0; i < h->nheld; i++)
        close(h->held[i]);
    h->nheld = 0;
    if (h->lfd >= 0)
        close(h->lfd);
    h->lfd = -1;
}
