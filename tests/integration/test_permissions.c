/*
 * test_permissions - nats-server enforces proto/permissions.tsv, identity by identity.
 *
 * The test reads the same table that deploy/nats/authorization turns into the server's users,
 * connects with each identity's certificate and, for every subject the table names, publishes
 * and subscribes: what the identity's rows allow must pass, everything else must be refused.
 * nats-server refuses a publish or a subscription without closing the connection: it answers
 * "-ERR 'Permissions Violation ...'", which nats.c reports to the connection's error handler.
 * After each attempt a flush (PING/PONG) guarantees that any such answer has arrived.
 *
 * Then what has no certificate is refused at the door: a TLS client without a certificate, a
 * plaintext client, and a client that offers only TLS 1.1 (through OpenSSL, after the INFO line
 * nats-server sends in clear; the same client offering TLS 1.2 completes the handshake, so the
 * refusal is the server's).
 *
 * Runs only with DOMS_TEST_PKI (tests/run sets it): without it there is nothing to enforce.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "common/mem.h"
#include "common/nats.h"
#include "harness.h"

#define MAX_ROWS 256
#define MAX_IDS  16

struct row {
    char kind[16];
    char a[128]; /* subject or stream */
    char b[256]; /* server, consumer or identities */
    char c[256]; /* callers or readers */
};

static struct row rows[MAX_ROWS];
static int nrows;
static char ids[MAX_IDS][CM_NATS_IDENTITY_MAX];
static int nids;
static struct th_nats server;

/* Permission violations seen by one connection (nats.c's thread). */
static atomic_int violations;

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    if (err == NATS_NOT_PERMITTED)
        atomic_fetch_add(&violations, 1);
}

static bool in_list(const char *csv, const char *id)
{
    size_t len = strlen(id);

    for (const char *p = csv; p != NULL && *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == len && strncmp(p, id, len) == 0)
            return true;
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

static void add_id(const char *id)
{
    for (int i = 0; i < nids; i++) {
        if (strcmp(ids[i], id) == 0)
            return;
    }
    if (nids < MAX_IDS)
        snprintf(ids[nids++], sizeof(ids[0]), "%s", id);
}

static void add_ids(const char *csv)
{
    char copy[256], *save = NULL;

    snprintf(copy, sizeof(copy), "%s", csv);
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
        add_id(t);
}

static void load_table(void)
{
    char path[600], line[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/proto/permissions.tsv", th_getenv("DOMS_SOURCE_DIR"));
    f = fopen(path, "r");
    CHECK(f != NULL);
    if (f == NULL)
        exit(1);
    add_id("operator");
    while (fgets(line, sizeof(line), f) != NULL && nrows < MAX_ROWS) {
        struct row *r = &rows[nrows];
        char *hash = strchr(line, '#');
        int n;

        if (hash != NULL)
            *hash = '\0';
        memset(r, 0, sizeof(*r));
        n = sscanf(line, "%15s %127s %255s %255s", r->kind, r->a, r->b, r->c);
        if (n <= 0)
            continue;
        CHECK_MSG(n >= 3, "malformed row: %s", line);
        if (strcmp(r->kind, "request") == 0 || strcmp(r->kind, "reader") == 0) {
            if (strcmp(r->kind, "request") == 0)
                add_id(r->b);
            add_ids(r->c);
        } else {
            add_ids(r->b);
        }
        nrows++;
    }
    fclose(f);
    CHECK(nrows > 40);
}

/* True when id serves a request subject: nats-server gives it allow_responses. */
static bool responder(const char *id)
{
    for (int i = 0; i < nrows; i++) {
        if (strcmp(rows[i].kind, "request") == 0 && strcmp(rows[i].b, id) == 0)
            return true;
    }
    return false;
}

/* The table's answers. */
static bool table_publishes(const char *id, const char *kind, const char *a, int col)
{
    for (int i = 0; i < nrows; i++) {
        if (strcmp(rows[i].kind, kind) == 0 && strcmp(rows[i].a, a) == 0 &&
            in_list(col == 2 ? rows[i].b : rows[i].c, id))
            return true;
    }
    return false;
}

/*
 * nats.c reports a violation to the error handler on another thread, possibly after a flush
 * has returned; but it records the server's text as the connection's last error before it
 * reads the PONG that ends the flush. So each attempt comes after a sentinel violation: once
 * flushed, the last error names the sentinel when the attempt passed, the attempt when not.
 */
static char sentinel[64];

static void set_sentinel(natsConnection *nc)
{
    static int seq;
    const char *text = NULL;

    snprintf(sentinel, sizeof(sentinel), "_SENTINEL.%d", ++seq);
    natsConnection_PublishString(nc, sentinel, "{}");
    natsConnection_FlushTimeout(nc, 5000);
    natsConnection_GetLastError(nc, &text);
    CHECK_MSG(text != NULL && strstr(text, sentinel) != NULL, "the sentinel %s was not refused: %s",
              sentinel, text ? text : "(no error)");
}

static bool passed(natsConnection *nc)
{
    const char *text = NULL;

    natsConnection_GetLastError(nc, &text);
    return text != NULL && strstr(text, sentinel) != NULL;
}

/* Publishes on subj as the connection's identity; true when the server took it. */
static bool try_publish(natsConnection *nc, const char *subj)
{
    set_sentinel(nc);
    natsConnection_PublishString(nc, subj, "{}");
    natsConnection_FlushTimeout(nc, 5000);
    return passed(nc);
}

/* Subscribes to subj; true when the server took it. */
static bool try_subscribe(natsConnection *nc, const char *subj)
{
    natsSubscription *sub = NULL;
    bool ok;

    set_sentinel(nc);
    if (natsConnection_SubscribeSync(&sub, nc, subj) != NATS_OK)
        return false;
    natsConnection_FlushTimeout(nc, 5000);
    ok = passed(nc);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return ok;
}

#define EXPECT_PUB(nc, id, subj, want)                                                             \
    CHECK_MSG(try_publish(nc, subj) == (want), "%s publishing on %s: %s expected", id, subj,       \
              (want) ? "allowed" : "refused")
#define EXPECT_SUB(nc, id, subj, want)                                                             \
    CHECK_MSG(try_subscribe(nc, subj) == (want), "%s subscribing to %s: %s expected", id, subj,    \
              (want) ? "allowed" : "refused")

/* A concrete subject inside a pattern: wildcards become tokens. */
static void concrete(const char *pattern, char *out, size_t cap)
{
    size_t o = 0;

    for (const char *p = pattern; *p != '\0' && o + 8 < cap; p++) {
        if (*p == '>') {
            o += (size_t)snprintf(out + o, cap - o, "x.y");
        } else if (*p == '*') {
            out[o++] = 'x';
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static void check_identity(const char *id)
{
    natsConnection *nc = NULL;
    natsOptions *opts = NULL;
    char subj[768], ca[600], cert[600], key[600];
    const char *pki = th_getenv("DOMS_TEST_PKI");
    const char *other = strcmp(id, "operator") == 0 ? "webhook-ingest" : "operator";

    printf("== %s\n", id);
    snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
    snprintf(cert, sizeof(cert), "%s/%s.crt", pki, id);
    snprintf(key, sizeof(key), "%s/%s.key", pki, id);
    CHECK(natsOptions_Create(&opts) == NATS_OK);
    CHECK(natsOptions_SetURL(opts, server.url) == NATS_OK);
    CHECK(cm_nats_options_identity(opts, id, ca, cert, key) == NATS_OK);
    CHECK(natsOptions_SetErrorHandler(opts, on_error, NULL) == NATS_OK);
    CHECK(natsConnection_Connect(&nc, opts) == NATS_OK);
    natsOptions_Destroy(opts);
    if (nc == NULL)
        return;
    atomic_store(&violations, 0);

    for (int i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];

        if (strcmp(r->kind, "request") == 0) {
            /* Its own subject space if it is a caller; never another's, never the bare one. */
            snprintf(subj, sizeof(subj), "%s.%s", r->a, id);
            EXPECT_PUB(nc, id, subj, in_list(r->c, id));
            snprintf(subj, sizeof(subj), "%s.%s", r->a, other);
            EXPECT_PUB(nc, id, subj, false);
            EXPECT_PUB(nc, id, r->a, false);
            /* Only the server listens to the requests. */
            snprintf(subj, sizeof(subj), "%s.*", r->a);
            EXPECT_SUB(nc, id, subj, strcmp(r->b, id) == 0);
        } else if (strcmp(r->kind, "publish") == 0) {
            concrete(r->a, subj, sizeof(subj));
            EXPECT_PUB(nc, id, subj, in_list(r->b, id));
            EXPECT_SUB(nc, id, r->a, false); /* nobody reads streams' subjects raw */
        } else if (strcmp(r->kind, "stream") == 0) {
            snprintf(subj, sizeof(subj), "$JS.API.STREAM.UPDATE.%s", r->a);
            EXPECT_PUB(nc, id, subj, in_list(r->b, id));
            snprintf(subj, sizeof(subj), "$JS.API.STREAM.DELETE.%s", r->a);
            EXPECT_PUB(nc, id, subj, false);
            snprintf(subj, sizeof(subj), "$JS.API.STREAM.PURGE.%s", r->a);
            EXPECT_PUB(nc, id, subj, table_publishes(id, "purger", r->a, 2));
        } else if (strcmp(r->kind, "reader") == 0) {
            snprintf(subj, sizeof(subj), "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s", r->a, r->b);
            EXPECT_PUB(nc, id, subj, in_list(r->c, id));
            /* An acknowledgement of nothing delivered to it: a request server acknowledges
             * through allow_responses alone (check_acks()). */
            snprintf(subj, sizeof(subj), "$JS.ACK.%s.%s.1.1.1.1.1", r->a, r->b);
            EXPECT_PUB(nc, id, subj, in_list(r->c, id) && !responder(id));
            snprintf(subj, sizeof(subj), "$JS.API.CONSUMER.DELETE.%s.%s", r->a, r->b);
            EXPECT_PUB(nc, id, subj, false);
        }
    }
    /* Inboxes: its own only. */
    snprintf(subj, sizeof(subj), "_INBOX.%s.>", id);
    EXPECT_SUB(nc, id, subj, true);
    EXPECT_SUB(nc, id, "_INBOX.>", false);
    snprintf(subj, sizeof(subj), "_INBOX.%s.>", other);
    EXPECT_SUB(nc, id, subj, false);
    /* JetStream's API outside its streams, and everything at once. */
    EXPECT_PUB(nc, id, "$JS.API.STREAM.CREATE.EVIL", false);
    EXPECT_PUB(nc, id, "$JS.API.STREAM.LIST", false);
    EXPECT_PUB(nc, id, "$JS.API.ACCOUNT.PURGE.x", false);
    EXPECT_SUB(nc, id, "$JS.API.>", false);
    EXPECT_SUB(nc, id, ">", false);
    natsConnection_Destroy(nc);
}

/* Connects as id with its certificate; NULL on failure. */
static natsConnection *connect_as(const char *id)
{
    natsConnection *nc = NULL;
    natsOptions *opts = NULL;
    char ca[600], cert[600], key[600];
    const char *pki = th_getenv("DOMS_TEST_PKI");

    snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
    snprintf(cert, sizeof(cert), "%s/%s.crt", pki, id);
    snprintf(key, sizeof(key), "%s/%s.key", pki, id);
    CHECK(natsOptions_Create(&opts) == NATS_OK);
    CHECK(natsOptions_SetURL(opts, server.url) == NATS_OK);
    CHECK(cm_nats_options_identity(opts, id, ca, cert, key) == NATS_OK);
    CHECK(natsOptions_SetErrorHandler(opts, on_error, NULL) == NATS_OK);
    CHECK(natsConnection_Connect(&nc, opts) == NATS_OK);
    natsOptions_Destroy(opts);
    return nc;
}

/* The review's ways in (issue 11), each now refused by the server. */
static void check_attacks(void)
{
    struct {
        const char *who, *what, *subject;
        bool subscribe;
    } attacks[] = {
        {"webhook-ingest", "asks for a token", "vault.token.get.webhook-ingest", false},
        {"webhook-ingest", "asks for a token in the router's name",
         "vault.token.get.conversation-router", false},
        {"ai-suggest", "reads every reply in flight", "_INBOX.>", true},
        {"ai-suggest", "reads the router's replies (its tokens)", "_INBOX.conversation-router.>",
         true},
        {"ai-suggest", "reads every DM live", "meta.events.>", true},
        {"conversation-router", "forges a webhook event",
         "meta.events.messenger.106000000000001.message", false},
        {"webhook-ingest", "forges a route (an integration connected elsewhere)",
         "vault.events.integration.int_victim", false},
        {"conversation-router", "forges an audit event of the vault", "audit.token-vault", false},
        {"operator", "forges an audit event", "audit.retention-reaper", false},
        {"ai-suggest", "purges the router", "router.purge.ai-suggest", false},
        {"operator", "purges the router", "router.purge.operator", false},
        {"webhook-ingest", "purges the vault", "vault.purge.webhook-ingest", false},
        {"conversation-router", "purges the raw events", "$JS.API.STREAM.PURGE.META_EVENTS", false},
        {"operator", "makes the raw events unpurgeable", "$JS.API.STREAM.UPDATE.META_EVENTS",
         false},
        {"webhook-ingest", "deletes the audit stream", "$JS.API.STREAM.DELETE.AUDIT", false},
        {"operator", "starts a deletion without a signed_request",
         "reaper.deletion.request.operator", false},
    };

    printf("== attacks\n");
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        natsConnection *nc = connect_as(attacks[i].who);
        bool passed_through;

        if (nc == NULL)
            continue;
        passed_through = attacks[i].subscribe ? try_subscribe(nc, attacks[i].subject)
                                              : try_publish(nc, attacks[i].subject);
        CHECK_MSG(!passed_through, "%s %s (%s): the server let it through", attacks[i].who,
                  attacks[i].what, attacks[i].subject);
        natsConnection_Destroy(nc);
    }
}
/*
 * Every reader of every stream receives a message of its durable consumer and acknowledges
 * it: the server takes the acknowledgement, once (a second answer to the same delivery is
 * refused), and the consumer then has nothing pending.
 */
static void check_acks(void)
{
    natsConnection *admin = connect_as("doms-test");
    jsCtx *ajs = NULL;

    printf("== acknowledgements\n");
    CHECK(admin != NULL && natsConnection_JetStream(&ajs, admin, NULL) == NATS_OK);
    for (int i = 0; ajs != NULL && i < nrows; i++) {
        const struct row *r = &rows[i];
        char subject[160], *save = NULL, readers[256];

        if (strcmp(r->kind, "reader") != 0)
            continue;
        snprintf(subject, sizeof(subject), "acks.%s", r->a);
        snprintf(readers, sizeof(readers), "%s", r->c);
        for (char *id = strtok_r(readers, ",", &save); id != NULL;
             id = strtok_r(NULL, ",", &save)) {
            jsStreamConfig sc;
            jsStreamInfo *si = NULL;
            jsSubOptions so;
            jsConsumerInfo *ci = NULL;
            natsConnection *nc = NULL;
            natsSubscription *sub = NULL;
            natsMsg *msg = NULL;
            jsCtx *js = NULL;
            const char *subjects[1] = {subject};
            int64_t pending = -1;

            jsStreamConfig_Init(&sc);
            sc.Name = r->a;
            sc.Subjects = subjects;
            sc.SubjectsLen = 1;
            CHECK(js_AddStream(&si, ajs, &sc, NULL, NULL) == NATS_OK);
            jsStreamInfo_Destroy(si);
            CHECK(js_Publish(NULL, ajs, subject, "{}", 2, NULL, NULL) == NATS_OK);

            nc = connect_as(id);
            CHECK(nc != NULL && natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
            jsSubOptions_Init(&so);
            so.Stream = r->a;
            so.Config.Durable = r->b;
            so.Config.AckPolicy = js_AckExplicit;
            so.Config.DeliverPolicy = js_DeliverAll;
            so.ManualAck = true;
            CHECK_MSG(js != NULL && js_SubscribeSync(&sub, js, subject, NULL, &so, NULL) == NATS_OK,
                      "%s cannot bind to %s's consumer %s", id, r->a, r->b);
            if (sub != NULL)
                CHECK_MSG(natsSubscription_NextMsg(&msg, sub, 5000) == NATS_OK,
                          "%s received nothing from %s", id, r->a);
            if (msg != NULL) {
                set_sentinel(nc);
                CHECK(natsMsg_Ack(msg, NULL) == NATS_OK);
                natsConnection_FlushTimeout(nc, 5000);
                CHECK_MSG(passed(nc), "%s acknowledging a message of %s: refused", id, r->a);
                CHECK_MSG(!try_publish(nc, natsMsg_GetReply(msg)),
                          "%s answered one delivery of %s twice", id, r->a);
                /* The server applies an acknowledgement shortly after taking it. */
                for (int t = 0; t < 100 && pending != 0; t++) {
                    if (js_GetConsumerInfo(&ci, ajs, r->a, r->b, NULL, NULL) == NATS_OK) {
                        pending = ci->NumAckPending;
                        jsConsumerInfo_Destroy(ci);
                    }
                    if (pending != 0)
                        nats_Sleep(50);
                }
                CHECK_MSG(pending == 0, "%s's consumer %s still awaits %lld acknowledgements", r->a,
                          r->b, (long long)pending);
                printf("  %s acknowledged a message of %s's consumer %s, once\n", id, r->a, r->b);
            }
            natsMsg_Destroy(msg);
            natsSubscription_Destroy(sub);
            jsCtx_Destroy(js);
            natsConnection_Destroy(nc);
            CHECK(js_DeleteStream(ajs, r->a, NULL, NULL) == NATS_OK);
        }
    }
    jsCtx_Destroy(ajs);
    natsConnection_Destroy(admin);
}

/* A raw TCP connection to the server, past its INFO line. -1 on failure. */
static int connect_after_info(void)
{
    struct sockaddr_in sa = {0};
    char c;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)server.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto fail;
    /* nats-server speaks first, in clear: "INFO {...}\r\n"; TLS starts after it. */
    while (read(fd, &c, 1) == 1) {
        if (c == '\n')
            return fd;
    }
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Performs a TLS handshake offering exactly version; true when it completes. */
static bool handshake(int version)
{
    const char *pki = th_getenv("DOMS_TEST_PKI");
    char cert[600], key[600], ca[600];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    bool ok = false;
    int fd;

    snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
    snprintf(cert, sizeof(cert), "%s/doms-test.crt", pki);
    snprintf(key, sizeof(key), "%s/doms-test.key", pki);
    /* OpenSSL 3 would itself refuse to offer TLS 1.1 at its default security level: lower it,
     * so that the refusal can only be the server's. */
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    CHECK(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) == 1);
    CHECK(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1);
    CHECK(SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1);
    fd = connect_after_info();
    CHECK(fd >= 0);
    if (fd >= 0) {
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        ok = SSL_connect(ssl) == 1;
        if (!ok)
            printf("  TLS %s refused: %s\n", version == TLS1_1_VERSION ? "1.1" : "1.2",
                   ERR_reason_error_string(ERR_peek_last_error())
                       ? ERR_reason_error_string(ERR_peek_last_error())
                       : "(no reason)");
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
    SSL_CTX_free(ctx);
    return ok;
}

static void check_the_door(void)
{
    const char *pki = th_getenv("DOMS_TEST_PKI");
    char ca[600], url[80];
    natsConnection *nc = NULL;
    natsOptions *opts = NULL;
    natsStatus s;

    printf("== the door\n");
    /* TLS, the server verified, but no certificate of ours. */
    snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
    CHECK(natsOptions_Create(&opts) == NATS_OK);
    CHECK(natsOptions_SetURL(opts, server.url) == NATS_OK);
    CHECK(natsOptions_SetSecure(opts, true) == NATS_OK);
    CHECK(natsOptions_LoadCATrustedCertificates(opts, ca) == NATS_OK);
    CHECK(natsOptions_SetTimeout(opts, 3000) == NATS_OK);
    s = natsConnection_Connect(&nc, opts);
    CHECK_MSG(s != NATS_OK, "a client without a certificate was let in");
    natsConnection_Destroy(nc);
    nc = NULL;
    natsOptions_Destroy(opts);

    /* Plaintext. */
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", server.port);
    CHECK(natsOptions_Create(&opts) == NATS_OK);
    CHECK(natsOptions_SetURL(opts, url) == NATS_OK);
    CHECK(natsOptions_SetTimeout(opts, 3000) == NATS_OK);
    s = natsConnection_Connect(&nc, opts);
    CHECK_MSG(s != NATS_OK, "a plaintext client was let in");
    natsConnection_Destroy(nc);
    nc = NULL;
    natsOptions_Destroy(opts);

    /* A certificate of the CA that names no user (nats-server's own; postgres's). */
    CHECK_MSG(th_nats_connect_as(&nc, server.url, "postgres") != NATS_OK,
              "postgres's certificate, which names no NATS user, was let in");
    natsConnection_Destroy(nc);

    /* TLS 1.1 only: refused; the same client with TLS 1.2: accepted. */
    CHECK_MSG(handshake(TLS1_2_VERSION), "a TLS 1.2 handshake with doms-test's certificate failed");
    CHECK_MSG(!handshake(TLS1_1_VERSION), "a client offering only TLS 1.1 completed a handshake");
}

int main(void)
{
    th_init("permissions");
    if (!th_nats_tls()) {
        printf("DOMS_TEST_PKI is not set: nothing to enforce, skipped\n");
        return 0;
    }
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    load_table();
    th_nats_start(&server);
    for (int i = 0; i < nids; i++)
        check_identity(ids[i]);
    check_acks();
    check_attacks();
    check_the_door();
    th_nats_stop(&server);
    return check_summary();
}
