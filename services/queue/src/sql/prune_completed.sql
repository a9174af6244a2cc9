DELETE FROM tasks WHERE id IN (
    SELECT id FROM tasks
    WHERE kind = $1 AND state = 'completed'
    AND completed_at < now() - make_interval(secs => $2)
    ORDER BY completed_at LIMIT $3 FOR UPDATE SKIP LOCKED)
