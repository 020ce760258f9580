/*
 * test_ingest_tls - webhook-ingest's INGEST_LISTEN over HTTPS (INGEST_TLS_CERT_FILE and
 * INGEST_TLS_KEY_FILE), with the real daemon, nats-server and PostgreSQL, and a throwaway CA
 * made with the openssl command in the test's directory: a signed webhook over HTTPS is
 * stored; a client that speaks at most TLS 1.1 fails the handshake while one that stops at
 * TLS 1.2 succeeds; plain HTTP on that port gets no HTTP answer; the internal address stays
 * plain HTTP; and one TLS setting alone, an unreadable file or a key of another certificate
 * is refused at start with one line.
 */
#include <curl/curl.h>
#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/mem.h"
#include "harness.h"

#define SECRET  "tls-app-secret"
#define VERIFY  "tls-verify"
#define WEBHOOK "/api/v1/webhooks/meta"

static struct th_nats nats;
static struct th_db db;
static struct th_proc ingest;
static char base[64];     /* https://127.0.0.1:port */
static char internal[64]; /* http://127.0.0.1:port */
static int port;
static char *ca_file, *cert_file, *key_file, *other_key_file;
static natsConnection *nc;
static jsCtx *js;

/* Runs a shell command in the test's directory; stops the test when it fails. */
static void sh(const char *cmd)
{
    char *full = cm_xasprintf("cd '%s' && %s >/dev/null 2>&1", th_tmpdir(), cmd);

    if (system(full) != 0) {
        fprintf(stderr, "failed: %s\n", full);
        exit(1);
    }
    free(full);
}

/* A CA, a server certificate it signs for 127.0.0.1, and a key of nothing. */
static void make_pki(void)
{
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1"
       " -subj /CN=doms-test-ca");
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr"
       " -subj /CN=127.0.0.1");
    sh("printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext && openssl x509 -req -in server.csr"
       " -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile server.ext");
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other.key");
    ca_file = cm_xasprintf("%s/ca.crt", th_tmpdir());
    cert_file = cm_xasprintf("%s/server.crt", th_tmpdir());
    key_file = cm_xasprintf("%s/server.key", th_tmpdir());
    other_key_file = cm_xasprintf("%s/other.key", th_tmpdir());
}

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    cm_buf_append(arg, data, size * n);
    return size * n;
}

/*
 * One HTTPS request trusting the test CA. max_tls is CURL_SSLVERSION_MAX_* (0: libcurl's
 * default); a client limited below TLS 1.2 may also use the legacy ciphers it needs, so that
 * a failure is the server's refusal and not the client's own. Returns the status code, or 0
 * when there was no HTTP answer; *result gets libcurl's code and err its message.
 */
static long https(const char *method, const char *path, const char *const *headers,
                  const char *body, long max_tls, CURLcode *result, char err[CURL_ERROR_SIZE])
{
    CURL *c = curl_easy_init();
    struct curl_slist *list = NULL;
    struct cm_buf out;
    char url[160];
    long code = 0;
    CURLcode rc;

    cm_buf_init(&out);
    snprintf(url, sizeof(url), "%s%s", base, path);
    for (int i = 0; headers != NULL && headers[i] != NULL; i++)
        list = curl_slist_append(list, headers[i]);
    err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (max_tls != 0) {
        curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1 | max_tls);
        if (max_tls == CURL_SSLVERSION_MAX_TLSv1_1)
            curl_easy_setopt(c, CURLOPT_SSL_CIPHER_LIST, "DEFAULT:@SECLEVEL=0");
    }
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (result != NULL)
        *result = rc;
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    cm_buf_cleanup(&out);
    return code;
}

static long https_get(const char *path)
{
    char err[CURL_ERROR_SIZE];

    return https("GET", path, NULL, NULL, 0, NULL, err);
}

static char **base_env(int *n, char **env)
{
    char *dburl = th_db_url(&db, "doms_ingest");

    *n = 0;
    env[(*n)++] = cm_xasprintf("DATABASE_URL=%s", dburl);
    env[(*n)++] = cm_xasprintf("NATS_URL=%s", nats.url);
    env[(*n)++] = cm_xasprintf("INGEST_LISTEN=127.0.0.1:%d", port);
    env[(*n)++] = cm_xasprintf("WEBHOOK_INGEST_HTTP_LISTEN=%s", internal + strlen("http://"));
    env[(*n)++] = cm_xstrdup("META_APP_SECRET=" SECRET);
    env[(*n)++] = cm_xstrdup("META_VERIFY_TOKEN=" VERIFY);
    free(dburl);
    return env;
}

static void start_ingest(void)
{
    char *env[16];
    int n;

    base_env(&n, env);
    env[n++] = cm_xasprintf("INGEST_TLS_CERT_FILE=%s", cert_file);
    env[n++] = cm_xasprintf("INGEST_TLS_KEY_FILE=%s", key_file);
    env[n] = NULL;
    th_proc_start(&ingest, "webhook-ingest", NULL, (const char *const *)env);
    CHECK_MSG(WAIT_UNTIL(https_get("/readyz") == 200, 20000), "ingest never ready over HTTPS");
    for (int i = 0; i < n; i++)
        free(env[i]);
}

static uint64_t stream_msgs(void)
{
    return th_stream_msgs(js, "META_EVENTS");
}

static void test_signed_post_over_https(void)
{
    const char *body = "{\"object\":\"page\",\"entry\":[{\"id\":\"31337\",\"time\":1,\"messaging\":"
                       "[{\"sender\":{\"id\":\"9\"},\"recipient\":{\"id\":\"31337\"},\"timestamp\""
                       ":1,\"message\":{\"mid\":\"m_over_tls\",\"text\":\"secure\"}}]}]}";
    char sig[80], header[120], err[CURL_ERROR_SIZE];
    const char *headers[] = {"Content-Type: application/json", header, NULL};
    uint64_t before = stream_msgs();
    CURLcode rc;

    th_sign(SECRET, body, strlen(body), sig);
    snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
    CHECK_INT(https("POST", WEBHOOK, headers, body, 0, &rc, err), 200);
    CHECK_MSG(rc == CURLE_OK, "curl: %s", err);
    CHECK_INT(stream_msgs(), before + 1);
    /* A wrong signature is still refused over TLS. */
    snprintf(header, sizeof(header), "X-Hub-Signature-256: sha256=%064d", 0);
    CHECK_INT(https("POST", WEBHOOK, headers, body, 0, &rc, err), 401);
    CHECK_INT(stream_msgs(), before + 1);
    /* Meta's address still keeps /metrics to itself over TLS. */
    CHECK_INT(https_get("/metrics"), 404);
}

/* TLS 1.2 or higher: a client that goes no higher than TLS 1.1 fails the handshake (with the
 * server's protocol_version alert), one that goes no higher than 1.2 is served. */
static void test_tls_versions(void)
{
    char err[CURL_ERROR_SIZE];
    CURLcode rc;

    CHECK_INT(https("GET", "/healthz", NULL, NULL, CURL_SSLVERSION_MAX_TLSv1_1, &rc, err), 0);
    CHECK_MSG(rc == CURLE_SSL_CONNECT_ERROR, "TLS 1.1 client: curl %d (%s)", (int)rc, err);
    printf("a TLS 1.1 client: %s\n", err);
    CHECK_INT(https("GET", "/healthz", NULL, NULL, CURL_SSLVERSION_MAX_TLSv1_2, &rc, err), 200);
    CHECK_MSG(rc == CURLE_OK, "TLS 1.2 client: %s", err);
}

/* HTTPS only: plain HTTP on the same port gets no HTTP answer; the internal address is
 * plain HTTP on 127.0.0.1, as before. */
static void test_https_only(void)
{
    struct th_resp r;
    char url[128];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 0);
    th_resp_cleanup(&r);
    snprintf(url, sizeof(url), "%s/metrics", internal);
    CHECK_INT(th_http(&r, "GET", url, NULL, NULL, 0), 200);
    CHECK_CONTAINS(r.body.data, "ingest_events_stored_total 1\n");
    th_resp_cleanup(&r);
}

/* Refused at start, exit 78, one line naming what is wrong. */
static void expect_refusal(const char *extra1, const char *extra2, const char *needle)
{
    struct th_proc p;
    char *env[16], *out;
    int n;

    base_env(&n, env);
    if (extra1 != NULL)
        env[n++] = cm_xstrdup(extra1);
    if (extra2 != NULL)
        env[n++] = cm_xstrdup(extra2);
    env[n] = NULL;
    th_proc_start(&p, "webhook-ingest", NULL, (const char *const *)env);
    CHECK_INT(th_proc_wait(&p, 10000), 78);
    out = th_proc_output(&p);
    CHECK_CONTAINS(out, needle);
    CHECK_MSG(strchr(out, '\n') == out + strlen(out) - 1, "more than one line: %s", out);
    free(out);
    for (int i = 0; i < n; i++)
        free(env[i]);
}

static void test_bad_tls_settings(void)
{
    char *cert = cm_xasprintf("INGEST_TLS_CERT_FILE=%s", cert_file);
    char *key = cm_xasprintf("INGEST_TLS_KEY_FILE=%s", key_file);
    char *other = cm_xasprintf("INGEST_TLS_KEY_FILE=%s", other_key_file);
    char *missing = cm_xasprintf("INGEST_TLS_CERT_FILE=%s/no-such.crt", th_tmpdir());
    char *missing_needle = cm_xasprintf("cannot load the certificate %s/no-such.crt", th_tmpdir());

    expect_refusal(cert, NULL,
                   "webhook-ingest: INGEST_TLS_CERT_FILE is set without INGEST_TLS_KEY_FILE");
    expect_refusal(key, NULL,
                   "webhook-ingest: INGEST_TLS_KEY_FILE is set without INGEST_TLS_CERT_FILE");
    expect_refusal(missing, key, missing_needle);
    expect_refusal(cert, other, "webhook-ingest: INGEST_TLS_CERT_FILE/INGEST_TLS_KEY_FILE: ");
    free(cert);
    free(key);
    free(other);
    free(missing);
    free(missing_needle);
}

int main(void)
{
    th_init("ingest_tls");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_pki();
    th_db_create(&db);
    th_nats_start(&nats);
    port = th_free_port();
    snprintf(base, sizeof(base), "https://127.0.0.1:%d", port);
    snprintf(internal, sizeof(internal), "http://127.0.0.1:%d", th_free_port());
    if (th_nats_connect(&nc, nats.url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        fprintf(stderr, "cannot connect to the test nats-server\n");
        return 1;
    }

    RUN(test_bad_tls_settings);
    start_ingest();
    RUN(test_signed_post_over_https);
    RUN(test_tls_versions);
    RUN(test_https_only);

    th_proc_stop_clean(&ingest);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    th_nats_stop(&nats);
    free(ca_file);
    free(cert_file);
    free(key_file);
    free(other_key_file);
    return check_summary();
}
