UPDATE tasks SET state = 'waiting', claim_token = NULL, lease_expires_at = NULL,
    updated_at = now(), last_error = 'lease expired; waiting again',
    errors = errors || jsonb_build_array(jsonb_build_object(
        'attempt', attempts, 'at', now(), 'error', 'lease expired; waiting again'))
WHERE id IN (
    SELECT id FROM tasks
    WHERE kind = $1 AND state = 'running' AND lease_expires_at < now()
    AND attempts < max_attempts
    ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
