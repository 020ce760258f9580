/*
 * httpd.h - the HTTP server every daemon runs, over libevent's evhttp.
 *
 * It serves /healthz (liveness: the loop answers), /readyz (the readiness callback) and
 * /metrics (the registry, Prometheus text; not on a public server), plus the routes a
 * daemon adds. Handlers run on
 * the event loop; each must end in exactly one reply, now or later (a handler may keep
 * the request and answer from a cm_loopq callback).
 */
#ifndef COMMON_HTTPD_H
#define COMMON_HTTPD_H

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "common/mem.h"

struct cm_httpd;
struct cm_metrics;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

typedef void (*cm_httpd_fn)(struct evhttp_request *req, void *arg);

/*
 * Readiness: returns true when ready; otherwise writes a short JSON object of what is not
 * ready (without braces: `"nats":false`) into why.
 */
typedef bool (*cm_httpd_ready_fn)(void *arg, struct cm_buf *why);

/* Options of cm_httpd_create(), or-ed together. */
enum cm_httpd_flags {
    /*
     * An address the Internet reaches (webhook-ingest's, for Meta): /metrics is not served
     * there (404), since it tells anyone who asks about the traffic and the process. Replies
     * are still counted in the registry.
     */
    CM_HTTPD_PUBLIC = 1 << 0,
};

/*
 * What cm_httpd_create() serves and how it guards itself. Zero is a sensible default for
 * every member.
 */
struct cm_httpd_opts {
    size_t max_body; /* a larger request body is answered 413 by evhttp; 0: 1 MiB */
    unsigned flags;  /* cm_httpd_flags */
    /* When set (see cm_httpd_tls_create), the address serves HTTPS only; borrowed, and it
     * must outlive the server. */
    struct ssl_ctx_st *tls;
    /* Open connections at most; one more is closed at once, unanswered. 0: no cap. */
    int max_connections;
    /* Whole seconds a client has for a request's headers and body, from the moment the
     * connection is accepted (or the previous reply sent): a deadline, which a client
     * trickling bytes cannot stretch. Past it the connection is closed. 0: none (evhttp's
     * idle timeout of 30 s only). */
    int read_timeout_s;
};

/*
 * Binds listen ("host:port", ":port" meaning all addresses) on base with opts (NULL: all
 * defaults). metrics (borrowed) counts the replies and is rendered by /metrics. Free with
 * cm_httpd_destroy(). Returns CM_INVALID when the address cannot be bound.
 */
int cm_httpd_create(struct cm_httpd **out, struct event_base *base, const char *listen,
                    struct cm_metrics *metrics, const struct cm_httpd_opts *opts) CM_MUST_CHECK;
void cm_httpd_destroy(struct cm_httpd *h);

/*
 * Loads a TLS server context for cm_httpd_opts.tls: the certificate chain cert_file (PEM,
 * the server's certificate first) and its private key key_file, TLS 1.2 or higher only.
 * Returns CM_OK with *out (free it with cm_httpd_tls_destroy()), or CM_INVALID with one
 * line in err (the file and OpenSSL's reason) when a file cannot be read or parsed, or the
 * key does not match the certificate.
 */
int cm_httpd_tls_create(struct ssl_ctx_st **out, const char *cert_file, const char *key_file,
                        char *err, size_t errlen) CM_MUST_CHECK;
void cm_httpd_tls_destroy(struct ssl_ctx_st *ctx);

/* Sets the readiness callback behind /readyz (default: always ready). */
void cm_httpd_set_ready(struct cm_httpd *h, cm_httpd_ready_fn fn, void *arg);

/* Adds a handler for an exact path (any query string). path is copied. */
void cm_httpd_route(struct cm_httpd *h, const char *path, cm_httpd_fn fn, void *arg);

/* Stops accepting new connections; requests in progress still get their replies. */
void cm_httpd_close(struct cm_httpd *h);

/* True when the server speaks HTTPS (cm_httpd_opts.tls). */
bool cm_httpd_is_tls(const struct cm_httpd *h);

/* The port actually bound (useful with port 0 in tests). */
int cm_httpd_port(struct cm_httpd *h);

/* Replies with a body (copied) and a content type, and counts the response by code. */
void cm_httpd_reply(struct cm_httpd *h, struct evhttp_request *req, int code,
                    const char *content_type, const void *body, size_t len);
/* Replies application/json with text that is already JSON. */
void cm_httpd_reply_json(struct cm_httpd *h, struct evhttp_request *req, int code,
                         const char *json);
/* Replies {"error": message} as application/json. */
void cm_httpd_reply_error(struct cm_httpd *h, struct evhttp_request *req, int code,
                          const char *message);

/* Copies the request body into a NUL-terminated buffer (b is reset first). */
void cm_httpd_body(struct evhttp_request *req, struct cm_buf *b);

/* The value of a query-string parameter (decoded; the caller frees it), or NULL. */
char *cm_httpd_query(struct evhttp_request *req, const char *name);

#endif
