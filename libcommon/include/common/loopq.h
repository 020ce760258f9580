/*
 * loopq.h - hand work from any thread to the event loop.
 *
 * nats.c delivers callbacks on its own threads; the event loop is single-threaded and owns
 * every libevent object. A callback that needs the loop (to answer an HTTP request, say)
 * posts a function and its argument here; the loop runs it soon after, in posting order.
 * The base must have been created after evthread_use_pthreads() (cm_service_init does).
 */
#ifndef COMMON_LOOPQ_H
#define COMMON_LOOPQ_H

#include <event2/event.h>

typedef void (*cm_loopq_fn)(void *arg);

struct cm_loopq;

/* Creates a queue that runs its work on base. Free with cm_loopq_destroy(). */
struct cm_loopq *cm_loopq_create(struct event_base *base);

/*
 * Destroys the queue (accepts NULL). Work still queued is run first, on the calling thread,
 * which must be the loop's thread, so no posted argument is leaked.
 */
void cm_loopq_destroy(struct cm_loopq *q);

/* Queues fn(arg) to run on the loop thread. Safe from any thread; never blocks for long. */
void cm_loopq_post(struct cm_loopq *q, cm_loopq_fn fn, void *arg);

#endif
