-- A contact's conversations, newest first: finding the one to reopen without scanning
-- every conversation of the integration.
CREATE INDEX IF NOT EXISTS conversations_contact ON conversations (contact_id, created_at DESC);
