-- Privacy and operations: remember when the last sync completed, for /health.
-- The application stores the sync token after every completed sync (also an empty one); a
-- trigger notes the time next to it, so the health check reads it from the database
-- without any change to the sync loop. Times are UTC instants in ISO 8601.

CREATE TRIGGER meta_sync_token_inserted AFTER INSERT ON meta
WHEN NEW.key = 'sync_token'
BEGIN
    INSERT INTO meta (key, value) VALUES ('last_sync_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
END;

CREATE TRIGGER meta_sync_token_updated AFTER UPDATE OF value ON meta
WHEN NEW.key = 'sync_token'
BEGIN
    INSERT INTO meta (key, value) VALUES ('last_sync_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
END;
