-- No query searches task payloads: the GIN index only cost every enqueue an index insert
-- (and vacuum its pending-list cleanup). An order's story is its timeline (order_events).
DROP INDEX tasks_payload_idx;
