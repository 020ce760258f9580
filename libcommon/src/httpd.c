/*
 * httpd.c - evhttp with the three standard routes (see httpd.h).
 */
#include "common/httpd.h"
#include "common/log.h"
#include "common/metrics.h"

#include <event2/buffer.h>
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

struct route {
    char *path;
    cm_httpd_fn fn;
    void *arg;
};

struct cm_httpd {
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct cm_metrics *metrics;
    cm_httpd_ready_fn ready;
    void *ready_arg;
    struct route routes[MAX_ROUTES];
    int nroutes;
    int port;
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
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "";
    }
}

static void count_reply(struct cm_httpd *h, int code)
{
    char labels[32];

    if (h == NULL || h->metrics == NULL)
        return;
    snprintf(labels, sizeof(labels), "code=\"%d\"", code);
    cm_metrics_inc(cm_metrics_counter(h->metrics, "http_responses_total", labels,
                                      "HTTP responses sent, by status code"),
                   1);
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

int cm_httpd_create(struct cm_httpd **out, struct event_base *base, const char *listen,
                    size_t max_body, struct cm_metrics *metrics, unsigned flags)
{
    struct cm_httpd *h = cm_xcalloc(1, sizeof(*h));
    char host[256];
    int port;

    if (split_listen(listen, host, sizeof(host), &port) != CM_OK) {
        CM_ERROR("http: cannot parse listen address %s", listen);
        free(h);
        return CM_INVALID;
    }
    h->metrics = metrics;
    h->http = evhttp_new(base);
    if (h->http == NULL)
        abort(); /* allocation only */
    evhttp_set_max_body_size(h->http, max_body ? (ev_ssize_t)max_body : 1024 * 1024);
    evhttp_set_max_headers_size(h->http, 64 * 1024);
    evhttp_set_timeout(h->http, 30);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(h->http, on_request, h);
    h->bound = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (h->bound == NULL) {
        CM_ERROR("http: cannot listen on %s: %s", listen,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        evhttp_free(h->http);
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
    if (!(flags & CM_HTTPD_PUBLIC))
        cm_httpd_route(h, "/metrics", on_metrics, h);
    *out = h;
    return CM_OK;
}

void cm_httpd_destroy(struct cm_httpd *h)
{
    if (h == NULL)
        return;
    evhttp_free(h->http);
    for (int i = 0; i < h->nroutes; i++)
        free(h->routes[i].path);
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

int cm_httpd_port(struct cm_httpd *h)
{
    return h->port;
}
