ALTER TABLE endpoints DROP COLUMN sync_budget_at;
