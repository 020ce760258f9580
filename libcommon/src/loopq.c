/*
 * loopq.c - a mutex-guarded FIFO drained by an event made active from other threads.
 */
#include "common/loopq.h"
#include "common/mem.h"

#include <pthread.h>
#include <stdlib.h>

struct work {
    cm_loopq_fn fn;
    void *arg;
    struct work *next;
};

struct cm_loopq {
    pthread_mutex_t lock;
    struct work *head;
    struct work *tail;
    struct event *ev;
};

/* Takes the whole list at once so that work posted while we run waits for the next round. */
static struct work *take_all(struct cm_loopq *q)
{
    struct work *w;

    pthread_mutex_lock(&q->lock);
    w = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return w;
}

static void run_list(struct work *w)
{
    while (w != NULL) {
        struct work *next = w->next;
        w->fn(w->arg);
        free(w);
        w = next;
    }
}

static void on_active(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_list(take_all(arg));
}

struct cm_loopq *cm_loopq_create(struct event_base *base)
{
    struct cm_loopq *q = cm_xcalloc(1, sizeof(*q));

    pthread_mutex_init(&q->lock, NULL);
    q->ev = event_new(base, -1, 0, on_active, q);
    if (q->ev == NULL)
        abort(); /* only fails on allocation */
    return q;
}

void cm_loopq_destroy(struct cm_loopq *q)
{
    if (q == NULL)
        return;
    run_list(take_all(q));
    event_free(q->ev);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

void cm_loopq_post(struct cm_loopq *q, cm_loopq_fn fn, void *arg)
{
    struct work *w = cm_xmalloc(sizeof(*w));

    w->fn = fn;
    w->arg = arg;
    w->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail != NULL)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    pthread_mutex_unlock(&q->lock);
    /* Activating an already active event is a no-op, so bursts coalesce into one wake-up. */
    event_active(q->ev, 0, 0);
}
