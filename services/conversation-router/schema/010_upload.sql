-- Replies with a file (proto/router.md#router.upload): the file arrives over NATS in chunks of
-- at most 512 KiB, each sealed under the conversation's integration's key (bound to
-- router.upload_parts:<upload id>:<offset>), until router.reply takes the complete upload: it
-- assembles the parts into the media store (an outbound attachments row) and deletes them.
-- An upload not taken within an hour is deleted by the next upload (uploads_expired). A
-- conversation's purge deletes its uploads with it.
CREATE TABLE IF NOT EXISTS uploads (
    id              text PRIMARY KEY,
    conversation_id text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    workspace_id    text NOT NULL,
    integration_id  text NOT NULL,
    caller          text NOT NULL, -- the NATS identity that opened it; every chunk's must match
    actor           text NOT NULL,
    type            text NOT NULL CHECK (type IN ('image', 'video', 'audio', 'file')),
    content_type    text NOT NULL,
    size            bigint NOT NULL CHECK (size > 0),
    received        bigint NOT NULL DEFAULT 0,
    complete        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL DEFAULT now() + interval '1 hour'
);
CREATE INDEX IF NOT EXISTS uploads_expires ON uploads (expires_at);
CREATE INDEX IF NOT EXISTS uploads_conversation ON uploads (conversation_id);

CREATE TABLE IF NOT EXISTS upload_parts (
    upload_id text NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    "offset"  bigint NOT NULL,
    len       integer NOT NULL,
    sealed    bytea NOT NULL,
    PRIMARY KEY (upload_id, "offset")
);
ALTER TABLE upload_parts ALTER COLUMN sealed SET STORAGE EXTERNAL; -- sealed bytes do not compress

-- Meta's id of an outbound attachment once uploaded (Attachment Upload API): the send after a
-- retry uses it rather than uploading the bytes again.
ALTER TABLE attachments ADD COLUMN IF NOT EXISTS meta_attachment_id text;
