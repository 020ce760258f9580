/*
 * fakes3.h - an S3 stand-in for tests: one bucket on 127.0.0.1, speaking S3's REST wire
 * format for path-style PUT, GET, HEAD and DELETE Object, on top of fakehttp.
 *
 * It is as strict as S3 about what a client must get right: every request must carry an
 * AWS Signature Version 4 Authorization header, verified from the canonical request (method,
 * path, query, the signed headers), x-amz-date (within 15 minutes, its day that of the
 * scope), the scope's region and service (s3) and the HMAC chain from the secret; every
 * x-amz-* header must be signed, and x-amz-content-sha256 must be present and equal the
 * body's SHA-256 (or UNSIGNED-PAYLOAD). Refusals are S3's XML error documents
 * (Content-Type application/xml): 403 SignatureDoesNotMatch, InvalidAccessKeyId,
 * AccessDenied (no signature), RequestTimeTooSkewed; 400 XAmzContentSHA256Mismatch,
 * InvalidRequest (no x-amz-content-sha256), AuthorizationHeaderMalformed (wrong region);
 * 404 NoSuchBucket and NoSuchKey; 405 MethodNotAllowed. A PUT answers 200 with the ETag
 * (the quoted MD5 of the body), a DELETE 204 whether the key existed or not. A GET with a
 * Range header of one byte range answers 206 with those bytes and Content-Range, or 416
 * InvalidRange when it starts past the object's end; S3 ignores any other Range header.
 */
#ifndef TESTS_FAKES3_H
#define TESTS_FAKES3_H

#include <stddef.h>

#include "common/mem.h"
#include "fakehttp.h"

struct fakes3;

/*
 * Starts a stand-in on a free port of 127.0.0.1 holding one empty bucket, that accepts
 * requests signed with access_key and secret (copied) in any region given to
 * fakes3_set_region() (default us-east-1). Returns 0, or -1 (reason on stderr). *out is
 * stopped and freed with fakes3_stop(). Its endpoint (S3_ENDPOINT) is fakes3_url().
 */
int fakes3_start(struct fakes3 **out, const char *access_key, const char *secret,
                 const char *bucket);
/* Stops the server and frees everything. Accepts NULL. */
void fakes3_stop(struct fakes3 *fs);
/* "http://127.0.0.1:PORT", borrowed. */
const char *fakes3_url(const struct fakes3 *fs);
/* The underlying server, whose recorded requests (fakehttp_get/find) a test may read. */
struct fakehttp *fakes3_http(struct fakes3 *fs);

/* The region signatures must name (copied; before requests arrive). */
void fakes3_set_region(struct fakes3 *fs, const char *region);

/*
 * Answers the next n requests, whatever they are, with status: 503 SlowDown ("Please reduce
 * your request rate.") or 500 InternalError ("We encountered an internal error. Please try
 * again."), before looking at them. n 0 ends it.
 */
void fakes3_fail_next(struct fakes3 *fs, int n, int status);

/* Requests received with method ("PUT", "GET", ...; NULL: all), refusals included. */
int fakes3_count(struct fakes3 *fs, const char *method);
/* The most bytes of an object that one GET answered (a range's or the whole object's) since
 * the start or fakes3_reset_largest_get(). */
size_t fakes3_largest_get(struct fakes3 *fs);
void fakes3_reset_largest_get(struct fakes3 *fs);
/* Requests refused with 403 SignatureDoesNotMatch. */
int fakes3_bad_signatures(struct fakes3 *fs);
/* The Code of the last error answered ("" when none yet) into out (64 bytes). */
void fakes3_last_error(struct fakes3 *fs, char out[64]);

/* Copies the bytes stored under key into out (reset first). Returns 0, or -1 when none. */
int fakes3_object(struct fakes3 *fs, const char *key, struct cm_buf *out);
/* Stores len bytes under key, as a PUT would (for objects no client could upload). */
void fakes3_put_object(struct fakes3 *fs, const char *key, const void *data, size_t len);
/* The keys held, sorted, one per line, into out (reset first). Returns how many. */
int fakes3_keys(struct fakes3 *fs, struct cm_buf *out);

#endif
