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
