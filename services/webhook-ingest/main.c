/*
 * webhook-ingest: the front door Meta calls, on INGEST_LISTEN; /metrics is served only on
 * the internal WEBHOOK_INGEST_HTTP_LISTEN. Settings, the loop and signals live here;
 * the routes are in http.c and callbacks.c, the parsers in envelope.c and signed_request.c,
 * JetStream in publish.c and stream.c, requests to other services in ask.c.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/service.h"
#include "ask.h"
#include "ingest.h"

extern const char doms_embed_001_init[];

static const struct cm_migration migrations[] = {
    {1, "init", doms_embed_001_init},
};

static const struct cm_setting settings[] = {
    CM_BASE_SETTINGS(struct ingest_cfg, base),
    {"INGEST_LISTEN", CM_SET_LISTEN, offsetof(struct ingest_cfg, listen), "0.0.0.0:8080", 0, 0, 0,
     NULL, "public address Meta reaches: webhooks, callbacks, /healthz, /readyz; no /metrics"},
    {"WEBHOOK_INGEST_HTTP_LISTEN", CM_SET_LISTEN, offsetof(struct ingest_cfg, http_listen),
     "127.0.0.1:8085", 0, 0, 0, NULL, "internal address for /healthz, /readyz and /metrics"},
    {"META_APP_SECRET", CM_SET_SECRET, offsetof(struct ingest_cfg, app_secret), NULL, 1, 0, 0, NULL,
     "the Meta app secret that signs webhooks"},
    {"META_APP_SECRET_PREVIOUS", CM_SET_SECRET, offsetof(struct ingest_cfg, app_secret_previous),
     NULL, 0, 0, 0, NULL, "the previous app secret, accepted during a rotation"},
    {"META_VERIFY_TOKEN", CM_SET_SECRET, offsetof(struct ingest_cfg, verify_token), NULL, 1, 0, 0,
     NULL, "the verify token of the webhook subscription handshake"},
    {"PUBLIC_BASE_URL", CM_SET_URL, offsetof(struct ingest_cfg, public_base_url),
     "http://localhost:8080", 0, 0, 0, NULL, "public URL of this service, for status links"},
    {"INGEST_MAX_BODY", CM_SET_SIZE, offsetof(struct ingest_cfg, max_body), "4MiB", 0, 1024,
     64 * 1024 * 1024, NULL, "largest webhook body accepted; larger gets 413"},
    {"INGEST_MAX_EVENTS", CM_SET_INT, offsetof(struct ingest_cfg, max_events), "1000", 0, 1, 100000,
     NULL, "most events (messaging, standby, changes items) in one POST; more gets 413"},
    {"INGEST_MAX_CONNECTIONS", CM_SET_INT, offsetof(struct ingest_cfg, max_connections), "1024", 0,
     1, 1000000, NULL, "open connections on INGEST_LISTEN at most; more are closed at once"},
    {"INGEST_READ_TIMEOUT", CM_SET_DURATION, offsetof(struct ingest_cfg, read_timeout), "10s", 0, 1,
     300, NULL, "deadline for a request's headers and body on INGEST_LISTEN"},
    {"INGEST_TLS_CERT_FILE", CM_SET_STR, offsetof(struct ingest_cfg, tls_cert_file), NULL, 0, 0, 0,
     NULL, "PEM certificate chain: INGEST_LISTEN serves HTTPS only (with the key file)"},
    {"INGEST_TLS_KEY_FILE", CM_SET_STR, offsetof(struct ingest_cfg, tls_key_file), NULL, 0, 0, 0,
     NULL, "PEM private key of INGEST_TLS_CERT_FILE"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static void register_metrics(struct ingest *ing)
{
    struct cm_metrics *m = ing->svc.metrics;

    ing->m_bad_signature = cm_metrics_counter(m, "ingest_signature_failures_total", NULL,
                                              "POSTs refused for a missing or wrong signature");
    ing->m_published = cm_metrics_counter(m, "ingest_events_stored_total", NULL,
                                          "Events acknowledged by JetStream");
    ing->m_duplicates = cm_metrics_counter(m, "ingest_events_duplicate_total", NULL,
                                           "Events JetStream already held (Meta redeliveries)");
    ing->m_unavailable = cm_metrics_counter(m, "ingest_unavailable_total", NULL,
                                            "POSTs answered 503 because events were not stored");
    ing->m_latency = cm_metrics_histogram(m, "ingest_request_seconds", NULL,
                                          "Signed POST to answer, in seconds");
    ing->m_inflight = cm_metrics_gauge(m, "ingest_inflight_requests", NULL,
                                       "POSTs waiting for JetStream acknowledgements");
}

/*
 * Loads the TLS certificate and key when set, before anything else starts: both or neither,
 * and files that load. A refusal is one line and exit CM_EXIT_CONFIG, like a bad setting.
 */
static void load_tls(const struct ingest_cfg *cfg, struct ssl_ctx_st **out)
{
    char err[512];

    *out = NULL;
    if (cfg->tls_cert_file == NULL && cfg->tls_key_file == NULL)
        return;
    if (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL) {
        fprintf(stderr, "webhook-ingest: %s is set without %s: give both for HTTPS, or neither\n",
                cfg->tls_cert_file ? "INGEST_TLS_CERT_FILE" : "INGEST_TLS_KEY_FILE",
                cfg->tls_cert_file ? "INGEST_TLS_KEY_FILE" : "INGEST_TLS_CERT_FILE");
        exit(CM_EXIT_CONFIG);
    }
    if (cm_httpd_tls_create(out, cfg->tls_cert_file, cfg->tls_key_file, err, sizeof(err)) !=
        CM_OK) {
        fprintf(stderr, "webhook-ingest: INGEST_TLS_CERT_FILE/INGEST_TLS_KEY_FILE: %s\n", err);
        exit(CM_EXIT_CONFIG);
    }
}

int main(int argc, char **argv)
{
    static struct ingest_cfg cfg;
    static struct ingest ing;
    struct cm_httpd_opts public_opts = {0};
    struct ssl_ctx_st *tls;
    int rc;

    cm_service_configure(argc, argv, "webhook-ingest", settings, NSETTINGS, &cfg);
    load_tls(&cfg, &tls);
    ing.cfg = &cfg;
    public_opts.max_body = (size_t)cfg.max_body;
    public_opts.tls = tls;
    public_opts.max_connections = (int)cfg.max_connections;
    public_opts.read_timeout_s = (int)cfg.read_timeout;
    rc = cm_pg_migrate_wait(cfg.base.database_url, "ingest", migrations,
                            sizeof(migrations) / sizeof(migrations[0]));
    /* /metrics stays on the internal address: the public one is for Meta. */
    if (rc == CM_OK)
        rc = cm_service_init(&ing.svc, "webhook-ingest", "ingest", &cfg.base, cfg.http_listen, 0);
    if (rc == CM_OK)
        rc = cm_service_listen_public(&ing.svc, cfg.listen, &public_opts);
    if (rc == CM_OK) {
        /* Thousands of small publishes a second: fewer, larger writes beat writing each. */
        cm_nats_coalesce_writes(ing.svc.nats);
        register_metrics(&ing);
        ingest_stream_register(&ing);
        ingest_http_register(&ing);
        ingest_callbacks_register(&ing);
        ingest_media_register(&ing);
        cm_service_on_shutdown(&ing.svc, ingest_shutdown, &ing);
        rc = ingest_ask_start(&ing);
    }
    if (rc == CM_OK)
        rc = cm_service_run(&ing.svc);
    /* The loop is over: late answers are dropped before the server they belong to goes. */
    ingest_ask_stop(&ing);
    cm_service_cleanup(&ing.svc);
    cm_httpd_tls_destroy(tls); /* after the server that used it */
    cm_settings_cleanup(settings, NSETTINGS, &cfg);
    return cm_service_exit_status(rc);
}
