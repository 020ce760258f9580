/*
 * worker.c - a background thread of the router with its own PostgreSQL connection and HTTP
 * client: it runs its pass, waits (woken early by router_worker_wake()), runs it again, until
 * router_worker_stop(). The profile fetcher and the media worker are two of them; what they
 * do between passes lives in the database, so any replica's worker may take it up.
 */
#include <stdlib.h>
#include <time.h>

#include "common/httpc.h"
#include "common/log.h"
#include "common/pg.h"
#include "router.h"

static void *run(void *arg)
{
    struct router_worker *w = arg;

    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        struct timespec until;
        bool more;
        w->wake = false;
        pthread_mutex_unlock(&w->lock);
        more = w->pass(w);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += w->idle_s;
        pthread_mutex_lock(&w->lock);
        if (!w->stop && !w->wake && !more)
            pthread_cond_timedwait(&w->cond, &w->lock, &until);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int router_worker_start(struct router_worker *w, struct router *r, const char *what, int idle_s,
                        bool (*pass)(struct router_worker *w))
{
    w->r = r;
    w->what = what;
    w->idle_s = idle_s;
    w->pass = pass;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->initialised = true;
    if (cm_pg_connect(&w->pg, r->cfg->base.database_url, ROUTER_SCHEMA) == CM_INVALID ||
        cm_httpc_create(&w->http) != CM_OK)
        return CM_ERR;
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        CM_ERROR("%s: the worker thread could not start", what);
        return CM_ERR;
    }
    w->started = true;
    return CM_OK;
}

void router_worker_wake(struct router_worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->wake = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void router_worker_stop(struct router_worker *w)
{
    if (!w->initialised)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (w->started)
        pthread_join(w->thread, NULL);
    cm_httpc_destroy(w->http);
    cm_pg_destroy(w->pg);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    w->initialised = false;
}
