/*
 * test_crypto - hex and base64url round trips and refusals, SHA-256 vector.
 */
#include <string.h>

#include "check.h"
#include "common/crypto.h"

static void test_sha256(void)
{
    unsigned char sum[CM_SHA256_LEN];
    char hex[65];

    cm_crypto_sha256("abc", 3, sum);
    cm_hex_encode(sum, sizeof(sum), hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_hex(void)
{
    unsigned char out[4];

    CHECK_INT(cm_hex_decode("00fFa1", 6, out, sizeof(out)), 3);
    CHECK(out[0] == 0 && out[1] == 0xff && out[2] == 0xa1);
    CHECK_INT(cm_hex_decode("abc", 3, out, sizeof(out)), CM_INVALID);
    CHECK_INT(cm_hex_decode("zz", 2, out, sizeof(out)), CM_INVALID);
    CHECK_INT(cm_hex_decode("0011223344", 10, out, sizeof(out)), CM_INVALID);
}

static void test_base64url(void)
{
    unsigned char out[64];
    char enc[64];

    /* {"algorithm":"HMAC-SHA256"} as Meta encodes it: base64url, no padding. */
    CHECK_INT(cm_base64url_decode("eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiJ9", 36, out, sizeof(out)),
              27);
    CHECK(memcmp(out, "{\"algorithm\":\"HMAC-SHA256\"}", 27) == 0);
    /* With padding restored it decodes the same. */
    CHECK_INT(cm_base64url_decode("YQ==", 4, out, sizeof(out)), 1);
    CHECK_INT(cm_base64url_decode("YQ", 2, out, sizeof(out)), 1);
    CHECK(out[0] == 'a');
    /* '+' and '/' belong to standard base64, not base64url. */
    CHECK_INT(cm_base64url_decode("a+b/", 4, out, sizeof(out)), CM_INVALID);
    CHECK_INT(cm_base64url_decode("!!!!", 4, out, sizeof(out)), CM_INVALID);
    cm_base64url_encode("\xfb\xff", 2, enc);
    CHECK_STR(enc, "-_8");
}

static void test_equal(void)
{
    CHECK(cm_crypto_equal("abcd", "abcd", 4));
    CHECK(!cm_crypto_equal("abcd", "abce", 4));
}

int main(void)
{
    RUN(test_sha256);
    RUN(test_hex);
    RUN(test_base64url);
    RUN(test_equal);
    return check_summary();
}
