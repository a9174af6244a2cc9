-- The writes of a group of reservations, decided in memory under the locks already taken:
-- the stock taken per product, the orders reserved or cancelled for want of stock, and
-- their timeline events.
WITH taken AS (
    UPDATE products AS p SET stock = p.stock - taken.units, updated_at = now()
    FROM unnest($1::uuid[], $2::int4[]) AS taken(id, units)
    WHERE p.id = taken.id),
reserved AS (
    UPDATE orders SET status = $3, updated_at = now()
    WHERE id = ANY ($4::uuid[]) AND status = $5),
out_of_stock AS (
    UPDATE orders SET status = $6, cancel_reason = $7, updated_at = now()
    WHERE id = ANY ($8::uuid[]) AND status = $5)
INSERT INTO order_events (order_id, type, details)
SELECT * FROM unnest($9::uuid[], $10::text[], $11::jsonb[])
