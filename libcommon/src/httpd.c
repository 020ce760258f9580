/*
 * httpd.c - evhttp with the three standard routes (see httpd.h).
 *
 * On a server with a connection cap, a read deadline or TLS, every accepted connection gets a
 * bufferevent of ours (evhttp_set_bevcb): a socket one, or an OpenSSL one for HTTPS, of which
 * we keep a reference. libevent 2.1 says nothing when evhttp lets a connection go, but it
 * clears the bufferevent's callbacks then, and that is what the janitor (a sweep at each
 * accept and every JANITOR_MS) looks for: it drops our reference, which closes the socket,
 * and the connection stops counting against the cap. (A filter bufferevent's free callback
 * would say it at once, but 2.1's filter reports a reply written before it reaches the
 * socket, and evhttp then shuts a closing connection down on the unsent reply.)
 *
 * Each connection's read deadline is a timer armed at accept (and again after each reply,
 * for the next request on a kept-alive connection) and disarmed when a whole request has
 * been read. When it fires, or when the connection is over the cap, the socket is shut
 * down under evhttp, which then sees the end of the stream and frees the connection
 * itself: evhttp stays the only owner of what it created.
 */
#include "common/httpd.h"
#include "common/log.h"
#include "common/metrics.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ROUTES 16
#define JANITOR_MS 250

struct route {
    char *path;
    cm_httpd_fn fn;
    void *arg;
};

/* One accepted connection (see the top of the file). */
struct conn {
    struct cm_httpd *h;
    struct bufferevent *bev; /* evhttp's, and one reference of ours */
    struct event *deadline;
    bool counted; /* within the cap, so counted in nconns */
    int slot;     /* its index in h->by_fd (its socket when first found), or -1 */
    LIST_ENTRY(conn) link;
};

struct cm_httpd {
    struct evhttp *http;
    struct event_base *base;
    struct cm_httpd_opts opts;
    LIST_HEAD(, conn) conns;
    int nconns; /* counted connections open */
    struct event *janitor;
    struct evhttp_bound_socket *bound;
    struct cm_metrics *metrics;
    cm_httpd_ready_fn ready;
    void *ready_arg;
    struct route routes[MAX_ROUTES];
    int nroutes;
    int port;
    /* Found in O(1) for each request: a connection by its socket (a hint, checked against
     * the bufferevent: an fd is reused only once our reference is dropped), and the series
     * of each status code, so that neither is a walk of every connection or series. */
    struct conn **by_fd;
    int nby_fd;
    struct cm_metric *replies[600];
};

static const char *status_reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "";
    }
}

/* The connection a request arrived on, or NULL (gone, or not one of ours). */
static struct conn *find_conn(struct cm_httpd *h, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    struct conn *c;

    if (bev == NULL)
        return NULL;
    if (fd >= 0 && fd < h->nby_fd && h->by_fd[fd] != NULL && h->by_fd[fd]->bev == bev)
        return h->by_fd[fd];
    /* The connection's first request: a list walk, remembered by its socket. */
    LIST_FOREACH(c, &h->conns, link)
    {
        if (c->bev == bev)
            break;
    }
    if (c != NULL && fd >= 0) {
        if (fd >= h->nby_fd) {
            int n = h->nby_fd ? h->nby_fd : 64;
            while (n <= fd)
                n *= 2;
            h->by_fd = cm_xrealloc(h->by_fd, (size_t)n * sizeof(*h->by_fd));
            memset(h->by_fd + h->nby_fd, 0, (size_t)(n - h->nby_fd) * sizeof(*h->by_fd));
            h->nby_fd = n;
        }
        if (c->slot >= 0 && h->by_fd[c->slot] == c)
            h->by_fd[c->slot] = NULL;
        h->by_fd[fd] = c;
        c->slot = fd;
    }
    return c;
}

/* True while evhttp holds the connection: it clears the callbacks when it lets go. */
static bool conn_alive(const struct conn *c)
{
    bufferevent_event_cb eventcb = NULL;

    bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
    return eventcb != NULL;
}

/* Ends the connection under evhttp: it reads the end of the stream and frees it. */
static void cut(struct conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (!conn_alive(c))
        return; /* gone already; the janitor frees it */
    if (c->counted) {
        CM_DEBUG("http: a request was not read within %ds; connection closed",
                 c->h->opts.read_timeout_s);
        if (c->h->metrics != NULL)
            cm_metrics_inc(cm_metrics_counter(c->h->metrics, "http_read_deadline_closed_total",
                                              NULL,
                                              "Connections closed because a request was not "
                                              "read by its deadline"),
                           1);
    }
    cut(c);
}

static void arm_deadline(struct conn *c)
{
    struct timeval tv = {0, 0};

    if (c == NULL || c->deadline == NULL)
        return;
    tv.tv_sec = c->h->opts.read_timeout_s;
    event_add(c->deadline, &tv);
}

/* Drops a connection evhttp has let go: our reference was the last, so the socket closes. */
static void conn_free(struct conn *c)
{
    if (c->slot >= 0 && c->h->by_fd[c->slot] == c)
        c->h->by_fd[c->slot] = NULL;
    if (c->counted)
        c->h->nconns--;
    LIST_REMOVE(c, link);
    if (c->deadline != NULL)
        event_free(c->deadline);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_decref(c->bev);
    free(c);
}

static void sweep(struct cm_httpd *h)
{
    struct conn *c, *next;

    for (c = LIST_FIRST(&h->conns); c != NULL; c = next) {
        next = LIST_NEXT(c, link);
        if (!conn_alive(c))
            conn_free(c);
    }
}

static void on_janitor(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sweep(arg);
}

/* evhttp's bevcb: the bufferevent of a connection just accepted (its socket is set later,
 * by evhttp, before the loop runs again). */
static struct bufferevent *new_conn(struct event_base *base, void *arg)
{
    struct cm_httpd *h = arg;
    struct conn *c = cm_xcalloc(1, sizeof(*c));
    struct timeval now = {0, 0};

    c->h = h;
    c->slot = -1;
    if (h->opts.tls != NULL) {
        SSL *ssl = SSL_new(h->opts.tls);
        if (ssl == NULL)
            abort(); /* allocation only */
        c->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL)
        abort(); /* allocation only */
    /* Ours until the janitor sees evhttp let go; the last reference closes the socket. */
    bufferevent_incref(c->bev);
    sweep(h); /* the cap counts the connections still open, now */
    LIST_INSERT_HEAD(&h->conns, c, link);
    c->counted = h->opts.max_connections <= 0 || h->nconns < h->opts.max_connections;
    if (c->counted)
        h->nconns++;
    if (!c->counted || h->opts.read_timeout_s > 0)
        c->deadline = evtimer_new(base, on_deadline, c);
    if (!c->counted) {
        /* Over the cap: closed as soon as evhttp has given it its socket, unread. */
        if (h->metrics != NULL)
            cm_metrics_inc(cm_metrics_counter(h->metrics, "http_connections_refused_total", NULL,
                                              "Connections closed at once: over the cap"),
                           1);
        event_add(c->deadline, &now);
    } else {
        arm_deadline(c);
    }
    return c->bev;
}

static void count_reply(struct cm_httpd *h, int code)
{
    char labels[32];
    struct cm_metric *series;

    if (h == NULL || h->metrics == NULL)
        return;
    series = code >= 0 && code < 600 ? h->replies[code] : NULL;
    if (series == NULL) {
        snprintf(labels, sizeof(labels), "code=\"%d\"", code);
        series = cm_metrics_counter(h->metrics, "http_responses_total", labels,
                                    "HTTP responses sent, by status code");
        if (code >= 0 && code < 600)
            h->replies[code] = series;
    }
    cm_metrics_inc(series, 1);
}

void cm_httpd_reply(struct cm_httpd *h, struct evhttp_request *req, int code,
                    const char *content_type, const void *body, size_t len)
{
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);

    if (content_type != NULL)
        evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    if (out != NULL && len > 0)
        evbuffer_add(out, body, len);
    evhttp_send_reply(req, code, status_reason(code), out);
    if (out != NULL)
        evbuffer_free(out);
    count_reply(h, code);
    /* The next request on this connection, if it is kept alive, has its own deadline. */
    if (h != NULL)
        arm_deadline(find_conn(h, req));
}

void cm_httpd_reply_json(struct cm_httpd *h, struct evhttp_request *req, int code, const char *json)
{
    cm_httpd_reply(h, req, code, "application/json", json, strlen(json));
}

void cm_httpd_reply_error(struct cm_httpd *h, struct evhttp_request *req, int code,
                          const char *message)
{
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_puts(&b, "{\"error\":\"");
    cm_buf_json_escape(&b, message, strlen(message));
    cm_buf_puts(&b, "\"}");
    cm_httpd_reply_json(h, req, code, b.data);
    cm_buf_cleanup(&b);
}

void cm_httpd_body(struct evhttp_request *req, struct cm_buf *b)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);

    cm_buf_reset(b);
    cm_buf_reserve(b, len);
    if (len > 0)
        evbuffer_copyout(in, b->data, len);
    b->len = len;
    b->data[len] = '\0';
}

char *cm_httpd_query(struct evhttp_request *req, const char *name)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq params;
    const char *v;
    char *copy = NULL;

    if (query == NULL)
        return NULL;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(query, &params) != 0)
        return NULL;
    v = evhttp_find_header(&params, name);
    if (v != NULL)
        copy = cm_xstrdup(v);
    evhttp_clear_headers(&params);
    return copy;
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
    cm_httpd_reply_json(arg, req, 200, "{\"status\":\"ok\"}");
}

static void on_readyz(struct evhttp_request *req, void *arg)
{
    struct cm_httpd *h = arg;
    struct cm_buf why, body;
    bool ready;

    cm_buf_init(&why);
    cm_buf_init(&body);
    ready = h->ready == NULL || h->ready(h->ready_arg, &why);
    cm_buf_printf(&body, "{\"ready\":%s%s%s}", ready ? "true" : "false", why.len ? "," : "",
                  why.len ? why.data : "");
    cm_httpd_reply_json(h, req, ready ? 200 : 503, body.data);
    cm_buf_cleanup(&why);
    cm_buf_cleanup(&body);
}

/* Resident set size in bytes, from /proc/self/statm; 0 when unknown. */
static double resident_bytes(void)
{
    long pages_total = 0, pages_rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages_total, &pages_rss) != 2)
        pages_rss = 0;
    fclose(f);
    return (double)pages_rss * (double)sysconf(_SC_PAGESIZE);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct cm_httpd *h = arg;
    struct cm_buf body;

    cm_buf_init(&body);
    if (h->metrics != NULL) {
        cm_metrics_set(cm_metrics_gauge(h->metrics, "process_resident_memory_bytes", NULL,
                                        "Resident memory size in bytes"),
                       resident_bytes());
        cm_metrics_render(h->metrics, &body);
    }
    cm_httpd_reply(h, req, 200, "text/plain; version=0.0.4", body.data, body.len);
    cm_buf_cleanup(&body);
}

/* Dispatches by exact path, ignoring the query string. */
static void on_request(struct evhttp_request *req, void *arg)
{
    struct cm_httpd *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct conn *c = find_conn(h, req);

    /* The whole request is read: the deadline is met; the handler's own time is its own. */
    if (c != NULL && c->deadline != NULL && c->counted)
        event_del(c->deadline);
    for (int i = 0; path != NULL && i < h->nroutes; i++) {
        if (strcmp(path, h->routes[i].path) == 0) {
            h->routes[i].fn(req, h->routes[i].arg);
            return;
        }
    }
    cm_httpd_reply_error(h, req, 404, "no such route");
}

static int split_listen(const char *listen, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(listen, ':');

    if (colon == NULL)
        return CM_INVALID;
    if (colon == listen) {
        snprintf(host, cap, "0.0.0.0");
    } else {
        size_t n = (size_t)(colon - listen);
        /* Accept [::1]:8080 as well as 127.0.0.1:8080. */
        if (listen[0] == '[' && colon[-1] == ']')
            snprintf(host, cap, "%.*s", (int)(n - 2), listen + 1);
        else
            snprintf(host, cap, "%.*s", (int)n, listen);
    }
    *port = atoi(colon + 1);
    return *port >= 0 && *port < 65536 ? CM_OK : CM_INVALID;
}

int cm_httpd_tls_create(struct ssl_ctx_st **out, const char *cert_file, const char *key_file,
                        char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = NULL, *file = NULL;
    char reason[256];

    if (ctx == NULL)
        abort(); /* allocation only */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        what = "cannot require TLS 1.2";
    } else if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        what = "cannot load the certificate";
        file = cert_file;
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        what = "cannot load the private key";
        file = key_file;
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        what = "the private key does not match the certificate";
        file = key_file;
    }
    if (what != NULL) {
        ERR_error_string_n(ERR_peek_last_error(), reason, sizeof(reason));
        snprintf(err, errlen, "%s%s%s: %s", what, file ? " " : "", file ? file : "", reason);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return CM_INVALID;
    }
    /* Connections are short and many: no session cache to grow, nothing to resume. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    *out = ctx;
    return CM_OK;
}

void cm_httpd_tls_destroy(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

int cm_httpd_create(struct cm_httpd **out, struct event_base *base, const char *listen,
                    struct cm_metrics *metrics, const struct cm_httpd_opts *opts)
{
    struct cm_httpd *h = cm_xcalloc(1, sizeof(*h));
    char host[256];
    int port;

    if (split_listen(listen, host, sizeof(host), &port) != CM_OK) {
        CM_ERROR("http: cannot parse listen address %s", listen);
        free(h);
        return CM_INVALID;
    }
    if (opts != NULL)
        h->opts = *opts;
    LIST_INIT(&h->conns);
    h->base = base;
    h->metrics = metrics;
    h->http = evhttp_new(base);
    if (h->http == NULL)
        abort(); /* allocation only */
    evhttp_set_max_body_size(h->http,
                             h->opts.max_body ? (ev_ssize_t)h->opts.max_body : 1024 * 1024);
    evhttp_set_max_headers_size(h->http, 64 * 1024);
    evhttp_set_timeout(h->http, 30);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(h->http, on_request, h);
    if (h->opts.tls != NULL || h->opts.max_connections > 0 || h->opts.read_timeout_s > 0) {
        struct timeval every = {0, JANITOR_MS * 1000};
        evhttp_set_bevcb(h->http, new_conn, h);
        h->janitor = event_new(base, -1, EV_PERSIST, on_janitor, h);
        if (h->janitor == NULL)
            abort(); /* allocation only */
        event_add(h->janitor, &every);
    }
    h->bound = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (h->bound == NULL) {
        CM_ERROR("http: cannot listen on %s: %s", listen,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        evhttp_free(h->http);
        if (h->janitor != NULL)
            event_free(h->janitor);
        free(h);
        return CM_INVALID;
    }
    {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        evutil_socket_t fd = evhttp_bound_socket_get_fd(h->bound);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    }
    cm_httpd_route(h, "/healthz", on_healthz, h);
    cm_httpd_route(h, "/readyz", on_readyz, h);
    if (!(h->opts.flags & CM_HTTPD_PUBLIC))
        cm_httpd_route(h, "/metrics", on_metrics, h);
    *out = h;
    return CM_OK;
}

void cm_httpd_destroy(struct cm_httpd *h)
{
    if (h == NULL)
        return;
    evhttp_free(h->http);
    sweep(h); /* every connection is let go now */
    if (h->janitor != NULL)
        event_free(h->janitor);
    for (int i = 0; i < h->nroutes; i++)
        free(h->routes[i].path);
    free(h->by_fd);
    free(h);
}

void cm_httpd_set_ready(struct cm_httpd *h, cm_httpd_ready_fn fn, void *arg)
{
    h->ready = fn;
    h->ready_arg = arg;
}

void cm_httpd_route(struct cm_httpd *h, const char *path, cm_httpd_fn fn, void *arg)
{
    if (h->nroutes == MAX_ROUTES)
        abort(); /* a programming error, caught by the first test run */
    h->routes[h->nroutes].path = cm_xstrdup(path);
    h->routes[h->nroutes].fn = fn;
    h->routes[h->nroutes].arg = arg;
    h->nroutes++;
}

void cm_httpd_close(struct cm_httpd *h)
{
    if (h != NULL && h->bound != NULL) {
        evhttp_del_accept_socket(h->http, h->bound);
        h->bound = NULL;
    }
}

bool cm_httpd_is_tls(const struct cm_httpd *h)
{
    return h->opts.tls != NULL;
}

int cm_httpd_port(struct cm_httpd *h)
{
    return h->port;
}
