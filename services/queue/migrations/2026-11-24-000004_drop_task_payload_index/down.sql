CREATE INDEX tasks_payload_idx ON tasks USING gin (payload jsonb_path_ops);
