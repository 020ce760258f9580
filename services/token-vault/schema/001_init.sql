-- token-vault: integrations (a business's Instagram or Messenger account connected to a
-- workspace) and their Meta access tokens, sealed with the keyring (key id int:<id>).
CREATE TABLE integrations (
    id              text PRIMARY KEY,
    workspace_id    text NOT NULL,
    platform        text NOT NULL CHECK (platform IN ('instagram', 'messenger')),
    account_id      text NOT NULL,
    asid            text,
    status          text NOT NULL DEFAULT 'connected'
                    CHECK (status IN ('connected', 'needs_reauth', 'disconnected', 'revoked')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    last_checked_at timestamptz,
    last_error      text,
    retry_after     timestamptz   -- a failed refresh or check waits until then
);
-- One live integration per account; an ended one stays listed until its workspace's purge.
CREATE UNIQUE INDEX integrations_live_account ON integrations (platform, account_id)
    WHERE status IN ('connected', 'needs_reauth');
CREATE INDEX integrations_workspace ON integrations (workspace_id);
CREATE INDEX integrations_asid ON integrations (asid) WHERE asid IS NOT NULL;

CREATE TABLE tokens (
    integration_id text PRIMARY KEY REFERENCES integrations (id) ON DELETE CASCADE,
    sealed         bytea NOT NULL,          -- the access token, AES-256-GCM under int:<id>
    obtained_at    timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz              -- NULL: a Page token that does not expire
);
