-- A meetup for everyone ("Zielgruppe: alle") or for all group rooms is not sent at once:
-- like an announcement to everyone, the coordinator first sees whom it would reach and
-- sends it with "!treffen senden <Nr>" (found in a review: a mistyped date went to everyone
-- who ever used the bot, and its correction a second time). 1 = created, not yet sent.
ALTER TABLE meetups ADD COLUMN send_pending INTEGER NOT NULL DEFAULT 0;
