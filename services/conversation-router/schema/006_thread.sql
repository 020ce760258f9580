-- Thread control (Meta's handover protocol / Conversation Routing) and mark_seen.
--
-- conversations.thread_held: whether this app holds the thread with the contact, as Meta last
-- said it (thread_at, Meta's timestamp of the event that said so, or the time of our own take):
-- a standby event or a take_thread_control webhook says another app holds it; a contact's
-- message delivered through messaging[], a pass_thread_control webhook, or our own take says we
-- do. A thread is held until Meta says otherwise (a new contact writes through messaging[]).
-- messages.standby: what the contact sent while another app held the thread, and that app's
-- echoes. workspaces.mark_seen: the workspace asks for Meta's mark_seen when a member reads a
-- conversation; conversations.seen_upto: Meta's time of the newest inbound message marked seen,
-- so that a message is marked once however many pages show it.
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS thread_held boolean NOT NULL DEFAULT true;
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS thread_at timestamptz;
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS seen_upto timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS standby boolean NOT NULL DEFAULT false;
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS mark_seen boolean NOT NULL DEFAULT false;

-- 005's inbound_message(), with one change: the contact's message, delivered to this app
-- through messaging[] (standby events never come here), says this app holds the thread unless
-- Meta said otherwise after it (thread_at). thread_held is false only with thread_at set, so
-- "held OR thread_at <= the message's time" is never NULL.
-- Stores the message p_id of the contact whose blind index is p_blind. The contact is found,
-- or created with the id p_contact and the sealed id p_psid_sealed (NULL: the caller knows
-- it exists; when it does not, purged meanwhile, o_contact comes back NULL); a racing worker
-- or replica's contact is found instead of a second one (the unique (integration_id, blind)).
-- Its open conversation is used, else its latest closed one reopened (unless the message is
-- already held: an old message redelivered must not reopen what an agent closed), else a new
-- one opened with the id p_conversation (a racing replica's open one is used instead). Then
-- the window moves to Meta's time p_ts (epoch seconds) and the message is inserted unless
-- (integration_id, mid) is held. o_waiting: the conversation has no assignee (new, reopened,
-- or left waiting when nobody had room), and the caller runs assign_waiting(); o_stored: the
-- message was inserted (false: a duplicate).
CREATE OR REPLACE FUNCTION inbound_message(
    p_integration text, p_workspace text, p_platform text, p_blind bytea, p_contact text,
    p_psid_sealed bytea, p_conversation text, p_id text, p_mid text, p_kind text,
    p_body bytea, p_ts double precision,
    OUT o_contact text, OUT o_conversation text, OUT o_waiting boolean, OUT o_stored boolean)
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_status text;
    v_created boolean := false; -- the contact is new here: it has no conversation yet
    v_moved boolean := false;   -- the window is already at p_ts (a new or reopened one)
BEGIN
    o_waiting := false;
    o_stored := false;
    SELECT c.id INTO o_contact FROM contacts c
     WHERE c.integration_id = p_integration AND c.blind = p_blind;
    IF o_contact IS NULL THEN
        IF p_psid_sealed IS NULL THEN
            RETURN;
        END IF;
        -- Waits for a racing transaction inserting the same contact; does nothing if it
        -- committed, and the next statement (a new snapshot) then sees its row.
        INSERT INTO contacts (id, workspace_id, integration_id, platform, blind, psid_sealed)
        VALUES (p_contact, p_workspace, p_integration, p_platform, p_blind, p_psid_sealed)
        ON CONFLICT (integration_id, blind) DO NOTHING
        RETURNING id INTO o_contact;
        v_created := o_contact IS NOT NULL;
        IF NOT v_created THEN
            SELECT c.id INTO o_contact FROM contacts c
             WHERE c.integration_id = p_integration AND c.blind = p_blind;
            IF o_contact IS NULL THEN
                RETURN;
            END IF;
        END IF;
    END IF;

    IF NOT v_created THEN
        SELECT v.id INTO o_conversation FROM conversations v
         WHERE v.integration_id = p_integration AND v.contact_id = o_contact
           AND v.status = 'open' FOR UPDATE;
    END IF;
    IF o_conversation IS NULL AND NOT v_created THEN
        -- Locked: a racing reopen waits here and then finds the conversation open.
        SELECT v.id, v.status INTO o_conversation, v_status FROM conversations v
         WHERE v.contact_id = o_contact AND v.integration_id = p_integration
         ORDER BY v.created_at DESC LIMIT 1 FOR UPDATE;
        IF o_conversation IS NOT NULL AND v_status = 'closed' THEN
            IF p_mid IS NOT NULL AND EXISTS (SELECT 1 FROM messages m
                                              WHERE m.integration_id = p_integration
                                                AND m.mid = p_mid) THEN
                RETURN;
            END IF;
            UPDATE conversations
               SET status = 'open', closed_at = NULL, assignee = NULL,
                   last_inbound_at = greatest(last_inbound_at, to_timestamp(p_ts)),
                   last_activity_at = now(),
                   thread_held = thread_held OR thread_at <= to_timestamp(p_ts)
             WHERE id = o_conversation;
            o_waiting := true;
            v_moved := true;
        END IF;
    END IF;
    IF o_conversation IS NULL THEN
        -- Opened with its window in place: one row version, not an insert and an update.
        INSERT INTO conversations (id, workspace_id, integration_id, contact_id, platform,
                                   last_inbound_at)
        VALUES (p_conversation, p_workspace, p_integration, o_contact, p_platform,
                to_timestamp(p_ts))
        ON CONFLICT (integration_id, contact_id) WHERE status = 'open' DO NOTHING
        RETURNING id INTO o_conversation;
        IF o_conversation IS NOT NULL THEN
            o_waiting := true;
            v_moved := true;
        ELSE
            -- A racing worker or replica opened it first: use theirs.
            SELECT v.id INTO o_conversation FROM conversations v
             WHERE v.integration_id = p_integration AND v.contact_id = o_contact
               AND v.status = 'open' FOR UPDATE;
            IF o_conversation IS NULL THEN
                RETURN;
            END IF;
        END IF;
    END IF;

    IF NOT v_moved THEN
        UPDATE conversations
           SET last_inbound_at = greatest(last_inbound_at, to_timestamp(p_ts)),
               last_activity_at = now(),
               thread_held = thread_held OR thread_at <= to_timestamp(p_ts)
         WHERE id = o_conversation
        RETURNING assignee IS NULL INTO o_waiting;
    END IF;
    INSERT INTO messages (id, conversation_id, workspace_id, platform, mid, direction, kind,
                          body_sealed, sent_at, status, integration_id)
    VALUES (p_id, o_conversation, p_workspace, p_platform, p_mid, 'in', p_kind, p_body,
            to_timestamp(p_ts), 'received', p_integration)
    ON CONFLICT (integration_id, mid) DO NOTHING;
    o_stored := FOUND;
END
$$;


-- 005's assign_waiting(), with one change: a conversation whose thread another app holds is
-- not dealt to an agent, who could not answer it; it waits until the thread is ours again (a
-- pass_thread_control webhook, a take, or the contact writing to us), and is assigned then.
-- Assigns the workspace's waiting conversations, oldest first, round-robin under capacity:
-- the agents with room in the order of their last assignment (never assigned first), one
-- conversation each per round, an agent leaving the rounds when its room is used up; queues an
-- assignment event for each, in that order, and leaves each agent's last_assigned_at in the
-- order of its last conversation here. Returns how many. One statement for the lot, not one
-- round of statements per conversation: a batch of new contacts assigns 64 at once.
-- Every agent of the workspace is locked first, in one order, and waited for rather than
-- skipped: an agent another transaction is assigning to is still there when it commits
-- (SKIP LOCKED would leave the conversation waiting while that agent has room). The inbound
-- batch calls it last, after every conversation lock it takes, for its workspaces in one
-- order; a request takes its conversation locks, then router_lock_agents(), then this; so
-- transactions wait for each other here and never deadlock. A conversation another
-- transaction holds is skipped: that one assigns it.
CREATE OR REPLACE FUNCTION assign_waiting(p_workspace text) RETURNS integer
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_n integer;
BEGIN
    PERFORM 1 FROM members m WHERE m.workspace_id = p_workspace AND m.role = 'agent'
      ORDER BY m.user_id FOR UPDATE;
    WITH agents AS (
        SELECT m.user_id, m.capacity - m.open_assigned AS room,
               row_number() OVER (ORDER BY m.last_assigned_at NULLS FIRST, m.user_id) AS pos
          FROM members m
         WHERE m.workspace_id = p_workspace AND m.role = 'agent'
           AND m.capacity > m.open_assigned
    ), locked AS (
        SELECT v.id, v.created_at FROM conversations v
         WHERE v.workspace_id = p_workspace AND v.status = 'open' AND v.assignee IS NULL
           AND v.thread_held
         ORDER BY v.created_at, v.id
         LIMIT (SELECT coalesce(sum(room), 0) FROM agents)
           FOR UPDATE SKIP LOCKED
    ), waiting AS (
        SELECT l.id, row_number() OVER (ORDER BY l.created_at, l.id) AS k FROM locked l
    ), slots AS (
        -- Round r gives one conversation to every agent with room for r of them.
        SELECT a.user_id, row_number() OVER (ORDER BY r, a.pos) AS k
          FROM agents a,
               generate_series(1, least(a.room, (SELECT count(*) FROM waiting)::integer)) r
    ), assigned AS (
        -- The trigger of 004_member_load.sql counts each in its agent's open_assigned.
        UPDATE conversations v SET assignee = s.user_id
          FROM waiting w JOIN slots s USING (k)
         WHERE v.id = w.id
        RETURNING v.id, s.user_id, w.k
    ), stamped AS (
        -- Microseconds apart in the order of each agent's last conversation: the next
        -- round starts after the agent served last here.
        UPDATE members m
           SET last_assigned_at = clock_timestamp() + make_interval(secs => x.last_k / 1e6)
          FROM (SELECT a.user_id, max(a.k) AS last_k FROM assigned a GROUP BY a.user_id) x
         WHERE m.workspace_id = p_workspace AND m.user_id = x.user_id
    ), events AS (
        INSERT INTO outbox (subject, msg_id, payload)
        SELECT 'router.events.assignment',
               'assign:' || a.id || ':' || a.user_id || ':'
                   || floor(extract(epoch FROM clock_timestamp()))::bigint,
               json_build_object('conversation_id', a.id, 'workspace_id', p_workspace,
                                 'assignee', a.user_id)::text
          FROM assigned a ORDER BY a.k
    )
    SELECT count(*) INTO v_n FROM assigned;
    RETURN v_n;
END
$$;
