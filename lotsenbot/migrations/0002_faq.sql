-- FAQ: the knowledge base (source of truth for the in-memory search index), the questions the
-- bot answered (to link feedback to answers), feedback, and unanswered questions for the
-- coordinators. Times are UTC instants in ISO 8601.

-- One row per entry; list fields are JSON arrays of strings.
CREATE TABLE faq_entries (
    id           TEXT PRIMARY KEY,
    category     TEXT NOT NULL,
    department   TEXT,
    question     TEXT NOT NULL,
    alternatives TEXT NOT NULL DEFAULT '[]',
    answer       TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '[]',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    updated_by   TEXT NOT NULL               -- Matrix ID, or "cli:…" / "starter" for imports
);
CREATE INDEX faq_entries_category ON faq_entries (category);

-- A new random token with every change of faq_entries (chat, CLI import), so a running bot notices
-- changes it did not make itself (or that were rolled back) and rebuilds its index.
CREATE TABLE faq_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO faq_state (id, generation) VALUES (1, 0);

-- Each answer or suggestion the bot gave. No question text here (data minimisation): the row
-- only ties the bot's message (answer_key = its outbox dedup_key) to the entry and the asker.
CREATE TABLE faq_questions (
    id          INTEGER PRIMARY KEY,
    asked_at    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('answer', 'suggest', 'none', 'picked')),
    entry_id    TEXT,                        -- the entry given as the answer
    score       REAL NOT NULL,
    suggestions TEXT NOT NULL DEFAULT '[]',  -- JSON array of entry ids
    answer_key  TEXT                         -- outbox.dedup_key of the bot's message
);
CREATE INDEX faq_questions_answer_key ON faq_questions (answer_key);
CREATE INDEX faq_questions_last ON faq_questions (room_id, user_id, id);

-- "War das hilfreich?": one verdict per person and answer, a later one replaces the earlier.
CREATE TABLE faq_feedback (
    question_id    INTEGER NOT NULL REFERENCES faq_questions (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    helpful        INTEGER NOT NULL CHECK (helpful IN (0, 1)),
    given_at       TEXT NOT NULL,
    reaction_event TEXT,                     -- the 👍/👎 event, so redacting it withdraws
    PRIMARY KEY (question_id, user_id)
);
CREATE INDEX faq_feedback_reaction ON faq_feedback (reaction_event);

-- Questions the FAQ had no answer for; the asker is not stored, coordinators only need the
-- wording. "normalized" groups identical phrasings; resolved_* records what was done.
CREATE TABLE faq_unanswered (
    id             INTEGER PRIMARY KEY,
    asked_at       TEXT NOT NULL,
    question       TEXT NOT NULL,
    normalized     TEXT NOT NULL,
    best_entry     TEXT,
    best_score     REAL NOT NULL DEFAULT 0,
    ticket_id      INTEGER,                  -- set when the asker passed it on to a pilot
    resolved_at    TEXT,
    resolved_by    TEXT,
    resolved_entry TEXT
);
CREATE INDEX faq_unanswered_open ON faq_unanswered (resolved_at, normalized);
