/*
 * suggest.c - ai.suggest: one drafted reply for a conversation (proto/ai.md).
 *
 * The order is what keeps the promises: the request is checked, the context is asked of
 * conversation-router (which refuses for a workspace with AI off, so nothing is read or
 * sent then), a conversation without text is answered before any provider is called, the
 * messages are masked before the prompt exists, the providers are tried in AI_PROVIDERS
 * order past their circuit breakers, and only a complete result (draft, and audio when
 * asked) is stored, in one transaction with its event and audit record.
 *
 * Log lines carry ids, providers, models, counts and reasons; never a message, a prompt,
 * a draft or a key.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"
#include "common/crypto.h"
#include "common/id.h"
#include "common/log.h"
#include "common/metrics.h"
#include "mask.h"

#define CONTEXT_TIMEOUT_MS 10000

/* Everything one request holds, released by job_cleanup(). */
struct job {
    char id[32];
    struct ai_context ctx;
    struct cm_buf *masked;   /* one per context message, when masking */
    struct ai_message *msgs; /* what the prompt is built from */
    struct ai_mask_counts counts;
    struct ai_prompt prompt;
    struct ai_completion draft;
    int provider; /* index into ai->providers of the one that answered */
    long latency_ms;
    struct cm_buf spoken; /* the draft as sent to ElevenLabs */
    struct cm_buf audio;
    char audio_type[64];
    char reasons[1024]; /* "openai: ...; gemini: ..." */
};

bool ai_valid_id(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.' && c != ':')
            return false;
    }
    return n > 0 && n <= max;
}

static void new_id(char out[32])
{
    unsigned char raw[12];
    char hex[25];

    cm_crypto_random(raw, sizeof(raw));
    cm_hex_encode(raw, sizeof(raw), hex);
    snprintf(out, 32, "sug_%s", hex);
}

static void job_init(struct job *j)
{
    memset(j, 0, sizeof(*j));
    ai_prompt_init(&j->prompt);
    cm_buf_init(&j->spoken);
    cm_buf_init(&j->audio);
    j->provider = -1;
}

static void job_cleanup(struct job *j)
{
    for (size_t k = 0; j->masked != NULL && k < j->ctx.nmsgs; k++)
        cm_buf_wipe(&j->masked[k]);
    free(j->masked);
    free(j->msgs);
    ai_context_cleanup(&j->ctx);
    ai_prompt_cleanup(&j->prompt);
    ai_completion_cleanup(&j->draft);
    cm_buf_wipe(&j->spoken);
    cm_buf_wipe(&j->audio);
}

static void add_reason(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_reason(struct job *j, const char *fmt, ...)
{
    size_t n = strlen(j->reasons);
    va_list ap;

    if (n > 0 && n + 2 < sizeof(j->reasons)) {
        memcpy(j->reasons + n, "; ", 3);
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(j->reasons + n, sizeof(j->reasons) - n, fmt, ap);
    va_end(ap);
}

/* The messages the prompt is built from: masked copies, or the context's own texts. */
static void prepare_messages(struct ai *ai, struct job *j)
{
    const struct ai_context *c = &j->ctx;

    j->msgs = cm_xcalloc(c->nmsgs + 1, sizeof(*j->msgs));
    if (c->mask_pii)
        j->masked = cm_xcalloc(c->nmsgs + 1, sizeof(*j->masked));
    for (size_t k = 0; k < c->nmsgs; k++) {
        j->msgs[k] = c->msgs[k];
        if (!c->mask_pii || c->msgs[k].text == NULL)
            continue;
        cm_buf_init(&j->masked[k]);
        /* A placeholder is at most about twice what it replaces: no reallocation later. */
        cm_buf_reserve(&j->masked[k], 2 * c->msgs[k].len + 16);
        ai_mask(c->msgs[k].text, c->msgs[k].len, c->contact_ids, c->ncontacts, &j->masked[k],
                &j->counts);
        j->msgs[k].text = j->masked[k].data;
        j->msgs[k].len = j->masked[k].len;
    }
    cm_metrics_inc(ai->m_masked, (uint64_t)ai_mask_total(&j->counts));
}

/* Counts a failed call by provider and reason; the series is found or made on first use. */
static void count_failure(struct ai *ai, const struct ai_provider *p, enum ai_fail f)
{
    char labels[96];

    snprintf(labels, sizeof(labels), "provider=\"%s\",reason=\"%s\"", p->name, ai_fail_label(f));
    cm_metrics_inc(cm_metrics_counter(ai->svc.metrics, "ai_provider_failures_total", labels,
                                      "Provider calls that gave no draft, by reason"),
                   1);
}

/* Tries each provider past its breaker; returns true with j->draft filled by one of them. */
static bool ask_providers(struct ai *ai, struct cm_httpc *http, struct job *j, bool *refused_only)
{
    *refused_only = true;
    for (int k = 0; k < ai->nproviders; k++) {
        const struct ai_provider *p = &ai->providers[k];
        struct ai_breaker *b = &ai->breakers[k];
        int64_t wait = 0;
        long elapsed = 0;
        int attempts = 0;
        char why[320];
        enum ai_fail f;

        if (!ai_breaker_allow(b, ai_breaker_now_ms(), &wait)) {
            cm_metrics_inc(ai->m_skipped[p->kind], 1);
            add_reason(j, "%s: skipped, failing repeatedly (circuit open, next try in %lld s)",
                       p->name, (long long)((wait + 999) / 1000));
            *refused_only = false;
            continue;
        }
        f = ai_provider_call(p, http, ai_prompt_system(), j->prompt.transcript.data, j->id,
                             &j->draft, why, sizeof(why), &attempts, &elapsed);
        /* A refusal is a healthy provider declining this prompt: not held against it. */
        if (!ai_fail_counts(f)) {
            ai_breaker_success(b);
        } else if (ai_breaker_failure(b, ai_breaker_now_ms())) {
            CM_WARN_ID(j->id, "suggest: %s circuit opened: skipped for %lld s", p->name,
                       (long long)ai->cfg->breaker_cooldown);
        }
        cm_metrics_set(ai->m_breaker[p->kind],
                       ai_breaker_state(b, ai_breaker_now_ms()) != AI_BREAKER_CLOSED);
        if (f == AI_FAIL_NONE) {
            j->provider = k;
            j->latency_ms = elapsed;
            cm_metrics_observe(ai->m_latency[p->kind], (double)elapsed / 1000.0);
            return true;
        }
        count_failure(ai, p, f);
        CM_WARN_ID(j->id, "suggest: %s (%d attempt%s, %ld ms)", why, attempts,
                   attempts == 1 ? "" : "s", elapsed);
        add_reason(j, "%s", why);
        if (f != AI_FAIL_REFUSED)
            *refused_only = false;
    }
    return false;
}

/* Speaks the draft, masked whatever the workspace's setting (see voice.h). */
static enum ai_fail speak(struct ai *ai, struct cm_httpc *http, struct job *j)
{
    char why[320];
    enum ai_fail f;

    cm_buf_reserve(&j->spoken, 2 * j->draft.len + 16);
    ai_mask(j->draft.text, j->draft.len, j->ctx.contact_ids, j->ctx.ncontacts, &j->spoken, NULL);
    f = ai_voice_call(&ai->voice, http, j->spoken.data, j->id, &j->audio, j->audio_type,
                      sizeof(j->audio_type), why, sizeof(why));
    if (f != AI_FAIL_NONE) {
        CM_WARN_ID(j->id, "suggest: %s", why);
        add_reason(j, "%s", why);
    }
    return f;
}

static cJSON *result_of(const struct ai *ai, const struct job *j, bool voice)
{
    cJSON *out = cJSON_CreateObject();

    cJSON_AddStringToObject(out, "suggestion_id", j->id);
    cJSON_AddStringToObject(out, "text", j->draft.text);
    cJSON_AddStringToObject(out, "provider", ai->providers[j->provider].name);
    cJSON_AddStringToObject(out, "model", j->draft.model);
    if (voice) {
        cJSON_AddTrueToObject(out, "voice");
        cJSON_AddNumberToObject(out, "audio_bytes", (double)j->audio.len);
    }
    return out;
}

/* Everything after the request's own checks; replies exactly once. */
static void suggest(struct ai *ai, struct cm_rpc_call *call, struct job *j, const char *conv,
                    bool voice)
{
    struct cm_httpc *http = call->worker < AI_WORKERS ? ai->http[call->worker] : NULL;
    struct ai_record rec = {0};
    char code[32], why[512], created[40];
    int64_t t0 = ai_breaker_now_ms(), t_context, t_store;
    bool refused_only;
    int rc;

    rc = ai_context_fetch(ai->svc.nats, call->actor, conv, (long)ai->cfg->context_chars,
                          CONTEXT_TIMEOUT_MS, &j->ctx, code, sizeof(code), why, sizeof(why));
    if (rc != CM_OK) {
        if (strcmp(code, "refused") == 0)
            cm_metrics_inc(ai->m_refused, 1);
        cm_rpc_fail(call, code, "%s", why);
        return;
    }
    /* The router refuses for a workspace with AI off; should it ever not, neither do we. */
    if (!j->ctx.ai) {
        cm_metrics_inc(ai->m_refused, 1);
        cm_rpc_fail(call, "refused", "AI assistance is off for this conversation's workspace");
        return;
    }
    /* Exact ids (no ':'): they become the draft's key id, ws:<ws>:int:<integration>. */
    if (!cm_id_valid(j->ctx.workspace_id, 128) ||
        (j->ctx.integration_id != NULL && !cm_id_valid(j->ctx.integration_id, 128))) {
        cm_rpc_fail(call, "internal", "conversation-router answered malformed ids");
        return;
    }
    t_context = ai_breaker_now_ms() - t0;
    prepare_messages(ai, j);
    rc = ai_prompt_build(&j->prompt, j->msgs, j->ctx.nmsgs, (size_t)ai->cfg->context_chars);
    if (rc == CM_NOTFOUND) {
        cm_metrics_inc(ai->m_no_text, 1);
        cm_rpc_fail(call, "conflict",
                    "conversation %s has no text to reply to (no messages, or attachments only)",
                    conv);
        return;
    }
    if (rc != CM_OK) {
        cm_rpc_fail(call, "internal", "the prompt could not be built");
        return;
    }
    if (!ask_providers(ai, http, j, &refused_only)) {
        cm_metrics_inc(ai->m_failed, 1);
        cm_rpc_fail(call, refused_only ? "refused" : "unavailable", "no suggestion: %s",
                    j->reasons);
        return;
    }
    if (voice && speak(ai, http, j) != AI_FAIL_NONE) {
        cm_metrics_inc(ai->m_failed, 1);
        cm_rpc_fail(call, "unavailable", "no suggestion: the draft could not be voiced: %s",
                    j->reasons);
        return;
    }

    rec.id = j->id;
    rec.ctx = &j->ctx;
    rec.actor = call->actor;
    rec.provider = ai->providers[j->provider].name;
    rec.draft = &j->draft;
    rec.audio = voice ? j->audio.data : NULL;
    rec.audio_len = voice ? j->audio.len : 0;
    rec.audio_type = voice ? j->audio_type : NULL;
    rec.latency_ms = j->latency_ms;
    rec.masked = ai_mask_total(&j->counts);
    t_store = ai_breaker_now_ms();
    rc = ai_store_suggestion(ai, call->pg, &rec, created, sizeof(created));
    t_store = ai_breaker_now_ms() - t_store;
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the suggestion could not be stored (%s); retry",
                    cm_err_str(rc));
        return;
    }
    cm_metrics_inc(ai->m_suggestions[ai->providers[j->provider].kind], 1);
    if (voice)
        cm_metrics_inc(ai->m_voice, 1);
    /* Where the time went: the router's context, the provider, storing; the rest is ours. */
    CM_INFO_ID(j->id,
               "suggestion for conversation %s by %s: %s %s, tokens %ld/%ld, %d messages "
               "(%d dropped by the budget), %d items masked%s; %lld ms in all: context %lld, "
               "provider %ld, store %lld",
               conv, call->actor, rec.provider, j->draft.model, j->draft.prompt_tokens,
               j->draft.completion_tokens, j->prompt.used, j->prompt.dropped, rec.masked,
               voice ? ", voiced" : "", (long long)(ai_breaker_now_ms() - t0), (long long)t_context,
               j->latency_ms, (long long)t_store);
    cm_rpc_reply(call, result_of(ai, j, voice));
}

static void on_suggest(struct cm_rpc_call *call, void *arg)
{
    struct ai *ai = arg;
    const char *conv = cm_rpc_str(call, "conversation_id");
    const cJSON *voice = cJSON_GetObjectItemCaseSensitive(call->req, "voice");
    int64_t t0 = ai_breaker_now_ms();
    struct job j;

    if (!ai_valid_id(conv, 128) || (voice != NULL && !cJSON_IsBool(voice))) {
        cm_rpc_fail(call, "invalid", "conversation_id is required; voice, when given, is a bool");
        return;
    }
    /* Checked before anything is read: no content is fetched for a request that cannot go. */
    if (cJSON_IsTrue(voice) && !ai->voice_on) {
        cm_rpc_fail(call, "refused",
                    "voice drafts are not available: ELEVENLABS_API_KEY is not set on ai-suggest");
        return;
    }
    if (ai->nproviders == 0) {
        cm_rpc_fail(call, "unavailable",
                    "no AI provider is configured: set OPENAI_API_KEY or GEMINI_API_KEY for "
                    "a provider in AI_PROVIDERS (%s)",
                    ai->cfg->providers);
        return;
    }
    job_init(&j);
    new_id(j.id);
    suggest(ai, call, &j, conv, cJSON_IsTrue(voice));
    job_cleanup(&j);
    cm_metrics_observe(ai->m_seconds, (double)(ai_breaker_now_ms() - t0) / 1000.0);
}

void ai_suggest_register(struct ai *ai)
{
    cm_rpc_handle(ai->provider_rpc, "ai.suggest", on_suggest, ai);
}
