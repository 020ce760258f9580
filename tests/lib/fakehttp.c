/*
 * fakehttp.c - the scriptable test HTTP server (see fakehttp.h).
 *
 * Threads: the loop thread owns every libevent object; the test thread only touches the
 * record list (under the lock) and, to stop, activates an event (the base is created with
 * pthread locking) and joins. Teardown happens after the join, when nothing else runs.
 */
#include "fakehttp.h"

#include <arpa/inet.h>
#include <sys/queue.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* An answer waiting for its delay, on the loop thread's list until it is sent. */
struct pending {
    struct fakehttp *srv;
    struct evhttp_request *req;
    struct event *timer;
    struct fakehttp_response resp;
    struct pending *prev, *next;
};

struct fakehttp {
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    pthread_t thread;
    fakehttp_fn handler;
    void *arg;
    int port;
    char url[64];
    struct pending *pending; /* loop thread only */

    pthread_mutex_t lock; /* guards what follows */
    struct fakehttp_request **reqs;
    int nreqs;
    int seq;
};

/* --- records --------------------------------------------------------------------------- */

static void free_headers(struct fakehttp_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void free_record(struct fakehttp_request *r)
{
    if (r == NULL)
        return;
    free(r->method);
    free(r->uri);
    free(r->path);
    free(r->query);
    free_headers(r->headers, r->nheaders);
    free(r->body);
    free(r);
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "?";
    }
}

/* Copies everything of an incoming request the tests may look at. */
static struct fakehttp_request *make_record(struct fakehttp *srv, struct evhttp_request *ereq)
{
    struct fakehttp_request *r = cm_xcalloc(1, sizeof(*r));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ereq);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq *in = evhttp_request_get_input_headers(ereq);
    struct evbuffer *body = evhttp_request_get_input_buffer(ereq);
    struct evkeyval *kv;
    struct timespec now;
    size_t n = 0;

    clock_gettime(CLOCK_MONOTONIC, &now);
    r->at_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    r->method = cm_xstrdup(method_name(evhttp_request_get_command(ereq)));
    r->uri = cm_xstrdup(evhttp_request_get_uri(ereq));
    r->path = cm_xstrdup(path != NULL ? path : "");
    r->query = cm_xstrdup(query != NULL ? query : "");
    for (kv = TAILQ_FIRST(in); kv != NULL; kv = TAILQ_NEXT(kv, next))
        n++;
    r->headers = cm_xcalloc(n ? n : 1, sizeof(*r->headers));
    for (kv = TAILQ_FIRST(in); kv != NULL; kv = TAILQ_NEXT(kv, next)) {
        r->headers[r->nheaders].name = cm_xstrdup(kv->key);
        r->headers[r->nheaders].value = cm_xstrdup(kv->value);
        r->nheaders++;
    }
    r->body_len = evbuffer_get_length(body);
    r->body = cm_xmalloc(r->body_len + 1);
    evbuffer_copyout(body, r->body, r->body_len);
    r->body[r->body_len] = '\0';

    pthread_mutex_lock(&srv->lock);
    r->seq = srv->seq++;
    pthread_mutex_unlock(&srv->lock);
    return r;
}

static void add_record(struct fakehttp *srv, struct fakehttp_request *r)
{
    pthread_mutex_lock(&srv->lock);
    srv->reqs = cm_xrealloc(srv->reqs, (size_t)(srv->nreqs + 1) * sizeof(*srv->reqs));
    srv->reqs[srv->nreqs++] = r;
    pthread_mutex_unlock(&srv->lock);
}

int fakehttp_count(struct fakehttp *srv)
{
    int n;

    pthread_mutex_lock(&srv->lock);
    n = srv->nreqs;
    pthread_mutex_unlock(&srv->lock);
    return n;
}

const struct fakehttp_request *fakehttp_get(struct fakehttp *srv, int i)
{
    const struct fakehttp_request *r = NULL;

    pthread_mutex_lock(&srv->lock);
    if (i >= 0 && i < srv->nreqs)
        r = srv->reqs[i];
    pthread_mutex_unlock(&srv->lock);
    return r;
}

const struct fakehttp_request *fakehttp_find(struct fakehttp *srv, const char *path)
{
    const struct fakehttp_request *r = NULL;

    pthread_mutex_lock(&srv->lock);
    for (int i = srv->nreqs - 1; i >= 0 && r == NULL; i--) {
        if (strcmp(srv->reqs[i]->path, path) == 0)
            r = srv->reqs[i];
    }
    pthread_mutex_unlock(&srv->lock);
    return r;
}

void fakehttp_clear(struct fakehttp *srv)
{
    pthread_mutex_lock(&srv->lock);
    for (int i = 0; i < srv->nreqs; i++)
        free_record(srv->reqs[i]);
    free(srv->reqs);
    srv->reqs = NULL;
    srv->nreqs = 0;
    srv->seq = 0;
    pthread_mutex_unlock(&srv->lock);
}

const char *fakehttp_header(const struct fakehttp_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

char *fakehttp_query_param(const struct fakehttp_request *req, const char *name)
{
    struct evkeyvalq q;
    const char *v;
    char *out = NULL;

    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(req->query, &q) == 0 && (v = evhttp_find_header(&q, name)))
        out = cm_xstrdup(v);
    evhttp_clear_headers(&q);
    return out;
}

/* --- answers --------------------------------------------------------------------------- */

void fakehttp_set_header(struct fakehttp_response *resp, const char *name, const char *value)
{
    resp->headers = cm_xrealloc(resp->headers, (resp->nheaders + 1) * sizeof(*resp->headers));
    resp->headers[resp->nheaders].name = cm_xstrdup(name);
    resp->headers[resp->nheaders].value = cm_xstrdup(value);
    resp->nheaders++;
}

void fakehttp_reply(struct fakehttp_response *resp, int status, const void *data, size_t len)
{
    resp->status = status;
    cm_buf_reset(&resp->body);
    cm_buf_append(&resp->body, data, len);
}

void fakehttp_json(struct fakehttp_response *resp, int status, const char *json)
{
    fakehttp_set_header(resp, "Content-Type", "application/json; charset=UTF-8");
    fakehttp_reply(resp, status, json, strlen(json));
}

void fakehttp_meta_error(struct fakehttp_response *resp, int http_status, int code, int subcode,
                         const char *message)
{
    struct cm_buf b;

    cm_buf_init(&b);
    cm_buf_puts(&b, "{\"error\":{\"message\":\"");
    cm_buf_json_escape(&b, message, strlen(message));
    cm_buf_printf(&b, "\",\"type\":\"OAuthException\",\"code\":%d", code);
    if (subcode != 0)
        cm_buf_printf(&b, ",\"error_subcode\":%d", subcode);
    cm_buf_printf(&b, ",\"fbtrace_id\":\"AFakeTrace%d\"}}", code);
    /* Graph sends these along with every error; the client must ignore them. */
    fakehttp_set_header(resp, "WWW-Authenticate", "OAuth \"Facebook Platform\"");
    fakehttp_json(resp, http_status, b.data);
    cm_buf_cleanup(&b);
}

static void response_init(struct fakehttp_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->status = 200;
    cm_buf_init(&resp->body);
}

static void response_cleanup(struct fakehttp_response *resp)
{
    free_headers(resp->headers, resp->nheaders);
    cm_buf_cleanup(&resp->body);
}

/* Sends p's answer, or closes its connection; either way the request is gone afterwards. */
static void answer(struct pending *p)
{
    struct evhttp_request *req = p->req;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evbuffer *chunk;

    if (p->resp.close) {
        /* Freeing the connection frees its request; a detached request is ours to free. */
        if (evcon != NULL)
            evhttp_connection_free(evcon);
        else
            evhttp_request_free(req);
        return;
    }
    for (size_t i = 0; i < p->resp.nheaders; i++)
        evhttp_add_header(out, p->resp.headers[i].name, p->resp.headers[i].value);
    if (!p->resp.chunked) {
        evbuffer_add(evhttp_request_get_output_buffer(req), p->resp.body.data, p->resp.body.len);
        evhttp_send_reply(req, p->resp.status, NULL, NULL);
        return;
    }
    evhttp_send_reply_start(req, p->resp.status, NULL);
    chunk = evbuffer_new();
    evbuffer_add(chunk, p->resp.body.data, p->resp.body.len);
    evhttp_send_reply_chunk(req, chunk);
    evbuffer_free(chunk);
    evhttp_send_reply_end(req);
}

static void unlink_pending(struct pending *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        p->srv->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
}

static void free_pending(struct pending *p)
{
    if (p->timer != NULL)
        event_free(p->timer);
    response_cleanup(&p->resp);
    free(p);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;

    (void)fd;
    (void)what;
    unlink_pending(p);
    answer(p);
    free_pending(p);
}

static void on_request(struct evhttp_request *ereq, void *arg)
{
    struct fakehttp *srv = arg;
    struct fakehttp_request *rec = make_record(srv, ereq);
    struct pending *p = cm_xcalloc(1, sizeof(*p));
    struct timeval tv;

    p->srv = srv;
    p->req = ereq;
    response_init(&p->resp);
    if (srv->handler != NULL)
        srv->handler(rec, &p->resp, srv->arg);
    /* Recorded before the answer leaves, so a client that got it finds its request. */
    add_record(srv, rec);

    /* A close goes through the timer too: never free the connection inside its callback. */
    if (p->resp.delay_ms <= 0 && !p->resp.close) {
        answer(p);
        free_pending(p);
        return;
    }
    tv.tv_sec = p->resp.delay_ms > 0 ? p->resp.delay_ms / 1000 : 0;
    tv.tv_usec = p->resp.delay_ms > 0 ? (p->resp.delay_ms % 1000) * 1000 : 0;
    p->timer = evtimer_new(srv->base, on_timer, p);
    p->next = srv->pending;
    if (p->next != NULL)
        p->next->prev = p;
    srv->pending = p;
    evtimer_add(p->timer, &tv);
}

/* --- server lifecycle ------------------------------------------------------------------ */

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct fakehttp *srv = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(srv->base);
}

static void *serve(void *arg)
{
    struct fakehttp *srv = arg;

    event_base_dispatch(srv->base);
    return NULL;
}

/* Frees everything but the thread (not started, or joined). */
static void destroy(struct fakehttp *srv)
{
    struct pending *p, *next;

    for (p = srv->pending; p != NULL; p = next) {
        next = p->next;
        /* Attached requests go with their connections in evhttp_free(); detached are ours. */
        if (evhttp_request_get_connection(p->req) == NULL)
            evhttp_request_free(p->req);
        free_pending(p);
    }
    if (srv->http != NULL)
        evhttp_free(srv->http);
    if (srv->stop_ev != NULL)
        event_free(srv->stop_ev);
    if (srv->base != NULL)
        event_base_free(srv->base);
    fakehttp_clear(srv);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

int fakehttp_start(struct fakehttp **out, fakehttp_fn handler, void *arg)
{
    return fakehttp_start_at(out, 0, handler, arg);
}

int fakehttp_start_at(struct fakehttp **out, int port, fakehttp_fn handler, void *arg)
{
    struct fakehttp *srv = cm_xcalloc(1, sizeof(*srv));
    struct evhttp_bound_socket *bound;
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);

    *out = NULL;
    /* A delayed answer may be written to a client that has gone: EPIPE, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&srv->lock, NULL);
    srv->handler = handler;
    srv->arg = arg;
    /* Lets the test thread activate stop_ev safely; harmless when already done. */
    if (evthread_use_pthreads() != 0 || (srv->base = event_base_new()) == NULL) {
        fprintf(stderr, "fakehttp: cannot create an event base\n");
        goto err;
    }
    srv->http = evhttp_new(srv->base);
    srv->stop_ev = event_new(srv->base, -1, 0, on_stop, srv);
    if (srv->http == NULL || srv->stop_ev == NULL)
        goto err;
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(srv->http, on_request, srv);
    bound = evhttp_bind_socket_with_handle(srv->http, "127.0.0.1", (ev_uint16_t)port);
    /* Inherited by every accepted connection: an answer's headers and body leave at once,
     * not 40 ms apart (Nagle against the client's delayed ACK on a kept-alive connection). */
    if (bound != NULL) {
        int one = 1;
        (void)setsockopt(evhttp_bound_socket_get_fd(bound), IPPROTO_TCP, TCP_NODELAY, &one,
                         sizeof(one));
    }
    if (bound == NULL ||
        getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sa, &len) != 0) {
        fprintf(stderr, "fakehttp: cannot bind 127.0.0.1\n");
        goto err;
    }
    srv->port = ntohs(sa.sin_port);
    snprintf(srv->url, sizeof(srv->url), "http://127.0.0.1:%d", srv->port);
    if (pthread_create(&srv->thread, NULL, serve, srv) != 0) {
        fprintf(stderr, "fakehttp: cannot start the server thread\n");
        goto err;
    }
    *out = srv;
    return 0;

err:
    destroy(srv);
    return -1;
}

void fakehttp_stop(struct fakehttp *srv)
{
    if (srv == NULL)
        return;
    /* An activation is kept until the loop runs it, even if the loop has not started yet. */
    event_active(srv->stop_ev, EV_READ, 0);
    pthread_join(srv->thread, NULL);
    destroy(srv);
}

const char *fakehttp_url(const struct fakehttp *srv)
{
    return srv->url;
}

int fakehttp_port(const struct fakehttp *srv)
{
    return srv->port;
}
