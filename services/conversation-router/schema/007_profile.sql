-- Contacts' profiles (name and picture) from Meta's User Profile API, fetched in the background
-- (profile.c). The profile lives on its contact's row, sealed under the integration's data key
-- like message text (profile_sealed, from 001), so it goes with the contact in every purge and
-- is unreadable once the key is shredded. Beside it only when to fetch next and what the last
-- answer was: nothing of a refusal but the fact and its time.
--
-- A new contact is due at once (the default); every replica claims due contacts through
-- profile_claim() (FOR NO KEY UPDATE SKIP LOCKED, then the due time moved past a lease), so two
-- replicas never fetch one contact at once, and a replica that dies mid-fetch leaves the
-- contact due again when its lease ends. Idempotent: IF NOT EXISTS, CREATE OR REPLACE.
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS profile_due_at timestamptz DEFAULT now();
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS profile_state text NOT NULL DEFAULT 'none'
    CHECK (profile_state IN ('none', 'fetched', 'refused'));
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS profile_at timestamptz; -- Meta's last answer
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS profile_attempts integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS contacts_profile_due ON contacts (profile_due_at)
    WHERE profile_due_at IS NOT NULL;

-- The fetch rate of every replica together: one token bucket (tokens, refilled from at), and
-- a pause while Meta says the app's own limit is reached (code 4).
CREATE TABLE IF NOT EXISTS profile_pace (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    tokens       double precision NOT NULL,
    at           timestamptz NOT NULL,
    paused_until timestamptz
);

-- Claims at most p_max due contacts, as many as the bucket (p_per_s a second, at most p_burst
-- at once) allows, and moves their due time p_lease ahead. o_live: the contact's integration is
-- connected and its workspace active (otherwise the caller only reschedules it).
CREATE OR REPLACE FUNCTION profile_claim(p_per_s double precision, p_burst double precision,
                                         p_max integer, p_lease interval)
    RETURNS TABLE (o_id text, o_workspace text, o_integration text, o_platform text,
                   o_psid bytea, o_live boolean)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_tokens double precision;
    v_at timestamptz;
    v_paused timestamptz;
    v_n integer := 0;
    v_got integer := 0;
BEGIN
    INSERT INTO profile_pace (id, tokens, at) VALUES (true, p_burst, clock_timestamp())
    ON CONFLICT (id) DO NOTHING;
    SELECT p.tokens, p.at, p.paused_until INTO v_tokens, v_at, v_paused
      FROM profile_pace p WHERE p.id FOR UPDATE;
    v_tokens := least(p_burst, v_tokens + extract(epoch FROM clock_timestamp() - v_at) * p_per_s);
    IF v_paused IS NULL OR v_paused <= clock_timestamp() THEN
        v_n := least(p_max, floor(v_tokens)::integer);
    END IF;
    IF v_n > 0 THEN
        RETURN QUERY
        WITH due AS (
            SELECT c.id FROM contacts c
             WHERE c.profile_due_at <= now()
             ORDER BY c.profile_due_at LIMIT v_n
               FOR NO KEY UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE contacts c SET profile_due_at = now() + p_lease
              FROM due WHERE c.id = due.id
            RETURNING c.id, c.workspace_id, c.integration_id, c.platform, c.psid_sealed
        )
        SELECT k.id, k.workspace_id, k.integration_id, k.platform, k.psid_sealed,
               coalesce(r.status = 'connected' AND w.status = 'active', false)
          FROM claimed k
          LEFT JOIN routes r ON r.integration_id = k.integration_id
          LEFT JOIN workspaces w ON w.id = k.workspace_id;
        GET DIAGNOSTICS v_got = ROW_COUNT;
    END IF;
    UPDATE profile_pace p SET tokens = v_tokens - v_got, at = clock_timestamp() WHERE p.id;
END
$$;
