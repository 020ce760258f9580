/*
 * test_vault_batch - token.get under a burst: token-vault reads and audits the requests queued
 * together in one statement (cm_rpc_handle_batch), and each request still gets its own answer:
 * its own integration's token, or its own refusal. Part of test_vault (vault_suite.h).
 */
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "harness.h"
#include "vault_suite.h"

#define BURST 48

/* What request i of the burst asks, as whom, and what it must be answered. */
static const char *caller_of(int i)
{
    return i % 6 == 5 ? "webhook-ingest" : i % 2 == 1 ? "ai-suggest" : "conversation-router";
}

void test_token_burst(void)
{
    const char *ids[4] = {ig_id, page_id, "int_nosuch", "not an id"};
    char *want[2] = {token_of(ig_id, "conversation-router", NULL),
                     token_of(page_id, "conversation-router", NULL)};
    natsSubscription *sub = NULL;
    int answered = 0;

    CHECK(want[0] != NULL && want[1] != NULL && strcmp(want[0], want[1]) != 0);
    CHECK(natsConnection_SubscribeSync(&sub, nc, "_INBOX.doms-test.burst.*") == NATS_OK);
    for (int i = 0; i < BURST; i++) {
        char subject[80], body[160], inbox[64];
        snprintf(subject, sizeof(subject), "vault.token.get.%s", caller_of(i));
        snprintf(body, sizeof(body), "{\"integration_id\":\"%s\"}", ids[i % 4]);
        snprintf(inbox, sizeof(inbox), "_INBOX.doms-test.burst.%d", i);
        CHECK(natsConnection_PublishRequestString(nc, subject, inbox, body) == NATS_OK);
    }
    CHECK(natsConnection_FlushTimeout(nc, 5000) == NATS_OK);

    for (; answered < BURST; answered++) {
        natsMsg *m = NULL;
        cJSON *r;
        int i;
        if (natsSubscription_NextMsg(&m, sub, 10000) != NATS_OK)
            break;
        i = atoi(strrchr(natsMsg_GetSubject(m), '.') + 1);
        r = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        if (i % 6 == 5) {
            CHECK_STR(str_at(r, "error", "code"), "denied");
        } else if (i % 4 < 2) {
            CHECK_STR(str_at(r, "result", "integration_id"), ids[i % 4]);
            CHECK_STR(str_at(r, "result", "token"), want[i % 4]);
            CHECK(str_at(r, "result", "appsecret_proof") != NULL);
        } else {
            CHECK_STR(str_at(r, "error", "code"), i % 4 == 2 ? "not_found" : "invalid");
        }
        cJSON_Delete(r);
        natsMsg_Destroy(m);
    }
    CHECK_MSG(answered == BURST, "%d of %d token requests answered", answered, BURST);
    natsSubscription_Destroy(sub);
    free(want[0]);
    free(want[1]);
}
