ALTER TABLE deliveries
    ALTER COLUMN app TYPE text COLLATE "default",
    ALTER COLUMN user_id TYPE text COLLATE "default";
ALTER TABLE notifications
    ALTER COLUMN app TYPE text COLLATE "default",
    ALTER COLUMN user_id TYPE text COLLATE "default",
    ALTER COLUMN app_notification_id TYPE text COLLATE "default";
ALTER TABLE user_sequences
    ALTER COLUMN user_id TYPE text COLLATE "default",
    ALTER COLUMN app TYPE text COLLATE "default";
ALTER TABLE endpoints
    ALTER COLUMN app TYPE text COLLATE "default",
    ALTER COLUMN user_id TYPE text COLLATE "default",
    ALTER COLUMN installation_id TYPE text COLLATE "default";
CREATE INDEX deliveries_notification ON deliveries (notification_id);
ALTER TABLE deliveries RESET (fillfactor);
DROP INDEX deliveries_due;
ALTER TABLE deliveries
    ADD COLUMN state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    ADD COLUMN provider_message_id text,
    ADD COLUMN finished_at timestamptz;
ALTER TABLE deliveries ALTER COLUMN state DROP DEFAULT;
-- The earlier code moved a leased row's next_attempt_at to its lease deadline.
UPDATE deliveries SET next_attempt_at = lease_until
    WHERE lease_until IS NOT NULL AND lease_until > next_attempt_at;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
