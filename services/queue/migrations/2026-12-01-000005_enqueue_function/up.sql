-- The queue's entry point for statements written in SQL (an order placed in one statement,
-- say), so that they enqueue without knowing the table's columns. Like the Rust
-- `orderflow_queue::enqueue`: it writes in the caller's transaction, the insert trigger
-- sends the wake-up, and a unique key already held enqueues nothing (NULL is returned).
-- PL/pgSQL keeps the INSERT's plan for the session; a plain SQL function would plan it on
-- every call.
CREATE FUNCTION enqueue_task(new_kind text, new_payload jsonb, new_max_attempts integer,
                             new_unique_key text, new_correlation_id text)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO tasks AS t (kind, payload, max_attempts, unique_key, correlation_id)
    VALUES (new_kind, new_payload, new_max_attempts, new_unique_key, new_correlation_id)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING t.id INTO new_id;
    RETURN new_id;
END
$$;
