-- conversation-router: workspaces, members, the routes projection, contacts,
-- conversations and messages. Message bodies, reactions, contact ids and profile data
-- are sealed with the keyring under the workspace's key (ws:<id>); contacts are found
-- through a keyed hash of their id (a blind index), never by a plaintext PSID or IGSID.
CREATE TABLE workspaces (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    ai          boolean NOT NULL DEFAULT false,
    mask_pii    boolean NOT NULL DEFAULT true,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE members (
    workspace_id     text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id          text NOT NULL,
    role             text NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'viewer')),
    capacity         integer NOT NULL DEFAULT 10 CHECK (capacity >= 0),
    last_assigned_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);

-- This service's projection of token-vault's integration events.
CREATE TABLE routes (
    integration_id text PRIMARY KEY,
    workspace_id   text NOT NULL,
    platform       text NOT NULL CHECK (platform IN ('instagram', 'messenger')),
    account_id     text NOT NULL,
    status         text NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX routes_live ON routes (platform, account_id)
    WHERE status IN ('connected', 'needs_reauth');

-- The per-workspace key of the blind index, sealed under the workspace's data key.
CREATE TABLE index_keys (
    workspace_id text PRIMARY KEY,
    sealed       bytea NOT NULL
);

CREATE TABLE contacts (
    id             text PRIMARY KEY,
    workspace_id   text NOT NULL,
    integration_id text NOT NULL,
    platform       text NOT NULL,
    blind          bytea NOT NULL,  -- HMAC-SHA256(index key, integration id : PSID/IGSID)
    psid_sealed    bytea NOT NULL,
    profile_sealed bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (integration_id, blind)
);
CREATE INDEX contacts_workspace ON contacts (workspace_id);

CREATE TABLE conversations (
    id                  text PRIMARY KEY,
    workspace_id        text NOT NULL,
    integration_id      text NOT NULL,
    contact_id          text NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    platform            text NOT NULL,
    status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    assignee            text,
    last_inbound_at     timestamptz,     -- Meta's timestamp of the contact's last message
    last_activity_at    timestamptz NOT NULL DEFAULT now(),
    read_watermark      timestamptz,
    delivered_watermark timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    closed_at           timestamptz
);
CREATE UNIQUE INDEX conversations_one_open ON conversations (integration_id, contact_id)
    WHERE status = 'open';
CREATE INDEX conversations_workspace ON conversations (workspace_id, last_activity_at DESC);
CREATE INDEX conversations_assignee ON conversations (workspace_id, assignee) WHERE status = 'open';
CREATE INDEX conversations_integration ON conversations (integration_id);

CREATE TABLE messages (
    id              text PRIMARY KEY,
    seq             bigserial NOT NULL,   -- arrival order, the tie-break after Meta's time
    conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    workspace_id    text NOT NULL,
    platform        text NOT NULL,
    mid             text,                 -- Meta's message id; NULL until an outbound is sent
    direction       text NOT NULL CHECK (direction IN ('in', 'out')),
    kind            text NOT NULL DEFAULT 'message',
    body_sealed     bytea,                -- {text, attachments, quick_reply, reply_to}; NULL once unsent
    reaction_sealed bytea,
    sent_at         timestamptz NOT NULL, -- Meta's timestamp
    status          text NOT NULL CHECK (status IN ('received', 'queued', 'sent', 'failed')),
    edit_count      integer NOT NULL DEFAULT 0,
    deleted         boolean NOT NULL DEFAULT false,
    ai_drafted      boolean NOT NULL DEFAULT false,
    human_agent     boolean NOT NULL DEFAULT false,
    suggestion_id   text,
    attempts        integer NOT NULL DEFAULT 0,
    sending_since   timestamptz,          -- a send attempt is (or may be) in flight
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (platform, mid)
);
CREATE INDEX messages_conversation ON messages (conversation_id, sent_at, seq);
CREATE INDEX messages_workspace ON messages (workspace_id);
