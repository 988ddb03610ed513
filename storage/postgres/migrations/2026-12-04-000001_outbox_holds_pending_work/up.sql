-- The outbox holds pending work only, as MemoryStore's does: a delivery that finished (accepted,
-- rejected, or its endpoint gone) is deleted by the statement that records its outcome. The
-- outcome itself goes to the dispatcher's metrics and traces. A DELETE writes no index entries,
-- where marking the row finished rewrote it into every index of the table.
DELETE FROM deliveries WHERE state <> 'pending';
DROP INDEX deliveries_due;
ALTER TABLE deliveries
    DROP COLUMN state,
    DROP COLUMN provider_message_id,
    DROP COLUMN finished_at;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at);

-- A lease changes no indexed column (it sets attempt, lease_token and lease_until and leaves
-- next_attempt_at alone), so PostgreSQL can rewrite the row on its own page without touching
-- any index (a HOT update) when the page has room. Every row of a page is typically leased in
-- one batch, so pages are kept half empty; the outbox holds only pending work, so this costs
-- little space.
ALTER TABLE deliveries SET (fillfactor = 50);

-- Pending deliveries of a notification are found among its user's (deliveries_user_endpoint):
-- the outbox keeps few per user, so one index less to write per delivery.
DROP INDEX deliveries_notification;

-- Ids are opaque: compare them byte by byte. Under a linguistic collation (the database
-- default, often en_US.UTF-8 or C.UTF-8) every B-tree comparison of these columns went through
-- strcoll, and an index on them could be silently corrupted by an operating system upgrade that
-- changes the collation's order. This rebuilds the indexes on these columns.
ALTER TABLE endpoints
    ALTER COLUMN app TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C",
    ALTER COLUMN installation_id TYPE text COLLATE "C";
ALTER TABLE user_sequences
    ALTER COLUMN user_id TYPE text COLLATE "C",
    ALTER COLUMN app TYPE text COLLATE "C";
ALTER TABLE notifications
    ALTER COLUMN app TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C",
    ALTER COLUMN app_notification_id TYPE text COLLATE "C";
ALTER TABLE deliveries
    ALTER COLUMN app TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";
