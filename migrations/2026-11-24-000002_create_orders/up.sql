CREATE TABLE products (
    id          UUID        PRIMARY KEY DEFAULT gen_random_uuid(),
    sku         TEXT        NOT NULL UNIQUE,
    name        TEXT        NOT NULL,
    price_cents BIGINT      NOT NULL CHECK (price_cents >= 0),
    currency    TEXT        NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    stock       INTEGER     NOT NULL CHECK (stock >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id                  UUID        PRIMARY KEY,
    status              TEXT        NOT NULL
                                    CHECK (status IN ('pending', 'paid', 'reserved', 'fulfilled', 'cancelled')),
    cancel_reason       TEXT        CHECK (cancel_reason IN ('payment_declined', 'out_of_stock', 'customer_request')),
    customer_email      TEXT        NOT NULL,
    customer_name       TEXT        NOT NULL,
    shipping_address    JSONB,
    payment_token       TEXT        NOT NULL,
    total_cents         BIGINT      NOT NULL CHECK (total_cents >= 0),
    currency            TEXT        NOT NULL,
    -- Idempotency: the unique constraint (not a check-then-insert) makes concurrent
    -- duplicates wait for the first insert and then find its order.
    idempotency_key     TEXT        UNIQUE,
    request_fingerprint TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'cancelled') = (cancel_reason IS NOT NULL))
);
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_created_idx ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_items (
    order_id         UUID    NOT NULL REFERENCES orders (id),
    line_no          INTEGER NOT NULL CHECK (line_no >= 0),
    product_id       UUID    NOT NULL REFERENCES products (id),
    sku              TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price_cents BIGINT  NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, product_id)
);
CREATE INDEX order_items_product_idx ON order_items (product_id);

-- The order's timeline: one row per transition, typed after the state it reached.
CREATE TABLE order_events (
    id       BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id UUID        NOT NULL REFERENCES orders (id),
    type     TEXT        NOT NULL,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    details  JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX order_events_order_idx ON order_events (order_id, id);

CREATE TABLE payments (
    order_id          UUID        PRIMARY KEY REFERENCES orders (id),
    status            TEXT        NOT NULL CHECK (status IN ('captured', 'declined', 'refunded')),
    amount_cents      BIGINT      NOT NULL CHECK (amount_cents >= 0),
    gateway_charge_id TEXT,
    decline_reason    TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Sent e-mails: at most one per order and kind; the Message-ID is deterministic so a
-- resend after a crash between send and commit is recognisable as the same message.
CREATE TABLE sent_emails (
    order_id   UUID        NOT NULL REFERENCES orders (id),
    kind       TEXT        NOT NULL CHECK (kind IN ('order_confirmed', 'order_cancelled')),
    message_id TEXT        NOT NULL UNIQUE,
    recipient  TEXT        NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, kind)
);
