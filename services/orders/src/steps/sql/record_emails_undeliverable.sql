-- E-mails that can never be delivered: each goes on its order's timeline
-- (`notification_failed`, with the error), and a reserved order waiting for its
-- confirmation is fulfilled all the same.
WITH failed AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
    AS f(order_id, kind, error, started_at)),
fulfilled AS (
    UPDATE orders SET status = $5, updated_at = now()
    WHERE id = ANY (ARRAY(SELECT order_id FROM failed WHERE kind = $6)) AND status = $7
    RETURNING id)
INSERT INTO order_events (order_id, type, details)
SELECT order_id, $8,
jsonb_build_object('notification', kind, 'error', error, 'started_at', started_at)
FROM failed
UNION ALL
SELECT id, $9, jsonb_build_object('notification', $6::text, 'delivered', false)
FROM fulfilled
