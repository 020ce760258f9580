-- Meta's message ids (mid) are looked up within one integration, never across tenants: an
-- unsend, edit or reaction arriving through integration B must not reach integration A's
-- message of the same mid. Each message names its integration, and the unique key that
-- makes storing idempotent is (integration, mid), no longer (platform, mid).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS integration_id text;
UPDATE messages m SET integration_id = c.integration_id
  FROM conversations c WHERE c.id = m.conversation_id AND m.integration_id IS NULL;
ALTER TABLE messages ALTER COLUMN integration_id SET NOT NULL;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_platform_mid_key;
CREATE UNIQUE INDEX IF NOT EXISTS messages_integration_mid ON messages (integration_id, mid);
