UPDATE tasks AS t SET state = 'waiting', run_at = now(),
    attempts = greatest(t.attempts - 1, 0), claim_token = NULL,
    lease_expires_at = NULL, updated_at = now()
FROM unnest($1::bigint[], $2::uuid[]) AS held(id, token)
WHERE t.id = held.id AND t.claim_token = held.token AND t.state = 'running'
