/*
 * fakes3_int.h - what fakes3.c (the bucket) and fakes3_sigv4.c (the signature) share.
 */
#ifndef TESTS_FAKES3_INT_H
#define TESTS_FAKES3_INT_H

#include <stddef.h>

#include "common/mem.h"
#include "fakehttp.h"

/* What a refused request is answered: status, S3's Code and Message, and extra XML. */
struct refusal {
    int status;
    const char *code;
    const char *message;
    struct cm_buf extra; /* elements after <Message>, already escaped */
};

/* Sets what r answers; returns -1, for fakes3_verify()'s refusals. */
int fakes3_refuse(struct refusal *r, int status, const char *code, const char *message);
/* Adds <name>value</name> (value escaped) to a refusal's extra elements. */
void fakes3_extra(struct refusal *r, const char *name, const char *value);
/* Percent-decodes s into a new string (free it). */
char *fakes3_uri_decode(const char *s);
/* The quoted lowercase hex MD5 of data (S3's ETag of a single-part object) into out. */
void fakes3_etag(const void *data, size_t len, char out[40]);

/*
 * Verifies req's AWS Signature Version 4 as S3 does, for access_key and its secret in
 * region. Returns 0 when the request may proceed, or fills r (status, Code, Message and
 * S3's extra elements) and returns -1.
 */
int fakes3_verify(const struct fakehttp_request *req, const char *access_key, const char *secret,
                  const char *region, struct refusal *r);

#endif
