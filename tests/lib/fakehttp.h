/*
 * fakehttp.h - a scriptable HTTP server on 127.0.0.1 for tests, standing in for Meta Graph,
 * OpenAI, Gemini and the like.
 *
 * It runs libevent's evhttp on an event_base and a thread of its own. Each request is
 * recorded, then handed to the test's handler on the server thread; the handler fills a
 * struct fakehttp_response: a status, headers and a body, optionally answered after a delay
 * (an evtimer: the server keeps serving meanwhile) or not at all (the connection is closed).
 * The test inspects the recorded requests afterwards, from its own thread.
 */
#ifndef TESTS_FAKEHTTP_H
#define TESTS_FAKEHTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/mem.h"

struct fakehttp;

struct fakehttp_header {
    char *name;
    char *value;
};

/* One request as it arrived. Owned by the server; see fakehttp_get() for its lifetime. */
struct fakehttp_request {
    int seq;      /* 0 for the first request since start or the last fakehttp_clear() */
    char *method; /* "GET", "POST", ... */
    char *uri;    /* path and query as sent: "/v19.0/oauth/access_token?grant_type=..." */
    char *path;   /* the path alone, not decoded */
    char *query;  /* the raw query string without '?', "" when none */
    struct fakehttp_header *headers;
    size_t nheaders;
    char *body; /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
    long long at_ms; /* when it arrived: CLOCK_MONOTONIC in ms (compare two requests' times) */
};

/* What the handler answers. The server initialises it to 200, no headers, empty body. */
struct fakehttp_response {
    int status;
    struct fakehttp_header *headers; /* use fakehttp_set_header() */
    size_t nheaders;
    struct cm_buf body;
    int delay_ms; /* answer (or close) this long after the request arrived */
    bool close;   /* close the connection without answering (after delay_ms) */
    bool chunked; /* send the body with chunked transfer encoding, no Content-Length */
};

/*
 * Called on the server thread for every request. req is borrowed for the call; resp is
 * the server's and is sent (and freed) when the handler returns. Nothing here may block.
 */
typedef void (*fakehttp_fn)(const struct fakehttp_request *req, struct fakehttp_response *resp,
                            void *arg);

/*
 * Starts a server on 127.0.0.1 and a free port. handler may be NULL (every request gets
 * 200 and an empty body); arg is borrowed and passed to it. Returns 0, or -1 when the
 * server cannot start (reason on stderr). Stop and free it with fakehttp_stop().
 * Sets SIGPIPE to be ignored, process-wide (answers may go to clients that have left).
 */
int fakehttp_start(struct fakehttp **out, fakehttp_fn handler, void *arg);

/* The same on a given port of 127.0.0.1 (0: any free port). */
int fakehttp_start_at(struct fakehttp **out, int port, fakehttp_fn handler, void *arg);

/*
 * Stops the server: ends its loop, joins its thread, drops requests still waiting for
 * their delayed answer, closes every connection and frees everything. Accepts NULL.
 */
void fakehttp_stop(struct fakehttp *srv);

/* "http://127.0.0.1:PORT", borrowed from srv. */
const char *fakehttp_url(const struct fakehttp *srv);
int fakehttp_port(const struct fakehttp *srv);

/* --- recorded requests (safe from any thread) ------------------------------------------ */

/* The number of requests recorded so far. */
int fakehttp_count(struct fakehttp *srv);

/*
 * The i-th recorded request (0-based, in arrival order), or NULL. Borrowed: valid until
 * fakehttp_clear() or fakehttp_stop().
 */
const struct fakehttp_request *fakehttp_get(struct fakehttp *srv, int i);

/* The last recorded request whose path equals path, or NULL. Borrowed like fakehttp_get(). */
const struct fakehttp_request *fakehttp_find(struct fakehttp *srv, const char *path);

/* Forgets every recorded request (invalidating pointers to them) and restarts seq at 0. */
void fakehttp_clear(struct fakehttp *srv);

/* --- inside a request ------------------------------------------------------------------ */

/* The value of header name (case-insensitive), borrowed from req, or NULL. */
const char *fakehttp_header(const struct fakehttp_request *req, const char *name);

/* The decoded value of query parameter name, newly allocated (free() it), or NULL. */
char *fakehttp_query_param(const struct fakehttp_request *req, const char *name);

/* --- building answers (on the server thread, inside the handler) ------------------------ */

/* Adds a response header; name and value are copied. */
void fakehttp_set_header(struct fakehttp_response *resp, const char *name, const char *value);

/* Sets the status and replaces the body with len bytes of data (copied). */
void fakehttp_reply(struct fakehttp_response *resp, int status, const void *data, size_t len);

/* Sets the status, Content-Type: application/json; charset=UTF-8 (as Graph sends it) and
 * the body json (copied as is). */
void fakehttp_json(struct fakehttp_response *resp, int status, const char *json);

/*
 * Answers with Meta's error body, exactly as the Graph API shapes it:
 * {"error":{"message":"<message>","type":"OAuthException","code":<code>,
 * "error_subcode":<subcode>,"fbtrace_id":"<id>"}}, error_subcode left out when subcode is 0.
 * message is JSON-escaped; the fbtrace_id is "AFakeTrace<code>" so tests can expect it. Also
 * sets Content-Type: application/json and Graph's WWW-Authenticate header.
 */
void fakehttp_meta_error(struct fakehttp_response *resp, int http_status, int code, int subcode,
                         const char *message);

#endif
