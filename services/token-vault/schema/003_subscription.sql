-- The account's webhook subscription (POST subscribed_apps): when Meta last confirmed it,
-- when the vault last compared it with Meta's view, and why the last attempt failed.
ALTER TABLE integrations ADD COLUMN subscribed_at timestamptz;
ALTER TABLE integrations ADD COLUMN subscription_checked_at timestamptz;
ALTER TABLE integrations ADD COLUMN subscription_error text;
