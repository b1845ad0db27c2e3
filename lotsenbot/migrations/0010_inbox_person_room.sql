-- "ja" / "nein" answer the bot's last question only if the person wrote nothing else in
-- between (Context.said_nothing_since); that looks up their recent messages in one room.
CREATE INDEX inbox_room_sender ON inbox (room_id, sender, origin_ts);
