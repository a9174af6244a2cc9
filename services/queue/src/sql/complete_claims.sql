UPDATE tasks AS t SET state = 'completed', completed_at = now(), updated_at = now(),
    claim_token = NULL, lease_expires_at = NULL
FROM unnest($1::bigint[], $2::uuid[]) AS claim(id, token)
WHERE t.id = claim.id AND t.claim_token = claim.token
AND t.lease_expires_at > clock_timestamp()
RETURNING t.id, claim.token
