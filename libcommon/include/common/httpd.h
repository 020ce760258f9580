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
 * Binds listen ("host:port", ":port" meaning all addresses) on base. max_body bounds a
 * request body (0: 1 MiB); a larger one is answered 413 by evhttp. metrics (borrowed) counts
 * the replies and is rendered by /metrics; flags are cm_httpd_flags. Free with
 * cm_httpd_destroy(). Returns CM_INVALID when the address cannot be bound.
 */
int cm_httpd_create(struct cm_httpd **out, struct event_base *base, const char *listen,
                    size_t max_body, struct cm_metrics *metrics, unsigned flags) CM_MUST_CHECK;
void cm_httpd_destroy(struct cm_httpd *h);

/* Sets the readiness callback behind /readyz (default: always ready). */
void cm_httpd_set_ready(struct cm_httpd *h, cm_httpd_ready_fn fn, void *arg);

/* Adds a handler for an exact path (any query string). path is copied. */
void cm_httpd_route(struct cm_httpd *h, const char *path, cm_httpd_fn fn, void *arg);

/* Stops accepting new connections; requests in progress still get their replies. */
void cm_httpd_close(struct cm_httpd *h);

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
