-- An agent's load (open conversations assigned to them) kept on their member row, so that
-- choosing an agent reads one row per member instead of counting their conversations: the
-- count made every new conversation cost as much as the agent's open conversations (a
-- workspace with 20,000 open conversations counted 20,000 index entries per new contact).
-- A trigger keeps it, so every path that opens, closes, assigns, unassigns or deletes a
-- conversation keeps it right without knowing about it.
ALTER TABLE members ADD COLUMN IF NOT EXISTS open_assigned integer NOT NULL DEFAULT 0;

UPDATE members m SET open_assigned = (
    SELECT count(*) FROM conversations c
     WHERE c.workspace_id = m.workspace_id AND c.assignee = m.user_id AND c.status = 'open');

CREATE OR REPLACE FUNCTION conversations_member_load() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = NEW.status
       AND OLD.assignee IS NOT DISTINCT FROM NEW.assignee THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'open' AND OLD.assignee IS NOT NULL THEN
        UPDATE members SET open_assigned = open_assigned - 1
         WHERE workspace_id = OLD.workspace_id AND user_id = OLD.assignee;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.status = 'open' AND NEW.assignee IS NOT NULL THEN
        UPDATE members SET open_assigned = open_assigned + 1
         WHERE workspace_id = NEW.workspace_id AND user_id = NEW.assignee;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS conversations_member_load ON conversations;
CREATE TRIGGER conversations_member_load
    AFTER INSERT OR DELETE OR UPDATE OF status, assignee ON conversations
    FOR EACH ROW EXECUTE FUNCTION conversations_member_load();
