/*
 * store.c - what each kind of Meta event changes in the router's schema.
 *
 * message, postback, referral: the contact wrote; the message is stored (sealed), the
 *   conversation opened or reopened, the window moved to Meta's timestamp (one statement,
 *   see inbound.h); the batch then assigns an agent to a conversation left without one.
 * echo: the business's own message sent from Meta's apps (or ours, coming back); stored
 *   as outbound, never reopening anything or moving the window.
 * unsend, edit, reaction: changes of a stored message (store_change.c).
 * read, delivery: watermarks on the conversation.
 * standby messages and echoes (another app held the thread), handover webhooks: thread.c.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/log.h"
#include "cache.h"
#include "common/crypto.h"
#include "common/outbox.h"
#include "inbound.h"
#include "router.h"

/* Formats Meta's epoch milliseconds for PostgreSQL's to_timestamp(). */
void inbound_ts_param(char out[32], int64_t ms)
{
    snprintf(out, 32, "%.3f", (double)ms / 1000.0);
}

/* Selects the contact of (integration, blind) into contact_id; CM_NOTFOUND when absent. */
static int contact_select(struct cm_pg *pg, const char *integration_id,
                          const unsigned char blind[32], char contact_id[40])
{
    const char *values[2] = {integration_id, (const char *)blind};
    const int lengths[2] = {0, 32};
    const int formats[2] = {0, 1};
    int rc = cm_pg_exec_prepared(pg, "router_contact",
                                 "SELECT id FROM contacts WHERE integration_id = $1 AND blind = $2",
                                 2, values, lengths, formats);

    if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    if (rc == CM_OK)
        snprintf(contact_id, 40, "%s", cm_pg_value(pg, 0, 0));
    return rc;
}

/* Creates the contact (its id sealed), or finds the one a racing replica created. */
static int contact_create(struct router *r, struct cm_pg *pg, const struct router_route *route,
                          const char *platform, const char *psid, const unsigned char blind[32],
                          char contact_id[40])
{
    char id[40], aad[96];
    struct cm_buf sealed;
    int rc;

    router_new_id("ct", id);
    snprintf(aad, sizeof(aad), "router.contacts.psid:%s", id);
    cm_buf_init(&sealed);
    rc = router_seal(r, pg, route->workspace_id, route->integration_id, aad, psid, strlen(psid),
                     &sealed);
    if (rc == CM_OK) {
        const char *values[6] = {id,       route->workspace_id, route->integration_id,
                                 platform, (const char *)blind, sealed.data};
        const int lengths[6] = {0, 0, 0, 0, 32, (int)sealed.len};
        const int formats[6] = {0, 0, 0, 0, 1, 1};
        rc = cm_pg_exec_params(pg,
                               "INSERT INTO contacts (id, workspace_id, integration_id, platform,"
                               " blind, psid_sealed) VALUES ($1, $2, $3, $4, $5, $6)"
                               " ON CONFLICT (integration_id, blind) DO NOTHING",
                               6, values, lengths, formats, 0);
    }
    cm_buf_cleanup(&sealed);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_affected(pg) == 1) {
        snprintf(contact_id, 40, "%s", id);
        return CM_OK;
    }
    rc = contact_select(pg, route->integration_id, blind, contact_id);
    return rc == CM_NOTFOUND ? CM_AGAIN : rc;
}

/*
 * The blind index of psid into blind, and the contacts cache's key of it into key; true, with
 * contact_id, when the cache knows the contact's id. A contact's id never changes (a purge
 * that removes it empties the cache through the failure it causes, see inbound.c).
 */
static int contact_cached(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                          const struct router_route *route, const char *psid,
                          unsigned char blind[32], char key[160], char contact_id[40], bool *found)
{
    char hex[65];
    const char *cached;
    int rc = router_blind(r, pg, route->workspace_id, route->integration_id, psid, blind);

    *found = false;
    if (rc != CM_OK)
        return rc;
    cm_hex_encode(blind, 32, hex);
    snprintf(key, 160, "%s:%s", route->integration_id, hex);
    cached = caches && caches->contacts ? cache_get(caches->contacts, key) : NULL;
    if (cached != NULL) {
        snprintf(contact_id, 40, "%s", cached);
        *found = true;
    }
    return CM_OK;
}

/*
 * Finds the contact of psid, creating it when create is set; contact_id receives its
 * internal id. CM_NOTFOUND when absent and not created. Found ids are cached.
 */
int inbound_contact_of(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                       const struct router_route *route, const char *platform, const char *psid,
                       bool create, char contact_id[40])
{
    unsigned char blind[32];
    char key[160];
    bool found = false;
    int rc = contact_cached(r, pg, caches, route, psid, blind, key, contact_id, &found);

    if (rc != CM_OK || found)
        return rc;
    rc = contact_select(pg, route->integration_id, blind, contact_id);
    if (rc == CM_NOTFOUND && create)
        rc = contact_create(r, pg, route, platform, psid, blind, contact_id);
    if (rc == CM_OK && caches && caches->contacts)
        cache_put(caches->contacts, key, contact_id);
    return rc;
}

/*
 * The conversation a message of contact belongs to. inbound: the open one, else the most
 * recent closed one reopened (unless the message is already held: *duplicate), else a new
 * one; *opened says it is new or reopened. Not
 * inbound (an echo): the open or most recent one, else a new open one.
 */
static int already_held(struct cm_pg *pg, const struct router_route *route,
                        const struct inbound_event *ev, bool *held)
{
    const char *params[2] = {route->integration_id, ev->mid};
    int rc =
        cm_pg_exec(pg, "SELECT 1 FROM messages WHERE integration_id = $1 AND mid = $2", 2, params);

    *held = rc == CM_OK && cm_pg_ntuples(pg) > 0;
    return rc;
}

int inbound_conversation_of(struct cm_pg *pg, const struct router_route *route,
                            const struct inbound_event *ev, const char *contact_id, bool inbound,
                            char conv_id[40], bool *opened, bool *duplicate)
{
    const char *params[2] = {route->integration_id, contact_id};
    const char *platform = ev->platform;
    int rc;

    *opened = false;
    *duplicate = false;
    /* The open one through its partial unique index: the common case, one probe. */
    rc = cm_pg_exec_prepared(pg, "router_open_conversation",
                             "SELECT id, status FROM conversations WHERE integration_id = $1"
                             " AND contact_id = $2 AND status = 'open' FOR UPDATE",
                             2, params, NULL, NULL);
    if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
        rc = cm_pg_exec(pg,
                        "SELECT id, status FROM conversations WHERE contact_id = $2"
                        " AND integration_id = $1 ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
                        2, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) > 0) {
        snprintf(conv_id, 40, "%s", cm_pg_value(pg, 0, 0));
        if (strcmp(cm_pg_value(pg, 0, 1), "closed") == 0 && inbound) {
            const char *reopen[1] = {conv_id};
            /* An old message redelivered must not reopen what an agent closed. */
            if (ev->mid != NULL && (rc = already_held(pg, route, ev, duplicate)) != CM_OK)
                return rc;
            if (*duplicate)
                return CM_OK;
            *opened = true;
            return cm_pg_exec(pg,
                              "UPDATE conversations SET status = 'open', closed_at = NULL,"
                              " assignee = NULL WHERE id = $1",
                              1, reopen);
        }
        return CM_OK;
    }
    router_new_id("cv", conv_id);
    {
        const char *values[5] = {conv_id, route->workspace_id, route->integration_id, contact_id,
                                 platform};
        rc = cm_pg_exec(pg,
                        "INSERT INTO conversations (id, workspace_id, integration_id, contact_id,"
                        " platform) VALUES ($1, $2, $3, $4, $5)"
                        " ON CONFLICT (integration_id, contact_id) WHERE status = 'open'"
                        " DO NOTHING",
                        5, values);
    }
    if (rc != CM_OK)
        return rc;
    if (cm_pg_affected(pg) == 1) {
        *opened = inbound;
        return CM_OK;
    }
    /* A replica opened it first: use theirs. */
    rc = cm_pg_exec(pg,
                    "SELECT id FROM conversations WHERE integration_id = $1 AND contact_id = $2"
                    " AND status = 'open'",
                    2, params);
    if (rc == CM_OK && cm_pg_ntuples(pg) == 0)
        rc = CM_AGAIN;
    if (rc == CM_OK)
        snprintf(conv_id, 40, "%s", cm_pg_value(pg, 0, 0));
    return rc;
}

/* Replaces in atts (the body's copy) each attachment media keeps as a row by its reference. */
static void media_refs(cJSON *atts, const struct inbound_media *media)
{
    for (int i = 0; media != NULL && i < media->n; i++) {
        cJSON *ref = cJSON_CreateObject();
        cJSON_AddStringToObject(ref, "type", media->a[i].type);
        cJSON_AddStringToObject(ref, "attachment_id", media->a[i].id);
        if (!cJSON_ReplaceItemInArray(atts, media->a[i].position, ref))
            cJSON_Delete(ref);
    }
}

/* The sealed part of a message: what a person wrote or sent, nothing of Meta's plumbing. */
char *inbound_body_json(const struct inbound_event *ev, const struct inbound_media *media)
{
    const cJSON *e = ev->event, *m;
    cJSON *body = cJSON_CreateObject();
    char *text;

    if (strcmp(ev->kind, "postback") == 0) {
        m = cJSON_GetObjectItemCaseSensitive(e, "postback");
        if (cJSON_IsString(cJSON_GetObjectItem(m, "title")))
            cJSON_AddStringToObject(body, "text", cJSON_GetObjectItem(m, "title")->valuestring);
        cJSON_AddItemToObject(body, "postback", cJSON_Duplicate(m, 1));
    } else if (strcmp(ev->kind, "referral") == 0) {
        cJSON_AddItemToObject(body, "referral",
                              cJSON_Duplicate(cJSON_GetObjectItem(e, "referral"), 1));
    } else {
        static const char *const keep[] = {"text", "attachments", "quick_reply", "reply_to",
                                           "sticker_id"};
        m = cJSON_GetObjectItemCaseSensitive(e, "message");
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keep[i]);
            if (v != NULL)
                cJSON_AddItemToObject(body, keep[i], cJSON_Duplicate(v, 1));
        }
        media_refs(cJSON_GetObjectItemCaseSensitive(body, "attachments"), media);
    }
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    return text;
}

/* Inserts the business's own message (an echo; another app's when ev is a standby event) with
 * a sealed body; *inserted false when (integration, mid) existed. It never moves the window. */
int inbound_insert_echo(struct router *r, struct cm_pg *pg, const struct router_route *route,
                        const char *conv, const struct inbound_event *ev, bool *inserted)
{
    char id[40], aad[96], ts[32];
    struct inbound_media media;
    char *body;
    struct cm_buf sealed;
    int rc;

    inbound_media_plan(ev, &media);
    body = inbound_body_json(ev, &media);
    router_new_id("msg", id);
    snprintf(aad, sizeof(aad), "router.messages.body:%s", id);
    inbound_ts_param(ts, ev->ts_ms);
    cm_buf_init(&sealed);
    rc = router_seal(r, pg, route->workspace_id, route->integration_id, aad, body, strlen(body),
                     &sealed);
    if (rc == CM_OK) {
        const char *values[9] = {id,
                                 conv,
                                 route->workspace_id,
                                 ev->platform,
                                 ev->mid,
                                 sealed.data,
                                 ts,
                                 route->integration_id,
                                 ev->standby ? "true" : "false"};
        const int lengths[9] = {0, 0, 0, 0, 0, (int)sealed.len, 0, 0, 0};
        const int formats[9] = {0, 0, 0, 0, 0, 1, 0, 0, 0};
        rc = cm_pg_exec_prepared(pg, "router_insert_echo",
                                 "INSERT INTO messages (id, conversation_id, workspace_id,"
                                 " platform, mid, direction, kind, body_sealed, sent_at, status,"
                                 " integration_id, standby) VALUES ($1, $2, $3, $4, $5, 'out',"
                                 " 'message', $6, to_timestamp($7::double precision), 'sent', $8,"
                                 " $9::boolean) ON CONFLICT (integration_id, mid) DO NOTHING",
                                 9, values, lengths, formats);
    }
    if (rc == CM_OK)
        *inserted = cm_pg_affected(pg) == 1;
    if (rc == CM_OK && *inserted && media.n > 0)
        rc = inbound_media_insert(r, pg, route, id, ev, &media);
    cm_buf_wipe(&sealed);
    cJSON_free(body);
    return rc;
}

/* The short statement: a known contact's open conversation. A message delivered to this app
 * (never a standby event) says the thread is ours unless Meta said otherwise after it
 * (schema/006_thread.sql). */
static const char short_sql[] =
    "WITH conv AS (UPDATE conversations SET last_inbound_at = greatest("
    "last_inbound_at, to_timestamp($9::double precision)), last_activity_at = now(),"
    " thread_held = thread_held OR thread_at <= to_timestamp($9::double precision)"
    " WHERE integration_id = $1 AND contact_id = $2 AND status = 'open'"
    " RETURNING id, assignee IS NULL AS waiting),"
    " ins AS (INSERT INTO messages (id, conversation_id, workspace_id, platform, mid,"
    " direction, kind, body_sealed, sent_at, status, integration_id) SELECT $3::text,"
    " conv.id, $4::text, $5::text, $6::text, 'in', $7::text, $8::bytea,"
    " to_timestamp($9::double precision), 'received', $1::text FROM conv"
    " ON CONFLICT (integration_id, mid) DO NOTHING RETURNING 1)"
    " SELECT (SELECT count(*) FROM conv), (SELECT count(*) FROM ins),"
    " coalesce((SELECT bool_or(waiting) FROM conv), false)";

/* The full statement: everything else (schema/005_inbound_message.sql). */
static const char full_sql[] =
    "SELECT o_contact, o_conversation, o_waiting, o_stored FROM inbound_message($1::text,"
    " $2::text, $3::text, $4::bytea, $5::text, $6::bytea, $7::text, $8::text, $9::text,"
    " $10::text, $11::bytea, $12::double precision)";

/*
 * The short statement moves the open conversation's window, which locks it (an agent closing
 * it meanwhile makes it not open, and the full statement then reopens it), then inserts the
 * message unless held. A redelivered message moves nothing: the window takes the greatest
 * time, and only last_activity_at is touched.
 */
static void short_call(struct inbound_fast *f)
{
    const struct inbound_event *ev = f->ev;
    const char *values[9] = {f->route.integration_id,
                             f->contact,
                             f->id,
                             f->route.workspace_id,
                             ev->platform,
                             ev->mid,
                             ev->kind,
                             f->sealed.data,
                             f->ts};

    memset(f->lengths, 0, sizeof(f->lengths));
    memset(f->formats, 0, sizeof(f->formats));
    memcpy(f->values, values, sizeof(values));
    f->lengths[7] = (int)f->sealed.len;
    f->formats[7] = 1;
    f->call = (struct cm_pg_call){
        .name = "router_fast_message",
        .sql = short_sql,
        .n = 9,
        .values = f->values,
        .lengths = f->lengths,
        .formats = f->formats,
    };
}

void inbound_fast_full(struct inbound_fast *f)
{
    const struct inbound_event *ev = f->ev;
    /* A known contact's sealed id is not needed: NULL, and inbound_message() does not create
     * one; the new conversation's id is used only if one is opened. */
    const char *values[12] = {f->route.integration_id,
                              f->route.workspace_id,
                              ev->platform,
                              (const char *)f->blind,
                              f->contact,
                              f->known ? NULL : f->psid_sealed.data,
                              f->conversation,
                              f->id,
                              ev->mid,
                              ev->kind,
                              f->sealed.data,
                              f->ts};

    memset(f->lengths, 0, sizeof(f->lengths));
    memset(f->formats, 0, sizeof(f->formats));
    memcpy(f->values, values, sizeof(values));
    f->lengths[3] = 32;
    f->formats[3] = 1;
    f->lengths[5] = f->known ? 0 : (int)f->psid_sealed.len;
    f->formats[5] = 1;
    f->lengths[10] = (int)f->sealed.len;
    f->formats[10] = 1;
    f->call = (struct cm_pg_call){
        .name = "router_full_message",
        .sql = full_sql,
        .n = 12,
        .values = f->values,
        .lengths = f->lengths,
        .formats = f->formats,
    };
}

/*
 * Seals what the contact wrote (and, for a contact not known, the contact's id under a new
 * contact id) and builds the statement that stores it: the short one for a known contact,
 * else the full one. f->route and f->ev are set.
 */
static int seal_message(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                        struct inbound_fast *f)
{
    const struct inbound_event *ev = f->ev;
    char aad[96];
    char *body;
    int rc = contact_cached(r, pg, caches, &f->route, ev->contact, f->blind, f->cache_key,
                            f->contact, &f->known);

    if (rc != CM_OK)
        return rc;
    if (!f->known) {
        router_new_id("ct", f->contact);
        snprintf(aad, sizeof(aad), "router.contacts.psid:%s", f->contact);
        rc = router_seal(r, pg, f->route.workspace_id, f->route.integration_id, aad, ev->contact,
                         strlen(ev->contact), &f->psid_sealed);
        if (rc != CM_OK)
            return rc;
    }
    router_new_id("cv", f->conversation);
    router_new_id("msg", f->id);
    snprintf(aad, sizeof(aad), "router.messages.body:%s", f->id);
    inbound_ts_param(f->ts, ev->ts_ms);
    inbound_media_plan(ev, &f->media);
    body = inbound_body_json(ev, &f->media);
    rc = router_seal(r, pg, f->route.workspace_id, f->route.integration_id, aad, body, strlen(body),
                     &f->sealed);
    cJSON_free(body);
    if (rc != CM_OK)
        return rc;
    if (f->known)
        short_call(f);
    else
        inbound_fast_full(f);
    return CM_OK;
}

/* The contact wrote (message, postback, referral), one event alone: the statement of a batch,
 * then the assignment a batch makes last. */
static int store_inbound(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                         const struct inbound_event *ev, enum inbound_outcome *outcome)
{
    struct inbound_fast f;
    bool eligible = false;
    int rc = inbound_fast_prepare(r, pg, caches, ev, &f, &eligible);

    if (rc == CM_OK && !eligible)
        rc = CM_AGAIN; /* its route changed since inbound_store() found it */
    for (int pass = 0; rc == CM_OK && pass < 2; pass++) {
        rc = cm_pg_exec_prepared(pg, f.call.name, f.call.sql, f.call.n, f.call.values,
                                 f.call.lengths, f.call.formats);
        if (rc == CM_OK)
            rc = inbound_fast_outcome(caches, &f, cm_pg_result(pg), outcome);
        if (rc != CM_NOTFOUND)
            break;
        inbound_fast_full(&f);
        rc = CM_OK;
    }
    if (rc == CM_NOTFOUND)
        rc = CM_AGAIN;
    if (rc == CM_OK && *outcome == INBOUND_STORED && f.media.n > 0)
        rc = inbound_media_insert(r, pg, &f.route, f.id, ev, &f.media);
    if (rc == CM_OK && f.waiting) {
        struct cm_pg_call call;
        const char *ws[1] = {f.route.workspace_id};
        router_assign_call(&call, ws);
        rc = cm_pg_exec_prepared(pg, call.name, call.sql, call.n, call.values, call.lengths,
                                 call.formats);
    }
    inbound_fast_cleanup(&f);
    return rc;
}

/* The business's own message, from Meta's apps or coming back from our Send API call. */
static int store_echo(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                      const struct router_route *route, const struct inbound_event *ev,
                      enum inbound_outcome *outcome)
{
    const char *metadata = NULL;
    char contact[40], conv[40];
    bool held = false, opened = false, inserted = false, duplicate = false;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev->event, "message");
    int rc;

    if (ev->mid == NULL) {
        *outcome = INBOUND_IGNORED;
        return CM_OK;
    }
    rc = already_held(pg, route, ev, &held);
    if (rc != CM_OK || held) {
        *outcome = INBOUND_DUPLICATE;
        return rc;
    }
    /* Our own send: the metadata names the queued message; it is sent, with this mid. */
    if (cJSON_IsString(cJSON_GetObjectItem(m, "metadata")))
        metadata = cJSON_GetObjectItem(m, "metadata")->valuestring;
    if (metadata != NULL && strncmp(metadata, "msg_", 4) == 0) {
        const char *params[2] = {metadata, ev->mid};
        rc = cm_pg_exec(pg,
                        "UPDATE messages SET status = 'sent', mid = $2, sending_since = NULL,"
                        " error = NULL WHERE id = $1 AND direction = 'out' AND mid IS NULL",
                        2, params);
        if (rc != CM_OK || cm_pg_affected(pg) == 1) {
            *outcome = INBOUND_STORED;
            return rc;
        }
    }
    rc = inbound_contact_of(r, pg, caches, route, ev->platform, ev->contact, true, contact);
    if (rc == CM_OK)
        rc = inbound_conversation_of(pg, route, ev, contact, false, conv, &opened, &duplicate);
    if (rc == CM_OK)
        rc = inbound_insert_echo(r, pg, route, conv, ev, &inserted);
    *outcome = inserted ? INBOUND_STORED : INBOUND_DUPLICATE;
    return rc;
}

/* read / delivery: a watermark on the contact's latest conversation. */
static int store_watermark(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                           const struct router_route *route, const struct inbound_event *ev,
                           const char *column, enum inbound_outcome *outcome)
{
    char contact[40], ts[32], sql[400];
    int rc = inbound_contact_of(r, pg, caches, route, ev->platform, ev->contact, false, contact);

    if (rc == CM_NOTFOUND) {
        /* A read or delivery from someone we hold nothing of: nothing to record. */
        *outcome = INBOUND_IGNORED;
        return CM_OK;
    }
    if (rc != CM_OK)
        return rc;
    inbound_ts_param(ts, ev->ts_ms);
    snprintf(sql, sizeof(sql),
             "UPDATE conversations SET %s = greatest(%s, to_timestamp($3::double precision))"
             " WHERE id = (SELECT id FROM conversations WHERE integration_id = $1"
             " AND contact_id = $2 ORDER BY created_at DESC LIMIT 1)",
             column, column);
    {
        const char *params[3] = {route->integration_id, contact, ts};
        rc = cm_pg_exec(pg, sql, 3, params);
    }
    *outcome = INBOUND_STORED;
    return rc;
}

/* Finds the route, through the cache of recent answers when there is one. */
static int route_of(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                    const struct inbound_event *ev, struct router_route *route)
{
    char key[160], value[240];
    const char *cached;
    int rc;

    snprintf(key, sizeof(key), "%s:%s", ev->platform, ev->account_id);
    cached = caches && caches->routes ? cache_get(caches->routes, key) : NULL;
    if (cached != NULL && sscanf(cached, "%63[^\t]\t%127[^\t]\t%d", route->integration_id,
                                 route->workspace_id, (int *)&rc) == 3) {
        route->workspace_deleted = rc != 0;
        return CM_OK;
    }
    rc = router_route_find(r, pg, ev->platform, ev->account_id, route);
    if (rc == CM_OK && caches && caches->routes) {
        snprintf(value, sizeof(value), "%s\t%s\t%d", route->integration_id, route->workspace_id,
                 route->workspace_deleted ? 1 : 0);
        cache_put(caches->routes, key, value);
    }
    return rc;
}

/* Whether ev is a complete event of a kind the contact writes (message, postback, referral). */
static bool contact_wrote(const struct inbound_event *ev)
{
    const char *k = ev->kind;

    return ev->platform != NULL && ev->account_id != NULL && k != NULL && ev->event != NULL &&
           ev->contact != NULL && ev->ts_ms > 0 && !ev->standby &&
           (strcmp(k, "message") == 0 || strcmp(k, "postback") == 0 || strcmp(k, "referral") == 0);
}

int inbound_fast_prepare(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                         const struct inbound_event *ev, struct inbound_fast *f, bool *eligible)
{
    int rc;

    memset(f, 0, sizeof(*f));
    cm_buf_init(&f->sealed);
    cm_buf_init(&f->psid_sealed);
    f->ev = ev;
    *eligible = false;
    if (!contact_wrote(ev))
        return CM_OK;
    rc = route_of(r, pg, caches, ev, &f->route);
    if (rc == CM_NOTFOUND || (rc == CM_OK && f->route.workspace_deleted)) {
        f->unrouted = true; /* asked once: the caller counts it without the full path */
        return CM_OK;
    }
    if (rc == CM_OK)
        rc = seal_message(r, pg, caches, f);
    if (rc != CM_OK)
        return rc;
    *eligible = true;
    return CM_OK;
}

int inbound_fast_outcome(struct inbound_caches *caches, struct inbound_fast *f, PGresult *res,
                         enum inbound_outcome *outcome)
{
    if (res == NULL || PQntuples(res) != 1)
        return CM_AGAIN;
    if (f->call.sql == short_sql) {
        if (PQnfields(res) != 3)
            return CM_AGAIN;
        if (strcmp(PQgetvalue(res, 0, 0), "1") != 0)
            return CM_NOTFOUND;
        f->waiting = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
        *outcome = strcmp(PQgetvalue(res, 0, 1), "1") == 0 ? INBOUND_STORED : INBOUND_DUPLICATE;
        return CM_OK;
    }
    /* The full statement: no contact (purged meanwhile) or no conversation is a retry. */
    if (PQnfields(res) != 4 || PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1))
        return CM_AGAIN;
    snprintf(f->contact, sizeof(f->contact), "%s", PQgetvalue(res, 0, 0));
    snprintf(f->conversation, sizeof(f->conversation), "%s", PQgetvalue(res, 0, 1));
    f->waiting = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    *outcome = strcmp(PQgetvalue(res, 0, 3), "t") == 0 ? INBOUND_STORED : INBOUND_DUPLICATE;
    if (!f->known && caches && caches->contacts)
        cache_put(caches->contacts, f->cache_key, f->contact);
    return CM_OK;
}

void inbound_fast_cleanup(struct inbound_fast *f)
{
    cm_buf_wipe(&f->sealed);
    cm_buf_wipe(&f->psid_sealed);
}

int inbound_store(struct router *r, struct cm_pg *pg, struct inbound_caches *caches,
                  const struct inbound_event *ev, enum inbound_outcome *outcome, char *why,
                  size_t cap)
{
    struct router_route route;
    const char *k = ev->kind;
    int rc;

    if (ev->platform == NULL || ev->account_id == NULL || k == NULL || ev->event == NULL) {
        snprintf(why, cap, "not an event of proto/meta-events.md (platform, account_id, kind)");
        return CM_INVALID;
    }
    if (strcmp(k, "other") == 0 || strcmp(k, "change") == 0) {
        *outcome = INBOUND_IGNORED;
        return CM_OK;
    }
    if (ev->contact == NULL || ev->ts_ms <= 0) {
        snprintf(why, cap, "a %s event without sender, recipient or timestamp", k);
        return CM_INVALID;
    }
    rc = route_of(r, pg, caches, ev, &route);
    if (rc == CM_NOTFOUND || (rc == CM_OK && route.workspace_deleted)) {
        /* Collect only what is needed: nothing of an unrouted account is kept. */
        *outcome = INBOUND_UNROUTED;
        return CM_OK;
    }
    if (rc != CM_OK)
        return rc;

    /* What the contact or the other app sent while that app held the thread (thread.c); a
     * standby reaction, edit, unsend, read or delivery changes what it names, as any. */
    if (ev->standby && (strcmp(k, "message") == 0 || strcmp(k, "postback") == 0 ||
                        strcmp(k, "referral") == 0 || strcmp(k, "echo") == 0))
        return thread_store_standby(r, pg, caches, &route, ev, outcome);
    if (strcmp(k, "handover") == 0)
        return thread_store_handover(r, pg, caches, &route, ev, outcome);
    if (strcmp(k, "message") == 0 || strcmp(k, "postback") == 0 || strcmp(k, "referral") == 0)
        return store_inbound(r, pg, caches, ev, outcome);
    if (ev->mid == NULL &&
        (strcmp(k, "unsend") == 0 || strcmp(k, "edit") == 0 || strcmp(k, "reaction") == 0)) {
        snprintf(why, cap, "a %s event without the mid it is about", k);
        return CM_INVALID;
    }
    if (strcmp(k, "echo") == 0)
        return store_echo(r, pg, caches, &route, ev, outcome);
    if (strcmp(k, "unsend") == 0 || strcmp(k, "edit") == 0 || strcmp(k, "reaction") == 0)
        return inbound_store_change(r, pg, &route, ev, outcome);
    if (strcmp(k, "read") == 0)
        return store_watermark(r, pg, caches, &route, ev, "read_watermark", outcome);
    if (strcmp(k, "delivery") == 0)
        return store_watermark(r, pg, caches, &route, ev, "delivered_watermark", outcome);
    *outcome = INBOUND_IGNORED;
    return CM_OK;
}
