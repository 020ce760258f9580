/*
 * test_keyring_shred - crypto-shredding: a key id's DEKs destroyed here and, after the cache
 * TTL, in another replica; a scope's key ids (ws:<ws>, ws:<ws>:int:<integration>) shredded
 * by their exact parts, never by prefix. Part of test_keyring (keyring_suite.h).
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/id.h"
#include "harness.h"
#include "keyring_suite.h"

void test_shred(void)
{
    struct cm_pg *pg = connect_as("doms_router", "router");
    char line[128];
    const char *path;
    struct cm_keyring *kr, *replica, *fresh;
    struct cm_buf s1[3], s2, s3;
    long n = -1;

    snprintf(line, sizeof(line), "1:%s\n", b64_1);
    path = kek_file("shred.kek", line);
    kr = load(path);
    replica = load(path);
    for (int i = 0; i < 3; i++)
        seal(kr, pg, "ws:s1", "router.messages.text:9", "to be forgotten", &s1[i]);
    seal(kr, pg, "ws:s2", "router.messages.text:9", "to be kept", &s2);
    seal(kr, pg, "ws:s3", "router.messages.text:9", "shredded elsewhere", &s3);
    CHECK_INT(open_as(replica, pg, "ws:s3", "router.messages.text:9", s3.data, s3.len,
                      "shredded elsewhere"),
              CM_OK); /* now in the replica's cache */

    CHECK_INT(cm_keyring_shred(kr, pg, "ws:s1", &n), CM_OK);
    CHECK_INT(n, 1);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = $1", "ws:s1"), 0);
    for (int i = 0; i < 3; i++)
        CHECK_INT(open_as(kr, pg, "ws:s1", "router.messages.text:9", s1[i].data, s1[i].len, NULL),
                  CM_NOTFOUND);
    CHECK_INT(open_as(kr, pg, "ws:s2", "router.messages.text:9", s2.data, s2.len, "to be kept"),
              CM_OK);
    fresh = load(path);
    CHECK_INT(open_as(fresh, pg, "ws:s1", "router.messages.text:9", s1[0].data, s1[0].len, NULL),
              CM_NOTFOUND);
    CHECK_INT(open_as(fresh, pg, "ws:s2", "router.messages.text:9", s2.data, s2.len, "to be kept"),
              CM_OK);
    CHECK_INT(cm_keyring_shred(kr, pg, "ws:s1", &n), CM_OK);
    CHECK_INT(n, 0);
    CHECK_INT(cm_keyring_shred(kr, pg, "", &n), CM_INVALID);

    /* The key id used again gets a new DEK; the old values stay unreadable. */
    {
        struct cm_buf again;
        seal(kr, pg, "ws:s1", "router.messages.text:9", "new life", &again);
        CHECK(open_as(fresh, pg, "ws:s1", "router.messages.text:9", s1[1].data, s1[1].len, NULL) !=
              CM_OK);
        CHECK_INT(open_as(fresh, pg, "ws:s1", "router.messages.text:9", again.data, again.len,
                          "new life"),
                  CM_OK);
        cm_buf_cleanup(&again);
    }

    /* Shredded by one replica: another stops opening within its cache TTL (1 s here). */
    cm_keyring_set_cache_ttl(replica, 1);
    CHECK_INT(cm_keyring_shred(kr, pg, "ws:s3", &n), CM_OK);
    th_sleep_ms(1100);
    CHECK_INT(open_as(replica, pg, "ws:s3", "router.messages.text:9", s3.data, s3.len, NULL),
              CM_NOTFOUND);

    for (int i = 0; i < 3; i++)
        cm_buf_cleanup(&s1[i]);
    cm_buf_cleanup(&s2);
    cm_buf_cleanup(&s3);
    cm_keyring_destroy(kr);
    cm_keyring_destroy(replica);
    cm_keyring_destroy(fresh);
    cm_pg_destroy(pg);
}

/* Key ids of scopes: ws:<ws> and ws:<ws>:int:<integration>, shredded by exact parts. */
void test_shred_scope(void)
{
    struct cm_pg *pg = connect_as("doms_router", "router");
    static const char *const kids[] = {
        "ws:wa",          "ws:wa:int:i1", "ws:wa:int:i2",   "ws:wb:int:i1",  "ws:wab",
        "ws:wab:int:i1x", "int:i1",       "ws:wa:int:i1:x", "ws:wa:intx:i1",
    };
    char line[128], kid[CM_KEYRING_SCOPE_ID_LEN], long_ws[CM_ID_MAX + 1], long_int[CM_ID_MAX + 1];
    struct cm_keyring *kr;
    struct cm_buf sealed;
    long n = -1;

    snprintf(line, sizeof(line), "1:%s\n", b64_1);
    kr = load(kek_file("scope.kek", line));

    cm_keyring_scope_id(kid, "wa", NULL);
    CHECK_STR(kid, "ws:wa");
    cm_keyring_scope_id(kid, "wa", "i1");
    CHECK_STR(kid, "ws:wa:int:i1");
    /* The longest ids fit whole: a truncated key id could name another scope's key. */
    memset(long_ws, 'w', CM_ID_MAX);
    long_ws[CM_ID_MAX] = '\0';
    memset(long_int, 'i', CM_ID_MAX);
    long_int[CM_ID_MAX] = '\0';
    cm_keyring_scope_id(kid, long_ws, long_int);
    CHECK_INT((long)strlen(kid), (long)(strlen("ws::int:") + 2 * CM_ID_MAX));

    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        seal(kr, pg, kids[i], "router.messages.text:1", kids[i], &sealed);
        cm_buf_cleanup(&sealed);
    }

    /* An integration: its key under whichever workspace, nothing whose parts differ. */
    CHECK_INT(cm_keyring_shred_scope(kr, pg, CM_KEY_SCOPE_INTEGRATION, "i1", &n), CM_OK);
    CHECK_INT(n, 2);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id LIKE $1", "ws:w_:int:i1"), 0);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = ANY($1::text[])",
                    "{ws:wa,ws:wa:int:i2,ws:wab,ws:wab:int:i1x,int:i1,ws:wa:int:i1:x,"
                    "ws:wa:intx:i1}"),
              7);

    /* A workspace: its own key and its integrations' keys, never those of "wab". */
    CHECK_INT(cm_keyring_shred_scope(kr, pg, CM_KEY_SCOPE_WORKSPACE, "wa", &n), CM_OK);
    CHECK_INT(n, 2);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = ANY($1::text[])",
                    "{ws:wab,ws:wab:int:i1x,int:i1,ws:wa:int:i1:x,ws:wa:intx:i1}"),
              5);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = ANY($1::text[])",
                    "{ws:wa,ws:wa:int:i2}"),
              0);
    CHECK_INT(cm_keyring_shred_scope(kr, pg, CM_KEY_SCOPE_WORKSPACE, "wa", &n), CM_OK);
    CHECK_INT(n, 0);

    /* Not an id: refused before any statement, nothing shredded. */
    CHECK_INT(cm_keyring_shred_scope(kr, pg, CM_KEY_SCOPE_WORKSPACE, "", &n), CM_INVALID);
    CHECK_INT(n, 0);
    CHECK_INT(cm_keyring_shred_scope(kr, pg, CM_KEY_SCOPE_WORKSPACE, "wab:int", &n), CM_INVALID);
    CHECK_INT(cm_keyring_shred_scope(kr, pg, CM_KEY_SCOPE_INTEGRATION, "i%", &n), CM_INVALID);
    CHECK_INT(count(pg, "SELECT count(*) FROM data_keys WHERE key_id = ANY($1::text[])",
                    "{ws:wab,ws:wab:int:i1x,int:i1,ws:wa:int:i1:x,ws:wa:intx:i1}"),
              5);

    cm_keyring_destroy(kr);
    cm_pg_destroy(pg);
}
