/*
 * keyring.h - envelope encryption of Platform Data at rest (AES-256-GCM).
 *
 * Every value a service stores encrypted is sealed under a data key (DEK) of its key id: an
 * opaque string the caller chooses, one per workspace ("ws:<id>") or integration ("int:<id>").
 * Each key id has its own random 32-byte DEK, kept in PostgreSQL only wrapped (AES-256-GCM)
 * by a key-encryption key (KEK) from the file named by DOMS_KEK_FILE. Each service keeps its
 * DEKs in the table data_keys of its own schema (cm_keyring_schema_sql, below), reached
 * through the search_path of the struct cm_pg it passes in.
 *
 * The KEK file: one "<version>:<base64 of exactly 32 bytes>" a line (standard base64, the
 * '=' padding optional; `printf '1:%s\n' "$(openssl rand -base64 32)"` writes one), version
 * a positive integer; blank lines and lines starting with '#' are ignored. The highest
 * version wraps new DEKs; every version listed can unwrap. Rotating the KEK: add a line with
 * a higher version to the file of every replica, restart them, run cm_keyring_rewrap() once,
 * and only then remove the old line.
 *
 * A sealed value (what cm_keyring_seal() writes), CM_KEYRING_OVERHEAD bytes more than the
 * plaintext:
 *
 *     0x01 | dek_version (u32, big-endian) | nonce (12) | ciphertext | tag (16)
 *
 * with a fresh random 96-bit nonce per value. The GCM additional data is
 *     the 5 header bytes | key_id | 0x00 | aad
 * so a value only opens under the key id and the aad (its place: "router.messages.text:<id>")
 * it was sealed with: a ciphertext copied to another row or key id does not open.
 *
 * A wrapped DEK (data_keys.wrapped, 60 bytes) is
 *
 *     nonce (12) | AES-256-GCM(KEK, DEK) (32) | tag (16)
 *
 * with additional data "doms-dek" 0x00 key_id 0x00 dek_version (u32, big-endian), so a
 * wrapped DEK copied to another key id or version does not unwrap. The row's kek_version
 * names the KEK that wrapped it.
 *
 * Crypto-shredding: cm_keyring_shred() deletes every DEK of a key id; every value sealed
 * under it is then unreadable wherever it is, including database backups taken afterwards
 * (they hold the ciphertexts but no DEK). Backups, WAL archives and replicas taken BEFORE the
 * shred still hold the wrapped DEK (and PostgreSQL keeps the deleted row in its data files
 * until VACUUM reuses the space), so the shredded data stays recoverable from them by whoever
 * also holds the KEK file. The operator must therefore keep backup and WAL-archive retention
 * within the privacy policy's deletion bound (90 days after workspace deletion for message
 * content), or rotate the KEK (rewrap, then delete the old KEK line and its copies) when
 * that bound is reached.
 *
 * Caching: unwrapped DEKs are cached in the process (libsodium secure memory) for at most
 * CM_KEYRING_CACHE_TTL seconds after they were read from the database. A shred by another
 * replica therefore takes effect here within that bound (60 s) after it commits; a shred by
 * this process drops the key from its own cache at once. A DEK created inside a transaction
 * that is still open is never trusted from the cache alone: until its row is seen committed,
 * each use re-reads the row, so a rolled-back creation is not used again.
 *
 * Limits: random nonces allow about 2^32 values per DEK (NIST SP 800-38D); there is no DEK
 * rotation yet, so a key id should not seal more. A key id that is shredded and then used
 * again gets a fresh DEK with version 1 again; a replica that still caches the old DEK may
 * seal values under it for up to the TTL, and those will not open.
 *
 * Thread-safety: one struct cm_keyring is shared by all threads of a process; every function
 * may be called concurrently (one mutex guards the cache), each thread with its own cm_pg.
 * The functions run their own queries on the cm_pg passed in, so the caller's last result on
 * it is cleared (as by any call on it).
 * Keys live in sodium_malloc memory (guard pages, mlock'd where the limit allows), the KEKs
 * read-only; they are wiped when no longer needed and never logged.
 */
#ifndef COMMON_KEYRING_H
#define COMMON_KEYRING_H

#include <stddef.h>

#include "common/err.h"
#include "common/id.h"
#include "common/mem.h"
#include "common/pg.h"

#define CM_KEYRING_FORMAT    0x01
#define CM_KEYRING_OVERHEAD  (1 + 4 + 12 + 16) /* format, dek version, nonce, tag */
#define CM_KEYRING_WRAPPED   60                /* nonce, wrapped DEK, tag */
#define CM_KEYRING_CACHE_TTL 60                /* seconds a cached DEK is trusted */

/*
 * The migration that creates data_keys in the current schema; add it to the service's list:
 *     {N, "data_keys", cm_keyring_schema_sql}
 * (key_id text, version integer, kek_version integer, wrapped bytea, created_at timestamptz,
 * PRIMARY KEY (key_id, version)).
 */
extern const char cm_keyring_schema_sql[];

struct cm_keyring;

/*
 * Reads the KEK file at path (the value of DOMS_KEK_FILE) into a new keyring in *out.
 * Returns CM_OK; CM_INVALID when path is NULL or empty, or the file is missing, unreadable,
 * empty (no key line), larger than 64 KiB or malformed (bad base64, a key that is not 32
 * bytes, a version that is not a positive integer, a repeated version, a line that is not
 * "<version>:<base64>"): err (errlen bytes) then receives one line naming DOMS_KEK_FILE, the
 * path and the line number, never any key material. CM_ERR when libsodium cannot start.
 * Logs a warning when group or others have any access to the file. Initialises libsodium.
 * Free *out with cm_keyring_destroy().
 */
int cm_keyring_load(struct cm_keyring **out, const char *path, char *err,
                    size_t errlen) CM_MUST_CHECK;

/* Wipes and frees every key and the cache. Accepts NULL. No other thread may use kr. */
void cm_keyring_destroy(struct cm_keyring *kr);

/* The newest KEK version of the file: the one that wraps new DEKs. */
int cm_keyring_kek_version(const struct cm_keyring *kr);

/*
 * Sets how many seconds a cached DEK is trusted (default CM_KEYRING_CACHE_TTL; 0 disables
 * the cache: every call reads data_keys). For tests; the documented bound is the default.
 */
void cm_keyring_set_cache_ttl(struct cm_keyring *kr, int seconds);

/*
 * Encrypts len bytes of pt for key_id, bound to aad (a NUL-terminated string naming where
 * the value will live), and appends the sealed value (len + CM_KEYRING_OVERHEAD bytes, the
 * format above) to out, which the caller owns (cm_buf_cleanup). Creates the key id's DEK on
 * first use (one DEK even when replicas race). Runs its queries on pg and may run inside the
 * caller's transaction on it: it never begins or commits one, and a DEK it creates there is
 * committed or rolled back with that transaction. Returns CM_OK; CM_INVALID for an empty
 * key_id or a NULL aad; CM_NOTFOUND when the key id's DEK is wrapped by a KEK version the
 * file lacks; CM_DENIED when its wrapped DEK does not verify under the KEK (a wrong KEK or a
 * tampered row); or the database's error (CM_UNAVAIL, CM_AGAIN, CM_DENIED, CM_ERR). On error
 * out is unchanged.
 */
int cm_keyring_seal(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
                    const void *pt, size_t len, struct cm_buf *out) CM_MUST_CHECK;

/*
 * Decrypts the sealed value ct (len bytes) of key_id bound to aad and appends the plaintext
 * to out, which the caller owns. The plaintext is Platform Data: release out with
 * cm_buf_wipe() (zeroes, then frees) rather than cm_buf_cleanup(). The space is reserved
 * before decrypting, so no partial copy is left in freed memory. Like seal, it may run inside
 * the caller's transaction. Never returns unverified bytes. Returns CM_OK;
 *   CM_NOTFOUND  the DEK version the value names does not exist for key_id (shredded,
 *                never created, or a wrong key id that has none) or is wrapped by a KEK
 *                version the file lacks;
 *   CM_DENIED    the value does not verify: a wrong aad or key id, any byte changed, an
 *                unknown format byte, a value shorter than CM_KEYRING_OVERHEAD; or the
 *                wrapped DEK does not verify under its KEK;
 *   CM_INVALID   an empty key_id or a NULL aad;
 * or the database's error. On error out is unchanged.
 */
int cm_keyring_open(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
                    const void *ct, size_t len, struct cm_buf *out) CM_MUST_CHECK;

/*
 * Crypto-shreds key_id: deletes every version of its DEK from data_keys and drops them from
 * this process's cache, so that no value sealed under it opens again (other replicas: within
 * the cache TTL; backups taken before: see above). *destroyed (may be NULL) receives the
 * number of DEK rows deleted (0 when the key id had none, which is not an error). May run
 * inside the caller's transaction; the shred then takes effect when it commits. Returns
 * CM_OK, CM_INVALID for an empty key_id, or the database's error.
 */
int cm_keyring_shred(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id,
                     long *destroyed) CM_MUST_CHECK;

/*
 * Key ids of Platform Data kept per workspace and integration (the router's messages,
 * contacts and media, ai-suggest's drafts): ws:<ws> for a workspace's own keys,
 * ws:<ws>:int:<integration> for what came through one of its integrations. Both parts are
 * cm_id_valid() ids, which hold no ':', so a key id names them unambiguously and a scope's
 * keys are found by comparing its parts, never by prefix (workspace "wa" never reaches the
 * keys of "wab").
 */
#define CM_KEYRING_SCOPE_ID_LEN (sizeof("ws::int:") + 2 * CM_ID_MAX) /* with its NUL */

enum cm_key_scope {
    CM_KEY_SCOPE_WORKSPACE,   /* ws:<id> and every ws:<id>:int:<any> */
    CM_KEY_SCOPE_INTEGRATION, /* ws:<any>:int:<id> */
};

/* Writes ws:<ws>, or ws:<ws>:int:<integration> when integration is not NULL, into out
 * (CM_KEYRING_SCOPE_ID_LEN bytes). ws and integration must be cm_id_valid() ids. */
void cm_keyring_scope_id(char out[CM_KEYRING_SCOPE_ID_LEN], const char *ws,
                         const char *integration);

/*
 * Crypto-shreds every key id of one scope (above) with cm_keyring_shred(), inside the
 * caller's transaction when one is open. *destroyed receives the number of DEK rows deleted.
 * Returns CM_OK, CM_INVALID when id is not a cm_id_valid() id, or the database's error.
 */
int cm_keyring_shred_scope(struct cm_keyring *kr, struct cm_pg *pg, enum cm_key_scope scope,
                           const char *id, long *destroyed) CM_MUST_CHECK;

/*
 * Re-wraps every DEK whose KEK is older than the newest under the newest KEK, leaving the
 * DEKs, and so every sealed value, unchanged (like Vault's transit rewrap). Works in batches
 * of 100 rows, each in its own transaction (so pg must not be inside one: CM_CONFLICT), the
 * rows locked while rewritten. Every replica's file must hold the new KEK before this runs,
 * or a replica may still wrap new DEKs under the old one. *rewrapped (may be NULL) receives
 * the number of DEKs moved, including on failure. Returns CM_OK; CM_NOTFOUND when some DEK's
 * KEK version is not in the file, or CM_DENIED when some wrapped DEK does not verify (those
 * are logged and left as they are, the others are still rewrapped: keep the old KEK line
 * until this returns CM_OK); or the database's error, the current batch rolled back.
 */
int cm_keyring_rewrap(struct cm_keyring *kr, struct cm_pg *pg, long *rewrapped) CM_MUST_CHECK;

#endif
