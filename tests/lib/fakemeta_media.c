/*
 * fakemeta_media.c - Meta's CDN and the Graph API's message attachments (see fakemeta.h):
 *   GET /cdn/v/t1.15752-9/<name>_n.<ext>?_nc_cat=..&gen=<g>&oh=..&oe=..   the CDN: the bytes,
 *        with their Content-Type and Content-Length; a URL whose signature expired is 403
 *        "URL signature expired" (text/plain), as Meta's CDN answers; an unknown one 404.
 *   GET /ig_messaging_cdn/?asset_id=<name>&signature=..   Meta's lookaside URL (Instagram's
 *        attachments): 302 to the CDN URL of the current signature.
 *   GET /vX/<mid>/attachments (graph.facebook.com, Page token)
 *        -> {"data": [{"id", "mime_type", "name", "size", "image_data": {"url", "preview_url",
 *           "width", "height"}} | {... "video_data": {"url", "preview_url", ...}} |
 *           {... "file_url"}], "paging": {...}}
 *   GET /vX/<mid>?fields=attachments (graph.instagram.com, Instagram token)
 *        -> {"attachments": {"data": [...]}, "id": "<mid>"}
 * each with appsecret_proof, the URLs fresh (a new signature). A message Meta does not know
 * (never registered, or forgotten) is code 100 subcode 33, as Graph answers for a deleted
 * object. Handlers run on the listeners' threads; the state is guarded by m->lock.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakemeta.h"
#include "fakemeta_int.h"

#define MAX_OBJECTS      64
#define MAX_MESSAGES     64
#define MAX_PER_MSG      4
#define CDN_PREFIX       "/cdn/v/t1.15752-9/"
#define LOOKASIDE_PREFIX "/ig_messaging_cdn/"

struct fm_object {
    char name[64];
    char content_type[64];
    unsigned char *data;
    size_t len;
    int gen;        /* the signature of the URL handed out last */
    int valid_from; /* URLs of an older gen are expired */
    int status;     /* a scripted answer (500...), 0 for none */
    int delay_ms;
    int gets;
};

struct fm_media {
    struct fm_object obj[MAX_OBJECTS];
    int n;
    struct {
        char mid[160];
        char names[MAX_PER_MSG][64];
        int n;
    } msgs[MAX_MESSAGES];
    int nmsgs;
};

/* m's media state, created on first use; under m->lock. */
static struct fm_media *media_locked(struct fakemeta *m)
{
    if (m->media == NULL)
        m->media = cm_xcalloc(1, sizeof(*m->media));
    return m->media;
}

static struct fm_object *find_locked(struct fakemeta *m, const char *name)
{
    struct fm_media *s = media_locked(m);

    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->obj[i].name, name) == 0)
            return &s->obj[i];
    }
    return NULL;
}

/* The URL of o's current signature (a new string). */
static char *url_locked(struct fakemeta *m, const struct fm_object *o)
{
    const char *ext = strncmp(o->content_type, "video/", 6) == 0   ? "mp4"
                      : strncmp(o->content_type, "audio/", 6) == 0 ? "mp4"
                      : strcmp(o->content_type, "image/png") == 0  ? "png"
                      : strncmp(o->content_type, "image/", 6) == 0 ? "jpg"
                                                                   : "pdf";
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_printf(&b,
                  "%s" CDN_PREFIX "%s_n.%s?_nc_cat=108&ccb=1-7&_nc_sid=fc17b8&gen=%d"
                  "&oh=03_Q7cD1AFake%04d&oe=6790A1B2",
                  fakehttp_url(m->srv[0]), o->name, ext, o->gen, o->gen);
    return b.data;
}

char *fakemeta_cdn_put(struct fakemeta *m, const char *name, const char *content_type,
                       const void *data, size_t len)
{
    struct fm_object *o;
    char *url;

    pthread_mutex_lock(&m->lock);
    o = find_locked(m, name);
    if (o == NULL && m->media->n < MAX_OBJECTS)
        o = &m->media->obj[m->media->n++];
    if (o == NULL) {
        pthread_mutex_unlock(&m->lock);
        return NULL;
    }
    free(o->data);
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", name);
    snprintf(o->content_type, sizeof(o->content_type), "%s", content_type);
    o->data = cm_xmalloc(len + 1);
    memcpy(o->data, data, len);
    o->len = len;
    url = url_locked(m, o);
    pthread_mutex_unlock(&m->lock);
    return url;
}

char *fakemeta_cdn_lookaside(struct fakemeta *m, const char *name)
{
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_printf(&b, "%s" LOOKASIDE_PREFIX "?asset_id=%s&signature=AbFakeLookaside",
                  fakehttp_url(m->srv[0]), name);
    return b.data;
}

void fakemeta_cdn_expire(struct fakemeta *m, const char *name)
{
    struct fm_object *o;

    pthread_mutex_lock(&m->lock);
    if ((o = find_locked(m, name)) != NULL) {
        o->gen++;
        o->valid_from = o->gen; /* every URL handed out so far is expired */
    }
    pthread_mutex_unlock(&m->lock);
}

void fakemeta_cdn_fault(struct fakemeta *m, const char *name, int status, int delay_ms)
{
    struct fm_object *o;

    pthread_mutex_lock(&m->lock);
    if ((o = find_locked(m, name)) != NULL) {
        o->status = status;
        o->delay_ms = delay_ms;
    }
    pthread_mutex_unlock(&m->lock);
}

int fakemeta_cdn_gets(struct fakemeta *m, const char *name)
{
    struct fm_object *o;
    int n = 0;

    pthread_mutex_lock(&m->lock);
    if ((o = find_locked(m, name)) != NULL)
        n = o->gets;
    pthread_mutex_unlock(&m->lock);
    return n;
}

void fakemeta_media_message(struct fakemeta *m, const char *mid, const char *const *names, int n)
{
    struct fm_media *s;

    pthread_mutex_lock(&m->lock);
    s = media_locked(m);
    if (s->nmsgs < MAX_MESSAGES) {
        snprintf(s->msgs[s->nmsgs].mid, sizeof(s->msgs[0].mid), "%s", mid);
        for (int i = 0; i < n && i < MAX_PER_MSG; i++)
            snprintf(s->msgs[s->nmsgs].names[i], sizeof(s->msgs[0].names[0]), "%s", names[i]);
        s->msgs[s->nmsgs].n = n < MAX_PER_MSG ? n : MAX_PER_MSG;
        s->nmsgs++;
    }
    pthread_mutex_unlock(&m->lock);
}

void fm_media_free(struct fakemeta *m)
{
    if (m->media == NULL)
        return;
    for (int i = 0; i < m->media->n; i++)
        free(m->media->obj[i].data);
    free(m->media);
    m->media = NULL;
}

/* The CDN: path is CDN_PREFIX<name>_n.<ext>. */
static void cdn(struct fakemeta *m, const struct fakehttp_request *req,
                struct fakehttp_response *resp)
{
    const char *p = req->path + strlen(CDN_PREFIX), *end = strstr(p, "_n.");
    char name[64], *gen_s = fakehttp_query_param(req, "gen");
    int gen = gen_s != NULL ? atoi(gen_s) : -1;
    struct fm_object *o;

    free(gen_s);
    snprintf(name, sizeof(name), "%.*s", end != NULL ? (int)(end - p) : 0, p);
    pthread_mutex_lock(&m->lock);
    o = end != NULL ? find_locked(m, name) : NULL;
    if (o != NULL)
        o->gets++;
    if (o == NULL || gen < 0 || gen > o->gen) {
        fakehttp_set_header(resp, "Content-Type", "text/plain");
        fakehttp_reply(resp, 404, "Bad URL hash", 12);
    } else if (gen < o->valid_from) {
        fakehttp_set_header(resp, "Content-Type", "text/plain");
        fakehttp_reply(resp, 403, "URL signature expired", 21);
    } else if (o->status != 0) {
        resp->delay_ms = o->delay_ms;
        fakehttp_set_header(resp, "Content-Type", "text/html");
        fakehttp_reply(resp, o->status, "<html><body>Error</body></html>", 31);
    } else {
        resp->delay_ms = o->delay_ms;
        fakehttp_set_header(resp, "Content-Type", o->content_type);
        fakehttp_set_header(resp, "Cache-Control", "max-age=1209600, no-transform");
        fakehttp_reply(resp, 200, o->data, o->len);
    }
    pthread_mutex_unlock(&m->lock);
}

/* Meta's lookaside URL: 302 to the CDN URL of the asset's current signature. */
static void lookaside(struct fakemeta *m, const struct fakehttp_request *req,
                      struct fakehttp_response *resp)
{
    char *name = fakehttp_query_param(req, "asset_id"), *url = NULL;
    struct fm_object *o;

    pthread_mutex_lock(&m->lock);
    o = name != NULL ? find_locked(m, name) : NULL;
    if (o != NULL)
        url = url_locked(m, o);
    pthread_mutex_unlock(&m->lock);
    if (url == NULL) {
        fakehttp_set_header(resp, "Content-Type", "text/plain");
        fakehttp_reply(resp, 404, "Not Found", 9);
    } else {
        fakehttp_set_header(resp, "Location", url);
        fakehttp_reply(resp, 302, "", 0);
    }
    free(url);
    free(name);
}

/* One attachment of Graph's list for object o (its URL fresh). */
static cJSON *attachment_json(struct fakemeta *m, const struct fm_object *o, int i)
{
    cJSON *a = cJSON_CreateObject(), *d;
    char id[40], file[96], *url = url_locked(m, o);

    snprintf(id, sizeof(id), "90000000000%04d", i);
    snprintf(file, sizeof(file), "%s.%s", o->name,
             strncmp(o->content_type, "image/", 6) == 0 ? "jpg" : "bin");
    cJSON_AddStringToObject(a, "id", id);
    cJSON_AddStringToObject(a, "mime_type", o->content_type);
    cJSON_AddStringToObject(a, "name", file);
    cJSON_AddNumberToObject(a, "size", (double)o->len);
    if (strncmp(o->content_type, "image/", 6) == 0 || strncmp(o->content_type, "video/", 6) == 0) {
        d = cJSON_AddObjectToObject(a, o->content_type[0] == 'i' ? "image_data" : "video_data");
        cJSON_AddNumberToObject(d, "width", 640);
        cJSON_AddNumberToObject(d, "height", 480);
        cJSON_AddStringToObject(d, "url", url);
        cJSON_AddStringToObject(d, "preview_url", url);
    } else {
        cJSON_AddStringToObject(a, "file_url", url);
    }
    free(url);
    return a;
}

/* A message's attachments, once the token and proof passed. */
static void attachments(struct fakemeta *m, bool ig, const char *mid,
                        struct fakehttp_response *resp)
{
    struct fm_media *s;
    cJSON *out = cJSON_CreateObject(), *data = cJSON_CreateArray();
    bool known = false;
    char *text;

    pthread_mutex_lock(&m->lock);
    s = media_locked(m);
    for (int i = 0; i < s->nmsgs && !known; i++) {
        if (strcmp(s->msgs[i].mid, mid) != 0)
            continue;
        known = true;
        for (int k = 0; k < s->msgs[i].n; k++) {
            struct fm_object *o = find_locked(m, s->msgs[i].names[k]);
            if (o == NULL)
                continue;
            o->gen++; /* a fresh signature; the older ones still work until expired */
            cJSON_AddItemToArray(data, attachment_json(m, o, k));
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (!known) {
        cJSON_Delete(data);
        cJSON_Delete(out);
        fakehttp_meta_error(resp, 400, 100, 33,
                            "Unsupported get request. Object with ID does not exist, cannot be "
                            "loaded due to missing permissions, or does not support this "
                            "operation.");
        return;
    }
    if (ig) {
        cJSON_AddItemToObject(cJSON_AddObjectToObject(out, "attachments"), "data", data);
        cJSON_AddStringToObject(out, "id", mid);
    } else {
        cJSON_AddItemToObject(out, "data", data);
        cJSON_AddObjectToObject(cJSON_AddObjectToObject(out, "paging"), "cursors");
    }
    text = cJSON_PrintUnformatted(out);
    fakehttp_json(resp, 200, text);
    cJSON_free(text);
    cJSON_Delete(out);
}

bool fm_media(struct fakemeta *m, int host, const char *rest, const struct fakehttp_request *req,
              struct fakehttp_response *resp)
{
    size_t rlen = rest != NULL ? strlen(rest) : 0;
    bool get = strcmp(req->method, "GET") == 0, ig, mine = false;
    char mid[160], *fields = NULL, *query_token;
    const char *auth, *token;
    struct token t;

    if (get && strncmp(req->path, CDN_PREFIX, strlen(CDN_PREFIX)) == 0) {
        cdn(m, req, resp);
        return true;
    }
    if (get && strcmp(req->path, LOOKASIDE_PREFIX) == 0) {
        lookaside(m, req, resp);
        return true;
    }
    if (!get || rest == NULL)
        return false;
    if (host != FAKEMETA_INSTAGRAM && rlen > 12 && strcmp(rest + rlen - 12, "/attachments") == 0 &&
        strchr(rest, '/') == rest + rlen - 12) {
        snprintf(mid, sizeof(mid), "%.*s", (int)(rlen - 12), rest);
        ig = false;
        mine = true;
    } else if (host != FAKEMETA_FACEBOOK && strchr(rest, '/') == NULL &&
               (fields = fakehttp_query_param(req, "fields")) != NULL &&
               strcmp(fields, "attachments") == 0) {
        snprintf(mid, sizeof(mid), "%s", rest);
        ig = true;
        mine = true;
    }
    free(fields);
    if (!mine)
        return false;
    query_token = fakehttp_query_param(req, "access_token");
    auth = fakehttp_header(req, "Authorization");
    token = auth != NULL && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : query_token;
    if (token == NULL)
        fakehttp_meta_error(resp, 400, 104, 0,
                            "An access token is required to request this "
                            "resource.");
    else if (fm_valid_token(m, ig ? FAKEMETA_INSTAGRAM : FAKEMETA_FACEBOOK, token,
                            ig ? 1u << FAKEMETA_IG_LONG : 1u << FAKEMETA_PAGE, resp, &t) &&
             fm_proof_ok(m, req, token, resp))
        attachments(m, ig, mid, resp);
    free(query_token);
    return true;
}
