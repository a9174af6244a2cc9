// The order tables. The `tasks` table belongs to the queue crate.

diesel::table! {
    products (id) {
        id -> Uuid,
        sku -> Text,
        name -> Text,
        price_cents -> Int8,
        currency -> Text,
        stock -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        status -> Text,
        cancel_reason -> Nullable<Text>,
        customer_email -> Text,
        customer_name -> Text,
        shipping_address -> Nullable<Jsonb>,
        payment_token -> Text,
        total_cents -> Int8,
        currency -> Text,
        idempotency_key -> Nullable<Text>,
        request_fingerprint -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        access_token -> Text,
    }
}

diesel::table! {
    order_items (order_id, line_no) {
        order_id -> Uuid,
        line_no -> Int4,
        product_id -> Uuid,
        sku -> Text,
        quantity -> Int4,
        unit_price_cents -> Int8,
    }
}

diesel::table! {
    order_events (id) {
        id -> Int8,
        order_id -> Uuid,
        #[sql_name = "type"]
        event_type -> Text,
        at -> Timestamptz,
        details -> Jsonb,
    }
}

diesel::table! {
    payments (order_id) {
        order_id -> Uuid,
        status -> Text,
        amount_cents -> Int8,
        gateway_charge_id -> Nullable<Text>,
        decline_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sent_emails (order_id, kind) {
        order_id -> Uuid,
        kind -> Text,
        message_id -> Text,
        recipient -> Text,
        sent_at -> Timestamptz,
    }
}

diesel::joinable!(order_items -> orders (order_id));
diesel::joinable!(order_items -> products (product_id));
diesel::joinable!(order_events -> orders (order_id));
diesel::joinable!(payments -> orders (order_id));
diesel::joinable!(sent_emails -> orders (order_id));

diesel::allow_tables_to_appear_in_same_query!(
    products,
    orders,
    order_items,
    order_events,
    payments,
    sent_emails,
);
