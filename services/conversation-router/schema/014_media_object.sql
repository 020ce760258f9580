-- An attachment's S3 object under a key of its own choosing (proto/router.md#media). Until
-- now an attachment's object was always media/<id>. One stored in S3 before segments (one
-- piece larger than a reader's chunk) is sealed again in segments by the media worker and put
-- under a new key, so that no reader ever sees half of a rewritten object; the row then names
-- it.
--   object_key  the S3 object holding the bytes; NULL: media/<id>
ALTER TABLE attachments ADD COLUMN IF NOT EXISTS object_key text;
-- The S3 attachments still in one piece larger than a chunk: the media worker's queue, empty
-- once they are all sealed again (524288 is ROUTER_MEDIA_SEGMENT).
CREATE INDEX IF NOT EXISTS attachments_unsegmented ON attachments (id)
    WHERE store = 's3' AND segment_size IS NULL AND size > 524288;

-- A doomed object is deleted once due_at has passed. An object replaced by a new key is due
-- ten minutes later, so that a reader that took the old key from the row just before can
-- still read it; when its attachment is deleted, it is due at once.
ALTER TABLE media_doomed ADD COLUMN IF NOT EXISTS attachment_id text;
ALTER TABLE media_doomed ADD COLUMN IF NOT EXISTS due_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS media_doomed_attachment ON media_doomed (attachment_id);
-- The sweep takes the earliest due first, a batch at a time: after a purge of many
-- attachments, each batch reads the index rather than sorting the whole queue.
CREATE INDEX IF NOT EXISTS media_doomed_due ON media_doomed (due_at);

CREATE OR REPLACE FUNCTION media_doom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.store IS DISTINCT FROM 's3' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO media_doomed (object_key, attachment_id)
            VALUES (coalesce(OLD.object_key, 'media/' || OLD.id), OLD.id)
            ON CONFLICT (object_key) DO UPDATE SET due_at = least(media_doomed.due_at, now());
        UPDATE media_doomed SET due_at = now() WHERE attachment_id = OLD.id AND due_at > now();
    ELSIF NEW.object_key IS DISTINCT FROM OLD.object_key THEN
        INSERT INTO media_doomed (object_key, attachment_id, due_at)
            VALUES (coalesce(OLD.object_key, 'media/' || OLD.id), OLD.id,
                    now() + interval '10 minutes')
            ON CONFLICT (object_key) DO NOTHING;
    END IF;
    RETURN OLD;
END $$;
DROP TRIGGER IF EXISTS attachments_rekey ON attachments;
CREATE TRIGGER attachments_rekey AFTER UPDATE OF object_key ON attachments
    FOR EACH ROW EXECUTE FUNCTION media_doom();
