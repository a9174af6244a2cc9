UPDATE tasks SET state = 'dead', last_error = 'lease expired during the last attempt',
    errors = errors || jsonb_build_array(jsonb_build_object(
        'attempt', attempts, 'at', now(), 'error', 'lease expired during the last attempt')),
    claim_token = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id IN (
    SELECT id FROM tasks
    WHERE kind = $1 AND state = 'running' AND lease_expires_at < now()
    AND attempts >= max_attempts
    FOR UPDATE SKIP LOCKED)
RETURNING id, kind, payload, attempts, last_error
