-- "ja" / "nein" answer the bot's last question only if nothing else was said in between
-- (Context.said_nothing_since): that looks up the person's recent messages in one room and
-- the bot's recent messages to that room or person.
CREATE INDEX inbox_room_sender ON inbox (room_id, sender, origin_ts);
CREATE INDEX outbox_target_created ON outbox (target, created_at);
