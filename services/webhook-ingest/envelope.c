/*
 * envelope.c - splitting Meta's webhook body into events (see envelope.h).
 *
 * The Nats-Msg-Id of an event is its identity, so that Meta's redeliveries of one event
 * collapse in JetStream's duplicate window while distinct changes of one message do not:
 * a new message is its mid; an edit is the mid and num_edit; an unsend, a reaction or a
 * read carries what changed. Anything without a natural identity is named by the digest
 * of its JSON.
 */
#include "envelope.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/mem.h"

/* Bytes first allocated for an event's stored JSON; a larger one grows as needed. */
#define ENVELOPE_PRINT_HINT 1024

/* Returns obj.name as a string, or NULL when absent or not a string. */
static const char *str_of(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Writes obj.name, a string or a number, into out; "" when absent. */
static void scalar_of(const cJSON *obj, const char *name, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (cJSON_IsString(v))
        snprintf(out, cap, "%s", v->valuestring);
    else if (cJSON_IsNumber(v))
        snprintf(out, cap, "%.0f", v->valuedouble);
    else if (cJSON_IsBool(v))
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else
        out[0] = '\0';
}

static const cJSON *obj_of(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsObject(v) ? v : NULL;
}

/* Is s a safe NATS subject token (no dots, wildcards or spaces)? */
static int valid_token(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '_' && c != '-')
            return 0;
    }
    return n > 0 && n <= ENVELOPE_MAX_ID;
}

/* Classifies a messaging-shaped event by the field Meta sets for its kind. */
static const char *classify(const cJSON *ev)
{
    const cJSON *message = obj_of(ev, "message");

    if (message != NULL) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(message, "is_deleted")))
            return "unsend";
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(message, "is_echo")))
            return "echo";
        return "message";
    }
    if (obj_of(ev, "message_edit") != NULL)
        return "edit";
    if (obj_of(ev, "reaction") != NULL)
        return "reaction";
    if (obj_of(ev, "read") != NULL || obj_of(ev, "messaging_seen") != NULL)
        return "read";
    if (obj_of(ev, "delivery") != NULL)
        return "delivery";
    if (obj_of(ev, "postback") != NULL)
        return "postback";
    if (obj_of(ev, "referral") != NULL)
        return "referral";
    /* messaging_handovers: who holds the thread (Meta's handover protocol). */
    if (obj_of(ev, "pass_thread_control") != NULL || obj_of(ev, "take_thread_control") != NULL ||
        obj_of(ev, "request_thread_control") != NULL)
        return "handover";
    return "other";
}

/* Appends the digest of the event's JSON, the identity of last resort. */
static void append_digest(struct cm_buf *id, const cJSON *ev)
{
    char *text = cJSON_PrintUnformatted(ev);
    unsigned char sum[CM_SHA256_LEN];
    char hex[2 * CM_SHA256_LEN + 1];

    cm_crypto_sha256(text ? text : "", text ? strlen(text) : 0, sum);
    cm_hex_encode(sum, sizeof(sum), hex);
    cm_buf_printf(id, "sha256:%s", hex);
    cJSON_free(text);
}

/* Appends the identity of a messaging-shaped event of the given kind. */
static void append_identity(struct cm_buf *id, const char *kind, const cJSON *ev)
{
    char sender[128], a[256], b[128], c[128], ts[32];
    const cJSON *sub;

    scalar_of(obj_of(ev, "sender"), "id", sender, sizeof(sender));
    if (strcmp(kind, "message") == 0 || strcmp(kind, "echo") == 0 || strcmp(kind, "unsend") == 0) {
        scalar_of(obj_of(ev, "message"), "mid", a, sizeof(a));
        if (a[0] != '\0') {
            cm_buf_puts(id, a);
            return;
        }
    } else if (strcmp(kind, "edit") == 0) {
        sub = obj_of(ev, "message_edit");
        scalar_of(sub, "mid", a, sizeof(a));
        scalar_of(sub, "num_edit", b, sizeof(b));
        if (a[0] != '\0') {
            cm_buf_printf(id, "%s:%s", a, b);
            return;
        }
    } else if (strcmp(kind, "reaction") == 0) {
        sub = obj_of(ev, "reaction");
        scalar_of(sub, "mid", a, sizeof(a));
        scalar_of(sub, "action", b, sizeof(b));
        scalar_of(sub, "reaction", c, sizeof(c));
        if (c[0] == '\0')
            scalar_of(sub, "emoji", c, sizeof(c));
        scalar_of(ev, "timestamp", ts, sizeof(ts));
        cm_buf_printf(id, "%s:%s:%s:%s:%s", a, b, c, sender, ts);
        return;
    } else if (strcmp(kind, "read") == 0) {
        sub = obj_of(ev, "read") ? obj_of(ev, "read") : obj_of(ev, "messaging_seen");
        scalar_of(sub, "watermark", a, sizeof(a));
        if (a[0] == '\0')
            scalar_of(sub, "mid", a, sizeof(a));
        cm_buf_printf(id, "%s:%s", sender, a);
        return;
    } else if (strcmp(kind, "delivery") == 0) {
        scalar_of(obj_of(ev, "delivery"), "watermark", a, sizeof(a));
        if (a[0] != '\0') {
            cm_buf_printf(id, "%s:%s", sender, a);
            return;
        }
    } else if (strcmp(kind, "postback") == 0) {
        scalar_of(obj_of(ev, "postback"), "mid", a, sizeof(a));
        if (a[0] != '\0') {
            cm_buf_puts(id, a);
            return;
        }
    }
    append_digest(id, ev);
}

/* Builds and appends one event; kind is the subject's last token. */
static void add_event(struct envelope *env, const char *account, const char *source,
                      const char *kind, const char *inner_kind, const cJSON *ev,
                      const cJSON *entry_time, const char *field)
{
    struct envelope_event *out;
    struct cm_buf id;
    cJSON *wrap;

    cm_buf_init(&id);
    cm_buf_printf(&id, "%s:%s:%s:", env->platform, account, kind);
    if (strcmp(kind, "standby") == 0)
        cm_buf_printf(&id, "%s:", inner_kind);
    if (strcmp(kind, "change") == 0) {
        cm_buf_printf(&id, "%s:", field ? field : "");
        append_digest(&id, ev);
    } else {
        append_identity(&id, inner_kind, ev);
    }
    if (id.len > ENVELOPE_MAX_MSG_ID) {
        unsigned char sum[CM_SHA256_LEN];
        char hex[2 * CM_SHA256_LEN + 1];
        cm_crypto_sha256(id.data, id.len, sum);
        cm_hex_encode(sum, sizeof(sum), hex);
        cm_buf_reset(&id);
        cm_buf_printf(&id, "%s:%s:%s:sha256:%s", env->platform, account, kind, hex);
    }

    wrap = cJSON_CreateObject();
    cJSON_AddStringToObject(wrap, "platform", env->platform);
    cJSON_AddStringToObject(wrap, "account_id", account);
    cJSON_AddStringToObject(wrap, "source", source);
    cJSON_AddStringToObject(wrap, "kind", inner_kind);
    if (field != NULL)
        cJSON_AddStringToObject(wrap, "field", field);
    if (cJSON_IsNumber(entry_time))
        cJSON_AddNumberToObject(wrap, "entry_time", entry_time->valuedouble);
    /* A reference, not a copy: the event is printed from the parsed body itself. */
    cJSON_AddItemToObject(wrap, "event", cJSON_CreateObjectReference(ev->child));

    env->events = cm_xrealloc(env->events, (env->nevents + 1) * sizeof(*env->events));
    out = &env->events[env->nevents++];
    out->kind = kind;
    out->subject = cm_xasprintf("meta.events.%s.%s.%s", env->platform, account, kind);
    out->msg_id = cm_buf_steal(&id);
    /* Printed into one buffer of a typical event's size: no growth, no final copy. */
    out->payload = cJSON_PrintBuffered(wrap, ENVELOPE_PRINT_HINT, 0);
    if (out->payload == NULL)
        abort(); /* cJSON only fails on allocation */
    out->payload_len = strlen(out->payload);
    cJSON_Delete(wrap);
}

/* Kinds are static strings so that envelope_event.kind needs no copy. */
static const char *static_kind(const char *k)
{
    static const char *const kinds[] = {"message", "echo",     "unsend",   "edit",     "reaction",
                                        "read",    "delivery", "postback", "referral", "handover",
                                        "other",   "standby",  "change"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kinds[i], k) == 0)
            return kinds[i];
    }
    return "other";
}

/* Adds every event of one entry; returns CM_INVALID (with env->error) on a malformed one. */
static int parse_entry(struct envelope *env, const cJSON *entry, int index)
{
    static const char *const lists[] = {"messaging", "standby", "changes"};
    char account[ENVELOPE_MAX_ID + 2];
    const cJSON *entry_time = cJSON_GetObjectItemCaseSensitive(entry, "time");

    if (!cJSON_IsObject(entry)) {
        snprintf(env->error, sizeof(env->error), "entry[%d] is not an object", index);
        return CM_INVALID;
    }
    scalar_of(entry, "id", account, sizeof(account));
    if (!valid_token(account)) {
        snprintf(env->error, sizeof(env->error), "entry[%d].id is missing or malformed", index);
        return CM_INVALID;
    }
    for (size_t l = 0; l < 3; l++) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(entry, lists[l]);
        const cJSON *ev;
        int i = 0;

        if (list == NULL)
            continue;
        if (!cJSON_IsArray(list)) {
            snprintf(env->error, sizeof(env->error), "entry[%d].%s is not an array", index,
                     lists[l]);
            return CM_INVALID;
        }
        cJSON_ArrayForEach(ev, list)
        {
            const char *field = NULL;
            const cJSON *body = ev;
            const char *inner, *kind;

            if (!cJSON_IsObject(ev)) {
                snprintf(env->error, sizeof(env->error), "entry[%d].%s[%d] is not an object", index,
                         lists[l], i);
                return CM_INVALID;
            }
            if (l == 2) {
                /* changes[]: {"field": "messages", "value": {...a messaging event...}} */
                field = str_of(ev, "field");
                body = obj_of(ev, "value");
                if (field == NULL || body == NULL) {
                    snprintf(env->error, sizeof(env->error),
                             "entry[%d].changes[%d] lacks field or value", index, i);
                    return CM_INVALID;
                }
            }
            inner = static_kind(classify(body));
            if (l == 1)
                kind = "standby";
            else if (l == 2 && strncmp(field, "messag", 6) != 0)
                kind = inner = "change";
            else
                kind = inner;
            add_event(env, account, lists[l], kind, inner, body, entry_time, field);
            i++;
        }
    }
    return CM_OK;
}

void envelope_parse(struct envelope *env, const char *body, size_t len)
{
    cJSON *root;
    const cJSON *entries, *entry;
    const char *object;
    int index = 0;

    memset(env, 0, sizeof(*env));
    root = cJSON_ParseWithLength(body, len);
    if (root == NULL) {
        env->status = ENVELOPE_NOT_JSON;
        snprintf(env->error, sizeof(env->error), "body is not valid JSON");
        return;
    }
    object = str_of(root, "object");
    entries = cJSON_GetObjectItemCaseSensitive(root, "entry");
    if (!cJSON_IsObject(root) || object == NULL || !cJSON_IsArray(entries)) {
        env->status = ENVELOPE_NOT_META;
        snprintf(env->error, sizeof(env->error),
                 "not a Meta webhook: expected \"object\" and an \"entry\" array");
        goto done;
    }
    if (strcmp(object, "page") == 0) {
        env->platform = "messenger";
    } else if (strcmp(object, "instagram") == 0) {
        env->platform = "instagram";
    } else {
        env->status = ENVELOPE_OTHER_OBJECT;
        goto done;
    }
    if (cJSON_GetArraySize(entries) == 0) {
        env->status = ENVELOPE_EMPTY;
        goto done;
    }
    cJSON_ArrayForEach(entry, entries)
    {
        if (parse_entry(env, entry, index++) != CM_OK) {
            env->status = ENVELOPE_NOT_META;
            /* Nothing of a malformed body is published: drop what was built so far. */
            char why[sizeof(env->error)];
            memcpy(why, env->error, sizeof(why));
            envelope_cleanup(env);
            env->status = ENVELOPE_NOT_META;
            memcpy(env->error, why, sizeof(why));
            goto done;
        }
    }
    env->status = ENVELOPE_OK;
done:
    cJSON_Delete(root);
}

void envelope_cleanup(struct envelope *env)
{
    for (size_t i = 0; i < env->nevents; i++) {
        free(env->events[i].subject);
        free(env->events[i].msg_id);
        cJSON_free(env->events[i].payload);
    }
    free(env->events);
    env->events = NULL;
    env->nevents = 0;
}
