/*
 * test_aead - cm_aead_seal/open (AES-256-GCM through OpenSSL EVP) against the published
 * AES-256 test cases with 96-bit IVs of McGrew and Viega, "The Galois/Counter Mode of
 * Operation (GCM)" (the vectors NIST SP 800-38D refers to): test cases 13 to 16, with and
 * without additional data; and every kind of tampering refused.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/crypto.h"
#include "common/mem.h"

struct vector {
    const char *name;
    const char *key, *iv, *pt, *aad, *ct, *tag;
};

#define K256 "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
#define IV   "cafebabefacedbaddecaf888"
#define PT60                                                                                       \
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"                             \
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
#define CT60                                                                                       \
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"                             \
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"

static const struct vector vectors[] = {
    {"test case 13 (empty plaintext, no aad)",
     "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"test case 14 (one zero block, no aad)",
     "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"test case 15 (four blocks, no aad)", K256, IV, PT60 "1aafd255", "", CT60 "898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"test case 16 (60 bytes, 20 bytes of aad)", K256, IV, PT60,
     "feedfacedeadbeeffeedfacedeadbeefabaddad2", CT60, "76fc6ece0f4e1768cddf8853bb2d551b"},
};

/* Decodes hex into a new buffer (free it); *len gets its length. */
static unsigned char *unhex(const char *hex, size_t *len)
{
    unsigned char *out = cm_xmalloc(strlen(hex) / 2 + 1);
    int n = cm_hex_decode(hex, strlen(hex), out, strlen(hex) / 2 + 1);

    CHECK(n >= 0);
    *len = n < 0 ? 0 : (size_t)n;
    return out;
}

static void test_vectors(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const struct vector *v = &vectors[i];
        size_t key_len, iv_len, pt_len, aad_len, ct_len, tag_len;
        unsigned char *key = unhex(v->key, &key_len), *iv = unhex(v->iv, &iv_len);
        unsigned char *pt = unhex(v->pt, &pt_len), *aad = unhex(v->aad, &aad_len);
        unsigned char *ct = unhex(v->ct, &ct_len), *tag = unhex(v->tag, &tag_len);
        unsigned char *sealed = cm_xmalloc(pt_len + CM_AEAD_TAG_LEN);
        unsigned char *opened = cm_xmalloc(pt_len + 1);

        printf("   %s\n", v->name);
        CHECK_INT(key_len, CM_AEAD_KEY_LEN);
        CHECK_INT(iv_len, CM_AEAD_NONCE_LEN);
        CHECK_INT(tag_len, CM_AEAD_TAG_LEN);
        CHECK_INT(cm_aead_seal(key, iv, aad, aad_len, pt, pt_len, sealed), CM_OK);
        CHECK_MSG(ct_len == pt_len && memcmp(sealed, ct, ct_len) == 0, "%s: ciphertext", v->name);
        CHECK_MSG(memcmp(sealed + pt_len, tag, CM_AEAD_TAG_LEN) == 0, "%s: tag", v->name);
        CHECK_INT(cm_aead_open(key, iv, aad, aad_len, sealed, pt_len + CM_AEAD_TAG_LEN, opened),
                  CM_OK);
        CHECK_MSG(memcmp(opened, pt, pt_len) == 0, "%s: plaintext", v->name);

        /* Any changed bit of the tag is refused. */
        sealed[pt_len + CM_AEAD_TAG_LEN - 1] ^= 0x01;
        CHECK_INT(cm_aead_open(key, iv, aad, aad_len, sealed, pt_len + CM_AEAD_TAG_LEN, opened),
                  CM_DENIED);
        free(key), free(iv), free(pt), free(aad), free(ct), free(tag), free(sealed), free(opened);
    }
}

static void test_tampering(void)
{
    unsigned char key[CM_AEAD_KEY_LEN], nonce[CM_AEAD_NONCE_LEN], other[CM_AEAD_KEY_LEN];
    const char pt[] = "Hello, this is a customer message";
    const char aad[] = "router.messages.text:42";
    unsigned char sealed[sizeof(pt) + CM_AEAD_TAG_LEN], opened[sizeof(pt)];
    size_t len = sizeof(sealed);

    cm_crypto_random(key, sizeof(key));
    cm_crypto_random(other, sizeof(other));
    cm_crypto_random(nonce, sizeof(nonce));
    CHECK_INT(cm_aead_seal(key, nonce, aad, strlen(aad), pt, sizeof(pt), sealed), CM_OK);
    CHECK_INT(cm_aead_open(key, nonce, aad, strlen(aad), sealed, len, opened), CM_OK);
    CHECK(memcmp(opened, pt, sizeof(pt)) == 0);

    /* A changed ciphertext byte: refused, and no unverified plaintext left in out. */
    sealed[3] ^= 0x80;
    memset(opened, 0x55, sizeof(opened));
    CHECK_INT(cm_aead_open(key, nonce, aad, strlen(aad), sealed, len, opened), CM_DENIED);
    for (size_t i = 0; i < sizeof(opened); i++)
        CHECK_MSG(opened[i] == 0, "out zeroed at %zu", i);
    sealed[3] ^= 0x80;

    /* Another row's aad, no aad, another key, another nonce, a cut tag: all refused. */
    CHECK_INT(cm_aead_open(key, nonce, "router.messages.text:43", strlen(aad), sealed, len, opened),
              CM_DENIED);
    CHECK_INT(cm_aead_open(key, nonce, NULL, 0, sealed, len, opened), CM_DENIED);
    CHECK_INT(cm_aead_open(other, nonce, aad, strlen(aad), sealed, len, opened), CM_DENIED);
    nonce[0] ^= 1;
    CHECK_INT(cm_aead_open(key, nonce, aad, strlen(aad), sealed, len, opened), CM_DENIED);
    nonce[0] ^= 1;
    CHECK_INT(cm_aead_open(key, nonce, aad, strlen(aad), sealed, len - 1, opened), CM_DENIED);
    CHECK_INT(cm_aead_open(key, nonce, aad, strlen(aad), sealed, CM_AEAD_TAG_LEN - 1, opened),
              CM_DENIED);
    /* Still intact after all that. */
    CHECK_INT(cm_aead_open(key, nonce, aad, strlen(aad), sealed, len, opened), CM_OK);

    /* In place: out may be the input. */
    memcpy(opened, pt, sizeof(pt));
    {
        unsigned char buf[sizeof(pt) + CM_AEAD_TAG_LEN];
        memcpy(buf, pt, sizeof(pt));
        CHECK_INT(cm_aead_seal(key, nonce, aad, strlen(aad), buf, sizeof(pt), buf), CM_OK);
        CHECK(memcmp(buf, sealed, sizeof(buf)) == 0);
        CHECK_INT(cm_aead_open(key, nonce, aad, strlen(aad), buf, sizeof(buf), buf), CM_OK);
        CHECK(memcmp(buf, pt, sizeof(pt)) == 0);
    }
}

static void test_buf_wipe(void)
{
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_puts(&b, "secret");
    cm_buf_wipe(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    cm_buf_wipe(&b); /* and again, on an empty buffer */
}

int main(void)
{
    RUN(test_vectors);
    RUN(test_tampering);
    RUN(test_buf_wipe);
    return check_summary();
}
