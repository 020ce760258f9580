/*
 * media.c - GET /api/v1/media?token=T: a reply's file, for Meta to fetch.
 *
 * Instagram API with Instagram Login takes a reply's file only as a URL that Meta fetches. The
 * router makes that URL, a link on this public address with a token only that send holds
 * (proto/router.md#routermediapublic), and keeps the file; ingest asks for it chunk by chunk
 * over router.media.public and answers it whole, with its Content-Length, once every chunk is
 * in. A token that is malformed, unknown or expired is answered 404 alike: the route is no
 * oracle. The router not answering is 503, which Meta's fetch and the router's retry of the
 * send survive.
 *
 * The token is the right to the file: it is never logged, and the answer says not to cache it
 * or guess its type. At most MEDIA_DOWNLOADS files are assembled at once (each is held in
 * memory, 25 MB at most); one more is answered 503 with Retry-After at once.
 */
#include <event2/http.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ask.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/metrics.h"
#include "ingest.h"

#define MEDIA_PATH "/api/v1/media"
/* A link's token: 32 random bytes in base64url without padding. */
#define TOKEN_LEN 43
/* Files assembled at once, and the largest taken (Meta's 25 MB, with room to spare). */
#define MEDIA_DOWNLOADS    4
#define MEDIA_MAX          (32 * 1024 * 1024)
#define MEDIA_RETRY_AFTER  "5"
#define MEDIA_CONTENT_TYPE 128

/* One file on its way: the HTTP request, the token, and the bytes so far. */
struct download {
    struct evhttp_request *req;
    char rid[17];
    char token[TOKEN_LEN + 1];
    char content_type[MEDIA_CONTENT_TYPE];
    long long size; /* -1 until the first chunk */
    struct cm_buf bytes;
};

static void ask_next(struct ingest *ing, struct download *d);

static bool token_ok(const char *t)
{
    if (t == NULL || strlen(t) != TOKEN_LEN)
        return false;
    for (const char *p = t; *p != '\0'; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    }
    return true;
}

/* A MIME type fit for a header: printable ASCII without quotes, and a '/'. */
static bool content_type_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n < 3 || n >= MEDIA_CONTENT_TYPE || strchr(s, '/') == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
            return false;
    }
    return true;
}

static void count(struct ingest *ing, const char *outcome)
{
    char labels[48];

    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    cm_metrics_inc(cm_metrics_counter(ing->svc.metrics, "ingest_media_links_total", labels,
                                      "Reply files fetched through a media link, by outcome"),
                   1);
}

static void download_free(struct ingest *ing, struct download *d)
{
    ing->media_downloads--;
    sodium_memzero(d->token, sizeof(d->token));
    cm_buf_wipe(&d->bytes);
    free(d);
}

static void fail(struct ingest *ing, struct download *d, int status, const char *outcome,
                 const char *why)
{
    if (status == 503) {
        CM_WARN_ID(d->rid, "media link: %s; answered 503", why);
        evhttp_add_header(evhttp_request_get_output_headers(d->req), "Retry-After",
                          MEDIA_RETRY_AFTER);
        cm_httpd_reply_error(ing->svc.public_httpd, d->req, 503, "the file is unavailable; retry");
    } else {
        CM_INFO_ID(d->rid, "media link: %s; answered %d", why, status);
        cm_httpd_reply_error(ing->svc.public_httpd, d->req, status, "no such file");
    }
    count(ing, outcome);
    download_free(ing, d);
}

/* Appends one chunk (a router.media.public result) to d; false with why when it does not fit. */
static bool take_chunk(struct download *d, const cJSON *r, bool *eof, const char **why)
{
    const char *data = cJSON_GetStringValue(cJSON_GetObjectItem(r, "data"));
    const char *ctype = cJSON_GetStringValue(cJSON_GetObjectItem(r, "content_type"));
    const cJSON *size = cJSON_GetObjectItem(r, "size"), *offset = cJSON_GetObjectItem(r, "offset");
    size_t max, len = 0;

    *eof = cJSON_IsTrue(cJSON_GetObjectItem(r, "eof"));
    if (data == NULL || !cJSON_IsNumber(size) || !cJSON_IsNumber(offset) ||
        (long long)offset->valuedouble != (long long)d->bytes.len || size->valuedouble < 0 ||
        size->valuedouble > MEDIA_MAX || (d->size >= 0 && size->valuedouble != (double)d->size)) {
        *why = "the router's chunk is outside the contract";
        return false;
    }
    if (d->size < 0) {
        if (!content_type_ok(ctype)) {
            *why = "the router's content type is not one";
            return false;
        }
        snprintf(d->content_type, sizeof(d->content_type), "%s", ctype);
        d->size = (long long)size->valuedouble;
        cm_buf_reserve(&d->bytes, (size_t)d->size + 1);
    }
    max = (size_t)d->size - d->bytes.len;
    if (sodium_base642bin((unsigned char *)d->bytes.data + d->bytes.len, max, data, strlen(data),
                          NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        *why = "the router's chunk is not base64 or longer than the file";
        return false;
    }
    d->bytes.len += len;
    if (*eof && (long long)d->bytes.len != d->size) {
        *why = "the router's chunks do not add up to the file";
        return false;
    }
    if (!*eof && len == 0) {
        *why = "the router sent an empty chunk before the end";
        return false;
    }
    return true;
}

static void answered(struct ingest *ing, void *arg, const struct ingest_answer *a)
{
    struct download *d = arg;
    struct evkeyvalq *h;
    const char *why = NULL;
    bool eof = false;

    if (a->rc == CM_NOTFOUND || a->rc == CM_INVALID) {
        fail(ing, d, 404, "not_found", a->message);
        return;
    }
    if (a->rc != CM_OK) {
        fail(ing, d, 503, "unavailable", a->message);
        return;
    }
    if (!take_chunk(d, a->result, &eof, &why)) {
        fail(ing, d, 503, "unavailable", why);
        return;
    }
    if (!eof) {
        ask_next(ing, d);
        return;
    }
    h = evhttp_request_get_output_headers(d->req);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Content-Disposition", "attachment");
    cm_httpd_reply(ing->svc.public_httpd, d->req, 200, d->content_type, d->bytes.data,
                   d->bytes.len);
    CM_INFO_ID(d->rid, "media link: %zu bytes served", d->bytes.len);
    count(ing, "served");
    download_free(ing, d);
}

/* Asks the router for the chunk at the end of what d holds. */
static void ask_next(struct ingest *ing, struct download *d)
{
    cJSON *body = cJSON_CreateObject();
    char *text;

    cJSON_AddStringToObject(body, "token", d->token);
    cJSON_AddNumberToObject(body, "offset", (double)d->bytes.len);
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    ingest_ask(ing, INGEST_LANE_MEDIA, "router.media.public", text, answered, d);
}

static void on_media(struct evhttp_request *req, void *arg)
{
    struct ingest *ing = arg;
    char *token;
    struct download *d;
    unsigned char raw[8];

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        cm_httpd_reply_error(ing->svc.public_httpd, req, 405, "use GET");
        return;
    }
    token = cm_httpd_query(req, "token");
    if (!token_ok(token)) {
        if (token != NULL)
            sodium_memzero(token, strlen(token));
        free(token);
        count(ing, "not_found");
        cm_httpd_reply_error(ing->svc.public_httpd, req, 404, "no such file");
        return;
    }
    if (ing->media_downloads >= MEDIA_DOWNLOADS) {
        sodium_memzero(token, strlen(token));
        free(token);
        count(ing, "busy");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", MEDIA_RETRY_AFTER);
        cm_httpd_reply_error(ing->svc.public_httpd, req, 503, "busy; retry");
        return;
    }
    d = cm_xcalloc(1, sizeof(*d));
    d->req = req;
    d->size = -1;
    cm_buf_init(&d->bytes);
    snprintf(d->token, sizeof(d->token), "%s", token);
    sodium_memzero(token, strlen(token));
    free(token);
    cm_crypto_random(raw, sizeof(raw));
    cm_hex_encode(raw, sizeof(raw), d->rid);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", d->rid);
    ing->media_downloads++;
    ask_next(ing, d);
}

void ingest_media_register(struct ingest *ing)
{
    cm_httpd_route(ing->svc.public_httpd, MEDIA_PATH, on_media, ing);
}
