/*
 * ingest.h - webhook-ingest's shared context: Meta calls it, it stores every event in
 * JetStream before saying 200.
 */
#ifndef INGEST_INGEST_H
#define INGEST_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "common/service.h"

/* JetStream stream that holds the raw events, and its subjects. */
#define INGEST_STREAM       "META_EVENTS"
#define INGEST_SUBJECTS     "meta.events.>"
#define INGEST_DUP_WINDOW_S (5 * 60)
#define INGEST_MAX_AGE_S    (7 * 24 * 3600)
/* How long a POST waits for JetStream: well inside Meta's 20-second deadline. */
#define INGEST_PUBLISH_WAIT_MS 5000

struct ingest_cfg {
    struct cm_base_cfg base; /* first: cm_service_configure() relies on it */
    char *listen;            /* public: Meta's routes, /healthz, /readyz */
    char *http_listen;       /* internal: /healthz, /readyz, /metrics */
    char *app_secret;
    char *app_secret_previous;
    char *verify_token;
    char *public_base_url;
    int64_t max_body;
    int64_t max_events;      /* events in one POST at most; more: 413 */
    int64_t max_connections; /* on listen */
    int64_t read_timeout;    /* seconds for a request's headers and body, on listen */
    char *tls_cert_file;     /* both set: listen serves HTTPS only */
    char *tls_key_file;
};

struct ingest {
    struct cm_service svc;
    const struct ingest_cfg *cfg;

    int inflight;  /* POSTs waiting for JetStream or another service; loop thread only */
    bool draining; /* shutdown asked; finish the in-flight POSTs, then stop */
    bool closed;   /* the loop has ended: late answers are dropped (ask.c) */
    struct ingest_asker *askers[3]; /* by enum ingest_lane (ask.h: INGEST_LANES) */
    /* The status page's token bucket (callbacks.c); loop thread only. */
    double status_tokens;
    long long status_refilled_ms;
    int status_queued;   /* status requests asked and not yet answered */
    int media_downloads; /* media links being served (media.c) */

    struct cm_metric *m_bad_signature;
    struct cm_metric *m_published;
    struct cm_metric *m_duplicates;
    struct cm_metric *m_unavailable;
    struct cm_metric *m_rejected;
    struct cm_metric *m_latency;
    struct cm_metric *m_inflight;
    struct cm_metric *m_callbacks_refused;
};

/* Registers the webhook routes on the service's public HTTP server. */
void ingest_http_register(struct ingest *ing);

/*
 * Registers Meta's data-deletion and deauthorize callbacks and the deletion status page
 * (callbacks.c). They ask retention-reaper and token-vault through ask.c.
 */
void ingest_callbacks_register(struct ingest *ing);

/* GET /api/v1/media: reply files for Meta to fetch, by link (media.c). */
void ingest_media_register(struct ingest *ing);

/* Registers the JetStream stream as a set-up step of the NATS connection. */
void ingest_stream_register(struct ingest *ing);

/* Shutdown hook: stops once every in-flight POST has been answered. */
void ingest_shutdown(struct cm_service *svc, void *arg);

/*
 * Checks an X-Hub-Signature-256 header value ("sha256=<64 hex>") over body against the
 * current and (when set) previous app secret, in constant time. Returns CM_OK, CM_INVALID
 * for a missing or malformed header, or CM_DENIED for a signature that matches neither.
 */
int ingest_verify_signature(const struct ingest_cfg *cfg, const char *header, const void *body,
                            size_t len) CM_MUST_CHECK;

#endif
