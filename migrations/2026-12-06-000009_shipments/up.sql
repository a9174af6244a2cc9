-- The parcel booked for each reserved order (the `shipping.book` step): one per order; the
-- confirmation e-mail carries its tracking number.
CREATE TABLE shipments (
    order_id        UUID        PRIMARY KEY REFERENCES orders (id),
    carrier         TEXT        NOT NULL,
    tracking_number TEXT        NOT NULL UNIQUE,
    booked_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
