-- The gateway answers of a group of charges, written in one statement: approved charges
-- become captured payments and move their orders pending -> paid (an order no longer
-- pending keeps its payment: captured too late, refunded by the caller); declined ones
-- cancel their orders and keep the declined payment; each change appends its event.
-- Returns what each order got: the outcome names bound as parameters.
WITH approved AS (
    SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[])
    AS a(order_id, amount_cents, charge_id, started_at)),
declined AS (
    SELECT * FROM unnest($5::uuid[], $6::int8[], $7::text[], $8::timestamptz[])
    AS d(order_id, amount_cents, reason, started_at)),
captured AS (
    INSERT INTO payments (order_id, status, amount_cents, gateway_charge_id)
    SELECT order_id, $9, amount_cents, charge_id FROM approved
    ON CONFLICT DO NOTHING
    RETURNING order_id, amount_cents),
paid AS (
    UPDATE orders SET status = $10, updated_at = now()
    WHERE id = ANY (ARRAY(SELECT order_id FROM captured)) AND status = $11
    RETURNING id),
cancelled AS (
    UPDATE orders SET status = $12, cancel_reason = $13, updated_at = now()
    WHERE id = ANY (ARRAY(SELECT order_id FROM declined)) AND status = $11
    RETURNING id),
declines AS (
    INSERT INTO payments (order_id, status, amount_cents, decline_reason)
    SELECT d.order_id, $14, d.amount_cents, d.reason
    FROM declined d JOIN cancelled c ON c.id = d.order_id
    ON CONFLICT DO NOTHING),
events AS (
    INSERT INTO order_events (order_id, type, details)
    SELECT c.order_id, $15,
    jsonb_build_object('amount_cents', c.amount_cents, 'started_at', a.started_at)
    FROM captured c JOIN paid p ON p.id = c.order_id
    JOIN approved a ON a.order_id = c.order_id
    UNION ALL
    SELECT d.order_id, $16, jsonb_build_object('reason', $13::text,
        'decline_reason', d.reason, 'started_at', d.started_at)
    FROM declined d JOIN cancelled c ON c.id = d.order_id)
SELECT c.order_id, CASE WHEN p.id IS NULL THEN $17 ELSE $18 END AS outcome
FROM captured c LEFT JOIN paid p ON p.id = c.order_id
UNION ALL
SELECT id, $19 FROM cancelled
