-- Public links of reply files (proto/router.md#routermediapublic). Instagram API with Instagram
-- Login sends media only from a URL that Meta fetches, so a reply's file on Instagram is
-- offered at <PUBLIC_BASE_URL>/api/v1/media?token=<token>, served by webhook-ingest, which asks
-- the router for the bytes. A link is a capability: 32 random bytes that only the Send API
-- request carrying it ever holds. The router keeps only their SHA-256 here, so a copy of this
-- table opens nothing. A link expires at expires_at (an hour after the send attempt that made
-- it); the next link made deletes expired ones. A link goes with its attachment, and so with
-- every purge.
CREATE TABLE IF NOT EXISTS media_links (
    token_hash    bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    attachment_id text NOT NULL REFERENCES attachments (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    fetches       integer NOT NULL DEFAULT 0 -- reads of its first byte: Meta's fetches
);
CREATE INDEX IF NOT EXISTS media_links_expires ON media_links (expires_at);
CREATE INDEX IF NOT EXISTS media_links_attachment ON media_links (attachment_id);
