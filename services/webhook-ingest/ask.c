/*
 * ask.c - blocking NATS requests off the event loop (see ask.h).
 *
 * The loop must never wait for another service, so a request is queued for a small pool of
 * worker threads; the worker makes the request and posts the job back to the loop
 * (cm_loopq_post), as publish.c does with JetStream's acknowledgements. The queue is
 * bounded: past it, the caller hears "unavailable" at once and Meta retries later.
 *
 * Three lanes, each with its own workers and queue: Meta's signed callbacks, the deletion
 * status page that anyone on the Internet may ask for, and the media links Meta fetches reply
 * files from. A flood of status or media requests then fills only its own lane and never
 * stands between Meta's callbacks and a worker.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ask.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "ingest.h"

/* Callbacks are rare (a few a day per account); two workers keep one slow answer from
 * holding up the next, and the bound keeps a flood from queueing without end. The status
 * page is read by people, one at a time: one worker, and a short queue (callbacks.c also
 * limits its rate before it gets here). */
#define WORKERS            2
#define QUEUE_LIMIT        256
#define STATUS_WORKERS     1
#define STATUS_QUEUE_LIMIT INGEST_STATUS_QUEUE
/* Media links: a few files at a time, each asked chunk by chunk (media.c bounds them). */
#define MEDIA_WORKERS     2
#define MEDIA_QUEUE_LIMIT 16

struct job {
    struct ingest *ing;
    char *subject;
    char *body;
    ingest_ask_fn done;
    void *arg;
    /* The answer, filled by the worker. */
    int rc;
    char code[24];
    char message[256];
    cJSON *reply; /* the whole parsed reply */
    struct job *next;
};

struct ingest_asker {
    struct ingest *ing;
    pthread_t threads[WORKERS];
    int nworkers;
    int limit; /* jobs queued at most */
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    int queued;
    bool stopping;
};

static int from_code(const char *code)
{
    if (strcmp(code, "invalid") == 0)
        return CM_INVALID;
    if (strcmp(code, "not_found") == 0)
        return CM_NOTFOUND;
    if (strcmp(code, "denied") == 0 || strcmp(code, "refused") == 0)
        return CM_DENIED;
    if (strcmp(code, "conflict") == 0)
        return CM_CONFLICT;
    if (strcmp(code, "unavailable") == 0 || strcmp(code, "busy") == 0)
        return CM_UNAVAIL;
    return CM_ERR;
}

/* Worker thread: the blocking request. */
static void perform(struct job *j)
{
    struct cm_nats *n = j->ing->svc.nats;
    natsMsg *msg = NULL;
    const cJSON *err;
    natsStatus s;

    j->rc = CM_UNAVAIL;
    /* Down: answer 503 now, rather than after the whole wait. */
    if (!cm_nats_connected(n)) {
        snprintf(j->message, sizeof(j->message), "NATS is unreachable");
        return;
    }
    s = cm_nats_request(&msg, n, j->subject, j->body, INGEST_ASK_WAIT_MS);
    if (s != NATS_OK) {
        snprintf(j->message, sizeof(j->message), "%s: %s", j->subject,
                 s == NATS_NO_RESPONDERS ? "no service is answering" : natsStatus_GetText(s));
        return;
    }
    j->reply = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
    err = cJSON_GetObjectItemCaseSensitive(j->reply, "error");
    if (cJSON_IsObject(err)) {
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(err, "code"));
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(err, "message"));
        snprintf(j->code, sizeof(j->code), "%s", code ? code : "internal");
        snprintf(j->message, sizeof(j->message), "%s", text ? text : "failed");
        j->rc = from_code(j->code);
    } else if (cJSON_GetObjectItemCaseSensitive(j->reply, "result") != NULL) {
        j->rc = CM_OK;
    } else {
        snprintf(j->message, sizeof(j->message), "%s: an answer outside the contract", j->subject);
        j->rc = CM_ERR;
    }
}

static void job_free(struct job *j)
{
    cJSON_Delete(j->reply);
    free(j->subject);
    free(j->body);
    free(j);
}

/* Loop thread: hand the answer over, and let a waiting shutdown proceed. */
static void finish(void *arg)
{
    struct job *j = arg;
    struct ingest *ing = j->ing;
    struct ingest_answer a;

    if (!ing->closed) {
        a.rc = j->rc;
        a.code = j->code;
        a.message = j->message;
        a.result = cJSON_GetObjectItemCaseSensitive(j->reply, "result");
        j->done(ing, j->arg, &a);
        ing->inflight--;
        cm_metrics_set(ing->m_inflight, ing->inflight);
        if (ing->draining && ing->inflight == 0)
            cm_service_done(&ing->svc);
    }
    job_free(j);
}

static void *worker_main(void *p)
{
    struct ingest_asker *q = p;
    struct ingest *ing = q->ing;

    pthread_mutex_lock(&q->lock);
    for (;;) {
        struct job *j;

        while (q->head == NULL && !q->stopping)
            pthread_cond_wait(&q->cond, &q->lock);
        if (q->stopping)
            break;
        j = q->head;
        q->head = j->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->queued--;
        pthread_mutex_unlock(&q->lock);
        perform(j);
        cm_loopq_post(ing->svc.loopq, finish, j);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

void ingest_ask(struct ingest *ing, enum ingest_lane lane, const char *subject, char *body,
                ingest_ask_fn done, void *arg)
{
    struct ingest_asker *q = ing->askers[lane];
    struct job *j = cm_xcalloc(1, sizeof(*j));
    bool full;

    j->ing = ing;
    j->subject = cm_xstrdup(subject);
    j->body = body;
    j->done = done;
    j->arg = arg;
    /* Counted like a POST waiting for JetStream: a shutdown answers it before it ends. */
    ing->inflight++;
    cm_metrics_set(ing->m_inflight, ing->inflight);
    pthread_mutex_lock(&q->lock);
    full = q->queued >= q->limit;
    if (!full) {
        if (q->tail != NULL)
            q->tail->next = j;
        else
            q->head = j;
        q->tail = j;
        q->queued++;
        pthread_cond_signal(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    if (full) {
        j->rc = CM_UNAVAIL;
        snprintf(j->message, sizeof(j->message), "too many requests waiting");
        finish(j);
    }
}

static int lane_start(struct ingest *ing, enum ingest_lane lane, int workers, int limit)
{
    struct ingest_asker *q = cm_xcalloc(1, sizeof(*q));

    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->ing = ing;
    q->nworkers = workers;
    q->limit = limit;
    ing->askers[lane] = q;
    for (int i = 0; i < q->nworkers; i++) {
        if (pthread_create(&q->threads[i], NULL, worker_main, q) != 0) {
            CM_ERROR("cannot start a callback worker");
            return CM_ERR;
        }
        q->started++;
    }
    return CM_OK;
}

int ingest_ask_start(struct ingest *ing)
{
    int rc = lane_start(ing, INGEST_LANE_CALLBACK, WORKERS, QUEUE_LIMIT);

    if (rc == CM_OK)
        rc = lane_start(ing, INGEST_LANE_STATUS, STATUS_WORKERS, STATUS_QUEUE_LIMIT);
    if (rc == CM_OK)
        rc = lane_start(ing, INGEST_LANE_MEDIA, MEDIA_WORKERS, MEDIA_QUEUE_LIMIT);
    return rc;
}

static void lane_stop(struct ingest_asker *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < q->started; i++)
        pthread_join(q->threads[i], NULL);
    while (q->head != NULL) {
        struct job *j = q->head;
        q->head = j->next;
        job_free(j);
    }
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

void ingest_ask_stop(struct ingest *ing)
{
    /* Answers still on their way find the server closed and only free their job. */
    ing->closed = true;
    for (int i = 0; i < INGEST_LANES; i++) {
        lane_stop(ing->askers[i]);
        ing->askers[i] = NULL;
    }
}
