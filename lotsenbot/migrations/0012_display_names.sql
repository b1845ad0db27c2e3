-- Display names, so that messages show people as "Anna Schmidt (@anna:stadt.de)" rather
-- than as a bare Matrix ID. Learned only from what the homeserver tells the bot anyway: the
-- name a person has in the room of an event the bot handles for them, a rename
-- (m.room.member) of someone already listed here or of a configured pilot or coordinator,
-- and, for someone the bot has to name but knows no name of, one profile lookup in the
-- background (lotsenbot.matrix.names). Stored as the homeserver has it; what is shown is
-- cleaned and bounded by lotsenbot.core.names. Times are UTC instants in ISO 8601.
-- Personal data: exported with !meine-daten, erased with !daten-löschen, and dropped when
-- the homeserver has not confirmed it for [privacy] inactive_users_days (privacy/store.py).

CREATE TABLE display_names (
    user_id      TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,                  -- '' = the person has set no display name
    source       TEXT NOT NULL CHECK (source IN ('event', 'member', 'profile')),
    learned_at   TEXT NOT NULL                   -- when the homeserver last told the bot
);
CREATE INDEX display_names_learned ON display_names (learned_at);
