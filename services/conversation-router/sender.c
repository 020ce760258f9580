/*
 * sender.c - queued replies to Meta's Send API.
 *
 * Replies wait on the JetStream work queue ROUTER_SEND. A sender takes one, fetches the
 * integration's token from token-vault, and posts exactly one recipient and one message.
 * Meta's answer decides: a message_id marks it sent; a permanent error (outside the
 * window, an invalid token, the person unavailable, a bad parameter, the thread held by
 * another app, which is then recorded) fails it at once with Meta's reason; a passing one (5xx,
 * timeouts, throttling) is redelivered with exponential backoff and jitter, up to
 * SEND_MAX_ATTEMPTS, and then dead-lettered.
 *
 * Duplicates: before posting, the attempt is committed (attempts, sending_since). If the
 * process dies after Meta accepted the message but before the row says so, the
 * redelivered job finds sending_since under a minute old and waits: Messenger echoes the
 * message with our id in its metadata, and the echo marks it sent (store.c). Only when no
 * echo comes within that minute (Instagram, or echoes not subscribed) is it posted again:
 * that narrow case is the remaining window for a duplicate.
 *
 * A reply with a file (api_upload.c) is a message with an outbound attachments row: its bytes
 * go to Meta's Attachment Upload API first (sender_media.c), and Meta's attachment_id is kept
 * on the row, so that a retry sends without uploading again; the Send API then carries that id.
 * A failed upload is handled like a failed send. Instagram has no upload: the Send API carries a
 * public link to the file (router_media_link()), which Meta fetches from webhook-ingest while it
 * takes the message; each attempt makes its own link. A file sent with text is a second message
 * whose job names the text's ({"message_id", "after"}): it waits until the text is no longer
 * queued, so the text arrives first.
 *
 * The same queue carries mark_seen jobs ({"mark_seen": conversation}, api_list.c): Meta's
 * sender action, sent only while Meta allows it and never retried for long.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/httpc.h"
#include "common/log.h"
#include "common/metrics.h"
#include "router.h"

#define RATE_PER_ACCOUNT 100.0 /* messages per second per account and replica */
#define BACKOFF_BASE_MS  1000
#define BACKOFF_CAP_MS   60000

struct bucket {
    char account[80];
    double tokens;
    double at;
    struct bucket *next;
};

struct router_limiter {
    pthread_mutex_t lock;
    struct bucket *head;
};

struct sender {
    struct router *r;
    struct cm_pg *pg;
    struct cm_httpc *http;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Token bucket per account: Meta's per-account limits, kept by each replica. */
static bool take(struct router_limiter *l, const char *account)
{
    struct bucket *b;
    double t = now_s();
    bool ok;

    pthread_mutex_lock(&l->lock);
    for (b = l->head; b != NULL && strcmp(b->account, account) != 0; b = b->next) {
    }
    if (b == NULL) {
        b = cm_xcalloc(1, sizeof(*b));
        snprintf(b->account, sizeof(b->account), "%s", account);
        b->tokens = RATE_PER_ACCOUNT;
        b->at = t;
        b->next = l->head;
        l->head = b;
    }
    b->tokens = fmin(RATE_PER_ACCOUNT, b->tokens + (t - b->at) * RATE_PER_ACCOUNT);
    b->at = t;
    ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

void router_limiter_destroy(struct router_limiter *l)
{
    if (l == NULL)
        return;
    while (l->head != NULL) {
        struct bucket *b = l->head;
        l->head = b->next;
        free(b);
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

struct job {
    char id[64];
    char ws[128];
    char conv[64];
    char integration[64];
    char contact[64];
    char platform[16];
    char account[80];
    int attempts;
    bool in_flight;
    bool human_agent;
    bool workspace_deleted;
    char *sealed_body;
    char *sealed_psid;
    /* The message's outbound attachment; att_id "" when it has none. */
    char att_id[40], att_type[16], att_ctype[128], meta_att[128];
};

static void job_free(struct job *j)
{
    free(j->sealed_body);
    free(j->sealed_psid);
}

/* Loads the job; CM_NOTFOUND when it is gone or no longer queued. */
static int load(struct sender *s, const char *id, struct job *j)
{
    const char *params[1] = {id};
    struct cm_pg *pg = s->pg;
    int rc;

    memset(j, 0, sizeof(*j));
    rc = cm_pg_exec(pg,
                    "SELECT m.status, m.attempts, coalesce(m.sending_since > now() - interval"
                    " '60 seconds', false), m.human_agent, m.body_sealed,"
                    " c.id, c.workspace_id, c.integration_id, c.contact_id, c.platform,"
                    " coalesce(r.account_id, ''), w.status = 'deleted', ct.psid_sealed,"
                    " coalesce(a.id, ''), coalesce(a.type, ''), coalesce(a.content_type, ''),"
                    " coalesce(a.meta_attachment_id, '')"
                    " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " JOIN contacts ct ON ct.id = c.contact_id"
                    " JOIN workspaces w ON w.id = c.workspace_id"
                    " LEFT JOIN routes r ON r.integration_id = c.integration_id"
                    " AND r.status IN ('connected', 'needs_reauth')"
                    " LEFT JOIN attachments a ON a.message_id = m.id AND a.direction = 'out'"
                    " AND a.position = 0"
                    " WHERE m.id = $1 AND m.direction = 'out'",
                    1, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0 || strcmp(cm_pg_value(pg, 0, 0), "queued") != 0)
        return CM_NOTFOUND;
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->attempts = atoi(cm_pg_value(pg, 0, 1));
    j->in_flight = strcmp(cm_pg_value(pg, 0, 2), "t") == 0;
    j->human_agent = strcmp(cm_pg_value(pg, 0, 3), "t") == 0;
    j->sealed_body = cm_xstrdup(cm_pg_value(pg, 0, 4));
    snprintf(j->conv, sizeof(j->conv), "%s", cm_pg_value(pg, 0, 5));
    snprintf(j->ws, sizeof(j->ws), "%s", cm_pg_value(pg, 0, 6));
    snprintf(j->integration, sizeof(j->integration), "%s", cm_pg_value(pg, 0, 7));
    snprintf(j->contact, sizeof(j->contact), "%s", cm_pg_value(pg, 0, 8));
    snprintf(j->platform, sizeof(j->platform), "%s", cm_pg_value(pg, 0, 9));
    snprintf(j->account, sizeof(j->account), "%s", cm_pg_value(pg, 0, 10));
    j->workspace_deleted = strcmp(cm_pg_value(pg, 0, 11), "t") == 0;
    j->sealed_psid = cm_xstrdup(cm_pg_value(pg, 0, 12));
    snprintf(j->att_id, sizeof(j->att_id), "%s", cm_pg_value(pg, 0, 13));
    snprintf(j->att_type, sizeof(j->att_type), "%s", cm_pg_value(pg, 0, 14));
    snprintf(j->att_ctype, sizeof(j->att_ctype), "%s", cm_pg_value(pg, 0, 15));
    snprintf(j->meta_att, sizeof(j->meta_att), "%s", cm_pg_value(pg, 0, 16));
    return CM_OK;
}

/* Records the end of a job: sent (with Meta's id, when given) or failed (with the reason). */
static void finish(struct sender *s, const struct job *j, bool sent, const char *mid,
                   const char *error)
{
    const char *params[4] = {j->id, sent ? "sent" : "failed", mid, error};
    int rc = cm_pg_exec(s->pg,
                        "UPDATE messages SET status = $2, mid = coalesce($3, mid), error = $4,"
                        " sending_since = NULL WHERE id = $1 AND status = 'queued'",
                        4, params);

    if (rc != CM_OK)
        CM_ERROR_ID(j->id, "send result not recorded: %s", cm_pg_error(s->pg));
    if (sent) {
        cm_metrics_inc(s->r->m_sent, 1);
        CM_INFO_ID(j->id, "sent to Meta (conversation %s)", j->conv);
    } else {
        cm_metrics_inc(s->r->m_send_failed, 1);
        CM_WARN_ID(j->id, "send failed: %s", error);
    }
}

/* Meta could not fetch a file from its link (webhook-ingest or the router briefly away, say). */
#define FETCH_FAILED_SUBCODE 2018008

/* Meta's codes that will not change on a retry; any other 4xx is final as well. */
static bool transient(const struct cm_httpc_response *resp)
{
    int code = resp->has_meta_error ? resp->meta_error.code : 0;

    if (resp->status == 0 || resp->status >= 500 || resp->status == 429)
        return true;
    if (code == 100 && resp->meta_error.subcode == FETCH_FAILED_SUBCODE)
        return true;
    return code == 1 || code == 2 || cm_httpc_meta_throttling(code);
}

/* Builds Send API's body: one recipient, one message, the tag only for a human agent. A file
 * goes by Meta's attachment_id (Messenger) or by link (Instagram: link is not NULL). */
static char *send_body(const struct job *j, const char *psid, const char *text, const char *link)
{
    cJSON *o = cJSON_CreateObject(), *recipient, *message;
    char *json;

    recipient = cJSON_AddObjectToObject(o, "recipient");
    cJSON_AddStringToObject(recipient, "id", psid);
    if (j->human_agent) {
        cJSON_AddStringToObject(o, "messaging_type", "MESSAGE_TAG");
        cJSON_AddStringToObject(o, "tag", "HUMAN_AGENT");
    } else {
        cJSON_AddStringToObject(o, "messaging_type", "RESPONSE");
    }
    message = cJSON_AddObjectToObject(o, "message");
    /* A message carries text or one attachment: a file is a message of its own. */
    if (j->att_id[0] != '\0') {
        cJSON *att = cJSON_AddObjectToObject(message, "attachment");
        cJSON_AddStringToObject(att, "type", j->att_type);
        cJSON *payload = cJSON_AddObjectToObject(att, "payload");
        if (link != NULL)
            cJSON_AddStringToObject(payload, "url", link);
        else
            cJSON_AddStringToObject(payload, "attachment_id", j->meta_att);
    } else {
        cJSON_AddStringToObject(message, "text", text);
    }
    /* Messenger echoes metadata back: how a send whose answer was lost is recognised. */
    if (strcmp(j->platform, "messenger") == 0)
        cJSON_AddStringToObject(message, "metadata", j->id);
    json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return json;
}

/* Opens the contact's id and the message's text into the two buffers. */
static int open_parts(struct sender *s, const struct job *j, struct cm_buf *psid,
                      struct cm_buf *text)
{
    char aad[96];
    struct cm_buf body;
    cJSON *json;
    int rc;

    snprintf(aad, sizeof(aad), "router.contacts.psid:%s", j->contact);
    rc = router_open(s->r, s->pg, j->ws, j->integration, aad, j->sealed_psid, psid);
    if (rc != CM_OK)
        return rc;
    snprintf(aad, sizeof(aad), "router.messages.body:%s", j->id);
    cm_buf_init(&body);
    rc = router_open(s->r, s->pg, j->ws, j->integration, aad, j->sealed_body, &body);
    json = rc == CM_OK ? cJSON_ParseWithLength(body.data, body.len) : NULL;
    if (rc == CM_OK && cJSON_IsString(cJSON_GetObjectItem(json, "text")))
        cm_buf_puts(text, cJSON_GetObjectItem(json, "text")->valuestring);
    else if (rc == CM_OK && j->att_id[0] != '\0')
        cm_buf_puts(text, ""); /* a file alone */
    else if (rc == CM_OK)
        rc = CM_INVALID;
    cJSON_Delete(json);
    cm_buf_wipe(&body);
    return rc;
}

/* Delay before the next attempt: exponential, capped, full jitter. */
static int64_t backoff_ms(int attempts)
{
    double cap = fmin(BACKOFF_CAP_MS, BACKOFF_BASE_MS * pow(2, attempts > 0 ? attempts - 1 : 0));
    uint32_t r;

    cm_crypto_random(&r, sizeof(r));
    return (int64_t)(cap / 2 + (cap / 2) * ((double)r / 4294967295.0));
}

static void dead_letter(struct sender *s, const struct job *j, const char *reason)
{
    cJSON *o = cJSON_CreateObject();
    char *text;

    cJSON_AddStringToObject(o, "message_id", j->id);
    cJSON_AddStringToObject(o, "conversation_id", j->conv);
    cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddNumberToObject(o, "attempts", j->attempts);
    text = cJSON_PrintUnformatted(o);
    if (cm_nats_publish_sync(s->r->svc.nats, "router.dead.send", j->id, text, (int)strlen(text),
                             NULL) != CM_OK)
        CM_ERROR_ID(j->id, "not dead-lettered (NATS): %s", reason);
    cm_metrics_inc(s->r->m_dead, 1);
    cJSON_free(text);
    cJSON_Delete(o);
}

/* A reply's file as libcurl sends it: one opened segment at a time, never the whole file. */
struct file_reader {
    struct sender *s;
    const struct job *j;
    struct cm_buf piece; /* the segment holding the bytes asked for last */
    long long base;      /* the offset of its first byte */
    long long size;      /* the file's */
    int rc;              /* the media store's result; a failure ends the upload */
};

/* Reads the segment holding offset, unless it is the one held already. */
static int reader_seek(struct file_reader *f, long long offset)
{
    if (f->rc == CM_OK && offset >= f->base && offset - f->base < (long long)f->piece.len)
        return CM_OK;
    /* Into the same buffer (reset by the read), wiped once the upload is over. */
    f->rc = router_media_read(f->s->r, f->s->pg, f->j->ws, f->j->integration, f->j->att_id, offset,
                              &f->piece, &f->base, &f->size);
    return f->rc;
}

static size_t read_file(void *arg, size_t offset, char *buf, size_t cap)
{
    struct file_reader *f = arg;
    size_t n;

    if (reader_seek(f, (long long)offset) != CM_OK)
        return 0;
    if ((long long)offset < f->base || (long long)offset - f->base >= (long long)f->piece.len) {
        f->rc = CM_DENIED; /* the store's pieces do not cover the size its row gives */
        return 0;
    }
    n = f->piece.len - (size_t)((long long)offset - f->base);
    n = n < cap ? n : cap;
    memcpy(buf, f->piece.data + ((long long)offset - f->base), n);
    return n;
}

/*
 * Uploads the job's attachment to Meta (its bytes from the media store) and keeps Meta's
 * attachment_id on its row and in j->meta_att. Returns CM_OK with the id, CM_OK without one
 * (Meta's answer in resp: a refusal), CM_NOTFOUND or CM_INVALID (the bytes are gone or do not
 * open: why says so), or a passing failure (the store, the transport: resp).
 */
static int upload(struct sender *s, struct job *j, const char *token, const char *proof,
                  struct cm_httpc_response *resp, char *why, size_t cap)
{
    struct file_reader f = {.s = s, .j = j};
    int rc;

    /* The first segment before Meta is called: a file that cannot be read fails here. */
    cm_buf_init(&f.piece);
    rc = reader_seek(&f, 0);
    if (rc == CM_OK)
        rc = router_graph_upload(s->r, s->http, j->account, token, proof, j->att_type, j->att_ctype,
                                 (size_t)f.size, read_file, &f, j->id, resp, j->meta_att,
                                 sizeof(j->meta_att));
    if (f.rc != CM_OK)
        rc = f.rc; /* the store failed, before or during the upload */
    cm_buf_wipe(&f.piece);
    if (rc == CM_NOTFOUND || rc == CM_INVALID || rc == CM_DENIED) {
        snprintf(why, cap, "the attachment's bytes cannot be read from the media store");
        return rc == CM_NOTFOUND ? CM_NOTFOUND : CM_INVALID;
    }
    if (rc == CM_OK && j->meta_att[0] != '\0') {
        const char *params[2] = {j->att_id, j->meta_att};
        if (cm_pg_exec(s->pg, "UPDATE attachments SET meta_attachment_id = $2 WHERE id = $1", 2,
                       params) != CM_OK)
            CM_WARN_ID(j->id, "Meta's attachment id not recorded: %s", cm_pg_error(s->pg));
        CM_INFO_ID(j->id, "attachment %s uploaded to Meta", j->att_id);
    }
    return rc;
}

/* Posts the job to Meta and records the outcome; returns the queue verdict. */
static enum cm_consume_result post(struct sender *s, natsMsg *msg, struct job *j, char *token,
                                   const char *proof)
{
    struct cm_buf psid, text, link;
    struct cm_httpc_response resp;
    enum cm_consume_result verdict = CM_CONSUME_ACK;
    char *body = NULL, why[640];
    bool uploading = false, by_link = j->att_id[0] != '\0' && strcmp(j->platform, "instagram") == 0;
    int rc;

    cm_buf_init(&psid);
    cm_buf_init(&text);
    cm_buf_init(&link);
    cm_httpc_response_init(&resp);
    rc = open_parts(s, j, &psid, &text);
    if (rc != CM_OK) {
        finish(s, j, false, NULL, "the message or the contact's id cannot be decrypted");
        goto done;
    }
    /* Before the attempt is on record: a link not made is no attempt at all. */
    if (by_link && router_media_link(s->r, s->pg, j->att_id, &link) != CM_OK) {
        CM_WARN_ID(j->id, "no link to the file could be made: %s", cm_pg_error(s->pg));
        verdict = CM_CONSUME_RETRY;
        goto done;
    }
    /* The attempt is on record before Meta sees it (see the comment at the top). */
    {
        const char *params[1] = {j->id};
        if (cm_pg_exec(s->pg,
                       "UPDATE messages SET attempts = attempts + 1, sending_since = now()"
                       " WHERE id = $1 AND status = 'queued'",
                       1, params) != CM_OK) {
            verdict = CM_CONSUME_RETRY;
            goto done;
        }
        j->attempts++;
    }
    if (j->att_id[0] != '\0' && !by_link && j->meta_att[0] == '\0') {
        uploading = true;
        rc = upload(s, j, token, proof, &resp, why, sizeof(why));
        if (rc == CM_NOTFOUND || rc == CM_INVALID) {
            finish(s, j, false, NULL, why);
            goto done;
        }
        if (rc == CM_OK && resp.status == 200 && j->meta_att[0] == '\0') {
            finish(s, j, false, NULL, "Meta's upload answer had no attachment_id");
            goto done;
        }
        if (rc != CM_OK || resp.status != 200)
            goto refused;
        cm_httpc_response_cleanup(&resp);
        uploading = false;
    }
    body = send_body(j, psid.data, text.data, by_link ? link.data : NULL);
    /* Retries go through the queue, where each attempt is counted. */
    rc = router_graph_post(s->r, s->http, j->platform, j->account, "messages", token, proof, body,
                           j->id, &resp);
    if (rc == CM_OK && resp.status == 200) {
        cJSON *json = cJSON_ParseWithLength(resp.body.data, resp.body.len);
        const char *mid = cJSON_GetStringValue(cJSON_GetObjectItem(json, "message_id"));
        finish(s, j, true, mid, NULL);
        cJSON_Delete(json);
        goto done;
    }
refused:
    router_graph_why(&resp, why, sizeof(why));
    if (router_graph_thread_elsewhere(&resp)) {
        /* Meta knows better than our last event: another app holds the thread now. */
        char final[900];
        if (router_thread_elsewhere(s->pg, j->conv, 0) != CM_OK)
            CM_WARN_ID(j->id, "thread holder not recorded: %s", cm_pg_error(s->pg));
        snprintf(final, sizeof(final),
                 "another app controls this conversation's thread now: take control of it"
                 " (domsctl conversation take %s) and send again (%s)",
                 j->conv, why);
        finish(s, j, false, NULL, final);
    } else if (!transient(&resp)) {
        finish(s, j, false, NULL, why);
    } else if (j->attempts >= s->r->cfg->send_max_attempts) {
        char final[700];
        snprintf(final, sizeof(final), "gave up after %d attempts: %s", j->attempts, why);
        finish(s, j, false, NULL, final);
        dead_letter(s, j, final);
    } else {
        /* Meta answered, so it did not take the message; only a request that got no answer
         * after it was sent may have been accepted (see the top of the file). */
        if (uploading || resp.status != 0 || !resp.maybe_sent) {
            const char *params[2] = {j->id, why};
            if (cm_pg_exec(s->pg,
                           "UPDATE messages SET sending_since = NULL, error = $2"
                           " WHERE id = $1",
                           2, params) != CM_OK)
                CM_WARN_ID(j->id, "retry state not recorded");
        }
        cm_metrics_inc(s->r->m_send_retried, 1);
        CM_WARN_ID(j->id, "attempt %d failed, retrying: %s", j->attempts, why);
        natsMsg_NakWithDelay(msg, backoff_ms(j->attempts), NULL);
        verdict = CM_CONSUME_SETTLED;
    }
done:
    if (body != NULL) {
        sodium_memzero(body, strlen(body));
        cJSON_free(body);
    }
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&psid);
    cm_buf_wipe(&text);
    cm_buf_wipe(&link);
    return verdict;
}

/* Deliveries of a mark_seen job before a passing failure drops it: it is a courtesy. */
#define SEEN_MAX_DELIVERIES 3

static int deliveries(natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;
    int n = 1;

    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        n = (int)meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
    }
    return n;
}

/*
 * Loads what a mark_seen for conversation conv needs into j (id: conv) and *allowed: Meta
 * allows it now (the workspace live, the integration connected, the thread this app's, the
 * 24-hour window open). CM_NOTFOUND: the conversation is gone.
 */
static int load_seen(struct sender *s, const char *conv, struct job *j, bool *allowed)
{
    const char *params[1] = {conv};
    struct cm_pg *pg = s->pg;
    int64_t last;
    int rc;

    memset(j, 0, sizeof(*j));
    rc = cm_pg_exec(pg,
                    "SELECT c.workspace_id, c.integration_id, c.contact_id, c.platform,"
                    " coalesce(r.account_id, ''), w.status = 'active' AND c.thread_held,"
                    " coalesce((extract(epoch FROM c.last_inbound_at) * 1000)::bigint, 0),"
                    " ct.psid_sealed FROM conversations c"
                    " JOIN contacts ct ON ct.id = c.contact_id"
                    " JOIN workspaces w ON w.id = c.workspace_id"
                    " LEFT JOIN routes r ON r.integration_id = c.integration_id"
                    " AND r.status = 'connected' WHERE c.id = $1",
                    1, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    snprintf(j->id, sizeof(j->id), "%s", conv);
    snprintf(j->conv, sizeof(j->conv), "%s", conv);
    snprintf(j->ws, sizeof(j->ws), "%s", cm_pg_value(pg, 0, 0));
    snprintf(j->integration, sizeof(j->integration), "%s", cm_pg_value(pg, 0, 1));
    snprintf(j->contact, sizeof(j->contact), "%s", cm_pg_value(pg, 0, 2));
    snprintf(j->platform, sizeof(j->platform), "%s", cm_pg_value(pg, 0, 3));
    snprintf(j->account, sizeof(j->account), "%s", cm_pg_value(pg, 0, 4));
    last = strtoll(cm_pg_value(pg, 0, 6), NULL, 10);
    *allowed = j->account[0] != '\0' && strcmp(cm_pg_value(pg, 0, 5), "t") == 0 &&
               router_window_at((int64_t)time(NULL) * 1000, last) == ROUTER_WINDOW_OPEN;
    j->sealed_psid = cm_xstrdup(cm_pg_value(pg, 0, 7));
    return CM_OK;
}

/*
 * A mark_seen job ({"mark_seen": conversation}, queued by router.messages.list when a member
 * read new inbound messages in a workspace that asks for it): Meta's sender action, sent
 * only while Meta allows it. A refusal drops it; a passing failure is tried again a few times.
 */
static enum cm_consume_result mark_seen(struct sender *s, natsMsg *msg, const char *conv)
{
    enum cm_consume_result verdict = CM_CONSUME_ACK;
    struct cm_httpc_response resp;
    char *token = NULL, why[640], proof[ROUTER_PROOF_LEN], aad[96];
    struct cm_buf psid;
    bool allowed = false;
    struct job j;
    int rc = load_seen(s, conv, &j, &allowed);

    cm_buf_init(&psid);
    cm_httpc_response_init(&resp);
    if (rc == CM_NOTFOUND || (rc == CM_OK && !allowed))
        goto done; /* gone, or Meta would refuse it now: nothing to mark */
    if (rc != CM_OK) {
        verdict = CM_CONSUME_RETRY;
        goto done;
    }
    if (!take(s->r->limiter, j.account)) {
        natsMsg_NakWithDelay(msg, 1000, NULL);
        verdict = CM_CONSUME_SETTLED;
        goto done;
    }
    rc = router_token_get(s->r, j.integration, &token, proof, why, sizeof(why));
    snprintf(aad, sizeof(aad), "router.contacts.psid:%s", j.contact);
    if (rc == CM_OK)
        rc = router_open(s->r, s->pg, j.ws, j.integration, aad, j.sealed_psid, &psid);
    if (rc == CM_OK) {
        cJSON *o = cJSON_CreateObject();
        char *body;
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "recipient"), "id", psid.data);
        cJSON_AddStringToObject(o, "sender_action", "mark_seen");
        body = cJSON_PrintUnformatted(o);
        rc = router_graph_post(s->r, s->http, j.platform, j.account, "messages", token, proof, body,
                               conv, &resp);
        sodium_memzero(body, strlen(body));
        cJSON_free(body);
        cJSON_Delete(o);
        router_graph_why(&resp, why, sizeof(why));
    }
    if (rc == CM_OK && resp.status == 200) {
        CM_INFO_ID(conv, "mark_seen sent");
    } else if (rc == CM_OK && router_graph_thread_elsewhere(&resp)) {
        if (router_thread_elsewhere(s->pg, conv, 0) != CM_OK)
            CM_WARN_ID(conv, "thread holder not recorded: %s", cm_pg_error(s->pg));
    } else if ((rc == CM_UNAVAIL || (rc == CM_OK && transient(&resp))) &&
               deliveries(msg) < SEEN_MAX_DELIVERIES) {
        natsMsg_NakWithDelay(msg, backoff_ms(deliveries(msg)), NULL);
        verdict = CM_CONSUME_SETTLED;
    } else {
        CM_WARN_ID(conv, "mark_seen dropped: %s", rc == CM_OK ? why : "no token or contact");
    }
done:
    if (token != NULL)
        sodium_free(token);
    cm_httpc_response_cleanup(&resp);
    cm_buf_wipe(&psid);
    job_free(&j);
    return verdict;
}

/* Is message id still queued (a failure to ask counts as yes: the job waits)? */
static bool still_queued(struct sender *s, const char *id)
{
    const char *params[1] = {id};

    if (cm_pg_exec(s->pg, "SELECT 1 FROM messages WHERE id = $1 AND status = 'queued'", 1,
                   params) != CM_OK)
        return true;
    return cm_pg_ntuples(s->pg) > 0;
}

static enum cm_consume_result on_job(void *arg, natsMsg *msg)
{
    struct sender *s = arg;
    cJSON *json = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(json, "message_id"));
    const char *after = cJSON_GetStringValue(cJSON_GetObjectItem(json, "after"));
    enum cm_consume_result verdict = CM_CONSUME_ACK;
    char *token = NULL, why[512], proof[ROUTER_PROOF_LEN];
    struct job j;
    int rc, loaded;

    if (id == NULL && cJSON_IsString(cJSON_GetObjectItem(json, "mark_seen"))) {
        verdict = mark_seen(s, msg, cJSON_GetObjectItem(json, "mark_seen")->valuestring);
        cJSON_Delete(json);
        return verdict;
    }
    if (id == NULL) {
        CM_WARN("sender: a job without message_id dropped");
        cJSON_Delete(json);
        return CM_CONSUME_TERM;
    }
    rc = loaded = load(s, id, &j);
    if (rc == CM_NOTFOUND) {
        /* Sent, failed or purged meanwhile: nothing to do. */
    } else if (rc != CM_OK) {
        verdict = CM_CONSUME_RETRY;
    } else if (j.workspace_deleted) {
        finish(s, &j, false, NULL, "the workspace was deleted");
    } else if (j.account[0] == '\0') {
        finish(s, &j, false, NULL, "the integration is no longer connected");
    } else if (after != NULL && still_queued(s, after)) {
        /* The reply's text goes first (see the top of the file). */
        natsMsg_NakWithDelay(msg, 500, NULL);
        verdict = CM_CONSUME_SETTLED;
    } else if (j.in_flight) {
        /* A previous attempt may have reached Meta: give its echo time to say so. */
        natsMsg_NakWithDelay(msg, 15000, NULL);
        verdict = CM_CONSUME_SETTLED;
    } else if (!take(s->r->limiter, j.account)) {
        natsMsg_NakWithDelay(msg, 1000, NULL);
        verdict = CM_CONSUME_SETTLED;
    } else if ((rc = router_token_get(s->r, j.integration, &token, proof, why, sizeof(why))) ==
               CM_DENIED) {
        finish(s, &j, false, NULL, why);
    } else if (rc != CM_OK) {
        CM_WARN_ID(j.id, "%s", why);
        verdict = CM_CONSUME_RETRY;
    } else {
        verdict = post(s, msg, &j, token, proof);
    }
    if (token != NULL)
        sodium_free(token);
    if (loaded == CM_OK)
        job_free(&j);
    cJSON_Delete(json);
    return verdict;
}

int router_senders_start(struct router *r)
{
    struct cm_consumer_cfg cfg = {
        .stream = ROUTER_SEND_STREAM,
        .durable = "conversation-router-sender",
        .filter = ROUTER_SEND_SUBJECTS,
        .batch = 8,
        .ack_wait_ms = 60000,
        .retry_delay_ms = 2000,
    };

    r->limiter = cm_xcalloc(1, sizeof(*r->limiter));
    pthread_mutex_init(&r->limiter->lock, NULL);
    for (int i = 0; i < 2; i++) {
        struct sender *s = cm_xcalloc(1, sizeof(*s));
        s->r = r;
        if (cm_pg_connect(&s->pg, r->cfg->base.database_url, ROUTER_SCHEMA) == CM_INVALID ||
            cm_httpc_create(&s->http) != CM_OK) {
            cm_pg_destroy(s->pg);
            free(s);
            return CM_ERR;
        }
        r->sender_state[i] = s;
        if (cm_consumer_start(&r->senders[i], r->svc.nats, &cfg, on_job, s) != CM_OK)
            return CM_ERR;
    }
    return CM_OK;
}

void router_senders_free(struct router *r)
{
    for (int i = 0; i < 2; i++) {
        struct sender *s = r->sender_state[i];
        if (s == NULL)
            continue;
        cm_httpc_destroy(s->http);
        cm_pg_destroy(s->pg);
        free(s);
        r->sender_state[i] = NULL;
    }
    router_limiter_destroy(r->limiter);
    r->limiter = NULL;
}
