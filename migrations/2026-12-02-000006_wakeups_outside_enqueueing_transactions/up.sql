-- Wake-ups leave the transactions that enqueue. A NOTIFY takes a database-wide lock at
-- commit and holds it through the commit's WAL flush, so with the insert trigger every
-- transaction that enqueued (each order placed, each step recorded) waited for the flush
-- of every other one: at 600 orders/s more than half of the server's active sessions
-- were waiting on that lock. The services now send the wake-ups after the commit, from
-- their own session, in transactions that wait for no flush (orderflow_queue::WakeUps).
-- Anything else that inserts tasks is found by the workers' poll.
DROP TRIGGER tasks_notify_insert ON tasks;
DROP FUNCTION tasks_notify_insert();
