-- Every statement that appends to order timelines tells listeners which orders moved:
-- the API's live order pages (server-sent events) wait on this channel instead of
-- polling. One NOTIFY per statement, not per row: the workers record a whole claim in
-- one statement, and each NOTIFY takes a lock at commit. Ids go in chunks of 150, which
-- keeps a payload (37 bytes an id) under PostgreSQL's 8000-byte limit.
CREATE FUNCTION notify_order_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text;
BEGIN
    FOR ids IN
        SELECT string_agg(order_id::text, ',')
        FROM (SELECT order_id, (row_number() OVER () - 1) / 150 AS chunk
              FROM (SELECT DISTINCT order_id FROM appended) moved) numbered
        GROUP BY chunk
    LOOP
        PERFORM pg_notify('order_events', ids);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER order_events_notify
    AFTER INSERT ON order_events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION notify_order_events();
