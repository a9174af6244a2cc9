-- Completed tasks are kept for a retention period, then deleted by the workers
-- (orderflow_queue::admin::prune_completed): without that the table grows with every
-- order forever. This index finds the expired ones of a kind, oldest first, without
-- reading the others. Built concurrently (hence no transaction, see metadata.toml), so an
-- existing installation keeps taking writes while it is built.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_completed_idx
    ON tasks (kind, completed_at) WHERE state = 'completed';
