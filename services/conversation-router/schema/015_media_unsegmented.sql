-- Attachments kept in PostgreSQL before segments join the media worker's queue of pieces to
-- seal again (proto/router.md#media): until now they were sealed again only when first read,
-- so one never read stayed in one piece. The queue's index now covers both stores
-- (524288 is ROUTER_MEDIA_SEGMENT).
DROP INDEX IF EXISTS attachments_unsegmented;
CREATE INDEX IF NOT EXISTS attachments_unsegmented_any ON attachments (id)
    WHERE store IN ('s3', 'postgres') AND segment_size IS NULL AND size > 524288;
