-- A question deleted (redacted) in Matrix goes from the bot, too: its reply that repeats the
-- question is redacted and the open question is dropped (found in an exploratory test: the
-- word-for-word copy of a deleted question about a colleague's illness stayed in the room
-- and in "!faq offen"). The open question keeps the Matrix event id of the message it came
-- from for that; the event id names no person by itself.
ALTER TABLE faq_unanswered ADD COLUMN question_event TEXT;
CREATE INDEX faq_unanswered_event ON faq_unanswered (question_event)
    WHERE question_event IS NOT NULL;

-- The bot's messages by their Matrix event id: a message someone answers in a thread, the
-- answer a 👍 is on, the reply a redaction takes back.
CREATE INDEX outbox_event ON outbox (event_id) WHERE event_id IS NOT NULL;
