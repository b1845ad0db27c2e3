-- Replies to the bot's messages about a request: a person who answers one of them with the
-- reply function of their chat writes to that request, as with "!antwort <Nr> <Text>".
-- The bot's messages are outbox rows, and the outbox is purged after a while (privacy), so
-- the Matrix event id of every delivered message about a request (content
-- "de.lotsenbot.ticket") is kept here. A trigger copies it in the statement that marks the
-- row as sent, so the mapping exists as soon as the message does, with no change to the
-- sender and nothing to catch up. Anonymising a request deletes its rows (personal_data.py).

CREATE TABLE ticket_messages (
    event_id  TEXT PRIMARY KEY,                  -- the bot's message, as delivered
    ticket_id INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE
);
CREATE INDEX ticket_messages_ticket ON ticket_messages (ticket_id);

-- Only messages marked "replyable" (tickets.escalation.ticket_meta): what the requester
-- receives, and a pilot's direct notice with the requester's words. A reply to a
-- confirmation, a note, a history or a coordinators' notice ("danke", "it") must not reach
-- the requester. Messages sent before this migration carry no mark and are not recorded.
-- Never fails the sender's update: content that is no JSON or names no existing request
-- is skipped (CASE evaluates json_extract only for valid JSON). An anonymised request
-- (requester '[gelöscht]', personal_data.ERASED) gets no rows, as it keeps none.
CREATE TRIGGER ticket_messages_delivered AFTER UPDATE OF event_id ON outbox
WHEN NEW.status = 'sent' AND NEW.event_id IS NOT NULL AND json_valid(NEW.content)
    AND json_extract(NEW.content, '$.meta."de.lotsenbot.ticket".replyable') = 1
BEGIN
    INSERT OR IGNORE INTO ticket_messages (event_id, ticket_id)
    SELECT NEW.event_id, t.id FROM tickets t
    WHERE t.id = json_extract(NEW.content, '$.meta."de.lotsenbot.ticket".id')
    AND t.requester != '[gelöscht]';
END;
