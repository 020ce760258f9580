/*
 * conversation-router: Meta's events into encrypted conversations, assigned to agents;
 * replies out through the Send API within the messaging window. Settings, the loop and
 * signals live here; inbound.c and store.c consume the events, routes.c keeps the routes,
 * assign.c assigns, api*.c serve the requests, sender.c sends, purge.c deletes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/outbox.h"
#include "router.h"

extern const char doms_embed_001_init[];
extern const char doms_embed_002_contact_index[];
extern const char doms_embed_003_message_integration[];
extern const char doms_embed_004_member_load[];
extern const char doms_embed_005_inbound_message[];
extern const char doms_embed_006_thread[];
extern const char doms_embed_007_profile[];
extern const char doms_embed_008_backfill[];
extern const char doms_embed_009_media[];
extern const char doms_embed_010_upload[];
extern const char doms_embed_011_media_link[];
extern const char doms_embed_012_media_segments[];
extern const char doms_embed_013_profile_claim[];
extern const char doms_embed_014_media_object[];
extern const char doms_embed_015_media_unsegmented[];

static const struct cm_migration migrations[] = {
    {1, "init", doms_embed_001_init},
    {2, "data keys", cm_keyring_schema_sql},
    {3, "outbox", CM_OUTBOX_SCHEMA_SQL},
    {4, "contact index", doms_embed_002_contact_index},
    {5, "message integration", doms_embed_003_message_integration},
    {6, "member load", doms_embed_004_member_load},
    {7, "inbound message", doms_embed_005_inbound_message},
    {8, "thread control", doms_embed_006_thread},
    {9, "profile", doms_embed_007_profile},
    {10, "backfill", doms_embed_008_backfill},
    {11, "media", doms_embed_009_media},
    {12, "upload", doms_embed_010_upload},
    {13, "media link", doms_embed_011_media_link},
    {14, "media segments", doms_embed_012_media_segments},
    {15, "profile claim", doms_embed_013_profile_claim},
    {16, "media object", doms_embed_014_media_object},
    {17, "media unsegmented", doms_embed_015_media_unsegmented},
};

static const struct cm_setting settings[] = {
    CM_BASE_SETTINGS(struct router_cfg, base),
    CM_KEK_SETTING(struct router_cfg, base),
    {"CONVERSATION_ROUTER_HTTP_LISTEN", CM_SET_LISTEN, offsetof(struct router_cfg, listen),
     "127.0.0.1:8081", 0, 0, 0, NULL, "address of /healthz, /readyz, /metrics"},
    {"META_GRAPH_URL", CM_SET_URL, offsetof(struct router_cfg, graph_url),
     "https://graph.facebook.com", 0, 0, 0, NULL, "Facebook Graph API base URL (Messenger)"},
    {"INSTAGRAM_GRAPH_URL", CM_SET_URL, offsetof(struct router_cfg, ig_graph_url),
     "https://graph.instagram.com", 0, 0, 0, NULL, "Instagram Graph API base URL"},
    {"META_GRAPH_VERSION", CM_SET_STR, offsetof(struct router_cfg, graph_version), "v23.0", 0, 0, 0,
     NULL, "Graph API version in paths"},
    {"META_APP_ID", CM_SET_STR, offsetof(struct router_cfg, app_id), NULL, 0, 0, 0, NULL,
     "the app's id: which app a handover webhook names as the thread's new owner"},
    {"SEND_MAX_ATTEMPTS", CM_SET_INT, offsetof(struct router_cfg, send_max_attempts), "8", 0, 1,
     100, NULL, "attempts of a reply before it fails and is dead-lettered"},
    {"PROFILE_RATE", CM_SET_INT, offsetof(struct router_cfg, profile_rate), "60", 0, 0, 60000, NULL,
     "contacts' profiles fetched a minute, every replica together (0: none)"},
    {"PROFILE_REFRESH", CM_SET_DURATION, offsetof(struct router_cfg, profile_refresh), "3d", 0, 1,
     30 * 86400, NULL, "a contact's profile is fetched again after this"},
    {"PROFILE_REFUSED_RETRY", CM_SET_DURATION, offsetof(struct router_cfg, profile_refused_retry),
     "7d", 0, 1, 90 * 86400, NULL, "after Meta refused a profile, it is asked again after this"},
    {"PROFILE_BACKOFF", CM_SET_DURATION, offsetof(struct router_cfg, profile_backoff), "1m", 0, 1,
     3600, NULL,
     "first wait after Meta throttled or failed a profile fetch (doubling, 1h at most)"},
    {"MEDIA_STORE", CM_SET_ENUM, offsetof(struct router_cfg, media_store), "postgres", 0, 0, 0,
     "postgres|s3", "where attachments' bytes are kept, sealed"},
    {"MEDIA_MAX_BYTES", CM_SET_SIZE, offsetof(struct router_cfg, media_max_bytes), "25MiB", 0, 1024,
     100LL * 1024 * 1024, NULL, "an attachment larger than this is not kept"},
    {"MEDIA_TIMEOUT", CM_SET_DURATION, offsetof(struct router_cfg, media_timeout), "60s", 0, 1,
     3600, NULL, "the limit of one media download or S3 request"},
    {"S3_ENDPOINT", CM_SET_URL, offsetof(struct router_cfg, s3_endpoint), NULL, 0, 0, 0, NULL,
     "S3-compatible endpoint (path-style), required with MEDIA_STORE=s3"},
    {"S3_BUCKET", CM_SET_STR, offsetof(struct router_cfg, s3_bucket), NULL, 0, 0, 0, NULL,
     "the bucket of the media"},
    {"S3_REGION", CM_SET_STR, offsetof(struct router_cfg, s3_region), "us-east-1", 0, 0, 0, NULL,
     "the region signed into each request"},
    {"S3_ACCESS_KEY_ID", CM_SET_STR, offsetof(struct router_cfg, s3_access_key), NULL, 0, 0, 0,
     NULL, "the access key of the media bucket"},
    {"PUBLIC_BASE_URL", CM_SET_URL, offsetof(struct router_cfg, public_base_url),
     "http://localhost:8080", 0, 0, 0, NULL,
     "webhook-ingest's public URL (as ingest's): Instagram fetches a reply's file from it"},
    {"S3_SECRET_ACCESS_KEY", CM_SET_SECRET, offsetof(struct router_cfg, s3_secret_key), NULL, 0, 0,
     0, NULL, "its secret key"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))
#define WORKERS   4
/* The Meta lane's workers (router.conversation.take waits on Meta's take_thread_control). */
#define META_WORKERS 2
/* The media lane's workers: the requests that move a file's bytes (attachment.get and
 * media.public read them, from S3 with MEDIA_STORE=s3; upload writes a reply's chunks). */
#define MEDIA_WORKERS 2

static void register_metrics(struct router *r)
{
    struct cm_metrics *m = r->svc.metrics;
    const char *h = "Inbound Meta events, by outcome";

    r->m_stored = cm_metrics_counter(m, "router_events_total", "outcome=\"stored\"", h);
    r->m_duplicate = cm_metrics_counter(m, "router_events_total", "outcome=\"duplicate\"", h);
    r->m_unrouted = cm_metrics_counter(m, "router_events_total", "outcome=\"unrouted\"", h);
    r->m_ignored = cm_metrics_counter(m, "router_events_total", "outcome=\"ignored\"", h);
    r->m_dead = cm_metrics_counter(m, "router_dead_letters_total", NULL,
                                   "Events and replies set aside as dead letters");
    h = "Replies to Meta's Send API, by outcome";
    r->m_sent = cm_metrics_counter(m, "router_replies_total", "outcome=\"sent\"", h);
    r->m_send_failed = cm_metrics_counter(m, "router_replies_total", "outcome=\"failed\"", h);
    r->m_send_retried = cm_metrics_counter(m, "router_replies_total", "outcome=\"retried\"", h);
    h = "Contacts' profile fetches from Meta's User Profile API, by outcome";
    r->m_profile_fetched = cm_metrics_counter(m, "router_profiles_total", "outcome=\"fetched\"", h);
    r->m_profile_refused = cm_metrics_counter(m, "router_profiles_total", "outcome=\"refused\"", h);
    r->m_profile_throttled =
        cm_metrics_counter(m, "router_profiles_total", "outcome=\"throttled\"", h);
    r->m_profile_failed = cm_metrics_counter(m, "router_profiles_total", "outcome=\"failed\"", h);
    h = "Inbound attachments downloaded from Meta's CDN, by outcome";
    r->m_media_stored = cm_metrics_counter(m, "router_media_total", "outcome=\"stored\"", h);
    r->m_media_unavailable =
        cm_metrics_counter(m, "router_media_total", "outcome=\"unavailable\"", h);
    r->m_media_retried = cm_metrics_counter(m, "router_media_total", "outcome=\"retried\"", h);
    r->m_media_resealed = cm_metrics_counter(
        m, "router_media_resealed_total", NULL,
        "Attachments stored in S3 in one piece, sealed again in segments under a new key");
}

/* The router's own streams: the send work queue, dead letters, assignment events. */
static int ensure_streams(struct cm_nats *n, void *arg)
{
    static const struct cm_stream_spec specs[] = {
        {.name = ROUTER_SEND_STREAM,
         .subjects = ROUTER_SEND_SUBJECTS,
         .dup_window_s = 10 * 60,
         .work_queue = true},
        {.name = ROUTER_DEAD_STREAM, .subjects = ROUTER_DEAD_SUBJECTS, .max_age_s = 30 * 86400},
        {.name = ROUTER_EVENTS_STREAM,
         .subjects = ROUTER_EVENTS_SUBJECTS,
         .max_age_s = 7 * 86400,
         .dup_window_s = 10 * 60},
    };
    int rc = CM_OK;

    (void)arg;
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]) && rc == CM_OK; i++)
        rc = cm_nats_stream_declare(n, &specs[i]);
    return rc;
}

static int start(struct router *r)
{
    int rc;

    register_metrics(r);
    cm_nats_on_connect(r->svc.nats, ensure_streams, r);
    cm_nats_on_connect(r->svc.nats, cm_audit_stream_ensure, NULL);
    rc = router_keys_create(&r->keys);
    if (rc == CM_OK)
        rc = router_media_create(r);
    if (rc == CM_OK)
        rc = cm_rpc_create(&r->rpc, r->svc.nats, ROUTER_SERVICE, r->cfg->base.database_url,
                           ROUTER_SCHEMA, WORKERS, r->svc.metrics);
    if (rc == CM_OK)
        rc = cm_rpc_create_lane(&r->meta_rpc, r->svc.nats, ROUTER_SERVICE, "meta",
                                r->cfg->base.database_url, ROUTER_SCHEMA, META_WORKERS,
                                r->svc.metrics);
    if (rc == CM_OK)
        rc = cm_rpc_create_lane(&r->media_rpc, r->svc.nats, ROUTER_SERVICE, "media",
                                r->cfg->base.database_url, ROUTER_SCHEMA, MEDIA_WORKERS,
                                r->svc.metrics);
    if (rc == CM_OK) {
        router_api_register(r);
        router_api_conv_register(r);
        router_api_upload_register(r);
        router_api_list_register(r);
        router_api_thread_register(r);
        router_purge_register(r);
        router_backfill_register(r);
        router_api_media_register(r);
        rc = cm_rpc_start(r->rpc);
    }
    if (rc == CM_OK)
        rc = cm_rpc_start(r->meta_rpc);
    if (rc == CM_OK)
        rc = cm_rpc_start(r->media_rpc);
    if (rc == CM_OK)
        rc = cm_outbox_start(&r->outbox, r->svc.nats, r->cfg->base.database_url, ROUTER_SCHEMA,
                             r->svc.metrics);
    if (rc == CM_OK)
        rc = router_routes_start(r);
    if (rc == CM_OK)
        rc = router_media_fetch_start(r); /* before inbound, which wakes it */
    if (rc == CM_OK)
        rc = router_inbound_start(r);
    if (rc == CM_OK)
        rc = router_senders_start(r);
    if (rc == CM_OK)
        rc = router_profiles_start(r);
    if (rc == CM_OK)
        rc = router_backfill_start(r);
    return rc;
}

/* Stops taking work first, then the threads that publish, then NATS itself. */
static void stop(struct router *r)
{
    cm_rpc_destroy(r->rpc); /* before the media lane, which it forwards replies with a file to */
    cm_rpc_destroy(r->meta_rpc);
    cm_rpc_destroy(r->media_rpc);
    router_profiles_stop(r);
    router_backfill_stop(r);
    router_inbound_stop(r);
    router_media_fetch_stop(r);
    cm_consumer_destroy(r->routes);
    cm_pg_destroy(r->routes_pg);
    for (int i = 0; i < 2; i++)
        cm_consumer_destroy(r->senders[i]);
    router_senders_free(r);
    cm_outbox_destroy(r->outbox);
    router_keys_destroy(r->keys);
    router_media_destroy(r);
}

int main(int argc, char **argv)
{
    static struct router_cfg cfg;
    static struct router r;
    int rc;

    cm_service_configure(argc, argv, ROUTER_SERVICE, settings, NSETTINGS, &cfg);
    r.cfg = &cfg;
    if (cm_service_keyring(ROUTER_SERVICE, cfg.base.kek_file, &r.keyring) != CM_OK) {
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return CM_EXIT_CONFIG;
    }
    rc = cm_pg_migrate_wait(cfg.base.database_url, ROUTER_SCHEMA, migrations,
                            sizeof(migrations) / sizeof(migrations[0]));
    if (rc == CM_OK)
        rc = cm_service_init(&r.svc, ROUTER_SERVICE, ROUTER_SCHEMA, &cfg.base, cfg.listen, 0);
    if (rc == CM_OK)
        rc = start(&r);
    if (rc == CM_OK)
        rc = cm_service_run(&r.svc);
    stop(&r);
    cm_service_cleanup(&r.svc);
    cm_keyring_destroy(r.keyring);
    cm_settings_cleanup(settings, NSETTINGS, &cfg);
    return cm_service_exit_status(rc);
}
