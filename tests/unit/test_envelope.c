/*
 * test_envelope - Meta's webhook bodies of every kind, split into events with the right
 * subject and identity; malformed bodies refused.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "envelope.h"
#include "harness.h"

static char *fixture(const char *name)
{
    char path[512];
    char *text;

    snprintf(path, sizeof(path), "%s/tests/fixtures/meta/%s.json", DOMS_SOURCE_DIR, name);
    text = th_read_file(path);
    if (text == NULL) {
        fprintf(stderr, "missing fixture %s\n", path);
        exit(1);
    }
    return text;
}

/* Parses a fixture that must hold exactly one event and checks its kind and identity. */
static void one(const char *name, const char *subject, const char *msg_id, const char *kind)
{
    char *text = fixture(name);
    struct envelope env;

    envelope_parse(&env, text, strlen(text));
    CHECK_MSG(env.status == ENVELOPE_OK, "%s: status %d (%s)", name, env.status, env.error);
    CHECK_INT(env.nevents, 1);
    if (env.nevents == 1) {
        cJSON *payload = cJSON_Parse(env.events[0].payload);
        CHECK_STR(env.events[0].subject, subject);
        CHECK_STR(env.events[0].msg_id, msg_id);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(payload, "kind")), kind);
        CHECK(cJSON_IsObject(cJSON_GetObjectItem(payload, "event")));
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(payload, "entry_time")));
        cJSON_Delete(payload);
    }
    envelope_cleanup(&env);
    free(text);
}

static void test_messenger_kinds(void)
{
    const char *p = "meta.events.messenger.106123456789012.";
    char subject[128];

#define SUBJ(kind) (snprintf(subject, sizeof(subject), "%s%s", p, kind), subject)
    one("messenger_text", SUBJ("message"), "messenger:106123456789012:message:m_AbCdEf123",
        "message");
    one("messenger_attachments", SUBJ("message"), "messenger:106123456789012:message:m_att1",
        "message");
    one("messenger_quick_reply", SUBJ("message"), "messenger:106123456789012:message:m_qr1",
        "message");
    one("messenger_reply_to", SUBJ("message"), "messenger:106123456789012:message:m_rt1",
        "message");
    one("messenger_echo", SUBJ("echo"), "messenger:106123456789012:echo:m_echo1", "echo");
    one("messenger_reaction", SUBJ("reaction"),
        "messenger:106123456789012:reaction:m_AbCdEf123:react:love:7012345678901234:"
        "1732870000000",
        "reaction");
    one("messenger_unreaction", SUBJ("reaction"),
        "messenger:106123456789012:reaction:m_AbCdEf123:unreact::7012345678901234:"
        "1732870009000",
        "reaction");
    one("messenger_read", SUBJ("read"),
        "messenger:106123456789012:read:7012345678901234:1732870005000", "read");
    one("messenger_delivery", SUBJ("delivery"),
        "messenger:106123456789012:delivery:7012345678901234:1732870004000", "delivery");
    one("messenger_postback", SUBJ("postback"), "messenger:106123456789012:postback:m_pb1",
        "postback");
    one("messenger_standby", SUBJ("standby"), "messenger:106123456789012:standby:message:m_sb1",
        "message");
#undef SUBJ
}

/* Handover webhooks (messaging_handovers) have a kind of their own, named by their digest. */
static void test_handover(void)
{
    char *text = fixture("messenger_handover");
    struct envelope env;

    envelope_parse(&env, text, strlen(text));
    CHECK_INT(env.nevents, 3);
    for (size_t i = 0; i < env.nevents && i < 3; i++) {
        CHECK_STR(env.events[i].kind, "handover");
        CHECK_STR(env.events[i].subject, "meta.events.messenger.106123456789012.handover");
        CHECK_CONTAINS(env.events[i].msg_id, "messenger:106123456789012:handover:sha256:");
    }
    if (env.nevents == 3)
        CHECK(strcmp(env.events[0].msg_id, env.events[1].msg_id) != 0);
    envelope_cleanup(&env);
    free(text);
}

static void test_referral_uses_digest(void)
{
    char *text = fixture("messenger_referral");
    struct envelope env;

    envelope_parse(&env, text, strlen(text));
    CHECK_INT(env.nevents, 1);
    if (env.nevents == 1) {
        CHECK_STR(env.events[0].kind, "referral");
        CHECK_CONTAINS(env.events[0].msg_id, "messenger:106123456789012:referral:sha256:");
        CHECK_INT(strlen(env.events[0].msg_id),
                  strlen("messenger:106123456789012:referral:sha256:") + 64);
    }
    envelope_cleanup(&env);
    free(text);
}

static void test_instagram_kinds(void)
{
    const char *mid = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx";
    char id[256];

    snprintf(id, sizeof(id), "instagram:17841400000000001:message:%s", mid);
    one("instagram_text", "meta.events.instagram.17841400000000001.message", id, "message");
    snprintf(id, sizeof(id), "instagram:17841400000000001:unsend:%s", mid);
    one("instagram_unsend", "meta.events.instagram.17841400000000001.unsend", id, "unsend");
    snprintf(id, sizeof(id), "instagram:17841400000000001:edit:%s:1", mid);
    one("instagram_edit", "meta.events.instagram.17841400000000001.edit", id, "edit");
    snprintf(id, sizeof(id), "instagram:17841400000000001:read:1139876543210987:%s", mid);
    one("instagram_seen", "meta.events.instagram.17841400000000001.read", id, "read");
    one("instagram_changes_test", "meta.events.instagram.0.message",
        "instagram:0:message:random_mid", "message");
}

/* An edit and an unsend of a stored message must never look like a redelivery of it. */
static void test_identities_distinct(void)
{
    const char *names[] = {"instagram_text", "instagram_edit", "instagram_unsend",
                           "instagram_seen"};
    char *ids[4];

    for (int i = 0; i < 4; i++) {
        char *text = fixture(names[i]);
        struct envelope env;
        envelope_parse(&env, text, strlen(text));
        ids[i] = cm_xstrdup(env.nevents == 1 ? env.events[0].msg_id : "");
        envelope_cleanup(&env);
        free(text);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = i + 1; j < 4; j++)
            CHECK_MSG(strcmp(ids[i], ids[j]) != 0, "%s and %s share an id", names[i], names[j]);
    }
    for (int i = 0; i < 4; i++)
        free(ids[i]);
}

static void test_batch(void)
{
    char *text = fixture("messenger_batch");
    struct envelope env;

    envelope_parse(&env, text, strlen(text));
    CHECK(env.status == ENVELOPE_OK);
    CHECK_INT(env.nevents, 4);
    if (env.nevents == 4) {
        CHECK_STR(env.events[0].subject, "meta.events.messenger.106123456789012.message");
        CHECK_STR(env.events[2].subject, "meta.events.messenger.106999999999999.message");
        CHECK_STR(env.events[3].subject, "meta.events.messenger.106999999999999.standby");
        CHECK(strcmp(env.events[0].msg_id, env.events[1].msg_id) != 0);
    }
    envelope_cleanup(&env);
    free(text);
}

/* A big batch: 1000 events in 10 entries. */
static void test_large_batch(void)
{
    struct cm_buf b;
    struct envelope env;

    cm_buf_init(&b);
    cm_buf_puts(&b, "{\"object\":\"page\",\"entry\":[");
    for (int e = 0; e < 10; e++) {
        cm_buf_printf(&b, "%s{\"id\":\"10%d\",\"time\":1,\"messaging\":[", e ? "," : "", e);
        for (int i = 0; i < 100; i++)
            cm_buf_printf(&b,
                          "%s{\"sender\":{\"id\":\"1\"},\"recipient\":{\"id\":\"10%d\"},"
                          "\"timestamp\":1,\"message\":{\"mid\":\"m_%d_%d\",\"text\":\"x\"}}",
                          i ? "," : "", e, e, i);
        cm_buf_puts(&b, "]}");
    }
    cm_buf_puts(&b, "]}");
    envelope_parse(&env, b.data, b.len);
    CHECK_INT(env.nevents, 1000);
    envelope_cleanup(&env);
    cm_buf_cleanup(&b);
}

static enum envelope_status status_of(const char *body)
{
    struct envelope env;
    enum envelope_status st;

    envelope_parse(&env, body, strlen(body));
    st = env.status;
    if (st != ENVELOPE_OK)
        CHECK_INT(env.nevents, 0);
    envelope_cleanup(&env);
    return st;
}

static void test_refusals(void)
{
    CHECK_INT(status_of("not json"), ENVELOPE_NOT_JSON);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"messaging\":["),
              ENVELOPE_NOT_JSON);
    CHECK_INT(status_of("[]"), ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"foo\":1}"), ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"object\":\"page\"}"), ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":{}}"), ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[1]}"), ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[{\"messaging\":[]}]}"), ENVELOPE_NOT_META);
    /* An account id that would break out of its subject token. */
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[{\"id\":\"1.>\",\"messaging\":[]}]}"),
              ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"messaging\":[7]}]}"),
              ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"messaging\":{}}]}"),
              ENVELOPE_NOT_META);
    CHECK_INT(status_of("{\"object\":\"user\",\"entry\":[{\"id\":\"1\"}]}"), ENVELOPE_OTHER_OBJECT);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[]}"), ENVELOPE_EMPTY);
    CHECK_INT(status_of("{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"time\":1}]}"),
              ENVELOPE_OK);
}

/* A very long mid is replaced by a digest so Nats-Msg-Id stays bounded. */
static void test_long_identity(void)
{
    struct cm_buf b;
    struct envelope env;

    cm_buf_init(&b);
    cm_buf_puts(&b, "{\"object\":\"page\",\"entry\":[{\"id\":\"1\",\"messaging\":[{\"sender\":"
                    "{\"id\":\"2\"},\"message\":{\"mid\":\"");
    for (int i = 0; i < 300; i++)
        cm_buf_puts(&b, "x");
    cm_buf_puts(&b, "\"}}]}]}");
    envelope_parse(&env, b.data, b.len);
    CHECK_INT(env.nevents, 1);
    if (env.nevents == 1)
        CHECK(strlen(env.events[0].msg_id) <= ENVELOPE_MAX_MSG_ID);
    envelope_cleanup(&env);
    cm_buf_cleanup(&b);
}

int main(void)
{
    RUN(test_messenger_kinds);
    RUN(test_referral_uses_digest);
    RUN(test_handover);
    RUN(test_instagram_kinds);
    RUN(test_identities_distinct);
    RUN(test_batch);
    RUN(test_large_batch);
    RUN(test_refusals);
    RUN(test_long_identity);
    return check_summary();
}
