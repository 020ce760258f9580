/*
 * httpc.c - the outbound HTTP client over libcurl (see httpc.h): one easy transfer per
 * attempt, the retry loop around it, Meta's error body, URL building and redaction.
 */
#include "common/httpc.h"
#include "common/crypto.h"
#include "common/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef DOMS_VERSION
#define DOMS_VERSION "0"
#endif

/* A hostile server may send many tiny headers; curl bounds their total size, we their count. */
#define MAX_HEADERS 128

struct cm_httpc {
    CURL *curl;
};

/* One attempt's receiving state. */
struct xfer {
    struct cm_httpc_response *resp;
    curl_mime *mime;       /* the request's parts, or NULL */
    struct part_src *srcs; /* their readers */
    size_t max_response;
    bool too_big;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    /* libsodium backs the jitter; sodium_init() is idempotent and thread-safe. */
    if (sodium_init() < 0)
        CM_ERROR("httpc: sodium_init failed");
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (global_rc != CURLE_OK)
        CM_ERROR("httpc: curl_global_init: %s", curl_easy_strerror(global_rc));
}

/* Returns a new easy handle after making sure libcurl is initialised, or NULL (logged). */
static CURL *new_handle(void)
{
    CURL *c;

    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return NULL;
    c = curl_easy_init();
    if (c == NULL)
        CM_ERROR("httpc: curl_easy_init failed");
    return c;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int cm_httpc_create(struct cm_httpc **out)
{
    CURL *c = new_handle();

    *out = NULL;
    if (c == NULL)
        return CM_ERR;
    *out = cm_xcalloc(1, sizeof(**out));
    (*out)->curl = c;
    return CM_OK;
}

void cm_httpc_destroy(struct cm_httpc *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

void cm_httpc_response_init(struct cm_httpc_response *r)
{
    memset(r, 0, sizeof(*r));
    cm_buf_init(&r->body);
    r->retry_after_ms = -1;
    r->transport = CM_OK;
}

static void clear_headers(struct cm_httpc_response *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->nheaders = 0;
    r->content_type = NULL;
}

void cm_httpc_response_cleanup(struct cm_httpc_response *r)
{
    clear_headers(r);
    cm_buf_cleanup(&r->body);
    cm_httpc_response_init(r);
}

/* Forgets the previous attempt's answer, keeping the counters of the call. */
static void reset_attempt(struct cm_httpc_response *r)
{
    clear_headers(r);
    cm_buf_reset(&r->body);
    r->status = 0;
    r->retry_after_ms = -1;
    r->transport = CM_OK;
    r->maybe_sent = false;
    r->has_meta_error = false;
    memset(&r->meta_error, 0, sizeof(r->meta_error));
}

const char *cm_httpc_header(const struct cm_httpc_response *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;

    if (len > x->max_response - x->resp->body.len) {
        /* Returning short makes curl fail the transfer with CURLE_WRITE_ERROR. */
        x->too_big = true;
        return 0;
    }
    cm_buf_append(&x->resp->body, data, len);
    return len;
}

static size_t trimmed_len(const char *s, size_t len)
{
    while (len > 0 &&
           (s[len - 1] == '\r' || s[len - 1] == '\n' || s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    struct cm_httpc_response *r = x->resp;
    size_t len = size * n, line = trimmed_len(data, len);
    const char *colon;
    size_t v;

    /* A status line starts a new response (after 100 Continue, say): drop older headers. */
    if (line >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        clear_headers(r);
        return len;
    }
    colon = memchr(data, ':', line);
    if (line == 0 || data[0] == ' ' || data[0] == '\t' || colon == NULL || colon == data ||
        r->nheaders >= MAX_HEADERS)
        return len;
    v = (size_t)(colon - data) + 1;
    while (v < line && (data[v] == ' ' || data[v] == '\t'))
        v++;
    r->headers = cm_xrealloc(r->headers, (r->nheaders + 1) * sizeof(*r->headers));
    r->headers[r->nheaders].name = cm_xstrndup(data, (size_t)(colon - data));
    r->headers[r->nheaders].value = cm_xstrndup(data + v, line - v);
    r->nheaders++;
    return len;
}

/* Retry-After as milliseconds from now: delta-seconds or an HTTP-date; -1 when unusable. */
static long parse_retry_after(const char *v)
{
    char *end;
    long long secs;
    time_t when;

    if (v == NULL || *v == '\0')
        return -1;
    if (*v >= '0' && *v <= '9') {
        errno = 0;
        secs = strtoll(v, &end, 10);
        if (errno != 0 || *end != '\0')
            return -1;
        return secs > LONG_MAX / 1000 ? LONG_MAX : (long)(secs * 1000);
    }
    when = curl_getdate(v, NULL);
    if (when < 0)
        return -1;
    when -= time(NULL);
    if (when <= 0)
        return 0;
    return when > LONG_MAX / 1000 ? LONG_MAX : (long)when * 1000;
}

/* Maps one transfer's libcurl result onto the shared codes. */
static int classify(CURLcode cc, bool too_big)
{
    switch (cc) {
    case CURLE_OK:
        return CM_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return CM_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return CM_UNAVAIL;
    case CURLE_WRITE_ERROR:
        return too_big ? CM_TOOBIG : CM_ERR;
    case CURLE_FILESIZE_EXCEEDED:
        return CM_TOOBIG;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return CM_INVALID;
    default:
        return CM_ERR;
    }
}

/* A part's bytes as libcurl reads them: from the caller's buffer, never copied (a file being
 * uploaded is Platform Data, and curl's own copy would be freed unwiped). */
struct part_src {
    const char *data;
    cm_httpc_read_fn read; /* or the caller's reader */
    void *read_arg;
    size_t len, pos;
};

static size_t part_read(char *buf, size_t size, size_t n, void *arg)
{
    struct part_src *p = arg;
    size_t take = p->len - p->pos < size * n ? p->len - p->pos : size * n;

    if (take == 0)
        return 0;
    if (p->read != NULL) {
        take = p->read(p->read_arg, p->pos, buf, take);
        if (take == 0)
            return CURL_READFUNC_ABORT; /* the reader failed: CURLE_ABORTED_BY_CALLBACK */
    } else {
        memcpy(buf, p->data + p->pos, take);
    }
    p->pos += take;
    return take;
}

static int part_seek(void *arg, curl_off_t offset, int origin)
{
    struct part_src *p = arg;

    if (origin != SEEK_SET || offset < 0 || (size_t)offset > p->len)
        return CURL_SEEKFUNC_CANTSEEK;
    p->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* The request's parts as libcurl's MIME structure, for one attempt of the call; srcs holds
 * nparts readers (freed by the caller with the structure). */
static int build_mime(CURL *c, const struct cm_httpc_request *req, curl_mime **out,
                      struct part_src **srcs)
{
    curl_mime *mime = curl_mime_init(c);

    *out = mime;
    *srcs = cm_xcalloc(req->nparts + 1, sizeof(**srcs));
    if (mime == NULL)
        return CM_ERR;
    for (size_t i = 0; i < req->nparts; i++) {
        const struct cm_httpc_part *p = &req->parts[i];
        curl_mimepart *part = curl_mime_addpart(mime);

        (*srcs)[i] = (struct part_src){
            .data = p->data, .read = p->read, .read_arg = p->read_arg, .len = p->len};
        if (part == NULL || curl_mime_name(part, p->name) != CURLE_OK ||
            curl_mime_data_cb(part, (curl_off_t)p->len, part_read, part_seek, NULL, &(*srcs)[i]) !=
                CURLE_OK ||
            (p->filename != NULL && curl_mime_filename(part, p->filename) != CURLE_OK) ||
            (p->content_type != NULL && curl_mime_type(part, p->content_type) != CURLE_OK))
            return CM_ERR;
    }
    return CM_OK;
}

/* Sets every option of one attempt on a freshly reset handle. */
static void set_options(CURL *c, const struct cm_httpc_request *req, const char *method,
                        struct curl_slist *headers, struct xfer *x, long timeout_ms,
                        long connect_ms)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "doms/" DOMS_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_response);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    if (req->aws_sigv4 != NULL) {
        /* Separate options, not CURLOPT_USERPWD: a secret may hold a ':'. */
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, req->aws_sigv4);
        curl_easy_setopt(c, CURLOPT_USERNAME, req->username != NULL ? req->username : "");
        curl_easy_setopt(c, CURLOPT_PASSWORD, req->password != NULL ? req->password : "");
    }

    if (x->mime != NULL) {
        curl_easy_setopt(c, CURLOPT_MIMEPOST, x->mime);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (req->body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
               strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
}

/* Runs one attempt and records its outcome in x->resp (transport, status, headers...). */
static void attempt(CURL *c, const struct cm_httpc_request *req, const char *method,
                    struct curl_slist *headers, struct xfer *x, long timeout_ms, long connect_ms)
{
    struct cm_httpc_response *r = x->resp;
    long sent = 0;
    CURLcode cc;

    reset_attempt(r);
    x->too_big = false;
    set_options(c, req, method, headers, x, timeout_ms, connect_ms);
    cc = curl_easy_perform(c);
    r->transport = classify(cc, x->too_big);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &sent);
    r->maybe_sent = sent > 0 || r->status > 0;
    if (cc != CURLE_OK) {
        long os_errno = 0;
        curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
        /* curl_easy_strerror() is static text: the URL and its query never appear in it. */
        CM_DEBUG_ID(req->log_id, "httpc: curl: %s (errno %ld)", curl_easy_strerror(cc), os_errno);
        /* Without an answer there is nothing of it to keep. */
        clear_headers(r);
        cm_buf_reset(&r->body);
        return;
    }
    if (r->body.data == NULL)
        cm_buf_puts(&r->body, "");
    r->content_type = cm_httpc_header(r, "Content-Type");
    r->retry_after_ms = parse_retry_after(cm_httpc_header(r, "Retry-After"));
    if (req->meta && r->status >= 400)
        r->has_meta_error = cm_httpc_meta_error(r, &r->meta_error) == CM_OK;
}

bool cm_httpc_retryable_default(const struct cm_httpc_response *resp, void *arg)
{
    (void)arg;
    if (resp->transport == CM_UNAVAIL || resp->transport == CM_TIMEOUT)
        return true;
    if (resp->transport != CM_OK)
        return false;
    if (resp->status >= 500 || resp->status == 429)
        return true;
    return resp->has_meta_error && cm_httpc_meta_throttling(resp->meta_error.code);
}

/* Full jitter: uniform in [0, min(cap, base * 2^(n-1))). */
static long backoff_ms(int n, long base, long cap)
{
    uint32_t rnd;
    long ceil = base;

    for (int i = 1; i < n && ceil < cap; i++)
        ceil *= 2;
    if (ceil > cap)
        ceil = cap;
    if (ceil <= 0)
        return 0;
    cm_crypto_random(&rnd, sizeof(rnd));
    return (long)(rnd % (uint32_t)ceil);
}

/* Writes "<status>" or "<transport error>" for a log line into out[48]. */
static void outcome_text(const struct cm_httpc_response *r, char out[48])
{
    if (r->transport == CM_OK && r->has_meta_error)
        snprintf(out, 48, "%ld meta %d/%d", r->status, r->meta_error.code, r->meta_error.subcode);
    else if (r->transport == CM_OK)
        snprintf(out, 48, "%ld", r->status);
    else
        snprintf(out, 48, "%s", cm_err_str(r->transport));
}

/* The call's fields, defaults applied. */
struct plan {
    const char *method;
    long timeout_ms, connect_ms, deadline_ms, base_ms, cap_ms;
    int max_attempts;
    size_t max_response;
    cm_httpc_retry_fn retryable;
};

static void make_plan(struct plan *p, const struct cm_httpc_request *req)
{
    p->method = req->method != NULL ? req->method : (req->body != NULL ? "POST" : "GET");
    p->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : CM_HTTPC_TIMEOUT_MS;
    p->connect_ms =
        req->connect_timeout_ms > 0 ? req->connect_timeout_ms : CM_HTTPC_CONNECT_TIMEOUT_MS;
    p->deadline_ms = req->deadline_ms > 0 ? req->deadline_ms : CM_HTTPC_DEADLINE_MS;
    p->base_ms = req->backoff_base_ms > 0 ? req->backoff_base_ms : CM_HTTPC_BACKOFF_BASE_MS;
    p->cap_ms = req->backoff_cap_ms > 0 ? req->backoff_cap_ms : CM_HTTPC_BACKOFF_CAP_MS;
    p->max_attempts = req->max_attempts > 0 ? req->max_attempts : CM_HTTPC_MAX_ATTEMPTS;
    p->max_response = req->max_response > 0 ? req->max_response : CM_HTTPC_MAX_RESPONSE;
    p->retryable = req->retryable != NULL ? req->retryable : cm_httpc_retryable_default;
}

/*
 * Decides what follows attempt n: returns true to try again after *wait ms, or false with
 * the call's final code in *rc. Logs the reason for stopping or retrying.
 */
static bool next_step(const struct plan *p, const struct cm_httpc_request *req,
                      const struct cm_httpc_response *r, const char *where, int n, int64_t deadline,
                      long *wait, int *rc)
{
    char what[48];
    int64_t left;

    outcome_text(r, what);
    *rc = r->transport;
    if (r->transport != CM_OK && r->transport != CM_UNAVAIL && r->transport != CM_TIMEOUT) {
        CM_WARN_ID(req->log_id, "httpc: %s %s -> %s (attempt %d/%d, not retried)", p->method, where,
                   what, n, p->max_attempts);
        return false;
    }
    if (!p->retryable(r, req->retry_arg)) {
        CM_DEBUG_ID(req->log_id, "httpc: %s %s -> %s (attempt %d/%d)", p->method, where, what, n,
                    p->max_attempts);
        return false;
    }
    /* From here on the outcome is a failure: an answer the policy retries is "unavailable". */
    if (r->transport == CM_OK)
        *rc = CM_UNAVAIL;
    if (n >= p->max_attempts) {
        CM_WARN_ID(req->log_id, "httpc: %s %s -> %s (attempt %d/%d, giving up)", p->method, where,
                   what, n, p->max_attempts);
        return false;
    }
    left = deadline - now_ms();
    if (r->retry_after_ms >= 0) {
        if (r->retry_after_ms > p->cap_ms || r->retry_after_ms >= left) {
            CM_WARN_ID(req->log_id,
                       "httpc: %s %s -> %s (attempt %d/%d, Retry-After %ld ms is past the cap "
                       "or the deadline, giving up)",
                       p->method, where, what, n, p->max_attempts, r->retry_after_ms);
            return false;
        }
        *wait = r->retry_after_ms;
    } else {
        *wait = backoff_ms(n, p->base_ms, p->cap_ms);
    }
    if (*wait >= left) {
        CM_WARN_ID(req->log_id, "httpc: %s %s -> %s (attempt %d/%d, deadline reached)", p->method,
                   where, what, n, p->max_attempts);
        return false;
    }
    CM_WARN_ID(req->log_id, "httpc: %s %s -> %s (attempt %d/%d, retrying in %ld ms)", p->method,
               where, what, n, p->max_attempts, *wait);
    return true;
}

int cm_httpc_do(struct cm_httpc *c, const struct cm_httpc_request *req,
                struct cm_httpc_response *resp)
{
    struct plan p;
    struct xfer x = {.resp = resp};
    struct curl_slist *headers = NULL, *more;
    struct cm_buf where;
    CURL *curl = c != NULL ? c->curl : NULL;
    int64_t start = now_ms(), deadline;
    int rc = CM_ERR;

    cm_httpc_response_cleanup(resp);
    cm_buf_init(&where);
    if (req->url == NULL || req->url[0] == '\0' || (req->body == NULL && req->body_len > 0) ||
        (req->parts != NULL && req->body != NULL))
        return CM_INVALID;
    make_plan(&p, req);
    x.max_response = p.max_response;
    deadline = start + p.deadline_ms;
    cm_httpc_log_url(&where, req->log_url != NULL ? req->log_url : req->url);

    if (curl == NULL && (curl = new_handle()) == NULL)
        goto done;
    for (int i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
        /* A CR or LF would let a value (a token from elsewhere) add headers of its own. */
        if (strpbrk(req->headers[i], "\r\n") != NULL) {
            CM_WARN_ID(req->log_id, "httpc: %s %s: header %d holds a line break, refused", p.method,
                       where.data, i);
            rc = CM_INVALID;
            goto done;
        }
        if ((more = curl_slist_append(headers, req->headers[i])) == NULL)
            goto done;
        headers = more;
    }
    /* No "Expect: 100-continue" round trip before larger bodies. Not for a signed request:
     * curl 7.88 signs every header in the list, this empty one too, which it then does not
     * send, and the server's signature would differ. S3 answers 100 Continue anyway, and a
     * refusal then comes before the body is sent. */
    if (req->aws_sigv4 == NULL) {
        if ((more = curl_slist_append(headers, "Expect:")) == NULL)
            goto done;
        headers = more;
    }

    for (int n = 1;; n++) {
        long left = (long)(deadline - now_ms()), wait = 0;
        long timeout = p.timeout_ms < left ? p.timeout_ms : left;

        if (left <= 0) {
            /* Only after a retryable attempt whose wait overslept: report that attempt. */
            rc = n == 1 || resp->transport == CM_TIMEOUT ? CM_TIMEOUT : CM_UNAVAIL;
            break;
        }
        /* The parts anew for each attempt: libcurl 7.88 does not rewind a MIME structure set
         * again on a reset handle, and a retry would send its parts' ends, not their bytes. */
        if (req->parts != NULL) {
            curl_mime_free(x.mime);
            free(x.srcs);
            x.mime = NULL;
            x.srcs = NULL;
            if (build_mime(curl, req, &x.mime, &x.srcs) != CM_OK) {
                rc = CM_ERR;
                break;
            }
        }
        resp->attempts = n;
        attempt(curl, req, p.method, headers, &x, timeout,
                p.connect_ms < timeout ? p.connect_ms : timeout);
        if (!next_step(&p, req, resp, where.data, n, deadline, &wait, &rc))
            break;
        sleep_ms(wait);
    }

done:
    if (rc == CM_ERR && resp->attempts == 0)
        CM_ERROR_ID(req->log_id, "httpc: %s %s: could not set up the request", p.method,
                    where.data);
    resp->elapsed_ms = (long)(now_ms() - start);
    curl_slist_free_all(headers);
    curl_mime_free(x.mime);
    free(x.srcs);
    if (c == NULL && curl != NULL)
        curl_easy_cleanup(curl);
    cm_buf_cleanup(&where);
    return rc;
}

/* --- Meta's error body --------------------------------------------------------------- */

bool cm_httpc_meta_throttling(int code)
{
    return code == 4 || code == 17 || code == 32 || code == 613 || (code >= 80001 && code <= 80014);
}

/* Copies a JSON string member into out (cap bytes), cut on a UTF-8 character boundary. */
static void copy_member(const cJSON *obj, const char *name, char *out, size_t cap)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    size_t len;

    out[0] = '\0';
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return;
    len = strlen(item->valuestring);
    if (len >= cap) {
        len = cap - 1;
        /* Step back over continuation bytes so a character is never split. */
        while (len > 0 && ((unsigned char)item->valuestring[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(out, item->valuestring, len);
    out[len] = '\0';
}

/* A JSON number that fits an int, or 0. */
static int int_member(const cJSON *obj, const char *name, bool *found)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    double v;

    *found = false;
    if (!cJSON_IsNumber(item))
        return 0;
    v = item->valuedouble;
    if (!(v >= INT_MIN && v <= INT_MAX))
        return 0;
    *found = true;
    return (int)v;
}

int cm_httpc_meta_parse(const char *body, size_t len, struct cm_meta_error *out)
{
    cJSON *root;
    const cJSON *err;
    bool found = false, ignored;
    int rc = CM_NOTFOUND;

    memset(out, 0, sizeof(*out));
    if (body == NULL || len == 0)
        return CM_NOTFOUND;
    root = cJSON_ParseWithLength(body, len);
    if (root == NULL)
        return CM_NOTFOUND;
    err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsObject(err)) {
        out->code = int_member(err, "code", &found);
        if (found) {
            out->subcode = int_member(err, "error_subcode", &ignored);
            copy_member(err, "type", out->type, sizeof(out->type));
            copy_member(err, "message", out->message, sizeof(out->message));
            copy_member(err, "fbtrace_id", out->fbtrace_id, sizeof(out->fbtrace_id));
            rc = CM_OK;
        }
    }
    cJSON_Delete(root);
    if (rc != CM_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

int cm_httpc_meta_error(const struct cm_httpc_response *r, struct cm_meta_error *out)
{
    return cm_httpc_meta_parse(r->body.data, r->body.len, out);
}

/* --- URLs ------------------------------------------------------------------------------ */

/* Appends s percent-escaped: all but the RFC 3986 unreserved set, UTF-8 byte by byte. */
static void append_escaped(struct cm_buf *out, const char *s)
{
    /* curl_easy_escape() needs no handle since 7.82; NULL means out of memory. */
    char *esc = curl_easy_escape(NULL, s, 0);

    if (esc == NULL) {
        fprintf(stderr, "fatal: out of memory escaping a URL\n");
        abort();
    }
    cm_buf_puts(out, esc);
    curl_free(esc);
}

void cm_httpc_url(struct cm_buf *out, const char *base, const char *path, const char *const *params)
{
    size_t blen = strlen(base);

    if (path != NULL && path[0] != '\0') {
        while (blen > 0 && base[blen - 1] == '/')
            blen--;
        cm_buf_append(out, base, blen);
        if (path[0] != '/')
            cm_buf_puts(out, "/");
        cm_buf_puts(out, path);
    } else {
        cm_buf_append(out, base, blen);
    }
    for (size_t i = 0; params != NULL && params[i] != NULL && params[i + 1] != NULL; i += 2) {
        cm_buf_puts(out, i == 0 && strchr(out->data, '?') == NULL ? "?" : "&");
        append_escaped(out, params[i]);
        cm_buf_puts(out, "=");
        append_escaped(out, params[i + 1]);
    }
}

void cm_httpc_log_url(struct cm_buf *out, const char *url)
{
    const char *p = url, *scheme_end = strstr(url, "://"), *auth, *auth_end, *at, *end;

    if (scheme_end != NULL && memchr(url, '?', (size_t)(scheme_end - url)) == NULL &&
        memchr(url, '#', (size_t)(scheme_end - url)) == NULL &&
        memchr(url, '/', (size_t)(scheme_end - url)) == NULL) {
        cm_buf_append(out, url, (size_t)(scheme_end - url) + 3);
        auth = scheme_end + 3;
        auth_end = auth + strcspn(auth, "/?#");
        /* Drop user:password@ (the last '@' of the authority ends it). */
        at = NULL;
        for (const char *q = auth; q < auth_end; q++) {
            if (*q == '@')
                at = q;
        }
        if (at != NULL)
            auth = at + 1;
        cm_buf_append(out, auth, (size_t)(auth_end - auth));
        p = auth_end;
    }
    end = p + strcspn(p, "?#");
    cm_buf_append(out, p, (size_t)(end - p));
    if (out->data == NULL)
        cm_buf_puts(out, "");
}
