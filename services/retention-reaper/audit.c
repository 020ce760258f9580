/*
 * audit.c - the audit log: every service's audit events (proto/audit-events.md), kept
 * append-only in a hash chain, listed and verified for `domsctl audit list|verify`, and
 * deleted after RETENTION_AUDIT without breaking the chain.
 *
 * The chain: entry n's hash is SHA-256(hash of entry n-1 || canonical form of entry n), the
 * canonical form being every field (seq included) as "<length>:<bytes>", so that no two
 * entries share one. Entries are appended one at a time across replicas: the single row of
 * audit_chain is locked (FOR UPDATE) while seq and hash are assigned, so seq has no gap and
 * every hash chains from the one before it. Editing, inserting or removing a row then breaks
 * the chain at that row, unless every later hash is recomputed as well (SHA-256 has no key:
 * keep a copy of the head hash elsewhere to catch that too).
 *
 * Retention deletes a prefix of the chain (the oldest seqs) and records in audit_chain the
 * anchor: the hash of the last entry deleted, from which the first remaining one chains.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/nats.h"
#include "reaper.h"

#define AUDIT_DURABLE "retention-reaper-audit"
#define LIST_MAX      2000 /* one reply stays well under NATS's 1 MiB payload */
#define VERIFY_BATCH  5000
#define EXPIRE_BATCH  10000
#define FIELD_MAX     256
#define TS_FORMAT     "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"

struct reaper_audit {
    struct reaper *r;
    struct cm_consumer *consumer;
    struct cm_pg *pg; /* the consumer thread's connection */
};

/* One audit event, its fields borrowed from the parsed message. */
struct entry {
    const char *id, *at, *service, *actor, *action, *subject;
};

static void canon_field(struct cm_buf *b, const char *s)
{
    cm_buf_printf(b, "%zu:", strlen(s));
    cm_buf_puts(b, s);
}

/* hex_out (65 bytes) = SHA-256(prev || canonical(seq, e)); prev_hex is 64 hex digits. */
static int chain_hash(const char *prev_hex, const char *seq, const struct entry *e,
                      char hex_out[65])
{
    unsigned char prev[CM_SHA256_LEN], digest[CM_SHA256_LEN];
    struct cm_buf b;

    if (cm_hex_decode(prev_hex, strlen(prev_hex), prev, sizeof(prev)) != CM_SHA256_LEN)
        return CM_INVALID;
    cm_buf_init(&b);
    cm_buf_append(&b, prev, sizeof(prev));
    cm_buf_puts(&b, "doms-audit-v1");
    canon_field(&b, seq);
    canon_field(&b, e->id);
    canon_field(&b, e->at);
    canon_field(&b, e->service);
    canon_field(&b, e->actor);
    canon_field(&b, e->action);
    canon_field(&b, e->subject);
    cm_crypto_sha256(b.data, b.len, digest);
    cm_hex_encode(digest, sizeof(digest), hex_out);
    cm_buf_cleanup(&b);
    return CM_OK;
}

/* "sha256:" and the 64 hex digits of SHA-256(len bytes of data) into out (72 bytes). */
static void digest_of(const void *data, size_t len, char out[72])
{
    unsigned char d[CM_SHA256_LEN];

    cm_crypto_sha256(data, len, d);
    memcpy(out, "sha256:", 7);
    cm_hex_encode(d, sizeof(d), out + 7);
}

/* True for a short text field: bounded, no control characters, empty only when allowed. */
static bool usable(const char *s, bool may_be_empty)
{
    size_t n = strlen(s);

    if (n > FIELD_MAX || (n == 0 && !may_be_empty))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20)
            return false;
    }
    return true;
}

/*
 * A text field of an event, as it will be stored: the value itself when usable; else, so
 * that the event is still recorded and the bad value still identifiable, the digest of
 * what was sent ("sha256:<hex>" of the string, or of the JSON text of a value that is not
 * a string) written into buf; MISSING when absent. Sets *bad when the value was replaced.
 */
#define MISSING "(missing)"
static const char *field(const cJSON *ev, const char *name, bool may_be_empty, char buf[72],
                         bool *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, name);
    char *json;

    if (cJSON_IsString(v) && usable(v->valuestring, may_be_empty))
        return v->valuestring;
    *bad = true;
    if (v == NULL)
        return MISSING;
    if (cJSON_IsString(v)) {
        digest_of(v->valuestring, strlen(v->valuestring), buf);
        return buf;
    }
    json = cJSON_PrintUnformatted(v);
    digest_of(json ? json : "", json ? strlen(json) : 0, buf);
    free(json);
    return buf;
}

/*
 * Appends e unless its id is there already. The event's time is normalised by PostgreSQL
 * (and never later than now: a clock ahead of ours must not hold back retention); a missing
 * time (NULL) or one PostgreSQL refuses becomes the time of appending. Returns CM_OK
 * (appended or duplicate) or the database's error.
 */
static int append(struct reaper *r, struct cm_pg *pg, struct entry *e, bool *added)
{
    const char *tparams[1] = {e->at};
    char at[40], seq[24], hash[65];
    int rc;

    *added = false;
    rc = cm_pg_exec(pg,
                    "SELECT to_char(least(coalesce($1::timestamptz, clock_timestamp()),"
                    " clock_timestamp()) AT TIME ZONE 'UTC', " TS_FORMAT ")",
                    1, tparams);
    if (rc == CM_ERR && e->at != NULL) {
        /* Not a time: the event is still recorded, at the time it was appended. */
        CM_WARN("audit: event %s has an unusable time; recorded at the time of appending", e->id);
        tparams[0] = NULL;
        rc = cm_pg_exec(pg,
                        "SELECT to_char(least(coalesce($1::timestamptz, clock_timestamp()),"
                        " clock_timestamp()) AT TIME ZONE 'UTC', " TS_FORMAT ")",
                        1, tparams);
    }
    if (rc != CM_OK)
        return rc;
    snprintf(at, sizeof(at), "%s", cm_pg_value(pg, 0, 0));
    e->at = at;

    rc = cm_pg_begin(pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(
            pg, "SELECT last_seq + 1, last_hash FROM audit_chain WHERE id = 1 FOR UPDATE", 0, NULL);
    if (rc == CM_OK && cm_pg_ntuples(pg) != 1)
        rc = CM_ERR;
    if (rc == CM_OK) {
        snprintf(seq, sizeof(seq), "%s", cm_pg_value(pg, 0, 0));
        rc = chain_hash(cm_pg_value(pg, 0, 1), seq, e, hash);
    }
    if (rc == CM_OK) {
        const char *p[8] = {seq, e->id, e->at, e->service, e->actor, e->action, e->subject, hash};
        rc = cm_pg_exec(pg,
                        "INSERT INTO audit_log (seq, event_id, at, service, actor, action, subject,"
                        " hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                        " ON CONFLICT (event_id) DO NOTHING",
                        8, p);
    }
    if (rc == CM_OK && cm_pg_affected(pg) == 0) {
        cm_pg_rollback(pg); /* a redelivery: stored once already */
        return CM_OK;
    }
    if (rc == CM_OK) {
        const char *p[2] = {seq, hash};
        rc = cm_pg_exec(pg, "UPDATE audit_chain SET last_seq = $1, last_hash = $2 WHERE id = 1", 2,
                        p);
    }
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    *added = true;
    cm_metrics_inc(r->m_appended, 1);
    return CM_OK;
}

/*
 * Consumer thread: appends the event ev. An event is never dropped for a bad field: each
 * field that is missing, oversized, not a string or holds control characters is stored as
 * its digest (field()), a bad id is replaced by its digest (or, when absent, by the digest
 * of the event's whole text, raw/raw_len when given, so that a redelivery is still stored
 * once), a bad time by the time of appending. Returns CM_OK or the database's error.
 */
static int record(struct reaper_audit *a, const cJSON *ev, const char *raw, size_t raw_len,
                  const char *on)
{
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(ev, "at");
    char b_id[72], b_service[72], b_actor[72], b_action[72], b_subject[72];
    struct entry e;
    bool added = false, bad = false;
    int rc;

    e.id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "id"));
    if (e.id == NULL) {
        /* An element of an array: its own text, the same in whichever message it comes. */
        char *text = raw == NULL ? cJSON_PrintUnformatted(ev) : NULL;
        if (raw == NULL && text == NULL)
            abort();
        digest_of(raw != NULL ? raw : text, raw != NULL ? raw_len : strlen(text), b_id);
        free(text);
        e.id = b_id;
        bad = true;
    } else if (!reaper_valid_id(e.id, 64)) {
        digest_of(e.id, strlen(e.id), b_id);
        e.id = b_id;
        bad = true;
    }
    e.at = cJSON_IsString(at) && usable(at->valuestring, false) ? at->valuestring : NULL;
    bad = bad || e.at == NULL;
    e.service = field(ev, "service", false, b_service, &bad);
    e.actor = field(ev, "actor", false, b_actor, &bad);
    e.action = field(ev, "action", false, b_action, &bad);
    e.subject = field(ev, "subject", true, b_subject, &bad);
    if (bad)
        CM_WARN("audit: event %s on %s has malformed fields; recorded with their digests", e.id,
                on);
    if (a->pg == NULL &&
        cm_pg_connect(&a->pg, a->r->cfg->base.database_url, REAPER_SCHEMA) == CM_INVALID)
        return CM_UNAVAIL;
    rc = append(a->r, a->pg, &e, &added);
    if (rc == CM_OK && added)
        CM_DEBUG("audit: %s %s %s by %s", e.service, e.action, e.subject, e.actor);
    return rc;
}

/*
 * Consumer thread: one message, which carries one event (a JSON object) or several (a JSON
 * array of them, in the order they happened: an outbox relay sends a service's events
 * together). Each is appended in turn; an event stored already (a redelivery, or the same
 * event relayed again in another message) is kept once. When one cannot be appended, the
 * message is redelivered, and what was appended of it is then kept once. Only what is not
 * a JSON object or array is terminated, never retried forever; an element of an array that
 * is not an object is skipped (logged).
 */
static enum cm_consume_result on_event(void *arg, natsMsg *msg)
{
    struct reaper_audit *a = arg;
    const char *on = natsMsg_GetSubject(msg);
    cJSON *ev = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    const cJSON *it;
    int rc = CM_OK;

    if (cJSON_IsObject(ev)) {
        rc = record(a, ev, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), on);
    } else if (cJSON_IsArray(ev)) {
        cJSON_ArrayForEach(it, ev)
        {
            if (!cJSON_IsObject(it)) {
                CM_WARN("audit: an element of a message on %s that is not a JSON object dropped",
                        on);
                continue;
            }
            rc = record(a, it, NULL, 0, on);
            if (rc != CM_OK)
                break;
        }
    } else {
        CM_WARN("audit: a message on %s that is not a JSON object or array dropped", on);
        cJSON_Delete(ev);
        return CM_CONSUME_TERM;
    }
    cJSON_Delete(ev);
    if (rc != CM_OK) {
        CM_WARN("audit: event not appended (%s); it will be redelivered", cm_err_str(rc));
        return CM_CONSUME_RETRY;
    }
    return CM_CONSUME_ACK;
}

/* --- reaper.audit.list ------------------------------------------------------------------ */

#define LIST_COLUMNS                                                                               \
    "seq, to_char(at AT TIME ZONE 'UTC', " TS_FORMAT "), service, actor, action, subject, hash"

/*
 * From since (or after the cursor, the last seq of the page before) on, oldest first, a page
 * of at most LIST_MAX with next_cursor while more follow; with neither, the newest LIST_MAX.
 * One more row than a page is read to know whether another follows.
 */
static void on_list(struct cm_rpc_call *call, void *arg)
{
    const char *since = cm_rpc_str(call, "since");
    const char *cursor = cm_rpc_str(call, "cursor");
    const char *params[2] = {since, cursor};
    char next[24] = "";
    cJSON *list;
    int rc, n;

    (void)arg;
    if (cursor != NULL && (cursor[0] == '\0' || strspn(cursor, "0123456789") != strlen(cursor) ||
                           strlen(cursor) > 18)) {
        cm_rpc_fail(call, "invalid", "cursor is not one this list gave");
        return;
    }
    if (since != NULL || cursor != NULL)
        rc = cm_pg_exec(call->pg,
                        "SELECT " LIST_COLUMNS " FROM audit_log WHERE ($1::timestamptz IS NULL"
                        " OR at >= $1::timestamptz) AND seq > coalesce($2::bigint, 0)"
                        " ORDER BY seq LIMIT " REAPER_STR(LIST_MAX) " + 1",
                        2, params);
    else
        rc = cm_pg_exec(call->pg,
                        "SELECT * FROM (SELECT " LIST_COLUMNS " FROM audit_log ORDER BY seq DESC"
                        " LIMIT " REAPER_STR(LIST_MAX) ") t ORDER BY seq",
                        0, NULL);
    if (rc == CM_ERR && since != NULL) {
        cm_rpc_fail(call, "invalid", "since must be an RFC 3339 time");
        return;
    }
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the reaper's database is unavailable");
        return;
    }
    n = cm_pg_ntuples(call->pg);
    if (n > LIST_MAX) {
        n = LIST_MAX;
        snprintf(next, sizeof(next), "%s", cm_pg_value(call->pg, n - 1, 0));
    }
    list = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)strtoll(cm_pg_value(call->pg, i, 0), NULL, 10));
        cJSON_AddStringToObject(o, "at", cm_pg_value(call->pg, i, 1));
        cJSON_AddStringToObject(o, "service", cm_pg_value(call->pg, i, 2));
        cJSON_AddStringToObject(o, "actor", cm_pg_value(call->pg, i, 3));
        cJSON_AddStringToObject(o, "action", cm_pg_value(call->pg, i, 4));
        cJSON_AddStringToObject(o, "subject", cm_pg_value(call->pg, i, 5));
        cJSON_AddStringToObject(o, "hash", cm_pg_value(call->pg, i, 6));
        cJSON_AddItemToArray(list, o);
    }
    cm_rpc_reply_page(call, list, next[0] != '\0' ? next : NULL);
}

/* --- reaper.audit.verify ---------------------------------------------------------------- */

/*
 * Walks the chain from the anchor in one snapshot. Sets *broken_at to the first seq that does
 * not verify (an edited row, a missing row, a missing tail), or 0; *entries to the count.
 */
static int verify(struct cm_pg *pg, long long *entries, long long *broken_at)
{
    char prev_hash[65], last_hash[65], cursor[24];
    long long prev_seq, last_seq;
    int rc;

    *entries = 0;
    *broken_at = 0;
    rc = cm_pg_exec(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "SELECT anchor_seq, anchor_hash, last_seq, last_hash FROM audit_chain",
                        0, NULL);
    if (rc == CM_OK && cm_pg_ntuples(pg) != 1)
        rc = CM_ERR;
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        return rc;
    }
    prev_seq = strtoll(cm_pg_value(pg, 0, 0), NULL, 10);
    snprintf(prev_hash, sizeof(prev_hash), "%s", cm_pg_value(pg, 0, 1));
    last_seq = strtoll(cm_pg_value(pg, 0, 2), NULL, 10);
    snprintf(last_hash, sizeof(last_hash), "%s", cm_pg_value(pg, 0, 3));

    while (*broken_at == 0) {
        const char *params[1] = {cursor};
        int n;

        snprintf(cursor, sizeof(cursor), "%lld", prev_seq);
        rc = cm_pg_exec(pg,
                        "SELECT seq, event_id, to_char(at AT TIME ZONE 'UTC', " TS_FORMAT
                        "), service, actor, action, subject, hash FROM audit_log"
                        " WHERE seq > $1 ORDER BY seq LIMIT " REAPER_STR(VERIFY_BATCH),
                        1, params);
        if (rc != CM_OK)
            break;
        n = cm_pg_ntuples(pg);
        for (int i = 0; i < n; i++) {
            struct entry e = {cm_pg_value(pg, i, 1), cm_pg_value(pg, i, 2), cm_pg_value(pg, i, 3),
                              cm_pg_value(pg, i, 4), cm_pg_value(pg, i, 5), cm_pg_value(pg, i, 6)};
            long long seq = strtoll(cm_pg_value(pg, i, 0), NULL, 10);
            char want[65];

            if (seq != prev_seq + 1) {
                *broken_at = prev_seq + 1; /* a row is missing */
                break;
            }
            if (chain_hash(prev_hash, cm_pg_value(pg, i, 0), &e, want) != CM_OK ||
                strcmp(want, cm_pg_value(pg, i, 7)) != 0) {
                *broken_at = seq;
                break;
            }
            snprintf(prev_hash, sizeof(prev_hash), "%s", want);
            prev_seq = seq;
            (*entries)++;
        }
        if (n < VERIFY_BATCH)
            break;
    }
    cm_pg_rollback(pg); /* read only: nothing to keep */
    if (rc != CM_OK)
        return rc;
    /* The newest entries removed, or the head rewritten: the chain must end at the head. */
    if (*broken_at == 0 && (prev_seq != last_seq || strcmp(prev_hash, last_hash) != 0))
        *broken_at = prev_seq < last_seq ? prev_seq + 1 : last_seq;
    return CM_OK;
}

static void on_verify(struct cm_rpc_call *call, void *arg)
{
    long long entries = 0, broken_at = 0;
    cJSON *out;

    (void)arg;
    if (verify(call->pg, &entries, &broken_at) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the reaper's database is unavailable");
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "ok", broken_at == 0);
    if (broken_at == 0) {
        cJSON_AddNumberToObject(out, "entries", (double)entries);
    } else {
        CM_WARN("audit: the chain is broken at seq %lld", broken_at);
        cJSON_AddNumberToObject(out, "broken_at", (double)broken_at);
    }
    cm_rpc_reply(call, out);
}

/* --- retention ------------------------------------------------------------------------- */

int reaper_audit_expire(struct reaper *r, struct cm_pg *pg, int64_t cutoff, long *deleted)
{
    char cut[24], upto[24], anchor[24];
    long long limit, anchor_seq;
    int rc;

    (void)r;
    *deleted = 0;
    /* The expired prefix ends before the first entry that is not due yet. Entries are in
     * append order and an entry's time is never after its append, so an entry that comes
     * late (the reaper was down) waits at most that long after its due time. */
    snprintf(cut, sizeof(cut), "%lld", (long long)cutoff);
    {
        const char *params[1] = {cut};
        rc = cm_pg_exec(pg,
                        "SELECT coalesce((SELECT seq - 1 FROM audit_log"
                        " WHERE at >= to_timestamp($1::bigint) ORDER BY seq LIMIT 1),"
                        " (SELECT last_seq FROM audit_chain WHERE id = 1))",
                        1, params);
    }
    if (rc != CM_OK)
        return rc;
    limit = strtoll(cm_pg_value(pg, 0, 0), NULL, 10);

    for (;;) {
        rc = cm_pg_begin(pg);
        if (rc == CM_OK)
            rc = cm_pg_exec(pg, "SELECT anchor_seq FROM audit_chain WHERE id = 1 FOR UPDATE", 0,
                            NULL);
        if (rc != CM_OK)
            break;
        anchor_seq = strtoll(cm_pg_value(pg, 0, 0), NULL, 10);
        if (anchor_seq >= limit) {
            rc = cm_pg_commit(pg);
            break;
        }
        snprintf(anchor, sizeof(anchor), "%lld", anchor_seq);
        snprintf(upto, sizeof(upto), "%lld",
                 limit < anchor_seq + EXPIRE_BATCH ? limit : anchor_seq + EXPIRE_BATCH);
        {
            const char *params[2] = {anchor, upto};
            /* The new anchor is the hash of the last entry deleted, read before it goes. */
            rc = cm_pg_exec(pg,
                            "WITH gone AS (DELETE FROM audit_log WHERE seq > $1 AND seq <= $2"
                            " RETURNING seq, hash)"
                            " UPDATE audit_chain SET anchor_seq = $2::bigint,"
                            " anchor_hash = (SELECT hash FROM gone WHERE seq = $2::bigint)"
                            " WHERE id = 1 AND EXISTS (SELECT 1 FROM gone WHERE seq = $2::bigint)"
                            " RETURNING (SELECT count(*) FROM gone)",
                            2, params);
        }
        if (rc == CM_OK && cm_pg_ntuples(pg) != 1) {
            /* The row the anchor must come from is missing: the chain is broken; keep it
             * as it is for the operator to look at (audit verify says where). */
            CM_ERROR("audit: entry %s is missing; retention stopped", upto);
            rc = CM_CONFLICT;
        }
        if (rc == CM_OK) {
            *deleted += strtol(cm_pg_value(pg, 0, 0), NULL, 10);
            rc = cm_pg_commit(pg);
        }
        if (rc != CM_OK)
            break;
    }
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    return rc;
}

/* --- life cycle ------------------------------------------------------------------------ */

int reaper_audit_start(struct reaper *r)
{
    struct cm_consumer_cfg cfg = {0};

    r->audit = cm_xcalloc(1, sizeof(*r->audit));
    r->audit->r = r;
    cfg.stream = CM_AUDIT_STREAM;
    cfg.durable = AUDIT_DURABLE;
    cfg.filter = CM_AUDIT_SUBJECTS;
    cfg.batch = 64;
    cm_rpc_handle(r->rpc, "reaper.audit.list", on_list, r);
    cm_rpc_handle(r->rpc, "reaper.audit.verify", on_verify, r);
    return cm_consumer_start(&r->audit->consumer, r->svc.nats, &cfg, on_event, r->audit);
}

void reaper_audit_stop(struct reaper *r)
{
    if (r->audit == NULL)
        return;
    cm_consumer_destroy(r->audit->consumer);
    cm_pg_destroy(r->audit->pg);
    free(r->audit);
    r->audit = NULL;
}
