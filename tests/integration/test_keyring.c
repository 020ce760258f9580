/*
 * test_keyring - envelope encryption against a real PostgreSQL, as a service uses it: the
 * router's role in its own schema (and the vault's, for KEK rotation, so that the counts
 * there are this test's alone). Round trips; every kind of wrong input refused; the KEK
 * file's refusals; KEK rotation and rewrap; replicas racing to create a key; DEKs created in
 * transactions that roll back; no plaintext anywhere in the schema. Crypto-shredding is in
 * test_keyring_shred.c (keyring_suite.h).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/crypto.h"
#include "common/keyring.h"
#include "common/pg.h"
#include "harness.h"
#include "keyring_suite.h"

static struct th_db db;
static unsigned char kek1[32], kek2[32], kek_other[32];
char b64_1[64];
static char b64_2[64], b64_other[64];

static const struct cm_migration migrations[] = {
    {1, "data_keys", cm_keyring_schema_sql},
    {2, "messages", "CREATE TABLE messages (id integer PRIMARY KEY, text bytea NOT NULL)"},
};

struct cm_pg *connect_as(const char *role, const char *schema)
{
    char *url = th_db_url(&db, role);
    struct cm_pg *pg = NULL;

    CHECK_INT(cm_pg_connect(&pg, url, schema), CM_OK);
    free(url);
    return pg;
}

static void b64(const unsigned char *key, size_t len, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, key, len, sodium_base64_VARIANT_ORIGINAL);
}

/* Writes content to <tmpdir>/<name> with mode and returns the path (static, per name). */
static const char *write_file(const char *name, const char *content, mode_t mode)
{
    static char paths[16][512];
    static int next;
    char *path = paths[next++ % 16];
    int fd;

    snprintf(path, 512, "%s/%s", th_tmpdir(), name);
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, content, strlen(content)) == (ssize_t)strlen(content));
    close(fd);
    chmod(path, mode);
    return path;
}

const char *kek_file(const char *name, const char *content)
{
    return write_file(name, content, 0600);
}

struct cm_keyring *load(const char *path)
{
    struct cm_keyring *kr = NULL;
    char err[256] = "";

    CHECK_INT(cm_keyring_load(&kr, path, err, sizeof(err)), CM_OK);
    if (err[0] != '\0')
        printf("   load: %s\n", err);
    return kr;
}

/* The stderr lines written while a load runs (the log), for the permission warning. */
static char *load_capturing(const char *path, struct cm_keyring **kr, int *rc, char *err,
                            size_t errlen)
{
    char log[600];
    int fd, saved;

    snprintf(log, sizeof(log), "%s/stderr.log", th_tmpdir());
    fflush(stderr);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    saved = dup(2);
    dup2(fd, 2);
    close(fd);
    *rc = cm_keyring_load(kr, path, err, errlen);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    return th_read_file(log);
}

/* Expects a refusal naming DOMS_KEK_FILE and want, without any of the secret texts. */
static void expect_refusal(const char *path, const char *want, const char *secret1,
                           const char *secret2)
{
    struct cm_keyring *kr = NULL;
    char err[512] = "";
    int rc = cm_keyring_load(&kr, path, err, sizeof(err));

    printf("   refused: %s\n", err);
    CHECK_INT(rc, CM_INVALID);
    CHECK(kr == NULL);
    CHECK_CONTAINS(err, "DOMS_KEK_FILE");
    CHECK_CONTAINS(err, want);
    CHECK(strchr(err, '\n') == NULL);
    if (secret1 != NULL)
        CHECK_MSG(strstr(err, secret1) == NULL, "the message quotes key material");
    if (secret2 != NULL)
        CHECK_MSG(strstr(err, secret2) == NULL, "the message quotes key material");
}

static void test_kek_file(void)
{
    unsigned char k31[31];
    char b31[64], line[256], dir[600];
    struct cm_keyring *kr = NULL;
    char err[512], *log;
    int rc;

    expect_refusal(NULL, "not set", NULL, NULL);
    expect_refusal("", "not set", NULL, NULL);
    snprintf(dir, sizeof(dir), "%s/no-such.kek", th_tmpdir());
    expect_refusal(dir, "cannot open", NULL, NULL);
    expect_refusal(th_tmpdir(), "cannot read", NULL, NULL); /* a directory: unreadable */
    expect_refusal(kek_file("empty.kek", ""), "no key", NULL, NULL);
    expect_refusal(kek_file("comments.kek", "# only a comment\n\n   \n"), "no key", NULL, NULL);

    snprintf(line, sizeof(line), "1:%.20s*%s\n", b64_1, b64_1 + 21);
    expect_refusal(kek_file("bad64.kek", line), "line 1: the key is not valid base64", b64_1 + 21,
                   NULL);

    cm_crypto_random(k31, sizeof(k31));
    b64(k31, sizeof(k31), b31, sizeof(b31));
    snprintf(line, sizeof(line), "# rotated 2024\n2:%s\n", b31);
    expect_refusal(kek_file("short.kek", line), "line 2: the key is 31 bytes, want 32", b31, NULL);

    snprintf(line, sizeof(line), "1:%s\n\n1:%s\n", b64_1, b64_2);
    expect_refusal(kek_file("dup.kek", line), "line 3: version 1 repeats line 1", b64_1, b64_2);

    snprintf(line, sizeof(line), "%s\n", b64_1); /* a key without its version */
    expect_refusal(kek_file("nocolon.kek", line), "line 1: expected <version>:<base64", b64_1,
                   NULL);
    expect_refusal(kek_file("garbage.kek", "hello world\n"), "line 1: expected", NULL, NULL);
    snprintf(line, sizeof(line), "1:%s\nv2:%s\n", b64_1, b64_2);
    expect_refusal(kek_file("alpha.kek", line), "line 2: the version before ':' must be a positive",
                   b64_1, b64_2);
    snprintf(line, sizeof(line), "0:%s\n", b64_1);
    expect_refusal(kek_file("zero.kek", line), "line 1: the version", b64_1, NULL);
    snprintf(line, sizeof(line), "-3:%s\n", b64_1);
    expect_refusal(kek_file("neg.kek", line), "line 1: the version", b64_1, NULL);
    expect_refusal(kek_file("nokey.kek", "1:\n"), "line 1: no key", NULL, NULL);

    /* Comments, blanks, CRLF, spaces and missing padding are fine; the highest version wins. */
    snprintf(line, sizeof(line), "# keys\r\n\r\n 7 : %s \r\n3:%.43s\n", b64_2, b64_1);
    kr = load(kek_file("good.kek", line));
    CHECK(kr != NULL);
    if (kr != NULL)
        CHECK_INT(cm_keyring_kek_version(kr), 7);
    cm_keyring_destroy(kr);
    cm_keyring_destroy(NULL);

    /* A file others can read loads, with a warning that names it and quotes no key. */
    snprintf(line, sizeof(line), "1:%s\n", b64_1);
    kr = NULL;
    log = load_capturing(write_file("open.kek", line, 0644), &kr, &rc, err, sizeof(err));
    CHECK_INT(rc, CM_OK);
    CHECK_CONTAINS(log, "DOMS_KEK_FILE");
    CHECK_CONTAINS(log, "group or others");
    CHECK(strstr(log, b64_1) == NULL);
    free(log);
    cm_keyring_destroy(kr);

    /* And a 0600 one loads without it. */
    kr = NULL;
    log = load_capturing(kek_file("closed.kek", line), &kr, &rc, err, sizeof(err));
    CHECK_INT(rc, CM_OK);
    CHECK(log == NULL || strstr(log, "group or others") == NULL);
    free(log);
    cm_keyring_destroy(kr);
}

void seal(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
          const char *pt, struct cm_buf *out)
{
    cm_buf_init(out);
    CHECK_INT(cm_keyring_seal(kr, pg, key_id, aad, pt, strlen(pt), out), CM_OK);
}

int open_as(struct cm_keyring *kr, struct cm_pg *pg, const char *key_id, const char *aad,
            const void *ct, size_t len, const char *want)
{
    struct cm_buf out;
    int rc;

    cm_buf_init(&out);
    rc = cm_keyring_open(kr, pg, key_id, aad, ct, len, &out);
    if (rc == CM_OK && want != NULL)
        CHECK_MSG(out.len == strlen(want) && memcmp(out.data, want, out.len) == 0,
                  "opened the wrong plaintext");
    if (rc != CM_OK)
        CHECK_MSG(out.len == 0, "a failed open left %zu bytes in out", out.len);
    cm_buf_wipe(&out);
    return rc;
}

long count(struct cm_pg *pg, const char *sql, const char *param)
{
    const char *params[1] = {param};

    CHECK_INT(cm_pg_exec(pg, sql, param ? 1 : 0, params), CM_OK);
    return cm_pg_ntuples(pg) ? strtol(cm_pg_value(pg, 0, 0), NULL, 10) : -1;
}

static void test_round_trip(void)
{
    struct cm_pg *pg = connect_as("doms_router", "router");
    struct cm_keyring *kr;
    const char *msg = "Hi! Is the blue one still in stock?";
    const char *aad = "router.messages.text:1";
    struct cm_buf a, b, other;
    unsigned char *t;
    char line[128];

    snprintf(line, sizeof(line), "# v1\n1:%s\n", b64_1);
    kr = load(kek_file("rt.kek", line));
    seal(kr, pg, "ws:1", aad, msg, &a);
    seal(kr, pg, "ws:1", aad, msg, &b);
    CHECK_INT(a.len, strlen(msg) + CM_KEYRING_OVERHEAD);
    CHECK_INT((unsigned char)a.data[0], 0x01);
    CHECK(memcmp(a.data + 1, "\0\0\0\1", 4) == 0); /* DEK version 1, big-endian */
    CHECK_MSG(memcmp(a.data, b.data, a.len) != 0, "two seals of one text must differ (nonce)");
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, a.len, msg), CM_OK);
    CHECK_INT(open_as(kr, pg, "ws:1", aad, b.data, b.len, msg), CM_OK);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = $1", "ws:1"), 1);

    /* Empty and binary values. */
    {
        struct cm_buf e, out;
        const char bin[] = "a\0b\0\xff";

        cm_buf_init(&e);
        CHECK_INT(cm_keyring_seal(kr, pg, "ws:1", aad, "", 0, &e), CM_OK);
        CHECK_INT(e.len, CM_KEYRING_OVERHEAD);
        CHECK_INT(open_as(kr, pg, "ws:1", aad, e.data, e.len, ""), CM_OK);
        cm_buf_reset(&e);
        CHECK_INT(cm_keyring_seal(kr, pg, "ws:1", aad, bin, sizeof(bin), &e), CM_OK);
        cm_buf_init(&out);
        CHECK_INT(cm_keyring_open(kr, pg, "ws:1", aad, e.data, e.len, &out), CM_OK);
        CHECK(out.len == sizeof(bin) && memcmp(out.data, bin, sizeof(bin)) == 0);
        cm_buf_wipe(&out);
        cm_buf_cleanup(&e);
    }

    /* Wrong place, wrong key id (with a DEK of its own, or none at all). */
    CHECK_INT(open_as(kr, pg, "ws:1", "router.messages.text:2", a.data, a.len, NULL), CM_DENIED);
    CHECK_INT(open_as(kr, pg, "ws:1", "", a.data, a.len, NULL), CM_DENIED);
    seal(kr, pg, "ws:2", aad, "another workspace", &other);
    CHECK_INT(open_as(kr, pg, "ws:2", aad, a.data, a.len, NULL), CM_DENIED);
    CHECK_INT(open_as(kr, pg, "ws:never", aad, a.data, a.len, NULL), CM_NOTFOUND);
    CHECK_INT(open_as(kr, pg, "", aad, a.data, a.len, NULL), CM_INVALID);
    CHECK_INT(open_as(kr, pg, "ws:1", NULL, a.data, a.len, NULL), CM_INVALID);

    /* Every byte of the value matters: format, version, nonce, ciphertext, tag. */
    t = cm_xmalloc(a.len);
    for (size_t i = 0; i < a.len; i++) {
        int rc;
        memcpy(t, a.data, a.len);
        t[i] ^= 0x01;
        rc = open_as(kr, pg, "ws:1", aad, t, a.len, NULL);
        if (i >= 1 && i <= 3) /* another DEK version, which does not exist */
            CHECK_MSG(rc == CM_NOTFOUND, "byte %zu changed: %d", i, rc);
        else
            CHECK_MSG(rc == CM_DENIED, "byte %zu changed: %d", i, rc);
    }
    /* Cut short anywhere, or an unknown format. */
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, a.len - 1, NULL), CM_DENIED);
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, CM_KEYRING_OVERHEAD - 1, NULL), CM_DENIED);
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, 5, NULL), CM_DENIED);
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, 0, NULL), CM_DENIED);
    memcpy(t, a.data, a.len);
    t[0] = 0x02;
    CHECK_INT(open_as(kr, pg, "ws:1", aad, t, a.len, NULL), CM_DENIED);
    memcpy(t, a.data, a.len);
    memset(t + 1, 0, 4); /* version 0 */
    CHECK_INT(open_as(kr, pg, "ws:1", aad, t, a.len, NULL), CM_DENIED);
    memset(t + 1, 0xff, 4); /* beyond any integer column */
    CHECK_INT(open_as(kr, pg, "ws:1", aad, t, a.len, NULL), CM_DENIED);
    free(t);
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, a.len, msg), CM_OK);
    CHECK_INT(cm_keyring_seal(kr, pg, "", aad, "x", 1, &other), CM_INVALID);

    /* The same version under another key: refused as it does not verify. */
    {
        struct cm_keyring *wrong;
        snprintf(line, sizeof(line), "1:%s\n", b64_other);
        wrong = load(kek_file("wrong.kek", line));
        CHECK_INT(open_as(wrong, pg, "ws:1", aad, a.data, a.len, NULL), CM_DENIED);
        cm_keyring_destroy(wrong);
    }

    /* A wrapped DEK moved to another key id, or altered, does not unwrap. */
    CHECK_INT(cm_pg_exec(pg,
                         "UPDATE data_keys SET wrapped = (SELECT wrapped FROM data_keys"
                         " WHERE key_id = 'ws:1') WHERE key_id = 'ws:2'",
                         0, NULL),
              CM_OK);
    cm_keyring_set_cache_ttl(kr, 0);
    CHECK_INT(open_as(kr, pg, "ws:2", aad, other.data, other.len, NULL), CM_DENIED);
    CHECK_INT(cm_pg_exec(pg,
                         /* Flipped, not set: a random byte already 0xff altered nothing. */
                         "UPDATE data_keys SET wrapped = set_byte(wrapped, 19,"
                         " get_byte(wrapped, 19) # 255) WHERE key_id = 'ws:1'",
                         0, NULL),
              CM_OK);
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, a.len, NULL), CM_DENIED);
    CHECK_INT(cm_pg_exec(pg, "UPDATE data_keys SET wrapped = '\\x00'::bytea WHERE key_id = 'ws:1'",
                         0, NULL),
              CM_OK);
    CHECK_INT(open_as(kr, pg, "ws:1", aad, a.data, a.len, NULL), CM_DENIED);

    cm_buf_cleanup(&a);
    cm_buf_cleanup(&b);
    cm_buf_cleanup(&other);
    cm_keyring_destroy(kr);
    cm_pg_destroy(pg);
}

#define ROT_KEYS 230 /* more than two rewrap batches */

static void test_rotation(void)
{
    struct cm_pg *pg = connect_as("doms_vault", "vault");
    char v1[128], v12[256], v2[128], key_id[32];
    struct cm_keyring *kr1, *kr2, *kr3, *only1;
    struct cm_buf *vals = cm_xcalloc(ROT_KEYS + 1, sizeof(*vals));
    long n = -1;

    CHECK_INT(cm_pg_migrate(pg, "vault", migrations, 1), CM_OK);
    snprintf(v1, sizeof(v1), "1:%s\n", b64_1);
    snprintf(v12, sizeof(v12), "1:%s\n2:%s\n", b64_1, b64_2);
    snprintf(v2, sizeof(v2), "2:%s\n", b64_2);

    /* Under KEK 1: many key ids. */
    kr1 = load(kek_file("rot1.kek", v1));
    for (int i = 0; i < ROT_KEYS; i++) {
        snprintf(key_id, sizeof(key_id), "int:%03d", i);
        seal(kr1, pg, key_id, "vault.tokens.token:1", key_id, &vals[i]);
    }
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE kek_version = 1", NULL), ROT_KEYS);

    /* KEK 2 added: new DEKs are wrapped under it at once; old values still open. */
    kr2 = load(kek_file("rot12.kek", v12));
    CHECK_INT(cm_keyring_kek_version(kr2), 2);
    seal(kr2, pg, "int:new", "vault.tokens.token:1", "int:new", &vals[ROT_KEYS]);
    CHECK_INT(count(pg, "SELECT kek_version FROM data_keys WHERE key_id = $1", "int:new"), 2);
    CHECK_INT(count(pg, "SELECT kek_version FROM data_keys WHERE key_id = $1", "int:007"), 1);
    CHECK_INT(
        open_as(kr2, pg, "int:007", "vault.tokens.token:1", vals[7].data, vals[7].len, "int:007"),
        CM_OK);

    /* Rewrap: not inside a transaction; then every DEK moves, in batches. */
    CHECK_INT(cm_pg_begin(pg), CM_OK);
    CHECK_INT(cm_keyring_rewrap(kr2, pg, &n), CM_CONFLICT);
    cm_pg_rollback(pg);
    CHECK_INT(cm_keyring_rewrap(kr2, pg, &n), CM_OK);
    CHECK_INT(n, ROT_KEYS);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE kek_version <> 2", NULL), 0);
    CHECK_INT(cm_keyring_rewrap(kr2, pg, &n), CM_OK);
    CHECK_INT(n, 0);

    /* The old line removed: everything still opens, without any cache. */
    kr3 = load(kek_file("rot2.kek", v2));
    for (int i = 0; i <= ROT_KEYS; i++) {
        if (i < ROT_KEYS)
            snprintf(key_id, sizeof(key_id), "int:%03d", i);
        else
            snprintf(key_id, sizeof(key_id), "int:new");
        CHECK_MSG(open_as(kr3, pg, key_id, "vault.tokens.token:1", vals[i].data, vals[i].len,
                          key_id) == CM_OK,
                  "value %d after rewrap", i);
    }
    /* And a replica still on the old file alone can no longer unwrap. */
    only1 = load(kek_file("rot1b.kek", v1));
    CHECK_INT(
        open_as(only1, pg, "int:001", "vault.tokens.token:1", vals[1].data, vals[1].len, NULL),
        CM_NOTFOUND);
    /* Its rewrap leaves what it cannot read and says so. */
    CHECK_INT(
        cm_pg_exec(pg, "UPDATE data_keys SET kek_version = 1 WHERE key_id = 'int:001'", 0, NULL),
        CM_OK);
    CHECK_INT(cm_keyring_rewrap(kr3, pg, &n), CM_NOTFOUND); /* version 1 is not in its file */
    CHECK_INT(n, 0);

    for (int i = 0; i <= ROT_KEYS; i++)
        cm_buf_cleanup(&vals[i]);
    free(vals);
    cm_keyring_destroy(kr1);
    cm_keyring_destroy(kr2);
    cm_keyring_destroy(kr3);
    cm_keyring_destroy(only1);
    cm_pg_destroy(pg);
}

/* --- replicas racing -------------------------------------------------------------------- */

#define RACERS 4

struct racer {
    struct cm_keyring *kr; /* shared by two threads, like one process; or a replica's own */
    const char *key_id;
    int in_tx;
    pthread_barrier_t *go;
    struct cm_buf out;
    int rc;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct cm_pg *pg = connect_as("doms_router", "router");

    cm_buf_init(&r->out);
    if (r->in_tx)
        CHECK_INT(cm_pg_begin(pg), CM_OK);
    pthread_barrier_wait(r->go);
    r->rc = cm_keyring_seal(r->kr, pg, r->key_id, "router.messages.text:1", r->key_id,
                            strlen(r->key_id), &r->out);
    if (r->in_tx && r->rc == CM_OK)
        r->rc = cm_pg_commit(pg);
    cm_pg_destroy(pg);
    return NULL;
}

static void test_race(void)
{
    struct cm_pg *pg = connect_as("doms_router", "router");
    char line[128], key_id[16][32];
    const char *path;
    struct cm_keyring *kr[2], *fresh;

    snprintf(line, sizeof(line), "1:%s\n", b64_1);
    path = kek_file("race.kek", line);
    kr[0] = load(path);
    kr[1] = load(path);
    fresh = load(path);
    for (int round = 0; round < 16; round++) {
        pthread_barrier_t go;
        pthread_t t[RACERS];
        struct racer r[RACERS];

        snprintf(key_id[round], sizeof(key_id[round]), "ws:race%d", round);
        pthread_barrier_init(&go, NULL, RACERS);
        for (int i = 0; i < RACERS; i++) {
            /* Two "processes" of two threads each; half the rounds inside transactions. */
            r[i] = (struct racer){kr[i % 2], key_id[round], round % 2, &go, {0}, 0};
            pthread_create(&t[i], NULL, race, &r[i]);
        }
        for (int i = 0; i < RACERS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = $1", key_id[round]), 1);
        for (int i = 0; i < RACERS; i++) {
            CHECK_INT(r[i].rc, CM_OK);
            CHECK_MSG(open_as(fresh, pg, key_id[round], "router.messages.text:1", r[i].out.data,
                              r[i].out.len, key_id[round]) == CM_OK,
                      "round %d racer %d", round, i);
            cm_buf_cleanup(&r[i].out);
        }
    }
    cm_keyring_destroy(kr[0]);
    cm_keyring_destroy(kr[1]);
    cm_keyring_destroy(fresh);
    cm_pg_destroy(pg);
}

/* A DEK created in a transaction that rolls back must not be used afterwards. */
static void test_rollback(void)
{
    struct cm_pg *pg = connect_as("doms_router", "router");
    char line[128];
    const char *path, *aad = "router.messages.text:5";
    struct cm_keyring *kr, *fresh;
    struct cm_buf lost, kept, a, b, sp;

    snprintf(line, sizeof(line), "1:%s\n", b64_1);
    path = kek_file("rb.kek", line);
    kr = load(path);

    CHECK_INT(cm_pg_begin(pg), CM_OK);
    seal(kr, pg, "ws:rb", aad, "rolled back", &lost);
    cm_pg_rollback(pg);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = $1", "ws:rb"), 0);
    seal(kr, pg, "ws:rb", aad, "kept", &kept); /* outside a transaction: a new DEK */
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = $1", "ws:rb"), 1);
    fresh = load(path);
    CHECK_INT(open_as(fresh, pg, "ws:rb", aad, kept.data, kept.len, "kept"), CM_OK);
    CHECK(open_as(fresh, pg, "ws:rb", aad, lost.data, lost.len, NULL) != CM_OK);

    /* Several values in the transaction that creates the key, then committed. */
    CHECK_INT(cm_pg_begin(pg), CM_OK);
    seal(kr, pg, "ws:tx", aad, "first", &a);
    seal(kr, pg, "ws:tx", aad, "second", &b);
    CHECK_INT(open_as(kr, pg, "ws:tx", aad, a.data, a.len, "first"), CM_OK);
    CHECK_INT(cm_pg_commit(pg), CM_OK);
    CHECK_INT(open_as(kr, pg, "ws:tx", aad, b.data, b.len, "second"), CM_OK);
    CHECK_INT(open_as(fresh, pg, "ws:tx", aad, a.data, a.len, "first"), CM_OK);
    CHECK_INT(open_as(fresh, pg, "ws:tx", aad, b.data, b.len, "second"), CM_OK);
    cm_buf_cleanup(&a);
    cm_buf_cleanup(&b);

    /* Created under a savepoint rolled back, the outer transaction committing. */
    CHECK_INT(cm_pg_begin(pg), CM_OK);
    CHECK_INT(cm_pg_exec(pg, "SAVEPOINT s", 0, NULL), CM_OK);
    seal(kr, pg, "ws:sp", aad, "undone", &a);
    CHECK_INT(cm_pg_exec(pg, "ROLLBACK TO SAVEPOINT s", 0, NULL), CM_OK);
    seal(kr, pg, "ws:sp", aad, "done", &sp);
    CHECK_INT(cm_pg_commit(pg), CM_OK);
    seal(kr, pg, "ws:sp", aad, "after", &b);
    CHECK_INT(open_as(fresh, pg, "ws:sp", aad, sp.data, sp.len, "done"), CM_OK);
    CHECK_INT(open_as(fresh, pg, "ws:sp", aad, b.data, b.len, "after"), CM_OK);
    cm_buf_cleanup(&a);
    cm_buf_cleanup(&b);
    cm_buf_cleanup(&sp);

    cm_buf_cleanup(&lost);
    cm_buf_cleanup(&kept);
    cm_keyring_destroy(kr);
    cm_keyring_destroy(fresh);
    cm_pg_destroy(pg);
}

struct sealer {
    struct cm_keyring *kr;
    const char *key_id;
    struct cm_buf out;
    int rc;
};

static void *seal_thread(void *arg)
{
    struct sealer *s = arg;
    struct cm_pg *pg = connect_as("doms_router", "router");

    cm_buf_init(&s->out);
    s->rc = cm_keyring_seal(s->kr, pg, s->key_id, "router.messages.text:6", "from B", 6, &s->out);
    cm_pg_destroy(pg);
    return NULL;
}

/* True when a session of the test's database waits on a lock: B on A's uncommitted row. */
static bool waits_on_lock(PGconn *admin)
{
    char *v = th_db_value(admin,
                          "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                          " current_database() AND wait_event_type = 'Lock'",
                          NULL, 0);
    bool yes = v != NULL && atol(v) > 0;

    free(v);
    return yes;
}

/*
 * One thread's transaction creates a DEK and is still open when another thread of the same
 * process needs that key: the other thread must wait for the outcome, not use the cached key
 * (which dies with a rollback).
 */
static void test_pending_elsewhere(void)
{
    struct cm_pg *pg = connect_as("doms_router", "router");
    char line[128];
    const char *path, *aad = "router.messages.text:6";
    struct cm_keyring *kr, *fresh;
    PGconn *admin = th_db_connect(&db, NULL);

    snprintf(line, sizeof(line), "1:%s\n", b64_1);
    path = kek_file("pe.kek", line);
    kr = load(path);
    fresh = load(path);
    for (int commit = 0; commit <= 1; commit++) {
        const char *key_id = commit ? "ws:pe-commit" : "ws:pe-rollback";
        struct sealer b = {kr, key_id, {0}, 0};
        struct cm_buf a;
        pthread_t t;

        CHECK_INT(cm_pg_begin(pg), CM_OK);
        seal(kr, pg, key_id, aad, "from A", &a);
        pthread_create(&t, NULL, seal_thread, &b);
        CHECK_WAIT(waits_on_lock(admin), 10000); /* B waits on A's uncommitted row */
        if (commit)
            CHECK_INT(cm_pg_commit(pg), CM_OK);
        else
            cm_pg_rollback(pg);
        pthread_join(t, NULL);
        CHECK_INT(b.rc, CM_OK);
        CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = $1", key_id), 1);
        CHECK_INT(open_as(fresh, pg, key_id, aad, b.out.data, b.out.len, "from B"), CM_OK);
        if (commit)
            CHECK_INT(open_as(fresh, pg, key_id, aad, a.data, a.len, "from A"), CM_OK);
        else
            CHECK(open_as(fresh, pg, key_id, aad, a.data, a.len, NULL) != CM_OK);
        /* And the process that created it agrees. */
        CHECK_INT(open_as(kr, pg, key_id, aad, b.out.data, b.out.len, "from B"), CM_OK);
        cm_buf_cleanup(&a);
        cm_buf_cleanup(&b.out);
    }
    cm_keyring_destroy(kr);
    cm_keyring_destroy(fresh);
    cm_pg_destroy(pg);
    PQfinish(admin);
}

/* What a service does: sealed values in its table; no plaintext anywhere in the schema. */
static void test_no_plaintext(void)
{
    struct cm_pg *pg = connect_as("doms_router", "router");
    static const char *const texts[] = {"PLAINTEXT-MARKER-alpha: my card number is 4111",
                                        "PLAINTEXT-MARKER-beta: call me at +33 6 12 34 56 78",
                                        "PLAINTEXT-MARKER-gamma"};
    char line[128], aad[64], id[16];
    struct cm_keyring *kr;
    int tables;

    snprintf(line, sizeof(line), "1:%s\n", b64_1);
    kr = load(kek_file("np.kek", line));
    for (int i = 0; i < 3; i++) {
        struct cm_buf ct;
        const char *values[2] = {id, NULL};
        int lengths[2] = {0, 0}, formats[2] = {0, 1};

        snprintf(aad, sizeof(aad), "router.messages.text:%d", 100 + i);
        snprintf(id, sizeof(id), "%d", 100 + i);
        seal(kr, pg, i == 2 ? "ws:np2" : "ws:np", aad, texts[i], &ct);
        values[1] = ct.data;
        lengths[1] = (int)ct.len;
        CHECK_INT(cm_pg_exec_params(pg, "INSERT INTO messages (id, text) VALUES ($1, $2)", 2,
                                    values, lengths, formats, 0),
                  CM_OK);
        cm_buf_cleanup(&ct);
    }

    /* A value copied to another row does not open there. */
    CHECK_INT(
        cm_pg_exec_params(pg, "SELECT text FROM messages WHERE id = 100", 0, NULL, NULL, NULL, 1),
        CM_OK);
    {
        struct cm_buf copy;
        cm_buf_init(&copy);
        cm_buf_append(&copy, cm_pg_value(pg, 0, 0), (size_t)cm_pg_length(pg, 0, 0));
        CHECK_INT(open_as(kr, pg, "ws:np", "router.messages.text:101", copy.data, copy.len, NULL),
                  CM_DENIED);
        CHECK_INT(
            open_as(kr, pg, "ws:np", "router.messages.text:100", copy.data, copy.len, texts[0]),
            CM_OK);
        cm_buf_cleanup(&copy);
    }

    /* Every column of every table of the schema, as text and as binary. */
    CHECK_INT(cm_pg_exec(pg,
                         "SELECT string_agg(format('%I', tablename), ',') FROM pg_tables"
                         " WHERE schemaname = 'router'",
                         0, NULL),
              CM_OK);
    {
        char *list = cm_xstrdup(cm_pg_value(pg, 0, 0)), *save = NULL;
        tables = 0;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char *sql = cm_xasprintf("SELECT * FROM router.%s", t);
            for (int fmt = 0; fmt <= 1; fmt++) {
                CHECK_INT(cm_pg_exec_params(pg, sql, 0, NULL, NULL, NULL, fmt), CM_OK);
                for (int r = 0; r < cm_pg_ntuples(pg); r++) {
                    for (int c = 0; c < PQnfields(cm_pg_result(pg)); c++) {
                        const char *v = cm_pg_value(pg, r, c);
                        size_t len = (size_t)cm_pg_length(pg, r, c);
                        CHECK_MSG(memmem(v, len, "PLAINTEXT-MARKER", 16) == NULL,
                                  "plaintext in router.%s", t);
                        CHECK_MSG(memmem(v, len, "card number", 11) == NULL,
                                  "plaintext in router.%s", t);
                    }
                }
            }
            free(sql);
            tables++;
        }
        free(list);
    }
    CHECK(tables >= 3); /* data_keys, messages, schema_migrations */
    cm_keyring_destroy(kr);
    cm_pg_destroy(pg);
}

int main(void)
{
    struct cm_pg *pg;

    th_init("keyring");
    th_db_create(&db);
    if (sodium_init() < 0)
        return 1;
    cm_crypto_random(kek1, sizeof(kek1));
    cm_crypto_random(kek2, sizeof(kek2));
    cm_crypto_random(kek_other, sizeof(kek_other));
    b64(kek1, sizeof(kek1), b64_1, sizeof(b64_1));
    b64(kek2, sizeof(kek2), b64_2, sizeof(b64_2));
    b64(kek_other, sizeof(kek_other), b64_other, sizeof(b64_other));

    pg = connect_as("doms_router", "router");
    CHECK_INT(cm_pg_migrate(pg, "router", migrations, 2), CM_OK);
    cm_pg_destroy(pg);

    RUN(test_kek_file);
    RUN(test_round_trip);
    RUN(test_rotation);
    RUN(test_shred);
    RUN(test_shred_scope);
    RUN(test_race);
    RUN(test_rollback);
    RUN(test_pending_elsewhere);
    RUN(test_no_plaintext);
    return check_summary();
}
