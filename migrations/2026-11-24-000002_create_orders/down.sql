DROP TABLE sent_emails; DROP TABLE payments; DROP TABLE order_events; DROP TABLE order_items; DROP TABLE orders; DROP TABLE products;
