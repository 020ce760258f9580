/*
 * ai-suggest: reply drafts from OpenAI or Gemini for workspaces that turned AI on (privacy
 * policy, section 9). Settings, start-up, the loop and signals live here; see ai.h for the
 * other files.
 */
#include <malloc.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ai.h"
#include "common/audit.h"
#include "common/log.h"
#include "common/outbox.h"

extern const char doms_embed_001_init[];
extern const char doms_embed_002_key_id[];

static const struct cm_migration migrations[] = {
    {1, "init", doms_embed_001_init},
    {2, "data keys", cm_keyring_schema_sql},
    {3, "outbox", CM_OUTBOX_SCHEMA_SQL},
    {4, "key ids", doms_embed_002_key_id},
};

static const struct cm_setting settings[] = {
    CM_BASE_SETTINGS(struct ai_cfg, base),
    CM_KEK_SETTING(struct ai_cfg, base),
    {"AI_SUGGEST_HTTP_LISTEN", CM_SET_LISTEN, offsetof(struct ai_cfg, listen), "127.0.0.1:8084", 0,
     0, 0, NULL, "address of /healthz, /readyz, /metrics"},
    {"AI_PROVIDERS", CM_SET_LIST, offsetof(struct ai_cfg, providers), "openai,gemini", 0, 0, 0,
     "openai|gemini", "providers to try, in order (one without its API key is skipped)"},
    {"OPENAI_API_KEY", CM_SET_SECRET, offsetof(struct ai_cfg, openai_key), NULL, 0, 0, 0, NULL,
     "OpenAI API key"},
    {"OPENAI_BASE_URL", CM_SET_URL, offsetof(struct ai_cfg, openai_url),
     "https://api.openai.com/v1", 0, 0, 0, NULL, "OpenAI API base URL"},
    {"OPENAI_MODEL", CM_SET_STR, offsetof(struct ai_cfg, openai_model), "gpt-4o-mini", 0, 0, 0,
     NULL, "OpenAI chat model"},
    {"GEMINI_API_KEY", CM_SET_SECRET, offsetof(struct ai_cfg, gemini_key), NULL, 0, 0, 0, NULL,
     "Google Gemini API key"},
    {"GEMINI_BASE_URL", CM_SET_URL, offsetof(struct ai_cfg, gemini_url),
     "https://generativelanguage.googleapis.com/v1beta", 0, 0, 0, NULL, "Gemini API base URL"},
    {"GEMINI_MODEL", CM_SET_STR, offsetof(struct ai_cfg, gemini_model), "gemini-2.5-flash", 0, 0, 0,
     NULL, "Gemini model"},
    {"AI_TIMEOUT", CM_SET_DURATION, offsetof(struct ai_cfg, timeout), "20s", 0, 1, 300, NULL,
     "one provider's call, retries and Retry-After waits included"},
    {"ELEVENLABS_API_KEY", CM_SET_SECRET, offsetof(struct ai_cfg, eleven_key), NULL, 0, 0, 0, NULL,
     "ElevenLabs API key: enables voice drafts (suggest --voice)"},
    {"ELEVENLABS_BASE_URL", CM_SET_URL, offsetof(struct ai_cfg, eleven_url),
     "https://api.elevenlabs.io", 0, 0, 0, NULL, "ElevenLabs API base URL"},
    {"ELEVENLABS_VOICE_ID", CM_SET_STR, offsetof(struct ai_cfg, eleven_voice),
     "21m00Tcm4TlvDq8ikWAM", 0, 0, 0, NULL, "ElevenLabs voice"},
    {"ELEVENLABS_MODEL", CM_SET_STR, offsetof(struct ai_cfg, eleven_model),
     "eleven_multilingual_v2", 0, 0, 0, NULL, "ElevenLabs model_id"},
    {"AI_CONTEXT_CHARS", CM_SET_INT, offsetof(struct ai_cfg, context_chars), "4000", 0, 200, 100000,
     NULL, "characters of the newest messages sent to the model"},
    {"AI_BREAKER_FAILURES", CM_SET_INT, offsetof(struct ai_cfg, breaker_failures), "5", 0, 1, 1000,
     NULL, "consecutive failures that open a provider's circuit"},
    {"AI_BREAKER_COOLDOWN", CM_SET_DURATION, offsetof(struct ai_cfg, breaker_cooldown), "30s", 0, 1,
     3600, NULL, "how long an open circuit skips its provider"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

/*
 * cJSON holds message content and drafts while a request is served: its allocations are
 * zeroed when freed, so that freed heap does not keep them.
 */
static void *wiping_malloc(size_t n)
{
    return cm_xmalloc(n);
}

static void wiping_free(void *p)
{
    if (p != NULL)
        sodium_memzero(p, malloc_usable_size(p));
    free(p);
}

/* True for a name that may go into a URL path as is. */
static bool plain_name(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 128)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.' || *s == '/'))
            return false;
    }
    return true;
}

/* Sets up the providers of AI_PROVIDERS that have a key; refuses a malformed list. */
static int setup_providers(struct ai *ai, const struct ai_cfg *cfg, char *err, size_t cap)
{
    char list[128], *save = NULL;
    bool seen[AI_PROVIDER_KINDS] = {false};

    snprintf(list, sizeof(list), "%s", cfg->providers);
    for (char *w = strtok_r(list, ", ", &save); w != NULL; w = strtok_r(NULL, ", ", &save)) {
        struct ai_provider *p = &ai->providers[ai->nproviders];
        bool openai = strcmp(w, "openai") == 0;
        enum ai_provider_kind kind = openai ? AI_PROVIDER_OPENAI : AI_PROVIDER_GEMINI;
        const char *key = openai ? cfg->openai_key : cfg->gemini_key;
        const char *model = openai ? cfg->openai_model : cfg->gemini_model;

        if (seen[kind]) {
            snprintf(err, cap, "AI_PROVIDERS: \"%s\" is listed twice", w);
            return CM_INVALID;
        }
        seen[kind] = true;
        if (!plain_name(model)) {
            snprintf(err, cap, "%s: \"%s\" is not a model name",
                     openai ? "OPENAI_MODEL" : "GEMINI_MODEL", model);
            return CM_INVALID;
        }
        if (key == NULL) {
            CM_WARN("%s is listed in AI_PROVIDERS but %s is not set: it is skipped", w,
                    openai ? "OPENAI_API_KEY" : "GEMINI_API_KEY");
            continue;
        }
        p->kind = kind;
        p->name = openai ? "openai" : "gemini";
        p->base_url = openai ? cfg->openai_url : cfg->gemini_url;
        p->key = key;
        p->model = model;
        p->timeout_ms = (long)cfg->timeout * 1000;
        ai_breaker_init(&ai->breakers[ai->nproviders], (int)cfg->breaker_failures,
                        cfg->breaker_cooldown * 1000);
        ai->nproviders++;
        CM_INFO("provider %d: %s, model %s", ai->nproviders, p->name, p->model);
    }
    if (ai->nproviders == 0)
        CM_WARN("no provider of AI_PROVIDERS has an API key: every suggestion will be refused");
    if (cfg->eleven_key != NULL) {
        if (!plain_name(cfg->eleven_voice) || strchr(cfg->eleven_voice, '/') != NULL) {
            snprintf(err, cap, "ELEVENLABS_VOICE_ID: \"%s\" is not a voice id", cfg->eleven_voice);
            return CM_INVALID;
        }
        ai->voice_on = true;
        ai->voice.base_url = cfg->eleven_url;
        ai->voice.key = cfg->eleven_key;
        ai->voice.voice_id = cfg->eleven_voice;
        ai->voice.model = cfg->eleven_model;
        ai->voice.timeout_ms = (long)cfg->timeout * 1000;
    }
    return CM_OK;
}

static void register_metrics(struct ai *ai)
{
    struct cm_metrics *m = ai->svc.metrics;
    static const char *const names[AI_PROVIDER_KINDS] = {"openai", "gemini"};

    for (int k = 0; k < AI_PROVIDER_KINDS; k++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "provider=\"%s\"", names[k]);
        ai->m_suggestions[k] = cm_metrics_counter(m, "ai_suggestions_total", labels,
                                                  "Suggestions stored, by provider");
        ai->m_latency[k] = cm_metrics_histogram(m, "ai_provider_seconds", labels,
                                                "Provider calls that gave a draft, in seconds");
        ai->m_skipped[k] = cm_metrics_counter(m, "ai_provider_skipped_total", labels,
                                              "Calls skipped because the circuit was open");
        ai->m_breaker[k] = cm_metrics_gauge(m, "ai_provider_circuit_open", labels,
                                            "1 from the circuit's opening until a probe closes it");
    }
    ai->m_refused = cm_metrics_counter(m, "ai_suggest_refused_total", NULL,
                                       "Suggestions refused by conversation-router (AI off, role)");
    ai->m_no_text = cm_metrics_counter(m, "ai_suggest_no_text_total", NULL,
                                       "Conversations without text to reply to");
    ai->m_failed = cm_metrics_counter(m, "ai_suggest_failed_total", NULL,
                                      "Suggestions no provider could draft");
    ai->m_masked = cm_metrics_counter(m, "ai_masked_items_total", NULL,
                                      "Personal data items masked before sending out");
    ai->m_voice = cm_metrics_counter(m, "ai_voice_total", NULL, "Voiced suggestions stored");
    ai->m_seconds = cm_metrics_histogram(m, "ai_suggest_seconds", NULL,
                                         "ai.suggest requests from dequeue to reply, in seconds");
}

static int ensure_events_stream(struct cm_nats *n, void *arg)
{
    /* Notifications for screens that are open now; the suggestion itself is in the schema. */
    static const struct cm_stream_spec spec = {
        .name = AI_EVENTS_STREAM,
        .subjects = AI_EVENTS_SUBJECTS,
        .max_age_s = 7 * 86400,
        .dup_window_s = 10 * 60,
    };

    (void)arg;
    return cm_nats_stream_declare(n, &spec);
}

/* A new KEK version in the file: move every data key under it, the drafts untouched. */
static void rewrap_keys(struct ai *ai, const struct ai_cfg *cfg)
{
    struct cm_pg *pg = NULL;
    long rewrapped = 0;

    if (cm_pg_connect(&pg, cfg->base.database_url, AI_SCHEMA) == CM_OK &&
        cm_keyring_rewrap(ai->keyring, pg, &rewrapped) == CM_OK && rewrapped > 0)
        CM_INFO("re-wrapped %ld data keys under KEK version %d", rewrapped,
                cm_keyring_kek_version(ai->keyring));
    cm_pg_destroy(pg);
}

int main(int argc, char **argv)
{
    static struct ai_cfg cfg;
    static struct ai ai;
    cJSON_Hooks hooks = {wiping_malloc, wiping_free};
    char err[512];
    int rc;

    cm_service_configure(argc, argv, AI_SERVICE, settings, NSETTINGS, &cfg);
    cJSON_InitHooks(&hooks);
    ai.cfg = &cfg;
    if (setup_providers(&ai, &cfg, err, sizeof(err)) != CM_OK ||
        cm_keyring_load(&ai.keyring, cfg.base.kek_file, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "%s: %s\n", AI_SERVICE, err);
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return CM_EXIT_CONFIG;
    }
    rc = cm_pg_migrate_wait(cfg.base.database_url, AI_SCHEMA, migrations,
                            sizeof(migrations) / sizeof(migrations[0]));
    if (rc == CM_OK) {
        rewrap_keys(&ai, &cfg);
        rc = cm_service_init(&ai.svc, AI_SERVICE, AI_SCHEMA, &cfg.base, cfg.listen, 0);
    }
    for (int i = 0; rc == CM_OK && i < AI_WORKERS; i++)
        rc = cm_httpc_create(&ai.http[i]);
    if (rc == CM_OK) {
        register_metrics(&ai);
        cm_nats_on_connect(ai.svc.nats, ensure_events_stream, &ai);
        cm_nats_on_connect(ai.svc.nats, cm_audit_stream_ensure, NULL);
        rc = cm_rpc_create(&ai.rpc, ai.svc.nats, AI_SERVICE, cfg.base.database_url, AI_SCHEMA,
                           AI_READ_WORKERS, ai.svc.metrics);
    }
    /* However long the providers take, a suggestion is read and a purge done at once. */
    if (rc == CM_OK)
        rc = cm_rpc_create_lane(&ai.provider_rpc, ai.svc.nats, AI_SERVICE, "provider",
                                cfg.base.database_url, AI_SCHEMA, AI_WORKERS, ai.svc.metrics);
    if (rc == CM_OK) {
        ai_suggest_register(&ai);
        ai_purge_register(&ai);
        ai_read_register(&ai);
        rc = cm_rpc_start(ai.rpc);
    }
    if (rc == CM_OK)
        rc = cm_rpc_start(ai.provider_rpc);
    if (rc == CM_OK)
        rc = cm_outbox_start(&ai.outbox, ai.svc.nats, cfg.base.database_url, AI_SCHEMA,
                             ai.svc.metrics);
    if (rc == CM_OK)
        rc = cm_service_run(&ai.svc);
    /* Stop taking requests first (in-flight ones finish), then the relay, then NATS. */
    cm_rpc_destroy(ai.rpc);
    cm_rpc_destroy(ai.provider_rpc);
    cm_outbox_destroy(ai.outbox);
    cm_service_cleanup(&ai.svc);
    for (int i = 0; i < AI_WORKERS; i++)
        cm_httpc_destroy(ai.http[i]);
    for (int k = 0; k < ai.nproviders; k++)
        ai_breaker_cleanup(&ai.breakers[k]);
    cm_keyring_destroy(ai.keyring);
    cm_settings_cleanup(settings, NSETTINGS, &cfg);
    return cm_service_exit_status(rc);
}
