/*
 * signature.c - Meta's X-Hub-Signature-256 check.
 *
 * Meta signs the raw body with HMAC-SHA256 under the app secret. Both secrets are tried
 * during a rotation (META_APP_SECRET_PREVIOUS), each in constant time, and both are always
 * computed so that timing does not tell which one matched.
 */
#include <string.h>
#include <strings.h>

#include "common/crypto.h"
#include "ingest.h"

int ingest_verify_signature(const struct ingest_cfg *cfg, const char *header, const void *body,
                            size_t len)
{
    static const char prefix[] = "sha256=";
    unsigned char given[CM_SHA256_LEN], want[CM_SHA256_LEN];
    bool ok;

    if (header == NULL || strncasecmp(header, prefix, sizeof(prefix) - 1) != 0)
        return CM_INVALID;
    header += sizeof(prefix) - 1;
    if (strlen(header) != 2 * CM_SHA256_LEN ||
        cm_hex_decode(header, 2 * CM_SHA256_LEN, given, sizeof(given)) != CM_SHA256_LEN)
        return CM_INVALID;

    cm_crypto_hmac_sha256(cfg->app_secret, strlen(cfg->app_secret), body, len, want);
    ok = cm_crypto_equal(given, want, sizeof(want));
    if (cfg->app_secret_previous != NULL) {
        cm_crypto_hmac_sha256(cfg->app_secret_previous, strlen(cfg->app_secret_previous), body, len,
                              want);
        ok = cm_crypto_equal(given, want, sizeof(want)) || ok;
    }
    return ok ? CM_OK : CM_DENIED;
}
