/*
 * store.c - the vault schema: integrations, their sealed tokens, their state events.
 *
 * A token is sealed under its integration's own data key (key id int:<id>), bound by the
 * additional data to its row, so that ending one integration crypto-shreds exactly its
 * token, and a sealed token copied to another row does not open.
 */
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/audit.h"
#include "common/log.h"
#include "common/outbox.h"
#include "store.h"
#include "vault.h"

int vault_begin(struct cm_pg *pg)
{
    return cm_pg_exec_simple(pg, "BEGIN; SET LOCAL synchronous_commit TO on");
}

static void key_id(char *out, size_t cap, const char *integration_id)
{
    snprintf(out, cap, "int:%s", integration_id);
}

static void aad_of(char *out, size_t cap, const char *integration_id)
{
    snprintf(out, cap, "vault.tokens.sealed:%s", integration_id);
}

int vault_store_token(struct vault *v, struct cm_pg *pg, const char *integration_id,
                      const struct vault_token *token)
{
    char kid[96], aad[128], expires[32];
    struct cm_buf sealed;
    int rc;

    key_id(kid, sizeof(kid), integration_id);
    aad_of(aad, sizeof(aad), integration_id);
    cm_buf_init(&sealed);
    rc = cm_keyring_seal(v->keyring, pg, kid, aad, token->token, strlen(token->token), &sealed);
    if (rc == CM_OK) {
        const char *values[3] = {integration_id, sealed.data, token->expires_at ? expires : NULL};
        const int lengths[3] = {0, (int)sealed.len, 0};
        const int formats[3] = {0, 1, 0};
        snprintf(expires, sizeof(expires), "%lld", (long long)token->expires_at);
        rc =
            cm_pg_exec_params(pg,
                              "INSERT INTO tokens (integration_id, sealed, obtained_at, expires_at)"
                              " VALUES ($1, $2, now(), to_timestamp($3::bigint))"
                              " ON CONFLICT (integration_id) DO UPDATE SET sealed = $2,"
                              " obtained_at = now(), expires_at = to_timestamp($3::bigint)",
                              3, values, lengths, formats, 0);
    }
    cm_buf_cleanup(&sealed);
    return rc;
}

int vault_open_token_buf(struct vault *v, struct cm_pg *pg, const char *integration_id,
                         const char *sealed_text, struct cm_buf *plain)
{
    char kid[96], aad[128];
    unsigned char *raw;
    size_t raw_len = 0;
    int rc;

    raw = PQunescapeBytea((const unsigned char *)sealed_text, &raw_len);
    if (raw == NULL)
        return CM_ERR;
    key_id(kid, sizeof(kid), integration_id);
    aad_of(aad, sizeof(aad), integration_id);
    rc = cm_keyring_open(v->keyring, pg, kid, aad, raw, raw_len, plain);
    PQfreemem(raw);
    return rc;
}

int vault_open_token(struct vault *v, struct cm_pg *pg, const char *integration_id,
                     const char *sealed_text, int64_t expires_at, struct vault_token *out)
{
    struct cm_buf plain;
    int rc;

    out->expires_at = expires_at;
    cm_buf_init(&plain);
    rc = vault_open_token_buf(v, pg, integration_id, sealed_text, &plain);
    if (rc == CM_OK) {
        out->token = sodium_malloc(plain.len + 1);
        if (out->token == NULL)
            abort();
        memcpy(out->token, plain.data, plain.len);
        out->token[plain.len] = '\0';
    }
    cm_buf_wipe(&plain);
    return rc;
}

int vault_load_token(struct vault *v, struct cm_pg *pg, const char *integration_id,
                     struct vault_token *out)
{
    const char *params[1] = {integration_id};
    char *sealed;
    int64_t expires;
    int rc;

    rc = cm_pg_exec(pg,
                    "SELECT sealed, coalesce(extract(epoch FROM expires_at)::bigint, 0)"
                    " FROM tokens WHERE integration_id = $1",
                    1, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    sealed = cm_xstrdup(cm_pg_value(pg, 0, 0));
    expires = strtoll(cm_pg_value(pg, 0, 1), NULL, 10);
    rc = vault_open_token(v, pg, integration_id, sealed, expires, out);
    free(sealed);
    return rc;
}

/* Builds and queues the state event; status overrides the row's status when not NULL. */
static int queue_event(struct cm_pg *pg, const char *integration_id, const char *status)
{
    const char *params[1] = {integration_id};
    char subject[160], msg_id[200];
    cJSON *ev;
    char *payload;
    int rc;

    rc = cm_pg_exec(pg, VAULT_DESCRIBE_SQL " WHERE i.id = $1", 1, params);
    if (rc != CM_OK)
        return rc;
    if (cm_pg_ntuples(pg) == 0)
        return CM_NOTFOUND;
    ev = vault_store_describe(pg, 0);
    if (status != NULL)
        cJSON_ReplaceItemInObject(ev, "status", cJSON_CreateString(status));
    cJSON_AddStringToObject(ev, "workspace_id", cm_pg_value(pg, 0, VAULT_COL_WORKSPACE));
    cJSON_AddStringToObject(ev, "at", cm_pg_value(pg, 0, VAULT_COL_UPDATED));
    payload = cJSON_PrintUnformatted(ev);
    snprintf(subject, sizeof(subject), "vault.events.integration.%s", integration_id);
    /* The status is part of the identity: a purge may follow an ended state at once. */
    snprintf(msg_id, sizeof(msg_id), "vault:%s:%s:%s", integration_id,
             status ? status : cm_pg_value(pg, 0, VAULT_COL_STATUS),
             cm_pg_value(pg, 0, VAULT_COL_UPDATED));
    rc = cm_outbox_add(pg, subject, msg_id, payload);
    cJSON_free(payload);
    cJSON_Delete(ev);
    return rc;
}

int vault_store_event(struct cm_pg *pg, const char *integration_id)
{
    return queue_event(pg, integration_id, NULL);
}

int vault_store_purged_event(struct cm_pg *pg, const char *integration_id)
{
    return queue_event(pg, integration_id, "purged");
}

cJSON *vault_store_describe(struct cm_pg *pg, int row)
{
    cJSON *o = cJSON_CreateObject();
    const char *status = cm_pg_value(pg, row, VAULT_COL_STATUS);

    cJSON_AddStringToObject(o, "integration_id", cm_pg_value(pg, row, VAULT_COL_ID));
    cJSON_AddStringToObject(o, "platform", cm_pg_value(pg, row, VAULT_COL_PLATFORM));
    cJSON_AddStringToObject(o, "account_id", cm_pg_value(pg, row, VAULT_COL_ACCOUNT));
    cJSON_AddStringToObject(o, "status", status);
    if (cm_pg_is_null(pg, row, VAULT_COL_EXPIRES))
        cJSON_AddNullToObject(o, "expires_at");
    else
        cJSON_AddStringToObject(o, "expires_at", cm_pg_value(pg, row, VAULT_COL_EXPIRES));
    cJSON_AddBoolToObject(o, "needs_reauth", strcmp(status, "needs_reauth") == 0);
    cJSON_AddBoolToObject(o, "token_held", strcmp(cm_pg_value(pg, row, VAULT_COL_HELD), "t") == 0);
    cJSON_AddBoolToObject(o, "subscribed",
                          strcmp(cm_pg_value(pg, row, VAULT_COL_SUBSCRIBED), "t") == 0);
    if (!cm_pg_is_null(pg, row, VAULT_COL_SUBSCRIPTION_ERROR))
        cJSON_AddStringToObject(o, "subscription_error",
                                cm_pg_value(pg, row, VAULT_COL_SUBSCRIPTION_ERROR));
    return o;
}

int vault_store_end(struct vault *v, struct cm_pg *pg, const char *integration_id,
                    const char *status, const char *actor, const char *action, long *tokens)
{
    const char *params[2] = {integration_id, status};
    char kid[96];
    long shredded = 0, deleted = 0;
    int rc;

    if (tokens != NULL)
        *tokens = 0;
    rc = vault_begin(pg);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg,
                        "UPDATE integrations SET status = $2, ended_at = now(), updated_at = now()"
                        " WHERE id = $1 AND status IN ('connected', 'needs_reauth')",
                        2, params);
    if (rc == CM_OK && cm_pg_affected(pg) == 0) {
        /* Already ended (a repeated call) or unknown: nothing more to do. */
        rc = cm_pg_exec(pg, "SELECT 1 FROM integrations WHERE id = $1", 1, params);
        if (rc == CM_OK)
            rc = cm_pg_ntuples(pg) == 0 ? CM_NOTFOUND : CM_CONFLICT;
        cm_pg_rollback(pg);
        return rc;
    }
    /* From here on the token is never served: the key is gone, then the row. */
    key_id(kid, sizeof(kid), integration_id);
    if (rc == CM_OK)
        rc = cm_keyring_shred(v->keyring, pg, kid, &shredded);
    if (rc == CM_OK)
        rc = cm_pg_exec(pg, "DELETE FROM tokens WHERE integration_id = $1", 1, params);
    if (rc == CM_OK)
        deleted = cm_pg_affected(pg);
    if (rc == CM_OK)
        rc = vault_store_event(pg, integration_id);
    if (rc == CM_OK)
        rc = cm_audit_add(pg, VAULT_SERVICE, actor, action, integration_id);
    if (rc == CM_OK)
        rc = cm_pg_commit(pg);
    if (rc != CM_OK)
        cm_pg_rollback(pg);
    if (rc == CM_OK && tokens != NULL)
        *tokens = deleted;
    return rc;
}
