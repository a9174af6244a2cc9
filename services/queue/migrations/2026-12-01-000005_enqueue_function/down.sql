DROP FUNCTION enqueue_task(text, jsonb, integer, text, text);
