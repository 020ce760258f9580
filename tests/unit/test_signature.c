/*
 * test_signature - X-Hub-Signature-256 against vectors computed with
 * `printf %s BODY | openssl dgst -sha256 -hmac SECRET`, and the rotation secret.
 */
#include <string.h>

#include "check.h"
#include "common/crypto.h"
#include "ingest.h"

static const char body[] = "{\"object\":\"page\",\"entry\":[]}";
static const char good[] =
    "sha256=1a82db3abc2fa71a3fffecfedef579a8468a44850cd8a83a0c56974faff81689";

static void test_hmac_vector(void)
{
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    unsigned char mac[CM_SHA256_LEN];
    char hex[65];

    cm_crypto_hmac_sha256("key", 3, fox, strlen(fox), mac);
    cm_hex_encode(mac, sizeof(mac), hex);
    CHECK_STR(hex, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
}

static void test_verify(void)
{
    struct ingest_cfg cfg = {0};
    char upper[sizeof(good)];

    cfg.app_secret = "test-app-secret";
    CHECK_INT(ingest_verify_signature(&cfg, good, body, strlen(body)), CM_OK);
    /* Hex digits in either case, as HTTP header values may be normalised. */
    strcpy(upper, good);
    for (char *p = upper + 7; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    CHECK_INT(ingest_verify_signature(&cfg, upper, body, strlen(body)), CM_OK);
    CHECK_INT(ingest_verify_signature(&cfg, NULL, body, strlen(body)), CM_INVALID);
    CHECK_INT(ingest_verify_signature(&cfg, "", body, strlen(body)), CM_INVALID);
    CHECK_INT(ingest_verify_signature(&cfg, "sha1=abcd", body, strlen(body)), CM_INVALID);
    CHECK_INT(ingest_verify_signature(&cfg, "sha256=zz", body, strlen(body)), CM_INVALID);
    CHECK_INT(ingest_verify_signature(&cfg,
                                      "sha256=1a82db3abc2fa71a3fffecfedef579a8468a44850cd8a83a0c569"
                                      "74faff8168g",
                                      body, strlen(body)),
              CM_INVALID);
    /* One byte of the body changed. */
    CHECK_INT(ingest_verify_signature(&cfg, good, "{\"object\":\"page\",\"entry\":[ ]}",
                                      strlen(body) + 1),
              CM_DENIED);
    cfg.app_secret = "another-secret";
    CHECK_INT(ingest_verify_signature(&cfg, good, body, strlen(body)), CM_DENIED);
}

static void test_rotation(void)
{
    struct ingest_cfg cfg = {0};

    cfg.app_secret = "new-secret";
    cfg.app_secret_previous = "test-app-secret";
    CHECK_INT(ingest_verify_signature(&cfg, good, body, strlen(body)), CM_OK);
    cfg.app_secret_previous = "unrelated";
    CHECK_INT(ingest_verify_signature(&cfg, good, body, strlen(body)), CM_DENIED);
}

int main(void)
{
    RUN(test_hmac_vector);
    RUN(test_verify);
    RUN(test_rotation);
    return check_summary();
}
