/*
 * secrets.c - the pepper: a random 32-byte key of the reaper's own, sealed in its schema
 * with the keyring (so it opens only with the KEK file), from which user_key is derived.
 *
 * A repeated data-deletion callback must find the request it repeats, yet the reaper must
 * not keep Meta's user id in the clear. HMAC-SHA256(pepper, user id) is stable, and names
 * nobody to whoever holds a copy of the database without the KEK file.
 */
#include <libpq-fe.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/log.h"
#include "reaper.h"

#define PEPPER_LEN  32
#define PEPPER_KEY  "reaper:pepper"
#define PEPPER_AAD  "reaper.secrets.sealed:pepper"
#define PEPPER_NAME "pepper"

/* Creates a pepper unless a replica did first; the row that wins is the one everyone uses. */
static int create_pepper(struct reaper *r, struct cm_pg *pg)
{
    unsigned char fresh[PEPPER_LEN];
    struct cm_buf sealed;
    int rc;

    cm_crypto_random(fresh, sizeof(fresh));
    cm_buf_init(&sealed);
    rc = cm_keyring_seal(r->keyring, pg, PEPPER_KEY, PEPPER_AAD, fresh, sizeof(fresh), &sealed);
    sodium_memzero(fresh, sizeof(fresh));
    if (rc == CM_OK) {
        const char *values[2] = {PEPPER_NAME, sealed.data};
        const int lengths[2] = {0, (int)sealed.len};
        const int formats[2] = {0, 1};
        rc = cm_pg_exec_params(pg,
                               "INSERT INTO secrets (name, sealed) VALUES ($1, $2)"
                               " ON CONFLICT (name) DO NOTHING",
                               2, values, lengths, formats, 0);
    }
    cm_buf_cleanup(&sealed);
    return rc;
}

static int open_pepper(struct reaper *r, struct cm_pg *pg)
{
    const char *params[1] = {PEPPER_NAME};
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    struct cm_buf plain;
    int rc;

    rc = cm_pg_exec(pg, "SELECT sealed FROM secrets WHERE name = $1", 1, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    raw = PQunescapeBytea((const unsigned char *)cm_pg_value(pg, 0, 0), &raw_len);
    if (raw == NULL)
        return CM_ERR;
    cm_buf_init(&plain);
    rc = cm_keyring_open(r->keyring, pg, PEPPER_KEY, PEPPER_AAD, raw, raw_len, &plain);
    PQfreemem(raw);
    if (rc == CM_OK && plain.len != PEPPER_LEN)
        rc = CM_DENIED;
    if (rc == CM_OK)
        memcpy(r->pepper, plain.data, PEPPER_LEN);
    cm_buf_wipe(&plain);
    return rc;
}

int reaper_pepper_load(struct reaper *r)
{
    struct cm_pg *pg = NULL;
    int rc;

    r->pepper = sodium_malloc(PEPPER_LEN);
    if (r->pepper == NULL)
        abort();
    rc = cm_pg_connect(&pg, r->cfg->base.database_url, REAPER_SCHEMA);
    /* Open, else create and open again: two replicas starting together both insert, one
     * row wins, and both then use that one. */
    if (rc == CM_OK) {
        rc = open_pepper(r, pg);
        if (rc == CM_NOTFOUND) {
            rc = create_pepper(r, pg);
            if (rc == CM_OK)
                rc = open_pepper(r, pg);
        }
    }
    if (rc != CM_OK)
        CM_ERROR("the reaper's pepper cannot be opened: %s (is DOMS_KEK_FILE the one it was"
                 " sealed with?)",
                 cm_err_str(rc));
    cm_pg_destroy(pg);
    return rc;
}

void reaper_pepper_free(struct reaper *r)
{
    sodium_free(r->pepper); /* wipes first */
    r->pepper = NULL;
}

void reaper_user_key(const struct reaper *r, const char *user_id, char out[65])
{
    unsigned char mac[CM_SHA256_LEN];

    cm_crypto_hmac_sha256(r->pepper, PEPPER_LEN, user_id, strlen(user_id), mac);
    cm_hex_encode(mac, sizeof(mac), out);
    sodium_memzero(mac, sizeof(mac));
}
