-- A task may carry a unique key: enqueueing a second task with the same key (in any state)
-- does nothing. The order pipeline uses it so that one e-mail per order and kind is ever
-- queued, however many paths ask for it.
ALTER TABLE tasks ADD COLUMN unique_key text;
CREATE UNIQUE INDEX tasks_unique_key ON tasks (unique_key) WHERE unique_key IS NOT NULL;

-- The request (or task) that caused this task, carried on to its follow-ups, so that one
-- id follows an order through every service's logs.
ALTER TABLE tasks ADD COLUMN correlation_id text;
