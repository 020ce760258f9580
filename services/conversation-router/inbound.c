/*
 * inbound.c - Meta's events, from webhook-ingest's stream into conversations.
 *
 * A durable consumer on META_EVENTS hands over batches; a batch is stored in one
 * transaction and acknowledged only after the commit, every event a contact wrote (a new
 * contact's too) as one statement, pipelined with the batch's others in one round trip, and
 * the batch's assignments last. When one event of a batch fails, the batch is rolled back
 * and its events are taken one by one, so a poison event goes to the dead letters alone and
 * a transient failure (PostgreSQL down) is retried with nothing acknowledged.
 *
 * Idempotent by construction: messages have a unique key on (integration, mid) and are
 * inserted on conflict do nothing; a conversation is opened with its own unique index on
 * (integration, contact) while open. Redeliveries, Meta's duplicates and two routers
 * consuming the same stream store each message once.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "cache.h"
#include "inbound.h"
#include "router.h"

/* Deliveries of an event about a message not stored yet before it is dropped. */
#define MAX_LATER_DELIVERIES 5

/* One worker: a consumer thread with its own connection and caches. */
struct inbound {
    struct router *r;
    struct cm_pg *pg;
    struct inbound_caches caches;
    struct cm_consumer *consumer;
};

/* Meta sends epoch milliseconds; the dashboard's test form sends seconds as a string. */
static int64_t meta_time_ms(const cJSON *v)
{
    double t = 0;

    if (cJSON_IsNumber(v))
        t = v->valuedouble;
    else if (cJSON_IsString(v))
        t = strtod(v->valuestring, NULL);
    if (t > 0 && t < 1e11)
        t *= 1000;
    return (int64_t)t;
}

static const char *str_in(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void inbound_parse(struct inbound_event *ev, const cJSON *wrap)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(wrap, "event");

    memset(ev, 0, sizeof(*ev));
    ev->event = e;
    ev->platform = str_in(wrap, "platform", NULL);
    ev->account_id = str_in(wrap, "account_id", NULL);
    ev->kind = str_in(wrap, "kind", NULL);
    ev->ts_ms = meta_time_ms(cJSON_GetObjectItemCaseSensitive(e, "timestamp"));
    ev->sender = str_in(e, "sender", "id");
    ev->recipient = str_in(e, "recipient", "id");
    ev->standby = str_in(wrap, "source", NULL) != NULL &&
                  strcmp(str_in(wrap, "source", NULL), "standby") == 0;
    if (ev->kind == NULL)
        return;
    if (strcmp(ev->kind, "echo") == 0) {
        ev->contact = ev->recipient; /* the business wrote to the contact */
        ev->mid = str_in(e, "message", "mid");
    } else {
        ev->contact = ev->sender;
        if (strcmp(ev->kind, "edit") == 0)
            ev->mid = str_in(e, "message_edit", "mid");
        else if (strcmp(ev->kind, "reaction") == 0)
            ev->mid = str_in(e, "reaction", "mid");
        else if (strcmp(ev->kind, "postback") == 0)
            ev->mid = str_in(e, "postback", "mid");
        else
            ev->mid = str_in(e, "message", "mid");
    }
}

static int deliveries(natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;
    int n = 1;

    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        n = (int)meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
    }
    return n;
}

/*
 * router.dead.inbound.<platform>.<account> for an event of meta.events.<platform>.<account>.*
 * so that a deletion can purge an account's dead letters by subject; router.dead.inbound
 * for anything else.
 */
static void dead_subject(const char *from, char *out, size_t cap)
{
    char platform[32], account[80];

    if (sscanf(from, "meta.events.%31[^.].%79[^.].", platform, account) == 2)
        snprintf(out, cap, "router.dead.inbound.%s.%s", platform, account);
    else
        snprintf(out, cap, "router.dead.inbound");
}

/* Dead letters: a malformed event is set aside with the reason, never blocks the stream. */
static void dead_letter(struct router *r, natsMsg *msg, const char *reason)
{
    cJSON *o = cJSON_CreateObject();
    char *text, subject[200];
    uint64_t seq = 0;
    jsMsgMetaData *meta = NULL;

    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
    }
    cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddStringToObject(o, "subject", natsMsg_GetSubject(msg));
    cJSON_AddNumberToObject(o, "stream_seq", (double)seq);
    text = cJSON_PrintUnformatted(o);
    dead_subject(natsMsg_GetSubject(msg), subject, sizeof(subject));
    if (cm_nats_publish_sync(r->svc.nats, subject, NULL, text, (int)strlen(text), NULL) != CM_OK)
        CM_ERROR("inbound: event seq %llu not dead-lettered: %s", (unsigned long long)seq, reason);
    else
        CM_WARN("inbound: event seq %llu dead-lettered: %s", (unsigned long long)seq, reason);
    cm_metrics_inc(r->m_dead, 1);
    cJSON_free(text);
    cJSON_Delete(o);
}

/* Parses msg's wrapper; NULL (with why) when it is not a JSON object. */
static cJSON *parse(natsMsg *msg, char *why, size_t cap)
{
    cJSON *wrap = cJSON_ParseWithLength(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));

    if (!cJSON_IsObject(wrap)) {
        snprintf(why, cap, "not a JSON object");
        cJSON_Delete(wrap);
        return NULL;
    }
    return wrap;
}

/* An event about a message that never came, past its deliveries: nothing to apply to. */
static void give_up_later(natsMsg *msg, enum inbound_outcome *outcome)
{
    if (*outcome == INBOUND_LATER && deliveries(msg) >= MAX_LATER_DELIVERIES)
        *outcome = INBOUND_IGNORED;
}

static void count(struct router *r, enum inbound_outcome o)
{
    switch (o) {
    case INBOUND_STORED:
        cm_metrics_inc(r->m_stored, 1);
        break;
    case INBOUND_DUPLICATE:
        cm_metrics_inc(r->m_duplicate, 1);
        break;
    case INBOUND_UNROUTED:
        cm_metrics_inc(r->m_unrouted, 1);
        break;
    case INBOUND_IGNORED:
        cm_metrics_inc(r->m_ignored, 1);
        break;
    case INBOUND_LATER:
        break;
    }
}

/* One message of a batch: its parsed event and, when a contact wrote, its pipelined statement. */
struct item {
    cJSON *wrap;
    struct inbound_event ev;
    struct inbound_fast fast;
    bool eligible;
    bool again; /* eligible, and its statement runs again as the full one */
    enum inbound_outcome outcome;
};

/*
 * The order in which eligible items take their locks: by integration and the contact's blind
 * index (known to every worker, unlike a new contact's id), keeping the batch's order within
 * one contact.
 */
static int contact_cmp(const struct item *a, const struct item *b)
{
    int c = strcmp(a->fast.route.integration_id, b->fast.route.integration_id);
    return c != 0 ? c : memcmp(a->fast.blind, b->fast.blind, sizeof(a->fast.blind));
}

static void sort_by_contact(const struct item *items, int *of, int n)
{
    for (int i = 1; i < n; i++) {
        int v = of[i], j = i;
        for (; j > 0 && contact_cmp(&items[of[j - 1]], &items[v]) > 0; j--)
            of[j] = of[j - 1];
        of[j] = v;
    }
}

/* Runs the statements of items of[0..n) in one round trip and reads their outcomes; an item
 * whose short statement found no open conversation is marked again, its statement the full
 * one. */
static int run_pipelined(struct inbound *in, struct item *items, const int *of, int n)
{
    struct cm_pg_call *calls = cm_xcalloc((size_t)n, sizeof(*calls));
    PGresult **results = cm_xcalloc((size_t)n, sizeof(*results));
    int rc;

    for (int c = 0; c < n; c++)
        calls[c] = items[of[c]].fast.call;
    rc = cm_pg_pipeline(in->pg, calls, n, results);
    for (int c = 0; c < n; c++) {
        struct item *it = &items[of[c]];
        int orc = rc == CM_OK
                      ? inbound_fast_outcome(&in->caches, &it->fast, results[c], &it->outcome)
                      : rc;
        it->again = orc == CM_NOTFOUND;
        if (it->again)
            inbound_fast_full(&it->fast);
        else if (rc == CM_OK && orc != CM_OK)
            rc = orc;
        PQclear(results[c]);
    }
    free(results);
    free(calls);
    return rc;
}

/* Workspace names' order, for qsort of borrowed strings. */
static int ws_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Assigns what waits in each workspace where the batch wrote into a conversation without an
 * assignee (new, reopened, or left waiting earlier): one call per workspace, in one order,
 * pipelined, after every statement that locks a conversation (the lock order of assign_waiting()).
 */
static int assign_waiting(struct inbound *in, struct item *items, int n)
{
    const char **ws = cm_xcalloc((size_t)n, sizeof(*ws));
    struct cm_pg_call *calls = cm_xcalloc((size_t)n, sizeof(*calls));
    PGresult **results = cm_xcalloc((size_t)n, sizeof(*results));
    int nws = 0, ncalls = 0, rc = CM_OK;

    for (int i = 0; i < n; i++) {
        if (items[i].eligible && items[i].fast.waiting)
            ws[nws++] = items[i].fast.route.workspace_id;
    }
    qsort(ws, (size_t)nws, sizeof(*ws), ws_cmp);
    for (int w = 0; w < nws; w++) {
        if (w == 0 || strcmp(ws[w], ws[w - 1]) != 0)
            router_assign_call(&calls[ncalls++], &ws[w]);
    }
    if (ncalls > 0)
        rc = cm_pg_pipeline(in->pg, calls, ncalls, results);
    for (int c = 0; c < ncalls; c++)
        PQclear(results[c]);
    free(results);
    free(calls);
    free(ws);
    return rc;
}

/*
 * Stores a batch inside the open transaction: first every event a contact wrote (message,
 * postback, referral), as statements pipelined in one round trip, a known contact's into
 * its open conversation, any other's through the full statement (contact, conversation,
 * message); then, pipelined, the full statements of known contacts whose conversation was
 * not open; then, in the batch's order, everything else one statement at a time (edits,
 * reads, echoes...), so that an edit in the same batch as its message finds it stored; last,
 * the attachments of the messages stored; last, the assignment of what waits. CM_INVALID, with
 * why, for an event that can never be stored. *media counts the attachments captured.
 */
static int store_batch(struct inbound *in, natsMsg **msgs, struct item *items, int n, char *why,
                       size_t cap, int *media)
{
    int *of = cm_xcalloc((size_t)n, sizeof(*of));
    int rc = CM_OK, ncalls = 0, nagain = 0;

    for (int i = 0; rc == CM_OK && i < n; i++) {
        if ((items[i].wrap = parse(msgs[i], why, cap)) == NULL) {
            rc = CM_INVALID;
            break;
        }
        inbound_parse(&items[i].ev, items[i].wrap);
        rc = inbound_fast_prepare(in->r, in->pg, &in->caches, &items[i].ev, &items[i].fast,
                                  &items[i].eligible);
        if (rc == CM_OK && items[i].eligible)
            of[ncalls++] = i;
    }
    if (rc == CM_OK && ncalls > 0) {
        /* Every worker locks contacts and conversations in one order: two batches wait,
         * never deadlock, on those. */
        sort_by_contact(items, of, ncalls);
        rc = run_pipelined(in, items, of, ncalls);
    }
    for (int c = 0; rc == CM_OK && c < ncalls; c++) {
        if (items[of[c]].again)
            of[nagain++] = of[c]; /* still sorted */
    }
    if (rc == CM_OK && nagain > 0)
        rc = run_pipelined(in, items, of, nagain);
    for (int c = 0; rc == CM_OK && c < nagain; c++) {
        if (items[of[c]].again)
            rc = CM_AGAIN; /* the full statement always finds or opens one */
    }
    for (int i = 0; rc == CM_OK && i < n; i++) {
        if (items[i].fast.unrouted)
            items[i].outcome = INBOUND_UNROUTED; /* collect only what is needed */
        else if (!items[i].eligible)
            rc = inbound_store(in->r, in->pg, &in->caches, &items[i].ev, &items[i].outcome, why,
                               cap);
        if (rc == CM_OK)
            give_up_later(msgs[i], &items[i].outcome);
    }
    /* Attachments last, only of messages just stored (rare: no cost to the others). */
    for (int i = 0; rc == CM_OK && i < n; i++) {
        struct inbound_fast *f = &items[i].fast;
        if (items[i].eligible && items[i].outcome == INBOUND_STORED && f->media.n > 0) {
            rc = inbound_media_insert(in->r, in->pg, &f->route, f->id, f->ev, &f->media);
            *media += f->media.n;
        }
    }
    if (rc == CM_OK)
        rc = assign_waiting(in, items, n);
    free(of);
    return rc;
}

static void items_cleanup(struct item *items, int n)
{
    for (int i = 0; i < n; i++) {
        inbound_fast_cleanup(&items[i].fast);
        cJSON_Delete(items[i].wrap);
    }
    memset(items, 0, (size_t)n * sizeof(*items));
}

/* One message in its own transaction, as a batch of one: the slow path after a failed batch. */
static enum cm_consume_result alone(struct inbound *in, natsMsg *msg)
{
    struct item item;
    char why[256] = "";
    int rc = cm_pg_begin(in->pg), media = 0;

    memset(&item, 0, sizeof(item));
    if (rc == CM_OK)
        rc = store_batch(in, &msg, &item, 1, why, sizeof(why), &media);
    if (rc == CM_OK)
        rc = cm_pg_commit(in->pg);
    if (rc == CM_OK && media > 0)
        router_media_fetch_wake(in->r);
    if (rc != CM_OK)
        cm_pg_rollback(in->pg);
    items_cleanup(&item, 1);
    if (rc == CM_INVALID) {
        dead_letter(in->r, msg, why);
        return CM_CONSUME_TERM;
    }
    if (rc != CM_OK) {
        /* A stale cache entry (a contact purged meanwhile) fails the same way: forget. */
        cache_clear(in->caches.routes);
        cache_clear(in->caches.contacts);
        CM_WARN("inbound: event not stored, will be redelivered: %s", cm_err_str(rc));
        return CM_CONSUME_RETRY;
    }
    count(in->r, item.outcome);
    return item.outcome == INBOUND_LATER ? CM_CONSUME_RETRY : CM_CONSUME_ACK;
}

static void on_batch(void *arg, natsMsg **msgs, int n, enum cm_consume_result *results)
{
    struct inbound *in = arg;
    struct item *items = cm_xcalloc((size_t)n, sizeof(*items));
    char why[256] = "";
    int rc = cm_pg_begin(in->pg), media = 0;

    if (rc == CM_OK)
        rc = store_batch(in, msgs, items, n, why, sizeof(why), &media);
    if (rc == CM_OK)
        rc = cm_pg_commit(in->pg);
    if (rc == CM_OK && media > 0)
        router_media_fetch_wake(in->r); /* downloads start now, not at the next poll */
    if (rc == CM_OK) {
        for (int i = 0; i < n; i++) {
            count(in->r, items[i].outcome);
            results[i] = items[i].outcome == INBOUND_LATER ? CM_CONSUME_RETRY : CM_CONSUME_ACK;
        }
    } else {
        CM_WARN("inbound: a batch of %d events not stored (%s: %s), taking them one by one", n,
                cm_err_str(rc), cm_pg_error(in->pg));
        cm_pg_rollback(in->pg);
        items_cleanup(items, n);
        /* What the failed batch cached may not exist: start the slow path clean. */
        cache_clear(in->caches.routes);
        cache_clear(in->caches.contacts);
        for (int i = 0; i < n; i++)
            results[i] = alone(in, msgs[i]);
    }
    items_cleanup(items, n);
    free(items);
}

int router_inbound_start(struct router *r)
{
    struct cm_consumer_cfg cfg = {
        .stream = "META_EVENTS",
        .durable = "conversation-router",
        .filter = "meta.events.>",
        .batch = 64,
        .ack_wait_ms = 60000,
        .retry_delay_ms = 2000,
        .batch_fn = on_batch,
    };
    int rc = CM_OK;

    r->inbound = cm_xcalloc(ROUTER_INBOUND_WORKERS, sizeof(*r->inbound));
    for (int i = 0; rc == CM_OK && i < ROUTER_INBOUND_WORKERS; i++) {
        struct inbound *in = &r->inbound[i];
        in->r = r;
        in->caches.routes = cache_create(ROUTER_ROUTE_TTL_S);
        in->caches.contacts = cache_create(0);
        if (cm_pg_connect(&in->pg, r->cfg->base.database_url, ROUTER_SCHEMA) == CM_INVALID)
            rc = CM_INVALID;
        else
            rc = cm_consumer_start(&in->consumer, r->svc.nats, &cfg, NULL, in);
    }
    return rc;
}

void router_inbound_stop(struct router *r)
{
    if (r->inbound == NULL)
        return;
    for (int i = 0; i < ROUTER_INBOUND_WORKERS; i++)
        cm_consumer_destroy(r->inbound[i].consumer);
    for (int i = 0; i < ROUTER_INBOUND_WORKERS; i++) {
        struct inbound *in = &r->inbound[i];
        if (in->r == NULL)
            continue; /* never started */
        cm_pg_destroy(in->pg);
        cache_destroy(in->caches.routes);
        cache_destroy(in->caches.contacts);
    }
    free(r->inbound);
    r->inbound = NULL;
}
