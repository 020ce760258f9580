/*
 * store.c - the ai schema: one row per suggestion, its draft and audio sealed under the
 * data key of its integration (ws:<ws>:int:<integration>, the router's key id for the same
 * Platform Data; ws:<ws> for a conversation without one), so that an integration's purge
 * shreds exactly its drafts; written in the same transaction as its suggestion.created event
 * and its audit record (see ai.h and schema/001_init.sql). The row names its key id.
 *
 * The additional data binds each sealed value to its row and column, so that a draft
 * copied to another row, or into the audio column, does not open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ai.h"
#include "common/audit.h"
#include "common/log.h"

/*
 * The row, its event and its audit record in one statement (prepared once per connection):
 * the outbox rows are written only when the row is. It goes in one round trip with the
 * transaction's edges.
 */
#define INSERT_SQL                                                                                 \
    "WITH s AS (INSERT INTO suggestions (id, workspace_id, integration_id, conversation_id,"       \
    " actor, provider, model, text_sealed, audio_sealed, audio_type, audio_bytes, latency_ms,"     \
    " prompt_tokens, completion_tokens, masked_items, created_at, key_id)"                         \
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::integer, $12::integer,"                \
    " $13::integer, $14::integer, $15::integer, $16::timestamptz, $23) RETURNING 1)"               \
    " INSERT INTO outbox (subject, msg_id, payload) SELECT v.subject, v.msg_id, v.payload"         \
    " FROM s, (VALUES ($17, $18, $19), ($20, $21, $22)) AS v (subject, msg_id, payload)"

/* Now as RFC 3339 UTC with microseconds: the row's created_at and the event's. */
static void now_rfc3339(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    char sec[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%06ldZ", sec, ts.tv_nsec / 1000);
}

/* The event other services show a suggestion by: ids and names, never the text. Free the
 * result with cJSON_free(). */
static char *event_payload(const struct ai_record *r, const char *created)
{
    cJSON *ev = cJSON_CreateObject();
    char *payload;

    cJSON_AddStringToObject(ev, "suggestion_id", r->id);
    cJSON_AddStringToObject(ev, "conversation_id", r->ctx->conversation_id);
    cJSON_AddStringToObject(ev, "workspace_id", r->ctx->workspace_id);
    if (r->ctx->integration_id != NULL)
        cJSON_AddStringToObject(ev, "integration_id", r->ctx->integration_id);
    else
        cJSON_AddNullToObject(ev, "integration_id");
    cJSON_AddStringToObject(ev, "actor", r->actor);
    cJSON_AddStringToObject(ev, "provider", r->provider);
    cJSON_AddStringToObject(ev, "model", r->draft->model);
    cJSON_AddBoolToObject(ev, "voice", r->audio != NULL);
    cJSON_AddStringToObject(ev, "created_at", created);
    payload = cJSON_PrintUnformatted(ev);
    if (payload == NULL)
        abort();
    cJSON_Delete(ev);
    return payload;
}

/* A number for a parameter, or NULL (SQL NULL) when negative: "not said". */
static const char *num(char *buf, size_t cap, long v)
{
    if (v < 0)
        return NULL;
    snprintf(buf, cap, "%ld", v);
    return buf;
}

int ai_store_suggestion(struct ai *ai, struct cm_pg *pg, const struct ai_record *r, char *created,
                        size_t cap)
{
    char kid[CM_KEYRING_SCOPE_ID_LEN], aad_text[96], aad_audio[96], ev_id[64], audit_id[48];
    char n_audio[24], n_latency[24], n_prompt[24], n_completion[24], n_masked[16];
    char *ev = NULL, *audit = NULL;
    struct cm_buf text, audio;
    int rc;

    cm_keyring_scope_id(kid, r->ctx->workspace_id, r->ctx->integration_id);
    snprintf(aad_text, sizeof(aad_text), "ai.suggestions.text:%s", r->id);
    snprintf(aad_audio, sizeof(aad_audio), "ai.suggestions.audio:%s", r->id);
    snprintf(ev_id, sizeof(ev_id), "ai:suggestion:%s", r->id);
    now_rfc3339(created, cap);
    cm_buf_init(&text);
    cm_buf_init(&audio);
    ev = event_payload(r, created);
    /* Reading the conversation to draft from it is an access to Platform Data. */
    rc = cm_audit_event(AI_SERVICE, r->actor, "suggestion.create", r->ctx->conversation_id, &audit,
                        audit_id);

    /*
     * The commit does not wait for the WAL flush: a crash within the next fraction of a
     * second may lose this draft with its event and audit record (never one without the
     * others), which the user can ask for again; waiting would add a disk flush to every
     * suggestion. token-vault's token reads make the same choice. Purges, which must not
     * come back after a crash, keep the default.
     */
    if (rc == CM_OK)
        rc = cm_keyring_seal(ai->keyring, pg, kid, aad_text, r->draft->text, r->draft->len, &text);
    if (rc == CM_OK && r->audio != NULL)
        rc = cm_keyring_seal(ai->keyring, pg, kid, aad_audio, r->audio, r->audio_len, &audio);
    if (rc == CM_OK) {
        const char *values[23] = {
            r->id,
            r->ctx->workspace_id,
            r->ctx->integration_id,
            r->ctx->conversation_id,
            r->actor,
            r->provider,
            r->draft->model,
            text.data,
            r->audio != NULL ? audio.data : NULL,
            r->audio != NULL ? r->audio_type : NULL,
            r->audio != NULL ? num(n_audio, sizeof(n_audio), (long)r->audio_len) : NULL,
            num(n_latency, sizeof(n_latency), r->latency_ms),
            num(n_prompt, sizeof(n_prompt), r->draft->prompt_tokens),
            num(n_completion, sizeof(n_completion), r->draft->completion_tokens),
            num(n_masked, sizeof(n_masked), r->masked),
            created,
            AI_EVENT_CREATED,
            ev_id,
            ev,
            "audit." AI_SERVICE,
            audit_id,
            audit,
            kid,
        };
        int lengths[23] = {0};
        int formats[23] = {0};
        lengths[7] = (int)text.len;
        formats[7] = 1;
        lengths[8] = (int)audio.len;
        formats[8] = 1;
        const struct cm_pg_call calls[4] = {
            CM_PG_BEGIN,
            CM_PG_ASYNC_COMMIT,
            {"ai_store_suggestion", INSERT_SQL, 23, values, lengths, formats},
            CM_PG_COMMIT,
        };
        PGresult *res[4];
        /* The transaction in one round trip. */
        rc = cm_pg_pipeline(pg, calls, 4, res);
        for (int i = 0; i < 4; i++)
            PQclear(res[i]);
    }
    if (rc != CM_OK) {
        CM_ERROR_ID(r->id, "store: suggestion not stored: %s (%s)", cm_err_str(rc),
                    cm_pg_error(pg));
        cm_pg_rollback(pg);
    }
    cJSON_free(ev);
    cJSON_free(audit);
    cm_buf_cleanup(&text);
    cm_buf_cleanup(&audio);
    return rc;
}
