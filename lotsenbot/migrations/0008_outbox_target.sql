-- The sender holds back a target's later messages while an earlier one waits for a retry
-- (order within a chat). That check looks up pending rows per target; without this index
-- it scans every waiting row once per due row (0.9 s at 2,000 of each, 2 ms with it).
CREATE INDEX outbox_pending_target ON outbox (target_kind, target, id) WHERE status = 'pending';
