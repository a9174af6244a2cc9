CREATE FUNCTION tasks_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasks.' || NEW.kind, '');
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_notify_insert AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_notify_insert();
