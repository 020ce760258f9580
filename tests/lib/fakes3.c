/*
 * fakes3.c - the S3 stand-in (see fakes3.h): fakehttp's handler has each request verified
 * (fakes3_sigv4.c), then serves one bucket held in memory.
 *
 * Threads: the handler runs on fakehttp's server thread; the test's thread reads counters
 * and objects. Everything of struct fakes3 after the lock is guarded by it.
 */
#include "fakes3.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakes3_int.h"

#define NMETHODS 6

static const char *const methods[NMETHODS] = {"PUT", "GET", "HEAD", "DELETE", "POST", "?"};

struct object {
    char *key;
    unsigned char *data;
    size_t len;
    char etag[40]; /* "\"<md5 hex>\"" */
};

struct fakes3 {
    struct fakehttp *srv;
    char *access_key, *secret, *bucket;

    pthread_mutex_t lock;
    char region[64];
    struct object *objs;
    int nobjs;
    int fail_n, fail_status;
    int count[NMETHODS];
    int bad_sigs;
    size_t largest_get; /* the most bytes of an object one GET answered */
    char last_error[64];
    unsigned long next_id;
};

/* The counter of a method. */
static int method_index(const char *m)
{
    for (int i = 0; i < NMETHODS - 1; i++) {
        if (strcmp(methods[i], m) == 0)
            return i;
    }
    return NMETHODS - 1;
}

/* The stored object of key, or NULL. Under the lock. */
static struct object *find(struct fakes3 *fs, const char *key)
{
    for (int i = 0; i < fs->nobjs; i++) {
        if (strcmp(fs->objs[i].key, key) == 0)
            return &fs->objs[i];
    }
    return NULL;
}

/* Stores a copy of data under key. Under the lock. */
static struct object *store(struct fakes3 *fs, const char *key, const void *data, size_t len)
{
    struct object *o = find(fs, key);

    if (o == NULL) {
        fs->objs = cm_xrealloc(fs->objs, (size_t)(fs->nobjs + 1) * sizeof(*fs->objs));
        o = &fs->objs[fs->nobjs++];
        o->key = cm_xstrdup(key);
    } else {
        free(o->data);
    }
    o->data = cm_xmalloc(len > 0 ? len : 1);
    memcpy(o->data, data, len);
    o->len = len;
    fakes3_etag(data, len, o->etag);
    return o;
}

static void drop(struct fakes3 *fs, const char *key)
{
    struct object *o = find(fs, key);

    if (o == NULL)
        return;
    free(o->key);
    free(o->data);
    *o = fs->objs[--fs->nobjs];
}

/* --- answers ---------------------------------------------------------------------------- */

/* The headers S3 puts on every answer. */
static void common_headers(struct fakes3 *fs, struct fakehttp_response *resp, char id[32])
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;

    pthread_mutex_lock(&fs->lock);
    snprintf(id, 32, "FAKES3%010lu", ++fs->next_id);
    pthread_mutex_unlock(&fs->lock);
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    fakehttp_set_header(resp, "x-amz-request-id", id);
    fakehttp_set_header(resp, "x-amz-id-2", "ZmFrZXMzLWhvc3QtaWQ=");
    fakehttp_set_header(resp, "Date", date);
    fakehttp_set_header(resp, "Server", "AmazonS3");
}

/* S3's error document; a HEAD gets the status alone, as S3 answers it. */
static void s3_error(struct fakes3 *fs, struct fakehttp_response *resp, const char *method,
                     struct refusal *r, const char *resource)
{
    struct cm_buf b;
    char id[32];

    common_headers(fs, resp, id);
    pthread_mutex_lock(&fs->lock);
    snprintf(fs->last_error, sizeof(fs->last_error), "%s", r->code);
    if (strcmp(r->code, "SignatureDoesNotMatch") == 0)
        fs->bad_sigs++;
    pthread_mutex_unlock(&fs->lock);
    if (strcmp(method, "HEAD") == 0) {
        fakehttp_reply(resp, r->status, "", 0);
        return;
    }
    cm_buf_init(&b);
    cm_buf_printf(&b,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                  "<Message>",
                  r->code);
    cm_buf_html_escape(&b, r->message);
    cm_buf_puts(&b, "</Message>");
    if (r->extra.data != NULL)
        cm_buf_puts(&b, r->extra.data);
    if (resource != NULL) {
        cm_buf_puts(&b, "<Resource>");
        cm_buf_html_escape(&b, resource);
        cm_buf_puts(&b, "</Resource>");
    }
    cm_buf_printf(&b, "<RequestId>%s</RequestId><HostId>ZmFrZXMzLWhvc3QtaWQ=</HostId></Error>", id);
    fakehttp_set_header(resp, "Content-Type", "application/xml");
    fakehttp_reply(resp, r->status, b.data, b.len);
    cm_buf_cleanup(&b);
}

/* fakes3_verify() with the region the bucket is in now. */
static int verify(struct fakes3 *fs, const struct fakehttp_request *req, struct refusal *r)
{
    char region[64];

    pthread_mutex_lock(&fs->lock);
    snprintf(region, sizeof(region), "%s", fs->region);
    pthread_mutex_unlock(&fs->lock);
    return fakes3_verify(req, fs->access_key, fs->secret, region, r);
}

/* --- the bucket --------------------------------------------------------------------------- */

/*
 * The byte range of a GET's Range header over an object of len bytes, as S3 reads it: one
 * range "bytes=first-last", "bytes=first-" or "bytes=-suffix". Returns 1 with [*from, *to]
 * (to inclusive, cut at the object's end), 0 when there is no header or S3 would ignore it
 * (another unit, several ranges, not a range: the whole object is answered), -1 when the range
 * is not satisfiable (416).
 */
static int byte_range(const char *h, size_t len, size_t *from, size_t *to)
{
    unsigned long long a = 0, b = 0;
    const char *p;
    char *end;

    if (h == NULL || strncmp(h, "bytes=", 6) != 0 || strchr(h, ',') != NULL)
        return 0;
    p = h + 6;
    if (*p == '-') {
        b = strtoull(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0')
            return 0;
        if (b == 0 || len == 0)
            return -1;
        *from = b >= len ? 0 : len - (size_t)b;
        *to = len - 1;
        return 1;
    }
    a = strtoull(p, &end, 10);
    if (end == p || *end != '-')
        return 0;
    p = end + 1;
    if (*p == '\0') {
        b = len > 0 ? len - 1 : 0;
    } else {
        b = strtoull(p, &end, 10);
        if (*end != '\0' || b < a)
            return 0;
    }
    if (a >= len)
        return -1;
    *from = (size_t)a;
    *to = b >= len ? len - 1 : (size_t)b;
    return 1;
}

/* Answers an authenticated request on key (decoded) of the bucket. */
static void serve(struct fakes3 *fs, const struct fakehttp_request *req,
                  struct fakehttp_response *resp, const char *key, struct refusal *r)
{
    struct object *o;
    char len[32], etag[40], id[32], crange[96];
    size_t from = 0, to = 0;
    int ranged = 0;

    if (key[0] == '\0') {
        fakes3_refuse(r, 501, "NotImplemented",
                      "A header you provided implies functionality that is not implemented");
        s3_error(fs, resp, req->method, r, req->path);
        return;
    }
    if (strcmp(req->method, "DELETE") == 0) {
        pthread_mutex_lock(&fs->lock);
        drop(fs, key);
        pthread_mutex_unlock(&fs->lock);
        common_headers(fs, resp, id);
        fakehttp_reply(resp, 204, "", 0);
        return;
    }
    if (strcmp(req->method, "PUT") == 0) {
        pthread_mutex_lock(&fs->lock);
        o = store(fs, key, req->body, req->body_len);
        snprintf(etag, sizeof(etag), "%s", o->etag);
        pthread_mutex_unlock(&fs->lock);
        common_headers(fs, resp, id);
        fakehttp_set_header(resp, "ETag", etag);
        fakehttp_reply(resp, 200, "", 0);
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        fakes3_extra(r, "Method", req->method);
        fakes3_extra(r, "ResourceType", "OBJECT");
        fakes3_refuse(r, 405, "MethodNotAllowed",
                      "The specified method is not allowed against this "
                      "resource.");
        s3_error(fs, resp, req->method, r, NULL);
        return;
    }
    pthread_mutex_lock(&fs->lock);
    o = find(fs, key);
    if (o != NULL) {
        snprintf(etag, sizeof(etag), "%s", o->etag);
        snprintf(len, sizeof(len), "%zu", o->len);
        ranged = strcmp(req->method, "GET") == 0
                     ? byte_range(fakehttp_header(req, "Range"), o->len, &from, &to)
                     : 0;
        if (ranged == 1) {
            fakehttp_reply(resp, 206, o->data + from, to - from + 1);
            snprintf(crange, sizeof(crange), "bytes %zu-%zu/%zu", from, to, o->len);
            if (to - from + 1 > fs->largest_get)
                fs->largest_get = to - from + 1;
        } else if (ranged == 0 && strcmp(req->method, "GET") == 0) {
            fakehttp_reply(resp, 200, o->data, o->len);
            if (o->len > fs->largest_get)
                fs->largest_get = o->len;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    if (o == NULL) {
        fakes3_extra(r, "Key", key);
        fakes3_refuse(r, 404, "NoSuchKey", "The specified key does not exist.");
        s3_error(fs, resp, req->method, r, NULL);
        return;
    }
    if (ranged < 0) {
        fakes3_extra(r, "RangeRequested", fakehttp_header(req, "Range"));
        fakes3_extra(r, "ActualObjectSize", len);
        fakes3_refuse(r, 416, "InvalidRange", "The requested range is not satisfiable");
        s3_error(fs, resp, req->method, r, NULL);
        return;
    }
    common_headers(fs, resp, id);
    fakehttp_set_header(resp, "Accept-Ranges", "bytes");
    if (ranged == 1)
        fakehttp_set_header(resp, "Content-Range", crange);
    fakehttp_set_header(resp, "ETag", etag);
    fakehttp_set_header(resp, "Content-Type", "application/octet-stream");
    fakehttp_set_header(resp, "Last-Modified", "Sat, 05 Dec 2026 12:00:00 GMT");
    if (strcmp(req->method, "HEAD") == 0) {
        /* evhttp sends no body to a HEAD, nor a length: S3 states the object's. */
        fakehttp_set_header(resp, "Content-Length", len);
        fakehttp_reply(resp, 200, "", 0);
    }
}

static void on_request(const struct fakehttp_request *req, struct fakehttp_response *resp,
                       void *arg)
{
    struct fakes3 *fs = arg;
    struct refusal r = {0};
    char *path = fakes3_uri_decode(req->path), *slash;
    const char *key = "";
    int fail = 0;

    cm_buf_init(&r.extra);
    pthread_mutex_lock(&fs->lock);
    fs->count[method_index(req->method)]++;
    if (fs->fail_n > 0) {
        fs->fail_n--;
        fail = fs->fail_status;
    }
    pthread_mutex_unlock(&fs->lock);

    if (fail == 503) {
        fakes3_refuse(&r, 503, "SlowDown", "Please reduce your request rate.");
    } else if (fail != 0) {
        fakes3_refuse(&r, 500, "InternalError",
                      "We encountered an internal error. Please try again.");
    } else {
        slash = strchr(path + 1, '/');
        if (slash != NULL) {
            *slash = '\0';
            key = slash + 1;
        }
        if (path[0] != '/' || strcmp(path + 1, fs->bucket) != 0) {
            fakes3_extra(&r, "BucketName", path[0] == '/' ? path + 1 : path);
            fakes3_refuse(&r, 404, "NoSuchBucket", "The specified bucket does not exist");
        } else if (verify(fs, req, &r) == 0) {
            serve(fs, req, resp, key, &r);
            goto done;
        }
    }
    s3_error(fs, resp, req->method, &r, NULL);
done:
    cm_buf_cleanup(&r.extra);
    free(path);
}

/* --- the test's side ------------------------------------------------------------------- */

int fakes3_start(struct fakes3 **out, const char *access_key, const char *secret,
                 const char *bucket)
{
    struct fakes3 *fs = cm_xcalloc(1, sizeof(*fs));

    *out = NULL;
    fs->access_key = cm_xstrdup(access_key);
    fs->secret = cm_xstrdup(secret);
    fs->bucket = cm_xstrdup(bucket);
    snprintf(fs->region, sizeof(fs->region), "us-east-1");
    pthread_mutex_init(&fs->lock, NULL);
    if (fakehttp_start(&fs->srv, on_request, fs) != 0) {
        fakes3_stop(fs);
        return -1;
    }
    *out = fs;
    return 0;
}

void fakes3_stop(struct fakes3 *fs)
{
    if (fs == NULL)
        return;
    fakehttp_stop(fs->srv);
    for (int i = 0; i < fs->nobjs; i++) {
        free(fs->objs[i].key);
        free(fs->objs[i].data);
    }
    free(fs->objs);
    pthread_mutex_destroy(&fs->lock);
    free(fs->access_key);
    free(fs->secret);
    free(fs->bucket);
    free(fs);
}

const char *fakes3_url(const struct fakes3 *fs)
{
    return fakehttp_url(fs->srv);
}

struct fakehttp *fakes3_http(struct fakes3 *fs)
{
    return fs->srv;
}

void fakes3_set_region(struct fakes3 *fs, const char *region)
{
    pthread_mutex_lock(&fs->lock);
    snprintf(fs->region, sizeof(fs->region), "%s", region);
    pthread_mutex_unlock(&fs->lock);
}

void fakes3_fail_next(struct fakes3 *fs, int n, int status)
{
    pthread_mutex_lock(&fs->lock);
    fs->fail_n = n;
    fs->fail_status = status;
    pthread_mutex_unlock(&fs->lock);
}

size_t fakes3_largest_get(struct fakes3 *fs)
{
    size_t n;

    pthread_mutex_lock(&fs->lock);
    n = fs->largest_get;
    pthread_mutex_unlock(&fs->lock);
    return n;
}

void fakes3_reset_largest_get(struct fakes3 *fs)
{
    pthread_mutex_lock(&fs->lock);
    fs->largest_get = 0;
    pthread_mutex_unlock(&fs->lock);
}

int fakes3_count(struct fakes3 *fs, const char *method)
{
    int n = 0;

    pthread_mutex_lock(&fs->lock);
    for (int i = 0; i < NMETHODS; i++) {
        if (method == NULL || strcmp(methods[i], method) == 0)
            n += fs->count[i];
    }
    pthread_mutex_unlock(&fs->lock);
    return n;
}

int fakes3_bad_signatures(struct fakes3 *fs)
{
    int n;

    pthread_mutex_lock(&fs->lock);
    n = fs->bad_sigs;
    pthread_mutex_unlock(&fs->lock);
    return n;
}

void fakes3_last_error(struct fakes3 *fs, char out[64])
{
    pthread_mutex_lock(&fs->lock);
    snprintf(out, 64, "%s", fs->last_error);
    pthread_mutex_unlock(&fs->lock);
}

int fakes3_object(struct fakes3 *fs, const char *key, struct cm_buf *out)
{
    struct object *o;

    cm_buf_reset(out);
    pthread_mutex_lock(&fs->lock);
    o = find(fs, key);
    if (o != NULL)
        cm_buf_append(out, o->data, o->len);
    pthread_mutex_unlock(&fs->lock);
    return o != NULL ? 0 : -1;
}

void fakes3_put_object(struct fakes3 *fs, const char *key, const void *data, size_t len)
{
    pthread_mutex_lock(&fs->lock);
    store(fs, key, data, len);
    pthread_mutex_unlock(&fs->lock);
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int fakes3_keys(struct fakes3 *fs, struct cm_buf *out)
{
    char **keys;
    int n;

    cm_buf_reset(out);
    cm_buf_puts(out, "");
    pthread_mutex_lock(&fs->lock);
    n = fs->nobjs;
    keys = cm_xcalloc(n > 0 ? (size_t)n : 1, sizeof(*keys));
    for (int i = 0; i < n; i++)
        keys[i] = cm_xstrdup(fs->objs[i].key);
    pthread_mutex_unlock(&fs->lock);
    if (n > 0)
        qsort(keys, (size_t)n, sizeof(*keys), strp_cmp);
    for (int i = 0; i < n; i++) {
        cm_buf_printf(out, "%s\n", keys[i]);
        free(keys[i]);
    }
    free(keys);
    return n;
}
