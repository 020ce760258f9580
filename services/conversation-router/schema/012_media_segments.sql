-- Attachments sealed in segments (proto/router.md#media). A reader asks for an attachment in
-- chunks of ROUTER_MEDIA_SEGMENT bytes (512 KiB), so a file larger than that is sealed as
-- consecutive segments of that many bytes, each on its own (router.media:<id>:<index>/<count>
-- bound in), and a chunk costs one segment's read and opening, not the whole file's.
--   segment_size    plaintext bytes of every segment but the last; NULL: one piece, sealed
--                   with router.media:<id> bound in (every attachment of one segment, and
--                   every attachment stored before this migration)
--   segment_stride  sealed bytes of every segment but the last: segment i starts there times
--                   i, in the media table's bytea (read with substring()) or the S3 object
--                   (read with a Range request)
ALTER TABLE attachments ADD COLUMN IF NOT EXISTS segment_size integer
    CHECK (segment_size > 0);
ALTER TABLE attachments ADD COLUMN IF NOT EXISTS segment_stride integer
    CHECK (segment_stride > segment_size);
