/*
 * test_ai - ai-suggest end to end on the real suite: signed webhooks through webhook-ingest
 * into conversation-router, token-vault with the Meta stand-in, ai-suggest against local
 * stand-ins speaking OpenAI's, Gemini's and ElevenLabs' formats, domsctl.
 *
 * A suggestion drafted from a signed webhook; the masking checked on the body OpenAI
 * received; masking switched off per workspace; an opted-out workspace, a conversation of
 * attachments only and a viewer refused with no request reaching any provider; the voice
 * draft; the stored row sealed (no draft or message text in plaintext in the ai schema),
 * its event and audit record, under its integration's key; an integration's purge shreds
 * that key (a copy of a draft taken before no longer opens with the KEK); a deleted
 * workspace refused and purged; bad settings refused; logs without content or keys.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/keyring.h"
#include "common/mem.h"
#include "fakeai.h"
#include "ai_suite.h"
#include "stack.h"

#define PAGE_A "106000000000101" /* workspace Acme, AI on */
#define PAGE_B "106000000000202" /* workspace Quiet, AI off */
#define PSID_1 "7012345678901234"
#define PSID_2 "7012345678905555"
#define PSID_3 "7012345678909999"
#define PII_TEXT                                                                                   \
    "Hi! Is the blue jacket in stock in size M? I am jane.doe@example.com, +33 6 12 34 56 78, "    \
    "card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, my id " PSID_1                    \
    ", order 1234567812345678."

struct th_stack st;
static struct th_proc ingest, vault, router, ai, reaper;
static struct fakeai *fake;
char ws_a[64], int_a[64];
static char ws_b[64];
char *conv_pii;
static char *conv_attach, *conv_quiet;
static char *first_log; /* the log of the first ai-suggest, stopped half-way */

/* One message from psid to page, with text or attachments (a JSON array), POSTed through
 * ingest. */
static void post(const char *page, const char *psid, const char *mid, const char *text,
                 const char *atts)
{
    int64_t t = th_now_ms();

    CHECK_MSG(th_stack_message(&st, false, page, t, psid, t, mid, text, atts) == 200,
              "webhook refused: %s", mid);
}

/* Runs domsctl; checks the exit code; returns the JSON (or NULL) and the output in *text. */
cJSON *run(int want, char **text, const char *const *args)
{
    cJSON *out = NULL;
    char *t = NULL;
    int code = th_stack_domsctl(&st, &out, &t, args);

    CHECK_MSG(code == want, "domsctl %s %s: exit %d, want %d: %s", args[0], args[1], code, want, t);
    if (text != NULL)
        *text = t;
    else
        free(t);
    return out;
}

/* The conversation of ws whose contact wrote first... found by a message's text. */
static char *await_conv(const char *ws, const char *text)
{
    const char *list_args[] = {"conversations", "list", "--workspace", ws, NULL};

    for (int tries = 0; tries < 200; tries++) {
        cJSON *list = run(0, NULL, list_args), *c;
        char *found = NULL;
        cJSON_ArrayForEach(c, list)
        {
            const char *id = th_json_str(c, "conversation_id", NULL);
            const char *margs[] = {"messages", "list", id, NULL};
            cJSON *msgs = run(0, NULL, margs), *m;
            cJSON_ArrayForEach(m, msgs)
            {
                const char *t = th_json_str(m, "text", NULL);
                if (found == NULL && ((text == NULL && t == NULL) ||
                                      (text != NULL && t != NULL && strcmp(t, text) == 0)))
                    found = cm_xstrdup(id);
            }
            cJSON_Delete(msgs);
        }
        cJSON_Delete(list);
        if (found != NULL)
            return found;
        th_sleep_ms(50);
    }
    CHECK_MSG(0, "no conversation of %s ever held \"%s\"", ws, text ? text : "(no text)");
    return cm_xstrdup("none");
}

int all_requests(void)
{
    return fakeai_count(fake, FAKEAI_OPENAI) + fakeai_count(fake, FAKEAI_GEMINI) +
           fakeai_count(fake, FAKEAI_ELEVEN);
}

static void start_ai(struct th_proc *p, const char *eleven_key)
{
    char *env[16];
    int n = 0;

    env[n++] = cm_xstrdup("AI_PROVIDERS=openai,gemini");
    env[n++] = cm_xstrdup("OPENAI_API_KEY=" FAKEAI_OPENAI_KEY);
    env[n++] = cm_xasprintf("OPENAI_BASE_URL=%s/v1", fakeai_url(fake));
    env[n++] = cm_xstrdup("OPENAI_MODEL=gpt-4o-mini");
    env[n++] = cm_xstrdup("GEMINI_API_KEY=" FAKEAI_GEMINI_KEY);
    env[n++] = cm_xasprintf("GEMINI_BASE_URL=%s/v1beta", fakeai_url(fake));
    env[n++] = cm_xstrdup("GEMINI_MODEL=gemini-test");
    env[n++] = cm_xasprintf("ELEVENLABS_BASE_URL=%s", fakeai_url(fake));
    if (eleven_key != NULL)
        env[n++] = cm_xasprintf("ELEVENLABS_API_KEY=%s", eleven_key);
    env[n++] = cm_xstrdup("AI_TIMEOUT=5s");
    env[n] = NULL;
    th_stack_start(&st, p, "ai-suggest", (const char *const *)env);
    for (int i = 0; i < n; i++)
        free(env[i]);
}

/* --- tests ----------------------------------------------------------------------------- */

static void test_setup(void)
{
    th_stack_workspace(&st, "Acme Outdoor", true, ws_a);
    th_stack_workspace(&st, "Quiet Shop", false, ws_b);
    {
        const char *viewer[] = {"member", "add",    "--workspace", ws_a, "--user",
                                "vic",    "--role", "viewer",      NULL};
        /* With the tokens Meta's Login dialog would have given the businesses. */
        th_stack_connect(&st, ws_a, "messenger", PAGE_A, "short-ai-a", NULL, int_a);
        th_stack_connect(&st, ws_b, "messenger", PAGE_B, "short-ai-b", NULL, NULL);
        cJSON_Delete(run(0, NULL, viewer));
    }
    post(PAGE_A, PSID_1, "m_ai_1", PII_TEXT, NULL);
    post(PAGE_A, PSID_2, "m_ai_2", NULL,
         "[{\"type\":\"image\",\"payload\":{\"url\":\"https://scontent.example/photo.jpg\"}}]");
    post(PAGE_B, PSID_3, "m_ai_3", "Hello, is there a discount this week?", NULL);
    conv_pii = await_conv(ws_a, PII_TEXT);
    conv_attach = await_conv(ws_a, NULL);
    conv_quiet = await_conv(ws_b, "Hello, is there a discount this week?");
    CHECK(strcmp(conv_pii, conv_attach) != 0);
}

static char *first_id;

static void test_suggest_masked(void)
{
    const char *args[] = {"suggest", conv_pii, NULL};
    cJSON *out = run(0, NULL, args), *body, *msgs;
    char *sent, *auth, *path;
    const char *user;

    CHECK(th_json_str(out, "suggestion_id", NULL) != NULL &&
          strncmp(th_json_str(out, "suggestion_id", NULL), "sug_", 4) == 0);
    CHECK_STR(th_json_str(out, "text", NULL), FAKEAI_OPENAI_DRAFT);
    CHECK_STR(th_json_str(out, "provider", NULL), "openai");
    CHECK_STR(th_json_str(out, "model", NULL), FAKEAI_OPENAI_MODEL);
    first_id = cm_xstrdup(th_json_str(out, "suggestion_id", NULL) != NULL
                              ? th_json_str(out, "suggestion_id", NULL)
                              : "");
    cJSON_Delete(out);

    CHECK_INT(fakeai_count(fake, FAKEAI_OPENAI), 1);
    CHECK_INT(fakeai_count(fake, FAKEAI_GEMINI), 0);
    path = fakeai_last_path(fake, FAKEAI_OPENAI);
    auth = fakeai_last_header(fake, FAKEAI_OPENAI, "Authorization");
    CHECK_STR(path, "/v1/chat/completions");
    CHECK_STR(auth, "Bearer " FAKEAI_OPENAI_KEY);
    free(path);
    free(auth);

    /* What OpenAI received: the instructions, then the masked conversation. */
    sent = fakeai_last_body(fake, FAKEAI_OPENAI);
    body = cJSON_Parse(sent);
    msgs = cJSON_GetObjectItem(body, "messages");
    CHECK_STR(th_json_str(body, "model", NULL), "gpt-4o-mini");
    CHECK_STR(th_json_str(cJSON_GetArrayItem(msgs, 0), "role", NULL), "system");
    CHECK_CONTAINS(th_json_str(cJSON_GetArrayItem(msgs, 0), "content", NULL),
                   "language of the customer's most recent message");
    user = th_json_str(cJSON_GetArrayItem(msgs, 1), "content", NULL);
    CHECK_CONTAINS(user, "Customer: Hi! Is the blue jacket in stock in size M? I am [email], "
                         "[phone], card [card], IBAN [iban], my id [contact], order "
                         "1234567812345678.");
    /* Nothing the reply does not need left the suite, in any form. */
    CHECK(strstr(sent, "jane.doe") == NULL);
    CHECK(strstr(sent, "12 34 56 78") == NULL);
    CHECK(strstr(sent, "4111") == NULL);
    CHECK(strstr(sent, "DE89") == NULL);
    CHECK(strstr(sent, PSID_1) == NULL);
    cJSON_Delete(body);
    free(sent);
}

static void test_stored_sealed(void)
{
    char q[512], *v;

    snprintf(q, sizeof(q),
             "SELECT concat_ws(',', workspace_id, integration_id, conversation_id, provider, model,"
             " latency_ms >= 0, prompt_tokens, completion_tokens, masked_items,"
             " length(text_sealed) > 0, audio_sealed IS NULL) FROM ai.suggestions WHERE id = '%s'",
             first_id);
    v = th_stack_sql(&st, q);
    snprintf(q, sizeof(q), "%s,%s,%s,openai," FAKEAI_OPENAI_MODEL ",t,231,24,5,t,t", ws_a, int_a,
             conv_pii);
    CHECK_STR(v, q);
    free(v);
    /* No draft and no message text in plaintext anywhere in the schema. */
    v = th_stack_sql(&st, "SELECT count(*) FROM ai.suggestions s WHERE"
                          " position(convert_to('blue jacket', 'UTF8') IN text_sealed) > 0"
                          " OR s::text LIKE '%blue jacket%' OR s::text LIKE '%jane.doe%'");
    CHECK_STR(v, "0");
    free(v);
    v = th_stack_sql(&st, "SELECT count(*) FROM ai.outbox WHERE payload LIKE '%blue%'"
                          " OR payload LIKE '%jane%'");
    CHECK_STR(v, "0");
    free(v);
    /* Sealed under the integration's own key, which the row names. */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM ai.data_keys WHERE key_id = 'ws:%s:int:%s'"
             " AND EXISTS (SELECT 1 FROM ai.suggestions WHERE id = '%s'"
             " AND key_id = 'ws:%s:int:%s')",
             ws_a, int_a, first_id, ws_a, int_a);
    v = th_stack_sql(&st, q);
    CHECK_STR(v, "1");
    free(v);
    /* ai-suggest's role reads its own schema only: refused for want of the privilege, not
     * for any other error (a typo, a dropped connection) that would also yield no row. */
    {
        PGconn *c = th_db_connect(&st.db, "doms_ai");
        char err[256];
        v = th_db_value(c, "SELECT count(*) FROM router.messages", err, sizeof(err));
        CHECK(v == NULL);
        CHECK_CONTAINS(err, "permission denied");
        free(v);
        PQfinish(c);
    }
}

/*
 * The last message of a JetStream subject, parsed (free it), waiting for the outbox relay;
 * of an audit message that carries several events (an array), the last of them.
 */
static cJSON *last_event(const char *stream, const char *subject)
{
    cJSON *json = NULL;

    for (int i = 0; i < 100 && json == NULL; i++) {
        json = th_stack_last_event(&st, stream, subject);
        if (json == NULL)
            th_sleep_ms(100);
    }
    return json;
}

static void test_event_and_audit(void)
{
    cJSON *ev = last_event("AI_EVENTS", "ai.events.suggestion.created");
    cJSON *au = last_event("AUDIT", "audit.ai-suggest");
    char *text = cJSON_PrintUnformatted(ev);

    CHECK_STR(th_json_str(ev, "suggestion_id", NULL), first_id);
    CHECK_STR(th_json_str(ev, "conversation_id", NULL), conv_pii);
    CHECK_STR(th_json_str(ev, "workspace_id", NULL), ws_a);
    CHECK_STR(th_json_str(ev, "provider", NULL), "openai");
    CHECK(cJSON_GetObjectItem(ev, "text") == NULL);
    CHECK(text != NULL && strstr(text, "blue") == NULL);
    CHECK_STR(th_json_str(au, "action", NULL), "suggestion.create");
    CHECK_STR(th_json_str(au, "actor", NULL), "operator");
    CHECK_STR(th_json_str(au, "subject", NULL), conv_pii);
    cJSON_free(text);
    cJSON_Delete(ev);
    cJSON_Delete(au);
    /* The router audited the read of the messages the draft was made from (its outbox relay
     * may not have published it yet: earlier reads' records come first). */
    au = last_event("AUDIT", "audit.conversation-router");
    for (int i = 0; i < 50 && (th_json_str(au, "subject", NULL) == NULL ||
                               strcmp(th_json_str(au, "subject", NULL), conv_pii) != 0);
         i++) {
        cJSON_Delete(au);
        th_sleep_ms(100);
        au = last_event("AUDIT", "audit.conversation-router");
    }
    CHECK_STR(th_json_str(au, "action", NULL), "messages.read");
    CHECK_STR(th_json_str(au, "actor", NULL), "operator");
    CHECK_STR(th_json_str(au, "subject", NULL), conv_pii);
    cJSON_Delete(au);
}

static void test_read_back(void)
{
    char req[256];
    cJSON *r;

    snprintf(req, sizeof(req), "{\"actor\":\"vic\",\"suggestion_id\":\"%s\"}", first_id);
    r = th_stack_request(&st, "ai.suggestion.get", req);
    CHECK_STR(th_json_str(r, "result", "text"), FAKEAI_OPENAI_DRAFT);
    CHECK_STR(th_json_str(r, "result", "conversation_id"), conv_pii);
    CHECK_STR(th_json_str(r, "result", "provider"), "openai");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "voice")));
    cJSON_Delete(r);
    /* Someone who is not a member of the workspace: the router's refusal, passed on. */
    snprintf(req, sizeof(req), "{\"actor\":\"mallory\",\"suggestion_id\":\"%s\"}", first_id);
    r = th_stack_request(&st, "ai.suggestion.get", req);
    CHECK_STR(th_json_str(r, "error", "code"), "denied");
    cJSON_Delete(r);
    r = th_stack_request(&st, "ai.suggestion.get", "{\"suggestion_id\":\"sug_nope\"}");
    CHECK_STR(th_json_str(r, "error", "code"), "not_found");
    cJSON_Delete(r);
}

static void test_refusals_reach_no_provider(void)
{
    const char *quiet[] = {"suggest", conv_quiet, NULL};
    const char *attach[] = {"suggest", conv_attach, NULL};
    const char *viewer[] = {"--actor", "vic", "suggest", conv_pii, NULL};
    const char *unknown[] = {"suggest", "conv_does_not_exist", NULL};
    int before = all_requests();
    char *text = NULL;

    cJSON_Delete(run(1, &text, quiet));
    CHECK_CONTAINS(text, "AI assistance is off");
    free(text);
    cJSON_Delete(run(1, &text, attach));
    CHECK_CONTAINS(text, "no text to reply to");
    free(text);
    cJSON_Delete(run(1, &text, viewer));
    free(text);
    cJSON_Delete(run(1, &text, unknown));
    free(text);
    CHECK_INT(all_requests(), before);
}

static void test_masking_switched_off(void)
{
    const char *args[] = {"suggest", conv_pii, NULL};
    char req[256], *sent;
    cJSON *r;

    snprintf(req, sizeof(req),
             "{\"actor\":\"operator\",\"workspace_id\":\"%s\",\"mask_pii\":false}", ws_a);
    r = th_stack_request(&st, "router.workspace.update", req);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "mask_pii")));
    cJSON_Delete(r);
    cJSON_Delete(run(0, NULL, args));
    sent = fakeai_last_body(fake, FAKEAI_OPENAI);
    CHECK_CONTAINS(sent, "jane.doe@example.com");
    CHECK_CONTAINS(sent, "4111 1111 1111 1111");
    free(sent);
    snprintf(req, sizeof(req), "{\"actor\":\"operator\",\"workspace_id\":\"%s\",\"mask_pii\":true}",
             ws_a);
    cJSON_Delete(th_stack_request(&st, "router.workspace.update", req));
}

static void test_voice(void)
{
    const char *args[] = {"suggest", conv_pii, "--voice", NULL};
    cJSON *out = run(0, NULL, args), *body;
    char q[256], *sent, *key, *path, *v;

    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(out, "voice")));
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "audio_bytes")), 2048);
    CHECK_STR(th_json_str(out, "text", NULL), FAKEAI_OPENAI_DRAFT);
    CHECK_INT(fakeai_count(fake, FAKEAI_ELEVEN), 1);
    key = fakeai_last_header(fake, FAKEAI_ELEVEN, "xi-api-key");
    path = fakeai_last_path(fake, FAKEAI_ELEVEN);
    CHECK_STR(key, FAKEAI_ELEVEN_KEY);
    CHECK_STR(path, "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM");
    /* The draft is spoken masked: its address never reaches ElevenLabs. */
    sent = fakeai_last_body(fake, FAKEAI_ELEVEN);
    body = cJSON_Parse(sent);
    CHECK_STR(th_json_str(body, "text", NULL),
              "Yes, the blue jacket is in stock in size M. Write to [email] to hold it.");
    CHECK_STR(th_json_str(body, "model_id", NULL), "eleven_multilingual_v2");
    snprintf(q, sizeof(q),
             "SELECT concat_ws(',', audio_bytes, audio_type, length(audio_sealed) > 2048)"
             " FROM ai.suggestions WHERE id = '%s'",
             th_json_str(out, "suggestion_id", NULL));
    v = th_stack_sql(&st, q);
    CHECK_STR(v, "2048,audio/mpeg,t");
    free(v);
    free(key);
    free(path);
    free(sent);
    cJSON_Delete(body);
    cJSON_Delete(out);
}

static void test_voice_without_key(void)
{
    const char *args[] = {"suggest", conv_pii, "--voice", NULL};
    int before;
    char *text = NULL;

    /* The same daemon without ELEVENLABS_API_KEY. */
    /* A clean exit: SIGTERM honoured, and no leak reported under the sanitizers. */
    CHECK_INT(th_proc_stop(&ai), 0);
    first_log = th_proc_output(&ai);
    st.nprocs--;
    start_ai(&ai, NULL);
    before = all_requests();
    cJSON_Delete(run(1, &text, args));
    CHECK_CONTAINS(text, "ELEVENLABS_API_KEY is not set");
    CHECK_INT(all_requests(), before);
    free(text);
}

/* A suggestion sent as drafted is AI-drafted: never tagged HUMAN_AGENT; edited, it may be. */
static void test_suggestion_sent(void)
{
    const char *args[] = {"suggest", NULL, NULL};
    char body[4096], req[1024], *conv;
    int64_t then = th_now_ms() - 30LL * 3600 * 1000;
    cJSON *out, *r;
    char *sid, *draft;

    snprintf(body, sizeof(body),
             "{\"object\":\"page\",\"entry\":[{\"id\":\"%s\",\"time\":%lld,\"messaging\":[{"
             "\"sender\":{\"id\":\"psid-late\"},\"recipient\":{\"id\":\"%s\"},\"timestamp\":"
             "%lld,\"message\":{\"mid\":\"m_ai_late\",\"text\":\"any news on my order?\"}}]}]}",
             PAGE_A, (long long)then, PAGE_A, (long long)then);
    CHECK_INT(th_stack_webhook(&st, body), 200);
    conv = await_conv(ws_a, "any news on my order?");
    args[1] = conv;
    out = run(0, NULL, args);
    sid = cm_xstrdup(
        th_json_str(out, "suggestion_id", NULL) ? th_json_str(out, "suggestion_id", NULL) : "");
    draft = cm_xstrdup(th_json_str(out, "text", NULL) ? th_json_str(out, "text", NULL) : "");
    cJSON_Delete(out);

    /* Unedited, in the human-agent window: refused, even with human_agent asked for. */
    snprintf(req, sizeof(req),
             "{\"actor\":\"operator\",\"conversation_id\":\"%s\",\"text\":\"%s\","
             "\"human_agent\":true,\"suggestion_id\":\"%s\"}",
             conv, draft, sid);
    r = th_stack_request(&st, "router.reply", req);
    CHECK_STR(th_json_str(r, "error", "code"), "refused");
    CHECK_CONTAINS(th_json_str(r, "error", "message"), "AI-drafted");
    cJSON_Delete(r);
    /* Edited by a person: a human agent's reply. */
    snprintf(req, sizeof(req),
             "{\"actor\":\"operator\",\"conversation_id\":\"%s\",\"text\":\"%s Sorry for"
             " the delay!\",\"human_agent\":true,\"suggestion_id\":\"%s\"}",
             conv, draft, sid);
    r = th_stack_request(&st, "router.reply", req);
    CHECK_STR(th_json_str(r, "result", "status"), "queued");
    cJSON_Delete(r);
    free(sid);
    free(draft);
    free(conv);
}

static void test_bad_settings(void)
{
    const char *print[] = {"--print-config", NULL};
    char kek[600], *out = NULL;
    const char *bad_list[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x", kek,
                              "AI_PROVIDERS=openai,claude", NULL};
    const char *twice[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x", kek,
                           "AI_PROVIDERS=gemini,gemini", NULL};
    const char *timeout[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x", kek, "AI_TIMEOUT=0s", NULL};
    const char *secrets[] = {"DATABASE_URL=postgresql://x@127.0.0.1/x", kek,
                             "OPENAI_API_KEY=" FAKEAI_OPENAI_KEY, NULL};

    snprintf(kek, sizeof(kek), "DOMS_KEK_FILE=%s", st.kek);
    CHECK_INT(th_run("ai-suggest", NULL, bad_list, &out), 78);
    CHECK_CONTAINS(out, "AI_PROVIDERS");
    free(out);
    CHECK_INT(th_run("ai-suggest", NULL, twice, &out), 78);
    CHECK_CONTAINS(out, "listed twice");
    free(out);
    CHECK_INT(th_run("ai-suggest", NULL, timeout, &out), 78);
    CHECK_CONTAINS(out, "AI_TIMEOUT");
    free(out);
    CHECK_INT(th_run("ai-suggest", print, secrets, &out), 0);
    CHECK_CONTAINS(out, "OPENAI_API_KEY=********");
    CHECK_CONTAINS(out, "AI_PROVIDERS=openai,gemini");
    CHECK(strstr(out, FAKEAI_OPENAI_KEY) == NULL);
    free(out);
}

/* Neither ai-suggest logged message text, a draft or a key. */
static void check_log(const char *log)
{
    const char *never[] = {"blue jacket",
                           "jane.doe",
                           "4111 1111 1111",
                           "DE89 3704",
                           PSID_1,
                           "stock in size",
                           "acme-outdoor",
                           FAKEAI_OPENAI_KEY,
                           FAKEAI_GEMINI_KEY,
                           FAKEAI_ELEVEN_KEY,
                           NULL};

    CHECK(log != NULL && strstr(log, "suggestion for conversation") != NULL);
    for (int i = 0; log != NULL && never[i] != NULL; i++)
        CHECK_MSG(strstr(log, never[i]) == NULL, "ai-suggest logged \"%s\"", never[i]);
}

static void test_logs_clean(void)
{
    char *log = th_proc_output(&ai);

    check_log(first_log);
    check_log(log);
    free(log);
    free(first_log);
}

int main(void)
{
    th_init("ai");
    th_stack_init(&st);
    if (fakeai_start(&fake) != 0)
        return 1;
    th_stack_start(&st, &vault, "token-vault", NULL);
    th_stack_start(&st, &ingest, "webhook-ingest", NULL);
    th_stack_start(&st, &router, "conversation-router", NULL);
    /* `domsctl workspace delete` goes through retention-reaper (which asks the router). */
    th_stack_start(&st, &reaper, "retention-reaper", NULL);
    start_ai(&ai, FAKEAI_ELEVEN_KEY);

    RUN(test_setup);
    RUN(test_suggest_masked);
    RUN(test_stored_sealed);
    RUN(test_event_and_audit);
    RUN(test_read_back);
    RUN(test_refusals_reach_no_provider);
    RUN(test_masking_switched_off);
    RUN(test_voice);
    RUN(test_voice_without_key);
    RUN(test_suggestion_sent);
    RUN(test_deleted_workspace_purged);
    RUN(test_bad_settings);
    CHECK_INT(th_proc_stop(&ai), 0);
    th_stack_stop(&st);
    RUN(test_logs_clean);
    fakeai_stop(fake);
    free(first_id);
    free(conv_pii);
    free(conv_attach);
    free(conv_quiet);
    return check_summary();
}
