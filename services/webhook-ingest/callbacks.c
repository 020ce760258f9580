/*
 * callbacks.c - Meta's data-deletion and deauthorize callbacks, and the deletion status page
 * whose URL the data-deletion answer gives to Meta (docs/retention.md, proto/reaper.md).
 *
 * Both callbacks carry a signed_request form field, verified with the app secret (and the
 * previous one during a rotation); anything that does not verify is answered 400 and
 * nothing is recorded. The work itself belongs to other services: retention-reaper records
 * the deletion request (before its code is answered) and runs it; token-vault revokes the
 * user's tokens (before the 200). Those requests run on ask.c's workers, never on the loop;
 * when the service does not answer, Meta is told 503 and retries.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <sys/queue.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ask.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/metrics.h"
#include "ingest.h"
#include "signed_request.h"
#include "status_page.h"

#define DELETE_PATH "/api/v1/integrations/instagram/data-delete"
#define STATUS_PATH "/api/v1/integrations/instagram/data-delete/status"
#define DEAUTH_PATH "/api/v1/integrations/instagram/deauthorize"

/*
 * The status page is public: anyone may ask for it, as often as they like. What it costs
 * is bounded twice, so that Meta's signed callbacks never wait behind it: a token bucket
 * (STATUS_RATE a second, bursts of STATUS_BURST), and at most INGEST_STATUS_QUEUE requests
 * waiting for the reaper on the status page's own lane (ask.h). Past either, 429 at once,
 * with Retry-After.
 */
#define STATUS_RATE        20.0
#define STATUS_BURST       40.0
#define STATUS_RETRY_AFTER "1"

/* The page embeds nothing from elsewhere, and this says so to the browser as well. */
#define PAGE_CSP                                                                                   \
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none';"          \
    " frame-ancestors 'none'"

/* One HTTP request waiting for another service. */
struct waiting {
    struct evhttp_request *req;
    char rid[17];
    bool json; /* status page: the client asked for JSON */
};

static struct waiting *waiting_new(struct evhttp_request *req)
{
    struct waiting *w = cm_xcalloc(1, sizeof(*w));
    unsigned char raw[8];

    w->req = req;
    cm_crypto_random(raw, sizeof(raw));
    cm_hex_encode(raw, sizeof(raw), w->rid);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", w->rid);
    return w;
}

static void refuse(struct ingest *ing, struct evhttp_request *req, const char *reason,
                   const char *message)
{
    char labels[48];

    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    cm_metrics_inc(cm_metrics_counter(ing->svc.metrics, "ingest_callbacks_refused_total", labels,
                                      "Meta callbacks answered 400, by reason"),
                   1);
    CM_INFO("callback refused (400): %s", message);
    cm_httpd_reply_error(ing->svc.public_httpd, req, 400, message);
}

/*
 * Reads and verifies the signed_request form field of a callback POST. On failure answers
 * 400 (or 405/503) itself and returns false.
 */
static bool verified(struct ingest *ing, struct evhttp_request *req, struct signed_request *sr)
{
    struct evkeyvalq form;
    struct cm_buf body;
    const char *field, *why = NULL;
    int rc;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        cm_httpd_reply_error(ing->svc.public_httpd, req, 405, "use POST");
        return false;
    }
    if (ing->draining) {
        cm_httpd_reply_error(ing->svc.public_httpd, req, 503, "shutting down; retry later");
        return false;
    }
    cm_buf_init(&body);
    cm_httpd_body(req, &body);
    TAILQ_INIT(&form);
    /* A NUL inside the body would cut the form short of what was signed: refuse it. */
    if (body.len == 0 || strlen(body.data) != body.len ||
        evhttp_parse_query_str(body.data, &form) != 0) {
        cm_buf_cleanup(&body);
        evhttp_clear_headers(&form);
        refuse(ing, req, "malformed", "the body must be a form with a signed_request field");
        return false;
    }
    cm_buf_cleanup(&body);
    field = evhttp_find_header(&form, "signed_request");
    rc = ingest_signed_request_parse(field, field ? strlen(field) : 0, ing->cfg->app_secret,
                                     ing->cfg->app_secret_previous, (int64_t)time(NULL), sr, &why);
    evhttp_clear_headers(&form);
    if (rc == CM_DENIED) {
        cm_metrics_inc(ing->m_bad_signature, 1);
        refuse(ing, req, "signature", "signed_request: the signature does not match");
        return false;
    }
    if (rc != CM_OK) {
        char message[160];
        snprintf(message, sizeof(message), "signed_request: %s", why ? why : "malformed");
        refuse(ing, req, "malformed", message);
        return false;
    }
    return true;
}

/* --- data-delete ----------------------------------------------------------------------- */

static void deletion_answered(struct ingest *ing, void *arg, const struct ingest_answer *a)
{
    struct waiting *w = arg;
    const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(a->result, "confirmation_code"));
    const char *base = ing->cfg->public_base_url;
    size_t base_len = strlen(base);
    cJSON *out;
    char *text, *url;

    if (a->rc == CM_INVALID) {
        refuse(ing, w->req, "malformed", a->message);
    } else if (a->rc != CM_OK || code == NULL) {
        /* Not recorded, so no code: Meta retries a 5xx, and the retry gets one. */
        CM_WARN_ID(w->rid, "data-delete: not recorded (%s); answered 503", a->message);
        cm_httpd_reply_error(ing->svc.public_httpd, w->req, 503,
                             "the deletion request could not be recorded; retry later");
    } else {
        while (base_len > 0 && base[base_len - 1] == '/')
            base_len--;
        url = cm_xasprintf("%.*s%s?code=%s", (int)base_len, base, STATUS_PATH, code);
        out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "url", url);
        cJSON_AddStringToObject(out, "confirmation_code", code);
        text = cJSON_PrintUnformatted(out);
        cm_httpd_reply_json(ing->svc.public_httpd, w->req, 200, text);
        CM_INFO_ID(w->rid, "data-delete: request recorded, code issued");
        cJSON_free(text);
        cJSON_Delete(out);
        free(url);
    }
    free(w);
}

static void on_data_delete(struct evhttp_request *req, void *arg)
{
    struct ingest *ing = arg;
    struct signed_request sr;
    cJSON *body;
    char *text;

    if (!verified(ing, req, &sr))
        return;
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "actor", "meta");
    cJSON_AddStringToObject(body, "user_id", sr.user_id);
    if (sr.issued_at > 0)
        cJSON_AddNumberToObject(body, "issued_at", (double)sr.issued_at);
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    ingest_ask(ing, INGEST_LANE_CALLBACK, "reaper.deletion.request", text, deletion_answered,
               waiting_new(req));
}

/* --- deauthorize ----------------------------------------------------------------------- */

static void deauthorize_answered(struct ingest *ing, void *arg, const struct ingest_answer *a)
{
    struct waiting *w = arg;
    char body[96];

    if (a->rc == CM_INVALID) {
        refuse(ing, w->req, "malformed", a->message);
    } else if (a->rc != CM_OK) {
        CM_WARN_ID(w->rid, "deauthorize: tokens not revoked (%s); answered 503", a->message);
        cm_httpd_reply_error(ing->svc.public_httpd, w->req, 503,
                             "the tokens could not be revoked yet; retry later");
    } else {
        /* Every token of the user is unusable from this point on: only now the 200. */
        snprintf(body, sizeof(body), "{\"status\":\"ok\",\"revoked\":%.0f}",
                 cJSON_GetNumberValue(cJSON_GetObjectItem(a->result, "revoked")));
        CM_INFO_ID(w->rid, "deauthorize: %s", body);
        cm_httpd_reply_json(ing->svc.public_httpd, w->req, 200, body);
    }
    free(w);
}

static void on_deauthorize(struct evhttp_request *req, void *arg)
{
    struct ingest *ing = arg;
    struct signed_request sr;
    cJSON *body;
    char *text;

    if (!verified(ing, req, &sr))
        return;
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "actor", "meta");
    cJSON_AddStringToObject(body, "asid", sr.user_id);
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    ingest_ask(ing, INGEST_LANE_CALLBACK, "vault.integration.deauthorize", text,
               deauthorize_answered, waiting_new(req));
}

/* --- the status page ------------------------------------------------------------------- */

static void page(struct ingest *ing, struct evhttp_request *req, int code, const struct cm_buf *b)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Security-Policy", PAGE_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    cm_httpd_reply(ing->svc.public_httpd, req, code, "text/html; charset=utf-8", b->data, b->len);
}

static void not_found(struct ingest *ing, struct evhttp_request *req, bool json)
{
    struct cm_buf b;

    if (json) {
        cm_httpd_reply_error(ing->svc.public_httpd, req, 404, "no deletion request has that code");
        return;
    }
    cm_buf_init(&b);
    ingest_status_page_unknown(&b);
    page(ing, req, 404, &b);
    cm_buf_cleanup(&b);
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes a token from the status page's bucket; false when it is empty. */
static bool status_token(struct ingest *ing)
{
    long long now = now_ms();

    if (ing->status_refilled_ms == 0) {
        ing->status_tokens = STATUS_BURST;
    } else {
        ing->status_tokens += (double)(now - ing->status_refilled_ms) * STATUS_RATE / 1000.0;
        if (ing->status_tokens > STATUS_BURST)
            ing->status_tokens = STATUS_BURST;
    }
    ing->status_refilled_ms = now;
    if (ing->status_tokens < 1.0)
        return false;
    ing->status_tokens -= 1.0;
    return true;
}

/* 429 at once, without asking anyone: the page is being asked for too often. */
static void too_many(struct ingest *ing, struct evhttp_request *req, bool json, const char *why)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct cm_buf b;
    char labels[32];

    snprintf(labels, sizeof(labels), "reason=\"%s\"", why);
    cm_metrics_inc(cm_metrics_counter(ing->svc.metrics, "ingest_status_page_limited_total", labels,
                                      "Status page requests answered 429, by limit"),
                   1);
    evhttp_add_header(h, "Retry-After", STATUS_RETRY_AFTER);
    if (json) {
        cm_httpd_reply_error(ing->svc.public_httpd, req, 429, "too many requests; retry later");
        return;
    }
    cm_buf_init(&b);
    ingest_status_page_busy(&b);
    page(ing, req, 429, &b);
    cm_buf_cleanup(&b);
}

static void status_answered(struct ingest *ing, void *arg, const struct ingest_answer *a)
{
    struct waiting *w = arg;
    struct cm_buf b;
    char *text;

    ing->status_queued--;
    if (a->rc == CM_NOTFOUND || a->rc == CM_INVALID) {
        not_found(ing, w->req, w->json);
    } else if (a->rc != CM_OK || !cJSON_IsObject(a->result)) {
        CM_WARN_ID(w->rid, "deletion status: %s; answered 503", a->message);
        cm_httpd_reply_error(ing->svc.public_httpd, w->req, 503,
                             "the status is unavailable; retry");
    } else if (w->json) {
        text = cJSON_PrintUnformatted(a->result);
        cm_httpd_reply_json(ing->svc.public_httpd, w->req, 200, text);
        cJSON_free(text);
    } else {
        cm_buf_init(&b);
        ingest_status_page(a->result, &b);
        page(ing, w->req, 200, &b);
        cm_buf_cleanup(&b);
    }
    free(w);
}

static void on_status(struct evhttp_request *req, void *arg)
{
    struct ingest *ing = arg;
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    bool json = accept != NULL && strstr(accept, "application/json") != NULL;
    char *code = cm_httpd_query(req, "code");
    struct waiting *w;
    cJSON *body;
    char *text;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        free(code);
        cm_httpd_reply_error(ing->svc.public_httpd, req, 405, "use GET");
        return;
    }
    /* The limits come first: a refusal costs nothing, and a flood of any codes is refused. */
    if (!status_token(ing)) {
        free(code);
        too_many(ing, req, json, "rate");
        return;
    }
    if (ing->status_queued >= INGEST_STATUS_QUEUE) {
        free(code);
        too_many(ing, req, json, "queue");
        return;
    }
    /* An impossible code is answered like an unknown one: the page is no oracle. */
    if (code == NULL || *code == '\0' || strlen(code) > 64) {
        free(code);
        not_found(ing, req, json);
        return;
    }
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "actor", "webhook-ingest");
    cJSON_AddStringToObject(body, "confirmation_code", code);
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    free(code);
    w = waiting_new(req);
    w->json = json;
    ing->status_queued++;
    ingest_ask(ing, INGEST_LANE_STATUS, "reaper.deletion.status", text, status_answered, w);
}

void ingest_callbacks_register(struct ingest *ing)
{
    cm_httpd_route(ing->svc.public_httpd, DELETE_PATH, on_data_delete, ing);
    cm_httpd_route(ing->svc.public_httpd, DEAUTH_PATH, on_deauthorize, ing);
    cm_httpd_route(ing->svc.public_httpd, STATUS_PATH, on_status, ing);
}
