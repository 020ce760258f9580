/*
 * natsid.c - who a NATS connection speaks as: the certificate's CN over TLS, the daemon's
 * name in plaintext; the private inbox prefix; requests in the caller's subject space.
 */
#include "common/nats.h"

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

static bool set(const char *s)
{
    return s != NULL && *s != '\0';
}

/* A subject token: no dot, no wildcard, no white space, printable ASCII. */
static bool valid_token(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len >= CM_NATS_IDENTITY_MAX)
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p <= ' ' || *p > '~' || *p == '.' || *p == '*' || *p == '>')
            return false;
    }
    return true;
}

/* Reads the CN of the first certificate in path into out. */
static int read_cn(const char *path, char out[CM_NATS_IDENTITY_MAX], char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    X509 *x = NULL;
    int len;

    if (f == NULL) {
        snprintf(err, errlen, "NATS_CERT_FILE: cannot open %s", path);
        return CM_INVALID;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        snprintf(err, errlen, "NATS_CERT_FILE: %s holds no PEM certificate", path);
        return CM_INVALID;
    }
    len = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out,
                                    CM_NATS_IDENTITY_MAX);
    X509_free(x);
    if (len <= 0 || len >= CM_NATS_IDENTITY_MAX || (size_t)len != strlen(out) ||
        !valid_token(out)) {
        snprintf(err, errlen,
                 "NATS_CERT_FILE: the certificate in %s has no common name usable as an "
                 "identity (1 to 64 characters, no dots, wildcards or spaces)",
                 path);
        return CM_INVALID;
    }
    return CM_OK;
}

int cm_nats_identity(const char *ca_file, const char *cert_file, const char *key_file,
                     const char *fallback, char out[CM_NATS_IDENTITY_MAX], char *err, size_t errlen)
{
    int given = set(ca_file) + set(cert_file) + set(key_file);

    out[0] = '\0';
    /*
     * nats.c frees OpenSSL's compression-method list in its own exit handler, and OpenSSL 3
     * then frees it again in its own (a crash at exit after any TLS connection). OpenSSL
     * registers that handler on its first initialisation, which this precedes; the process
     * exits without it.
     */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
    if (given == 0) {
        if (!valid_token(fallback)) {
            snprintf(err, errlen, "the name %s cannot be a NATS identity", fallback);
            return CM_INVALID;
        }
        snprintf(out, CM_NATS_IDENTITY_MAX, "%s", fallback);
        return CM_OK;
    }
    if (given < 3) {
        snprintf(err, errlen,
                 "%s: NATS_CA_FILE, NATS_CERT_FILE and NATS_KEY_FILE go together "
                 "(all three for TLS, or none for plaintext)",
                 !set(ca_file)     ? "NATS_CA_FILE"
                 : !set(cert_file) ? "NATS_CERT_FILE"
                                   : "NATS_KEY_FILE");
        return CM_INVALID;
    }
    return read_cn(cert_file, out, err, errlen);
}

natsStatus cm_nats_options_identity(natsOptions *opts, const char *identity, const char *ca_file,
                                    const char *cert_file, const char *key_file)
{
    char prefix[CM_NATS_IDENTITY_MAX + 8];
    natsStatus s = NATS_OK;

    snprintf(prefix, sizeof(prefix), "_INBOX.%s", identity);
    s = natsOptions_SetCustomInboxPrefix(opts, prefix);
    if (s == NATS_OK && set(ca_file) && set(cert_file) && set(key_file)) {
        /* nats.c offers no minimum version: the server's min_version (1.2) enforces it. */
        s = natsOptions_SetSecure(opts, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCATrustedCertificates(opts, ca_file);
        if (s == NATS_OK)
            s = natsOptions_LoadCertificatesChain(opts, cert_file, key_file);
    }
    return s;
}

natsStatus cm_nats_request_as(natsMsg **reply, natsConnection *nc, const char *identity,
                              const char *subject, const char *body, int64_t timeout_ms)
{
    char subj[256];
    int len = snprintf(subj, sizeof(subj), "%s.%s", subject, identity);

    *reply = NULL;
    if (len < 0 || (size_t)len >= sizeof(subj))
        return NATS_INVALID_SUBJECT;
    return natsConnection_RequestString(reply, nc, subj, body, timeout_ms);
}

natsStatus cm_nats_request(natsMsg **reply, struct cm_nats *n, const char *subject,
                           const char *body, int64_t timeout_ms)
{
    natsConnection *nc = cm_nats_conn(n);

    *reply = NULL;
    if (nc == NULL)
        return NATS_CONNECTION_CLOSED;
    return cm_nats_request_as(reply, nc, cm_nats_identity_of(n), subject, body, timeout_ms);
}
