/*
 * test_media_s3 - the router's S3 client (services/conversation-router/media_s3.c) against
 * the S3 stand-in (tests/lib/fakes3.c) over real HTTP on 127.0.0.1: a round trip of a few MiB
 * of random bytes with the digest S3 requires, NoSuchKey, deletes that find nothing, a wrong
 * secret or key refused by a fake that verifies every signature, SlowDown and InternalError
 * retried, an unreachable endpoint, objects over the cap refused both ways, keys and settings
 * refused, several threads on one client, and logs that name the Code and the key but never
 * the secret.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "common/crypto.h"
#include "common/httpc.h"
#include "common/log.h"
#include "fakes3.h"
#include "harness.h"
#include "media_s3.h"

#define AK     "AKIAFAKES3TEST0001"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYfakes3secret"
#define BUCKET "doms-media"

static struct fakes3 *fs;
static struct media_s3 *s3;

static struct media_s3 *client(const char *endpoint, const char *bucket, const char *region,
                               const char *ak, const char *secret, int attempts)
{
    struct media_s3_cfg cfg = {.endpoint = endpoint,
                               .bucket = bucket,
                               .region = region,
                               .access_key = ak,
                               .secret_key = secret,
                               .timeout_s = 30,
                               .max_attempts = attempts};
    struct media_s3 *s = NULL;

    CHECK_INT(media_s3_create(&cfg, &s), CM_OK);
    return s;
}

static void random_bytes(struct cm_buf *b, size_t len)
{
    cm_buf_reset(b);
    cm_buf_reserve(b, len);
    cm_crypto_random(b->data, len);
    b->len = len;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[CM_SHA256_LEN];

    cm_crypto_sha256(data, len, d);
    cm_hex_encode(d, sizeof(d), out);
}

/* S3's ETag of a single-part object: the quoted hex MD5 of its bytes. */
static void md5_etag(const void *data, size_t len, char out[40])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[33];

    EVP_Digest(data, len, d, &n, EVP_md5(), NULL);
    cm_hex_encode(d, 16, hex);
    snprintf(out, 40, "\"%s\"", hex);
}

static char last_error[64];
static const char *fake_error(void)
{
    fakes3_last_error(fs, last_error);
    return last_error;
}

/* --- stderr captured, to read what the client logged ------------------------------------ */

static int saved_stderr = -1;
static char log_path[600];

static void capture_start(void)
{
    int fd;

    snprintf(log_path, sizeof(log_path), "%s/client.log", th_tmpdir());
    fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    cm_log_init("test_media_s3", CM_LVL_DEBUG, 1);
}

/* Ends the capture; returns what was logged (free it). */
static char *capture_end(void)
{
    cm_log_init("test_media_s3", CM_LVL_INFO, 1);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    return th_read_file(log_path);
}

/* --- the tests ------------------------------------------------------------------------ */

/* A few MiB of random bytes stored and read back intact, with the headers S3 requires. */
static void test_round_trip(void)
{
    const size_t len = (3u << 20) + 17;
    struct cm_buf data, got, held;
    const struct fakehttp_request *put, *get;
    char want[65], clen[32];

    cm_buf_init(&data);
    cm_buf_init(&got);
    cm_buf_init(&held);
    random_bytes(&data, len);
    CHECK_INT(media_s3_put(s3, "media/att_roundtrip", data.data, data.len), CM_OK);
    CHECK_INT(fakes3_object(fs, "media/att_roundtrip", &held), 0);
    CHECK(held.len == len && memcmp(held.data, data.data, len) == 0);
    CHECK_INT(media_s3_get(s3, "media/att_roundtrip", &got), CM_OK);
    CHECK_INT((long long)got.len, (long long)len);
    CHECK(got.len == len && memcmp(got.data, data.data, len) == 0);
    CHECK_INT(fakes3_count(fs, "PUT"), 1);
    CHECK_INT(fakes3_count(fs, "GET"), 1);

    /* What the fake received: path-style URL, the payload's digest, type and length. */
    put = fakehttp_find(fakes3_http(fs), "/" BUCKET "/media/att_roundtrip");
    CHECK(put != NULL);
    CHECK_STR(fakehttp_get(fakes3_http(fs), 0)->method, "PUT");
    put = fakehttp_get(fakes3_http(fs), 0);
    sha256_hex(data.data, len, want);
    CHECK_STR(fakehttp_header(put, "x-amz-content-sha256"), want);
    sha256_hex(put->body, put->body_len, want);
    CHECK_STR(fakehttp_header(put, "x-amz-content-sha256"), want);
    CHECK_STR(fakehttp_header(put, "Content-Type"), "application/octet-stream");
    snprintf(clen, sizeof(clen), "%zu", len);
    CHECK_STR(fakehttp_header(put, "Content-Length"), clen);
    CHECK_CONTAINS(fakehttp_header(put, "Authorization"), "AWS4-HMAC-SHA256 Credential=" AK "/");
    CHECK_CONTAINS(fakehttp_header(put, "Authorization"), "/us-east-1/s3/aws4_request");
    CHECK_CONTAINS(fakehttp_header(put, "Authorization"),
                   "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date");
    get = fakehttp_get(fakes3_http(fs), 1);
    CHECK_STR(get->method, "GET");
    sha256_hex("", 0, want);
    CHECK_STR(fakehttp_header(get, "x-amz-content-sha256"), want);

    cm_buf_cleanup(&data);
    cm_buf_cleanup(&got);
    cm_buf_cleanup(&held);
}

/*
 * A range of the object: a signed Range header, S3's 206 with those bytes only; a range that
 * runs past the end gives what is there; one that starts past it is S3's 416 InvalidRange.
 */
static void test_range(void)
{
    const size_t len = (1u << 20) + 100;
    struct cm_buf data, got;
    const struct fakehttp_request *get;
    int gets;

    cm_buf_init(&data);
    cm_buf_init(&got);
    random_bytes(&data, len);
    CHECK_INT(media_s3_put(s3, "media/att_range", data.data, data.len), CM_OK);
    gets = fakes3_count(fs, "GET");
    CHECK_INT(media_s3_get_range(s3, "media/att_range", 524321, 524321, &got), CM_OK);
    CHECK_INT((long long)got.len, 524321);
    CHECK(got.len == 524321 && memcmp(got.data, data.data + 524321, got.len) == 0);
    get = fakehttp_get(fakes3_http(fs), fakehttp_count(fakes3_http(fs)) - 1);
    CHECK_STR(get->method, "GET");
    CHECK_STR(fakehttp_header(get, "Range"), "bytes=524321-1048641");
    CHECK_CONTAINS(fakehttp_header(get, "Authorization"), "range");
    CHECK_INT(fakes3_bad_signatures(fs), 0);

    /* The last, shorter piece: what is left. */
    CHECK_INT(media_s3_get_range(s3, "media/att_range", 1048642, 524321, &got), CM_OK);
    CHECK_INT((long long)got.len, (long long)(len - 1048642));
    CHECK(memcmp(got.data, data.data + 1048642, got.len) == 0);
    CHECK_INT(fakes3_count(fs, "GET"), gets + 2);

    /* Past the end: InvalidRange, an error that no retry mends. */
    capture_start();
    CHECK_INT(media_s3_get_range(s3, "media/att_range", (long long)len, 10, &got), CM_ERR);
    free(capture_end());
    CHECK_STR(fake_error(), "InvalidRange");
    CHECK_INT(media_s3_get_range(s3, "media/att_range", -1, 10, &got), CM_INVALID);
    CHECK_INT(media_s3_delete(s3, "media/att_range"), CM_OK);
    cm_buf_cleanup(&data);
    cm_buf_cleanup(&got);
}

/* NoSuchKey: CM_NOTFOUND, the buffer untouched; the log names the Code and the key. */
static void test_missing_key(void)
{
    struct cm_buf out;
    char *log;

    cm_buf_init(&out);
    cm_buf_puts(&out, "before");
    capture_start();
    CHECK_INT(media_s3_get(s3, "media/att_missing", &out), CM_NOTFOUND);
    log = capture_end();
    CHECK_STR(fake_error(), "NoSuchKey");
    CHECK_STR(out.data, "before");
    CHECK_CONTAINS(log, "NoSuchKey");
    CHECK_CONTAINS(log, "media/att_missing");
    free(log);
    cm_buf_cleanup(&out);
}

/* DELETE removes the object; a second one, of a key now missing, is success as well. */
static void test_delete_twice(void)
{
    struct cm_buf held, keys;
    int deletes = fakes3_count(fs, "DELETE");

    cm_buf_init(&held);
    cm_buf_init(&keys);
    CHECK_INT(media_s3_put(s3, "media/att_doomed", "sealed", 6), CM_OK);
    CHECK_INT(fakes3_keys(fs, &keys), 2);
    CHECK_STR(keys.data, "media/att_doomed\nmedia/att_roundtrip\n");
    CHECK_INT(media_s3_delete(s3, "media/att_doomed"), CM_OK);
    CHECK_INT(fakes3_object(fs, "media/att_doomed", &held), -1);
    CHECK_INT(media_s3_delete(s3, "media/att_doomed"), CM_OK);
    CHECK_INT(fakes3_count(fs, "DELETE"), deletes + 2);
    CHECK_INT(fakes3_keys(fs, &keys), 1);
    cm_buf_cleanup(&held);
    cm_buf_cleanup(&keys);
}

/*
 * A wrong secret: the fake computes another signature and refuses (403
 * SignatureDoesNotMatch), which proves it verifies; CM_DENIED, nothing stored, and the log
 * names the Code and the key but neither secret nor any Authorization header.
 */
static void test_wrong_secret(void)
{
    struct media_s3 *bad =
        client(fakes3_url(fs), BUCKET, "us-east-1", AK, "not-the-secret-XYZZY", 0);
    struct media_s3 *stranger =
        client(fakes3_url(fs), BUCKET, "us-east-1", "AKIAUNKNOWN", SECRET, 0);
    struct cm_buf out, held;
    int before = fakes3_bad_signatures(fs), puts = fakes3_count(fs, "PUT");
    char *log;

    cm_buf_init(&out);
    cm_buf_init(&held);
    capture_start();
    CHECK_INT(media_s3_put(bad, "media/att_forged", "sealed", 6), CM_DENIED);
    log = capture_end();
    CHECK_STR(fake_error(), "SignatureDoesNotMatch");
    CHECK_INT(fakes3_bad_signatures(fs), before + 1);
    /* Refused at once: a 403 is not retried. */
    CHECK_INT(fakes3_count(fs, "PUT"), puts + 1);
    CHECK_INT(fakes3_object(fs, "media/att_forged", &held), -1);
    CHECK_CONTAINS(log, "SignatureDoesNotMatch");
    CHECK_CONTAINS(log, "media/att_forged");
    CHECK(strstr(log, "XYZZY") == NULL);
    CHECK(strstr(log, "fakes3secret") == NULL);
    CHECK(strstr(log, "Authorization") == NULL);
    CHECK(strstr(log, "Signature=") == NULL);
    free(log);

    CHECK_INT(media_s3_get(bad, "media/att_roundtrip", &out), CM_DENIED);
    CHECK_INT(fakes3_bad_signatures(fs), before + 2);
    CHECK_INT(media_s3_delete(bad, "media/att_roundtrip"), CM_DENIED);
    CHECK_INT(fakes3_object(fs, "media/att_roundtrip", &held), 0);

    CHECK_INT(media_s3_get(stranger, "media/att_roundtrip", &out), CM_DENIED);
    CHECK_STR(fake_error(), "InvalidAccessKeyId");
    CHECK_INT(fakes3_bad_signatures(fs), before + 3);
    CHECK_INT((long long)out.len, 0);

    media_s3_destroy(bad);
    media_s3_destroy(stranger);
    cm_buf_cleanup(&out);
    cm_buf_cleanup(&held);
}

/* A region other than the bucket's, or another bucket: refused, not taken for an outage. */
static void test_wrong_region_and_bucket(void)
{
    struct media_s3 *elsewhere = client(fakes3_url(fs), BUCKET, "eu-west-1", AK, SECRET, 0);
    struct media_s3 *other = client(fakes3_url(fs), "other-bucket", "us-east-1", AK, SECRET, 0);
    struct cm_buf out;

    cm_buf_init(&out);
    CHECK_INT(media_s3_get(elsewhere, "media/att_roundtrip", &out), CM_ERR);
    CHECK_STR(fake_error(), "AuthorizationHeaderMalformed");
    CHECK_INT(media_s3_get(other, "media/att_roundtrip", &out), CM_ERR);
    CHECK_STR(fake_error(), "NoSuchBucket");
    media_s3_destroy(elsewhere);
    media_s3_destroy(other);
    cm_buf_cleanup(&out);
}

/*
 * SlowDown on every attempt of a call: CM_UNAVAIL after the 3 attempts; the next call
 * succeeds. One InternalError alone is absorbed by the call's own retry.
 */
static void test_slowdown(void)
{
    struct cm_buf out, held;
    int puts = fakes3_count(fs, "PUT"), gets;
    char *log;

    cm_buf_init(&out);
    cm_buf_init(&held);
    fakes3_fail_next(fs, 3, 503);
    capture_start();
    CHECK_INT(media_s3_put(s3, "media/att_slow", "sealed-slow", 11), CM_UNAVAIL);
    log = capture_end();
    CHECK_STR(fake_error(), "SlowDown");
    CHECK_INT(fakes3_count(fs, "PUT"), puts + 3);
    CHECK_INT(fakes3_object(fs, "media/att_slow", &held), -1);
    CHECK_CONTAINS(log, "SlowDown");
    CHECK_CONTAINS(log, "media/att_slow");
    free(log);

    CHECK_INT(media_s3_put(s3, "media/att_slow", "sealed-slow", 11), CM_OK);
    CHECK_INT(fakes3_object(fs, "media/att_slow", &held), 0);
    CHECK_STR(held.data, "sealed-slow");

    gets = fakes3_count(fs, "GET");
    fakes3_fail_next(fs, 1, 500);
    CHECK_INT(media_s3_get(s3, "media/att_slow", &out), CM_OK);
    CHECK_STR(out.data, "sealed-slow");
    CHECK_INT(fakes3_count(fs, "GET"), gets + 2);

    /* A client of one attempt hands the first SlowDown to its caller. */
    {
        struct media_s3 *once = client(fakes3_url(fs), BUCKET, "us-east-1", AK, SECRET, 1);
        fakes3_fail_next(fs, 1, 503);
        CHECK_INT(media_s3_delete(once, "media/att_slow"), CM_UNAVAIL);
        CHECK_INT(media_s3_delete(once, "media/att_slow"), CM_OK);
        media_s3_destroy(once);
    }
    cm_buf_cleanup(&out);
    cm_buf_cleanup(&held);
}

/* Nothing listening: CM_UNAVAIL. */
static void test_unreachable(void)
{
    char url[64];
    struct media_s3 *gone;
    struct cm_buf out;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", th_free_port());
    gone = client(url, BUCKET, "us-east-1", AK, SECRET, 1);
    cm_buf_init(&out);
    CHECK_INT(media_s3_get(gone, "media/att_roundtrip", &out), CM_UNAVAIL);
    CHECK_INT(media_s3_put(gone, "media/att_roundtrip", "x", 1), CM_UNAVAIL);
    media_s3_destroy(gone);
    cm_buf_cleanup(&out);
}

/*
 * The cap is a sealed 100 MiB attachment: a larger PUT is refused before anything is sent,
 * a larger object is refused on GET; one of exactly the cap goes through.
 */
static void test_cap(void)
{
    const size_t cap = MEDIA_S3_MAX_OBJECT;
    char *big = cm_xcalloc(1, cap + 1);
    int puts = fakes3_count(fs, "PUT");
    struct cm_buf out;

    cm_buf_init(&out);
    CHECK_INT(media_s3_put(s3, "media/att_huge", big, cap + 1), CM_TOOBIG);
    CHECK_INT(fakes3_count(fs, "PUT"), puts);

    big[cap] = 'x';
    fakes3_put_object(fs, "media/att_huge", big, cap + 1);
    cm_buf_puts(&out, "before");
    CHECK_INT(media_s3_get(s3, "media/att_huge", &out), CM_TOOBIG);
    CHECK_STR(out.data, "before");

    fakes3_put_object(fs, "media/att_huge", big, cap);
    CHECK_INT(media_s3_get(s3, "media/att_huge", &out), CM_OK);
    CHECK(out.len == cap);
    CHECK_INT(media_s3_delete(s3, "media/att_huge"), CM_OK);
    free(big);
    cm_buf_cleanup(&out);
}

/* Keys that would leave "media/" or need escaping are refused before any request. */
static void test_bad_keys(void)
{
    const char *keys[] = {"",          "/media/x",  "media/../x", "media//x",
                          "media/a b", "media/x?y", "media/x%2F"};
    int all = fakes3_count(fs, NULL);
    struct cm_buf out;

    cm_buf_init(&out);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        CHECK_INT(media_s3_put(s3, keys[i], "x", 1), CM_INVALID);
        CHECK_INT(media_s3_get(s3, keys[i], &out), CM_INVALID);
    }
    CHECK_INT(fakes3_count(fs, NULL), all);
    cm_buf_cleanup(&out);
}

/* Settings S3 could never accept are refused when the client is made. */
static void test_bad_settings(void)
{
    struct {
        const char *endpoint, *bucket, *region, *ak, *secret;
    } bad[] = {
        {"ftp://127.0.0.1:1", BUCKET, "us-east-1", AK, SECRET},
        {"http://", BUCKET, "us-east-1", AK, SECRET},
        {"http://127.0.0.1:1/?x=1", BUCKET, "us-east-1", AK, SECRET},
        {"http://127.0.0.1:1", "Doms_Media", "us-east-1", AK, SECRET},
        {"http://127.0.0.1:1", "ab", "us-east-1", AK, SECRET},
        {"http://127.0.0.1:1", BUCKET, "us:east", AK, SECRET},
        {"http://127.0.0.1:1", BUCKET, "", AK, SECRET},
        {"http://127.0.0.1:1", BUCKET, "us-east-1", "AK/ID", SECRET},
        {"http://127.0.0.1:1", BUCKET, "us-east-1", AK, ""},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct media_s3_cfg cfg = {.endpoint = bad[i].endpoint,
                                   .bucket = bad[i].bucket,
                                   .region = bad[i].region,
                                   .access_key = bad[i].ak,
                                   .secret_key = bad[i].secret};
        struct media_s3 *s = NULL;
        CHECK_MSG(media_s3_create(&cfg, &s) == CM_INVALID, "setting %zu accepted", i);
        CHECK(s == NULL);
        media_s3_destroy(s);
    }
}

/*
 * The fake refuses what S3 refuses, signed by curl itself through httpc: no
 * x-amz-content-sha256 (curl 7.88 adds none: S3's InvalidRequest), or one that is not the
 * body's (XAmzContentSHA256Mismatch).
 */
static void test_fake_is_strict(void)
{
    char url[256], hdr[100], want[65], etag[40];
    const char *hdrs[2] = {hdr, NULL};
    struct cm_httpc_request req = {.method = "PUT",
                                   .body = "the body",
                                   .body_len = 8,
                                   .max_attempts = 1,
                                   .aws_sigv4 = "aws:amz:us-east-1:s3",
                                   .username = AK,
                                   .password = SECRET};
    struct cm_httpc_response resp;
    const struct fakehttp_request *seen;
    struct th_resp raw;

    snprintf(url, sizeof(url), "%s/%s/media/att_strict", fakes3_url(fs), BUCKET);
    req.url = url;
    cm_httpc_response_init(&resp);
    fakehttp_clear(fakes3_http(fs));
    CHECK_INT(cm_httpc_do(NULL, &req, &resp), CM_OK);
    seen = fakehttp_get(fakes3_http(fs), 0);
    printf("curl %s sends x-amz-content-sha256 by itself: %s\n",
           curl_version_info(CURLVERSION_NOW)->version,
           seen != NULL && fakehttp_header(seen, "x-amz-content-sha256") != NULL ? "yes" : "no");
    if (seen != NULL && fakehttp_header(seen, "x-amz-content-sha256") == NULL) {
        CHECK_INT(resp.status, 400);
        CHECK_STR(fake_error(), "InvalidRequest");
        CHECK_CONTAINS(resp.body.data, "x-amz-content-sha256");
    }

    /* Signed and with the body's digest: stored, the ETag the quoted MD5 of the body. */
    sha256_hex("the body", 8, want);
    snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", want);
    req.headers = hdrs;
    CHECK_INT(cm_httpc_do(NULL, &req, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    md5_etag("the body", 8, etag);
    CHECK_STR(cm_httpc_header(&resp, "ETag"), etag);

    sha256_hex("another body", 12, want);
    snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", want);
    req.headers = hdrs;
    CHECK_INT(cm_httpc_do(NULL, &req, &resp), CM_OK);
    CHECK_INT(resp.status, 400);
    CHECK_STR(fake_error(), "XAmzContentSHA256Mismatch");
    CHECK_STR(resp.content_type, "application/xml");
    CHECK_CONTAINS(resp.body.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    CHECK_CONTAINS(resp.body.data, "<RequestId>");
    cm_httpc_response_cleanup(&resp);

    /* Unsigned: AccessDenied. HEAD of a stored object: its length and ETag, no body. */
    CHECK_INT(th_http(&raw, "GET", url, NULL, NULL, 0), 403);
    CHECK_CONTAINS(raw.body.data, "<Code>AccessDenied</Code>");
    th_resp_cleanup(&raw);
    req.method = "HEAD";
    req.body = NULL;
    req.body_len = 0;
    sha256_hex("", 0, want);
    snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", want);
    snprintf(url, sizeof(url), "%s/%s/media/att_roundtrip", fakes3_url(fs), BUCKET);
    CHECK_INT(cm_httpc_do(NULL, &req, &resp), CM_OK);
    CHECK_INT(resp.status, 200);
    CHECK_STR(cm_httpc_header(&resp, "Content-Length"), "3145745");
    CHECK(cm_httpc_header(&resp, "ETag") != NULL && cm_httpc_header(&resp, "ETag")[0] == '"');
    cm_httpc_response_cleanup(&resp);
}

struct worker {
    int n, ok;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct cm_buf out;
    char key[64], body[64];

    cm_buf_init(&out);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "media/att_t%d_%d", w->n, i);
        snprintf(body, sizeof(body), "sealed %d %d", w->n, i);
        if (media_s3_put(s3, key, body, strlen(body)) == CM_OK &&
            media_s3_get(s3, key, &out) == CM_OK && strcmp(out.data, body) == 0 &&
            media_s3_delete(s3, key) == CM_OK)
            w->ok++;
    }
    cm_buf_cleanup(&out);
    return NULL;
}

/* One client, four threads at once. */
static void test_threads(void)
{
    pthread_t t[4];
    struct worker w[4];

    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.n = i};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(w[i].ok, 10);
    }
}

int main(void)
{
    th_init("media_s3");
    cm_log_init("test_media_s3", CM_LVL_INFO, 1);
    if (fakes3_start(&fs, AK, SECRET, BUCKET) != 0) {
        printf("FAIL: fakes3_start\n");
        return 1;
    }
    s3 = client(fakes3_url(fs), BUCKET, "us-east-1", AK, SECRET, 0);
    RUN(test_round_trip);
    RUN(test_range);
    RUN(test_missing_key);
    RUN(test_delete_twice);
    RUN(test_wrong_secret);
    RUN(test_wrong_region_and_bucket);
    RUN(test_slowdown);
    RUN(test_unreachable);
    RUN(test_cap);
    RUN(test_bad_keys);
    RUN(test_bad_settings);
    RUN(test_fake_is_strict);
    RUN(test_threads);
    media_s3_destroy(s3);
    fakes3_stop(fs);
    return check_summary();
}
