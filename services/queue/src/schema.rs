diesel::table! {
    tasks (id) {
        id -> Int8,
        kind -> Text,
        payload -> Jsonb,
        state -> Text,
        attempts -> Int4,
        max_attempts -> Int4,
        run_at -> Timestamptz,
        claim_token -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        errors -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        unique_key -> Nullable<Text>,
        correlation_id -> Nullable<Text>,
    }
}
