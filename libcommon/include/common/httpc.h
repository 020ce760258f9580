/*
 * httpc.h - the outbound HTTP client (libcurl): Meta Graph, OpenAI, Gemini, ElevenLabs.
 *
 * Calls block: make them from worker threads, never from the event loop. Every function
 * here is thread-safe; a struct cm_httpc (which keeps connections open between calls) is
 * used by one thread at a time, and a call may also go without one.
 *
 * The retry contract of cm_httpc_do():
 *  - An attempt is retried when the policy says so. The default policy retries transport
 *    failures (could not resolve or connect, connection reset or closed without an answer,
 *    the attempt's timeout), HTTP 5xx, HTTP 429, and, for a request marked meta, a Meta
 *    throttling error code (cm_httpc_meta_throttling()) whatever the 4xx or 5xx status.
 *    Any other answer, 4xx included, is final. The default repeats a POST as readily as a
 *    GET: a caller whose request must not be acted on twice gives its own policy (below).
 *  - Waits between attempts are exponential backoff with full jitter: a random time in
 *    [0, min(cap, base * 2^(n-1))) before attempt n+1. A Retry-After header (seconds or
 *    HTTP-date) replaces that wait; when it asks for more than the cap, or the wait would
 *    pass the deadline, the call stops there rather than retry early, and the caller finds
 *    the wait the server asked for in retry_after_ms.
 *  - The deadline bounds the whole call, waits included: each attempt's timeout is cut to
 *    the time left, and no attempt starts after the deadline.
 *
 * Nothing secret reaches the log: lines carry the method, scheme, host, path, status and
 * attempt number, never a query string (Meta's token calls put client_secret and
 * access_token there), a header or a body.
 */
#ifndef COMMON_HTTPC_H
#define COMMON_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "common/mem.h"

/* Defaults applied to a request field left at 0. */
#define CM_HTTPC_TIMEOUT_MS         30000L
#define CM_HTTPC_CONNECT_TIMEOUT_MS 5000L
#define CM_HTTPC_DEADLINE_MS        60000L
#define CM_HTTPC_MAX_ATTEMPTS       3
#define CM_HTTPC_BACKOFF_BASE_MS    200L
#define CM_HTTPC_BACKOFF_CAP_MS     5000L
#define CM_HTTPC_MAX_RESPONSE       ((size_t)8 << 20)

/* The fields of Meta's error body {"error":{"message","type","code","error_subcode",
 * "fbtrace_id"}}. Text longer than a field is cut (on a UTF-8 character boundary). */
struct cm_meta_error {
    int code;    /* e.g. 190 invalid token, 100 invalid parameter, 4/17/32/613 throttled */
    int subcode; /* error_subcode, 0 when absent */
    char type[64];
    char message[512];
    char fbtrace_id[64];
};

/* One response header of the final attempt; both strings are owned by the response. */
struct cm_httpc_header {
    char *name;
    char *value;
};

/*
 * What one call produced: the final attempt's answer, or its failure. Embedded:
 * cm_httpc_response_init() before the call, cm_httpc_response_cleanup() after.
 */
struct cm_httpc_response {
    long status;                     /* HTTP status of the final attempt; 0 when it got no answer */
    struct cm_buf body;              /* its body, NUL-terminated; empty without an answer */
    struct cm_httpc_header *headers; /* all its headers, in order received */
    size_t nheaders;
    const char *content_type; /* the Content-Type value (points into headers), or NULL */
    long retry_after_ms;      /* Retry-After of the final answer in ms, -1 when absent */
    int attempts;             /* attempts made, >= 1 once a call ran */
    long elapsed_ms;          /* wall time of the whole call, waits included */
    int transport;            /* the final attempt: CM_OK (answered), CM_UNAVAIL, CM_TIMEOUT, ... */
    bool maybe_sent;          /* the final attempt's request may have reached the server */
    bool has_meta_error;      /* a meta request's answer (status >= 400) was Meta's error */
    struct cm_meta_error meta_error; /* filled when has_meta_error */
};

/*
 * The retry policy: returns true when the outcome in resp is worth another attempt. Asked
 * after every attempt that got an answer (transport CM_OK) or failed with CM_UNAVAIL or
 * CM_TIMEOUT (status 0), the last attempt included: a final answer the policy would retry
 * makes the call CM_UNAVAIL, one it would not is CM_OK. Not asked after CM_TOOBIG,
 * CM_INVALID or CM_ERR, which are never retried. resp is borrowed for the call; the
 * policy runs on the calling thread.
 *
 * A non-idempotent call (Meta's Send API) may refuse to repeat what may have been acted
 * on: `return !resp->maybe_sent || resp->status == 429 || <Meta throttled>`.
 */
typedef bool (*cm_httpc_retry_fn)(const struct cm_httpc_response *resp, void *arg);

/*
 * A streamed part's bytes: copies up to cap of them, from offset, into buf and returns how
 * many (at least one while offset < the part's len), or 0 on failure, which ends the call
 * with CM_ERR. Called on the calling thread, from offset 0 again for each attempt.
 */
typedef size_t (*cm_httpc_read_fn)(void *arg, size_t offset, char *buf, size_t cap);

/* One field of a multipart/form-data body, built by libcurl's MIME API. */
struct cm_httpc_part {
    const char *name; /* the field's name */
    const void *data; /* its value (read in place for each attempt's body), or NULL with read */
    size_t len;
    cm_httpc_read_fn read; /* instead of data: its len bytes asked for as they are sent */
    void *read_arg;
    const char *filename;     /* a file part's name, or NULL */
    const char *content_type; /* the part's Content-Type, or NULL */
};

struct cm_httpc_request {
    const char *method;         /* "GET", "POST", "DELETE"...; NULL: GET, POST with body */
    const char *url;            /* absolute http(s) URL, query included (never logged) */
    const char *const *headers; /* "Name: value" strings, NULL-terminated, or NULL */
    const void *body;           /* sent as is, or NULL */
    size_t body_len;
    long timeout_ms;                   /* one attempt, connect to last byte (0: 30 s) */
    long connect_timeout_ms;           /* one connect (0: 5 s) */
    long deadline_ms;                  /* the whole call, waits included (0: 60 s) */
    int max_attempts;                  /* 1 for no retry (0: 3) */
    long backoff_base_ms;              /* 0: 200 ms */
    long backoff_cap_ms;               /* also the longest Retry-After obeyed (0: 5 s) */
    size_t max_response;               /* larger bodies are refused (0: 8 MiB) */
    bool meta;                         /* Graph API: parse Meta errors, retry throttling codes */
    cm_httpc_retry_fn retryable;       /* NULL: cm_httpc_retryable_default() */
    void *retry_arg;                   /* borrowed, passed to retryable */
    const char *log_id;                /* request or message id for log lines, or NULL */
    const char *log_url;               /* shown in log lines instead of url, whose path holds what
                                          must not be logged (a contact's id), or NULL */
    const char *aws_sigv4;             /* sign with AWS Signature Version 4 (CURLOPT_AWS_SIGV4,
                                          "aws:amz:<region>:<service>"), or NULL. curl signs every
                                          header given here; it adds x-amz-date but, as of 7.88, no
                                          x-amz-content-sha256: a caller that needs it adds it */
    const char *username;              /* with aws_sigv4: the access key id */
    const char *password;              /* with aws_sigv4: the secret key (never logged) */
    const struct cm_httpc_part *parts; /* a multipart/form-data POST of nparts fields instead
                                          of body (which must be NULL), or NULL */
    size_t nparts;
};

/* A reusable client: one CURL handle whose connections and DNS cache outlive a call. */
struct cm_httpc;

/*
 * Creates a client for one thread at a time. Free with cm_httpc_destroy() (accepts NULL).
 * Returns CM_OK or CM_ERR (libcurl could not initialise; logged).
 */
int cm_httpc_create(struct cm_httpc **out) CM_MUST_CHECK;
void cm_httpc_destroy(struct cm_httpc *c);

/* Prepares r for cm_httpc_do(): empty, status 0, retry_after_ms -1. Owns nothing yet. */
void cm_httpc_response_init(struct cm_httpc_response *r);
/* Frees what a call stored in r and leaves it initialised (reusable for another call). */
void cm_httpc_response_cleanup(struct cm_httpc_response *r);

/*
 * Performs req with retries (see the contract above) and fills resp with the final
 * attempt. c may be NULL (a handle for this call only). resp is reset first. Returns:
 *  CM_OK      an answer the policy did not retry: 2xx, 3xx (redirects are not followed)
 *             and 4xx alike; look at resp->status.
 *  CM_UNAVAIL the last attempt could not connect or was answered with something the
 *             policy retries (5xx, 429, throttled), and attempts or time ran out, or a
 *             Retry-After asked for more than the cap or the deadline allow; the answer,
 *             if any, is in resp (status, body, meta_error, retry_after_ms).
 *  CM_TIMEOUT the last attempt got no answer in time (its timeout or the deadline).
 *  CM_TOOBIG  the answer was larger than max_response (not retried).
 *  CM_INVALID the request is unusable (no URL, malformed URL, not http or https, a header
 *             with a CR or LF in it).
 *  CM_ERR     any other failure (TLS verification, libcurl internals); logged.
 */
int cm_httpc_do(struct cm_httpc *c, const struct cm_httpc_request *req,
                struct cm_httpc_response *resp) CM_MUST_CHECK;

/*
 * The default policy: true for a transport failure other than CM_TOOBIG, CM_INVALID or
 * CM_ERR, HTTP 5xx, HTTP 429, and a Meta throttling code (has_meta_error). arg is unused.
 * A custom policy may call it and add its own conditions.
 */
bool cm_httpc_retryable_default(const struct cm_httpc_response *resp, void *arg);

/* The value of response header name (case-insensitive), borrowed from r, or NULL. */
const char *cm_httpc_header(const struct cm_httpc_response *r, const char *name);

/*
 * Parses Meta's error body from len bytes of body into out. Returns CM_OK, or CM_NOTFOUND
 * when the text is not JSON of that shape (an "error" object with a numeric "code"); out is
 * zeroed then. Never trusts the input: any bytes are safe.
 */
int cm_httpc_meta_parse(const char *body, size_t len, struct cm_meta_error *out) CM_MUST_CHECK;

/* cm_httpc_meta_parse() over a response's body. Same returns. */
int cm_httpc_meta_error(const struct cm_httpc_response *r, struct cm_meta_error *out) CM_MUST_CHECK;

/* True for Meta's throttling codes: 4, 17, 32, 613 and the 80001-80014 business limits. */
bool cm_httpc_meta_throttling(int code);

/*
 * Appends base + path + "?k=v&..." to out, each key and value percent-escaped
 * (curl_easy_escape: all but ALPHA / DIGIT / "-._~"). params is key, value, key, value, ...,
 * NULL (or NULL for none); a NULL value ends the list as well. path may be NULL; a '/'
 * between base and path is added or removed as needed. The result holds secrets when the
 * values do: keep it out of logs (cm_httpc_log_url()).
 */
void cm_httpc_url(struct cm_buf *out, const char *base, const char *path,
                  const char *const *params);

/*
 * Appends url to out without what may be secret: user and password, query string and
 * fragment ("https://u:p@host:8443/v19.0/oauth?x=1#f" -> "https://host:8443/v19.0/oauth").
 * For log lines. Any text is accepted.
 */
void cm_httpc_log_url(struct cm_buf *out, const char *url);

#endif
