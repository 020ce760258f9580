-- Each suggestion names the key id that seals its draft and audio: ws:<ws>:int:<integration>
-- since this migration, so that an integration's purge shreds exactly its drafts (Meta's
-- data-deletion callback names an integration); rows written before it were sealed under
-- the workspace's key, ws:<ws>, and keep it.
ALTER TABLE suggestions ADD COLUMN IF NOT EXISTS key_id text;
UPDATE suggestions SET key_id = 'ws:' || workspace_id WHERE key_id IS NULL;
ALTER TABLE suggestions ALTER COLUMN key_id SET NOT NULL;
