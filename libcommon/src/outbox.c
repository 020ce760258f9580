/*
 * outbox.c - the transactional outbox and its relay (see outbox.h).
 */
#include "common/outbox.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/nats.h"
#include "common/pg.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH          256
#define BATCH_TEXT     "256"
#define POLL_MS        50 /* how soon a committed event leaves when the relay is idle */
#define PUBLISH_WAIT_S 5

struct cm_outbox {
    struct cm_nats *nats; /* the relay's own connection, see cm_outbox_start() */
    char *db_url;
    char *schema;
    pthread_t thread;
    _Atomic bool stopping;
    struct cm_metric *m_published;
};

int cm_outbox_add(struct cm_pg *pg, const char *subject, const char *msg_id, const char *payload)
{
    const char *params[3] = {subject, msg_id ? msg_id : "", payload};

    return cm_pg_exec_prepared(pg, "cm_outbox_add",
                               "INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, $3)",
                               3, params, NULL, NULL);
}

/* Completion tracking for one batch of asynchronous publishes. */
struct batch;

struct slot {
    struct batch *b;
    int index;
};

struct batch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending;
    bool ok[BATCH];
    struct slot slots[BATCH];
};

static void on_published(void *arg, int status, uint64_t seq, bool duplicate)
{
    struct slot *s = arg;

    (void)seq;
    (void)duplicate;
    pthread_mutex_lock(&s->b->lock);
    s->b->ok[s->index] = status == CM_OK;
    s->b->pending--;
    pthread_cond_signal(&s->b->cond);
    pthread_mutex_unlock(&s->b->lock);
}

/* Waits (bounded) until every publish of the batch has completed; false on a timeout. */
static bool wait_batch(struct batch *b)
{
    struct timespec deadline;
    bool all;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PUBLISH_WAIT_S + 2;
    pthread_mutex_lock(&b->lock);
    while (b->pending > 0) {
        if (pthread_cond_timedwait(&b->cond, &b->lock, &deadline) != 0)
            break;
    }
    all = b->pending == 0;
    pthread_mutex_unlock(&b->lock);
    return all;
}

/*
 * Publishes one batch and deletes what JetStream acknowledged, in one transaction that
 * holds the rows (SKIP LOCKED: each row is one relay's at a time). The publishes are
 * pipelined on one connection, so each subject keeps its order. Returns how many rows were
 * taken, or an error.
 */
static int relay_batch(struct cm_outbox *ob, struct cm_pg *pg)
{
    struct batch *b;
    int rc, n, done = 0, sent = 0;
    bool complete;
    struct cm_buf ids;

    rc = cm_pg_begin(pg);
    if (rc != CM_OK)
        return rc;
    rc = cm_pg_exec(pg,
                    "SELECT id, subject, msg_id, payload FROM outbox ORDER BY id"
                    " LIMIT " BATCH_TEXT " FOR UPDATE SKIP LOCKED",
                    0, NULL);
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    n = cm_pg_ntuples(pg);
    b = cm_xcalloc(1, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    for (int i = 0; i < n; i++) {
        const char *id = cm_pg_value(pg, i, 0);
        const char *given = cm_pg_value(pg, i, 2);
        const char *payload = cm_pg_value(pg, i, 3);
        char msg_id[160];

        if (*given != '\0')
            snprintf(msg_id, sizeof(msg_id), "%s", given);
        else
            snprintf(msg_id, sizeof(msg_id), "%s:outbox:%s", ob->schema, id);
        b->slots[i].b = b;
        b->slots[i].index = i;
        pthread_mutex_lock(&b->lock);
        b->pending++;
        pthread_mutex_unlock(&b->lock);
        if (cm_nats_publish_async(ob->nats, cm_pg_value(pg, i, 1), msg_id, payload,
                                  (int)strlen(payload), PUBLISH_WAIT_S * 1000, on_published,
                                  &b->slots[i]) != CM_OK) {
            pthread_mutex_lock(&b->lock);
            b->pending--;
            pthread_mutex_unlock(&b->lock);
            break;
        }
        sent++;
    }
    complete = wait_batch(b);
    cm_buf_init(&ids);
    cm_buf_puts(&ids, "{");
    for (int i = 0; i < sent; i++) {
        if (!b->ok[i])
            continue;
        cm_buf_printf(&ids, "%s%s", done ? "," : "", cm_pg_value(pg, i, 0));
        done++;
    }
    cm_buf_puts(&ids, "}");
    if (done > 0) {
        const char *params[1] = {ids.data};
        rc = cm_pg_exec(pg, "DELETE FROM outbox WHERE id = ANY($1::bigint[])", 1, params);
    }
    cm_buf_cleanup(&ids);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (complete) {
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->lock);
        free(b);
    } else {
        /* A completion is still owed (nats.c's own deadline should prevent this): leave
         * the batch to it rather than free memory a callback will touch. */
        CM_WARN("outbox: publishes of %s still unanswered; will retry them", ob->schema);
    }
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    if (ob->m_published != NULL)
        cm_metrics_inc(ob->m_published, (uint64_t)done);
    /* A shortfall means NATS failed: report it so the relay pauses. */
    return done < n ? CM_UNAVAIL : n;
}

/* Sleeps up to ms, waking early when the relay is stopping. */
static void pause_ms(struct cm_outbox *ob, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&ob->stopping); slept += 20)
        poll(NULL, 0, 20);
}

static void *relay_main(void *arg)
{
    struct cm_outbox *ob = arg;
    struct cm_pg *pg = NULL;

    if (cm_pg_connect(&pg, ob->db_url, ob->schema) == CM_INVALID)
        return NULL;
    while (!atomic_load(&ob->stopping)) {
        int rc = CM_UNAVAIL;

        /* Drain everything committed, batch after batch, then look again shortly. */
        if (cm_nats_ready(ob->nats)) {
            while ((rc = relay_batch(ob, pg)) == BATCH && !atomic_load(&ob->stopping)) {
            }
        }
        if (rc < 0 && rc != CM_UNAVAIL)
            CM_WARN("outbox: relay of %s failed: %s", ob->schema, cm_pg_error(pg));
        pause_ms(ob, rc < 0 ? 1000 : POLL_MS);
    }
    /* Last round for what committed before the stop. */
    if (cm_nats_ready(ob->nats))
        while (relay_batch(ob, pg) == BATCH) {
        }
    cm_pg_destroy(pg);
    return NULL;
}

int cm_outbox_start(struct cm_outbox **out, struct cm_nats *n, const char *db_url,
                    const char *schema, struct cm_metrics *metrics)
{
    struct cm_outbox *ob = cm_xcalloc(1, sizeof(*ob));
    char name[160];

    /*
     * The relay publishes on a connection of its own: nats-server reads each connection in
     * order, so a burst of a few hundred JetStream publishes on the service's connection
     * would delay the request replies written behind it. It publishes in bursts, so its
     * writes are coalesced.
     */
    snprintf(name, sizeof(name), "%s-outbox", cm_nats_name(n));
    if (cm_nats_create(&ob->nats, cm_nats_url(n), name, NULL) != CM_OK) {
        free(ob);
        return CM_ERR;
    }
    cm_nats_share_identity(ob->nats, n);
    cm_nats_coalesce_writes(ob->nats);
    if (cm_nats_start(ob->nats) != CM_OK) {
        cm_nats_destroy(ob->nats);
        free(ob);
        return CM_ERR;
    }
    ob->db_url = cm_xstrdup(db_url);
    ob->schema = cm_xstrdup(schema);
    if (metrics != NULL)
        ob->m_published = cm_metrics_counter(metrics, "outbox_published_total", NULL,
                                             "Outbox events published to JetStream");
    if (pthread_create(&ob->thread, NULL, relay_main, ob) != 0) {
        CM_ERROR("outbox: cannot start the relay");
        cm_nats_destroy(ob->nats);
        free(ob->db_url);
        free(ob->schema);
        free(ob);
        return CM_ERR;
    }
    *out = ob;
    return CM_OK;
}

void cm_outbox_destroy(struct cm_outbox *ob)
{
    if (ob == NULL)
        return;
    atomic_store(&ob->stopping, true);
    pthread_join(ob->thread, NULL);
    cm_nats_destroy(ob->nats);
    free(ob->db_url);
    free(ob->schema);
    free(ob);
}
