-- Backfill through Meta's Conversations API (proto/router.md#backfill): one job per
-- integration, its progress kept here rather than in one process's memory, so that a crash
-- or a second replica takes it up where it stopped. A replica claims a job by a lease
-- (lease_until) taken with FOR UPDATE SKIP LOCKED; a lease that ran out (its process died)
-- may be claimed again. Progress is a page of Meta's conversation list (page_cursor, Meta's
-- opaque "after" cursor of the page before it; NULL: the first page) and how many of that
-- page's conversations are done (page_done): a crash repeats at most one conversation, whose
-- messages are then found held (one per (integration, mid)). Nothing here is Platform Data:
-- Meta's cursors are opaque, and error holds Meta's reason, never a message's content.
-- Idempotent: IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS backfill_jobs (
    integration_id text PRIMARY KEY REFERENCES routes (integration_id) ON DELETE CASCADE,
    since          timestamptz NOT NULL, -- Meta's time from which messages are fetched
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'running', 'done', 'failed')),
    page_cursor    text,
    page_done      integer NOT NULL DEFAULT 0,
    generation     integer NOT NULL DEFAULT 0, -- moves when a request restarts the walk
    again          boolean NOT NULL DEFAULT false, -- asked while walking: walk once more
    stored         bigint NOT NULL DEFAULT 0, -- messages stored since the job was (re)started
    duplicates     bigint NOT NULL DEFAULT 0, -- messages found already held
    calls          bigint NOT NULL DEFAULT 0, -- Graph API calls made
    last_call_at   double precision, -- epoch seconds of the last: the pacing of any replica
    throttled      integer NOT NULL DEFAULT 0, -- throttling answers and usage pauses met
    failures       integer NOT NULL DEFAULT 0, -- passing failures in a row
    not_before     timestamptz, -- Meta asked to wait (throttling) or a failure backs off
    lease_until    timestamptz,
    error          text,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz
);
CREATE INDEX IF NOT EXISTS backfill_jobs_due ON backfill_jobs (requested_at)
    WHERE state IN ('pending', 'running');
