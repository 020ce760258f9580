/*
 * test_pg_tls - the suite's PostgreSQL (deploy/local/lib.sh's doms_pg_start, as tests/run and
 * deploy/local/up start it) speaks TLS 1.2 or higher only, and each service role logs in with
 * its own certificate alone (issue 11, item 4):
 *   - every service role connects with its identity's certificate, over TLS, as itself;
 *   - a plaintext connection is refused, for the admin and for a service role;
 *   - a client that offers at most TLS 1.1 is refused by the server;
 *   - a service role without a certificate, with another identity's certificate, or with a
 *     certificate of an identity that maps to no role, is refused;
 *   - the client refuses a server whose certificate does not carry the name it dialled, or
 *     that a CA it does not trust signed (sslmode=verify-full).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "harness.h"

static struct th_db db;

static const char *const roles[] = {"doms_ingest", "doms_router", "doms_vault", "doms_reaper",
                                    "doms_ai"};
#define NROLES 5

/* Tries url; returns NULL when it connected (and closed), else libpq's message (free it). */
static char *refusal(const char *url)
{
    PGconn *c = PQconnectdb(url);
    char *err = NULL;

    if (PQstatus(c) != CONNECTION_OK)
        err = cm_xstrdup(PQerrorMessage(c));
    PQfinish(c);
    return err;
}

/* Checks that url is refused with a message containing want. */
static void check_refused(const char *what, const char *url, const char *want)
{
    char *err = refusal(url);

    CHECK_MSG(err != NULL, "%s: connected, but must be refused", what);
    if (err != NULL)
        CHECK_MSG(strstr(err, want) != NULL, "%s: refused, but not with \"%s\": %s", what, want,
                  err);
    free(err);
}

static void test_each_role_with_its_certificate(void)
{
    for (int i = 0; i < NROLES; i++) {
        char *v = th_db_sql(&db, roles[i],
                            "SELECT current_user || ' ' || s.version FROM pg_stat_ssl s "
                            "WHERE s.pid = pg_backend_pid() AND s.ssl");
        char want[64];

        /* TLS 1.3 today; 1.2 would do. */
        snprintf(want, sizeof(want), "%s TLSv1.", roles[i]);
        CHECK_MSG(v != NULL && strncmp(v, want, strlen(want)) == 0, "%s: %s", roles[i],
                  v ? v : "(not over TLS)");
        free(v);
    }
    /* The admin too goes over TLS. */
    char *v = th_db_sql(&db, NULL, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    CHECK_STR(v, "t");
    free(v);
}

static void test_plaintext_refused(void)
{
    char url[256];

    snprintf(url, sizeof(url), "postgresql://doms_admin@%s:%s/%s?sslmode=disable", db.host, db.port,
             db.name);
    check_refused("admin, plaintext", url, "no encryption");
    snprintf(url, sizeof(url), "postgresql://doms_router@%s:%s/%s?sslmode=disable", db.host,
             db.port, db.name);
    check_refused("doms_router, plaintext", url, "no encryption");
}

static void test_tls11_refused(void)
{
    char *base = th_db_url(&db, "doms_admin");
    char *url =
        cm_xasprintf("%s&ssl_min_protocol_version=TLSv1&ssl_max_protocol_version=TLSv1.1", base);

    /* The alert comes from the server: the client did offer TLS 1.1. */
    check_refused("a client capped at TLS 1.1", url, "protocol version");
    free(url);
    free(base);
}

static void test_certificate_decides_the_role(void)
{
    char *url = th_db_url_as(&db, "doms_router", NULL);

    check_refused("doms_router without a certificate", url, "valid client certificate");
    free(url);
    url = th_db_url_as(&db, "doms_router", "token-vault");
    check_refused("doms_router with token-vault's certificate", url,
                  "certificate authentication failed");
    free(url);
    url = th_db_url_as(&db, "doms_vault", "webhook-ingest");
    check_refused("doms_vault with webhook-ingest's certificate", url,
                  "certificate authentication failed");
    free(url);
    /* An identity of the suite that maps to no role (the tests' own, operator). */
    url = th_db_url_as(&db, "doms_ai", "doms-test");
    check_refused("doms_ai with doms-test's certificate", url, "certificate authentication failed");
    free(url);
    url = th_db_url_as(&db, "doms_ai", "operator");
    check_refused("doms_ai with operator's certificate", url, "certificate authentication failed");
    free(url);
}

static void test_client_checks_the_server(void)
{
    char *q = th_pg_tls_query("conversation-router"), *url, *cmd, other[600];

    /* The right address under a name the certificate does not carry. */
    url = cm_xasprintf("postgresql://doms_router@pg.example.invalid:%s/%s?%s&hostaddr=%s", db.port,
                       db.name, q, db.host);
    check_refused("a server name not in the certificate", url, "does not match host name");
    free(url);
    free(q);

    /* A CA of our own, which did not sign the server's certificate. */
    snprintf(other, sizeof(other), "%s/other-pki", th_tmpdir());
    cmd = cm_xasprintf("'%s/deploy/pki' '%s' -q doms-test", th_getenv("DOMS_SOURCE_DIR"), other);
    CHECK_MSG(system(cmd) == 0, "deploy/pki failed: %s", cmd);
    free(cmd);
    url = cm_xasprintf("postgresql://doms_admin@%s:%s/%s?sslmode=verify-full&sslrootcert=%s/ca.crt",
                       db.host, db.port, db.name, other);
    check_refused("a server certificate from a CA not trusted", url, "certificate verify failed");
    free(url);
}

int main(void)
{
    th_init("pg_tls");
    th_db_create(&db);

    RUN(test_each_role_with_its_certificate);
    RUN(test_plaintext_refused);
    RUN(test_tls11_refused);
    RUN(test_certificate_decides_the_role);
    RUN(test_client_checks_the_server);
    return check_summary();
}
