/*
 * crypto.h - the small primitives every daemon needs: HMAC-SHA256, SHA-256, hex and
 * base64url, constant-time comparison, random bytes and the raw AES-256-GCM AEAD.
 * OpenSSL and libsodium do the work.
 * (Envelope encryption of Platform Data is the keyring's, in keyring.h; it uses cm_aead_*.)
 */
#ifndef COMMON_CRYPTO_H
#define COMMON_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define CM_SHA256_LEN 32

#define CM_AEAD_KEY_LEN   32 /* AES-256 */
#define CM_AEAD_NONCE_LEN 12 /* 96-bit GCM nonce */
#define CM_AEAD_TAG_LEN   16 /* full 128-bit tag, appended to the ciphertext */

/* out receives the 32-byte HMAC-SHA256 of data under key. */
void cm_crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                           unsigned char out[CM_SHA256_LEN]);

/* out receives the 32-byte SHA-256 of data. */
void cm_crypto_sha256(const void *data, size_t len, unsigned char out[CM_SHA256_LEN]);

/* Compares len bytes in time independent of their content. */
bool cm_crypto_equal(const void *a, const void *b, size_t len);

/* Fills buf with len cryptographically random bytes. */
void cm_crypto_random(void *buf, size_t len);

/* Writes 2*len lowercase hex digits and a NUL into out (2*len+1 bytes). */
void cm_hex_encode(const void *in, size_t len, char *out);

/*
 * Decodes exactly in_len hex digits (either case) into out (cap bytes). Returns the
 * number of bytes written, or CM_INVALID for an odd length, a non-hex digit or no room.
 */
int cm_hex_decode(const char *in, size_t in_len, unsigned char *out, size_t cap) CM_MUST_CHECK;

/*
 * Decodes base64url (RFC 4648 section 5), with or without '=' padding, into out (cap bytes).
 * Returns the number of bytes written or CM_INVALID.
 */
int cm_base64url_decode(const char *in, size_t in_len, unsigned char *out,
                        size_t cap) CM_MUST_CHECK;

/* Encodes len bytes as unpadded base64url into out (at least 4*len/3+4 bytes), NUL-terminated. */
void cm_base64url_encode(const void *in, size_t len, char *out);

/*
 * AES-256-GCM through OpenSSL's EVP interface. Seals len bytes of pt under key and nonce,
 * authenticating aad (aad_len bytes; may be NULL when aad_len is 0), and writes
 * len + CM_AEAD_TAG_LEN bytes into out: the ciphertext followed by the 16-byte tag. out may
 * equal pt. A nonce must never be used twice with one key: callers draw it at random (96 bits)
 * per value. Returns CM_OK, or CM_ERR when OpenSSL fails (logged; not expected).
 */
int cm_aead_seal(const unsigned char key[CM_AEAD_KEY_LEN],
                 const unsigned char nonce[CM_AEAD_NONCE_LEN], const void *aad, size_t aad_len,
                 const void *pt, size_t len, unsigned char *out) CM_MUST_CHECK;

/*
 * Opens what cm_aead_seal() wrote: in is the ciphertext followed by the tag (in_len bytes,
 * at least CM_AEAD_TAG_LEN), and out receives in_len - CM_AEAD_TAG_LEN bytes of plaintext.
 * Returns CM_OK, or CM_DENIED when the tag does not verify (wrong key, nonce or aad, or any
 * byte changed) or in_len is too short; out is then zeroed, never left holding unverified
 * plaintext. CM_ERR when OpenSSL fails.
 */
int cm_aead_open(const unsigned char key[CM_AEAD_KEY_LEN],
                 const unsigned char nonce[CM_AEAD_NONCE_LEN], const void *aad, size_t aad_len,
                 const void *in, size_t in_len, unsigned char *out) CM_MUST_CHECK;

#endif
