/*
 * retention-reaper: makes the privacy policy's retention promises true. Settings, the loop
 * and signals live here; audit.c keeps the audit log, deletion.c Meta's data-deletion
 * requests, workspace.c workspace deletions, pass.c the schedule, purge.c and jetstream.c
 * the deletions themselves.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/outbox.h"
#include "reaper.h"

extern const char doms_embed_001_init[];

static const struct cm_migration migrations[] = {
    {1, "init", doms_embed_001_init},
    {2, "data keys", cm_keyring_schema_sql},
    {3, "outbox", CM_OUTBOX_SCHEMA_SQL},
};

#define DAY (24 * 3600)

/*
 * The maxima are the privacy policy's promises (section 7.1): a larger value is refused at
 * start-up, so that the promise cannot be configured away. The minima only keep a typo
 * ("0s") from deleting everything at once; tests use a few seconds.
 */
static const struct cm_setting settings[] = {
    CM_BASE_SETTINGS(struct reaper_cfg, base),
    CM_KEK_SETTING(struct reaper_cfg, base),
    {"RETENTION_REAPER_HTTP_LISTEN", CM_SET_LISTEN, offsetof(struct reaper_cfg, listen),
     "127.0.0.1:8083", 0, 0, 0, NULL, "address of /healthz, /readyz, /metrics"},
    {"RETENTION_TOKENS", CM_SET_DURATION, offsetof(struct reaper_cfg, retention_tokens), "7d", 0, 1,
     7 * DAY, NULL,
     "tokens are gone this long after a disconnect, deauthorization or workspace deletion"},
    {"RETENTION_MESSAGES", CM_SET_DURATION, offsetof(struct reaper_cfg, retention_messages), "90d",
     0, 1, 90 * DAY, NULL, "a deleted workspace's messages and contacts are purged after this"},
    {"RETENTION_AUDIT", CM_SET_DURATION, offsetof(struct reaper_cfg, retention_audit), "365d", 0, 1,
     365 * DAY, NULL, "audit entries are deleted this long after the action"},
    {"REAPER_INTERVAL", CM_SET_DURATION, offsetof(struct reaper_cfg, interval), "1h", 0, 1, DAY,
     NULL, "time between two retention passes"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))
#define WORKERS   4

static void register_metrics(struct reaper *r)
{
    struct cm_metrics *m = r->svc.metrics;

    r->m_appended = cm_metrics_counter(m, "reaper_audit_appended_total", NULL,
                                       "Audit events appended to the hash chain");
    r->m_deletions = cm_metrics_counter(m, "reaper_deletions_completed_total", NULL,
                                        "Meta data-deletion requests completed");
    r->m_passes = cm_metrics_counter(m, "reaper_passes_total", NULL, "Retention passes run here");
    r->m_passes_skipped =
        cm_metrics_counter(m, "reaper_passes_skipped_total", NULL,
                           "Scheduled passes skipped because another replica's pass was running");
    r->m_open = cm_metrics_gauge(m, "reaper_deletion_requests_open", NULL,
                                 "Data-deletion requests received or in progress");
    r->m_open_age = cm_metrics_gauge(m, "reaper_deletion_request_oldest_seconds", NULL,
                                     "Age of the oldest data-deletion request not completed");
    r->m_last_pass = cm_metrics_gauge(m, "reaper_last_pass_timestamp_seconds", NULL,
                                      "When the last retention pass (any replica) finished");
    for (int k = 0; k < REAPER_NKINDS; k++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "kind=\"%s\"", reaper_kind_names[k]);
        r->m_held[k] = cm_metrics_gauge(
            m, "reaper_overdue_seconds", labels,
            "Age since its deletion was triggered of the oldest item still held, by kind");
        r->m_limit[k] = cm_metrics_gauge(m, "reaper_retention_limit_seconds", labels,
                                         "The promised bound for that kind (settings)");
    }
}

int main(int argc, char **argv)
{
    static struct reaper_cfg cfg;
    static struct reaper r;
    int rc;

    cm_service_configure(argc, argv, REAPER_SERVICE, settings, NSETTINGS, &cfg);
    r.cfg = &cfg;
    /* A bad KEK file is a setting like any other: refused (78) before anything else runs. */
    if (cm_service_keyring(REAPER_SERVICE, cfg.base.kek_file, &r.keyring) != CM_OK) {
        cm_settings_cleanup(settings, NSETTINGS, &cfg);
        return CM_EXIT_CONFIG;
    }
    rc = cm_pg_migrate_wait(cfg.base.database_url, REAPER_SCHEMA, migrations,
                            sizeof(migrations) / sizeof(migrations[0]));
    /* The pepper is needed by the first request: load it before serving any. */
    if (rc == CM_OK)
        rc = reaper_pepper_load(&r);
    if (rc == CM_OK)
        rc = cm_service_init(&r.svc, REAPER_SERVICE, REAPER_SCHEMA, &cfg.base, cfg.listen, 0);
    if (rc == CM_OK) {
        register_metrics(&r);
        cm_nats_on_connect(r.svc.nats, cm_audit_stream_ensure, NULL);
        rc = cm_rpc_create(&r.rpc, r.svc.nats, REAPER_SERVICE, cfg.base.database_url, REAPER_SCHEMA,
                           WORKERS, r.svc.metrics);
    }
    /* Each part registers its subjects before the server starts. */
    if (rc == CM_OK)
        rc = reaper_audit_start(&r);
    if (rc == CM_OK)
        rc = reaper_deletion_start(&r);
    if (rc == CM_OK) {
        reaper_workspace_register(&r);
        rc = reaper_schedule_start(&r);
    }
    if (rc == CM_OK)
        rc = cm_rpc_start(r.rpc);
    if (rc == CM_OK)
        rc = cm_outbox_start(&r.outbox, r.svc.nats, cfg.base.database_url, REAPER_SCHEMA,
                             r.svc.metrics);
    if (rc == CM_OK)
        rc = cm_service_run(&r.svc);
    /* Requests first, then the threads that delete and append, then what publishes. */
    cm_rpc_destroy(r.rpc);
    reaper_schedule_stop(&r);
    reaper_deletion_stop(&r);
    reaper_audit_stop(&r);
    cm_outbox_destroy(r.outbox);
    cm_service_cleanup(&r.svc);
    reaper_pepper_free(&r);
    cm_keyring_destroy(r.keyring);
    cm_settings_cleanup(settings, NSETTINGS, &cfg);
    return cm_service_exit_status(rc);
}
