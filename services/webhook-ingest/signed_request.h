/*
 * signed_request.h - Meta's signed_request, as its data-deletion and deauthorize callbacks
 * send it: "<base64url signature>.<base64url JSON payload>", the signature being the
 * HMAC-SHA256 of the encoded payload (the part after the dot, exactly as sent) under the
 * app secret.
 */
#ifndef INGEST_SIGNED_REQUEST_H
#define INGEST_SIGNED_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Longer inputs are refused before any work (Meta's are a few hundred bytes). */
#define SIGNED_REQUEST_MAX 8192
#define SIGNED_USER_ID_MAX 256
/* How far issued_at may be from now, either way, in seconds (5 minutes; docs/retention.md). */
#define SIGNED_REQUEST_MAX_AGE 300

struct signed_request {
    char user_id[SIGNED_USER_ID_MAX + 1]; /* the app-scoped user id, as Meta sent it */
    int64_t issued_at;                    /* epoch seconds, within SIGNED_REQUEST_MAX_AGE */
    int64_t expires;                      /* 0 when absent or 0 (does not expire) */
};

/*
 * Verifies and reads len bytes of input. The signature must match the HMAC-SHA256 of the
 * encoded payload under secret, or under previous when it is not NULL (a secret rotation);
 * both are computed and compared in constant time whatever the outcome. base64url padding
 * is optional in both parts. Then the payload must be a JSON object whose algorithm is
 * HMAC-SHA256 (any case), whose expires, when present and not 0, is not before now (epoch
 * seconds), whose issued_at is present and at most SIGNED_REQUEST_MAX_AGE seconds from now
 * (older is stale: a replay; newer is a clock too far ahead), and whose user_id is a non-empty
 * string (or a whole number) of at most SIGNED_USER_ID_MAX characters.
 *
 * Returns CM_OK with out filled; CM_DENIED when the signature matches neither secret;
 * CM_INVALID for anything else (*why, when why is not NULL, gets a static reason naming
 * what is wrong; it never quotes the input). The payload is not looked at before the
 * signature verified. Never trusts the input: any bytes are safe.
 */
int ingest_signed_request_parse(const char *input, size_t len, const char *secret,
                                const char *previous, int64_t now, struct signed_request *out,
                                const char **why) CM_MUST_CHECK;

#endif
