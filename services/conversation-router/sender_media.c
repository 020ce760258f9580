/*
 * sender_media.c - a reply's file to Messenger's Attachment Upload API.
 *
 * POST <META_GRAPH_URL>/<version>/<page-id>/message_attachments, multipart/form-data with two
 * fields, as Meta documents it (developers.facebook.com/docs/messenger-platform/reference/
 * attachment-upload-api):
 *   message   {"attachment":{"type":"image|video|audio|file","payload":{"is_reusable":false}}}
 *   filedata  the file's bytes, with its Content-Type (Meta wants an audio type for audio),
 *             read from the media store a segment at a time as libcurl sends them (sender.c)
 * Meta answers {"attachment_id": "..."}, which the Send API then carries in
 * message.attachment.payload.attachment_id (sender.c). The form goes through libcommon's client
 * (libcurl's MIME API) like any Graph call, so the token stays in a header, its proof in the
 * query, and neither (nor a byte of the file) in a log line.
 *
 * Instagram API with Instagram Login has no upload: its Send API takes
 * message.attachment.payload.url and Meta fetches the file from there
 * (developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/
 * messaging-api). router_media_link() makes that URL: a link on webhook-ingest's public address
 * whose token only this send holds; ingest serves it through router.media.public (api_media.c).
 */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/httpc.h"
#include "common/log.h"
#include "router.h"

/* A file name for the part: Meta shows it for a file, and some clients go by its extension. */
static const char *file_name(const char *content_type)
{
    static const struct {
        const char *type, *name;
    } names[] = {
        {"image/png", "attachment.png"},       {"image/jpeg", "attachment.jpg"},
        {"image/gif", "attachment.gif"},       {"video/mp4", "attachment.mp4"},
        {"video/quicktime", "attachment.mov"}, {"video/webm", "attachment.webm"},
        {"video/ogg", "attachment.ogg"},       {"audio/mp4", "attachment.m4a"},
        {"audio/aac", "attachment.aac"},       {"audio/wav", "attachment.wav"},
        {"audio/mpeg", "attachment.mp3"},      {"application/pdf", "attachment.pdf"},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(content_type, names[i].type) == 0)
            return names[i].name;
    }
    return "attachment";
}

int router_graph_upload(struct router *r, struct cm_httpc *http, const char *account,
                        const char *token, const char *proof, const char *type,
                        const char *content_type, size_t len, cm_httpc_read_fn read, void *read_arg,
                        const char *log_id, struct cm_httpc_response *resp, char *id, size_t cap)
{
    char message[96];
    struct cm_buf url, auth, log_url;
    struct cm_httpc_request req = {0};
    const char *headers[2];
    int rc;

    *id = '\0';
    cm_buf_init(&url);
    cm_buf_init(&auth);
    cm_buf_init(&log_url);
    cm_buf_printf(&url, "%s/%s/%s/message_attachments", router_graph_base(r, "messenger"),
                  r->cfg->graph_version, account);
    cm_buf_printf(&log_url, "%s", url.data);
    if (*proof != '\0')
        cm_buf_printf(&url, "?appsecret_proof=%s", proof);
    cm_buf_printf(&auth, "Authorization: Bearer %s", token);
    snprintf(message, sizeof(message),
             "{\"attachment\":{\"type\":\"%s\",\"payload\":{\"is_reusable\":false}}}", type);
    const struct cm_httpc_part parts[2] = {
        {.name = "message", .data = message, .len = strlen(message)},
        {.name = "filedata",
         .len = len,
         .read = read,
         .read_arg = read_arg,
         .filename = file_name(content_type),
         .content_type = content_type},
    };
    headers[0] = auth.data;
    headers[1] = NULL;
    req.method = "POST";
    req.url = url.data;
    req.log_url = log_url.data;
    req.headers = headers;
    req.parts = parts;
    req.nparts = 2;
    req.meta = true;
    req.max_attempts = 1; /* the sender decides about retries, through its queue */
    req.timeout_ms = r->cfg->media_timeout * 1000;
    req.deadline_ms = r->cfg->media_timeout * 1000 + 5000;
    req.log_id = log_id;
    rc = cm_httpc_do(http, &req, resp);
    if (rc == CM_OK && resp->status == 200) {
        cJSON *json = cJSON_ParseWithLength(resp->body.data, resp->body.len);
        const char *got = cJSON_GetStringValue(cJSON_GetObjectItem(json, "attachment_id"));
        if (got != NULL && strlen(got) < cap && router_valid_id(got, cap - 1))
            snprintf(id, cap, "%s", got);
        cJSON_Delete(json);
    }
    cm_buf_wipe(&auth);
    cm_buf_cleanup(&log_url);
    cm_buf_cleanup(&url);
    return rc;
}

/* How long Meta may fetch a link's file: the send that carries it, and Meta's retries of the
 * fetch. Each attempt of a send makes a link of its own. */
#define LINK_TTL "1 hour"
/* The token's random bytes: 256 bits, like a data key. */
#define LINK_TOKEN_LEN 32

int router_media_link(struct router *r, struct cm_pg *pg, const char *att_id, struct cm_buf *url)
{
    unsigned char token[LINK_TOKEN_LEN], hash[crypto_hash_sha256_BYTES];
    char b64[sodium_base64_ENCODED_LEN(LINK_TOKEN_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    const char *base = r->cfg->public_base_url;
    size_t base_len = strlen(base);
    int rc;

    randombytes_buf(token, sizeof(token));
    crypto_hash_sha256(hash, token, sizeof(token));
    /* Expired links go when the next one is made: they open nothing, and this keeps the
     * table to the links of the last hour. */
    rc = cm_pg_exec(pg, "DELETE FROM media_links WHERE expires_at < now()", 0, NULL);
    if (rc == CM_OK) {
        const char *values[2] = {(const char *)hash, att_id};
        const int lengths[2] = {(int)sizeof(hash), 0};
        const int formats[2] = {1, 0};
        rc = cm_pg_exec_params(pg,
                               "INSERT INTO media_links (token_hash, attachment_id, expires_at)"
                               " VALUES ($1, $2, now() + interval '" LINK_TTL "')",
                               2, values, lengths, formats, 0);
    }
    if (rc == CM_OK) {
        sodium_bin2base64(b64, sizeof(b64), token, sizeof(token),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (base_len > 0 && base[base_len - 1] == '/')
            base_len--;
        cm_buf_printf(url, "%.*s" ROUTER_MEDIA_LINK_PATH "?token=%s", (int)base_len, base, b64);
        sodium_memzero(b64, sizeof(b64));
    }
    sodium_memzero(token, sizeof(token));
    return rc;
}
