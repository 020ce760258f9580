/*
 * outbox.c - the transactional outbox and its relay (see outbox.h).
 */
#include "common/outbox.h"
#include "common/audit.h"
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
#define MSG_MAX        (256 * 1024) /* bytes of audit events in one message */

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

/*
 * One JetStream message of a relay pass: one row as it is, or the audit rows of one subject
 * taken in the pass together, as one JSON array of their events (proto/audit-events.md).
 */
struct msg {
    struct batch *b;
    int index;
    int first_row;      /* its subject, and its payload when it carries one row */
    int last_row;       /* the last row it carries (for its Nats-Msg-Id) */
    int nrows;          /* how many rows it carries */
    bool events;        /* audit events, which others of its subject may join */
    struct cm_buf body; /* the array of its events (used once it carries more than one) */
};

/* Completion tracking for one pass's asynchronous publishes. */
struct batch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending;
    int nmsgs;
    bool ok[BATCH]; /* per message */
    struct msg msgs[BATCH];
    int msg_of[BATCH]; /* per row: the message it travels in */
};

static void on_published(void *arg, int status, uint64_t seq, bool duplicate)
{
    struct msg *m = arg;

    (void)seq;
    (void)duplicate;
    pthread_mutex_lock(&m->b->lock);
    m->b->ok[m->index] = status == CM_OK;
    m->b->pending--;
    pthread_cond_signal(&m->b->cond);
    pthread_mutex_unlock(&m->b->lock);
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

static void batch_free(struct batch *b)
{
    for (int i = 0; i < b->nmsgs; i++)
        cm_buf_cleanup(&b->msgs[i].body);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* True for a row that may travel with others of its subject: an audit event. */
static bool groupable(const char *subject, const char *payload)
{
    return strncmp(subject, CM_AUDIT_SUBJECT_PREFIX, strlen(CM_AUDIT_SUBJECT_PREFIX)) == 0 &&
           payload[0] == '{';
}

/*
 * Sorts the pass's n rows (on pg) into messages: the audit rows of one subject travel
 * together, as one JSON array, in messages of up to MSG_MAX bytes; any other row is a
 * message of its own. Each subject's rows stay in id order.
 */
static void group_rows(struct batch *b, struct cm_pg *pg, int n)
{
    for (int i = 0; i < n; i++) {
        const char *subject = cm_pg_value(pg, i, 1);
        const char *payload = cm_pg_value(pg, i, 3);
        struct msg *m = NULL;

        if (groupable(subject, payload)) {
            /* The subject's latest message, joined while it has room (a full one is
             * followed by a new one, never by an earlier one: the order holds). */
            for (int j = b->nmsgs - 1; j >= 0; j--) {
                struct msg *c = &b->msgs[j];
                if (!c->events || strcmp(cm_pg_value(pg, c->first_row, 1), subject) != 0)
                    continue;
                if (c->body.len + (size_t)cm_pg_length(pg, i, 3) < MSG_MAX)
                    m = c;
                break;
            }
        }
        if (m == NULL) {
            m = &b->msgs[b->nmsgs];
            m->b = b;
            m->index = b->nmsgs++;
            m->first_row = i;
            m->events = groupable(subject, payload);
            cm_buf_init(&m->body);
            if (m->events) {
                cm_buf_puts(&m->body, "[");
                cm_buf_puts(&m->body, payload);
            }
        } else {
            cm_buf_puts(&m->body, ",");
            cm_buf_puts(&m->body, payload);
        }
        m->last_row = i;
        m->nrows++;
        b->msg_of[i] = m->index;
    }
    for (int i = 0; i < b->nmsgs; i++) {
        if (b->msgs[i].events)
            cm_buf_puts(&b->msgs[i].body, "]");
    }
}

/* Publishes message m of the pass; CM_OK when its completion is owed. */
static int publish(struct cm_outbox *ob, struct cm_pg *pg, struct msg *m)
{
    const char *given = cm_pg_value(pg, m->first_row, 2);
    const char *data;
    char msg_id[200];
    int len, rc;

    if (m->nrows > 1) {
        /* JetStream deduplicates the same rows published again after a crash; a pass that
         * groups them otherwise is absorbed by the consumer, which keeps each event once. */
        snprintf(msg_id, sizeof(msg_id), "%s:outbox:%s-%s", ob->schema,
                 cm_pg_value(pg, m->first_row, 0), cm_pg_value(pg, m->last_row, 0));
        data = m->body.data;
        len = (int)m->body.len;
    } else {
        if (*given != '\0')
            snprintf(msg_id, sizeof(msg_id), "%s", given);
        else
            snprintf(msg_id, sizeof(msg_id), "%s:outbox:%s", ob->schema,
                     cm_pg_value(pg, m->first_row, 0));
        data = cm_pg_value(pg, m->first_row, 3);
        len = cm_pg_length(pg, m->first_row, 3);
    }
    pthread_mutex_lock(&m->b->lock);
    m->b->pending++;
    pthread_mutex_unlock(&m->b->lock);
    rc = cm_nats_publish_async(ob->nats, cm_pg_value(pg, m->first_row, 1), msg_id, data, len,
                               PUBLISH_WAIT_S * 1000, on_published, m);
    if (rc != CM_OK) {
        pthread_mutex_lock(&m->b->lock);
        m->b->pending--;
        pthread_mutex_unlock(&m->b->lock);
    }
    return rc;
}

/*
 * Publishes one batch and deletes what JetStream acknowledged, in one transaction that
 * holds the rows (SKIP LOCKED: each row is one relay's at a time). The audit rows of a
 * subject go as one message (group_rows()): at one audit event per request (token-vault's
 * token.served), a message each cost nats-server a JetStream store and an acknowledgement
 * per request, in bursts that delayed the requests around them. The publishes are
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
    group_rows(b, pg, n);
    for (; sent < b->nmsgs; sent++) {
        if (publish(ob, pg, &b->msgs[sent]) != CM_OK)
            break;
    }
    complete = wait_batch(b);
    cm_buf_init(&ids);
    cm_buf_puts(&ids, "{");
    for (int i = 0; i < n; i++) {
        if (b->msg_of[i] >= sent || !b->ok[b->msg_of[i]])
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
        batch_free(b);
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
    /* A pass's commit only deletes rows JetStream has acknowledged: one lost to a crash
     * publishes them again, which the Nats-Msg-Id and the consumers absorb. So it need not
     * wait for the WAL flush, which every 50 ms competed with the requests' own commits. */
    if (cm_pg_session(pg, "SET synchronous_commit TO off") != CM_OK)
        CM_WARN("outbox: relay of %s commits with the WAL flush: %s", ob->schema, cm_pg_error(pg));
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
