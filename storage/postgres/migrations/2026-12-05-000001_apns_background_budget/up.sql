-- Each endpoint's APNs background budget: BackgroundBudget::admit's "theoretical arrival time"
-- (NULL: the endpoint never had a budgeted sync signal). Only update_state reads and writes it.
ALTER TABLE endpoints ADD COLUMN sync_budget_at timestamptz;
