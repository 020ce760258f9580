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

#define MAX_ROUTES    32
#define QUEUE_LIMIT   4096
#define MAX_DELEGATES 4
#define ACTOR_MAX     128

struct route {
    char *subject;
    char *pattern;                  /* "<subject>.*": one token for the caller */
    char *delegates[MAX_DELEGATES]; /* callers that may act as "operator" here */
    int ndelegates;
    cm_rpc_fn fn;
    cm_rpc_batch_fn batch_fn; /* instead of fn: the calls queued for it, together */
    int batch_max;
    void *arg;
    bool forwarded_only; /* served for calls other lanes forward here: never subscribed */
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
    char *lane; /* NULL: the service's main server */
    char *db_url;
    char *schema;
    char *session_sql;
    int nworkers;
    pthread_t *threads;
    int nstarted;

    struct route routes[MAX_ROUTES];
    int nroutes;
    bool subscribed;
    bool started; /* cm_rpc_start registered subscribe_all with the connection */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct item *head, *tail;
    int queued;
    bool stopping;
    int live_subs; /* subscriptions whose on-complete callback has not run; under lock */

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

/*
 * Replies {"result": result}, with "next_cursor" when page (a page of a list); with secret,
 * what held it is zeroed before it is freed.
 */
static void reply(struct cm_rpc_call *call, cJSON *result, bool secret, bool page,
                  const char *next_cursor)
{
    cJSON *env = cJSON_CreateObject();
    char *text;

    cJSON_AddItemToObject(env, "result", result ? result : cJSON_CreateNull());
    if (page && next_cursor != NULL)
        cJSON_AddStringToObject(env, "next_cursor", next_cursor);
    else if (page)
        cJSON_AddNullToObject(env, "next_cursor");
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
    reply(call, result, false, false, NULL);
}

void cm_rpc_reply_page(struct cm_rpc_call *call, cJSON *result, const char *next_cursor)
{
    reply(call, result, false, true, next_cursor);
}

void cm_rpc_reply_secret(struct cm_rpc_call *call, cJSON *result)
{
    reply(call, result, true, false, NULL);
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
    CM_INFO("rpc %s from %s by %s: %s: %s", call->subject, call->caller ? call->caller : "?",
            call->actor ? call->actor : "?", code, message);
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

bool cm_rpc_actor_valid(const char *actor)
{
    size_t len = actor != NULL ? strlen(actor) : 0;

    if (len == 0 || len > ACTOR_MAX)
        return false;
    for (const char *p = actor; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '+' || c == '-'))
            return false;
    }
    return true;
}

/* The caller's identity: the token after the route's subject ("<subject>.<caller>"), which
 * the server's permissions give to that identity alone. */
static const char *caller_of(const struct route *route, natsMsg *msg)
{
    const char *subj = natsMsg_GetSubject(msg);
    size_t len = strlen(route->subject);

    if (subj == NULL || strncmp(subj, route->subject, len) != 0 || subj[len] != '.' ||
        subj[len + 1] == '\0')
        return NULL;
    return subj + len + 1;
}

static bool may_act_as_operator(const struct route *route, const char *caller)
{
    if (strcmp(caller, "operator") == 0)
        return true;
    for (int i = 0; i < route->ndelegates; i++) {
        if (strcmp(caller, route->delegates[i]) == 0)
            return true;
    }
    return false;
}

/*
 * Who acts: the request's actor when given, else the caller itself (a daemon's own calls act
 * as that daemon, domsctl's as "operator"). Returns false after replying when the actor is
 * malformed or may not be named by this caller.
 */
static bool resolve_actor(struct cm_rpc_call *call, const struct route *route)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(call->req, "actor");

    if (v == NULL || cJSON_IsNull(v)) {
        call->actor = call->caller;
        return true;
    }
    if (!cJSON_IsString(v) || !cm_rpc_actor_valid(v->valuestring)) {
        cm_rpc_fail(call, "invalid",
                    "actor must be 1 to %d of the characters A-Z a-z 0-9 . _ : @ + -", ACTOR_MAX);
        return false;
    }
    if (strcmp(v->valuestring, "operator") == 0 && !may_act_as_operator(route, call->caller)) {
        cm_rpc_fail(call, "denied", "only the operator may act as operator");
        return false;
    }
    call->actor = v->valuestring;
    return true;
}

/* Fills call for it and checks what every handler relies on: a caller, a JSON object, an
 * actor this caller may name. False after replying (the call is then done). */
static bool admit(struct cm_rpc_call *call, struct cm_rpc *rpc, struct cm_pg *pg, int worker,
                  struct item *it)
{
    cJSON *req;

    memset(call, 0, sizeof(*call));
    call->subject = it->route->subject;
    call->msg = it->msg;
    call->rpc = rpc;
    call->pg = pg;
    call->worker = worker;
    call->caller = caller_of(it->route, it->msg);
    if (call->caller == NULL) {
        /* The subscription is "<subject>.*": unreachable, unless nats.c changes. */
        cm_rpc_fail(call, "denied", "the request names no caller");
        return false;
    }
    req = cJSON_ParseWithLength(natsMsg_GetData(it->msg), (size_t)natsMsg_GetDataLength(it->msg));
    call->req = req;
    if (!cJSON_IsObject(req)) {
        cm_rpc_fail(call, "invalid", "the request is not a JSON object");
        return false;
    }
    return resolve_actor(call, it->route);
}

/* After the handler: answers for one that did not, counts the call, frees its request. */
static void finish(struct cm_rpc *rpc, struct cm_rpc_call *call, bool handled,
                   const struct timespec *t0)
{
    if (handled && !call->replied) {
        CM_ERROR("rpc: handler of %s did not reply", call->subject);
        cm_rpc_fail(call, "internal", "the handler gave no answer");
    }
    if (rpc->m_calls != NULL)
        cm_metrics_inc(rpc->m_calls, 1);
    if (rpc->m_latency != NULL)
        cm_metrics_observe(rpc->m_latency, elapsed(t0));
    cJSON_Delete((cJSON *)call->req);
}

/* Runs one request on a worker. */
static void serve(struct cm_rpc *rpc, struct cm_pg *pg, int worker, struct item *it)
{
    struct cm_rpc_call call;
    struct timespec t0;
    bool handled = false;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (admit(&call, rpc, pg, worker, it)) {
        it->route->fn(&call, it->route->arg);
        handled = true;
        if (call.forwarded) {
            /* The message is the other lane's now, and the call counts there. */
            it->msg = NULL;
            cJSON_Delete((cJSON *)call.req);
            return;
        }
    }
    finish(rpc, &call, handled, &t0);
}

/* Runs n requests of one batch route on a worker: those admitted go to its handler together. */
static void serve_batch(struct cm_rpc *rpc, struct cm_pg *pg, int worker, struct item **items,
                        int n)
{
    struct cm_rpc_call calls[CM_RPC_BATCH_MAX], *admitted[CM_RPC_BATCH_MAX];
    bool handled[CM_RPC_BATCH_MAX];
    const struct route *route = items[0]->route;
    struct timespec t0;
    int k = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        handled[i] = admit(&calls[i], rpc, pg, worker, items[i]);
        if (handled[i])
            admitted[k++] = &calls[i];
    }
    if (k > 0)
        route->batch_fn(admitted, k, route->arg);
    for (int i = 0; i < n; i++)
        finish(rpc, &calls[i], handled[i], &t0);
}

/* Under rpc->lock: moves the items of route queued behind the head into batch (which holds
 * n already), up to max in all, keeping the others' order. Returns the new count. */
static int take_batch(struct cm_rpc *rpc, const struct route *route, struct item **batch, int n,
                      int max)
{
    struct item *prev = NULL, *x = rpc->head;

    while (x != NULL && n < max) {
        struct item *next = x->next;
        if (x->route == route) {
            if (prev != NULL)
                prev->next = next;
            else
                rpc->head = next;
            if (rpc->tail == x)
                rpc->tail = prev;
            rpc->queued--;
            x->next = NULL;
            batch[n++] = x;
        } else {
            prev = x;
        }
        x = next;
    }
    return n;
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
        struct item *batch[CM_RPC_BATCH_MAX];
        int n = 1;

        pthread_mutex_lock(&rpc->lock);
        while (rpc->head == NULL && !rpc->stopping)
            pthread_cond_wait(&rpc->cond, &rpc->lock);
        batch[0] = rpc->head;
        if (batch[0] == NULL) { /* stopping and drained */
            pthread_mutex_unlock(&rpc->lock);
            break;
        }
        rpc->head = batch[0]->next;
        if (rpc->head == NULL)
            rpc->tail = NULL;
        rpc->queued--;
        batch[0]->next = NULL;
        if (batch[0]->route->batch_fn != NULL)
            n = take_batch(rpc, batch[0]->route, batch, 1, batch[0]->route->batch_max);
        pthread_mutex_unlock(&rpc->lock);

        if (batch[0]->route->batch_fn != NULL)
            serve_batch(rpc, pg, index, batch, n);
        else
            serve(rpc, pg, index, batch[0]);
        for (int i = 0; i < n; i++) {
            natsMsg_Destroy(batch[i]->msg);
            free(batch[i]);
        }
    }
    cm_pg_destroy(pg);
    return NULL;
}

/* Queues msg for route's workers; false (nothing queued) when the queue is full or the server
 * is stopping. Any thread. */
static bool enqueue(struct cm_rpc *rpc, struct route *route, natsMsg *msg)
{
    struct item *it;

    pthread_mutex_lock(&rpc->lock);
    if (rpc->queued >= QUEUE_LIMIT || rpc->stopping) {
        pthread_mutex_unlock(&rpc->lock);
        if (rpc->m_busy != NULL)
            cm_metrics_inc(rpc->m_busy, 1);
        return false;
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
    return true;
}

/* nats.c thread: queue the request, or answer "busy" at once when the queue is full. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct route *route = closure;

    (void)nc;
    (void)sub;
    if (enqueue(route->rpc, route, msg))
        return;
    publish_reply(route->rpc, msg, route->subject,
                  "{\"error\":{\"code\":\"busy\",\"message\":\"overloaded; retry\"}}");
    natsMsg_Destroy(msg);
}

/*
 * nats.c thread: the subscription is closed and its handler has returned for the last time
 * (natsSubscription_SetOnCompleteCB). cm_rpc_destroy() waits for every one of these before
 * it frees the routes that on_msg reads. Touches nothing of rpc after the unlock.
 */
static void on_sub_complete(void *closure)
{
    struct cm_rpc *rpc = ((struct route *)closure)->rpc;

    pthread_mutex_lock(&rpc->lock);
    rpc->live_subs--;
    pthread_cond_broadcast(&rpc->cond);
    pthread_mutex_unlock(&rpc->lock);
}

/*
 * Set-up step: subscribe once; nats.c restores subscriptions after a reconnect itself. Runs on
 * cm_nats's set-up thread; cm_rpc_destroy() unregisters it, waiting out a pass in progress,
 * before it touches the subscriptions.
 */
static int subscribe_all(struct cm_nats *n, void *arg)
{
    struct cm_rpc *rpc = arg;

    if (rpc->subscribed)
        return CM_OK;
    for (int i = 0; i < rpc->nroutes; i++) {
        struct route *r = &rpc->routes[i];
        natsStatus s;

        if (r->sub != NULL || r->forwarded_only)
            continue;
        s = natsConnection_QueueSubscribe(&r->sub, cm_nats_conn(n), r->pattern, rpc->name, on_msg,
                                          r);
        if (s == NATS_OK) {
            pthread_mutex_lock(&rpc->lock);
            rpc->live_subs++;
            pthread_mutex_unlock(&rpc->lock);
            s = natsSubscription_SetOnCompleteCB(r->sub, on_sub_complete, r);
            if (s != NATS_OK) {
                /* Unreachable for an open asynchronous subscription; without the callback
                 * destroy could not know when on_msg is done with r, so keep none. */
                natsSubscription_Unsubscribe(r->sub);
                natsSubscription_Destroy(r->sub);
                pthread_mutex_lock(&rpc->lock);
                rpc->live_subs--;
                pthread_mutex_unlock(&rpc->lock);
            }
        }
        if (s != NATS_OK) {
            CM_WARN("rpc: cannot subscribe to %s: %s", r->subject, natsStatus_GetText(s));
            r->sub = NULL;
            return CM_UNAVAIL;
        }
        /* Requests are small and many; let a burst queue up rather than be dropped. */
        natsSubscription_SetPendingLimits(r->sub, 65536, 64 * 1024 * 1024);
    }
    rpc->subscribed = true;
    CM_INFO("rpc: serving %d subjects with %d workers%s%s", rpc->nroutes, rpc->nworkers,
            rpc->lane ? " in lane " : "", rpc->lane ? rpc->lane : "");
    return CM_OK;
}

int cm_rpc_create(struct cm_rpc **out, struct cm_nats *n, const char *name, const char *db_url,
                  const char *schema, int workers, struct cm_metrics *metrics)
{
    return cm_rpc_create_lane(out, n, name, NULL, db_url, schema, workers, metrics);
}

int cm_rpc_create_lane(struct cm_rpc **out, struct cm_nats *n, const char *name, const char *lane,
                       const char *db_url, const char *schema, int workers,
                       struct cm_metrics *metrics)
{
    struct cm_rpc *rpc = cm_xcalloc(1, sizeof(*rpc));
    char lane_label[96];
    const char *labels = NULL; /* the main server's series stay unlabelled */

    rpc->nats = n;
    rpc->name = cm_xstrdup(name);
    if (lane != NULL) {
        rpc->lane = cm_xstrdup(lane);
        snprintf(lane_label, sizeof(lane_label), "lane=\"%s\"", lane);
        labels = lane_label;
    }
    rpc->db_url = cm_xstrdup(db_url);
    rpc->schema = cm_xstrdup(schema);
    rpc->nworkers = workers > 0 ? workers : 4;
    rpc->threads = cm_xcalloc((size_t)rpc->nworkers, sizeof(pthread_t));
    pthread_mutex_init(&rpc->lock, NULL);
    pthread_cond_init(&rpc->cond, NULL);
    if (metrics != NULL) {
        rpc->m_calls =
            cm_metrics_counter(metrics, "rpc_requests_total", labels, "NATS requests served");
        rpc->m_errors = cm_metrics_counter(metrics, "rpc_errors_total", labels,
                                           "NATS requests answered with an error");
        rpc->m_busy = cm_metrics_counter(metrics, "rpc_busy_total", labels,
                                         "NATS requests refused because the queue was full");
        rpc->m_latency = cm_metrics_histogram(metrics, "rpc_request_seconds", labels,
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
    r->pattern = cm_xmalloc(strlen(subject) + 3);
    sprintf(r->pattern, "%s.*", subject);
    r->fn = fn;
    r->arg = arg;
    r->rpc = rpc;
}

void cm_rpc_handle_batch(struct cm_rpc *rpc, const char *subject, cm_rpc_batch_fn fn, void *arg,
                         int max)
{
    if (max < 1 || max > CM_RPC_BATCH_MAX)
        abort(); /* a programming error, caught by the first test run */
    cm_rpc_handle(rpc, subject, NULL, arg);
    rpc->routes[rpc->nroutes - 1].batch_fn = fn;
    rpc->routes[rpc->nroutes - 1].batch_max = max;
}

int cm_rpc_queued(struct cm_rpc *rpc)
{
    int n;

    pthread_mutex_lock(&rpc->lock);
    n = rpc->queued;
    pthread_mutex_unlock(&rpc->lock);
    return n;
}

void cm_rpc_handle_forwarded(struct cm_rpc *lane, const char *subject, cm_rpc_fn fn, void *arg)
{
    cm_rpc_handle(lane, subject, fn, arg);
    lane->routes[lane->nroutes - 1].forwarded_only = true;
}

void cm_rpc_forward(struct cm_rpc_call *call, struct cm_rpc *lane)
{
    struct route *route = NULL;

    for (int i = 0; i < lane->nroutes && route == NULL; i++) {
        if (lane->routes[i].forwarded_only && strcmp(lane->routes[i].subject, call->subject) == 0)
            route = &lane->routes[i];
    }
    if (route == NULL)
        abort(); /* no cm_rpc_handle_forwarded for it: a programming error */
    if (!enqueue(lane, route, call->msg)) {
        cm_rpc_fail(call, "busy", "overloaded; retry");
        return;
    }
    /* From here the message is lane's: a worker there may be answering it already. */
    call->forwarded = 1;
    call->replied = 1;
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
    rpc->started = true;
    return CM_OK;
}

/*
 * Closes every subscription: drained, so that what the server sent already is served, or
 * unsubscribed when the drain cannot finish (disconnected: a subscription left open would be
 * restored by the next reconnect, with its handler pointing into freed memory). Then waits
 * until nats.c has run each one's on-complete callback, after which on_msg runs no more.
 * Returns false when that did not happen in time.
 */
static bool close_subscriptions(struct cm_rpc *rpc)
{
    struct timespec deadline;
    bool done;

    for (int i = 0; i < rpc->nroutes; i++) {
        if (rpc->routes[i].sub != NULL && natsSubscription_Drain(rpc->routes[i].sub) != NATS_OK)
            natsSubscription_Unsubscribe(rpc->routes[i].sub);
    }
    for (int i = 0; i < rpc->nroutes; i++) {
        natsSubscription *sub = rpc->routes[i].sub;
        if (sub != NULL && natsSubscription_IsValid(sub) &&
            natsSubscription_WaitForDrainCompletion(sub, 5000) != NATS_OK)
            natsSubscription_Unsubscribe(sub);
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&rpc->lock);
    while (rpc->live_subs > 0) {
        if (pthread_cond_timedwait(&rpc->cond, &rpc->lock, &deadline) != 0)
            break;
    }
    done = rpc->live_subs == 0;
    pthread_mutex_unlock(&rpc->lock);
    for (int i = 0; i < rpc->nroutes; i++) {
        natsSubscription_Destroy(rpc->routes[i].sub);
        rpc->routes[i].sub = NULL;
    }
    return done;
}

void cm_rpc_destroy(struct cm_rpc *rpc)
{
    bool closed;

    if (rpc == NULL)
        return;
    /* First, so that no set-up pass (a reconnect) subscribes anew, now or after the free. */
    if (rpc->started)
        cm_nats_off_connect(rpc->nats, subscribe_all, rpc);
    closed = close_subscriptions(rpc);
    pthread_mutex_lock(&rpc->lock);
    rpc->stopping = true;
    pthread_cond_broadcast(&rpc->cond);
    pthread_mutex_unlock(&rpc->lock);
    for (int i = 0; i < rpc->nstarted; i++)
        pthread_join(rpc->threads[i], NULL);
    if (!closed) {
        /* A handler may still run on nats.c's thread with a route of ours: better a leak at
         * exit than a use after free. */
        CM_ERROR("rpc: subscriptions not closed in time; leaving the server allocated");
        return;
    }
    for (int i = 0; i < rpc->nroutes; i++) {
        free(rpc->routes[i].subject);
        free(rpc->routes[i].pattern);
        for (int j = 0; j < rpc->routes[i].ndelegates; j++)
            free(rpc->routes[i].delegates[j]);
    }
    pthread_cond_destroy(&rpc->cond);
    pthread_mutex_destroy(&rpc->lock);
    free(rpc->threads);
    free(rpc->name);
    free(rpc->lane);
    free(rpc->db_url);
    free(rpc->schema);
    free(rpc->session_sql);
    free(rpc);
}

void cm_rpc_delegate(struct cm_rpc *rpc, const char *subject, const char *caller)
{
    for (int i = 0; i < rpc->nroutes; i++) {
        struct route *r = &rpc->routes[i];
        if (strcmp(r->subject, subject) != 0)
            continue;
        if (r->ndelegates == MAX_DELEGATES)
            abort(); /* a programming error, caught by the first test run */
        r->delegates[r->ndelegates++] = cm_xstrdup(caller);
        return;
    }
    abort(); /* delegation on a subject not handled: a programming error */
}
