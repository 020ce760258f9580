/*
 * service.c - the daemon skeleton (see service.h).
 */
#include "common/service.h"
#include "common/keyring.h"
#include "common/log.h"
#include "common/mem.h"

#include <event2/thread.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SHUTDOWN_DEADLINE_S 25
_Static_assert(sizeof(((struct cm_base_cfg *)0)->nats_identity) == CM_NATS_IDENTITY_MAX,
               "the base settings hold one identity");

void cm_service_configure(int argc, char **argv, const char *name, const struct cm_setting *table,
                          size_t n, void *cfg)
{
    struct cm_base_cfg *base = cfg;
    bool print_config = false;
    char err[512];
    int level = CM_LVL_INFO;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--print-config") == 0) {
            print_config = true;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", name, DOMS_VERSION);
            exit(0);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s [--print-config] [--version]\n\nSettings (environment):\n", name);
            cm_settings_help(table, n, stdout);
            exit(0);
        } else {
            fprintf(stderr, "%s: unknown argument %s (try --help)\n", name, argv[i]);
            exit(2);
        }
    }
    if (cm_settings_load(table, n, cfg, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "%s: %s\n", name, err);
        exit(CM_EXIT_CONFIG);
    }
    /* Who the daemon is on NATS: its certificate's CN over TLS, its name in plaintext. */
    if (cm_nats_identity(base->nats_ca_file, base->nats_cert_file, base->nats_key_file, name,
                         base->nats_identity, err, sizeof(err)) != CM_OK) {
        fprintf(stderr, "%s: %s\n", name, err);
        exit(CM_EXIT_CONFIG);
    }
    if (print_config) {
        cm_settings_print(table, n, cfg, stdout);
        exit(0);
    }
    if (cm_log_parse_level(base->log_level, &level) != CM_OK)
        level = CM_LVL_INFO; /* unreachable: validated as an enum */
    cm_log_init(name, level, strcmp(base->log_format, "json") == 0);
}

static void begin_shutdown(struct cm_service *svc)
{
    struct timeval deadline = {SHUTDOWN_DEADLINE_S, 0};

    if (svc->stopping)
        return;
    svc->stopping = true;
    CM_INFO("shutting down: finishing in-flight work");
    cm_httpd_close(svc->public_httpd);
    cm_httpd_close(svc->httpd);
    event_add(svc->deadline, &deadline);
    if (svc->on_shutdown != NULL)
        svc->on_shutdown(svc, svc->on_shutdown_arg);
    else
        cm_service_done(svc);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    CM_INFO("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    begin_shutdown(arg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct cm_service *svc = arg;

    (void)fd;
    (void)what;
    CM_WARN("shutdown deadline of %ds passed; exiting with work unfinished", SHUTDOWN_DEADLINE_S);
    event_base_loopbreak(svc->base);
}

/* Readiness: NATS connected with its set-up done, PostgreSQL answering, and the daemon's own. */
static bool service_ready(void *arg, struct cm_buf *why)
{
    struct cm_service *svc = arg;
    bool nats_ok = cm_nats_ready(svc->nats);
    bool pg_ok = atomic_load(&svc->pg_ok);
    bool own_ok = true;
    struct cm_buf own;

    cm_buf_init(&own);
    if (svc->ready != NULL)
        own_ok = svc->ready(svc->ready_arg, &own);
    cm_buf_printf(why, "\"nats\":%s,\"postgres\":%s", nats_ok ? "true" : "false",
                  pg_ok ? "true" : "false");
    if (own.len > 0)
        cm_buf_printf(why, ",%s", own.data);
    cm_buf_cleanup(&own);
    return nats_ok && pg_ok && own_ok && !svc->stopping;
}

static void *health_main(void *arg)
{
    struct cm_service *svc = arg;
    struct cm_pg *pg = NULL;

    if (cm_pg_connect(&pg, svc->cfg->database_url, NULL) == CM_INVALID)
        return NULL;
    while (!atomic_load(&svc->health_stop)) {
        bool ok = cm_pg_ping(pg) == CM_OK;
        if (ok != atomic_load(&svc->pg_ok)) {
            if (ok)
                CM_INFO("postgres: reachable");
            else
                CM_WARN("postgres: unreachable: %s", cm_pg_error(pg));
        }
        atomic_store(&svc->pg_ok, ok);
        for (int i = 0; i < 10 && !atomic_load(&svc->health_stop); i++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cm_pg_destroy(pg);
    return NULL;
}

static void disable_core_dumps(void)
{
    struct rlimit none = {0, 0};

    /* Keys and tokens live in this process's memory; a core file would put them on disk. */
    if (setrlimit(RLIMIT_CORE, &none) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        CM_WARN("cannot disable core dumps");
}

int cm_service_init(struct cm_service *svc, const char *name, const char *schema,
                    const struct cm_base_cfg *cfg, const char *listen, size_t max_body)
{
    memset(svc, 0, sizeof(*svc));
    svc->name = name;
    svc->schema = schema;
    svc->cfg = cfg;
    disable_core_dumps();
    signal(SIGPIPE, SIG_IGN);
    /* nats.c's threads would each get a malloc arena of their own; two are plenty here
     * and keep the resident size of a small daemon small. */
    mallopt(M_ARENA_MAX, 2);
    if (sodium_init() < 0) {
        CM_ERROR("libsodium failed to initialise");
        return CM_ERR;
    }
    /* Required before the base exists, for event_active() from nats.c's threads. */
    if (evthread_use_pthreads() != 0) {
        CM_ERROR("libevent lacks pthread support");
        return CM_ERR;
    }
    svc->base = event_base_new();
    if (svc->base == NULL)
        abort();
    svc->loopq = cm_loopq_create(svc->base);
    svc->metrics = cm_metrics_create();
    svc->sig_term = evsignal_new(svc->base, SIGTERM, on_signal, svc);
    svc->sig_int = evsignal_new(svc->base, SIGINT, on_signal, svc);
    svc->deadline = evtimer_new(svc->base, on_deadline, svc);
    event_add(svc->sig_term, NULL);
    event_add(svc->sig_int, NULL);
    if (cm_nats_create(&svc->nats, cfg->nats_url, name, svc->metrics) != CM_OK)
        return CM_ERR;
    cm_nats_set_identity(svc->nats, cfg->nats_identity[0] ? cfg->nats_identity : name,
                         cfg->nats_ca_file, cfg->nats_cert_file, cfg->nats_key_file);
    CM_INFO("nats: speaking as %s (%s)", cm_nats_identity_of(svc->nats),
            cfg->nats_cert_file != NULL ? "TLS, the certificate's common name" : "plaintext");
    {
        struct cm_httpd_opts opts = {.max_body = max_body};
        if (cm_httpd_create(&svc->httpd, svc->base, listen, svc->metrics, &opts) != CM_OK)
            return CM_INVALID;
    }
    cm_httpd_set_ready(svc->httpd, service_ready, svc);
    return CM_OK;
}

int cm_service_listen_public(struct cm_service *svc, const char *listen,
                             const struct cm_httpd_opts *opts)
{
    struct cm_httpd_opts public_opts = *opts;

    public_opts.flags |= CM_HTTPD_PUBLIC;
    if (cm_httpd_create(&svc->public_httpd, svc->base, listen, svc->metrics, &public_opts) != CM_OK)
        return CM_INVALID;
    /* A load balancer in front of the public address asks the same question as the
     * orchestrator does on the internal one. */
    cm_httpd_set_ready(svc->public_httpd, service_ready, svc);
    return CM_OK;
}

void cm_service_on_shutdown(struct cm_service *svc, cm_service_hook fn, void *arg)
{
    svc->on_shutdown = fn;
    svc->on_shutdown_arg = arg;
}

void cm_service_set_ready(struct cm_service *svc, cm_service_ready_fn fn, void *arg)
{
    svc->ready = fn;
    svc->ready_arg = arg;
}

int cm_service_run(struct cm_service *svc)
{
    if (cm_nats_start(svc->nats) != CM_OK)
        return CM_ERR;
    if (pthread_create(&svc->health_thread, NULL, health_main, svc) != 0) {
        CM_ERROR("cannot start the health checker");
        return CM_ERR;
    }
    svc->health_started = true;
    if (svc->public_httpd != NULL)
        CM_INFO("serving public %s on port %d",
                cm_httpd_is_tls(svc->public_httpd) ? "HTTPS" : "HTTP",
                cm_httpd_port(svc->public_httpd));
    CM_INFO("serving HTTP on port %d", cm_httpd_port(svc->httpd));
    if (event_base_dispatch(svc->base) < 0) {
        CM_ERROR("event loop failed");
        return CM_ERR;
    }
    return CM_OK;
}

void cm_service_done(struct cm_service *svc)
{
    event_base_loopexit(svc->base, NULL);
}

int cm_service_keyring(const char *name, const char *kek_file, struct cm_keyring **out)
{
    char err[512];

    if (cm_keyring_load(out, kek_file, err, sizeof(err)) == CM_OK)
        return CM_OK;
    fprintf(stderr, "%s: %s\n", name, err);
    return CM_INVALID;
}

int cm_service_exit_status(int rc)
{
    if (rc != CM_OK) {
        CM_ERROR("stopped: %s", cm_err_str(rc));
        return rc == CM_INVALID ? CM_EXIT_CONFIG : 1;
    }
    CM_INFO("stopped");
    return 0;
}

void cm_service_cleanup(struct cm_service *svc)
{
    if (svc->health_started) {
        atomic_store(&svc->health_stop, true);
        pthread_join(svc->health_thread, NULL);
        svc->health_started = false;
    }
    cm_httpd_destroy(svc->public_httpd);
    svc->public_httpd = NULL;
    cm_httpd_destroy(svc->httpd);
    svc->httpd = NULL;
    /* NATS goes after HTTP (no new work) and before the queue (no more completions). */
    cm_nats_destroy(svc->nats);
    svc->nats = NULL;
    cm_loopq_destroy(svc->loopq);
    svc->loopq = NULL;
    if (svc->sig_term != NULL)
        event_free(svc->sig_term);
    if (svc->sig_int != NULL)
        event_free(svc->sig_int);
    if (svc->deadline != NULL)
        event_free(svc->deadline);
    svc->sig_term = svc->sig_int = svc->deadline = NULL;
    cm_metrics_destroy(svc->metrics);
    svc->metrics = NULL;
    if (svc->base != NULL)
        event_base_free(svc->base);
    svc->base = NULL;
}
