DROP INDEX tasks_unique_key;
ALTER TABLE tasks DROP COLUMN unique_key;
