-- profile_claim() (007) returns what fetching a claimed contact needs of its row, the attempts
-- so far included, so that its caller reads nothing of contacts after the claim. A join of its
-- result with contacts in the calling statement read contacts in that statement's snapshot,
-- taken before the function's own: a contact committed in between was claimed (its due time
-- moved a lease ahead) and dropped by the join, unasked until the lease ran out. The return
-- type changes, so the function is dropped first. Idempotent: IF EXISTS, CREATE OR REPLACE.
DROP FUNCTION IF EXISTS profile_claim(double precision, double precision, integer, interval);

-- Claims at most p_max due contacts, as many as the bucket (p_per_s a second, at most p_burst
-- at once) allows, and moves their due time p_lease ahead. o_live: the contact's integration is
-- connected and its workspace active (otherwise the caller only reschedules it); o_attempts:
-- the failed or throttled fetches since the last answer about the person.
CREATE OR REPLACE FUNCTION profile_claim(p_per_s double precision, p_burst double precision,
                                         p_max integer, p_lease interval)
    RETURNS TABLE (o_id text, o_workspace text, o_integration text, o_platform text,
                   o_psid bytea, o_live boolean, o_attempts integer)
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
            RETURNING c.id, c.workspace_id, c.integration_id, c.platform, c.psid_sealed,
                      c.profile_attempts
        )
        SELECT k.id, k.workspace_id, k.integration_id, k.platform, k.psid_sealed,
               coalesce(r.status = 'connected' AND w.status = 'active', false),
               k.profile_attempts
          FROM claimed k
          LEFT JOIN routes r ON r.integration_id = k.integration_id
          LEFT JOIN workspaces w ON w.id = k.workspace_id;
        GET DIAGNOSTICS v_got = ROW_COUNT;
    END IF;
    UPDATE profile_pace p SET tokens = v_tokens - v_got, at = clock_timestamp() WHERE p.id;
END
$$;
