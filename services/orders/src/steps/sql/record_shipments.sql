-- The parcels of a group of reserved orders: each order's shipment is inserted once (a
-- duplicate task, or a second copy in the group, adds nothing) and appends a `shipped`
-- event with its carrier and tracking number. Returns the orders shipped now.
WITH booked AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
        AS b(order_id, carrier, tracking_number, started_at)),
shipped AS (
    INSERT INTO shipments (order_id, carrier, tracking_number)
    SELECT order_id, carrier, tracking_number FROM booked
    ON CONFLICT DO NOTHING
    RETURNING order_id, carrier, tracking_number),
events AS (
    INSERT INTO order_events (order_id, type, details)
    SELECT s.order_id, $5, jsonb_build_object('carrier', s.carrier,
        'tracking_number', s.tracking_number,
        'started_at', (SELECT min(b.started_at) FROM booked b WHERE b.order_id = s.order_id))
    FROM shipped s)
SELECT order_id FROM shipped
