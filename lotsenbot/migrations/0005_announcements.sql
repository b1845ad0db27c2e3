-- Announcements: coordinator messages to pilots, departments, rooms or everyone.
-- The recipients' copies are outbox rows with dedup key "ann:<id>:<target>"; this table
-- holds the announcement itself and its life cycle, and is the only source of truth for
-- scheduled sends (the job that fires them is rebuilt from it after a restart).

CREATE TABLE announcements (
    id             INTEGER PRIMARY KEY,
    author         TEXT NOT NULL,
    room_id        TEXT NOT NULL,               -- where preview, confirmation and summary go
    room_is_direct INTEGER NOT NULL DEFAULT 0,
    audience       TEXT NOT NULL,               -- lotsen | koordination | raeume | alle | abteilung:<id>
    body           TEXT NOT NULL,               -- Markdown, written by the coordinator
    important      INTEGER NOT NULL DEFAULT 0,  -- reaches people who unsubscribed, too
    state          TEXT NOT NULL DEFAULT 'draft'
                   CHECK (state IN ('draft', 'scheduled', 'sending', 'done', 'discarded')),
    send_at        TEXT,                        -- requested time; NULL: on confirmation
    due_at         TEXT,                        -- set on confirmation: when the fan-out starts
    recipients     INTEGER NOT NULL DEFAULT 0,  -- preview count, then the expanded count
    preview_key    TEXT,                        -- outbox dedup key of the preview (for 👍)
    created_at     TEXT NOT NULL,
    confirmed_at   TEXT,
    confirmed_by   TEXT,
    started_at     TEXT,
    finished_at    TEXT,
    discarded_at   TEXT,
    discarded_by   TEXT,
    sent_count     INTEGER,                     -- final figures, kept when the outbox is purged
    failed_count   INTEGER
);
CREATE INDEX announcements_open ON announcements (state, due_at)
    WHERE state IN ('draft', 'scheduled', 'sending');

-- People who do not want general announcements (audience "alle"); important ones still
-- reach them.
CREATE TABLE announcement_optouts (
    user_id TEXT PRIMARY KEY,
    since   TEXT NOT NULL
);
