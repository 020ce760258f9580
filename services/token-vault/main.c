/*
 * token-vault: Meta access tokens, encrypted at rest, refreshed before they expire,
 * served over NATS to conversation-router and ai-suggest only, and crypto-shredded when an
 * integration ends. Settings, the loop and signals live here; api.c serves the requests,
 * meta.c talks to the Graph API, store.c owns the schema, refresh.c the scheduler.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/outbox.h"
#include "vault.h"

extern const char doms_embed_001_init[];
extern const char doms_embed_002_asid_blind[];
extern const char doms_embed_003_subscription[];

static const struct cm_migration migrations[] = {
    {1, "init", doms_embed_001_init},
    {2, "data keys", cm_keyring_schema_sql},
    {3, "outbox", CM_OUTBOX_SCHEMA_SQL},
    {4, "asid blind index", doms_embed_002_asid_blind},
    {5, "webhook subscription", doms_embed_003_subscription},
};

static const struct cm_setting settings[] = {
    CM_BASE_SETTINGS(struct vault_cfg, base),
    CM_KEK_SETTING(struct vault_cfg, base),
    {"TOKEN_VAULT_HTTP_LISTEN", CM_SET_LISTEN, offsetof(struct vault_cfg, listen), "127.0.0.1:8082",
     0, 0, 0, NULL, "address of /healthz, /readyz, /metrics"},
    {"META_APP_ID", CM_SET_STR, offsetof(struct vault_cfg, app_id), NULL, 1, 0, 0, NULL,
     "the Meta app's id"},
    {"META_APP_SECRET", CM_SET_SECRET, offsetof(struct vault_cfg, app_secret), NULL, 1, 0, 0, NULL,
     "the Meta app secret, for token exchange"},
    {"META_GRAPH_URL", CM_SET_URL, offsetof(struct vault_cfg, graph_url),
     "https://graph.facebook.com", 0, 0, 0, NULL, "Facebook Graph API base URL"},
    {"INSTAGRAM_GRAPH_URL", CM_SET_URL, offsetof(struct vault_cfg, ig_graph_url),
     "https://graph.instagram.com", 0, 0, 0, NULL, "Instagram Graph API base URL"},
    {"META_GRAPH_VERSION", CM_SET_STR, offsetof(struct vault_cfg, graph_version), "v23.0", 0, 0, 0,
     NULL, "Graph API version in paths"},
    {"TOKEN_REFRESH_BEFORE", CM_SET_DURATION, offsetof(struct vault_cfg, refresh_before), "10d", 0,
     3600, 59 * 86400, NULL, "refresh an Instagram token when it expires within this"},
    {"BACKFILL_AFTER_SILENCE", CM_SET_DURATION, offsetof(struct vault_cfg, backfill_silence), "6h",
     0, 1, 7 * 86400, NULL,
     "backfill an account that received no message for this long while a contact wrote within "
     "7 days"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))
#define WORKERS   8
/* The Meta lane's workers: a request there may wait 10 s on Meta, and however many do,
 * tokens are still served by the others. */
#define META_WORKERS 4

static void register_metrics(struct vault *v)
{
    struct cm_metrics *m = v->svc.metrics;

    v->m_served = cm_metrics_counter(m, "vault_tokens_served_total", NULL,
                                     "Tokens served to conversation-router and ai-suggest");
    v->m_refused = cm_metrics_counter(m, "vault_tokens_refused_total", NULL,
                                      "Token requests refused (requester or status)");
    v->m_refreshed =
        cm_metrics_counter(m, "vault_tokens_refreshed_total", NULL, "Instagram tokens refreshed");
    v->m_reauth = cm_metrics_counter(m, "vault_integrations_needs_reauth_total", NULL,
                                     "Integrations marked needs_reauth");
}

static int ensure_events_stream(struct cm_nats *n, void *arg)
{
    /* The latest state of each integration, kept until its purge. */
    static const struct cm_stream_spec spec = {
        .name = VAULT_EVENTS_STREAM,
        .subjects = VAULT_EVENTS_SUBJECTS,
        .dup_window_s = 10 * 60,
        .max_per_subject = 1,
    };

    (void)arg;
    return cm_nats_stream_declare(n, &spec);
}

int main(int argc, char **argv)
{
    static struct vault_cfg cfg;
    static struct vault v;
    int rc;

    cm_service_configure(argc, argv, VAULT_SERVICE, settings, NSETTINGS, &cfg);
    v.cfg = &cfg;
    if (cm_service_keyring(VAULT_SERVICE, cfg.base.kek_file, &v.keyring) != CM_OK) {
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return CM_EXIT_CONFIG;
    }
    rc = cm_pg_migrate_wait(cfg.base.database_url, VAULT_SCHEMA, migrations,
                            sizeof(migrations) / sizeof(migrations[0]));
    if (rc == CM_OK)
        rc = cm_service_init(&v.svc, VAULT_SERVICE, VAULT_SCHEMA, &cfg.base, cfg.listen, 0);
    if (rc == CM_OK) {
        register_metrics(&v);
        cm_nats_on_connect(v.svc.nats, ensure_events_stream, &v);
        cm_nats_on_connect(v.svc.nats, cm_audit_stream_ensure, NULL);
        rc = cm_rpc_create(&v.rpc, v.svc.nats, VAULT_SERVICE, cfg.base.database_url, VAULT_SCHEMA,
                           WORKERS, v.svc.metrics);
    }
    if (rc == CM_OK)
        rc = cm_rpc_create_lane(&v.meta_rpc, v.svc.nats, VAULT_SERVICE, "meta",
                                cfg.base.database_url, VAULT_SCHEMA, META_WORKERS, v.svc.metrics);
    if (rc == CM_OK) {
        /* See vault_begin(): only the token read's audit row commits without the flush. */
        cm_rpc_session(v.rpc, "SET synchronous_commit TO off");
        cm_rpc_session(v.meta_rpc, "SET synchronous_commit TO off");
        vault_api_register(&v);
        vault_purge_register(&v);
        rc = cm_rpc_start(v.rpc);
    }
    if (rc == CM_OK)
        rc = cm_rpc_start(v.meta_rpc);
    if (rc == CM_OK)
        rc = cm_outbox_start(&v.outbox, v.svc.nats, cfg.base.database_url, VAULT_SCHEMA,
                             v.svc.metrics);
    if (rc == CM_OK)
        rc = vault_refresher_start(&v);
    if (rc == CM_OK)
        rc = cm_service_run(&v.svc);
    /* Stop taking requests first, then the threads that publish, then NATS itself. */
    cm_rpc_destroy(v.rpc);
    cm_rpc_destroy(v.meta_rpc);
    vault_refresher_stop(&v);
    cm_outbox_destroy(v.outbox);
    cm_service_cleanup(&v.svc);
    vault_asid_forget_key();
    cm_keyring_destroy(v.keyring);
    cm_settings_cleanup(settings, NSETTINGS, &cfg);
    return cm_service_exit_status(rc);
}
