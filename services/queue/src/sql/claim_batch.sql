WITH due AS (
    SELECT id FROM tasks
    WHERE kind = $1 AND state = 'waiting' AND run_at <= now()
    ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),
no_flush_wait AS (
    SELECT set_config('synchronous_commit', 'off', true) AS setting)
UPDATE tasks AS t
SET state = 'running', claim_token = gen_random_uuid(), attempts = t.attempts + 1,
    lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
FROM due, no_flush_wait
WHERE t.id = due.id
RETURNING t.id, t.kind, t.payload, t.attempts AS attempt, t.max_attempts,
    t.claim_token, t.lease_expires_at, t.run_at, now() AS claimed_at,
    t.correlation_id
