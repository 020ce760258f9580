/*
 * connect.c - see connect.h.
 */
#include "connect.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>

natsStatus bench_connect(natsConnection **nc, const char *url)
{
    const char *pki = getenv("DOMS_TEST_PKI");
    char ca[600], cert[600], key[600];
    natsOptions *opts = NULL;
    natsStatus s;

    *nc = NULL;
    /* nats.c and OpenSSL 3 would both free the same list at exit (see cm_nats_identity). */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK && pki != NULL && *pki != '\0') {
        snprintf(ca, sizeof(ca), "%s/ca.crt", pki);
        snprintf(cert, sizeof(cert), "%s/doms-test.crt", pki);
        snprintf(key, sizeof(key), "%s/doms-test.key", pki);
        s = natsOptions_SetSecure(opts, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCATrustedCertificates(opts, ca);
        if (s == NATS_OK)
            s = natsOptions_LoadCertificatesChain(opts, cert, key);
        if (s == NATS_OK)
            s = natsOptions_SetCustomInboxPrefix(opts, "_INBOX.doms-test");
    }
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, opts);
    natsOptions_Destroy(opts);
    return s;
}
