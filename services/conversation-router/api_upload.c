/*
 * api_upload.c - a reply's file, over NATS in chunks (proto/router.md#routerupload).
 *
 * NATS carries at most 1 MiB a message, so a file reaches the router as router.upload chunks of
 * at most 512 KiB (base64 in JSON). The first chunk, without an upload_id, opens the upload:
 * it is checked as a reply would be (the actor an agent of the workspace, the integration
 * connected, the thread this app's) and against Meta's limit for the platform and type, so a
 * file Meta would refuse is refused before its bytes travel. Each chunk is sealed under the
 * integration's key at once (upload_parts); nothing of the file is in plaintext at rest.
 * router.reply with the upload_id then takes it whole (router_upload_attach()).
 *
 * The caller that opened an upload (its NATS identity, from the subject) and its actor are the
 * only ones that may add to it or send it. Chunks come in order: a chunk at an offset already
 * received, of the same length, is a retry and changes nothing; any other offset but the next is
 * invalid. An upload not sent within an hour is deleted when the next one opens.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/log.h"
#include "router.h"

/* Meta's limits, in bytes (decimal megabytes, as Meta writes them). Messenger's Attachment
 * Upload API: "up to 25 MB" for every type, images 8 MB (developers.facebook.com/docs/
 * messenger-platform/send-messages/saving-assets). Instagram's Send API (Instagram API with
 * Instagram Login, which fetches the file from a URL: proto/router.md#routermediapublic): images
 * (PNG, JPEG) 8 MB, video and audio 25 MB, and no other files (.../instagram/features/
 * send-message). */
#define MB         1000000LL
#define IMAGE_MAX  (8 * MB)
#define OTHER_MAX  (25 * MB)
#define TYPES      "image|video|audio|file"
#define EXPIRES_IN "1 hour"

int64_t router_upload_limit(const struct router *r, const char *platform, const char *type)
{
    bool ig = platform != NULL && strcmp(platform, "instagram") == 0;
    int64_t max;

    if (platform == NULL || type == NULL || (!ig && strcmp(platform, "messenger") != 0))
        return 0;
    if (strcmp(type, "image") == 0)
        max = IMAGE_MAX;
    else if (strcmp(type, "video") == 0 || strcmp(type, "audio") == 0)
        max = OTHER_MAX;
    else if (strcmp(type, "file") == 0 && !ig)
        max = OTHER_MAX;
    else
        return 0;
    return max < r->cfg->media_max_bytes ? max : r->cfg->media_max_bytes;
}

/* A MIME type as a client names it: type/subtype of printable ASCII, no spaces or quotes. */
static bool content_type_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n < 3 || n > 127 || strchr(s, '/') == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
            return false;
    }
    return true;
}

/*
 * Decodes the request's data (base64, absent or "" for none) into buf (cap bytes). Returns its
 * length, or -1 when it is not base64 or longer than cap.
 */
static long decode_data(const struct cm_rpc_call *call, unsigned char *buf, size_t cap)
{
    const char *b64 = cm_rpc_str(call, "data");
    size_t len = 0;

    if (cJSON_GetObjectItemCaseSensitive(call->req, "data") == NULL)
        return 0;
    if (b64 == NULL)
        return -1;
    if (*b64 == '\0')
        return 0;
    if (sodium_base642bin(buf, cap, b64, strlen(b64), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    return (long)len;
}

/* Seals and stores one chunk of upload id at offset, in the caller's transaction. */
static int store_part(struct router *r, struct cm_pg *pg, const char *ws, const char *integration,
                      const char *id, int64_t offset, const unsigned char *data, size_t len)
{
    char aad[128], off[24], lens[24];
    struct cm_buf sealed;
    int rc;

    snprintf(aad, sizeof(aad), "router.upload_parts:%s:%lld", id, (long long)offset);
    snprintf(off, sizeof(off), "%lld", (long long)offset);
    snprintf(lens, sizeof(lens), "%zu", len);
    cm_buf_init(&sealed);
    rc = router_seal(r, pg, ws, integration, aad, data, len, &sealed);
    if (rc == CM_OK) {
        const char *values[4] = {id, off, lens, sealed.data};
        const int lengths[4] = {0, 0, 0, (int)sealed.len};
        const int formats[4] = {0, 0, 0, 1};
        rc = cm_pg_exec_params(pg,
                               "INSERT INTO upload_parts (upload_id, \"offset\", len, sealed)"
                               " VALUES ($1, $2::bigint, $3::integer, $4)",
                               4, values, lengths, formats, 0);
    }
    if (rc == CM_OK) {
        const char *values[2] = {id, lens};
        rc = cm_pg_exec(pg, "UPDATE uploads SET received = received + $2::bigint WHERE id = $1", 2,
                        values);
    }
    cm_buf_cleanup(&sealed);
    return rc;
}

/* Marks upload id complete when final and every byte is in. */
static int mark_final(struct cm_pg *pg, const char *id)
{
    const char *params[1] = {id};

    return cm_pg_exec(pg, "UPDATE uploads SET complete = true WHERE id = $1 AND received = size", 1,
                      params);
}

static void reply_state(struct cm_rpc_call *call, const char *id, int64_t received, bool complete)
{
    cJSON *out = cJSON_CreateObject();

    cJSON_AddStringToObject(out, "upload_id", id);
    cJSON_AddNumberToObject(out, "received", (double)received);
    cJSON_AddBoolToObject(out, "complete", complete);
    cm_rpc_reply(call, out);
}

/* The first chunk: checks the reply's rules and the size, and opens the upload. */
static void open_upload(struct router *r, struct cm_rpc_call *call, const unsigned char *data,
                        size_t len, bool final)
{
    const char *type = cm_rpc_str(call, "type");
    const char *ctype = cm_rpc_str(call, "content_type");
    struct router_conv c;
    int64_t size = 0, offset = 0, limit;
    char id[40], sizes[24];
    int rc;

    if (!router_conv_load(call, "agent", true, &c))
        return;
    if (type == NULL || (strcmp(type, "image") != 0 && strcmp(type, "video") != 0 &&
                         strcmp(type, "audio") != 0 && strcmp(type, "file") != 0)) {
        cm_rpc_fail(call, "invalid", "type must be one of " TYPES);
        return;
    }
    if (!content_type_ok(ctype)) {
        cm_rpc_fail(call, "invalid", "content_type must be a MIME type such as image/png");
        return;
    }
    if (router_whole(call->req, "size", &size) != CM_OK || size == 0) {
        cm_rpc_fail(call, "invalid", "size must be the file's length in bytes, at least 1");
        return;
    }
    rc = router_whole(call->req, "offset", &offset);
    if (rc == CM_INVALID || (rc == CM_OK && offset != 0)) {
        cm_rpc_fail(call, "invalid", "the first chunk of an upload is at offset 0");
        return;
    }
    if (!router_conv_sendable(call, &c))
        return;
    limit = router_upload_limit(r, c.platform, type);
    if (limit == 0) {
        cm_rpc_fail(call, "refused",
                    "Meta's Instagram messages carry images, video and audio, not a %s;"
                    " send a PDF on Messenger, or a link in text",
                    type);
        return;
    }
    if (strcmp(c.platform, "instagram") == 0 && strcmp(type, "image") == 0 &&
        strcmp(ctype, "image/png") != 0 && strcmp(ctype, "image/jpeg") != 0) {
        cm_rpc_fail(call, "refused", "Meta's Instagram messages take images as PNG or JPEG, not %s",
                    ctype);
        return;
    }
    if (size > limit) {
        cm_rpc_fail(call, "refused",
                    "the file is %lld bytes; Meta takes at most %lld bytes for %s %s on %s",
                    (long long)size, (long long)limit, strcmp(type, "image") == 0 ? "an" : "a",
                    type, c.platform);
        return;
    }
    if ((int64_t)len > size) {
        cm_rpc_fail(call, "invalid", "the chunk is longer than size");
        return;
    }
    router_new_id("upl", id);
    snprintf(sizes, sizeof(sizes), "%lld", (long long)size);
    rc = cm_pg_begin(call->pg);
    /* Uploads never sent go when the next one opens. */
    if (rc == CM_OK)
        rc = cm_pg_exec(call->pg, "DELETE FROM uploads WHERE expires_at < now()", 0, NULL);
    if (rc == CM_OK) {
        const char *values[9] = {id,          c.id, c.ws,  c.integration, call->caller,
                                 call->actor, type, ctype, sizes};
        rc = cm_pg_exec(call->pg,
                        "INSERT INTO uploads (id, conversation_id, workspace_id, integration_id,"
                        " caller, actor, type, content_type, size, expires_at) VALUES ($1, $2, $3,"
                        " $4, $5, $6, $7, $8, $9::bigint, now() + interval '" EXPIRES_IN "')",
                        9, values);
    }
    if (rc == CM_OK && len > 0)
        rc = store_part(r, call->pg, c.ws, c.integration, id, 0, data, len);
    if (rc == CM_OK && final)
        rc = mark_final(call->pg, id);
    if (rc == CM_OK)
        rc = cm_audit_add(call->pg, ROUTER_SERVICE, call->actor, "upload.begin", c.id);
    if (rc == CM_OK)
        rc = cm_pg_commit(call->pg);
    if (rc != CM_OK) {
        cm_pg_rollback(call->pg);
        cm_rpc_fail(call, "unavailable", "the upload could not be stored");
        return;
    }
    reply_state(call, id, (int64_t)len, final && (int64_t)len == size);
}

/* An upload row as a chunk or a reply finds it (locked in the caller's transaction). */
struct upload_row {
    char conv[64], ws[128], integration[64], type[16], content_type[128];
    int64_t size, received;
    bool complete, expired, other_caller;
};

/* Loads and locks upload id; CM_NOTFOUND when there is none, else CM_OK or a pg error. */
static int load_upload(struct cm_rpc_call *call, const char *id, struct upload_row *u)
{
    const char *params[3] = {id, call->caller, call->actor};
    struct cm_pg *pg = call->pg;
    int rc;

    memset(u, 0, sizeof(*u));
    rc = cm_pg_exec(pg,
                    "SELECT conversation_id, workspace_id, integration_id, type, content_type,"
                    " size, received, complete, expires_at < now(), caller <> $2 OR actor <> $3"
                    " FROM uploads WHERE id = $1 FOR UPDATE",
                    3, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    snprintf(u->conv, sizeof(u->conv), "%s", cm_pg_value(pg, 0, 0));
    snprintf(u->ws, sizeof(u->ws), "%s", cm_pg_value(pg, 0, 1));
    snprintf(u->integration, sizeof(u->integration), "%s", cm_pg_value(pg, 0, 2));
    snprintf(u->type, sizeof(u->type), "%s", cm_pg_value(pg, 0, 3));
    snprintf(u->content_type, sizeof(u->content_type), "%s", cm_pg_value(pg, 0, 4));
    u->size = strtoll(cm_pg_value(pg, 0, 5), NULL, 10);
    u->received = strtoll(cm_pg_value(pg, 0, 6), NULL, 10);
    u->complete = strcmp(cm_pg_value(pg, 0, 7), "t") == 0;
    u->expired = strcmp(cm_pg_value(pg, 0, 8), "t") == 0;
    u->other_caller = strcmp(cm_pg_value(pg, 0, 9), "t") == 0;
    return CM_OK;
}

/* Is there a part of upload id at offset of len bytes (a chunk sent again)? */
static bool same_part(struct cm_pg *pg, const char *id, int64_t offset, size_t len)
{
    char off[24], lens[24];
    const char *params[3] = {id, off, lens};

    snprintf(off, sizeof(off), "%lld", (long long)offset);
    snprintf(lens, sizeof(lens), "%zu", len);
    return cm_pg_exec(pg,
                      "SELECT 1 FROM upload_parts WHERE upload_id = $1 AND \"offset\" = $2::bigint"
                      " AND len = $3::integer",
                      3, params) == CM_OK &&
           cm_pg_ntuples(pg) == 1;
}

/* A later chunk: appended in order; a repeat of one received is answered as it was. */
static void append(struct router *r, struct cm_rpc_call *call, const char *id,
                   const unsigned char *data, size_t len, bool final)
{
    struct upload_row u;
    int64_t offset = 0;
    const char *fail = NULL, *code = "invalid";
    char msg[160] = "";
    bool done = false;
    int rc;

    if (!router_valid_id(id, 64)) {
        cm_rpc_fail(call, "invalid", "upload_id must be an id from router.upload");
        return;
    }
    if (router_whole(call->req, "offset", &offset) != CM_OK) {
        cm_rpc_fail(call, "invalid", "offset must be the chunk's position in the file");
        return;
    }
    rc = cm_pg_begin(call->pg);
    if (rc == CM_OK)
        rc = load_upload(call, id, &u);
    if (rc == CM_NOTFOUND || (rc == CM_OK && (u.expired || u.other_caller))) {
        /* Another caller's upload is not told apart from none. */
        code = "not_found";
        snprintf(msg, sizeof(msg), "no upload %s (an upload expires an hour after it begins)", id);
        fail = msg;
    } else if (rc != CM_OK) {
        code = "unavailable";
        fail = "the upload could not be read";
    } else if (offset < u.received) {
        if (same_part(call->pg, id, offset, len)) {
            done = true; /* a retry of a chunk already kept */
        } else {
            snprintf(msg, sizeof(msg), "a chunk at offset %lld does not match the one received",
                     (long long)offset);
            fail = msg;
        }
    } else if (offset > u.received) {
        snprintf(msg, sizeof(msg), "chunk at offset %lld, but %lld bytes were received so far",
                 (long long)offset, (long long)u.received);
        fail = msg;
    } else if (u.complete) {
        code = "conflict";
        fail = "the upload is already complete";
    } else if (u.received + (int64_t)len > u.size) {
        fail = "the chunk goes past the upload's size";
    } else if (final && u.received + (int64_t)len != u.size) {
        snprintf(msg, sizeof(msg), "the final chunk leaves the upload at %lld of %lld bytes",
                 (long long)(u.received + (int64_t)len), (long long)u.size);
        fail = msg;
    } else if (len == 0 && !final) {
        fail = "a chunk carries data";
    } else {
        rc = len > 0 ? store_part(r, call->pg, u.ws, u.integration, id, offset, data, len) : CM_OK;
        if (rc == CM_OK && final)
            rc = mark_final(call->pg, id);
        if (rc == CM_OK)
            rc = cm_pg_commit(call->pg);
        if (rc != CM_OK) {
            code = "unavailable";
            fail = "the chunk could not be stored";
        } else {
            u.received += (int64_t)len;
            u.complete = final;
            reply_state(call, id, u.received, u.complete);
            return;
        }
    }
    cm_pg_rollback(call->pg);
    if (done)
        reply_state(call, id, u.received, u.complete);
    else
        cm_rpc_fail(call, code, "%s", fail);
}

static void on_upload(struct cm_rpc_call *call, void *arg)
{
    struct router *r = arg;
    const char *id = cm_rpc_str(call, "upload_id");
    bool final = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(call->req, "final"));
    unsigned char *data = cm_xmalloc(ROUTER_UPLOAD_CHUNK);
    long len = decode_data(call, data, ROUTER_UPLOAD_CHUNK);

    if (len < 0)
        cm_rpc_fail(call, "invalid", "data must be base64 of at most %d bytes",
                    ROUTER_UPLOAD_CHUNK);
    else if (cJSON_GetObjectItemCaseSensitive(call->req, "upload_id") == NULL)
        open_upload(r, call, data, (size_t)len, final);
    else
        append(r, call, id != NULL ? id : "", data, (size_t)len, final);
    sodium_memzero(data, ROUTER_UPLOAD_CHUNK);
    free(data);
}

/* Opens the parts of u (id) in order into out; CM_INVALID when they do not add up. */
static int assemble(struct router *r, struct cm_pg *pg, const char *id, const struct upload_row *u,
                    struct cm_buf *out)
{
    const char *params[1] = {id};
    struct cm_buf part;
    int rc, n;
    char **rows;

    rc = cm_pg_exec(pg,
                    "SELECT \"offset\", len, sealed FROM upload_parts WHERE upload_id = $1"
                    " ORDER BY \"offset\"",
                    1, params);
    if (rc != CM_OK)
        return rc;
    /* router_open() runs statements of its own (the key): the rows are copied first. */
    n = cm_pg_ntuples(pg);
    rows = cm_xcalloc((size_t)n * 3 + 1, sizeof(char *));
    for (int i = 0; i < n * 3; i++)
        rows[i] = cm_xstrdup(cm_pg_value(pg, i / 3, i % 3));
    cm_buf_init(&part);
    cm_buf_reserve(out, (size_t)u->size);
    for (int i = 0; i < n && rc == CM_OK; i++) {
        char aad[128];
        if (strtoll(rows[i * 3], NULL, 10) != (int64_t)out->len) {
            rc = CM_INVALID;
            break;
        }
        snprintf(aad, sizeof(aad), "router.upload_parts:%s:%s", id, rows[i * 3]);
        rc = router_open(r, pg, u->ws, u->integration, aad, rows[i * 3 + 2], &part);
        if (rc == CM_OK && (int64_t)part.len != strtoll(rows[i * 3 + 1], NULL, 10))
            rc = CM_INVALID;
        if (rc == CM_OK)
            cm_buf_append(out, part.data, part.len);
        sodium_memzero(part.data, part.len);
    }
    if (rc == CM_OK && (int64_t)out->len != u->size)
        rc = CM_INVALID;
    for (int i = 0; i < n * 3; i++)
        free(rows[i]);
    free(rows);
    cm_buf_wipe(&part);
    return rc;
}

int router_upload_attach(struct router *r, struct cm_rpc_call *call, const struct router_conv *c,
                         const char *upload_id, const char *msg, char type[16], char att[40],
                         char *why, size_t cap)
{
    struct upload_row u;
    struct cm_buf plain;
    char sizes[24];
    int rc;

    *att = '\0';
    rc = load_upload(call, upload_id, &u);

    if (rc == CM_NOTFOUND || (rc == CM_OK && (u.expired || u.other_caller))) {
        snprintf(why, cap, "no upload %s (an upload expires an hour after it begins)", upload_id);
        return CM_NOTFOUND;
    }
    if (rc != CM_OK)
        return rc;
    if (strcmp(u.conv, c->id) != 0) {
        snprintf(why, cap, "upload %s is for another conversation", upload_id);
        return CM_CONFLICT;
    }
    if (!u.complete) {
        snprintf(why, cap, "upload %s is not complete: %lld of %lld bytes received", upload_id,
                 (long long)u.received, (long long)u.size);
        return CM_CONFLICT;
    }
    cm_buf_init(&plain);
    rc = assemble(r, call->pg, upload_id, &u, &plain);
    if (rc == CM_INVALID)
        snprintf(why, cap, "upload %s's parts do not make up its file", upload_id);
    router_new_id("att", att);
    snprintf(sizes, sizeof(sizes), "%lld", (long long)u.size);
    /* The row first: the PostgreSQL store's media row refers to it. */
    if (rc == CM_OK) {
        const char *values[8] = {att,    msg,   c->id,         c->ws, c->integration,
                                 u.type, sizes, u.content_type};
        rc = cm_pg_exec(call->pg,
                        "INSERT INTO attachments (id, message_id, conversation_id, workspace_id,"
                        " integration_id, position, direction, type, state, size, content_type)"
                        " VALUES ($1, $2, $3, $4, $5, 0, 'out', $6, 'stored', $7::bigint, $8)",
                        8, values);
    }
    if (rc == CM_OK)
        rc = router_media_put(r, call->pg, c->ws, c->integration, att, plain.data, plain.len);
    /* Its parts go with it (ON DELETE CASCADE): the file is now only in the media store. */
    if (rc == CM_OK) {
        const char *values[1] = {upload_id};
        rc = cm_pg_exec(call->pg, "DELETE FROM uploads WHERE id = $1", 1, values);
    }
    if (rc == CM_OK)
        snprintf(type, 16, "%s", u.type);
    cm_buf_wipe(&plain);
    return rc;
}

void router_api_upload_register(struct router *r)
{
    /* In the media lane: a file's chunks do not queue the router's other requests. */
    cm_rpc_handle(r->media_rpc, "router.upload", on_upload, r);
}
