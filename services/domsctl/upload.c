/*
 * upload.c - a reply's file, sent to the router in chunks (see upload.h).
 *
 * NATS carries at most 1 MiB a message: the file goes as router.upload requests of 512 KiB each
 * (base64 in JSON). The first request carries no bytes: it asks whether the reply may carry
 * this file at all (the platform, Meta's size limit for the type, the integration), so that a
 * refusal costs nothing. A chunk whose answer does not come is sent again once: the router
 * takes a chunk it already has as the same one.
 */
#include "upload.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/nats.h"

#define CHUNK (512 * 1024)

/* The type of the file from its first bytes (n of them), or NULL when they say nothing. */
static bool sniff(const unsigned char *b, size_t n, struct domsctl_file *f)
{
#define IS(off, s) (n >= (off) + sizeof(s) - 1 && memcmp(b + (off), s, sizeof(s) - 1) == 0)
    if (IS(0, "\x89PNG\r\n\x1a\n"))
        f->type = "image", f->content_type = "image/png";
    else if (IS(0, "\xff\xd8\xff"))
        f->type = "image", f->content_type = "image/jpeg";
    else if (IS(0, "GIF87a") || IS(0, "GIF89a"))
        f->type = "image", f->content_type = "image/gif";
    else if (IS(4, "ftypM4A"))
        f->type = "audio", f->content_type = "audio/mp4";
    else if (IS(4, "ftypqt"))
        f->type = "video", f->content_type = "video/quicktime";
    else if (IS(4, "ftyp"))
        f->type = "video", f->content_type = "video/mp4";
    else if (IS(0, "\x1a\x45\xdf\xa3"))
        f->type = "video", f->content_type = "video/webm";
    else if (IS(0, "OggS"))
        f->type = "video", f->content_type = "video/ogg";
    else if (IS(0, "RIFF") && IS(8, "WAVE"))
        f->type = "audio", f->content_type = "audio/wav";
    else if (IS(0, "ID3"))
        f->type = "audio", f->content_type = "audio/mpeg";
    else if (n >= 2 && b[0] == 0xff && (b[1] & 0xf6) == 0xf0)
        f->type = "audio", f->content_type = "audio/aac"; /* ADTS */
    else if (IS(0, "%PDF-"))
        f->type = "file", f->content_type = "application/pdf";
    else
        return false;
#undef IS
    return true;
}

/* The type from the name's extension; a file of application/octet-stream otherwise. */
static void by_extension(const char *path, struct domsctl_file *f)
{
    static const struct {
        const char *ext, *type, *content_type;
    } exts[] = {
        {"png", "image", "image/png"},      {"jpg", "image", "image/jpeg"},
        {"jpeg", "image", "image/jpeg"},    {"gif", "image", "image/gif"},
        {"mp4", "video", "video/mp4"},      {"mov", "video", "video/quicktime"},
        {"webm", "video", "video/webm"},    {"ogg", "video", "video/ogg"},
        {"m4a", "audio", "audio/mp4"},      {"aac", "audio", "audio/aac"},
        {"wav", "audio", "audio/wav"},      {"mp3", "audio", "audio/mpeg"},
        {"pdf", "file", "application/pdf"},
    };
    const char *dot = strrchr(path, '.');

    f->type = "file";
    f->content_type = "application/octet-stream";
    if (dot == NULL || strchr(dot, '/') != NULL)
        return;
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        if (strcasecmp(dot + 1, exts[i].ext) == 0) {
            f->type = exts[i].type;
            f->content_type = exts[i].content_type;
            return;
        }
    }
}

int domsctl_file_open(struct domsctl_file *f, const char *path, char *err, size_t cap)
{
    unsigned char head[16];
    struct stat sb;
    size_t n;

    memset(f, 0, sizeof(*f));
    f->fp = fopen(path, "rb");
    if (f->fp == NULL) {
        snprintf(err, cap, "cannot read --file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f->fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, cap, "--file %s is not a regular file", path);
        domsctl_file_close(f);
        return -1;
    }
    if (sb.st_size == 0) {
        snprintf(err, cap, "--file %s is empty", path);
        domsctl_file_close(f);
        return -1;
    }
    f->size = (long long)sb.st_size;
    n = fread(head, 1, sizeof(head), f->fp);
    if (ferror(f->fp) || fseek(f->fp, 0, SEEK_SET) != 0) {
        snprintf(err, cap, "cannot read --file %s: %s", path, strerror(errno));
        domsctl_file_close(f);
        return -1;
    }
    if (!sniff(head, n, f))
        by_extension(path, f);
    return 0;
}

void domsctl_file_close(struct domsctl_file *f)
{
    if (f->fp != NULL)
        fclose(f->fp);
    f->fp = NULL;
}

/*
 * One router.upload request: body to the router, once more when no answer came. Returns the
 * result (a new object: free it), or NULL with why.
 */
static cJSON *chunk(natsConnection *nc, const char *identity, const cJSON *body, long timeout_ms,
                    char *why, size_t cap)
{
    char *text = cJSON_PrintUnformatted(body);
    natsMsg *reply = NULL;
    cJSON *parsed = NULL, *result = NULL;
    natsStatus s = NATS_TIMEOUT;

    for (int attempt = 0; attempt < 2 && s == NATS_TIMEOUT; attempt++)
        s = cm_nats_request_as(&reply, nc, identity, "router.upload", text, timeout_ms);
    cJSON_free(text);
    if (s == NATS_NO_RESPONDERS) {
        snprintf(why, cap, "no conversation-router is answering on router.upload (is it running?)");
        return NULL;
    }
    if (s != NATS_OK) {
        snprintf(why, cap, "conversation-router did not answer on router.upload: %s",
                 natsStatus_GetText(s));
        return NULL;
    }
    parsed = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    if (cJSON_GetObjectItemCaseSensitive(parsed, "error") != NULL) {
        const char *m = cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetObjectItem(parsed, "error"), "message"));
        snprintf(why, cap, "%s", m != NULL ? m : "refused");
    } else if ((result = cJSON_DetachItemFromObject(parsed, "result")) == NULL ||
               cJSON_GetStringValue(cJSON_GetObjectItem(result, "upload_id")) == NULL) {
        snprintf(why, cap, "conversation-router answered router.upload without an upload_id");
        cJSON_Delete(result);
        result = NULL;
    }
    cJSON_Delete(parsed);
    return result;
}

int domsctl_file_send(natsConnection *nc, const char *identity, struct domsctl_file *f, cJSON *req,
                      long timeout_ms, char *why, size_t cap)
{
    unsigned char *buf = malloc(CHUNK);
    char *b64 = malloc(sodium_base64_ENCODED_LEN(CHUNK, sodium_base64_VARIANT_ORIGINAL));
    cJSON *body = cJSON_CreateObject(), *result;
    char id[80] = "";
    long long offset = 0;
    int rc = -1;

    if (buf == NULL || b64 == NULL)
        abort();
    cJSON_AddItemToObject(body, "actor", cJSON_Duplicate(cJSON_GetObjectItem(req, "actor"), true));
    cJSON_AddItemToObject(body, "conversation_id",
                          cJSON_Duplicate(cJSON_GetObjectItem(req, "conversation_id"), true));
    cJSON_AddNumberToObject(body, "offset", 0);
    cJSON_AddNumberToObject(body, "size", (double)f->size);
    cJSON_AddStringToObject(body, "type", f->type);
    cJSON_AddStringToObject(body, "content_type", f->content_type);
    cJSON_AddFalseToObject(body, "final");
    /* Opened without a byte: a refusal comes before the file travels. */
    result = chunk(nc, identity, body, timeout_ms, why, cap);
    if (result == NULL)
        goto done;
    snprintf(id, sizeof(id), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(result, "upload_id")));
    cJSON_Delete(result);
    cJSON_Delete(body);
    body = NULL;
    while (offset < f->size) {
        size_t n = fread(buf, 1, CHUNK, f->fp);
        if (n == 0) {
            snprintf(why, cap, "the file ended after %lld of %lld bytes (it changed while read)",
                     offset, f->size);
            goto done;
        }
        sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(CHUNK, sodium_base64_VARIANT_ORIGINAL),
                          buf, n, sodium_base64_VARIANT_ORIGINAL);
        body = cJSON_CreateObject();
        cJSON_AddItemToObject(body, "actor",
                              cJSON_Duplicate(cJSON_GetObjectItem(req, "actor"), true));
        cJSON_AddStringToObject(body, "upload_id", id);
        cJSON_AddNumberToObject(body, "offset", (double)offset);
        cJSON_AddStringToObject(body, "data", b64);
        cJSON_AddBoolToObject(body, "final", offset + (long long)n >= f->size);
        result = chunk(nc, identity, body, timeout_ms, why, cap);
        cJSON_Delete(body);
        body = NULL;
        if (result == NULL)
            goto done;
        cJSON_Delete(result);
        offset += (long long)n;
    }
    cJSON_AddStringToObject(req, "upload_id", id);
    rc = 0;
done:
    cJSON_Delete(body);
    sodium_memzero(buf, CHUNK);
    free(buf);
    free(b64);
    return rc;
}
