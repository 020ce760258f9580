/*
 * nats.c - connection life cycle, set-up steps, JetStream streams and async publish.
 */
#include "common/nats.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/service.h"
#include "common/url.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PEND_BUCKETS 1024
#define MAX_SETUPS   8

/* One async publish waiting for its acknowledgement, keyed by the message pointer. */
/*
 * An asynchronous publish waiting for its acknowledgement, keyed by its message. Its
 * deadline is kept here rather than given to nats.c as MaxWait: nats.c keeps a record of
 * every publish with a MaxWait until that deadline has passed, acknowledged or not, which
 * at 40,000 events a second held some 15 MB for nothing. The sweeper thread completes the
 * overdue ones with CM_TIMEOUT; an acknowledgement arriving after that finds no entry.
 */
struct pend {
    natsMsg *msg;
    cm_nats_pub_fn fn;
    void *arg;
    int64_t deadline_ms; /* monotonic; 0: none */
    struct pend *next;
};

/* How often overdue publishes are looked for. */
#define SWEEP_MS 100

struct setup {
    cm_nats_setup_fn fn;
    void *arg;
};

struct cm_nats {
    char *url;
    char *name;
    char *identity;                       /* who it speaks as: the certificate's CN, or the name */
    char *ca_file, *cert_file, *key_file; /* NULL: plaintext */
    natsOptions *opts;
    natsConnection *conn;
    jsCtx *js;
    bool coalesce; /* writes left to nats.c's flusher thread (cm_nats_coalesce_writes) */

    _Atomic bool connected;
    _Atomic bool setup_done;
    bool closed;          /* the closed callback ran: nats.c will call us no more; under lock */
    _Atomic bool closing; /* we are closing: a disconnect is expected, not news */

    /* Set-up thread: runs the steps after each (re)connect. */
    pthread_t setup_thread;
    bool setup_thread_started;
    pthread_t sweep_thread; /* completes overdue publishes, see struct pend */
    bool sweep_thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool want_setup;
    bool stopping;
    bool setup_running; /* the set-up thread is running a pass of steps; under lock */
    struct setup setups[MAX_SETUPS];
    int nsetups;

    pthread_mutex_t pend_lock;
    struct pend *pend[PEND_BUCKETS];

    struct cm_metric *m_disconnects;
    struct cm_metric *m_pub_errors;
};

static size_t pend_slot(const natsMsg *msg)
{
    uintptr_t p = (uintptr_t)msg;
    return (size_t)((p >> 4) ^ (p >> 14)) % PEND_BUCKETS;
}

static void pend_put(struct cm_nats *n, struct pend *p)
{
    size_t i = pend_slot(p->msg);

    pthread_mutex_lock(&n->pend_lock);
    p->next = n->pend[i];
    n->pend[i] = p;
    pthread_mutex_unlock(&n->pend_lock);
}

/* Removes and returns the entry for msg, or NULL when there is none. */
static struct pend *pend_take(struct cm_nats *n, const natsMsg *msg)
{
    size_t i = pend_slot(msg);
    struct pend **pp, *p = NULL;

    pthread_mutex_lock(&n->pend_lock);
    for (pp = &n->pend[i]; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->msg == msg) {
            p = *pp;
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&n->pend_lock);
    return p;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes out every publish past its deadline and completes it with CM_TIMEOUT. */
static void pend_sweep(struct cm_nats *n)
{
    struct pend *overdue = NULL;
    int64_t now = mono_ms();

    pthread_mutex_lock(&n->pend_lock);
    for (size_t i = 0; i < PEND_BUCKETS; i++) {
        struct pend **pp = &n->pend[i];
        while (*pp != NULL) {
            struct pend *p = *pp;
            if (p->deadline_ms > 0 && p->deadline_ms <= now) {
                *pp = p->next;
                p->next = overdue;
                overdue = p;
            } else {
                pp = &p->next;
            }
        }
    }
    pthread_mutex_unlock(&n->pend_lock);
    while (overdue != NULL) {
        struct pend *p = overdue;
        overdue = p->next;
        CM_WARN("nats: publish not acknowledged in time");
        if (n->m_pub_errors != NULL)
            cm_metrics_inc(n->m_pub_errors, 1);
        p->fn(p->arg, CM_TIMEOUT, 0, false);
        free(p);
    }
}

static void *sweep_main(void *arg)
{
    struct cm_nats *n = arg;

    pthread_mutex_lock(&n->lock);
    while (!n->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&n->cond, &n->lock, &ts);
        if (n->stopping)
            break;
        pthread_mutex_unlock(&n->lock);
        pend_sweep(n);
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

static void request_setup(struct cm_nats *n)
{
    pthread_mutex_lock(&n->lock);
    n->want_setup = true;
    atomic_store(&n->setup_done, false);
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

static void on_connected(natsConnection *nc, void *closure)
{
    struct cm_nats *n = closure;
    char url[256] = "";

    char shown[256];

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    cm_url_redact(url, shown, sizeof(shown));
    CM_INFO("nats: connected to %s", shown);
    atomic_store(&n->connected, true);
    request_setup(n);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    struct cm_nats *n = closure;

    (void)nc;
    if (atomic_exchange(&n->connected, false) && !atomic_load(&n->closing)) {
        CM_WARN("nats: disconnected; reconnecting in the background");
        if (n->m_disconnects != NULL)
            cm_metrics_inc(n->m_disconnects, 1);
    }
    atomic_store(&n->setup_done, false);
}

static void on_closed(natsConnection *nc, void *closure)
{
    struct cm_nats *n = closure;

    (void)nc;
    atomic_store(&n->connected, false);
    atomic_store(&n->setup_done, false);
    /* The last callback nats.c makes on this connection: destroy may now free us. */
    pthread_mutex_lock(&n->lock);
    n->closed = true;
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

/* Waits (bounded) for on_closed, so no callback can run on freed memory. */
static void wait_closed(struct cm_nats *n)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&n->lock);
    while (!n->closed) {
        if (pthread_cond_timedwait(&n->cond, &n->lock, &ts) != 0) {
            CM_WARN("nats: connection did not report closing in time");
            break;
        }
    }
    pthread_mutex_unlock(&n->lock);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    CM_WARN("nats: asynchronous error: %s", natsStatus_GetText(err));
}

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    struct cm_nats *n = closure;
    struct pend *p = pend_take(n, msg);

    (void)js;
    if (p != NULL) {
        if (pa != NULL) {
            p->fn(p->arg, CM_OK, pa->Sequence, pa->Duplicate);
        } else {
            int status = CM_ERR;
            if (pae != NULL && pae->Err == NATS_TIMEOUT)
                status = CM_TIMEOUT;
            else if (pae != NULL &&
                     (pae->Err == NATS_NO_RESPONDERS || pae->Err == NATS_CONNECTION_CLOSED))
                status = CM_UNAVAIL;
            CM_WARN("nats: publish to %s not acknowledged: %s%s%s", natsMsg_GetSubject(msg),
                    pae ? natsStatus_GetText(pae->Err) : "unknown", pae && pae->ErrText ? ": " : "",
                    pae && pae->ErrText ? pae->ErrText : "");
            if (n->m_pub_errors != NULL)
                cm_metrics_inc(n->m_pub_errors, 1);
            p->fn(p->arg, status, 0, false);
        }
        free(p);
    }
    natsMsg_Destroy(msg);
}

static void *setup_main(void *arg)
{
    struct cm_nats *n = arg;
    struct setup steps[MAX_SETUPS];
    int nsteps;

    pthread_mutex_lock(&n->lock);
    while (!n->stopping) {
        bool ok = true;

        if (!n->want_setup || !atomic_load(&n->connected)) {
            pthread_cond_wait(&n->cond, &n->lock);
            continue;
        }
        n->want_setup = false;
        /* A copy: cm_nats_off_connect() may remove a step while the pass runs unlocked; it
         * waits for the pass to end (setup_running) before its caller frees the step's arg. */
        nsteps = n->nsetups;
        memcpy(steps, n->setups, sizeof(steps[0]) * (size_t)nsteps);
        n->setup_running = true;
        pthread_mutex_unlock(&n->lock);
        for (int i = 0; i < nsteps && ok; i++)
            ok = steps[i].fn(n, steps[i].arg) == CM_OK;
        pthread_mutex_lock(&n->lock);
        n->setup_running = false;
        pthread_cond_broadcast(&n->cond);
        if (ok && !n->want_setup) {
            atomic_store(&n->setup_done, true);
        } else if (!ok && !n->stopping) {
            /* Retry after a pause, unless a reconnect or stop wakes us first. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            n->want_setup = true;
            pthread_cond_timedwait(&n->cond, &n->lock, &ts);
        }
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int cm_nats_create(struct cm_nats **out, const char *url, const char *name,
                   struct cm_metrics *metrics)
{
    struct cm_nats *n = cm_xcalloc(1, sizeof(*n));

    n->url = cm_xstrdup(url);
    n->name = cm_xstrdup(name);
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    pthread_mutex_init(&n->pend_lock, NULL);
    if (metrics != NULL) {
        n->m_disconnects = cm_metrics_counter(metrics, "nats_disconnects_total", NULL,
                                              "Times the NATS connection was lost");
        n->m_pub_errors = cm_metrics_counter(metrics, "nats_publish_errors_total", NULL,
                                             "JetStream publishes not acknowledged");
    }
    *out = n;
    return CM_OK;
}

void cm_nats_on_connect(struct cm_nats *n, cm_nats_setup_fn fn, void *arg)
{
    pthread_mutex_lock(&n->lock);
    if (n->nsetups == MAX_SETUPS)
        abort(); /* a programming error, caught by the first test run */
    n->setups[n->nsetups].fn = fn;
    n->setups[n->nsetups].arg = arg;
    n->nsetups++;
    pthread_mutex_unlock(&n->lock);
}

void cm_nats_off_connect(struct cm_nats *n, cm_nats_setup_fn fn, void *arg)
{
    pthread_mutex_lock(&n->lock);
    for (int i = 0; i < n->nsetups; i++) {
        if (n->setups[i].fn != fn || n->setups[i].arg != arg)
            continue;
        memmove(&n->setups[i], &n->setups[i + 1],
                sizeof(n->setups[0]) * (size_t)(n->nsetups - i - 1));
        n->nsetups--;
        break;
    }
    /* A pass that started before the removal may be running the step with arg right now. */
    while (n->setup_running &&
           !(n->setup_thread_started && pthread_equal(pthread_self(), n->setup_thread)))
        pthread_cond_wait(&n->cond, &n->lock);
    pthread_mutex_unlock(&n->lock);
}

void cm_nats_coalesce_writes(struct cm_nats *n)
{
    n->coalesce = true;
}

int cm_nats_start(struct cm_nats *n)
{
    natsStatus s;
    jsOptions jo;
    char shown[512];

    s = natsOptions_Create(&n->opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(n->opts, n->url);
    if (s == NATS_OK)
        s = natsOptions_SetName(n->opts, n->name);
    if (s == NATS_OK)
        s = cm_nats_options_identity(n->opts, cm_nats_identity_of(n), n->ca_file, n->cert_file,
                                     n->key_file);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(n->opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(n->opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(n->opts, 100, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(n->opts, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(n->opts, true, on_connected, n);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(n->opts, on_connected, n);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(n->opts, on_disconnected, n);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(n->opts, on_closed, n);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(n->opts, on_async_error, n);
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(n->opts, !n->coalesce);
    if (s != NATS_OK) {
        CM_ERROR("nats: options: %s", natsStatus_GetText(s));
        return CM_INVALID;
    }

    s = natsConnection_Connect(&n->conn, n->opts);
    cm_url_redact(n->url, shown, sizeof(shown)); /* NATS_URL may hold a user's password */
    if (s == NATS_OK) {
        on_connected(n->conn, n);
    } else if (s == NATS_NOT_YET_CONNECTED) {
        CM_WARN("nats: %s not reachable yet; retrying in the background", shown);
    } else {
        CM_ERROR("nats: connect to %s: %s", shown, natsStatus_GetText(s));
        return CM_INVALID;
    }

    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = n;
    jo.PublishAsync.MaxPending = 65536;
    jo.PublishAsync.StallWait = 50;
    s = natsConnection_JetStream(&n->js, n->conn, &jo);
    if (s != NATS_OK) {
        CM_ERROR("nats: JetStream context: %s", natsStatus_GetText(s));
        return CM_ERR;
    }
    /* Started last: set-up steps use the context. A connect that happened meanwhile left
     * want_setup set, so nothing is missed. */
    if (pthread_create(&n->setup_thread, NULL, setup_main, n) != 0) {
        CM_ERROR("nats: cannot start the set-up thread");
        return CM_ERR;
    }
    n->setup_thread_started = true;
    if (pthread_create(&n->sweep_thread, NULL, sweep_main, n) != 0) {
        CM_ERROR("nats: cannot start the sweeper thread");
        return CM_ERR;
    }
    n->sweep_thread_started = true;
    return CM_OK;
}

void cm_nats_destroy(struct cm_nats *n)
{
    if (n == NULL)
        return;
    if (n->setup_thread_started) {
        pthread_mutex_lock(&n->lock);
        n->stopping = true;
        pthread_cond_broadcast(&n->cond);
        pthread_mutex_unlock(&n->lock);
        pthread_join(n->setup_thread, NULL);
        if (n->sweep_thread_started)
            pthread_join(n->sweep_thread, NULL);
    }
    if (n->conn != NULL && atomic_load(&n->connected))
        natsConnection_FlushTimeout(n->conn, 2000);
    jsCtx_Destroy(n->js);
    if (n->conn != NULL) {
        atomic_store(&n->closing, true);
        natsConnection_Close(n->conn);
        wait_closed(n);
        natsConnection_Destroy(n->conn);
    }
    natsOptions_Destroy(n->opts);
    for (size_t i = 0; i < PEND_BUCKETS; i++) {
        while (n->pend[i] != NULL) {
            struct pend *p = n->pend[i];
            n->pend[i] = p->next;
            free(p);
        }
    }
    pthread_mutex_destroy(&n->pend_lock);
    pthread_cond_destroy(&n->cond);
    pthread_mutex_destroy(&n->lock);
    free(n->url);
    free(n->name);
    free(n->identity);
    free(n->ca_file);
    free(n->cert_file);
    free(n->key_file);
    free(n);
}

const char *cm_nats_url(const struct cm_nats *n)
{
    return n->url;
}

const char *cm_nats_name(const struct cm_nats *n)
{
    return n->name;
}

bool cm_nats_connected(struct cm_nats *n)
{
    return n->conn != NULL && atomic_load(&n->connected) &&
           natsConnection_Status(n->conn) == NATS_CONN_STATUS_CONNECTED;
}

bool cm_nats_ready(struct cm_nats *n)
{
    return cm_nats_connected(n) && atomic_load(&n->setup_done);
}

natsConnection *cm_nats_conn(struct cm_nats *n)
{
    return n->conn;
}

jsCtx *cm_nats_js(struct cm_nats *n)
{
    return n->js;
}

/* True when every subject of one list is in the other (the same set, in any order). */
static bool same_subjects(const jsStreamConfig *a, const jsStreamConfig *b)
{
    if (a->SubjectsLen != b->SubjectsLen)
        return false;
    for (int i = 0; i < a->SubjectsLen; i++) {
        bool found = false;
        for (int j = 0; j < b->SubjectsLen && !found; j++)
            found = strcmp(a->Subjects[i], b->Subjects[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/*
 * Names the first security-relevant field in which the live configuration differs from the
 * intended one, with both values in live_v and want_v; NULL when none does. These are the
 * fields an attacker with access to $JS.API.STREAM.UPDATE would change to keep Platform Data
 * beyond its purge or its age (deny_purge and deny_delete cannot even be unset again), or
 * to redirect it (storage, subjects).
 */
static const char *insecure_difference(const jsStreamConfig *live, const jsStreamConfig *want,
                                       char *live_v, char *want_v, size_t cap)
{
    if (live->DenyPurge != want->DenyPurge) {
        snprintf(live_v, cap, "%s", live->DenyPurge ? "true" : "false");
        snprintf(want_v, cap, "%s", want->DenyPurge ? "true" : "false");
        return "deny_purge";
    }
    if (live->DenyDelete != want->DenyDelete) {
        snprintf(live_v, cap, "%s", live->DenyDelete ? "true" : "false");
        snprintf(want_v, cap, "%s", want->DenyDelete ? "true" : "false");
        return "deny_delete";
    }
    if (live->MaxAge != want->MaxAge) {
        snprintf(live_v, cap, "%llds", (long long)(live->MaxAge / 1000000000LL));
        snprintf(want_v, cap, "%llds", (long long)(want->MaxAge / 1000000000LL));
        return "max_age";
    }
    if (live->Storage != want->Storage) {
        snprintf(live_v, cap, "%s", live->Storage == js_FileStorage ? "file" : "memory");
        snprintf(want_v, cap, "%s", want->Storage == js_FileStorage ? "file" : "memory");
        return "storage";
    }
    if (!same_subjects(live, want)) {
        snprintf(live_v, cap, "%s%s", live->SubjectsLen > 0 ? live->Subjects[0] : "(none)",
                 live->SubjectsLen > 1 ? ", ..." : "");
        snprintf(want_v, cap, "%s%s", want->SubjectsLen > 0 ? want->Subjects[0] : "(none)",
                 want->SubjectsLen > 1 ? ", ..." : "");
        return "subjects";
    }
    return NULL;
}

int cm_nats_stream_ensure(struct cm_nats *n, const jsStreamConfig *cfg)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s;

    s = js_GetStreamInfo(&si, n->js, cfg->Name, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        s = js_AddStream(&si, n->js, (jsStreamConfig *)cfg, NULL, &jerr);
        if (s == NATS_OK)
            CM_INFO("nats: stream %s created", cfg->Name);
    } else if (s == NATS_OK) {
        char live_v[160], want_v[160];
        const char *field = si->Config != NULL ? insecure_difference(si->Config, cfg, live_v,
                                                                     want_v, sizeof(live_v))
                                               : NULL;
        if (field != NULL) {
            /*
             * Serving on would keep data past its promised deletion, or send it elsewhere,
             * silently: stop, whatever thread this is (the log line is written already, and
             * _exit runs no handler that another thread could be using).
             */
            CM_ERROR("nats: stream %s has %s %s on the server, %s intended: refusing to start;"
                     " restore the stream's configuration (or delete the stream) and start again",
                     cfg->Name, field, live_v, want_v);
            jsStreamInfo_Destroy(si);
            _exit(CM_EXIT_CONFIG);
        }
        jsStreamInfo_Destroy(si);
        si = NULL;
        s = js_UpdateStream(&si, n->js, (jsStreamConfig *)cfg, NULL, &jerr);
        if (s != NATS_OK) {
            /* An immutable field (retention, say) differs: keep the stream as it is. */
            CM_WARN("nats: stream %s kept as it is, update refused: %s (%d)", cfg->Name,
                    natsStatus_GetText(s), (int)jerr);
            s = NATS_OK;
        }
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        CM_WARN("nats: stream %s: %s (%d)", cfg->Name, natsStatus_GetText(s), (int)jerr);
        return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ? CM_UNAVAIL : CM_ERR;
    }
    return CM_OK;
}

int cm_nats_stream_declare(struct cm_nats *n, const struct cm_stream_spec *spec)
{
    const char *subjects[1] = {spec->subjects};
    jsStreamConfig cfg;

    jsStreamConfig_Init(&cfg);
    cfg.Name = spec->name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = spec->work_queue ? js_WorkQueuePolicy : js_LimitsPolicy;
    cfg.Discard = js_DiscardOld;
    cfg.MaxAge = spec->max_age_s * 1000000000LL;
    if (spec->dup_window_s > 0)
        cfg.Duplicates = spec->dup_window_s * 1000000000LL;
    if (spec->max_per_subject > 0)
        cfg.MaxMsgsPerSubject = spec->max_per_subject;
    return cm_nats_stream_ensure(n, &cfg);
}

int cm_nats_publish_async(struct cm_nats *n, const char *subj, const char *msg_id, const void *data,
                          int len, int64_t max_wait_ms, cm_nats_pub_fn done, void *arg)
{
    natsMsg *msg = NULL;
    jsPubOptions po;
    struct pend *p;
    natsStatus s;

    if (!cm_nats_connected(n))
        return CM_UNAVAIL;
    s = natsMsg_Create(&msg, subj, NULL, data, len);
    if (s != NATS_OK) {
        CM_ERROR("nats: message for %s: %s", subj, natsStatus_GetText(s));
        return CM_ERR;
    }
    jsPubOptions_Init(&po);
    po.MsgId = msg_id; /* no MaxWait: the deadline is ours (see struct pend) */

    /* Registered before publishing: the acknowledgement may beat our return. */
    p = cm_xmalloc(sizeof(*p));
    p->msg = msg;
    p->fn = done;
    p->arg = arg;
    p->deadline_ms = max_wait_ms > 0 ? mono_ms() + max_wait_ms : 0;
    pend_put(n, p);

    s = js_PublishMsgAsync(n->js, &msg, &po);
    if (s != NATS_OK) {
        struct pend *mine = pend_take(n, p->msg);
        if (mine != NULL) {
            free(mine);
            natsMsg_Destroy(msg);
        }
        CM_WARN("nats: publish to %s refused: %s", subj, natsStatus_GetText(s));
        return s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED ? CM_UNAVAIL
                                                                                : CM_ERR;
    }
    return CM_OK;
}

int cm_nats_publish_sync(struct cm_nats *n, const char *subj, const char *msg_id, const void *data,
                         int len, uint64_t *seq)
{
    jsPubAck *pa = NULL;
    jsPubOptions po;
    jsErrCode jerr = 0;
    natsStatus s;

    if (!cm_nats_connected(n))
        return CM_UNAVAIL;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    s = js_Publish(&pa, n->js, subj, data, len, &po, &jerr);
    if (s != NATS_OK) {
        CM_WARN("nats: publish to %s: %s (%d)", subj, natsStatus_GetText(s), (int)jerr);
        return s == NATS_TIMEOUT ? CM_TIMEOUT : CM_UNAVAIL;
    }
    if (seq != NULL)
        *seq = pa->Sequence;
    jsPubAck_Destroy(pa);
    return CM_OK;
}

static char *dup_or_null(const char *s)
{
    return s != NULL && *s != '\0' ? cm_xstrdup(s) : NULL;
}

void cm_nats_set_identity(struct cm_nats *n, const char *identity, const char *ca_file,
                          const char *cert_file, const char *key_file)
{
    free(n->identity);
    free(n->ca_file);
    free(n->cert_file);
    free(n->key_file);
    n->identity = dup_or_null(identity);
    n->ca_file = dup_or_null(ca_file);
    n->cert_file = dup_or_null(cert_file);
    n->key_file = dup_or_null(key_file);
}

void cm_nats_share_identity(struct cm_nats *dst, const struct cm_nats *src)
{
    cm_nats_set_identity(dst, cm_nats_identity_of(src), src->ca_file, src->cert_file,
                         src->key_file);
}

const char *cm_nats_identity_of(const struct cm_nats *n)
{
    return n->identity != NULL ? n->identity : n->name;
}
