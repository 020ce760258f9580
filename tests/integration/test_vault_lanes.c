/*
 * test_vault_lanes - the requests that wait on Meta have a lane of their own in token-vault:
 * a Meta that hangs holds up no token. Part of test_vault (vault_suite.h).
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "common/nats.h"
#include "harness.h"
#include "vault_suite.h"

/* Answers one held request as Meta does a revoked token (190: not retried), and closes. */
static void refuse_as_meta(int fd)
{
    static const char answer[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: 68\r\n\r\n"
        "{\"error\":{\"message\":\"lane test\",\"type\":\"OAuthException\",\"code\":190}}";
    char buf[8192];
    size_t got = 0;
    ssize_t n;

    /* The request's head: the exchange is a GET without a body. */
    while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    CHECK(write(fd, answer, sizeof(answer) - 1) == (ssize_t)(sizeof(answer) - 1));
    close(fd);
}

/*
 * Meta hangs (a socket that takes connections and never answers) while more connects than
 * the vault has workers wait on it: token.get and integration.list are still answered at
 * once, from the other lane. With one pool of workers they waited for Meta's timeout.
 */
void test_meta_lane(void)
{
    struct sockaddr_in sa = {0};
    socklen_t salen = sizeof(sa);
    struct th_proc p;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), conns[32], nconns = 0, port;
    char url[64];
    natsMsg *reply = NULL;
    cJSON *answer = NULL;
    int64_t t0, deadline;

    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 64) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&sa, &salen) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    port = launch_vault_at(&p, kek_path, url, url);
    await_vault(port);

    /* Twelve connects, more than all the workers of one pool (8); nobody awaits them. */
    for (int i = 0; i < 12; i++) {
        char body[200], inbox[40];
        snprintf(body, sizeof(body),
                 "{\"workspace_id\":\"ws_lane\",\"platform\":\"messenger\","
                 "\"account_id\":\"1060000000099%02d\",\"token\":\"u-lane\"}",
                 i);
        snprintf(inbox, sizeof(inbox), "_INBOX.lane.unread.%d", i);
        CHECK(natsConnection_PublishRequestString(nc, "vault.integration.connect.operator", inbox,
                                                  body) == NATS_OK);
    }
    CHECK(natsConnection_FlushTimeout(nc, 5000) == NATS_OK);
    /* Ready when Meta holds as many connects as the Meta lane has workers (4). */
    deadline = th_now_ms() + 15000;
    while (nconns < 4 && th_now_ms() < deadline) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        if (poll(&pfd, 1, 100) == 1) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0 && nconns < 32)
                conns[nconns++] = fd;
        }
    }
    CHECK_MSG(nconns >= 4, "only %d connects reached Meta", nconns);

    t0 = th_now_ms();
    CHECK(cm_nats_request_as(&reply, nc, "conversation-router", "vault.token.get",
                             "{\"integration_id\":\"int_nosuch\"}", 3000) == NATS_OK);
    if (reply != NULL)
        answer =
            cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    CHECK_STR(str_at(answer, "error", "code"), "not_found");
    if (reply != NULL)
        printf("  token.get answered in %lld ms while %d connects wait on Meta\n",
               (long long)(th_now_ms() - t0), nconns);
    cJSON_Delete(answer);
    natsMsg_Destroy(reply);
    reply = NULL;
    CHECK(cm_nats_request_as(&reply, nc, "operator", "vault.integration.list", "{}", 3000) ==
          NATS_OK);
    natsMsg_Destroy(reply);

    /* Meta answers at last (a refusal): every connect is served, then the vault stops. */
    for (int i = 0; i < nconns; i++)
        refuse_as_meta(conns[i]);
    deadline = th_now_ms() + 15000;
    while (nconns < 12 && th_now_ms() < deadline) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        if (poll(&pfd, 1, 100) == 1) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                nconns++;
                refuse_as_meta(fd);
            }
        }
    }
    CHECK_MSG(nconns == 12, "%d of 12 connects reached Meta", nconns);
    close(lfd);
    CHECK_INT(th_proc_stop(&p), 0);
}
