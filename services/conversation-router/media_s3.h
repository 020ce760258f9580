/*
 * media_s3.h - the S3 backend of the media store: objects in one bucket of an
 * S3-compatible service, signed with AWS Signature Version 4 (libcurl's CURLOPT_AWS_SIGV4).
 * Only sealed bytes are ever written, so the bucket never holds Platform Data in the clear.
 * One struct media_s3 may be used by several threads at once.
 */
#ifndef ROUTER_MEDIA_S3_H
#define ROUTER_MEDIA_S3_H

#include <stddef.h>

#include "common/err.h"
#include "common/mem.h"

struct media_s3_cfg {
    const char *endpoint;   /* S3_ENDPOINT: scheme://host[:port], path-style addressing */
    const char *bucket;     /* S3_BUCKET */
    const char *region;     /* S3_REGION */
    const char *access_key; /* S3_ACCESS_KEY_ID */
    const char *secret_key; /* S3_SECRET_ACCESS_KEY */
    long timeout_s;         /* one request's limit */
};

struct media_s3;

/* Returns CM_OK, or CM_INVALID (logged, naming the setting) for an unusable configuration. */
int media_s3_create(const struct media_s3_cfg *cfg, struct media_s3 **out) CM_MUST_CHECK;
void media_s3_destroy(struct media_s3 *s);

/*
 * Each returns CM_OK; CM_UNAVAIL for what a retry may mend (no answer, 5xx, SlowDown);
 * CM_DENIED when S3 refused the credentials or the signature; CM_ERR otherwise. The reason is
 * logged without the secret. media_s3_get() returns CM_NOTFOUND for NoSuchKey, and
 * media_s3_delete() CM_OK for a key already gone.
 */
int media_s3_put(struct media_s3 *s, const char *key, const void *data, size_t len) CM_MUST_CHECK;
int media_s3_get(struct media_s3 *s, const char *key, struct cm_buf *out) CM_MUST_CHECK;
int media_s3_delete(struct media_s3 *s, const char *key) CM_MUST_CHECK;

#endif
