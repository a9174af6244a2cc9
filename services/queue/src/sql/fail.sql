UPDATE tasks SET
    state = CASE WHEN $1 OR attempts >= max_attempts THEN 'dead' ELSE 'waiting' END,
    run_at = now() + make_interval(secs => $2),
    claim_token = NULL, lease_expires_at = NULL, last_error = $3, updated_at = now(),
    errors = errors || jsonb_build_array(jsonb_build_object(
        'attempt', attempts, 'at', now(), 'error', $3::text))
WHERE id = $4 AND claim_token = $5 AND state = 'running'
RETURNING state
