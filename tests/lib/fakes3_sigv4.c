/*
 * fakes3_sigv4.c - AWS Signature Version 4 verified the way S3 documents it (see fakes3.h),
 * and S3's refusals. Digests and HMACs are OpenSSL's (EVP_Digest, HMAC), independent of
 * libcommon and of curl, which signs what the client sends.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fakes3_int.h"

#define SKEW_S   (15 * 60)
#define UNSIGNED "UNSIGNED-PAYLOAD"

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

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *fakes3_uri_decode(const char *s)
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

/* --- refusals --------------------------------------------------------------------------- */

int fakes3_refuse(struct refusal *r, int status, const char *code, const char *message)
{
    r->status = status;
    r->code = code;
    r->message = message;
    return -1;
}

void fakes3_extra(struct refusal *r, const char *name, const char *value)
{
    cm_buf_printf(&r->extra, "<%s>", name);
    cm_buf_html_escape(&r->extra, value);
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
        k = fakes3_uri_decode(t);
        v = fakes3_uri_decode(eq != NULL ? eq + 1 : "");
        cm_buf_init(&kb);
        cm_buf_init(&vb);
        uri_encode(&kb, k, false);
        uri_encode(&vb, v, false);
        cm_buf_puts(&kb, "");
        cm_buf_puts(&vb, "");
        ps = cm_xrealloc(ps, (size_t)(n + 1) * sizeof(*ps));
        ps[n].k = cm_buf_steal(&kb);
        ps[n].v = cm_buf_steal(&vb);
        n++;
        free(k);
        free(v);
    }
    if (n > 0)
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
    char *path = fakes3_uri_decode(req->path);
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

int fakes3_verify(const struct fakehttp_request *req, const char *access_key, const char *secret,
                  const char *region, struct refusal *r)
{
    const char *h = fakehttp_header(req, "Authorization");
    const char *date = fakehttp_header(req, "x-amz-date");
    const char *sha = fakehttp_header(req, "x-amz-content-sha256");
    char body_hash[65], creq_hash[65], sig[65];
    unsigned char k1[32], k2[32];
    struct auth a;
    struct cm_buf creq, sts, key;
    time_t when;
    int bad;

    if (h == NULL)
        return fakes3_refuse(r, 403, "AccessDenied", "Access Denied");
    if (parse_auth(h, &a) != 0)
        return fakes3_refuse(
                   r, 400, "AuthorizationHeaderMalformed",
                   "The authorization header is malformed; the Credential is mal-formed."),
               -1;
    if (strcmp(a.access_key, access_key) != 0) {
        fakes3_extra(r, "AWSAccessKeyId", a.access_key);
        return fakes3_refuse(r, 403, "InvalidAccessKeyId",
                             "The AWS Access Key Id you provided does not exist in our records.");
    }
    if (strcmp(a.region, region) != 0 || strcmp(a.service, "s3") != 0 ||
        strcmp(a.terminator, "aws4_request") != 0) {
        fakes3_extra(r, "Region", region);
        return fakes3_refuse(r, 400, "AuthorizationHeaderMalformed",
                             "The authorization header is malformed; the region, service or "
                             "terminator of the credential scope is wrong."),
               -1;
    }
    if ((when = parse_amz_date(date)) < 0)
        return fakes3_refuse(r, 403, "AccessDenied",
                             "AWS authentication requires a valid Date or x-amz-date header");
    if (strncmp(date, a.date, 8) != 0)
        return fakes3_refuse(
                   r, 400, "AuthorizationHeaderMalformed",
                   "The authorization header is malformed; Invalid credential date. Date is "
                   "not the same as X-Amz-Date."),
               -1;
    if (when < time(NULL) - SKEW_S || when > time(NULL) + SKEW_S)
        return fakes3_refuse(r, 403, "RequestTimeTooSkewed",
                             "The difference between the request time and the current time is too "
                             "large.");
    if (sha == NULL)
        return fakes3_refuse(r, 400, "InvalidRequest",
                             "Missing required header for this request: x-amz-content-sha256");
    if (strcmp(sha, UNSIGNED) != 0 && !sha_hex_ok(sha))
        return fakes3_refuse(
            r, 400, "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, or a valid sha256 value.");
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *n = req->headers[i].name;
        if ((strncasecmp(n, "x-amz-", 6) == 0 || strcasecmp(n, "host") == 0) &&
            !is_signed(a.signed_headers, n)) {
            fakes3_extra(r, "HeadersNotSigned", n);
            return fakes3_refuse(r, 403, "AccessDenied",
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
    cm_buf_printf(&key, "AWS4%s", secret);
    hmac(key.data, key.len, a.date, k1);
    hmac(k1, 32, a.region, k2);
    hmac(k2, 32, "s3", k1);
    hmac(k1, 32, "aws4_request", k2);
    hmac(k2, 32, sts.data, k1);
    hex_of(k1, 32, sig);
    if (bad != 0 || CRYPTO_memcmp(sig, a.signature, 64) != 0) {
        fakes3_extra(r, "AWSAccessKeyId", a.access_key);
        fakes3_extra(r, "StringToSign", sts.data);
        fakes3_extra(r, "SignatureProvided", a.signature);
        fakes3_extra(r, "CanonicalRequest", creq.data);
        fakes3_refuse(
            r, 403, "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.");
        bad = -1;
    } else if (strcmp(sha, UNSIGNED) != 0) {
        digest_hex(EVP_sha256(), req->body, req->body_len, body_hash);
        if (strcmp(body_hash, sha) != 0) {
            fakes3_extra(r, "ClientComputedContentSHA256", sha);
            fakes3_extra(r, "S3ComputedContentSHA256", body_hash);
            fakes3_refuse(
                r, 400, "XAmzContentSHA256Mismatch",
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

void fakes3_etag(const void *data, size_t len, char out[40])
{
    char md5[33];

    digest_hex(EVP_md5(), data, len, md5);
    snprintf(out, 40, "\"%s\"", md5);
}
