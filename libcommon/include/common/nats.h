/*
 * nats.h - the suite's NATS connection: reconnect, JetStream set-up, async publish with a
 * per-message completion, and durable consumers read on worker threads.
 *
 * A connection keeps retrying forever, from the first attempt on: a daemon starts while
 * NATS is down and becomes ready when it is back. Set-up steps registered with
 * cm_nats_on_connect() (creating streams, say) run on a dedicated thread after every
 * connect and reconnect, and are retried until they succeed; cm_nats_ready() is true only
 * while connected with every step done.
 *
 * Threads: completions and consumer callbacks run on nats.c's or the consumer's threads,
 * never on the event loop. Use cm_loopq_post() to get back to the loop.
 */
#ifndef COMMON_NATS_H
#define COMMON_NATS_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

struct cm_nats;
struct cm_metrics;

/* A set-up step run after each (re)connect; returns CM_OK or an error to be retried. */
typedef int (*cm_nats_setup_fn)(struct cm_nats *n, void *arg);

/*
 * Creates a connection to url (one URL or a comma-separated list) named name, and starts
 * connecting in the background. setup steps must be registered before cm_nats_start().
 * metrics may be NULL. Free with cm_nats_destroy().
 */
int cm_nats_create(struct cm_nats **out, const char *url, const char *name,
                   struct cm_metrics *metrics) CM_MUST_CHECK;

/* --- Identity and transport security ---------------------------------------------------- */

/* The longest identity (a certificate's CN, or a daemon's name), with its terminating NUL. */
#define CM_NATS_IDENTITY_MAX 65

/*
 * Resolves who a connection speaks as. With ca_file, cert_file and key_file all set (non-NULL
 * and non-empty), the identity is the common name of cert_file's certificate, read with
 * OpenSSL; the server maps the same certificate to the same name. With none of them set, it
 * is fallback (the daemon's name; "operator" for domsctl), for a plaintext server. One or
 * two of the three, an unreadable certificate or a CN that is not a valid subject token:
 * CM_INVALID with one line in err naming the variable. out receives the identity.
 */
int cm_nats_identity(const char *ca_file, const char *cert_file, const char *key_file,
                     const char *fallback, char out[CM_NATS_IDENTITY_MAX], char *err,
                     size_t errlen) CM_MUST_CHECK;

/*
 * Applies the identity to nats.c options: with the three files, TLS (natsOptions_SetSecure),
 * the CA that verifies the server and the client's certificate chain; always the private
 * inbox prefix _INBOX.<identity>, so that replies to this identity travel on subjects only it
 * may subscribe to. Strings are borrowed for the call. Returns nats.c's status.
 */
natsStatus cm_nats_options_identity(natsOptions *opts, const char *identity, const char *ca_file,
                                    const char *cert_file, const char *key_file);

/*
 * Sets the identity and TLS files (NULL for plaintext) of n, before cm_nats_start(); copied.
 * Without it a connection speaks as its name, in plaintext.
 */
void cm_nats_set_identity(struct cm_nats *n, const char *identity, const char *ca_file,
                          const char *cert_file, const char *key_file);

/* Gives dst the identity and TLS files of src (a secondary connection of the same daemon). */
void cm_nats_share_identity(struct cm_nats *dst, const struct cm_nats *src);

/* The identity n speaks as (borrowed). */
const char *cm_nats_identity_of(const struct cm_nats *n);

/*
 * A request to the service subject `subject` as identity: published on
 * "<subject>.<identity>", the caller's own subject space, which the server's permissions let
 * only that identity publish on (proto/README.md). Blocking, like natsConnection_Request.
 * *reply is the caller's to natsMsg_Destroy().
 */
natsStatus cm_nats_request_as(natsMsg **reply, natsConnection *nc, const char *identity,
                              const char *subject, const char *body, int64_t timeout_ms);

/* cm_nats_request_as() on n's connection and identity. NATS_CONNECTION_CLOSED before the
 * first connect. */
natsStatus cm_nats_request(natsMsg **reply, struct cm_nats *n, const char *subject,
                           const char *body, int64_t timeout_ms);

/* Registers a set-up step (see the top of this file). fn and arg are borrowed for the connection's
 * life. */
void cm_nats_on_connect(struct cm_nats *n, cm_nats_setup_fn fn, void *arg);

/*
 * Unregisters the set-up step fn with arg (a no-op when it is not registered) and, when the
 * set-up thread is running a pass of steps, waits until that pass ends: once it returns, fn
 * is not running with arg and will not be called with it again, so the caller may free arg.
 * Not from a set-up step (it would wait for itself: such a call does not wait).
 */
void cm_nats_off_connect(struct cm_nats *n, cm_nats_setup_fn fn, void *arg);

/*
 * By default each publish is written at once by the thread that makes it: a request or a
 * reply does not wait for nats.c's flusher thread to wake, which costs a fraction of a
 * millisecond per hop. A connection that publishes many small messages back to back (ingest)
 * leaves the writes to the flusher instead, which coalesces them into fewer system calls.
 * Call before cm_nats_start().
 */
void cm_nats_coalesce_writes(struct cm_nats *n);

/* Starts connecting. Returns CM_OK even when the server is not reachable yet. */
int cm_nats_start(struct cm_nats *n) CM_MUST_CHECK;

/*
 * Flushes what is buffered, closes the connection and frees everything. Async publishes
 * whose acknowledgement has not arrived are abandoned without a completion, so callers
 * wait for theirs first. Accepts NULL.
 */
void cm_nats_destroy(struct cm_nats *n);

/* True while the connection is up. */
bool cm_nats_connected(struct cm_nats *n);
/* True while connected and every set-up step has succeeded since the last connect. */
bool cm_nats_ready(struct cm_nats *n);

/* The URL and the connection name it was created with (borrowed). */
const char *cm_nats_url(const struct cm_nats *n);
const char *cm_nats_name(const struct cm_nats *n);

/* The underlying objects, borrowed. NULL before the first successful connect. */
natsConnection *cm_nats_conn(struct cm_nats *n);
jsCtx *cm_nats_js(struct cm_nats *n);

/*
 * Creates the stream described by cfg, or updates it to cfg when it exists already
 * (a field the server cannot change is logged and left as it is). Blocking: call it
 * from a set-up step or a worker thread, never from the event loop.
 *
 * An existing stream whose live configuration differs from cfg in a security-relevant
 * field (deny_purge, deny_delete, max_age, storage, subjects: what keeps data past its
 * deletion or sends it elsewhere; deny_purge cannot even be unset) is not updated: one
 * error line names the stream, the field and both values, and the process exits
 * CM_EXIT_CONFIG at once, from whichever thread this runs on. Other differences are updated.
 */
int cm_nats_stream_ensure(struct cm_nats *n, const jsStreamConfig *cfg) CM_MUST_CHECK;

/* A file-backed stream described by what differs between the suite's streams. */
struct cm_stream_spec {
    const char *name;
    const char *subjects;    /* one subject pattern, e.g. "meta.events.>" */
    int64_t max_age_s;       /* 0: kept until deleted or purged */
    int64_t dup_window_s;    /* 0: the server's default (2 minutes) */
    int64_t max_per_subject; /* 0: unlimited; 1 keeps the latest message of each subject */
    bool work_queue;         /* work-queue retention: a message goes once acknowledged */
};

/* cm_nats_stream_ensure() for a spec. Blocking, like it. */
int cm_nats_stream_declare(struct cm_nats *n, const struct cm_stream_spec *spec) CM_MUST_CHECK;

/*
 * Completion of an async publish, called exactly once per accepted publish, on a nats.c
 * thread (cm_nats's own sweeper thread for CM_TIMEOUT): status CM_OK with the stream sequence
 * (duplicate true when JetStream had the Nats-Msg-Id already), or CM_UNAVAIL / CM_TIMEOUT / CM_ERR.
 */
typedef void (*cm_nats_pub_fn)(void *arg, int status, uint64_t seq, bool duplicate);

/*
 * Publishes data to JetStream subject subj without waiting, with Nats-Msg-Id msg_id (may be
 * NULL) and an acknowledgement deadline of max_wait_ms. Returns CM_OK when the message is
 * on its way (done will be called), or CM_UNAVAIL when not connected and CM_ERR when
 * nats.c refused it (done will not be called). data is copied.
 */
int cm_nats_publish_async(struct cm_nats *n, const char *subj, const char *msg_id, const void *data,
                          int len, int64_t max_wait_ms, cm_nats_pub_fn done,
                          void *arg) CM_MUST_CHECK;

/* Publishes and waits for JetStream's acknowledgement. Blocking: not on the event loop. */
int cm_nats_publish_sync(struct cm_nats *n, const char *subj, const char *msg_id, const void *data,
                         int len, uint64_t *seq) CM_MUST_CHECK;

/* A message handler's verdict, which the consumer turns into an acknowledgement. */
enum cm_consume_result {
    CM_CONSUME_ACK = 0, /* done (committed, or deliberately dropped) */
    CM_CONSUME_RETRY,   /* transient failure: redeliver after a delay */
    CM_CONSUME_TERM,    /* poison: never redeliver (dead-letter it before returning) */
    CM_CONSUME_SETTLED, /* the handler acknowledged or delayed it itself */
};

/* Handles one message on the consumer's thread. msg is borrowed. */
typedef enum cm_consume_result (*cm_consume_fn)(void *arg, natsMsg *msg);

/*
 * Handles a whole fetched batch at once (to commit it in one transaction, say): fills
 * results[i] for msgs[i]. msgs are borrowed. Set in the config instead of a per-message fn.
 */
typedef void (*cm_consume_batch_fn)(void *arg, natsMsg **msgs, int n,
                                    enum cm_consume_result *results);

struct cm_consumer_cfg {
    const char *stream;           /* stream name */
    const char *durable;          /* durable consumer name, shared by replicas */
    const char *filter;           /* subject filter */
    int batch;                    /* messages per fetch; 0 means 64 */
    int64_t ack_wait_ms;          /* redelivery after this without an ack; 0 means 30 s */
    int64_t retry_delay_ms;       /* delay for CM_CONSUME_RETRY; 0 means 2 s */
    int max_deliver;              /* 0 means unlimited */
    cm_consume_batch_fn batch_fn; /* when set, used instead of the per-message fn */
};

struct cm_consumer;

/*
 * Starts a consumer on its own thread: it creates the durable consumer when missing (a push
 * consumer delivered to a queue group named after it), takes messages in batches of what
 * has arrived and calls fn for each message (or cfg->batch_fn for each batch),
 * acknowledging by the verdict; a message waits for no batch to fill. It survives
 * disconnects and missing streams by retrying. cfg's strings are copied; fn may be NULL
 * when cfg->batch_fn is set. Several consumers with one durable, in one process or in
 * replicas, share the work.
 * Stop and free with cm_consumer_destroy().
 */
int cm_consumer_start(struct cm_consumer **out, struct cm_nats *n,
                      const struct cm_consumer_cfg *cfg, cm_consume_fn fn, void *arg) CM_MUST_CHECK;

/* Stops fetching, lets the message in hand finish, joins the thread, frees. Accepts NULL. */
void cm_consumer_destroy(struct cm_consumer *c);

#endif
