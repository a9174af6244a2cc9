SELECT coalesce(max(extract(epoch FROM now() - first.run_at)), 0)::float8 AS seconds
FROM unnest($1::text[]) AS k(kind)
CROSS JOIN LATERAL (
    SELECT run_at FROM tasks WHERE kind = k.kind AND state = 'waiting' AND run_at <= now()
    ORDER BY run_at, id LIMIT 1) first
