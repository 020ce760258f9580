/*
 * crypto.c - primitives over OpenSSL and libsodium (see crypto.h).
 */
#include "common/crypto.h"
#include "common/log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <limits.h>
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

/* EVP takes int lengths: feed longer inputs in slices. out NULL feeds additional data. */
static int evp_update(EVP_CIPHER_CTX *ctx, int enc, unsigned char *out, const void *in, size_t len)
{
    const unsigned char *p = in;

    while (len > 0) {
        int chunk = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len, n = 0;
        int ok = enc ? EVP_EncryptUpdate(ctx, out, &n, p, chunk)
                     : EVP_DecryptUpdate(ctx, out, &n, p, chunk);
        if (ok != 1)
            return 0;
        p += chunk;
        len -= (size_t)chunk;
        if (out != NULL)
            out += n;
    }
    return 1;
}

int cm_aead_seal(const unsigned char key[CM_AEAD_KEY_LEN],
                 const unsigned char nonce[CM_AEAD_NONCE_LEN], const void *aad, size_t aad_len,
                 const void *pt, size_t len, unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, ok;

    if (ctx == NULL)
        abort(); /* only fails on allocation */
    /* GCM is a stream mode: Final writes nothing, so the tag goes right after the text. */
    ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CM_AEAD_NONCE_LEN, NULL) == 1 &&
         EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
         evp_update(ctx, 1, NULL, aad, aad_len) && evp_update(ctx, 1, out, pt, len) &&
         EVP_EncryptFinal_ex(ctx, out + len, &n) == 1 && n == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CM_AEAD_TAG_LEN, out + len) == 1;
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    if (!ok) {
        CM_ERROR("crypto: AES-256-GCM seal failed in OpenSSL");
        return CM_ERR;
    }
    return CM_OK;
}

int cm_aead_open(const unsigned char key[CM_AEAD_KEY_LEN],
                 const unsigned char nonce[CM_AEAD_NONCE_LEN], const void *aad, size_t aad_len,
                 const void *in, size_t in_len, unsigned char *out)
{
    const unsigned char *ct = in;
    unsigned char tag[CM_AEAD_TAG_LEN];
    EVP_CIPHER_CTX *ctx;
    size_t len;
    int n = 0, ok;

    if (in_len < CM_AEAD_TAG_LEN)
        return CM_DENIED;
    len = in_len - CM_AEAD_TAG_LEN;
    /* Copied first: out may overlap in. */
    memcpy(tag, ct + len, CM_AEAD_TAG_LEN);
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        abort();
    ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CM_AEAD_NONCE_LEN, NULL) == 1 &&
         EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
         evp_update(ctx, 0, NULL, aad, aad_len) && evp_update(ctx, 0, out, ct, len) &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CM_AEAD_TAG_LEN, tag) == 1;
    /* The tag is checked here; until then out holds unverified plaintext. */
    if (ok)
        ok = EVP_DecryptFinal_ex(ctx, out + len, &n) == 1 ? 1 : -1;
    EVP_CIPHER_CTX_free(ctx);
    if (ok == 1)
        return CM_OK;
    if (len > 0)
        sodium_memzero(out, len);
    if (ok == 0) {
        CM_ERROR("crypto: AES-256-GCM open failed in OpenSSL");
        return CM_ERR;
    }
    return CM_DENIED;
}
