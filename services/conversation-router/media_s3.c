/*
 * media_s3.c - the S3 backend of the media store (see media_s3.h): path-style PUT, GET and
 * DELETE of objects in one bucket, through libcommon's HTTP client, signed by libcurl's AWS
 * Signature Version 4.
 *
 * curl 7.88 (Debian bookworm) signs the payload's SHA-256 but does not send it: S3 requires
 * the x-amz-content-sha256 header, so every request carries it, computed here (the empty
 * string's digest for GET and DELETE), and curl, which signs every header it is given,
 * signs it too and takes its value as the payload hash.
 *
 * Handles: a cm_httpc serves one thread at a time, so idle ones wait in a small pool under a
 * mutex; a call takes one (or makes one) and gives it back, keeping connections open.
 */
#include "media_s3.h"

#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/httpc.h"
#include "common/keyring.h"
#include "common/log.h"

#define POOL_MAX         8
#define DEFAULT_ATTEMPTS 3
/* An error document is small; a larger answer to a PUT or DELETE is refused. */
#define MAX_ERROR_BODY ((size_t)64 << 10)
/* SHA-256 of the empty string: the payload hash of a request without a body. */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct media_s3 {
    char *base;       /* "<endpoint>/<bucket>/": an object's URL is base + key */
    char *sigv4;      /* "aws:amz:<region>:s3" */
    char *access_key; /* S3_ACCESS_KEY_ID (not secret: it is sent in every request) */
    char *secret;     /* S3_SECRET_ACCESS_KEY, in sodium_malloc memory */
    long timeout_ms;
    int max_attempts;
    size_t max_object;

    pthread_mutex_t lock; /* guards the pool */
    struct cm_httpc *idle[POOL_MAX];
    int nidle;
};

/* S3's rules for a bucket name: 3 to 63 of [a-z0-9.-], a letter or digit at each end. */
static bool bucket_ok(const char *b)
{
    size_t n = strlen(b);

    if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!islower((unsigned char)b[i]) && !isdigit((unsigned char)b[i]) && b[i] != '.' &&
            b[i] != '-')
            return false;
    }
    return true;
}

/* A region goes into curl's "aws:amz:<region>:s3" (64 characters at most, no ':'). */
static bool region_ok(const char *r)
{
    size_t n = strlen(r);

    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!islower((unsigned char)r[i]) && !isdigit((unsigned char)r[i]) && r[i] != '-')
            return false;
    }
    return true;
}

/* The access key is written into the Credential= of the Authorization header. */
static bool access_key_ok(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)k[i]) && k[i] != '_' && k[i] != '-' && k[i] != '.')
            return false;
    }
    return true;
}

/* Length of endpoint without trailing '/'; 0 when it is not an http(s) URL without query. */
static size_t endpoint_len(const char *e)
{
    size_t n = strlen(e);

    if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0)
        return 0;
    if (strpbrk(e, "?# \t\r\n") != NULL)
        return 0;
    while (n > 0 && e[n - 1] == '/')
        n--;
    return strchr(e, '/') + 2 < e + n ? n : 0;
}

int media_s3_create(const struct media_s3_cfg *cfg, struct media_s3 **out)
{
    struct media_s3 *s;
    size_t elen, slen;

    *out = NULL;
    if (cfg->endpoint == NULL || (elen = endpoint_len(cfg->endpoint)) == 0) {
        CM_ERROR("S3_ENDPOINT must be an http:// or https:// URL without a query");
        return CM_INVALID;
    }
    if (cfg->bucket == NULL || !bucket_ok(cfg->bucket)) {
        CM_ERROR("S3_BUCKET must be 3 to 63 lowercase letters, digits, dots or hyphens");
        return CM_INVALID;
    }
    if (cfg->region == NULL || !region_ok(cfg->region)) {
        CM_ERROR("S3_REGION must be lowercase letters, digits and hyphens (us-east-1)");
        return CM_INVALID;
    }
    if (cfg->access_key == NULL || !access_key_ok(cfg->access_key)) {
        CM_ERROR("S3_ACCESS_KEY_ID must be letters, digits, '_', '-' or '.'");
        return CM_INVALID;
    }
    if (cfg->secret_key == NULL || cfg->secret_key[0] == '\0') {
        CM_ERROR("S3_SECRET_ACCESS_KEY is required");
        return CM_INVALID;
    }
    if (sodium_init() < 0) {
        CM_ERROR("media_s3: sodium_init failed");
        return CM_ERR;
    }
    slen = strlen(cfg->secret_key);
    s = cm_xcalloc(1, sizeof(*s));
    s->secret = sodium_malloc(slen + 1);
    if (s->secret == NULL) {
        free(s);
        CM_ERROR("media_s3: sodium_malloc failed");
        return CM_ERR;
    }
    memcpy(s->secret, cfg->secret_key, slen + 1);
    s->base = cm_xasprintf("%.*s/%s/", (int)elen, cfg->endpoint, cfg->bucket);
    s->sigv4 = cm_xasprintf("aws:amz:%s:s3", cfg->region);
    s->access_key = cm_xstrdup(cfg->access_key);
    s->timeout_ms = (cfg->timeout_s > 0 ? cfg->timeout_s : 60) * 1000L;
    s->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : DEFAULT_ATTEMPTS;
    s->max_object = MEDIA_S3_MAX_OBJECT;
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return CM_OK;
}

void media_s3_destroy(struct media_s3 *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nidle; i++)
        cm_httpc_destroy(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    sodium_free(s->secret);
    free(s->base);
    free(s->sigv4);
    free(s->access_key);
    free(s);
}

/* A pooled client, or a new one; NULL when none can be made (a call then goes without). */
static struct cm_httpc *take(struct media_s3 *s)
{
    struct cm_httpc *c = NULL;

    pthread_mutex_lock(&s->lock);
    if (s->nidle > 0)
        c = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->lock);
    if (c == NULL && cm_httpc_create(&c) != CM_OK)
        c = NULL;
    return c;
}

static void give_back(struct media_s3 *s, struct cm_httpc *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->nidle < POOL_MAX) {
        s->idle[s->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    cm_httpc_destroy(c);
}

/* Keys are written into the URL as they are: "media/<id>" and the like, nothing to escape. */
static bool key_ok(const char *key)
{
    size_t n = strlen(key);

    if (n == 0 || n > 512 || key[0] == '/' || strstr(key, "//") != NULL ||
        strstr(key, "..") != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)key[i]) && strchr("/_-.", key[i]) == NULL)
            return false;
    }
    return true;
}

/*
 * Copies S3's error Code (<Error><Code>...</Code>) of body into out, letters and digits
 * only (the text comes from the network and goes into a log line); "" when there is none.
 */
static void error_code(const struct cm_buf *body, char *out, size_t cap)
{
    const char *p = body->data != NULL ? strstr(body->data, "<Code>") : NULL;
    size_t n = 0;

    if (p != NULL) {
        for (p += 6; *p != '\0' && *p != '<' && n + 1 < cap; p++) {
            if (isalnum((unsigned char)*p))
                out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/*
 * Performs one S3 request on key (method, body of len bytes for a PUT, a "Range: " header
 * line or NULL) and fills resp.
 * Returns what cm_httpc_do() returns, CM_INVALID for a key that cannot be an object name.
 */
static int call(struct media_s3 *s, const char *method, const char *key, const void *body,
                size_t len, const char *range, size_t max_response, struct cm_httpc_response *resp)
{
    unsigned char digest[CM_SHA256_LEN];
    char hex[2 * CM_SHA256_LEN + 1], sha_header[100];
    const char *headers[3] = {sha_header, range, NULL};
    struct cm_httpc_request req = {0};
    struct cm_httpc *c;
    char *url;
    int rc;

    if (!key_ok(key)) {
        CM_ERROR("s3: %s: refused an object key of unexpected characters", method);
        return CM_INVALID;
    }
    if (body != NULL) {
        cm_crypto_sha256(body, len, digest);
        cm_hex_encode(digest, sizeof(digest), hex);
        headers[1] = "Content-Type: application/octet-stream";
    } else {
        snprintf(hex, sizeof(hex), "%s", EMPTY_SHA256);
    }
    snprintf(sha_header, sizeof(sha_header), "x-amz-content-sha256: %s", hex);
    url = cm_xasprintf("%s%s", s->base, key);
    req.method = method;
    req.url = url;
    req.headers = headers;
    req.body = body;
    req.body_len = len;
    req.timeout_ms = s->timeout_ms;
    req.deadline_ms = s->timeout_ms;
    req.max_attempts = s->max_attempts;
    req.max_response = max_response;
    req.log_id = key;
    req.aws_sigv4 = s->sigv4;
    req.username = s->access_key;
    req.password = s->secret;
    c = take(s);
    rc = cm_httpc_do(c, &req, resp);
    give_back(s, c);
    free(url);
    return rc;
}

/*
 * Maps a call's outcome to the header's codes, logging what went wrong with S3's error
 * Code and the key (never a header: the Authorization header is curl's and never seen).
 * missing_ok: a 404 NoSuchKey is success (DELETE); otherwise CM_NOTFOUND.
 */
static int outcome(const char *method, const char *key, int rc,
                   const struct cm_httpc_response *resp, bool missing_ok)
{
    char code[64] = "";

    /* A 2xx body is the object itself, never searched for an error. */
    if (rc != CM_OK || resp->status < 200 || resp->status >= 300)
        error_code(&resp->body, code, sizeof(code));
    switch (rc) {
    case CM_OK:
        break;
    case CM_UNAVAIL:
    case CM_TIMEOUT:
        /* An answer httpc retried (5xx: InternalError, SlowDown) or none at all. */
        if (resp->status > 0)
            CM_WARN_ID(key, "s3: %s %s: unavailable (HTTP %ld %s, %d attempts)", method, key,
                       resp->status, code[0] ? code : "without a code", resp->attempts);
        else
            CM_WARN_ID(key, "s3: %s %s: unavailable (no answer: %s, %d attempts)", method, key,
                       cm_err_str(rc), resp->attempts);
        return CM_UNAVAIL;
    case CM_TOOBIG:
        CM_ERROR_ID(key, "s3: %s %s: the answer is larger than a sealed object may be", method,
                    key);
        return CM_TOOBIG;
    default:
        CM_ERROR_ID(key, "s3: %s %s: %s", method, key, cm_err_str(rc));
        return rc == CM_INVALID ? CM_INVALID : CM_ERR;
    }
    if (resp->status >= 200 && resp->status < 300)
        return CM_OK;
    if (resp->status == 404 && strcmp(code, "NoSuchKey") == 0) {
        CM_INFO_ID(key, "s3: %s %s: NoSuchKey", method, key);
        return missing_ok ? CM_OK : CM_NOTFOUND;
    }
    if (resp->status == 403) {
        CM_ERROR_ID(key,
                    "s3: %s %s: denied (HTTP 403 %s): check S3_ACCESS_KEY_ID, "
                    "S3_SECRET_ACCESS_KEY, S3_REGION and the clock",
                    method, key, code[0] ? code : "without a code");
        return CM_DENIED;
    }
    if (resp->status >= 500) {
        CM_WARN_ID(key, "s3: %s %s: unavailable (HTTP %ld %s)", method, key, resp->status, code);
        return CM_UNAVAIL;
    }
    CM_ERROR_ID(key, "s3: %s %s: HTTP %ld %s", method, key, resp->status,
                code[0] ? code : "without a code");
    return CM_ERR;
}

int media_s3_put(struct media_s3 *s, const char *key, const void *data, size_t len)
{
    struct cm_httpc_response resp;
    int rc;

    if (len > s->max_object) {
        CM_ERROR_ID(key, "s3: PUT %s: %zu bytes is more than a sealed object may be", key, len);
        return CM_TOOBIG;
    }
    cm_httpc_response_init(&resp);
    /* A PUT always has a body, of 0 bytes too: Content-Length and the payload's digest. */
    rc = call(s, "PUT", key, data != NULL ? data : "", len, NULL, MAX_ERROR_BODY, &resp);
    rc = outcome("PUT", key, rc, &resp, false);
    cm_httpc_response_cleanup(&resp);
    return rc;
}

/* A GET of key, with range (a header line) or without, its body handed to out on success and
 * the HTTP status to *status. */
static int get(struct media_s3 *s, const char *key, const char *range, struct cm_buf *out,
               long *status)
{
    struct cm_httpc_response resp;
    int rc;

    cm_httpc_response_init(&resp);
    rc = call(s, "GET", key, NULL, 0, range, s->max_object, &resp);
    rc = outcome("GET", key, rc, &resp, false);
    *status = resp.status;
    if (rc == CM_OK) {
        /* Hands the body over rather than copying up to 100 MiB. */
        cm_buf_cleanup(out);
        *out = resp.body;
        cm_buf_init(&resp.body);
    }
    cm_httpc_response_cleanup(&resp);
    return rc;
}

int media_s3_get(struct media_s3 *s, const char *key, struct cm_buf *out)
{
    long status;

    return get(s, key, NULL, out, &status);
}

int media_s3_get_range(struct media_s3 *s, const char *key, long long offset, long long len,
                       struct cm_buf *out)
{
    char range[80];
    long status;
    int rc;

    if (offset < 0 || len <= 0)
        return CM_INVALID;
    snprintf(range, sizeof(range), "Range: bytes=%lld-%lld", offset, offset + len - 1);
    rc = get(s, key, range, out, &status);
    if (rc != CM_OK)
        return rc;
    /* A service that ignores Range answers 200 with the whole object: the range is cut out. */
    if (status == 200 && (size_t)offset <= out->len) {
        size_t n =
            out->len - (size_t)offset < (size_t)len ? out->len - (size_t)offset : (size_t)len;
        memmove(out->data, out->data + offset, n);
        out->len = n;
        out->data[n] = '\0';
    }
    if (out->len > (size_t)len || (status != 206 && status != 200)) {
        CM_ERROR_ID(key, "s3: GET %s: HTTP %ld with %zu bytes for a range of %lld", key, status,
                    out->len, len);
        return CM_ERR;
    }
    return CM_OK;
}

int media_s3_delete(struct media_s3 *s, const char *key)
{
    struct cm_httpc_response resp;
    int rc;

    cm_httpc_response_init(&resp);
    rc = call(s, "DELETE", key, NULL, 0, NULL, MAX_ERROR_BODY, &resp);
    rc = outcome("DELETE", key, rc, &resp, true);
    cm_httpc_response_cleanup(&resp);
    return rc;
}
