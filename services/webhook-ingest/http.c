/*
 * http.c - the routes Meta calls: the subscription handshake and event notifications.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "envelope.h"
#include "ingest.h"
#include "publish.h"

#define WEBHOOK_PATH "/api/v1/webhooks/meta"

/*
 * A request's id for the logs and X-Request-Id: SipHash of a counter under a key drawn once,
 * so ids neither repeat nor can be guessed, without the getrandom() system call per request
 * that random bytes cost. Called on the loop thread only.
 */
static void new_request_id(char out[REQUEST_ID_LEN + 1])
{
    static unsigned char key[crypto_shorthash_KEYBYTES];
    static uint64_t counter;
    unsigned char raw[crypto_shorthash_BYTES];

    _Static_assert(2 * crypto_shorthash_BYTES == REQUEST_ID_LEN, "an id is one SipHash");
    if (counter++ == 0)
        cm_crypto_random(key, sizeof(key));
    crypto_shorthash(raw, (const unsigned char *)&counter, sizeof(counter), key);
    cm_hex_encode(raw, sizeof(raw), out);
}

/* Compares two secrets of possibly different lengths without leaking where they differ. */
static bool same_secret(const char *a, const char *b)
{
    unsigned char da[CM_SHA256_LEN], db[CM_SHA256_LEN];

    cm_crypto_sha256(a, strlen(a), da);
    cm_crypto_sha256(b, strlen(b), db);
    return cm_crypto_equal(da, db, sizeof(da));
}

/* GET: Meta's subscription handshake. The challenge goes back raw, as Meta expects. */
static void handshake(struct ingest *ing, struct evhttp_request *req)
{
    char *mode = cm_httpd_query(req, "hub.mode");
    char *token = cm_httpd_query(req, "hub.verify_token");
    char *challenge = cm_httpd_query(req, "hub.challenge");

    if (mode != NULL && strcmp(mode, "subscribe") == 0 && token != NULL && challenge != NULL &&
        same_secret(token, ing->cfg->verify_token)) {
        CM_INFO("webhook subscription verified");
        cm_httpd_reply(ing->svc.public_httpd, req, 200, "text/plain", challenge, strlen(challenge));
    } else {
        CM_WARN("webhook handshake refused (mode %s)", mode ? mode : "missing");
        cm_httpd_reply_error(ing->svc.public_httpd, req, 403, "verification failed");
    }
    free(mode);
    free(token);
    free(challenge);
}

static void reject(struct ingest *ing, struct evhttp_request *req, const char *rid, int code,
                   const char *reason, const char *message)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    cm_metrics_inc(
        cm_metrics_counter(ing->svc.metrics, "ingest_not_stored_total", labels,
                           "Webhook POSTs refused or dropped without storing, by reason"),
        1);
    CM_INFO_ID(rid, "webhook %d: %s", code, message);
    if (code == 200)
        cm_httpd_reply_json(ing->svc.public_httpd, req, 200,
                            "{\"status\":\"ignored\",\"events\":0}");
    else
        cm_httpd_reply_error(ing->svc.public_httpd, req, code, message);
}

/* POST: verify, split, publish. The body is never logged. */
static void notification(struct ingest *ing, struct evhttp_request *req)
{
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    const char *sig = evhttp_find_header(headers, "X-Hub-Signature-256");
    char rid[REQUEST_ID_LEN + 1];
    struct envelope env;
    struct cm_buf body;
    int rc;

    new_request_id(rid);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", rid);
    if (ing->draining) {
        reject(ing, req, rid, 503, "shutting_down", "shutting down; retry later");
        return;
    }
    cm_buf_init(&body);
    cm_httpd_body(req, &body);
    rc = ingest_verify_signature(ing->cfg, sig, body.data, body.len);
    if (rc != CM_OK) {
        cm_metrics_inc(ing->m_bad_signature, 1);
        reject(ing, req, rid, 401, rc == CM_INVALID ? "signature_missing" : "signature_mismatch",
               rc == CM_INVALID ? "missing or malformed X-Hub-Signature-256"
                                : "X-Hub-Signature-256 does not match");
        cm_buf_cleanup(&body);
        return;
    }

    envelope_parse(&env, body.data, body.len);
    cm_buf_cleanup(&body);
    switch (env.status) {
    case ENVELOPE_NOT_JSON:
    case ENVELOPE_NOT_META:
        reject(ing, req, rid, 400, env.status == ENVELOPE_NOT_JSON ? "not_json" : "not_meta",
               env.error);
        break;
    case ENVELOPE_OTHER_OBJECT:
        reject(ing, req, rid, 200, "other_object", "object is neither page nor instagram");
        break;
    case ENVELOPE_EMPTY:
        reject(ing, req, rid, 200, "empty_entry", "empty entry array");
        break;
    case ENVELOPE_OK:
        if (env.nevents == 0) {
            reject(ing, req, rid, 200, "no_events", "no events in the entries");
        } else if (env.nevents > (size_t)ing->cfg->max_events) {
            /* Meta sends at most 1000 a POST: this is not Meta, or not as it says. Nothing of
             * the body is kept, and a retry of the same body would fare no better: 413. */
            char message[96];
            snprintf(message, sizeof(message), "%zu events in one POST; at most %lld accepted",
                     env.nevents, (long long)ing->cfg->max_events);
            reject(ing, req, rid, 413, "too_many_events", message);
        } else if (!cm_nats_ready(ing->svc.nats)) {
            reject(ing, req, rid, 503, "nats_unavailable", "event store unavailable; retry later");
        } else {
            ingest_publish(ing, req, rid, &env);
        }
        break;
    }
    envelope_cleanup(&env);
}

static void on_webhook(struct evhttp_request *req, void *arg)
{
    struct ingest *ing = arg;

    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        handshake(ing, req);
        break;
    case EVHTTP_REQ_POST:
        notification(ing, req);
        break;
    default:
        cm_httpd_reply_error(ing->svc.public_httpd, req, 405, "use GET or POST");
    }
}

void ingest_http_register(struct ingest *ing)
{
    cm_httpd_route(ing->svc.public_httpd, WEBHOOK_PATH, on_webhook, ing);
}
