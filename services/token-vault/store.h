/*
 * store.h - the column order every integration query shares.
 */
#ifndef VAULT_STORE_H
#define VAULT_STORE_H

/* SELECT of one integration as the API describes it; append a WHERE clause. */
#define VAULT_DESCRIBE_SQL                                                                         \
    "SELECT i.id, i.platform, i.account_id, i.status,"                                             \
    " to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"                 \
    " t.integration_id IS NOT NULL, i.workspace_id,"                                               \
    " to_char(i.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"              \
    " i.subscribed_at IS NOT NULL, i.subscription_error"                                           \
    " FROM integrations i LEFT JOIN tokens t ON t.integration_id = i.id"

enum vault_col {
    VAULT_COL_ID = 0,
    VAULT_COL_PLATFORM,
    VAULT_COL_ACCOUNT,
    VAULT_COL_STATUS,
    VAULT_COL_EXPIRES,
    VAULT_COL_HELD,
    VAULT_COL_WORKSPACE,
    VAULT_COL_UPDATED,
    VAULT_COL_SUBSCRIBED,
    VAULT_COL_SUBSCRIPTION_ERROR,
};

#endif
