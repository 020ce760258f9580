/*
 * signed_request.c - Meta's signed_request (see signed_request.h), checked the way Meta's
 * own sample code does: split at the dot, HMAC-SHA256 the encoded payload with the app
 * secret, compare with the decoded signature, then read the JSON.
 *
 * The first code that reads what an outsider sends to the callback routes: everything is
 * bounded, nothing is decoded before it has to be, and the payload is parsed only once the
 * signature matched.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/crypto.h"
#include "signed_request.h"

static int fail(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return CM_INVALID;
}

/* A JSON number that is a whole number we can hold exactly (Meta's epoch seconds). */
static bool whole(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740991.0 || floor(v->valuedouble) != v->valuedouble)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

/* Reads the fields of a verified payload. */
static int read_payload(const cJSON *p, int64_t now, struct signed_request *out, const char **why)
{
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(p, "algorithm");
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(p, "user_id");
    const cJSON *issued = cJSON_GetObjectItemCaseSensitive(p, "issued_at");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(p, "expires");
    int64_t n;

    if (!cJSON_IsObject(p))
        return fail(why, "the payload is not a JSON object");
    if (!cJSON_IsString(alg) || strcasecmp(alg->valuestring, "HMAC-SHA256") != 0)
        return fail(why, "the algorithm is not HMAC-SHA256");
    if (expires != NULL && !cJSON_IsNull(expires)) {
        if (!whole(expires, &n))
            return fail(why, "expires is not a time");
        if (n != 0 && n < now)
            return fail(why, "the request has expired");
        out->expires = n;
    }
    /* A signed request does not expire by itself (expires is 0 in Meta's callbacks): without
     * a bound on its age, one captured request could be replayed for ever. */
    if (issued == NULL || cJSON_IsNull(issued))
        return fail(why, "issued_at is missing");
    if (!whole(issued, &n))
        return fail(why, "issued_at is not a time");
    if (n < now - SIGNED_REQUEST_MAX_AGE)
        return fail(why, "the request is stale: issued_at is older than 5 minutes");
    if (n > now + SIGNED_REQUEST_MAX_AGE)
        return fail(why, "issued_at is in the future");
    out->issued_at = n;
    if (cJSON_IsString(uid)) {
        size_t len = strlen(uid->valuestring);
        if (len == 0 || len > SIGNED_USER_ID_MAX)
            return fail(why, "user_id is empty or too long");
        memcpy(out->user_id, uid->valuestring, len + 1);
    } else if (whole(uid, &n)) {
        snprintf(out->user_id, sizeof(out->user_id), "%lld", (long long)n);
    } else {
        return fail(why, "user_id is missing");
    }
    return CM_OK;
}

int ingest_signed_request_parse(const char *input, size_t len, const char *secret,
                                const char *previous, int64_t now, struct signed_request *out,
                                const char **why)
{
    unsigned char given[CM_SHA256_LEN + 4], want[CM_SHA256_LEN];
    unsigned char payload[SIGNED_REQUEST_MAX];
    const char *dot, *enc;
    size_t sig_len, enc_len;
    int n, rc;
    bool ok;
    cJSON *json;

    memset(out, 0, sizeof(*out));
    if (why != NULL)
        *why = NULL;
    if (input == NULL || len == 0)
        return fail(why, "signed_request is missing");
    if (len > SIGNED_REQUEST_MAX)
        return fail(why, "signed_request is too long");
    dot = memchr(input, '.', len);
    if (dot == NULL)
        return fail(why, "signed_request is not <signature>.<payload>");
    sig_len = (size_t)(dot - input);
    enc = dot + 1;
    enc_len = len - sig_len - 1;
    if (sig_len == 0 || enc_len == 0 || memchr(enc, '.', enc_len) != NULL)
        return fail(why, "signed_request is not <signature>.<payload>");

    /* The signature: exactly 32 bytes once decoded. */
    n = cm_base64url_decode(input, sig_len, given, sizeof(given));
    if (n != CM_SHA256_LEN)
        return fail(why, "the signature is not a base64url HMAC-SHA256");

    /* Over the payload as sent; both secrets always, so timing says nothing of which. */
    if (secret == NULL || *secret == '\0')
        return CM_DENIED;
    cm_crypto_hmac_sha256(secret, strlen(secret), enc, enc_len, want);
    ok = cm_crypto_equal(given, want, sizeof(want));
    if (previous != NULL && *previous != '\0') {
        cm_crypto_hmac_sha256(previous, strlen(previous), enc, enc_len, want);
        ok = cm_crypto_equal(given, want, sizeof(want)) || ok;
    }
    if (!ok) {
        if (why != NULL)
            *why = "the signature does not match";
        return CM_DENIED;
    }

    n = cm_base64url_decode(enc, enc_len, payload, sizeof(payload));
    if (n <= 0)
        return fail(why, "the payload is not base64url");
    json = cJSON_ParseWithLength((const char *)payload, (size_t)n);
    if (json == NULL)
        return fail(why, "the payload is not JSON");
    rc = read_payload(json, now, out, why);
    cJSON_Delete(json);
    if (rc != CM_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}
