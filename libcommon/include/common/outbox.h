/*
 * outbox.h - events published exactly when their transaction commits (at least once).
 *
 * A service that changes its data and must tell others (an integration connected, an
 * audit event) writes the event into its own outbox table in the same transaction as the
 * change. A relay thread publishes committed events to JetStream, with the row's id as
 * Nats-Msg-Id, and deletes them once acknowledged. A crash between the two publishes again
 * later, and JetStream's duplicate window or the consumer's idempotence absorbs it. So no
 * event is lost and none is published for a change that rolled back.
 *
 * Audit events (subjects under "audit.") are relayed together: those of one subject taken
 * in one pass go as one message, a JSON array of the events in id order (up to 256 KiB;
 * a lone event goes as itself), with Nats-Msg-Id "<schema>:outbox:<first id>-<last id>".
 * Their consumer deduplicates by the event's own id (proto/audit-events.md).
 *
 * Replicas share the table; rows are claimed with FOR UPDATE SKIP LOCKED, so each event is
 * published by one relay at a time. An idle relay looks every 50 ms (a NOTIFY per event
 * would serialise the commits of every writer on PostgreSQL's notification lock).
 */
#ifndef COMMON_OUTBOX_H
#define COMMON_OUTBOX_H

#include <stddef.h>

#include "common/err.h"

struct cm_pg;
struct cm_nats;
struct cm_metrics;
struct cm_outbox;

/* The table every service using an outbox adds to its migrations. */
#define CM_OUTBOX_SCHEMA_SQL                                                                       \
    "CREATE TABLE IF NOT EXISTS outbox ("                                                          \
    " id bigserial PRIMARY KEY,"                                                                   \
    " subject text NOT NULL,"                                                                      \
    " msg_id text NOT NULL,"                                                                       \
    " payload text NOT NULL,"                                                                      \
    " created_at timestamptz NOT NULL DEFAULT now());"

/*
 * Queues payload for subject inside the caller's open transaction on pg (the caller
 * commits). msg_id (may be NULL) becomes the Nats-Msg-Id, default "<schema>:outbox:<id>".
 */
int cm_outbox_add(struct cm_pg *pg, const char *subject, const char *msg_id,
                  const char *payload) CM_MUST_CHECK;

/*
 * Starts the relay thread for the outbox in schema, publishing on a NATS connection of its
 * own to n's servers (subjects must belong to a JetStream stream, which the service
 * ensures through n). metrics may be NULL.
 * Free with cm_outbox_destroy().
 */
int cm_outbox_start(struct cm_outbox **out, struct cm_nats *n, const char *db_url,
                    const char *schema, struct cm_metrics *metrics) CM_MUST_CHECK;

/* Publishes what is committed now, then stops the relay and frees. Accepts NULL. */
void cm_outbox_destroy(struct cm_outbox *ob);

#endif
