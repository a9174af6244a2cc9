DROP TRIGGER tasks_notify_insert ON tasks;
DROP FUNCTION tasks_notify_insert();
ALTER TABLE tasks DROP COLUMN correlation_id;
DROP INDEX tasks_unique_key;
ALTER TABLE tasks DROP COLUMN unique_key;
