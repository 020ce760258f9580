/*
 * test_vault_lanes - the requests that wait on Meta have a lane of their own in token-vault:
 * a Meta that hangs holds up no token. Part of test_vault (vault_suite.h).
 */
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/nats.h"
#include "hang.h"
#include "harness.h"
#include "vault_suite.h"

/* Answers one held request as Meta does a revoked token (190: not retried), and closes. */
static void refuse_as_meta(int fd)
{
    static const char answer[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: 68\r\n\r\n"
        "{\"error\":{\"message\":\"lane test\",\"type\":\"OAuthException\",\"code\":190}}";

    th_hang_read_request(fd);
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
    struct th_hang graph;
    struct th_proc p;
    natsMsg *reply = NULL;
    cJSON *answer = NULL;
    int64_t t0;
    int port, held;

    CHECK(th_hang_start(&graph) == 0);
    port = launch_vault_at(&p, kek_path, graph.url, graph.url);
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
    held = th_hang_hold(&graph, 4, 15000);
    CHECK_MSG(held >= 4, "only %d connects reached Meta", held);

    t0 = th_now_ms();
    CHECK(cm_nats_request_as(&reply, nc, "conversation-router", "vault.token.get",
                             "{\"integration_id\":\"int_nosuch\"}", 3000) == NATS_OK);
    if (reply != NULL)
        answer =
            cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    CHECK_STR(str_at(answer, "error", "code"), "not_found");
    if (reply != NULL)
        printf("  token.get answered in %lld ms while %d connects wait on Meta\n",
               (long long)(th_now_ms() - t0), held);
    cJSON_Delete(answer);
    natsMsg_Destroy(reply);
    reply = NULL;
    CHECK(cm_nats_request_as(&reply, nc, "operator", "vault.integration.list", "{}", 3000) ==
          NATS_OK);
    natsMsg_Destroy(reply);

    /* Meta answers at last (a refusal): every connect is served, then the vault stops. */
    CHECK_INT(th_hang_answer(&graph, refuse_as_meta, 12, 15000), 12);
    th_hang_stop(&graph);
    CHECK_INT(th_proc_stop(&p), 0);
}
