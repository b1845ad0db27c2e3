-- Who got a meetup's invitation with its calendar file. A cancellation, or a change that
-- carries a new calendar file, has to reach everyone who may have imported the date, not
-- only the people who signed up (found in an exploratory test: "Informiert: 0 angemeldete
-- Personen", and every invited pilot kept a calendar entry for a meeting that was off).
-- Written in the transaction that enqueues the invitation (outbox keys
-- "meetup:<id>:ann:<target>" and "meetup:<id>:ics:<target>"), one row per meetup and
-- recipient: a person, or a group room for "Zielgruppe: !raum:server".
-- Personal data: exported with !meine-daten, erased with !daten-löschen, and deleted
-- [privacy] signups_days after the meetup's last date or its cancellation.

CREATE TABLE meetup_invitations (
    meetup_id   INTEGER NOT NULL REFERENCES meetups (id) ON DELETE CASCADE,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('user', 'room')),
    target      TEXT NOT NULL,                 -- Matrix ID of the person, or room ID
    invited_at  TEXT NOT NULL,                 -- UTC instant the invitation was enqueued
    PRIMARY KEY (meetup_id, target_kind, target)
);
CREATE INDEX meetup_invitations_target ON meetup_invitations (target_kind, target);

-- Invitations sent before this migration: each left its calendar message in meetup_messages
-- under "meetup:<id>:ics:<target>" (an erasure has removed the rows naming the person).
INSERT OR IGNORE INTO meetup_invitations (meetup_id, target_kind, target, invited_at)
SELECT sent.meetup_id,
       CASE WHEN substr(sent.target, 1, 1) = '@' THEN 'user' ELSE 'room' END,
       sent.target,
       m.created_at
FROM (SELECT meetup_id,
             substr(dedup_key, length('meetup:' || meetup_id || ':ics:') + 1) AS target
      FROM meetup_messages
      WHERE substr(dedup_key, 1, length('meetup:' || meetup_id || ':ics:'))
            = 'meetup:' || meetup_id || ':ics:') AS sent
JOIN meetups m ON m.id = sent.meetup_id
WHERE sent.target != '';
