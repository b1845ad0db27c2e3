-- Requests (tickets): a colleague's question to the Digitale Lotsinnen und Lotsen, its
-- history, pilots' absences and the round-robin position per department.
-- Times are UTC instants in ISO 8601 ("2026-11-29T12:00:00.000Z").

CREATE TABLE tickets (
    id                  INTEGER PRIMARY KEY,
    requester           TEXT NOT NULL,               -- Matrix ID of the colleague who asked
    room_id             TEXT NOT NULL,               -- room the request was made in
    body                TEXT NOT NULL,               -- as written, line breaks kept
    source              TEXT NOT NULL DEFAULT 'command',  -- command | faq
    department          TEXT,                        -- NULL while coordinators triage
    assignee            TEXT,                        -- pilot (or deputy) who takes care of it
    deputy_for          TEXT,                        -- absent pilot whose turn the assignee took
    status              TEXT NOT NULL
                        CHECK (status IN ('open', 'assigned', 'claimed', 'answered', 'resolved',
                                          'withdrawn', 'escalated', 'triage')),
    route_reason        TEXT,                        -- why the router decided as it did
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    claimed_at          TEXT,
    answered_at         TEXT,                        -- last answer of a pilot
    resolved_at         TEXT,
    closed_at           TEXT,                        -- resolved or withdrawn
    -- Escalation state lives here, so deadlines survive restarts. A deadline is due when
    -- it has passed and its *_escalated_at is still NULL; escalation_round numbers the
    -- deadlines after a transfer or reopening, so each escalation message is sent once.
    claim_due_at        TEXT,
    answer_due_at       TEXT,
    claim_escalated_at  TEXT,
    answer_escalated_at TEXT,
    escalation_round    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tickets_requester ON tickets (requester, id);
CREATE INDEX tickets_department ON tickets (department, status);
CREATE INDEX tickets_assignee ON tickets (assignee, status);
CREATE INDEX tickets_claim_due ON tickets (claim_due_at) WHERE claim_escalated_at IS NULL;
CREATE INDEX tickets_answer_due ON tickets (answer_due_at) WHERE answer_escalated_at IS NULL;

-- Everything that happened to a ticket: who did what, when. Notes are internal and never
-- shown to the requester.
CREATE TABLE ticket_events (
    id        INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,                         -- Matrix ID; the bot's own for automatic steps
    kind      TEXT NOT NULL,                         -- created | assigned | queued | triage | claimed
                                                     -- | reply | note | resolved | reopened
                                                     -- | transferred | escalated | withdrawn
    body      TEXT,                                  -- message, note or reason
    internal  INTEGER NOT NULL DEFAULT 0,
    details   TEXT                                   -- JSON: department, assignee, …
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, id);

-- A pilot away up to and including "until" (local date YYYY-MM-DD), with an optional deputy.
CREATE TABLE pilot_absences (
    user_id    TEXT PRIMARY KEY,
    until      TEXT NOT NULL,
    deputy     TEXT,
    created_at TEXT NOT NULL
);

-- The slot (pilot) of each department that got the last ticket, for fair turns on ties.
CREATE TABLE ticket_rotation (
    department    TEXT PRIMARY KEY,
    last_assigned TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
