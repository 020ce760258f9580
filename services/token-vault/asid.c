/*
 * asid.c - the blind index of who connected an integration.
 *
 * Meta's deauthorize and data-deletion callbacks name a person by their app-scoped user id
 * (asid). The vault must find that person's integrations, yet holds no Meta user id: it
 * keeps HMAC-SHA256(index key, asid) in integrations.asid_blind. The index key is one per
 * vault, random, sealed by the keyring (key id vault:index) in index_key, and cached in
 * memory once opened: it never changes, so replicas agree and a racing first creation
 * keeps whichever row was inserted first.
 *
 * Earlier versions stored the asid in plain text; the refresher converts those rows after
 * its first pass, and until then the lookups also match the plain column.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/log.h"
#include "vault.h"

#define INDEX_KEY_LEN 32
#define INDEX_KEY_ID  "vault:index"
#define INDEX_AAD     "vault.index_key.sealed"

static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *cached_key; /* sodium memory, INDEX_KEY_LEN bytes; under key_lock */

/* Opens the sealed key read as bytea text into key. */
static int open_key(struct vault *v, struct cm_pg *pg, const char *sealed_text,
                    unsigned char key[INDEX_KEY_LEN])
{
    unsigned char *raw;
    size_t raw_len = 0;
    struct cm_buf plain;
    int rc;

    raw = PQunescapeBytea((const unsigned char *)sealed_text, &raw_len);
    if (raw == NULL)
        return CM_ERR;
    cm_buf_init(&plain);
    rc = cm_keyring_open(v->keyring, pg, INDEX_KEY_ID, INDEX_AAD, raw, raw_len, &plain);
    PQfreemem(raw);
    if (rc == CM_OK && plain.len != INDEX_KEY_LEN)
        rc = CM_DENIED;
    if (rc == CM_OK)
        memcpy(key, plain.data, INDEX_KEY_LEN);
    cm_buf_wipe(&plain);
    return rc;
}

/* Reads the index key, creating it on the vault's first use. */
static int load_key(struct vault *v, struct cm_pg *pg, unsigned char key[INDEX_KEY_LEN])
{
    const char *select = "SELECT sealed FROM index_key WHERE id = 1";
    int rc = cm_pg_exec(pg, select, 0, NULL);

    if (rc == CM_OK && cm_pg_ntuples(pg) == 0) {
        unsigned char fresh[INDEX_KEY_LEN];
        struct cm_buf sealed;

        cm_crypto_random(fresh, sizeof(fresh));
        cm_buf_init(&sealed);
        rc =
            cm_keyring_seal(v->keyring, pg, INDEX_KEY_ID, INDEX_AAD, fresh, sizeof(fresh), &sealed);
        sodium_memzero(fresh, sizeof(fresh));
        if (rc == CM_OK) {
            const char *values[1] = {sealed.data};
            const int lengths[1] = {(int)sealed.len};
            const int formats[1] = {1};
            rc = cm_pg_exec_params(pg,
                                   "INSERT INTO index_key (id, sealed) VALUES (1, $1)"
                                   " ON CONFLICT (id) DO NOTHING",
                                   1, values, lengths, formats, 0);
        }
        cm_buf_cleanup(&sealed);
        if (rc == CM_OK)
            rc = cm_pg_exec(pg, select, 0, NULL);
        if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
            rc = CM_ERR;
    }
    if (rc == CM_OK) {
        char *text = cm_xstrdup(cm_pg_value(pg, 0, 0));
        rc = open_key(v, pg, text, key);
        free(text);
    }
    return rc;
}

int vault_asid_blind(struct vault *v, struct cm_pg *pg, const char *asid, char out[VAULT_BLIND_LEN])
{
    unsigned char mac[CM_SHA256_LEN];
    int rc = CM_OK;

    pthread_mutex_lock(&key_lock);
    if (cached_key == NULL) {
        unsigned char *key = sodium_malloc(INDEX_KEY_LEN);
        if (key == NULL)
            abort();
        rc = load_key(v, pg, key);
        if (rc == CM_OK)
            cached_key = key;
        else
            sodium_free(key);
    }
    if (rc == CM_OK)
        cm_crypto_hmac_sha256(cached_key, INDEX_KEY_LEN, asid, strlen(asid), mac);
    pthread_mutex_unlock(&key_lock);
    if (rc != CM_OK)
        return rc;
    cm_hex_encode(mac, sizeof(mac), out);
    sodium_memzero(mac, sizeof(mac));
    return CM_OK;
}

void vault_asid_forget_key(void)
{
    pthread_mutex_lock(&key_lock);
    sodium_free(cached_key); /* accepts NULL */
    cached_key = NULL;
    pthread_mutex_unlock(&key_lock);
}

void vault_asid_convert_legacy(struct vault *v, struct cm_pg *pg)
{
    long converted = 0;
    int rc;

    rc = cm_pg_exec(pg, "SELECT id, asid FROM integrations WHERE asid IS NOT NULL LIMIT 1000", 0,
                    NULL);
    while (rc == CM_OK && cm_pg_ntuples(pg) > 0) {
        int n = cm_pg_ntuples(pg);
        char **ids = cm_xcalloc((size_t)n, sizeof(char *));
        char **asids = cm_xcalloc((size_t)n, sizeof(char *));

        for (int i = 0; i < n; i++) {
            ids[i] = cm_xstrdup(cm_pg_value(pg, i, 0));
            asids[i] = cm_xstrdup(cm_pg_value(pg, i, 1));
        }
        for (int i = 0; i < n; i++) {
            char blind[VAULT_BLIND_LEN];
            if (rc == CM_OK)
                rc = vault_asid_blind(v, pg, asids[i], blind);
            if (rc == CM_OK) {
                const char *params[2] = {ids[i], blind};
                rc = cm_pg_exec(pg,
                                "WITH c AS (INSERT INTO connectors (integration_id, asid_blind,"
                                " source) VALUES ($1, $2, 'operator') ON CONFLICT DO NOTHING)"
                                " UPDATE integrations SET asid_blind = $2, asid = NULL,"
                                " asid_source = coalesce(asid_source, 'operator') WHERE id = $1",
                                2, params);
            }
            if (rc == CM_OK)
                converted++;
            sodium_memzero(asids[i], strlen(asids[i]));
            free(asids[i]);
            free(ids[i]);
        }
        free(asids);
        free(ids);
        if (rc == CM_OK)
            rc = cm_pg_exec(
                pg, "SELECT id, asid FROM integrations WHERE asid IS NOT NULL LIMIT 1000", 0, NULL);
    }
    if (rc != CM_OK)
        CM_WARN("asid: the plaintext ids of an earlier version are not all converted yet: %s",
                cm_err_str(rc));
    else if (converted > 0)
        CM_INFO("asid: %ld integrations' app-scoped user ids kept as a blind index only",
                converted);
}
