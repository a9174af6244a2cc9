DROP TRIGGER order_events_notify ON order_events;
DROP FUNCTION notify_order_events();
