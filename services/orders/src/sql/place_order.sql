-- An order placed in one statement: price the lines from the catalog, then (only when
-- every product is known and they share one currency) insert the order, its lines, its
-- `placed` event and its first task. The row returned says what the catalog had and
-- whether the order was inserted. With an idempotency key already taken, a concurrent
-- duplicate waits for the first to commit and inserts nothing.
WITH line AS (
    SELECT l.product_id, l.quantity, (l.position - 1)::int4 AS line_no
    FROM unnest($1::uuid[], $2::int4[]) WITH ORDINALITY AS l(product_id, quantity, position)),
priced AS (
    SELECT line.line_no, line.product_id, line.quantity, p.sku, p.price_cents, p.currency
    FROM line JOIN products p ON p.id = line.product_id WHERE p.id = ANY($1::uuid[])),
catalog AS (
    SELECT count(*) AS known, count(DISTINCT currency) AS currencies, min(currency) AS currency,
           coalesce(sum(price_cents * quantity), 0)::int8 AS total_cents,
           array_agg(product_id) AS product_ids, array_agg(sku) AS skus,
           array_agg(price_cents) AS prices
    FROM priced),
new_order AS (
    INSERT INTO orders (id, status, customer_email, customer_name, shipping_address,
                        payment_token, total_cents, currency, idempotency_key, request_fingerprint,
                        access_token)
    SELECT $3, $4, $5, $6, $7, $8, catalog.total_cents, catalog.currency, $9, $10, $11
    FROM catalog WHERE catalog.known = (SELECT count(*) FROM line) AND catalog.currencies = 1
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, created_at),
items AS (
    INSERT INTO order_items (order_id, line_no, product_id, sku, quantity, unit_price_cents)
    SELECT new_order.id, priced.line_no, priced.product_id, priced.sku, priced.quantity,
           priced.price_cents
    FROM new_order CROSS JOIN priced),
placed AS (
    INSERT INTO order_events (order_id, type, details)
    SELECT new_order.id, $12, jsonb_build_object('total_cents', catalog.total_cents)
    FROM new_order CROSS JOIN catalog),
first_task AS (
    SELECT enqueue_task($13, $14, $15, $16, $17) AS id FROM new_order)
SELECT catalog.known, catalog.currencies, catalog.currency, catalog.total_cents,
       catalog.product_ids, catalog.skus, catalog.prices, new_order.created_at,
       first_task.id AS task_id
FROM catalog LEFT JOIN new_order ON true LEFT JOIN first_task ON true
