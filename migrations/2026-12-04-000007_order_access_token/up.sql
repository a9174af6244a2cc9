-- Each order's bearer token: `GET /orders/{id}` and its cancel need it (or the admin
-- token). New orders get 256 random bits from the API; orders placed before this
-- migration get two random UUIDs' worth (244 bits) from the server.
ALTER TABLE orders ADD COLUMN access_token TEXT;
UPDATE orders SET access_token = replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
ALTER TABLE orders ALTER COLUMN access_token SET NOT NULL;
