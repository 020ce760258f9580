-- retention-reaper: the audit log (a hash chain), Meta's data-deletion requests and the
-- workspaces waiting for their purge. See proto/reaper.md.

-- The audit log: append-only, one row per audit event, in a hash chain. hash is the hex
-- SHA-256 of the previous entry's hash and this entry's canonical form (audit.c). seq is
-- contiguous: it is assigned under the lock of the audit_chain row.
CREATE TABLE audit_log (
    seq         bigint PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,   -- the event's id: a redelivery is stored once
    at          timestamptz NOT NULL,   -- when the action happened (never after appended_at)
    service     text NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    hash        text NOT NULL,
    appended_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audit_log_at ON audit_log (at);

-- The head of the chain (one row). last_*: the newest entry; anchor_*: what the oldest entry
-- still held chains from (the hash of the last entry deleted by retention; zeros at first).
CREATE TABLE audit_chain (
    id          integer PRIMARY KEY CHECK (id = 1),
    last_seq    bigint NOT NULL,
    last_hash   text NOT NULL,
    anchor_seq  bigint NOT NULL,
    anchor_hash text NOT NULL
);
INSERT INTO audit_chain VALUES (1, 0, repeat('0', 64), 0, repeat('0', 64));

-- Secrets of the reaper's own, sealed with the keyring (the pepper of user_key, below).
CREATE TABLE secrets (
    name   text PRIMARY KEY,
    sealed bytea NOT NULL
);

-- Meta's data-deletion requests. The app-scoped user id is sealed (key id del:<id>) and
-- shredded when the request completes; user_key is HMAC-SHA256(pepper, user id), which names
-- nobody without the sealed pepper, and lets a repeated callback find its request.
CREATE TABLE deletion_requests (
    id              bigserial PRIMARY KEY,
    user_sealed     bytea,
    user_key        text,
    issued_at       bigint,                 -- Meta's issued_at, to recognise a retried callback
    status          text NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'in_progress', 'completed', 'refused')),
    reason          text,                   -- why refused, or 'no data held'
    integrations    jsonb NOT NULL DEFAULT '[]',  -- what vault.integration.find named, ever
    deleted         jsonb NOT NULL DEFAULT '{}',  -- counts by kind, accumulated
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
-- One open request per user: a second callback joins it.
CREATE UNIQUE INDEX deletion_requests_open_user ON deletion_requests (user_key)
    WHERE status IN ('received', 'in_progress');
CREATE INDEX deletion_requests_open ON deletion_requests (next_attempt_at)
    WHERE status IN ('received', 'in_progress');

-- Confirmation codes: only their SHA-256 is kept, so the table does not reveal them.
CREATE TABLE deletion_codes (
    code_hash  text PRIMARY KEY,
    request_id bigint NOT NULL REFERENCES deletion_requests (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deletion_codes_request ON deletion_codes (request_id);

-- Deleted workspaces, until (and after) their purge.
CREATE TABLE workspace_deletions (
    workspace_id  text PRIMARY KEY,
    deleted_at    timestamptz NOT NULL,
    purge_due_at  timestamptz NOT NULL,
    deleted_by    text NOT NULL,
    integrations  jsonb NOT NULL DEFAULT '[]',  -- [{integration_id, platform, account_id}]
    tokens_done   boolean NOT NULL DEFAULT false, -- every integration disconnected
    deleted       jsonb NOT NULL DEFAULT '{}',
    last_error    text,
    purged_at     timestamptz
);
CREATE INDEX workspace_deletions_due ON workspace_deletions (purge_due_at)
    WHERE purged_at IS NULL;

-- The state of the schedule: when the vault last confirmed that no ended token was left.
CREATE TABLE schedule_state (
    id               integer PRIMARY KEY CHECK (id = 1),
    tokens_clean_at  timestamptz,
    last_pass_at     timestamptz
);
INSERT INTO schedule_state VALUES (1, NULL, NULL);
