/*
 * audit.h - audit events: who did what to which Platform Data, never the data itself.
 *
 * Every service records administrative actions, tokens served, message content read and
 * deletions performed. An event is written to the service's outbox in the same
 * transaction as the action (so it exists exactly when the action happened) and relayed
 * to the JetStream stream AUDIT on subject audit.<service>; retention-reaper persists it
 * in a hash chain. See proto/audit-events.md.
 */
#ifndef COMMON_AUDIT_H
#define COMMON_AUDIT_H

#include "common/err.h"

struct cm_pg;
struct cm_nats;

#define CM_AUDIT_STREAM   "AUDIT"
#define CM_AUDIT_SUBJECTS "audit.>"
/* What every audit subject starts with. */
#define CM_AUDIT_SUBJECT_PREFIX "audit."

/*
 * Queues one audit event in the outbox on pg, inside the caller's transaction (or as its
 * own statement in autocommit). service, actor, action and subject are short identifiers
 * (subject: the id acted upon, e.g. an integration id); they must not hold content.
 */
int cm_audit_add(struct cm_pg *pg, const char *service, const char *actor, const char *action,
                 const char *subject) CM_MUST_CHECK;

/*
 * Builds an audit event without writing it, for a caller that writes it in a statement of
 * its own: *payload (free with cJSON_free) and msg_id (its Nats-Msg-Id, 48 bytes). The
 * subject to write it under is "audit.<service>". Returns CM_OK.
 */
int cm_audit_event(const char *service, const char *actor, const char *action, const char *subject,
                   char **payload, char msg_id[48]) CM_MUST_CHECK;

/* A cm_nats set-up step that creates or updates the AUDIT stream (arg unused). */
int cm_audit_stream_ensure(struct cm_nats *n, void *arg);

#endif
