//! The local store's tables (created by `store::SCHEMA`).

diesel::table! {
    /// One row: this installation's identity, counters and sync position.
    state (id) {
        id -> Integer,
        device_id -> Text,
        next_mutation_id -> BigInt,
        hlc_wall_ms -> Nullable<BigInt>,
        hlc_counter -> BigInt,
        server_url -> Nullable<Text>,
        synced_scope -> Nullable<Text>,
        pull_cursor -> Nullable<Text>,
        last_sync_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// At most one row: the logged-in user and their tokens.
    session (id) {
        id -> Integer,
        user_id -> Text,
        username -> Text,
        role -> Text,
        access_token -> Text,
        refresh_token -> Text,
    }
}

diesel::table! {
    /// Server copies: the last pulled state of each record.
    records (record_type, id) {
        record_type -> Text,
        id -> Text,
        version -> BigInt,
        deleted -> Bool,
        fields -> Text,
    }
}

diesel::table! {
    /// Local edits not yet acknowledged by the server, and rejected ones kept for the user.
    outbox (mutation_id) {
        mutation_id -> BigInt,
        record_type -> Text,
        record_id -> Text,
        op -> Text,
        base_version -> BigInt,
        hlc -> Text,
        fields -> Text,
        sent -> Bool,
        rejected -> Bool,
        errors -> Nullable<Text>,
        created_us -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(state, session, records, outbox);
