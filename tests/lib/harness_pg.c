/*
 * harness_pg.c - the tests' PostgreSQL: per-test databases, TLS URLs per identity, the
 * private server's start and stop through deploy/local/lib.sh (see harness.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "harness.h"

/* --- PostgreSQL ------------------------------------------------------------------------ */

static void run_or_die(const char *cmd)
{
    int rc = system(cmd);

    if (rc != 0) {
        fprintf(stderr, "%s: command failed (%d): %s\n", th_test_name(), rc, cmd);
        exit(1);
    }
}

void th_db_create(struct th_db *db)
{
    th_db_create_at(db, th_getenv("DOMS_TEST_PG_URL"));
}

void th_db_create_at(struct th_db *db, const char *admin)
{
    PQconninfoOption *opts = PQconninfoParse(admin, NULL);
    char sql[256], *cmd;
    PGconn *c;
    PGresult *r;

    memset(db, 0, sizeof(*db));
    snprintf(db->name, sizeof(db->name), "t_%s", th_test_name());
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0 && o->val)
            snprintf(db->host, sizeof(db->host), "%s", o->val);
        if (strcmp(o->keyword, "port") == 0 && o->val)
            snprintf(db->port, sizeof(db->port), "%s", o->val);
    }
    PQconninfoFree(opts);

    c = PQconnectdb(admin);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s: admin connection: %s", th_test_name(), PQerrorMessage(c));
        exit(1);
    }
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: %s", th_test_name(), PQresultErrorMessage(r));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
    cmd = cm_xasprintf("'%s/deploy/postgres/provision' '%s' '%s'", th_getenv("DOMS_SOURCE_DIR"),
                       admin, db->name);
    run_or_die(cmd);
    free(cmd);
}

/* Runs one of deploy/local/lib.sh's functions for p's directory and port. */
static void pg_lib(struct th_pg *p, const char *fn)
{
    char *cmd = cm_xasprintf("bash -c '. \"%s/deploy/local/lib.sh\" && %s \"%s\" %d trust \"%s\"' "
                             ">>'%s.log' 2>&1",
                             th_getenv("DOMS_SOURCE_DIR"), fn, p->dir, p->port,
                             th_getenv("DOMS_TEST_PKI"), p->dir);
    run_or_die(cmd);
    free(cmd);
}

/* Appends text to b percent-encoded for a URL's query (unreserved characters and / kept). */
static void put_encoded(struct cm_buf *b, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p) != NULL) {
            cm_buf_append(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            cm_buf_append(b, e, 3);
        }
    }
}

/* Appends "&key=<DOMS_TEST_PKI>/<file>" to b. */
static void put_pki_param(struct cm_buf *b, const char *key, const char *file)
{
    char *path = cm_xasprintf("%s/%s", th_getenv("DOMS_TEST_PKI"), file);

    cm_buf_append(b, "&", 1);
    cm_buf_append(b, key, strlen(key));
    cm_buf_append(b, "=", 1);
    put_encoded(b, path);
    free(path);
}

char *th_pg_tls_query(const char *identity)
{
    struct cm_buf b;
    char *file;

    cm_buf_init(&b);
    cm_buf_append(&b, "sslmode=verify-full", strlen("sslmode=verify-full"));
    put_pki_param(&b, "sslrootcert", "ca.crt");
    if (identity != NULL) {
        file = cm_xasprintf("%s.crt", identity);
        put_pki_param(&b, "sslcert", file);
        free(file);
        file = cm_xasprintf("%s.key", identity);
        put_pki_param(&b, "sslkey", file);
        free(file);
    }
    return cm_buf_steal(&b);
}

void th_pg_start(struct th_pg *p)
{
    char *q = th_pg_tls_query(NULL);

    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "%s/pg", th_tmpdir());
    p->port = th_free_port();
    snprintf(p->admin_url, sizeof(p->admin_url), "postgresql://doms_admin@127.0.0.1:%d/postgres?%s",
             p->port, q);
    free(q);
    pg_lib(p, "doms_pg_start");
}

void th_pg_stop(struct th_pg *p)
{
    char *cmd = cm_xasprintf("bash -c '. \"%s/deploy/local/lib.sh\" && doms_pg_stop \"%s\"' "
                             ">>'%s.log' 2>&1",
                             th_getenv("DOMS_SOURCE_DIR"), p->dir, p->dir);
    run_or_die(cmd);
    free(cmd);
}

void th_pg_restart(struct th_pg *p)
{
    pg_lib(p, "doms_pg_start");
}

/* The service roles and the identity (certificate CN) each logs in with, as pg_ident.conf's
 * map doms in deploy/local/lib.sh says. */
static const char *const role_identities[][2] = {
    {"doms_ingest", "webhook-ingest"}, {"doms_router", "conversation-router"},
    {"doms_vault", "token-vault"},     {"doms_reaper", "retention-reaper"},
    {"doms_ai", "ai-suggest"},
};

const char *th_db_identity(const char *role)
{
    for (size_t i = 0; i < sizeof(role_identities) / sizeof(role_identities[0]); i++) {
        if (strcmp(role_identities[i][0], role) == 0)
            return role_identities[i][1];
    }
    return NULL;
}

char *th_db_url_as(const struct th_db *db, const char *role, const char *identity)
{
    char *q = th_pg_tls_query(identity);
    char *url = cm_xasprintf("postgresql://%s@%s:%s/%s?%s", role, db->host, db->port, db->name, q);

    free(q);
    return url;
}

char *th_db_url(const struct th_db *db, const char *role)
{
    return th_db_url_as(db, role, th_db_identity(role));
}

PGconn *th_db_connect(const struct th_db *db, const char *role)
{
    char *url = th_db_url(db, role ? role : "doms_admin");
    PGconn *c = PQconnectdb(url);

    free(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s: connect as %s: %s", th_test_name(), role ? role : "admin",
                PQerrorMessage(c));
        exit(1);
    }
    return c;
}

char *th_db_value(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    char *v = NULL;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        v = cm_xstrdup(PQgetvalue(r, 0, 0));
    else if (err != NULL && PQresultStatus(r) != PGRES_TUPLES_OK &&
             PQresultStatus(r) != PGRES_COMMAND_OK)
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

char *th_db_sql(const struct th_db *db, const char *role, const char *sql)
{
    PGconn *c = th_db_connect(db, role);
    char err[256];
    char *v = th_db_value(c, sql, err, sizeof(err));

    CHECK_MSG(err[0] == '\0', "sql error: %s in: %s", err, sql);
    PQfinish(c);
    return v;
}

long th_db_count(const struct th_db *db, const char *role, const char *sql)
{
    char *v = th_db_sql(db, role, sql);
    long n = v ? atol(v) : -1;

    free(v);
    return n;
}

PGconn *th_db_hold(const struct th_db *db, const char *select, int rows)
{
    PGconn *c = th_db_connect(db, NULL);
    PGresult *r;

    PQclear(PQexec(c, "BEGIN"));
    r = PQexec(c, select);
    CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == rows,
              "rows not held (%d wanted): %s", rows, PQresultErrorMessage(r));
    PQclear(r);
    return c;
}

void th_db_release(PGconn *c)
{
    PQclear(PQexec(c, "COMMIT"));
    PQfinish(c);
}
