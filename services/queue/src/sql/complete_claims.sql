WITH commit_setting AS (
    SELECT set_config('synchronous_commit',
        CASE WHEN $1 THEN current_setting('synchronous_commit') ELSE 'off' END, true) AS setting)
UPDATE tasks AS t SET state = 'completed', completed_at = now(), updated_at = now(),
    claim_token = NULL, lease_expires_at = NULL
FROM unnest($2::bigint[], $3::uuid[]) AS claim(id, token), commit_setting
WHERE t.id = claim.id AND t.claim_token = claim.token
AND t.lease_expires_at > clock_timestamp()
RETURNING t.id, claim.token
