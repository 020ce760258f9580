/*
 * batch_new.c - a batch's new contacts, each with its conversation and first message, in one
 * statement: arrays of the sealed values, unnested and inserted into contacts, conversations
 * and messages by one INSERT each, where one inbound_message() call per contact ran a dozen
 * statements (and their executor start-ups) in PostgreSQL. A contact that exists after all
 * (another worker's or replica's, or one this worker has not cached) is left to
 * inbound_message() (inbound.c runs it next): the statement inserts nothing of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "common/crypto.h"
#include "common/log.h"
#include "inbound.h"

enum {
    COL_INTEGRATION,
    COL_WORKSPACE,
    COL_PLATFORM,
    COL_BLIND,
    COL_CONTACT,
    COL_PSID,
    COL_CONVERSATION,
    COL_ID,
    COL_MID,
    COL_KIND,
    COL_BODY,
    COL_TS,
    COL_IDX,
    NCOLS
};

/*
 * The contact is inserted unless it exists; its conversation only when the contact was
 * inserted here (so it has none), opened with its window in place; the message into it
 * unless (integration_id, mid) is held. One row per input: whether its conversation was
 * opened here (else nothing of it was written) and its message stored. Contacts are inserted
 * in the order of the arrays, which the caller sorts by (integration, blind index), the order
 * in which every worker takes those locks.
 */
static const char new_sql[] =
    "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::float8[], $13::int[]) AS t(integration, workspace, platform, blind, contact, psid,"
    " conversation, id, mid, kind, body, ts, idx)),"
    " ct AS (INSERT INTO contacts (id, workspace_id, integration_id, platform, blind,"
    " psid_sealed) SELECT contact, workspace, integration, platform, decode(blind, 'hex'),"
    " decode(psid, 'hex') FROM input ORDER BY idx"
    " ON CONFLICT (integration_id, blind) DO NOTHING RETURNING id),"
    " cv AS (INSERT INTO conversations (id, workspace_id, integration_id, contact_id, platform,"
    " last_inbound_at) SELECT i.conversation, i.workspace, i.integration, i.contact, i.platform,"
    " to_timestamp(i.ts) FROM input i JOIN ct ON ct.id = i.contact ORDER BY i.idx"
    " RETURNING id),"
    " ms AS (INSERT INTO messages (id, conversation_id, workspace_id, platform, mid, direction,"
    " kind, body_sealed, sent_at, status, integration_id) SELECT i.id, i.conversation,"
    " i.workspace, i.platform, i.mid, 'in', i.kind, decode(i.body, 'hex'), to_timestamp(i.ts),"
    " 'received', i.integration FROM input i JOIN cv ON cv.id = i.conversation ORDER BY i.idx"
    " ON CONFLICT (integration_id, mid) DO NOTHING RETURNING id)"
    " SELECT i.idx, cv.id IS NOT NULL, ms.id IS NOT NULL FROM input i"
    " LEFT JOIN cv ON cv.id = i.conversation LEFT JOIN ms ON ms.id = i.id";

/* Appends s to an array literal: quoted, with " and \ escaped; NULL as NULL. */
static void add_text(struct cm_buf *b, const char *s)
{
    cm_buf_puts(b, b->len > 1 ? "," : "");
    if (s == NULL) {
        cm_buf_puts(b, "NULL");
        return;
    }
    cm_buf_puts(b, "\"");
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            cm_buf_puts(b, "\\");
        cm_buf_append(b, p, 1);
    }
    cm_buf_puts(b, "\"");
}

/* Appends len bytes as hex (a text element decode()d by the statement). */
static void add_hex(struct cm_buf *b, const void *data, size_t len)
{
    char *hex = cm_xmalloc(len * 2 + 1);

    cm_hex_encode(data, len, hex);
    add_text(b, hex);
    free(hex);
}

void inbound_new_prepare(struct inbound_new *nb, struct inbound_fast *const *fs, int n)
{
    memset(nb, 0, sizeof(*nb));
    for (int c = 0; c < NCOLS; c++) {
        cm_buf_init(&nb->cols[c]);
        cm_buf_puts(&nb->cols[c], "{");
    }
    for (int i = 0; i < n; i++) {
        const struct inbound_fast *f = fs[i];
        char idx[16];

        snprintf(idx, sizeof(idx), "%d", i);
        add_text(&nb->cols[COL_INTEGRATION], f->route.integration_id);
        add_text(&nb->cols[COL_WORKSPACE], f->route.workspace_id);
        add_text(&nb->cols[COL_PLATFORM], f->ev->platform);
        add_hex(&nb->cols[COL_BLIND], f->blind, sizeof(f->blind));
        add_text(&nb->cols[COL_CONTACT], f->contact);
        add_hex(&nb->cols[COL_PSID], f->psid_sealed.data, f->psid_sealed.len);
        add_text(&nb->cols[COL_CONVERSATION], f->conversation);
        add_text(&nb->cols[COL_ID], f->id);
        add_text(&nb->cols[COL_MID], f->ev->mid);
        add_text(&nb->cols[COL_KIND], f->ev->kind);
        add_hex(&nb->cols[COL_BODY], f->sealed.data, f->sealed.len);
        add_text(&nb->cols[COL_TS], f->ts);
        add_text(&nb->cols[COL_IDX], idx);
    }
    for (int c = 0; c < NCOLS; c++) {
        cm_buf_puts(&nb->cols[c], "}");
        nb->values[c] = nb->cols[c].data;
    }
    nb->n = n;
    nb->call = (struct cm_pg_call){
        .name = "router_new_contacts",
        .sql = new_sql,
        .n = NCOLS,
        .values = nb->values,
    };
}

int inbound_new_outcome(struct inbound_new *nb, PGresult *res, struct inbound_caches *caches,
                        struct inbound_fast *const *fs, enum inbound_outcome *const *outcomes,
                        bool *handled)
{
    if (res == NULL || PQnfields(res) != 3 || PQntuples(res) != nb->n)
        return CM_AGAIN;
    for (int i = 0; i < nb->n; i++)
        handled[i] = false;
    for (int row = 0; row < nb->n; row++) {
        int i = atoi(PQgetvalue(res, row, 0));
        struct inbound_fast *f;

        if (i < 0 || i >= nb->n)
            return CM_AGAIN;
        if (strcmp(PQgetvalue(res, row, 1), "t") != 0)
            continue; /* the contact existed: inbound_message() takes it */
        f = fs[i];
        handled[i] = true;
        f->waiting = true; /* a new conversation has no assignee yet */
        *outcomes[i] =
            strcmp(PQgetvalue(res, row, 2), "t") == 0 ? INBOUND_STORED : INBOUND_DUPLICATE;
        if (caches != NULL && caches->contacts != NULL)
            cache_put(caches->contacts, f->cache_key, f->contact);
    }
    return CM_OK;
}

void inbound_new_cleanup(struct inbound_new *nb)
{
    for (int c = 0; c < NCOLS; c++)
        cm_buf_cleanup(&nb->cols[c]);
}
