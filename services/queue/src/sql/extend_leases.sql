WITH held AS (
    SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS held(id, token)),
free AS (
    SELECT t.id FROM tasks t JOIN held ON t.id = held.id
    WHERE t.claim_token = held.token AND t.lease_expires_at > clock_timestamp()
    FOR UPDATE OF t SKIP LOCKED),
renewed AS (
    UPDATE tasks AS t SET lease_expires_at = clock_timestamp() + make_interval(secs => $3)
    FROM free WHERE t.id = free.id
    RETURNING t.id)
SELECT held.id, held.token, renewed.id IS NOT NULL AS renewed
FROM held
JOIN tasks t ON t.id = held.id AND t.claim_token = held.token
AND t.lease_expires_at > clock_timestamp()
LEFT JOIN renewed ON renewed.id = held.id
