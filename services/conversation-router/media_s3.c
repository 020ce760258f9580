/*
 * media_s3.c - the S3 backend of the media store (not built yet: MEDIA_STORE=s3 is refused).
 */
#include "media_s3.h"

#include "common/log.h"

int media_s3_create(const struct media_s3_cfg *cfg, struct media_s3 **out)
{
    (void)cfg;
    *out = NULL;
    CM_ERROR("MEDIA_STORE=s3: the S3 backend is not built yet");
    return CM_INVALID;
}

void media_s3_destroy(struct media_s3 *s)
{
    (void)s;
}

int media_s3_put(struct media_s3 *s, const char *key, const void *data, size_t len)
{
    (void)s, (void)key, (void)data, (void)len;
    return CM_ERR;
}

int media_s3_get(struct media_s3 *s, const char *key, struct cm_buf *out)
{
    (void)s, (void)key, (void)out;
    return CM_ERR;
}

int media_s3_delete(struct media_s3 *s, const char *key)
{
    (void)s, (void)key;
    return CM_ERR;
}
