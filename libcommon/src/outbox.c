/*
 * outbox.c - the transactional outbox and its relay (see outbox.h).
 */
#include "common/outbox.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/nats.h"
#include "common/pg.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH   256
#define POLL_MS 1000
#define CHANNEL "doms_outbox"

struct cm_outbox {
    struct cm_nats *nats;
    char *db_url;
    char *schema;
    pthread_t thread;
    _Atomic bool stopping;
    struct cm_metric *m_published;
};

int cm_outbox_add(struct cm_pg *pg, const char *subject, const char *msg_id, const char *payload)
{
    const char *params[3] = {subject, msg_id ? msg_id : "", payload};
    int rc;

    rc = cm_pg_exec(pg, "INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, $3)", 3,
                    params);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "SELECT pg_notify('" CHANNEL "', current_schema())", 0, NULL);
    return rc;
}

/* Publishes and deletes one batch in one transaction; returns how many, or an error. */
static int relay_batch(struct cm_outbox *ob, struct cm_pg *pg)
{
    int rc, n, done = 0;
    struct cm_buf ids;

    rc = cm_pg_begin(pg);
    if (rc != CM_OK)
        return rc;
    rc = cm_pg_exec(pg,
                    "SELECT id, subject, msg_id, payload FROM outbox ORDER BY id"
                    " LIMIT 256 FOR UPDATE SKIP LOCKED",
                    0, NULL);
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    n = cm_pg_ntuples(pg);
    cm_buf_init(&ids);
    cm_buf_puts(&ids, "{");
    /* Synchronous publishes: the batch is deleted only once each event is stored. */
    for (int i = 0; i < n; i++) {
        const char *id = cm_pg_value(pg, i, 0);
        const char *subject = cm_pg_value(pg, i, 1);
        const char *given = cm_pg_value(pg, i, 2);
        const char *payload = cm_pg_value(pg, i, 3);
        char msg_id[160];

        if (*given != '\0')
            snprintf(msg_id, sizeof(msg_id), "%s", given);
        else
            snprintf(msg_id, sizeof(msg_id), "%s:outbox:%s", ob->schema, id);
        if (cm_nats_publish_sync(ob->nats, subject, msg_id, payload, (int)strlen(payload), NULL) !=
            CM_OK)
            break;
        cm_buf_printf(&ids, "%s%s", done ? "," : "", id);
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
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    if (ob->m_published != NULL)
        cm_metrics_inc(ob->m_published, (uint64_t)done);
    /* A shortfall means NATS failed: report it so the relay pauses. */
    return done < n ? CM_UNAVAIL : done;
}

/* Waits for a NOTIFY on the listening connection, at most POLL_MS. */
static void wait_notify(struct cm_outbox *ob, PGconn *listen)
{
    struct pollfd pfd;
    PGnotify *note;

    if (listen == NULL || PQstatus(listen) != CONNECTION_OK) {
        for (int i = 0; i < POLL_MS / 50 && !atomic_load(&ob->stopping); i++)
            poll(NULL, 0, 50);
        return;
    }
    pfd.fd = PQsocket(listen);
    pfd.events = POLLIN;
    for (int waited = 0; waited < POLL_MS && !atomic_load(&ob->stopping); waited += 100) {
        if (poll(&pfd, 1, 100) > 0)
            break;
    }
    PQconsumeInput(listen);
    while ((note = PQnotifies(listen)) != NULL)
        PQfreemem(note);
}

static PGconn *open_listener(const char *url)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return NULL;
    }
    r = PQexec(c, "LISTEN " CHANNEL);
    PQclear(r);
    return c;
}

static void *relay_main(void *arg)
{
    struct cm_outbox *ob = arg;
    struct cm_pg *pg = NULL;
    PGconn *listen = NULL;

    if (cm_pg_connect(&pg, ob->db_url, ob->schema) == CM_INVALID)
        return NULL;
    while (!atomic_load(&ob->stopping)) {
        int rc = CM_UNAVAIL;

        if (listen == NULL || PQstatus(listen) != CONNECTION_OK) {
            if (listen != NULL)
                PQfinish(listen);
            listen = open_listener(ob->db_url);
        }
        if (cm_nats_ready(ob->nats)) {
            /* Drain everything committed, batch after batch. */
            while ((rc = relay_batch(ob, pg)) == BATCH && !atomic_load(&ob->stopping)) {
            }
        }
        if (rc < 0 && rc != CM_UNAVAIL)
            CM_WARN("outbox: relay of %s failed: %s", ob->schema, cm_pg_error(pg));
        wait_notify(ob, listen);
    }
    /* Last round for what committed before the stop. */
    if (cm_nats_ready(ob->nats))
        while (relay_batch(ob, pg) == BATCH) {
        }
    if (listen != NULL)
        PQfinish(listen);
    cm_pg_destroy(pg);
    return NULL;
}

int cm_outbox_start(struct cm_outbox **out, struct cm_nats *n, const char *db_url,
                    const char *schema, struct cm_metrics *metrics)
{
    struct cm_outbox *ob = cm_xcalloc(1, sizeof(*ob));

    ob->nats = n;
    ob->db_url = cm_xstrdup(db_url);
    ob->schema = cm_xstrdup(schema);
    if (metrics != NULL)
        ob->m_published = cm_metrics_counter(metrics, "outbox_published_total", NULL,
                                             "Outbox events published to JetStream");
    if (pthread_create(&ob->thread, NULL, relay_main, ob) != 0) {
        CM_ERROR("outbox: cannot start the relay");
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
    free(ob->db_url);
    free(ob->schema);
    free(ob);
}
