/*
 * keyring_suite.h - what test_keyring.c shares with test_keyring_shred.c: one test program,
 * one database with the router's schema, split into files by concern.
 */
#ifndef KEYRING_SUITE_H
#define KEYRING_SUITE_H

#include <stddef.h>

#include "common/keyring.h"
#include "common/pg.h"

/* A KEK of the test, base64 ("1:<it>" is a KEK file's line). */
extern char b64_1[64];

/* A connection as role with schema first in its search_path. */
struct cm_pg *connect_as(const char *role, const char *schema);
/* A KEK file with the given lines ("1:<key>" ...) in the scratch directory, mode 0600; its
 * path (static, one of 16 kept). */
const char *kek_file(const char *name, const char *content);
/* The keyring of the KEK file at path (loading must succeed). */
struct cm_keyring *load(const char *path);
/* Seals pt under key_id and aad; the sealed value is left in out (caller cleans up). */
void seal(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
          const char *pt, struct cm_buf *out);
/* Opens ct and returns the result code; on success the plaintext must equal want. */
int open_as(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
            const void *ct, size_t len, const char *want);
/* The first value of a one-parameter query (param NULL: none) as a number, -1 for no row. */
long count(struct cm_pg *pg, const char *sql, const char *param);

/* test_keyring_shred.c */
void test_shred(void);
void test_shred_scope(void);

#endif
