/*
 * api_media.c - a stored attachment's bytes, in chunks, to two readers:
 *   router.attachment.get  an agent (domsctl attachment get): a viewer's right in the
 *                          attachment's workspace; every call is audited (attachments.read).
 *   router.media.public    webhook-ingest, serving a reply file's public link to Meta
 *                          (Instagram's Send API fetches it; sender_media.c makes the link):
 *                          the link's token is the right, and Meta's fetch of the first
 *                          chunk is audited (attachments.link_read).
 *
 * NATS carries at most 1 MiB a message, so a reply holds the bytes from the requested offset
 * to the end of the piece holding it (base64; at most ROUTER_MEDIA_SEGMENT) and says whether
 * it reached the end; the reader asks again from the next offset. Only that piece is read
 * and opened (media.c).
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/mem.h"
#include "router.h"

/* The attachment's row as a call about it reads it. */
struct att_row {
    char ws[128], integration[64], type[32], state[16], content_type[100];
    char error[300];
};

/* A chunk read: the piece holding the offset asked for, where it starts, the file's size. */
struct chunk {
    struct cm_buf piece;
    long long base, size, offset;
};

/* The request's offset: 0 when absent, else a whole number >= 0; false (failed) otherwise. */
static bool offset_of(struct cm_rpc_call *call, long long *offset)
{
    int64_t v = 0;

    if (router_whole(call->req, "offset", &v) == CM_INVALID) {
        cm_rpc_fail(call, "invalid", "offset must be a whole number of bytes, 0 or more");
        return false;
    }
    *offset = (long long)v;
    return true;
}

/* Loads the row of id into a and checks the actor may read it; false (failed) otherwise. */
static bool load(struct cm_rpc_call *call, const char *id, struct att_row *a)
{
    const char *params[2] = {id, call->actor};
    struct cm_pg *pg = call->pg;
    char role[16];

    memset(a, 0, sizeof(*a));
    if (cm_pg_exec(pg,
                   "SELECT a.workspace_id, a.integration_id, a.type, a.state,"
                   " coalesce(a.content_type, ''), coalesce(a.error, ''),"
                   " w.status = 'deleted', m.role FROM attachments a"
                   " JOIN workspaces w ON w.id = a.workspace_id LEFT JOIN members m"
                   " ON m.workspace_id = a.workspace_id AND m.user_id = $2 WHERE a.id = $1",
                   2, params) != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the router's database is unavailable");
        return false;
    }
    if (cm_pg_ntuples(pg) == 0) {
        cm_rpc_fail(call, "not_found", "no attachment %s", id);
        return false;
    }
    snprintf(a->ws, sizeof(a->ws), "%s", cm_pg_value(pg, 0, 0));
    snprintf(a->integration, sizeof(a->integration), "%s", cm_pg_value(pg, 0, 1));
    snprintf(a->type, sizeof(a->type), "%s", cm_pg_value(pg, 0, 2));
    snprintf(a->state, sizeof(a->state), "%s", cm_pg_value(pg, 0, 3));
    snprintf(a->content_type, sizeof(a->content_type), "%s", cm_pg_value(pg, 0, 4));
    snprintf(a->error, sizeof(a->error), "%s", cm_pg_value(pg, 0, 5));
    router_role_from(call->actor, cm_pg_is_null(pg, 0, 7) ? NULL : cm_pg_value(pg, 0, 7), role);
    return router_allowed(call, a->ws, role, strcmp(cm_pg_value(pg, 0, 6), "t") == 0, "viewer",
                          false);
}

/* Why an attachment that is not stored cannot be read (a conflict), or NULL when stored. */
static const char *not_readable(const struct att_row *a)
{
    if (strcmp(a->state, "pending") == 0)
        return "not downloaded yet";
    if (strcmp(a->state, "reference") == 0)
        return "a story mention is kept as a reference only";
    if (strcmp(a->state, "unavailable") == 0)
        return a->error[0] != '\0' ? a->error : "unavailable";
    return NULL;
}

/* The reply: the bytes of c's piece from its offset, base64. */
static cJSON *chunk_json(const char *id, const struct att_row *a, const struct chunk *c)
{
    size_t skip = (size_t)(c->offset - c->base);
    /* A piece sealed before segments (one of any size) is sent in chunks all the same. */
    size_t len =
        c->piece.len - skip < ROUTER_MEDIA_SEGMENT ? c->piece.len - skip : ROUTER_MEDIA_SEGMENT;
    size_t b64_len = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = cm_xmalloc(b64_len);
    cJSON *out = cJSON_CreateObject();

    sodium_bin2base64(b64, b64_len, (const unsigned char *)c->piece.data + skip, len,
                      sodium_base64_VARIANT_ORIGINAL);
    cJSON_AddStringToObject(out, "attachment_id", id);
    cJSON_AddStringToObject(out, "type", a->type);
    cJSON_AddStringToObject(out, "content_type",
                            a->content_type[0] ? a->content_type : "application/octet-stream");
    cJSON_AddNumberToObject(out, "size", (double)c->size);
    cJSON_AddNumberToObject(out, "offset", (double)c->offset);
    cJSON_AddStringToObject(out, "data", b64);
    cJSON_AddBoolToObject(out, "eof", c->offset + (long long)len >= c->size);
    sodium_memzero(b64, b64_len);
    free(b64);
    return out;
}

/* Reads the piece of attachment id (of a) holding c->offset into c. */
static int read_chunk(struct router *r, struct cm_pg *pg, const char *id, const struct att_row *a,
                      struct chunk *c)
{
    return router_media_read(r, pg, a->ws, a->integration, id, c->offset, &c->piece, &c->base,
                             &c->size);
}

/*
 * Ends a read that reached rc: when rc is CM_OK, the reply is built from c (if reply) and the
 * transaction committed; c's piece is wiped either way, and on any failure the transaction is
 * rolled back and *out left NULL. Returns rc, or the commit's error.
 */
static int finish_read(struct cm_pg *pg, int rc, bool reply, const char *id,
                       const struct att_row *a, struct chunk *c, cJSON **out)
{
    *out = NULL;
    if (rc == CM_OK && reply)
        *out = chunk_json(id, a, c);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    cm_buf_wipe(&c->piece);
    if (rc != CM_OK) {
        cm_pg_rollback(pg);
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

static void on_attachment_get(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *id = cm_rpc_str(call, "attachment_id");
    struct cm_pg *pg = call->pg;
    struct att_row a;
    struct chunk c = {0};
    const char *conflict;
    cJSON *out = NULL;
    int rc;

    if (!router_valid_id(id, 64) || strncmp(id, "att_", 4) != 0) {
        cm_rpc_fail(call, "invalid", "attachment_id must be an attachment's id (att_...)");
        return;
    }
    if (!offset_of(call, &c.offset) || !load(call, id, &a))
        return;
    conflict = not_readable(&a);
    cm_buf_init(&c.piece);
    /* Audited whatever it finds: the attempt to read is the fact recorded. */
    rc = router_begin_read_audit(pg);
    if (rc == CM_OK)
        rc = cm_audit_add(pg, ROUTER_SERVICE, call->actor, "attachments.read", id);
    if (rc == CM_OK && conflict == NULL) {
        rc = read_chunk(r, pg, id, &a, &c);
        if (rc == CM_INVALID) {
            cm_pg_rollback(pg);
            cm_buf_wipe(&c.piece);
            cm_rpc_fail(call, "invalid", "offset %lld is past the attachment's %lld bytes",
                        c.offset, c.size);
            return;
        }
        if (rc != CM_OK)
            CM_WARN_ID(id, "attachment: the stored bytes could not be read: %s", cm_err_str(rc));
    }
    rc = finish_read(pg, rc, conflict == NULL, id, &a, &c, &out);
    if (rc != CM_OK) {
        cm_rpc_fail(call, "unavailable", "the attachment could not be read and audited");
        return;
    }
    if (conflict != NULL) {
        cm_rpc_fail(call, "conflict", "attachment %s: %s", id, conflict);
        return;
    }
    cm_rpc_reply_secret(call, out);
}

/* --- router.media.public ---------------------------------------------------------------- */

/* The one caller: NATS lets no other identity publish on this subject (proto/permissions.tsv);
 * checked here as well, so that a mistake in the table does not open it. */
#define LINK_READER "webhook-ingest"

/*
 * Finds the link of token (base64url, 32 bytes) that has not expired, counts a fetch when
 * offset is 0, and loads its attachment into a and its id into id (64 bytes). CM_NOTFOUND when
 * no such link is live; CM_INVALID when token is not one; else CM_OK or a pg error.
 */
static int load_link(struct cm_pg *pg, const char *token, long long offset, char *id,
                     struct att_row *a)
{
    unsigned char raw[32], hash[crypto_hash_sha256_BYTES];
    size_t len = 0;
    int rc;

    if (token == NULL || strlen(token) != 43 ||
        sodium_base642bin(raw, sizeof(raw), token, 43, NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        len != sizeof(raw))
        return CM_INVALID;
    crypto_hash_sha256(hash, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    {
        const char *values[2] = {(const char *)hash, offset == 0 ? "1" : "0"};
        const int lengths[2] = {(int)sizeof(hash), 0};
        const int formats[2] = {1, 0};
        rc = cm_pg_exec_params(pg,
                               "UPDATE media_links l SET fetches = l.fetches + $2::integer"
                               " FROM attachments a WHERE l.token_hash = $1"
                               " AND l.expires_at > now() AND a.id = l.attachment_id"
                               " RETURNING a.id, a.workspace_id, a.integration_id, a.type,"
                               " a.state, coalesce(a.content_type, '')",
                               2, values, lengths, formats, 0);
    }
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    memset(a, 0, sizeof(*a));
    snprintf(id, 64, "%s", cm_pg_value(pg, 0, 0));
    snprintf(a->ws, sizeof(a->ws), "%s", cm_pg_value(pg, 0, 1));
    snprintf(a->integration, sizeof(a->integration), "%s", cm_pg_value(pg, 0, 2));
    snprintf(a->type, sizeof(a->type), "%s", cm_pg_value(pg, 0, 3));
    snprintf(a->state, sizeof(a->state), "%s", cm_pg_value(pg, 0, 4));
    snprintf(a->content_type, sizeof(a->content_type), "%s", cm_pg_value(pg, 0, 5));
    return CM_OK;
}

static void on_media_public(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    struct cm_pg *pg = call->pg;
    struct att_row a;
    struct chunk c = {0};
    char id[64];
    cJSON *out = NULL;
    int rc;

    if (strcmp(call->caller, LINK_READER) != 0) {
        cm_rpc_fail(call, "denied", "only " LINK_READER " serves media links");
        return;
    }
    if (!offset_of(call, &c.offset))
        return;
    cm_buf_init(&c.piece);
    rc = cm_pg_begin(pg);
    if (rc == CM_OK)
        rc = load_link(pg, cm_rpc_str(call, "token"), c.offset, id, &a);
    if (rc == CM_INVALID || rc == CM_NOTFOUND) {
        cm_pg_rollback(pg);
        cm_rpc_fail(call, rc == CM_INVALID ? "invalid" : "not_found",
                    rc == CM_INVALID ? "token must be a media link's token"
                                     : "no such media link, or it expired");
        return;
    }
    if (rc == CM_OK && c.offset == 0)
        rc = cm_audit_add(pg, ROUTER_SERVICE, call->caller, "attachments.link_read", id);
    if (rc == CM_OK && strcmp(a.state, "stored") == 0)
        rc = read_chunk(r, pg, id, &a, &c);
    else if (rc == CM_OK)
        rc = CM_NOTFOUND;
    if (rc == CM_INVALID) {
        cm_pg_rollback(pg);
        cm_buf_wipe(&c.piece);
        cm_rpc_fail(call, "invalid", "offset %lld is past the file's end", c.offset);
        return;
    }
    rc = finish_read(pg, rc, true, id, &a, &c, &out);
    if (rc != CM_OK) {
        if (rc == CM_NOTFOUND || rc == CM_DENIED)
            cm_rpc_fail(call, "not_found", "the linked file is no longer held");
        else
            cm_rpc_fail(call, "unavailable", "the linked file could not be read");
        return;
    }
    cm_rpc_reply_secret(call, out);
}

void router_api_media_register(struct router *r)
{
    /* In the media lane: a slow S3 holds its workers, never the router's other requests. */
    cm_rpc_handle(r->media_rpc, "router.attachment.get", on_attachment_get, r);
    cm_rpc_handle(r->media_rpc, "router.media.public", on_media_public, r);
}
