/*
 * media_s3.h - the S3 backend of the media store: objects in one bucket of an
 * S3-compatible service, signed with AWS Signature Version 4 (libcurl's CURLOPT_AWS_SIGV4).
 * Only sealed bytes are ever written, so the bucket never holds Platform Data in the clear.
 * One struct media_s3 may be used by several threads at once. Calls block (up to the
 * timeout): make them from worker threads, never from the event loop.
 *
 * Addressing is path-style: an object is <endpoint>/<bucket>/<key>. Every request carries
 * x-amz-content-sha256 (the payload's SHA-256, which S3 requires and curl 7.88 does not add).
 */
#ifndef ROUTER_MEDIA_S3_H
#define ROUTER_MEDIA_S3_H

#include <stddef.h>

#include "common/err.h"
#include "common/keyring.h"
#include "common/mem.h"

/* The largest object: a sealed attachment of MEDIA_MAX_BYTES' ceiling (100 MiB). A larger
 * PUT is refused before it is sent, and a GET stops reading past it. */
#define MEDIA_S3_MAX_OBJECT (((size_t)100 << 20) + CM_KEYRING_OVERHEAD)

struct media_s3_cfg {
    const char *endpoint;   /* S3_ENDPOINT: scheme://host[:port], path-style addressing */
    const char *bucket;     /* S3_BUCKET */
    const char *region;     /* S3_REGION */
    const char *access_key; /* S3_ACCESS_KEY_ID */
    const char *secret_key; /* S3_SECRET_ACCESS_KEY (copied into locked memory) */
    long timeout_s;         /* one call's limit, retries included (0: 60 s) */
    int max_attempts;       /* attempts of a call that S3 answers 5xx or not at all (0: 3) */
};

struct media_s3;

/*
 * Checks cfg and makes a client; nothing is sent yet (S3 being down does not stop a start).
 * Returns CM_OK, or CM_INVALID (logged, naming the setting) for an unusable configuration:
 * an endpoint that is no http(s) URL, a bucket name S3 would refuse, a region or access key
 * of other characters, an empty secret. *out is freed with media_s3_destroy().
 */
int media_s3_create(const struct media_s3_cfg *cfg, struct media_s3 **out) CM_MUST_CHECK;
/* Frees s and wipes its copy of the secret. Accepts NULL. */
void media_s3_destroy(struct media_s3 *s);

/*
 * Each returns CM_OK; CM_UNAVAIL for what a retry may mend (no answer, 5xx, SlowDown), once
 * the call's own attempts (media_s3_cfg.max_attempts, with jittered backoff) are spent;
 * CM_DENIED when S3 refused the credentials or the signature (403: SignatureDoesNotMatch,
 * InvalidAccessKeyId, AccessDenied, RequestTimeTooSkewed); CM_TOOBIG for an object over
 * MEDIA_S3_MAX_OBJECT; CM_INVALID for a key other than [A-Za-z0-9/_.-] (no "//" or "..");
 * CM_ERR otherwise (NoSuchBucket, another 4xx). The reason is logged with S3's error Code
 * and the key, never the secret or the Authorization header.
 *
 * media_s3_put() stores len bytes of data (Content-Type application/octet-stream) under key,
 * replacing any object there. media_s3_get() replaces out's content with the object's bytes
 * (out must be initialised; on failure it is left as it was), or returns CM_NOTFOUND for
 * NoSuchKey. media_s3_get_range() does the same with len bytes of the object from offset
 * (a Range request: S3 answers 206 with them, fewer at the object's end).
 * media_s3_delete() returns CM_OK for a key already gone.
 */
int media_s3_put(struct media_s3 *s, const char *key, const void *data, size_t len) CM_MUST_CHECK;
int media_s3_get(struct media_s3 *s, const char *key, struct cm_buf *out) CM_MUST_CHECK;
int media_s3_get_range(struct media_s3 *s, const char *key, long long offset, long long len,
                       struct cm_buf *out) CM_MUST_CHECK;
int media_s3_delete(struct media_s3 *s, const char *key) CM_MUST_CHECK;

#endif
