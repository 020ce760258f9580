-- ai-suggest: suggested replies. The draft and its optional audio are sealed with the keyring
-- under the workspace's data key (key id ws:<workspace_id>), each bound by its additional data
-- to its row and column (ai.suggestions.text:<id>, ai.suggestions.audio:<id>): no message
-- or draft is ever stored in plaintext. The other columns are ids, names and counts.
CREATE TABLE suggestions (
    id                text PRIMARY KEY,
    workspace_id      text NOT NULL,
    integration_id    text,
    conversation_id   text NOT NULL,
    actor             text NOT NULL,         -- who asked for it (a user id or "operator")
    provider          text NOT NULL CHECK (provider IN ('openai', 'gemini')),
    model             text NOT NULL,         -- as the provider named it in its answer
    text_sealed       bytea NOT NULL,
    audio_sealed      bytea,                 -- NULL without voice
    audio_type        text,                  -- "audio/mpeg"
    audio_bytes       integer,
    latency_ms        integer NOT NULL,      -- the provider call that answered, retries included
    prompt_tokens     integer,               -- NULL when the provider did not say
    completion_tokens integer,
    masked_items      integer NOT NULL DEFAULT 0, -- personal data items masked before sending
    created_at        timestamptz NOT NULL DEFAULT now()
);
-- The purge scopes (proto/purge.md) and the retention schedule find rows by these.
CREATE INDEX suggestions_workspace ON suggestions (workspace_id);
CREATE INDEX suggestions_integration ON suggestions (integration_id)
    WHERE integration_id IS NOT NULL;
CREATE INDEX suggestions_conversation ON suggestions (conversation_id);
CREATE INDEX suggestions_created ON suggestions (created_at);
