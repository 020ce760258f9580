/*
 * fakes3.c - the S3 stand-in (see fakes3.h): fakehttp's handler verifies AWS Signature
 * Version 4 the way S3 documents it, then serves one bucket held in memory. Digests and
 * HMACs are OpenSSL's (EVP_Digest, HMAC), independent of libcommon and of curl, which signs
 * what the client sends.
 *
 * Threads: the handler runs on fakehttp's server thread; the test's thread reads counters
 * and objects. Everything of struct fakes3 after the lock is guarded by it.
 */
#include "fakes3.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SKEW_S     (15 * 60)
#define UNSIGNED   "UNSIGNED-PAYLOAD"
#define NMETHODS   6
#define MAX_SIGNED 32

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
    char last_error[64];
    unsigned long next_id;
};

/* What a refused request is answered: status, S3's Code and Message, and extra XML. */
struct refusal {
    int status;
    const char *code;
    const char *message;
    struct cm_buf extra; /* elements after <Message>, already escaped */
};

/* --- helpers ---------------------------------------------------------------------------- */

static void hex_of(const unsigned char *in, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* Writes the lowercase hex of the digest md of len bytes into out (2 * size + 1). */
static void digest_hex(const EVP_MD *md, const void *data, size_t len, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    EVP_Digest(data, len, d, &n, md, NULL);
    hex_of(d, n, out);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;

    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

static void xml_escape(struct cm_buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            cm_buf_puts(b, "&amp;");
            break;
        case '<':
            cm_buf_puts(b, "&lt;");
            break;
        case '>':
            cm_buf_puts(b, "&gt;");
            break;
        case '"':
            cm_buf_puts(b, "&quot;");
            break;
        default:
            cm_buf_append(b, s, 1);
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s into a new string (free it). */
static char *uri_decode(const char *s)
{
    char *out = cm_xmalloc(strlen(s) + 1), *o = out;

    while (*s != '\0') {
        if (s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 3;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* AWS's UriEncode: all but A-Z a-z 0-9 - . _ ~ as %XX (and '/' too unless keep_slash). */
static void uri_encode(struct cm_buf *b, const char *s, bool keep_slash)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/'))
            cm_buf_append(b, s, 1);
        else
            cm_buf_printf(b, "%%%02X", c);
    }
}

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
    char md5[33];

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
    digest_hex(EVP_md5(), data, len, md5);
    snprintf(o->etag, sizeof(o->etag), "\"%s\"", md5);
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
    xml_escape(&b, r->message);
    cm_buf_puts(&b, "</Message>");
    if (r->extra.data != NULL)
        cm_buf_puts(&b, r->extra.data);
    if (resource != NULL) {
        cm_buf_puts(&b, "<Resource>");
        xml_escape(&b, resource);
        cm_buf_puts(&b, "</Resource>");
    }
    cm_buf_printf(&b, "<RequestId>%s</RequestId><HostId>ZmFrZXMzLWhvc3QtaWQ=</HostId></Error>", id);
    fakehttp_set_header(resp, "Content-Type", "application/xml");
    fakehttp_reply(resp, r->status, b.data, b.len);
    cm_buf_cleanup(&b);
}

/* Sets what r answers; returns -1, for verify()'s refusals. */
static int refuse(struct refusal *r, int status, const char *code, const char *message)
{
    r->status = status;
    r->code = code;
    r->message = message;
    return -1;
}

/* Adds <name>value</name> to a refusal's extra elements. */
static void extra(struct refusal *r, const char *name, const char *value)
{
    cm_buf_printf(&r->extra, "<%s>", name);
    xml_escape(&r->extra, value);
    cm_buf_printf(&r->extra, "</%s>", name);
}

/* --- Signature Version 4 ------------------------------------------------------------------ */

struct auth {
    char access_key[129];
    char date[9], region[65], service[33], terminator[33];
    char signed_headers[1024];
    char signature[65];
};

/* Parses "AWS4-HMAC-SHA256 Credential=AK/D/R/S/aws4_request, SignedHeaders=a;b, Signature=h".
 * Returns 0, or -1 when it is not of that shape. */
static int parse_auth(const char *h, struct auth *a)
{
    const char *p = h;
    bool cred = false, sh = false, sig = false;

    memset(a, 0, sizeof(*a));
    if (strncmp(p, "AWS4-HMAC-SHA256 ", 17) != 0)
        return -1;
    p += 17;
    while (*p != '\0') {
        size_t n;
        while (*p == ' ' || *p == ',')
            p++;
        n = strcspn(p, ",");
        if (strncmp(p, "Credential=", 11) == 0) {
            char cr[400];
            if (n - 11 >= sizeof(cr))
                return -1;
            memcpy(cr, p + 11, n - 11);
            cr[n - 11] = '\0';
            if (sscanf(cr, "%128[^/]/%8[^/]/%64[^/]/%32[^/]/%32s", a->access_key, a->date,
                       a->region, a->service, a->terminator) != 5)
                return -1;
            cred = true;
        } else if (strncmp(p, "SignedHeaders=", 14) == 0 && n - 14 < sizeof(a->signed_headers)) {
            memcpy(a->signed_headers, p + 14, n - 14);
            sh = true;
        } else if (strncmp(p, "Signature=", 10) == 0 && n - 10 == 64) {
            memcpy(a->signature, p + 10, 64);
            sig = true;
        } else if (n > 0) {
            return -1;
        }
        p += n;
    }
    return cred && sh && sig ? 0 : -1;
}

/* A header's value as SigV4 canonicalises it: trimmed, inner runs of spaces made one. */
static void canonical_value(struct cm_buf *b, const char *v)
{
    bool space = false;

    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v != '\0'; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space)
            cm_buf_puts(b, " ");
        space = false;
        cm_buf_append(b, v, 1);
    }
}

struct qparam {
    char *k, *v; /* encoded */
};

static int qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = strcmp(x->k, y->k);

    return c != 0 ? c : strcmp(x->v, y->v);
}

/* The canonical query string: each name and value decoded, encoded, sorted by name. */
static void canonical_query(struct cm_buf *b, const char *query)
{
    struct qparam *ps = NULL;
    char *copy = cm_xstrdup(query), *save = NULL;
    int n = 0;

    for (char *t = strtok_r(copy, "&", &save); t != NULL; t = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(t, '='), *k, *v;
        struct cm_buf kb, vb;
        if (eq != NULL)
            *eq = '\0';
        k = uri_decode(t);
        v = uri_decode(eq != NULL ? eq + 1 : "");
        cm_buf_init(&kb);
        cm_buf_init(&vb);
        uri_encode(&kb, k, false);
        uri_encode(&vb, v, false);
        cm_buf_puts(&vb, "");
        ps = cm_xrealloc(ps, (size_t)(n + 1) * sizeof(*ps));
        ps[n].k = cm_buf_steal(&kb);
        ps[n].v = cm_buf_steal(&vb);
        n++;
        free(k);
        free(v);
    }
    qsort(ps, (size_t)n, sizeof(*ps), qparam_cmp);
    for (int i = 0; i < n; i++) {
        cm_buf_printf(b, "%s%s=%s", i > 0 ? "&" : "", ps[i].k, ps[i].v);
        free(ps[i].k);
        free(ps[i].v);
    }
    free(ps);
    free(copy);
}

/*
 * Builds the canonical request of req into b. Returns 0, or -1 when a signed header is not
 * in the request or the list is not lowercase and sorted (the signature cannot match).
 */
static int canonical_request(struct cm_buf *b, const struct fakehttp_request *req,
                             const struct auth *a, const char *payload_hash)
{
    char names[sizeof(a->signed_headers)], *save = NULL, prev[128] = "";
    char *path = uri_decode(req->path);
    int rc = 0;

    cm_buf_printf(b, "%s\n", req->method);
    uri_encode(b, path, true);
    free(path);
    cm_buf_puts(b, "\n");
    canonical_query(b, req->query);
    cm_buf_puts(b, "\n");
    snprintf(names, sizeof(names), "%s", a->signed_headers);
    for (char *t = strtok_r(names, ";", &save); t != NULL; t = strtok_r(NULL, ";", &save)) {
        const char *v = fakehttp_header(req, t);
        for (const char *c = t; *c != '\0'; c++) {
            if (isupper((unsigned char)*c))
                rc = -1;
        }
        if (v == NULL || strcmp(prev, t) >= 0)
            rc = -1;
        snprintf(prev, sizeof(prev), "%s", t);
        cm_buf_printf(b, "%s:", t);
        if (v != NULL)
            canonical_value(b, v);
        cm_buf_puts(b, "\n");
    }
    cm_buf_printf(b, "\n%s\n%s", a->signed_headers, payload_hash);
    return rc;
}

/* True when name is one of the ';'-separated signed headers. */
static bool is_signed(const char *list, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ";");
        if (len == n && strncasecmp(p, name, n) == 0)
            return true;
        p += len;
        if (*p == ';')
            p++;
    }
    return false;
}

/* Parses x-amz-date ("20261205T161500Z"); -1 when malformed. */
static time_t parse_amz_date(const char *s)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    if (s == NULL || strlen(s) != 16 || (end = strptime(s, "%Y%m%dT%H%M%SZ", &tm)) == NULL ||
        *end != '\0')
        return -1;
    return timegm(&tm);
}

/* True when v is 64 lowercase hex digits. */
static bool sha_hex_ok(const char *v)
{
    if (strlen(v) != 64)
        return false;
    for (const char *p = v; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
            return false;
    }
    return true;
}

/* Verifies req as S3 does. Returns 0 when it may proceed, or fills r and returns -1. */
static int verify(struct fakes3 *fs, const struct fakehttp_request *req, struct refusal *r)
{
    const char *h = fakehttp_header(req, "Authorization");
    const char *date = fakehttp_header(req, "x-amz-date");
    const char *sha = fakehttp_header(req, "x-amz-content-sha256");
    char region[64], body_hash[65], creq_hash[65], sig[65];
    unsigned char k1[32], k2[32];
    struct auth a;
    struct cm_buf creq, sts, key;
    time_t when;
    int bad;

    if (h == NULL)
        return refuse(r, 403, "AccessDenied", "Access Denied");
    if (parse_auth(h, &a) != 0)
        return refuse(r, 400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; the Credential is mal-formed."),
               -1;
    if (strcmp(a.access_key, fs->access_key) != 0) {
        extra(r, "AWSAccessKeyId", a.access_key);
        return refuse(r, 403, "InvalidAccessKeyId",
                      "The AWS Access Key Id you provided does not exist in our records.");
    }
    pthread_mutex_lock(&fs->lock);
    snprintf(region, sizeof(region), "%s", fs->region);
    pthread_mutex_unlock(&fs->lock);
    if (strcmp(a.region, region) != 0 || strcmp(a.service, "s3") != 0 ||
        strcmp(a.terminator, "aws4_request") != 0) {
        extra(r, "Region", region);
        return refuse(r, 400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; the region, service or "
                      "terminator of the credential scope is wrong."),
               -1;
    }
    if ((when = parse_amz_date(date)) < 0)
        return refuse(r, 403, "AccessDenied",
                      "AWS authentication requires a valid Date or x-amz-date header");
    if (strncmp(date, a.date, 8) != 0)
        return refuse(r, 400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; Invalid credential date. Date is "
                      "not the same as X-Amz-Date."),
               -1;
    if (when < time(NULL) - SKEW_S || when > time(NULL) + SKEW_S)
        return refuse(r, 403, "RequestTimeTooSkewed",
                      "The difference between the request time and the current time is too "
                      "large.");
    if (sha == NULL)
        return refuse(r, 400, "InvalidRequest",
                      "Missing required header for this request: x-amz-content-sha256");
    if (strcmp(sha, UNSIGNED) != 0 && !sha_hex_ok(sha))
        return refuse(r, 400, "InvalidArgument",
                      "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, or a valid sha256 value.");
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *n = req->headers[i].name;
        if ((strncasecmp(n, "x-amz-", 6) == 0 || strcasecmp(n, "host") == 0) &&
            !is_signed(a.signed_headers, n)) {
            extra(r, "HeadersNotSigned", n);
            return refuse(r, 403, "AccessDenied",
                          "There were headers present in the request which were not signed");
        }
    }

    cm_buf_init(&creq);
    cm_buf_init(&sts);
    cm_buf_init(&key);
    bad = canonical_request(&creq, req, &a, sha);
    digest_hex(EVP_sha256(), creq.data, creq.len, creq_hash);
    cm_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", date, a.date, a.region,
                  creq_hash);
    cm_buf_printf(&key, "AWS4%s", fs->secret);
    hmac(key.data, key.len, a.date, k1);
    hmac(k1, 32, a.region, k2);
    hmac(k2, 32, "s3", k1);
    hmac(k1, 32, "aws4_request", k2);
    hmac(k2, 32, sts.data, k1);
    hex_of(k1, 32, sig);
    if (bad != 0 || CRYPTO_memcmp(sig, a.signature, 64) != 0) {
        extra(r, "AWSAccessKeyId", a.access_key);
        extra(r, "StringToSign", sts.data);
        extra(r, "SignatureProvided", a.signature);
        extra(r, "CanonicalRequest", creq.data);
        refuse(r, 403, "SignatureDoesNotMatch",
               "The request signature we calculated does not match the signature you provided. "
               "Check your key and signing method.");
        bad = -1;
    } else if (strcmp(sha, UNSIGNED) != 0) {
        digest_hex(EVP_sha256(), req->body, req->body_len, body_hash);
        if (strcmp(body_hash, sha) != 0) {
            extra(r, "ClientComputedContentSHA256", sha);
            extra(r, "S3ComputedContentSHA256", body_hash);
            refuse(r, 400, "XAmzContentSHA256Mismatch",
                   "The provided 'x-amz-content-sha256' header does not match what was computed.");
            bad = -1;
        }
    }
    OPENSSL_cleanse(key.data, key.len);
    cm_buf_cleanup(&key);
    cm_buf_cleanup(&creq);
    cm_buf_cleanup(&sts);
    return bad;
}

/* --- the bucket --------------------------------------------------------------------------- */

/* Answers an authenticated request on key (decoded) of the bucket. */
static void serve(struct fakes3 *fs, const struct fakehttp_request *req,
                  struct fakehttp_response *resp, const char *key, struct refusal *r)
{
    struct object *o;
    char len[32], etag[40], id[32];

    if (key[0] == '\0') {
        refuse(r, 501, "NotImplemented",
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
        extra(r, "Method", req->method);
        extra(r, "ResourceType", "OBJECT");
        refuse(r, 405, "MethodNotAllowed",
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
        if (strcmp(req->method, "GET") == 0)
            fakehttp_reply(resp, 200, o->data, o->len);
    }
    pthread_mutex_unlock(&fs->lock);
    if (o == NULL) {
        extra(r, "Key", key);
        refuse(r, 404, "NoSuchKey", "The specified key does not exist.");
        s3_error(fs, resp, req->method, r, NULL);
        return;
    }
    common_headers(fs, resp, id);
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
    char *path = uri_decode(req->path), *slash;
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
        refuse(&r, 503, "SlowDown", "Please reduce your request rate.");
    } else if (fail != 0) {
        refuse(&r, 500, "InternalError", "We encountered an internal error. Please try again.");
    } else {
        slash = strchr(path + 1, '/');
        if (slash != NULL) {
            *slash = '\0';
            key = slash + 1;
        }
        if (path[0] != '/' || strcmp(path + 1, fs->bucket) != 0) {
            extra(&r, "BucketName", path[0] == '/' ? path + 1 : path);
            refuse(&r, 404, "NoSuchBucket", "The specified bucket does not exist");
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
    qsort(keys, (size_t)n, sizeof(*keys), strp_cmp);
    for (int i = 0; i < n; i++) {
        cm_buf_printf(out, "%s\n", keys[i]);
        free(keys[i]);
    }
    free(keys);
    return n;
}
