-- Attachments and the media store (proto/router.md#media). A message's attachments are
-- rows here, each with its state:
--   pending      Meta's CDN URL is held (sealed) until the media worker downloads it;
--   stored       the bytes are in the media store, sealed under the integration's key:
--                the media table below (store 'postgres') or an S3 bucket (store 's3');
--   reference    a kind Meta's terms forbid storing (a story mention): only its URL is held,
--                sealed, until due_at, when it is forgotten;
--   unavailable  nothing could be kept (expired at Meta, over MEDIA_MAX_BYTES, refused);
--                error says why, and no URL or byte is held.
-- direction 'in': the media came from Meta (a contact's message, a standby message, an echo
-- of the business's from another app, a backfilled message; media_in.c captures them with
-- their message, and only the media worker, media_fetch.c, downloads them); 'out': a reply's
-- file, stored before it is sent.
-- Rows go with their message (ON DELETE CASCADE), so every purge that deletes messages
-- deletes their media; an S3 object's key is then queued in media_doomed (by the trigger
-- below, whatever the purge), and the media worker deletes it from the bucket. The
-- integration's key is shredded by the purge itself, so a doomed object is unreadable
-- before it is deleted.
CREATE TABLE IF NOT EXISTS attachments (
    id              text PRIMARY KEY,
    message_id      text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id text NOT NULL,
    workspace_id    text NOT NULL,
    integration_id  text NOT NULL,
    position        integer NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('in', 'out')),
    type            text NOT NULL, -- image, video, audio, file, story_mention
    state           text NOT NULL
                    CHECK (state IN ('pending', 'stored', 'reference', 'unavailable')),
    source_sealed   bytea,         -- the CDN URL (pending, reference); NULL otherwise
    size            bigint,        -- bytes, once stored
    content_type    text,
    store           text CHECK (store IN ('postgres', 's3')),
    attempts        integer NOT NULL DEFAULT 0,
    due_at          timestamptz,   -- pending: the next attempt; reference: when it expires
    lease_until     timestamptz,   -- a worker holds it until then
    error           text,          -- why it is unavailable, or the last failure
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, position)
);
CREATE INDEX IF NOT EXISTS attachments_due ON attachments (due_at)
    WHERE state IN ('pending', 'reference');
CREATE INDEX IF NOT EXISTS attachments_conversation ON attachments (conversation_id);

-- The PostgreSQL media store: sealed bytes (router.media:<attachment id> bound in).
CREATE TABLE IF NOT EXISTS media (
    attachment_id text PRIMARY KEY REFERENCES attachments (id) ON DELETE CASCADE,
    sealed        bytea NOT NULL
);
ALTER TABLE media ALTER COLUMN sealed SET STORAGE EXTERNAL; -- sealed bytes do not compress

-- Objects of deleted attachments still to delete from the S3 bucket.
CREATE TABLE IF NOT EXISTS media_doomed (
    object_key text PRIMARY KEY,
    since      timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0
);

CREATE OR REPLACE FUNCTION media_doom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.store = 's3' THEN
        INSERT INTO media_doomed (object_key) VALUES ('media/' || OLD.id)
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN OLD;
END $$;
DROP TRIGGER IF EXISTS attachments_doom ON attachments;
CREATE TRIGGER attachments_doom AFTER DELETE ON attachments
    FOR EACH ROW EXECUTE FUNCTION media_doom();
