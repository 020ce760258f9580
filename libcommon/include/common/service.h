/*
 * service.h - what every daemon is made of: settings, logging, the event loop, signals,
 * NATS, the PostgreSQL migrations, the health checker and the HTTP server.
 *
 * A daemon's main() is then: cm_service_configure(), cm_pg_migrate_wait() for its schema,
 * cm_service_init(), its own set-up, cm_service_run(), its own teardown,
 * cm_service_cleanup().
 *
 * HTTP: every daemon serves /healthz, /readyz and /metrics on its internal address
 * (<SERVICE>_HTTP_LISTEN). A daemon that the Internet calls also opens a public server with
 * cm_service_listen_public(), for its own routes, /healthz and /readyz, but not /metrics.
 *
 * Shutdown: SIGTERM or SIGINT stops new HTTP connections and calls the daemon's shutdown
 * hook on the loop; the hook finishes in-flight work and calls cm_service_done() (at once
 * if it has nothing to finish). Without a hook the loop ends at once and the daemon's
 * teardown after cm_service_run() finishes its work. A deadline ends the loop regardless, so a
 * stuck dependency cannot keep the process alive forever.
 */
#ifndef COMMON_SERVICE_H
#define COMMON_SERVICE_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/err.h"
#include "common/httpd.h"
#include "common/loopq.h"
#include "common/metrics.h"
#include "common/nats.h"
#include "common/pg.h"
#include "common/settings.h"

/* Exit status for a refused configuration (sysexits' EX_CONFIG). */
#define CM_EXIT_CONFIG 78

struct cm_service;
typedef void (*cm_service_hook)(struct cm_service *svc, void *arg);
/* An extra readiness condition of the daemon's own; see cm_httpd_ready_fn. */
typedef bool (*cm_service_ready_fn)(void *arg, struct cm_buf *why);

struct cm_service {
    const char *name;   /* "webhook-ingest"; borrowed */
    const char *schema; /* its PostgreSQL schema; borrowed */
    const struct cm_base_cfg *cfg;

    struct event_base *base;
    struct cm_loopq *loopq;
    struct cm_metrics *metrics;
    struct cm_nats *nats;
    struct cm_httpd *httpd;        /* internal: /healthz, /readyz, /metrics */
    struct cm_httpd *public_httpd; /* NULL, or see cm_service_listen_public() */

    struct event *sig_term;
    struct event *sig_int;
    struct event *deadline;
    cm_service_hook on_shutdown;
    void *on_shutdown_arg;
    cm_service_ready_fn ready;
    void *ready_arg;
    bool stopping;

    /* The health checker: its own connection, pinged once a second. */
    pthread_t health_thread;
    bool health_started;
    _Atomic bool health_stop;
    _Atomic bool pg_ok;
};

/*
 * Parses the command line (--help, --print-config, --version) and loads the settings of
 * table into cfg, whose first member must be a struct cm_base_cfg. Initialises logging.
 * On a bad setting prints "<name>: <reason>" on stderr and exits CM_EXIT_CONFIG; after
 * --help or --print-config exits 0. Only for main(), before the loop exists.
 */
void cm_service_configure(int argc, char **argv, const char *name, const struct cm_setting *table,
                          size_t n, void *cfg);

/*
 * Creates the loop, signal handling, metrics, the NATS connection (not yet started) and
 * the internal HTTP server on listen with max_body. Disables core dumps: daemons hold
 * secrets. Returns CM_OK or CM_INVALID (listen address unusable); call cm_service_cleanup()
 * either way.
 */
int cm_service_init(struct cm_service *svc, const char *name, const char *schema,
                    const struct cm_base_cfg *cfg, const char *listen,
                    size_t max_body) CM_MUST_CHECK;

/*
 * Opens svc->public_httpd on listen, after cm_service_init(), for a daemon that the Internet
 * calls: the daemon adds its routes there; it answers /healthz and /readyz like the internal
 * server and 404 to /metrics (CM_HTTPD_PUBLIC, added to opts' flags). opts (copied; its tls
 * borrowed) bounds its request bodies, connections and read time, and may make it HTTPS. It stops
 * accepting on SIGTERM with the internal one; cm_service_cleanup() frees it. Returns CM_OK, or
 * CM_INVALID when listen cannot be bound (main() exits CM_EXIT_CONFIG).
 */
int cm_service_listen_public(struct cm_service *svc, const char *listen,
                             const struct cm_httpd_opts *opts) CM_MUST_CHECK;

/* Sets the shutdown hook (see above). */
void cm_service_on_shutdown(struct cm_service *svc, cm_service_hook fn, void *arg);
/* Adds a readiness condition to NATS and PostgreSQL. */
void cm_service_set_ready(struct cm_service *svc, cm_service_ready_fn fn, void *arg);

/* Starts NATS and the health checker, then runs the loop until shutdown completes. */
int cm_service_run(struct cm_service *svc) CM_MUST_CHECK;

/* Ends the loop; called by the shutdown hook when in-flight work is done. Loop thread. */
void cm_service_done(struct cm_service *svc);

/*
 * Loads the KEK file (DOMS_KEK_FILE) into *out for a daemon that stores Platform Data. On
 * failure prints "<name>: <reason>" (never key material) and returns CM_INVALID: main()
 * exits CM_EXIT_CONFIG, as for any other refused setting.
 */
struct cm_keyring;
int cm_service_keyring(const char *name, const char *kek_file,
                       struct cm_keyring **out) CM_MUST_CHECK;

/* Logs how the daemon stopped and returns main()'s exit status for rc. */
int cm_service_exit_status(int rc);

/* Frees everything cm_service_init() created. Safe on a partly initialised service. */
void cm_service_cleanup(struct cm_service *svc);

#endif
