/*
 * fuzz_signed_request - libFuzzer driver for Meta's signed_request parser, the first code
 * that reads what an outsider sends to the data-deletion and deauthorize callbacks.
 *
 * Each input is tried twice: as it comes (the split, the base64url and the signature check
 * see arbitrary bytes), and with its payload part signed under the driver's secret, as Meta
 * would sign it, so that the code behind the signature (base64url, JSON, the fields) is
 * fuzzed as well.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/crypto.h"
#include "signed_request.h"

#define SECRET "fuzz-secret"
#define NOW    1732870000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct signed_request *sr, int rc)
{
    size_t n = strnlen(sr->user_id, sizeof(sr->user_id));

    /* A success always names a user; a failure leaves nothing behind. */
    if (rc == CM_OK && (n == 0 || n > SIGNED_USER_ID_MAX))
        __builtin_trap();
    if (rc != CM_OK && n != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char signed_buf[SIGNED_REQUEST_MAX + 64];
    unsigned char mac[CM_SHA256_LEN];
    struct signed_request sr;
    const uint8_t *dot = memchr(data, '.', size);
    const char *payload = dot ? (const char *)dot + 1 : (const char *)data;
    size_t payload_len = dot ? size - (size_t)(dot - data) - 1 : size;
    int rc;

    rc = ingest_signed_request_parse((const char *)data, size, SECRET, "old", NOW, &sr, NULL);
    check(&sr, rc);

    if (payload_len > SIGNED_REQUEST_MAX - 64)
        return 0;
    cm_crypto_hmac_sha256(SECRET, strlen(SECRET), payload, payload_len, mac);
    cm_base64url_encode(mac, sizeof(mac), signed_buf);
    size_t sig_len = strlen(signed_buf);
    signed_buf[sig_len] = '.';
    memcpy(signed_buf + sig_len + 1, payload, payload_len);
    rc = ingest_signed_request_parse(signed_buf, sig_len + 1 + payload_len, SECRET, NULL, NOW, &sr,
                                     NULL);
    check(&sr, rc);
    return 0;
}
