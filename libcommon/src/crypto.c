/*
 * crypto.c - primitives over OpenSSL and libsodium (see crypto.h).
 */
#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

void cm_crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                           unsigned char out[CM_SHA256_LEN])
{
    unsigned int out_len = CM_SHA256_LEN;

    if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) == NULL)
        abort(); /* only fails on allocation */
}

void cm_crypto_sha256(const void *data, size_t len, unsigned char out[CM_SHA256_LEN])
{
    unsigned int out_len = CM_SHA256_LEN;

    if (EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) != 1)
        abort();
}

bool cm_crypto_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

void cm_crypto_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

void cm_hex_encode(const void *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cm_hex_decode(const char *in, size_t in_len, unsigned char *out, size_t cap)
{
    if (in_len % 2 != 0 || in_len / 2 > cap)
        return CM_INVALID;
    for (size_t i = 0; i < in_len / 2; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CM_INVALID;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return (int)(in_len / 2);
}

int cm_base64url_decode(const char *in, size_t in_len, unsigned char *out, size_t cap)
{
    size_t bin_len = 0;
    const char *end = NULL;

    /* Meta omits the padding; libsodium's ORIGINAL_NO_PADDING variant refuses it, so strip. */
    while (in_len > 0 && in[in_len - 1] == '=')
        in_len--;
    if (sodium_base642bin(out, cap, in, in_len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != in + in_len)
        return CM_INVALID;
    return (int)bin_len;
}

void cm_base64url_encode(const void *in, size_t len, char *out)
{
    sodium_bin2base64(out, sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                      in, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}
