-- Foundation: bot state, the durable inbox and outbox, people and rooms, audit log.
-- Times are UTC instants in ISO 8601 ("2026-11-29T12:00:00.000Z").

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every event the bot accepted from a sync. Written before the sync token is saved, so a
-- crash never loses an event; the status makes sure none is handled twice.
CREATE TABLE inbox (
    event_id        TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    sender          TEXT NOT NULL,
    kind            TEXT NOT NULL,               -- message | reaction | redaction | edit | poll_response
    payload         TEXT NOT NULL,               -- JSON of the Incoming
    origin_ts       INTEGER NOT NULL,            -- ms since epoch, from the homeserver
    received_at     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed', 'ignored')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    error           TEXT,
    handled_at      TEXT
);
CREATE INDEX inbox_pending ON inbox (status, next_attempt_at) WHERE status = 'pending';

-- Every message the bot sends. Inserted in the same transaction as the state change that
-- caused it; delivered with a transaction id derived from dedup_key, so a resend after a
-- crash is recognised by the homeserver and not delivered twice.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    dedup_key       TEXT NOT NULL UNIQUE,
    target_kind     TEXT NOT NULL CHECK (target_kind IN ('user', 'room')),
    target          TEXT NOT NULL,
    room_id         TEXT,                        -- resolved room (for users: their direct chat)
    event_type      TEXT NOT NULL DEFAULT 'm.room.message',
    content         TEXT NOT NULL,               -- JSON
    attachment      BLOB,
    attachment_name TEXT,
    attachment_mime TEXT,
    purpose         TEXT NOT NULL DEFAULT 'reply',
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    event_id        TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at) WHERE status = 'pending';

-- People who have written to the bot. The role is never stored: it follows from the config.
CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    language    TEXT,
    department  TEXT
);

-- The direct chat the bot uses for each person.
CREATE TABLE dm_rooms (
    user_id    TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX dm_rooms_room ON dm_rooms (room_id);

-- Rooms the bot is in, and whether they are group rooms (for announcements to rooms).
CREATE TABLE rooms (
    room_id   TEXT PRIMARY KEY,
    is_direct INTEGER NOT NULL DEFAULT 0,
    joined_at TEXT NOT NULL,
    left_at   TEXT
);

-- Short-lived conversational state ("Meinten Sie 1, 2 oder 3?", confirmations).
CREATE TABLE pending_choices (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, kind)
);

-- Privileged actions: who did what, when.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT,
    details TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
