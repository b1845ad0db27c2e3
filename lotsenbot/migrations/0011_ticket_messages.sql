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

-- Never fails the sender's update: content that is no JSON or names no existing request
-- is skipped (CASE evaluates json_extract only for valid JSON). An anonymised request
-- (requester '[gelöscht]', personal_data.ERASED) gets no rows, as it keeps none.
CREATE TRIGGER ticket_messages_delivered AFTER UPDATE OF event_id ON outbox
WHEN NEW.status = 'sent' AND NEW.event_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO ticket_messages (event_id, ticket_id)
    SELECT NEW.event_id, t.id FROM tickets t
    WHERE t.id = CASE WHEN json_valid(NEW.content)
                 THEN json_extract(NEW.content, '$.meta."de.lotsenbot.ticket".id') END
    AND t.requester != '[gelöscht]';
END;

-- Messages delivered before this migration, as far as the outbox still has them.
INSERT OR IGNORE INTO ticket_messages (event_id, ticket_id)
SELECT o.event_id, t.id FROM outbox o JOIN tickets t
    ON t.id = CASE WHEN json_valid(o.content)
              THEN json_extract(o.content, '$.meta."de.lotsenbot.ticket".id') END
WHERE o.status = 'sent' AND o.event_id IS NOT NULL AND t.requester != '[gelöscht]';
