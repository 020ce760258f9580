/*
 * rpc.c - request subjects served by worker threads (see rpc.h).
 *
 * nats.c delivers each subscription's messages on its own thread; the callback only
 * queues the message. Workers take messages off the queue, so a slow handler (a Meta call)
 * never holds up delivery, and the queue bound turns overload into a prompt "busy" reply
 * rather than an ever-growing backlog.
 */
#include "common/rpc.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/nats.h"
#include "common/pg.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ROUTES  32
#define QUEUE_LIMIT 4096

struct route {
    char *subject;
    cm_rpc_fn fn;
    void *arg;
    natsSubscription *sub;
    struct cm_rpc *rpc;
};

struct item {
    natsMsg *msg;
    struct route *route;
    struct item *next;
};

struct cm_rpc {
    struct cm_nats *nats;
    char *name;
    char *db_url;
    char *schema;
    char *session_sql;
    int nworkers;
    pthread_t *threads;
    int nstarted;

    struct route routes[MAX_ROUTES];
    int nroutes;
    bool subscribed;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct item *head, *tail;
    int queued;
    bool stopping;

    struct cm_metric *m_calls;
    struct cm_metric *m_errors;
    struct cm_metric *m_busy;
    struct cm_metric *m_latency;
};

const char *cm_rpc_code(int err)
{
    switch (err) {
    case CM_INVALID:
        return "invalid";
    case CM_DENIED:
        return "denied";
    case CM_NOTFOUND:
        return "not_found";
    case CM_CONFLICT:
        return "conflict";
    case CM_UNAVAIL:
    case CM_AGAIN:
    case CM_TIMEOUT:
        return "unavailable";
    default:
        return "internal";
    }
}

/* Publishes text on the message's reply subject. */
static void publish_reply(struct cm_rpc *rpc, natsMsg *msg, const char *subject, const char *text)
{
    const char *reply = natsMsg_GetReply(msg);
    natsStatus s;

    if (reply == NULL || *reply == '\0')
        return; /* a plain publish: nobody waits for an answer */
    s = natsConnection_PublishString(cm_nats_conn(rpc->nats), reply, text);
    if (s != NATS_OK)
        CM_WARN("rpc: reply on %s not sent: %s", subject, natsStatus_GetText(s));
}

/* Zeroes every string of a JSON tree, names included, before it is freed. */
static void wipe_json(cJSON *j)
{
    for (; j != NULL; j = j->next) {
        if (j->valuestring != NULL)
            sodium_memzero(j->valuestring, strlen(j->valuestring));
        wipe_json(j->child);
    }
}

/* Replies {"result": result}; with secret, what held it is zeroed before it is freed. */
static void reply(struct cm_rpc_call *call, cJSON *result, bool secret)
{
    cJSON *env = cJSON_CreateObject();
    char *text;

    cJSON_AddItemToObject(env, "result", result ? result : cJSON_CreateNull());
    text = cJSON_PrintUnformatted(env);
    if (text == NULL)
        abort(); /* allocation only */
    publish_reply(call->rpc, call->msg, call->subject, text);
    call->replied = 1;
    if (secret) {
        sodium_memzero(text, strlen(text));
        wipe_json(env);
    }
    cJSON_free(text);
    cJSON_Delete(env);
}

void cm_rpc_reply(struct cm_rpc_call *call, cJSON *result)
{
    reply(call, result, false);
}

void cm_rpc_reply_secret(struct cm_rpc_call *call, cJSON *result)
{
    reply(call, result, true);
}

void cm_rpc_fail(struct cm_rpc_call *call, const char *code, const char *fmt, ...)
{
    char message[512];
    cJSON *env = cJSON_CreateObject(), *err = cJSON_CreateObject();
    char *text;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", message);
    cJSON_AddItemToObject(env, "error", err);
    text = cJSON_PrintUnformatted(env);
    if (text == NULL)
        abort();
    publish_reply(call->rpc, call->msg, call->subject, text);
    call->replied = 1;
    if (call->rpc->m_errors != NULL)
        cm_metrics_inc(call->rpc->m_errors, 1);
    CM_INFO("rpc %s by %s: %s: %s", call->subject, call->actor, code, message);
    cJSON_free(text);
    cJSON_Delete(env);
}

const char *cm_rpc_str(const struct cm_rpc_call *call, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(call->req, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Runs one request on a worker. */
static void serve(struct cm_rpc *rpc, struct cm_pg *pg, int worker, struct item *it)
{
    struct cm_rpc_call call = {0};
    const char *actor;
    struct timespec t0;
    cJSON *req;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    call.subject = it->route->subject;
    call.msg = it->msg;
    call.rpc = rpc;
    call.pg = pg;
    call.worker = worker;
    call.actor = "operator";
    req = cJSON_ParseWithLength(natsMsg_GetData(it->msg), (size_t)natsMsg_GetDataLength(it->msg));
    if (!cJSON_IsObject(req)) {
        cm_rpc_fail(&call, "invalid", "the request is not a JSON object");
        goto done;
    }
    call.req = req;
    actor = cm_rpc_str(&call, "actor");
    if (actor != NULL && *actor != '\0')
        call.actor = actor;
    it->route->fn(&call, it->route->arg);
    if (!call.replied) {
        CM_ERROR("rpc: handler of %s did not reply", call.subject);
        cm_rpc_fail(&call, "internal", "the handler gave no answer");
    }
done:
    if (rpc->m_calls != NULL)
        cm_metrics_inc(rpc->m_calls, 1);
    if (rpc->m_latency != NULL)
        cm_metrics_observe(rpc->m_latency, elapsed(&t0));
    cJSON_Delete(req);
}

struct worker_arg {
    struct cm_rpc *rpc;
    int index;
};

static void *worker_main(void *p)
{
    struct worker_arg *wa = p;
    struct cm_rpc *rpc = wa->rpc;
    int index = wa->index;
    struct cm_pg *pg = NULL;

    free(wa);
    /* Unreachable now is fine: the wrapper reconnects on the first query. */
    if (cm_pg_connect(&pg, rpc->db_url, rpc->schema) == CM_INVALID)
        return NULL;
    if (rpc->session_sql != NULL && cm_pg_session(pg, rpc->session_sql) != CM_OK)
        CM_WARN("rpc: worker %d: session settings not applied yet", index);
    for (;;) {
        struct item *it;

        pthread_mutex_lock(&rpc->lock);
        while (rpc->head == NULL && !rpc->stopping)
            pthread_cond_wait(&rpc->cond, &rpc->lock);
        it = rpc->head;
        if (it == NULL) { /* stopping and drained */
            pthread_mutex_unlock(&rpc->lock);
            break;
        }
        rpc->head = it->next;
        if (rpc->head == NULL)
            rpc->tail = NULL;
        rpc->queued--;
        pthread_mutex_unlock(&rpc->lock);

        serve(rpc, pg, index, it);
        natsMsg_Destroy(it->msg);
        free(it);
    }
    cm_pg_destroy(pg);
    return NULL;
}

/* nats.c thread: queue the request, or answer "busy" at once when the queue is full. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct route *route = closure;
    struct cm_rpc *rpc = route->rpc;
    struct item *it;

    (void)nc;
    (void)sub;
    pthread_mutex_lock(&rpc->lock);
    if (rpc->queued >= QUEUE_LIMIT || rpc->stopping) {
        pthread_mutex_unlock(&rpc->lock);
        if (rpc->m_busy != NULL)
            cm_metrics_inc(rpc->m_busy, 1);
        publish_reply(rpc, msg, route->subject,
                      "{\"error\":{\"code\":\"busy\",\"message\":\"overloaded; retry\"}}");
        natsMsg_Destroy(msg);
        return;
    }
    it = cm_xmalloc(sizeof(*it));
    it->msg = msg;
    it->route = route;
    it->next = NULL;
    if (rpc->tail != NULL)
        rpc->tail->next = it;
    else
        rpc->head = it;
    rpc->tail = it;
    rpc->queued++;
    pthread_cond_signal(&rpc->cond);
    pthread_mutex_unlock(&rpc->lock);
}

/* Set-up step: subscribe once; nats.c restores subscriptions after a reconnect itself. */
static int subscribe_all(struct cm_nats *n, void *arg)
{
    struct cm_rpc *rpc = arg;

    if (rpc->subscribed)
        return CM_OK;
    for (int i = 0; i < rpc->nroutes; i++) {
        struct route *r = &rpc->routes[i];
        natsStatus s;

        if (r->sub != NULL)
            continue;
        s = natsConnection_QueueSubscribe(&r->sub, cm_nats_conn(n), r->subject, rpc->name, on_msg,
                                          r);
        if (s != NATS_OK) {
            CM_WARN("rpc: cannot subscribe to %s: %s", r->subject, natsStatus_GetText(s));
            r->sub = NULL;
            return CM_UNAVAIL;
        }
        /* Requests are small and many; let a burst queue up rather than be dropped. */
        natsSubscription_SetPendingLimits(r->sub, 65536, 64 * 1024 * 1024);
    }
    rpc->subscribed = true;
    CM_INFO("rpc: serving %d subjects with %d workers", rpc->nroutes, rpc->nworkers);
    return CM_OK;
}

int cm_rpc_create(struct cm_rpc **out, struct cm_nats *n, const char *name, const char *db_url,
                  const char *schema, int workers, struct cm_metrics *metrics)
{
    struct cm_rpc *rpc = cm_xcalloc(1, sizeof(*rpc));

    rpc->nats = n;
    rpc->name = cm_xstrdup(name);
    rpc->db_url = cm_xstrdup(db_url);
    rpc->schema = cm_xstrdup(schema);
    rpc->nworkers = workers > 0 ? workers : 4;
    rpc->threads = cm_xcalloc((size_t)rpc->nworkers, sizeof(pthread_t));
    pthread_mutex_init(&rpc->lock, NULL);
    pthread_cond_init(&rpc->cond, NULL);
    if (metrics != NULL) {
        rpc->m_calls =
            cm_metrics_counter(metrics, "rpc_requests_total", NULL, "NATS requests served");
        rpc->m_errors = cm_metrics_counter(metrics, "rpc_errors_total", NULL,
                                           "NATS requests answered with an error");
        rpc->m_busy = cm_metrics_counter(metrics, "rpc_busy_total", NULL,
                                         "NATS requests refused because the queue was full");
        rpc->m_latency = cm_metrics_histogram(metrics, "rpc_request_seconds", NULL,
                                              "Time from dequeue to reply, in seconds");
    }
    *out = rpc;
    return CM_OK;
}

void cm_rpc_handle(struct cm_rpc *rpc, const char *subject, cm_rpc_fn fn, void *arg)
{
    struct route *r;

    if (rpc->nroutes == MAX_ROUTES)
        abort(); /* a programming error, caught by the first test run */
    r = &rpc->routes[rpc->nroutes++];
    r->subject = cm_xstrdup(subject);
    r->fn = fn;
    r->arg = arg;
    r->rpc = rpc;
}

void cm_rpc_session(struct cm_rpc *rpc, const char *sql)
{
    free(rpc->session_sql);
    rpc->session_sql = cm_xstrdup(sql);
}

int cm_rpc_start(struct cm_rpc *rpc)
{
    for (int i = 0; i < rpc->nworkers; i++) {
        struct worker_arg *wa = cm_xmalloc(sizeof(*wa));
        wa->rpc = rpc;
        wa->index = i;
        if (pthread_create(&rpc->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            CM_ERROR("rpc: cannot start worker %d", i);
            return CM_ERR;
        }
        rpc->nstarted++;
    }
    cm_nats_on_connect(rpc->nats, subscribe_all, rpc);
    return CM_OK;
}

void cm_rpc_destroy(struct cm_rpc *rpc)
{
    if (rpc == NULL)
        return;
    /* Draining delivers what the server already sent, and waits until no callback runs. */
    for (int i = 0; i < rpc->nroutes; i++) {
        if (rpc->routes[i].sub != NULL)
            natsSubscription_Drain(rpc->routes[i].sub);
    }
    for (int i = 0; i < rpc->nroutes; i++) {
        if (rpc->routes[i].sub != NULL) {
            natsSubscription_WaitForDrainCompletion(rpc->routes[i].sub, 5000);
            natsSubscription_Destroy(rpc->routes[i].sub);
        }
    }
    pthread_mutex_lock(&rpc->lock);
    rpc->stopping = true;
    pthread_cond_broadcast(&rpc->cond);
    pthread_mutex_unlock(&rpc->lock);
    for (int i = 0; i < rpc->nstarted; i++)
        pthread_join(rpc->threads[i], NULL);
    for (int i = 0; i < rpc->nroutes; i++)
        free(rpc->routes[i].subject);
    pthread_cond_destroy(&rpc->cond);
    pthread_mutex_destroy(&rpc->lock);
    free(rpc->threads);
    free(rpc->name);
    free(rpc->db_url);
    free(rpc->schema);
    free(rpc->session_sql);
    free(rpc);
}
