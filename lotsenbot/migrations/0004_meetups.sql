-- Network meetups: the meetup (a one-off date or a series), exceptions of single dates,
-- sign-ups with waiting list, the announcement messages people react to, reminders already
-- handled, and date polls. Instants are UTC ISO 8601; a series is stored as wall-clock start
-- plus IANA zone plus RRULE, so it keeps its local time across summer-time switches.

CREATE TABLE meetups (
    id            INTEGER PRIMARY KEY,
    title         TEXT NOT NULL,
    start_local   TEXT NOT NULL,               -- naive wall-clock time, "2027-01-12T14:00:00"
    tzid          TEXT NOT NULL,               -- IANA zone of start_local, e.g. Europe/Berlin
    duration_s    INTEGER NOT NULL CHECK (duration_s > 0),
    rrule         TEXT,                        -- RFC 5545 RRULE without "RRULE:"; NULL = once
    location      TEXT,
    link          TEXT,
    description   TEXT,
    capacity      INTEGER CHECK (capacity IS NULL OR capacity > 0),  -- NULL = unlimited
    audience      TEXT NOT NULL DEFAULT 'lotsen', -- lotsen | abteilung:<id> | raum:<room> | keine
    first_start   TEXT NOT NULL,               -- UTC instant of the first occurrence
    ends_at       TEXT,                        -- UTC end of the last occurrence; NULL = endless
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    cancel_reason TEXT,
    sequence      INTEGER NOT NULL DEFAULT 0,  -- RFC 5545 SEQUENCE, raised with every change
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX meetups_open ON meetups (status, ends_at);

-- One date of a series cancelled or changed (RFC 5545 EXDATE / RECURRENCE-ID override),
-- keyed by the original start of that date.
CREATE TABLE meetup_exceptions (
    meetup_id   INTEGER NOT NULL REFERENCES meetups (id) ON DELETE CASCADE,
    occurrence  TEXT NOT NULL,                 -- original start, "2027-01-12T13:00:00Z"
    cancelled   INTEGER NOT NULL DEFAULT 0,
    new_start   TEXT,                          -- UTC instant when moved
    duration_s  INTEGER,
    location    TEXT,
    link        TEXT,
    reason      TEXT,
    PRIMARY KEY (meetup_id, occurrence)
);

-- Who comes to which date. For a series a sign-up is for one date (the next one at the time
-- of signing up). starts_at follows moves of that date, so the reminder job can select by time.
CREATE TABLE meetup_signups (
    id                INTEGER PRIMARY KEY,     -- order of sign-up: first come, first served
    meetup_id         INTEGER NOT NULL REFERENCES meetups (id) ON DELETE CASCADE,
    occurrence        TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('confirmed', 'waitlisted')),
    starts_at         TEXT NOT NULL,           -- current UTC start of that date
    signed_up_at      TEXT NOT NULL,
    reaction_event_id TEXT,                    -- the 👍 that made it; its redaction withdraws
    UNIQUE (meetup_id, occurrence, user_id)
);
CREATE INDEX meetup_signups_due ON meetup_signups (starts_at);
CREATE INDEX meetup_signups_user ON meetup_signups (user_id);
CREATE INDEX meetup_signups_reaction ON meetup_signups (reaction_event_id)
    WHERE reaction_event_id IS NOT NULL;

-- The announcement messages of a meetup (outbox rows). A 👍 on one of them is a sign-up;
-- event_id is copied from the outbox after delivery so the mapping survives outbox purges.
CREATE TABLE meetup_messages (
    dedup_key TEXT PRIMARY KEY,
    meetup_id INTEGER NOT NULL REFERENCES meetups (id) ON DELETE CASCADE,
    event_id  TEXT
);
CREATE INDEX meetup_messages_event ON meetup_messages (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX meetup_messages_meetup ON meetup_messages (meetup_id);

-- Reminders handled, one row per person, date and offset: sent, or skipped with the reason.
-- Together with the outbox dedup key "rem:<meetup>:<date>:<offset s>:<user>" this makes each
-- reminder go out at most once, across restarts.
CREATE TABLE meetup_reminders (
    meetup_id  INTEGER NOT NULL REFERENCES meetups (id) ON DELETE CASCADE,
    occurrence TEXT NOT NULL,
    offset_s   INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    outcome    TEXT NOT NULL
               CHECK (outcome IN ('sent', 'started', 'superseded', 'not_applicable')),
    at         TEXT NOT NULL,
    PRIMARY KEY (meetup_id, occurrence, offset_s, user_id)
);

-- Date polls ("Terminumfrage"): a native Matrix poll in the room where it was asked.
CREATE TABLE meetup_polls (
    id         INTEGER PRIMARY KEY,
    title      TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    dedup_key  TEXT NOT NULL UNIQUE,           -- outbox row of the poll start
    event_id   TEXT,                           -- copied from the outbox after delivery
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    meetup_id  INTEGER REFERENCES meetups (id) ON DELETE SET NULL,
    closed_at  TEXT
);
CREATE INDEX meetup_polls_event ON meetup_polls (event_id) WHERE event_id IS NOT NULL;

CREATE TABLE meetup_poll_options (
    poll_id   INTEGER NOT NULL REFERENCES meetup_polls (id) ON DELETE CASCADE,
    answer_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    starts_at TEXT NOT NULL,                   -- UTC instant
    PRIMARY KEY (poll_id, answer_id)
);

-- The latest response per person counts (by origin_server_ts of the response event).
CREATE TABLE meetup_poll_votes (
    poll_id   INTEGER NOT NULL REFERENCES meetup_polls (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    answers   TEXT NOT NULL,                   -- JSON list of answer ids; [] = vote withdrawn
    origin_ts INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (poll_id, user_id)
);
