-- Sent e-mails of a group, recorded once per order and kind (a resend finds its record
-- and adds nothing, and so does a second copy in the same group); a confirmation fulfils
-- its reserved order; each recorded e-mail appends `fulfilled` or `notified`. Returns the
-- e-mails recorded now.
WITH listed AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
        $5::timestamptz[])
    AS l(order_id, kind, message_id, recipient, started_at)),
sent AS (
    INSERT INTO sent_emails (order_id, kind, message_id, recipient)
    SELECT order_id, kind, message_id, recipient FROM listed
    ON CONFLICT DO NOTHING
    RETURNING order_id, kind, message_id),
fulfilled AS (
    UPDATE orders SET status = $6, updated_at = now()
    WHERE id = ANY (ARRAY(SELECT order_id FROM sent WHERE kind = $7)) AND status = $8
    RETURNING id),
events AS (
    INSERT INTO order_events (order_id, type, details)
    SELECT sent.order_id, CASE WHEN fulfilled.id IS NULL THEN $9 ELSE $10 END,
    jsonb_build_object('notification', sent.kind, 'message_id', sent.message_id,
        'started_at', (SELECT min(l.started_at) FROM listed l
            WHERE l.order_id = sent.order_id AND l.kind = sent.kind))
    FROM sent LEFT JOIN fulfilled ON fulfilled.id = sent.order_id AND sent.kind = $7)
SELECT order_id, kind FROM sent
