/*
 * fakemeta_upload.c - Messenger's Attachment Upload API in the Meta stand-in (see fakemeta.h),
 * and the Send API's check of an attachment it carries.
 *
 * POST /vX/<page-id>/message_attachments (Facebook host, the Page's token as Bearer or
 * access_token, with its appsecret_proof), multipart/form-data as Meta documents it
 * (developers.facebook.com/docs/messenger-platform/reference/attachment-upload-api):
 *   message   {"attachment": {"type": "image|video|audio|file", "payload": {"is_reusable": b}}}
 *   filedata  the file, with its Content-Type
 * -> 200 {"attachment_id": "<digits>"}.
 *
 * Meta's answers, as its documents give them:
 *   a file over the type's limit: 400, code 100, subcode 2018109, "Attachment size exceeds
 *     allowable limit" (the Send API's error codes, "Limit Errors":
 *     developers.facebook.com/docs/messenger-platform/reference/send-api/error-codes). The
 *     limits: 25 MB for every type, images 8 MB (developers.facebook.com/docs/
 *     messenger-platform/send-messages/saving-assets; Instagram's table of the same API:
 *     .../instagram/features/attachment-upload); fakemeta_set_upload_limit() lowers them;
 *   no message or filedata, an unknown type, or audio without an audio Content-Type (which Meta
 *     requires): 400, code 100, subcode 2018047, "Upload attachment failure." (the same page);
 *   not multipart at all: 400, code 100, "(#100) Upload attachment failure." without subcode;
 *   fakemeta_fail_uploads(): 500, code 2, "An unexpected error has occurred. Please retry your
 *     request later." (the common error codes page), a passing failure.
 * The Send API (fakemeta.c calls fm_upload_send()) takes message.attachment with
 * payload.attachment_id of an upload this stand-in accepted for that Page, or with payload.url,
 * and a message with text and an attachment together not at all: code 100 (the wording of these
 * two is the stand-in's own; Meta documents neither).
 *
 * payload.url is how Instagram API with Instagram Login sends a file (.../instagram-platform/
 * instagram-api-with-instagram-login/messaging-api): Meta fetches the URL while it takes the
 * message, as this stand-in does (a GET, 30 s at most), and keeps what it got like an upload
 * (fakemeta_upload_get(), attachment id "url-<n>"). Instagram takes image, video and audio
 * (images 8 MB, the others 25 MB); a "file" is refused: code 100, "(#100) Invalid parameter".
 * A fetch that does not answer 200 is Messenger's 400, code 100, subcode 2018008, "Failed to
 * fetch the file from the url"; a file over the limit, subcode 2018109 as above.
 */
#include "fakemeta.h"
#include "fakemeta_int.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/mem.h"
#include "harness.h"

#define MAX_UPLOADS 64
#define MB          1000000LL

struct fm_uploads {
    int n;
    long long limit;   /* 0: Meta's */
    int failing;       /* the next uploads to answer 500 (a passing failure) */
    int fetch_failing; /* the next payload.url sends whose fetch fails (fakemeta_fail_fetches) */
    struct {
        char account[80];
        char id[40];
        char type[16];
        char content_type[128];
        unsigned char *data;
        size_t len;
    } u[MAX_UPLOADS];
};

/* Created on first use; under m->lock. */
static struct fm_uploads *uploads_locked(struct fakemeta *m)
{
    if (m->uploads == NULL)
        m->uploads = cm_xcalloc(1, sizeof(*m->uploads));
    return m->uploads;
}

/* One part of a multipart body: borrowed pointers into it. */
struct part {
    char name[64];
    char content_type[128];
    const char *data;
    size_t len;
};

/* The value of param (name="value" or name=value) in a header line's text, into out. */
static bool param(const char *line, size_t n, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);

    for (size_t i = 0; i + klen + 1 < n; i++) {
        const char *v;
        size_t len = 0;
        if (strncasecmp(line + i, key, klen) != 0 || line[i + klen] != '=' ||
            (i > 0 && line[i - 1] != ' ' && line[i - 1] != ';'))
            continue;
        v = line + i + klen + 1;
        if (*v == '"') {
            v++;
            while (v + len < line + n && v[len] != '"')
                len++;
        } else {
            while (v + len < line + n && v[len] != ';' && v[len] != ' ' && v[len] != '\r')
                len++;
        }
        snprintf(out, cap, "%.*s", (int)len, v);
        return true;
    }
    return false;
}

/*
 * Splits body (len bytes) on boundary into parts (at most max); returns how many, or -1 when the
 * body is not multipart of that boundary (RFC 7578: "--boundary" CRLF headers CRLF CRLF data,
 * each part ended by CRLF "--boundary", the last by "--").
 */
static int split(const char *body, size_t len, const char *boundary, struct part *parts, int max)
{
    char delim[160];
    size_t dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
    const char *p = body, *end = body + len;
    int n = 0;

    /* The first delimiter has no CRLF before it. */
    if (len < dlen - 2 || memcmp(p, delim + 2, dlen - 2) != 0)
        return -1;
    p += dlen - 2;
    for (;;) {
        const char *hdr_end, *next, *line;
        struct part *pt;
        if (end - p >= 2 && memcmp(p, "--", 2) == 0)
            return n; /* the closing delimiter */
        if (end - p < 2 || memcmp(p, "\r\n", 2) != 0 || n == max)
            return -1;
        p += 2;
        hdr_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (hdr_end == NULL)
            return -1;
        pt = &parts[n++];
        memset(pt, 0, sizeof(*pt));
        for (line = p; line < hdr_end;) {
            const char *eol = memmem(line, (size_t)(hdr_end + 2 - line), "\r\n", 2);
            size_t ll = (size_t)(eol - line);
            if (ll > 20 && strncasecmp(line, "Content-Disposition:", 20) == 0)
                param(line, ll, "name", pt->name, sizeof(pt->name));
            else if (ll > 13 && strncasecmp(line, "Content-Type:", 13) == 0)
                snprintf(pt->content_type, sizeof(pt->content_type), "%.*s", (int)(ll - 14),
                         line + 14);
            line = eol + 2;
        }
        pt->data = hdr_end + 4;
        next = memmem(pt->data, (size_t)(end - pt->data), delim, dlen);
        if (next == NULL)
            return -1;
        pt->len = (size_t)(next - pt->data);
        p = next + dlen;
    }
}

static long long limit_of(struct fakemeta *m, const char *type)
{
    long long meta = strcmp(type, "image") == 0 ? 8 * MB : 25 * MB, lowered;

    pthread_mutex_lock(&m->lock);
    lowered = uploads_locked(m)->limit;
    pthread_mutex_unlock(&m->lock);
    return lowered > 0 && lowered < meta ? lowered : meta;
}

void fm_upload(struct fakemeta *m, const char *account, const struct fakehttp_request *req,
               struct fakehttp_response *resp)
{
    const char *auth = fakehttp_header(req, "Authorization");
    const char *ctype = fakehttp_header(req, "Content-Type");
    char *query_token = fakehttp_query_param(req, "access_token");
    const char *token = auth != NULL && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : query_token;
    struct part parts[8];
    const struct part *message = NULL, *file = NULL;
    char boundary[128] = "", ok[128];
    cJSON *msg = NULL;
    const char *type;
    struct token t;
    bool fail;
    int n;

    if (!fm_account_token(m, FAKEMETA_FACEBOOK, token, 1u << FAKEMETA_PAGE, account, req, resp, &t))
        goto done;
    fm_usage_headers(m, resp, account, "messenger");
    if (ctype == NULL || strncasecmp(ctype, "multipart/form-data", 19) != 0 ||
        !param(ctype, strlen(ctype), "boundary", boundary, sizeof(boundary)) ||
        (n = split(req->body, req->body_len, boundary, parts, 8)) < 0) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Upload attachment failure.");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(parts[i].name, "message") == 0)
            message = &parts[i];
        else if (strcmp(parts[i].name, "filedata") == 0)
            file = &parts[i];
    }
    msg = message != NULL ? cJSON_ParseWithLength(message->data, message->len) : NULL;
    type =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(msg, "attachment"), "type"));
    if (file == NULL || type == NULL ||
        !cJSON_IsObject(cJSON_GetObjectItem(cJSON_GetObjectItem(msg, "attachment"), "payload")) ||
        (strcmp(type, "image") != 0 && strcmp(type, "video") != 0 && strcmp(type, "audio") != 0 &&
         strcmp(type, "file") != 0) ||
        (strcmp(type, "audio") == 0 && strncasecmp(file->content_type, "audio/", 6) != 0)) {
        fakehttp_meta_error(resp, 400, 100, 2018047, "Upload attachment failure.");
        goto done;
    }
    pthread_mutex_lock(&m->lock);
    fail = uploads_locked(m)->failing > 0 && uploads_locked(m)->failing-- > 0;
    pthread_mutex_unlock(&m->lock);
    if (fail) {
        /* Meta's passing failure: code 2, "retry your request later" (the error codes page). */
        fakehttp_meta_error(resp, 500, 2, 0,
                            "An unexpected error has occurred. Please retry your request later.");
        goto done;
    }
    if ((long long)file->len > limit_of(m, type)) {
        fakehttp_meta_error(resp, 400, 100, 2018109, "Attachment size exceeds allowable limit");
        goto done;
    }
    pthread_mutex_lock(&m->lock);
    {
        struct fm_uploads *u = uploads_locked(m);
        if (u->n < MAX_UPLOADS) {
            int i = u->n++;
            snprintf(u->u[i].account, sizeof(u->u[i].account), "%s", account);
            snprintf(u->u[i].id, sizeof(u->u[i].id), "18570000000%05d", i + 1);
            snprintf(u->u[i].type, sizeof(u->u[i].type), "%s", type);
            snprintf(u->u[i].content_type, sizeof(u->u[i].content_type), "%s", file->content_type);
            u->u[i].data = cm_xmalloc(file->len + 1);
            memcpy(u->u[i].data, file->data, file->len);
            u->u[i].len = file->len;
            snprintf(ok, sizeof(ok), "{\"attachment_id\":\"%s\"}", u->u[i].id);
        } else {
            ok[0] = '\0';
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (ok[0] == '\0')
        fakehttp_meta_error(resp, 400, 2, 0, "An unexpected error has occurred.");
    else
        fakehttp_json(resp, 200, ok);
done:
    cJSON_Delete(msg);
    free(query_token);
}

/* The Content-Type of an answer's headers (its raw text) into out, or "". */
static void content_type_of(const struct cm_buf *headers, char *out, size_t cap)
{
    const char *h = headers->data != NULL ? strcasestr(headers->data, "\ncontent-type:") : NULL;
    size_t n = 0;

    *out = '\0';
    if (h == NULL)
        return;
    h += 14;
    while (*h == ' ')
        h++;
    while (h[n] != '\0' && h[n] != '\r' && h[n] != '\n' && h[n] != ';')
        n++;
    snprintf(out, cap, "%.*s", (int)n, h);
}

/* Send API with payload.url: Meta fetches the file first. True when it refused the message. */
static bool fetch_send(struct fakemeta *m, const char *account, bool ig, const char *type,
                       const char *url, struct fakehttp_response *resp)
{
    struct th_resp got;
    char ctype[128];
    bool refused = true;

    if (type == NULL || (strcmp(type, "image") != 0 && strcmp(type, "video") != 0 &&
                         strcmp(type, "audio") != 0 && (ig || strcmp(type, "file") != 0))) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Invalid parameter");
        return true;
    }
    pthread_mutex_lock(&m->lock);
    refused = uploads_locked(m)->fetch_failing > 0 && uploads_locked(m)->fetch_failing-- > 0;
    pthread_mutex_unlock(&m->lock);
    if (refused)
        memset(&got, 0, sizeof(got)); /* as if the URL did not answer */
    else
        th_http(&got, "GET", url, NULL, NULL, 0);
    refused = true;
    content_type_of(&got.headers, ctype, sizeof(ctype));
    if (got.code != 200) {
        fakehttp_meta_error(resp, 400, 100, 2018008, "Failed to fetch the file from the url");
    } else if ((long long)got.body.len > limit_of(m, type)) {
        fakehttp_meta_error(resp, 400, 100, 2018109, "Attachment size exceeds allowable limit");
    } else {
        pthread_mutex_lock(&m->lock);
        struct fm_uploads *u = uploads_locked(m);
        if (u->n < MAX_UPLOADS) {
            int i = u->n++;
            snprintf(u->u[i].account, sizeof(u->u[i].account), "%s", account);
            snprintf(u->u[i].id, sizeof(u->u[i].id), "url-%d", i + 1);
            snprintf(u->u[i].type, sizeof(u->u[i].type), "%s", type);
            snprintf(u->u[i].content_type, sizeof(u->u[i].content_type), "%s", ctype);
            u->u[i].data = cm_xmalloc(got.body.len + 1);
            memcpy(u->u[i].data, got.body.data, got.body.len);
            u->u[i].len = got.body.len;
            refused = false;
        }
        pthread_mutex_unlock(&m->lock);
        if (refused)
            fakehttp_meta_error(resp, 400, 2, 0, "An unexpected error has occurred.");
    }
    th_resp_cleanup(&got);
    return refused;
}

bool fm_upload_send(struct fakemeta *m, const char *account, bool ig, const cJSON *body,
                    struct fakehttp_response *resp)
{
    const cJSON *message = cJSON_GetObjectItem(body, "message");
    const cJSON *att = cJSON_GetObjectItem(message, "attachment");
    const cJSON *payload = cJSON_GetObjectItem(att, "payload");
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(payload, "attachment_id"));
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItem(payload, "url"));
    bool known = false;

    if (att == NULL)
        return false;
    if (cJSON_GetObjectItem(message, "text") != NULL) {
        fakehttp_meta_error(resp, 400, 100, 0,
                            "(#100) A message has either text or an attachment, not both");
        return true;
    }
    if (url != NULL)
        return fetch_send(m, account, ig, cJSON_GetStringValue(cJSON_GetObjectItem(att, "type")),
                          url, resp);
    pthread_mutex_lock(&m->lock);
    for (int i = 0; id != NULL && m->uploads != NULL && i < m->uploads->n; i++)
        known = known || (strcmp(m->uploads->u[i].id, id) == 0 &&
                          strcmp(m->uploads->u[i].account, account) == 0);
    pthread_mutex_unlock(&m->lock);
    if (!known) {
        fakehttp_meta_error(resp, 400, 100, 0, "(#100) Invalid attachment_id");
        return true;
    }
    return false;
}

void fakemeta_fail_fetches(struct fakemeta *m, int count)
{
    pthread_mutex_lock(&m->lock);
    uploads_locked(m)->fetch_failing = count;
    pthread_mutex_unlock(&m->lock);
}

void fm_uploads_free(struct fakemeta *m)
{
    if (m->uploads == NULL)
        return;
    for (int i = 0; i < m->uploads->n; i++)
        free(m->uploads->u[i].data);
    free(m->uploads);
    m->uploads = NULL;
}

void fakemeta_set_upload_limit(struct fakemeta *m, long long bytes)
{
    pthread_mutex_lock(&m->lock);
    uploads_locked(m)->limit = bytes;
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_fail_uploads(struct fakemeta *m, int count)
{
    pthread_mutex_lock(&m->lock);
    uploads_locked(m)->failing = count;
    pthread_mutex_unlock(&m->lock);
}

int fakemeta_uploads(struct fakemeta *m)
{
    int n;

    pthread_mutex_lock(&m->lock);
    n = m->uploads != NULL ? m->uploads->n : 0;
    pthread_mutex_unlock(&m->lock);
    return n;
}

unsigned char *fakemeta_upload_get(struct fakemeta *m, int i, size_t *len, char id[40],
                                   char type[16], char content_type[128])
{
    unsigned char *copy = NULL;

    pthread_mutex_lock(&m->lock);
    if (m->uploads != NULL && i >= 0 && i < m->uploads->n) {
        *len = m->uploads->u[i].len;
        copy = cm_xmalloc(*len + 1);
        memcpy(copy, m->uploads->u[i].data, *len);
        snprintf(id, 40, "%s", m->uploads->u[i].id);
        snprintf(type, 16, "%s", m->uploads->u[i].type);
        snprintf(content_type, 128, "%s", m->uploads->u[i].content_type);
    }
    pthread_mutex_unlock(&m->lock);
    return copy;
}
