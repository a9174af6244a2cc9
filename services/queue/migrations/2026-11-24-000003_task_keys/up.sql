-- A task may carry a unique key: enqueueing a second task with the same key (in any state)
-- does nothing. The order pipeline uses it so that one e-mail per order and kind is ever
-- queued, however many paths ask for it.
ALTER TABLE tasks ADD COLUMN unique_key text;
CREATE UNIQUE INDEX tasks_unique_key ON tasks (unique_key) WHERE unique_key IS NOT NULL;

-- The request (or task) that caused this task, carried on to its follow-ups, so that one
-- id follows an order through every service's logs.
ALTER TABLE tasks ADD COLUMN correlation_id text;

-- The wake-up of a new task comes from the table itself, so that enqueueing is one plain
-- INSERT (a statement the client can keep prepared). PostgreSQL folds the identical
-- notifications of one transaction into one, delivered at commit.
CREATE FUNCTION tasks_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasks.' || NEW.kind, '');
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_notify_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_notify_insert();
