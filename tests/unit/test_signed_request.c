/*
 * test_signed_request - Meta's signed_request, against requests built the way Meta builds
 * them. The vectors were computed with
 *     B=$(printf %s "$PAYLOAD" | basenc --base64url | tr -d '=\n')
 *     printf %s "$B" | openssl dgst -sha256 -hmac test-app-secret -binary | basenc --base64url
 * (the signature keeps basenc's '=' padding; Meta omits it: both must verify).
 */
#include <string.h>

#include "check.h"
#include "signed_request.h"

#define SECRET "test-app-secret"
#define OLD    "old-app-secret"
#define NOW    1732870100LL

/* {"algorithm":"HMAC-SHA256","expires":0,"issued_at":1732870000,"user_id":"17841400000000123"} */
#define P_OK                                                                                       \
    "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjAsImlzc3VlZF9hdCI6MTczMjg3MDAwMCwidXNlcl9p" \
    "ZCI6IjE3ODQxNDAwMDAwMDAwMTIzIn0"
#define S_OK     "A1EGTaz-fjrL7vI9oCr1Ww8852d4bU2yWkD5EoY7v0Q="
#define S_OK_OLD "hr8FLXDwghmOuRSp6fawTd3ZmbgZkyOAeYubqh-zXI8="

/* Meta's documented example: expired long ago.
 * {"algorithm":"HMAC-SHA256","expires":1291840400,"issued_at":1291836800,"user_id":"218471"} */
#define P_EXPIRED                                                                                  \
    "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOTE4NDA0MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgw" \
    "MCwidXNlcl9pZCI6IjIxODQ3MSJ9"
#define S_EXPIRED "O0DHdg8bEw_-kLcnL9yZ0j9JXbELJFPZOzAkfn8J45w="

/* {"algorithm":"HMAC-SHA1","issued_at":1732870000,"user_id":"17841400000000123"} */
#define P_SHA1                                                                                     \
    "eyJhbGdvcml0aG0iOiJITUFDLVNIQTEiLCJpc3N1ZWRfYXQiOjE3MzI4NzAwMDAsInVzZXJfaWQiOiIxNzg0MTQwMDAw" \
    "MDAwMDEyMyJ9"
#define S_SHA1 "sXAidlE4CvJo2t4r427nFb4BJh4Gx4cs8_n_9x2HSmM="

/* {"algorithm":"HMAC-SHA256","issued_at":1732870000} */
#define P_NO_USER "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImlzc3VlZF9hdCI6MTczMjg3MDAwMH0"
#define S_NO_USER "2l765ToNHSmqWaslWe7FwXHxzgzFxj9YvI1yHoVrlvY="

/* {"algorithm":"HMAC-SHA256","expires":0,"user_id":"17841400000000123"}: no issued_at */
#define P_NO_ISSUED                                                                                \
    "eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjAsInVzZXJfaWQiOiIxNzg0MTQwMDAwMDAwMDEyMyJ9"
#define S_NO_ISSUED "pviejkZCouvXEhdAPzWThkxe341_MntFD0G5_tz6bi8="

/* {"algorithm":"hmac-sha256","expires":4102444800,"issued_at":1732870000,
 *  "user_id":17841400000000} : lower-case algorithm, a numeric user id, a future expiry */
#define P_NUMERIC                                                                                  \
    "eyJhbGdvcml0aG0iOiJobWFjLXNoYTI1NiIsImV4cGlyZXMiOjQxMDI0NDQ4MDAsImlzc3VlZF9hdCI6MTczMjg3MDAw" \
    "MCwidXNlcl9pZCI6MTc4NDE0MDAwMDAwMDB9"
#define S_NUMERIC "-XCOHDTYw0ykL_9bUpn86AsClrLXQilwhVnBiozVvV4="

static int parse(const char *in, const char *previous, struct signed_request *sr, const char **why)
{
    return ingest_signed_request_parse(in, strlen(in), SECRET, previous, NOW, sr, why);
}

static void test_meta_built(void)
{
    struct signed_request sr;
    const char *why = "x";
    char unpadded[sizeof(S_OK)];

    CHECK_INT(parse(S_OK "." P_OK, NULL, &sr, &why), CM_OK);
    CHECK_STR(sr.user_id, "17841400000000123");
    CHECK_INT(sr.issued_at, 1732870000);
    CHECK_INT(sr.expires, 0);
    CHECK(why == NULL);
    /* Meta sends the signature without padding. */
    snprintf(unpadded, sizeof(unpadded), "%.*s", (int)strlen(S_OK) - 1, S_OK);
    {
        char in[512];
        snprintf(in, sizeof(in), "%s.%s", unpadded, P_OK);
        CHECK_INT(parse(in, NULL, &sr, NULL), CM_OK);
    }
    CHECK_INT(parse(S_NUMERIC "." P_NUMERIC, NULL, &sr, NULL), CM_OK);
    CHECK_STR(sr.user_id, "17841400000000");
    CHECK_INT(sr.expires, 4102444800LL);
}

static void test_rotation(void)
{
    struct signed_request sr;

    /* Signed with the previous secret: accepted only while it is configured. */
    CHECK_INT(parse(S_OK_OLD "." P_OK, NULL, &sr, NULL), CM_DENIED);
    CHECK_INT(parse(S_OK_OLD "." P_OK, OLD, &sr, NULL), CM_OK);
    CHECK_STR(sr.user_id, "17841400000000123");
    CHECK_INT(parse(S_OK "." P_OK, OLD, &sr, NULL), CM_OK);
}

static void test_forged(void)
{
    struct signed_request sr;
    const char *why = NULL;
    char in[512];

    /* Wrong signature (one character changed), wrong secret, swapped payload. */
    snprintf(in, sizeof(in), "%s.%s", S_OK, P_OK);
    in[3] = in[3] == 'A' ? 'B' : 'A';
    CHECK_INT(parse(in, NULL, &sr, &why), CM_DENIED);
    CHECK_STR(why, "the signature does not match");
    CHECK(sr.user_id[0] == '\0');
    CHECK_INT(ingest_signed_request_parse(S_OK "." P_OK, strlen(S_OK "." P_OK), "other", NULL, NOW,
                                          &sr, NULL),
              CM_DENIED);
    CHECK_INT(parse(S_OK "." P_EXPIRED, NULL, &sr, NULL), CM_DENIED);
    /* A payload changed after signing (a different user id): the signature no longer fits. */
    snprintf(in, sizeof(in), "%s.%sx", S_OK, P_OK);
    CHECK_INT(parse(in, NULL, &sr, NULL), CM_DENIED);
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "",                                                  /* missing */
        "nodot",                                             /* no separator */
        "." P_OK,                                            /* no signature */
        S_OK ".",                                            /* no payload */
        S_OK "." P_OK ".extra",                              /* three parts */
        "AAAA." P_OK,                                        /* a signature of 3 bytes */
        "A1EGTaz+fjrL7vI9oCr1Ww8852d4bU2yWkD5EoY7v0Q." P_OK, /* base64, not base64url */
        "A1EGTaz-fjrL7vI9oCr1Ww8852d4bU2yWkD5EoY7v0." P_OK,  /* truncated signature */
    };
    struct signed_request sr;
    const char *why;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        CHECK_MSG(parse(bad[i], NULL, &sr, &why) == CM_INVALID, "case %zu refused as invalid", i);
        CHECK_MSG(why != NULL, "case %zu says why", i);
    }
    CHECK_INT(ingest_signed_request_parse(NULL, 0, SECRET, NULL, NOW, &sr, NULL), CM_INVALID);
}

static void test_payload_rules(void)
{
    struct signed_request sr;
    const char *why = NULL;

    CHECK_INT(parse(S_EXPIRED "." P_EXPIRED, NULL, &sr, &why), CM_INVALID);
    CHECK_STR(why, "the request has expired");
    /* The same request, read when it had not expired yet. */
    CHECK_INT(ingest_signed_request_parse(S_EXPIRED "." P_EXPIRED, strlen(S_EXPIRED "." P_EXPIRED),
                                          SECRET, NULL, 1291836900, &sr, NULL),
              CM_OK);
    CHECK_STR(sr.user_id, "218471");
    CHECK_INT(parse(S_SHA1 "." P_SHA1, NULL, &sr, &why), CM_INVALID);
    CHECK_STR(why, "the algorithm is not HMAC-SHA256");
    CHECK_INT(parse(S_NO_USER "." P_NO_USER, NULL, &sr, &why), CM_INVALID);
    CHECK_STR(why, "user_id is missing");
}

/* issued_at (1732870000 in P_OK) must be there and within 5 minutes of now, either way. */
static void test_issued_at(void)
{
    struct signed_request sr;
    const char *why = NULL;
    const char *in = S_OK "." P_OK;

    CHECK_INT(
        ingest_signed_request_parse(in, strlen(in), SECRET, NULL, 1732870000LL + 300, &sr, NULL),
        CM_OK);
    CHECK_INT(
        ingest_signed_request_parse(in, strlen(in), SECRET, NULL, 1732870000LL + 301, &sr, &why),
        CM_INVALID);
    CHECK_STR(why, "the request is stale: issued_at is older than 5 minutes");
    CHECK_INT(
        ingest_signed_request_parse(in, strlen(in), SECRET, NULL, 1732870000LL - 300, &sr, NULL),
        CM_OK);
    CHECK_INT(
        ingest_signed_request_parse(in, strlen(in), SECRET, NULL, 1732870000LL - 301, &sr, &why),
        CM_INVALID);
    CHECK_STR(why, "issued_at is in the future");
    CHECK_INT(parse(S_NO_ISSUED "." P_NO_ISSUED, NULL, &sr, &why), CM_INVALID);
    CHECK_STR(why, "issued_at is missing");
}

static void test_too_long(void)
{
    static char big[SIGNED_REQUEST_MAX + 16];
    struct signed_request sr;

    memset(big, 'A', sizeof(big) - 1);
    big[44] = '.';
    CHECK_INT(ingest_signed_request_parse(big, sizeof(big) - 1, SECRET, NULL, NOW, &sr, NULL),
              CM_INVALID);
}

int main(void)
{
    RUN(test_meta_built);
    RUN(test_rotation);
    RUN(test_forged);
    RUN(test_malformed);
    RUN(test_payload_rules);
    RUN(test_issued_at);
    RUN(test_too_long);
    return check_summary();
}
