-- Who connected each integration: the app-scoped user id (asid) that Meta's deauthorize and
-- data-deletion callbacks name, learnt from the token at connect (GET /me) or given by the
-- operator. Kept only as a blind index, HMAC-SHA256 under the vault's index key, so the
-- callbacks find their integrations while the table holds no Meta user id.
ALTER TABLE integrations ADD COLUMN asid_blind text;
ALTER TABLE integrations ADD COLUMN asid_source text CHECK (asid_source IN ('meta', 'operator'));
CREATE INDEX integrations_asid_blind ON integrations (asid_blind) WHERE asid_blind IS NOT NULL;

-- Everyone who ever connected an integration (a reconnect by someone else adds a row):
-- integrations.asid_blind is who holds the current token, which a deauthorize ends; a data
-- deletion request reaches every integration its person connected.
CREATE TABLE connectors (
    integration_id text NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    asid_blind     text NOT NULL,
    source         text NOT NULL CHECK (source IN ('meta', 'operator')),
    connected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, asid_blind)
);
CREATE INDEX connectors_asid_blind ON connectors (asid_blind);

-- The index key: 32 random bytes, sealed by the keyring under the key id vault:index. The
-- plaintext asid column of earlier versions is turned into asid_blind and emptied when the
-- vault starts (asid.c).
CREATE TABLE index_key (
    id     int PRIMARY KEY CHECK (id = 1),
    sealed bytea NOT NULL
);
