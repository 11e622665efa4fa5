//! Diesel table definitions, written by hand to match migrations/{sqlite,postgres}.

diesel::table! {
    units (id) {
        id -> Text,
        code -> Nullable<Text>,
        name -> Text,
        level -> Text,
        parent_id -> Nullable<Text>,
        created_us -> BigInt,
        retired_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    unit_closure (ancestor_id, descendant_id) {
        ancestor_id -> Text,
        descendant_id -> Text,
        depth -> Integer,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        created_us -> BigInt,
        disabled_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    user_scopes (user_id, unit_id) {
        user_id -> Text,
        unit_id -> Text,
    }
}

diesel::table! {
    devices (device_id, user_id) {
        device_id -> Text,
        user_id -> Text,
        name -> Nullable<Text>,
        created_us -> BigInt,
        last_seen_us -> BigInt,
        last_sync_us -> Nullable<BigInt>,
        revoked_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    households (id) {
        id -> Text,
        village_id -> Text,
        head_name -> Text,
        address -> Nullable<Text>,
        fixed_broadband -> Text,
        surveyed_on -> Nullable<Text>,
        version -> BigInt,
        clocks -> Text,
        deleted_us -> Nullable<BigInt>,
        created_us -> BigInt,
        updated_us -> BigInt,
    }
}

diesel::table! {
    members (id) {
        id -> Text,
        household_id -> Text,
        village_id -> Nullable<Text>,
        full_name -> Text,
        birth_year -> Integer,
        sex -> Nullable<Text>,
        owns_smartphone -> Text,
        has_transaction_account -> Text,
        vneid_level2 -> Text,
        uses_online_public_services -> Text,
        uses_cashless_payment -> Text,
        has_digital_signature -> Text,
        version -> BigInt,
        clocks -> Text,
        pushed_by -> Nullable<Text>,
        deleted_us -> Nullable<BigInt>,
        created_us -> BigInt,
        updated_us -> BigInt,
    }
}

diesel::table! {
    sync_batches (device_id, last_mutation_id) {
        device_id -> Text,
        first_mutation_id -> BigInt,
        last_mutation_id -> BigInt,
        results -> Text,
        created_us -> BigInt,
    }
}

diesel::table! {
    sync_changes (seq) {
        seq -> BigInt,
        village_id -> Text,
        record_type -> Text,
        record_ids -> Text,
        txid -> BigInt,
        created_us -> BigInt,
    }
}

diesel::table! {
    conflicts (id) {
        id -> Text,
        record_type -> Text,
        record_id -> Text,
        village_id -> Text,
        field -> Text,
        current_value -> Text,
        incoming_value -> Text,
        current_hlc -> Text,
        incoming_hlc -> Text,
        device_id -> Text,
        created_us -> BigInt,
        resolved_us -> Nullable<BigInt>,
        resolved_by -> Nullable<Text>,
    }
}

diesel::table! {
    village_tallies (village_id, metric, birth_year) {
        village_id -> Text,
        metric -> Text,
        birth_year -> Integer,
        yes -> BigInt,
        no -> BigInt,
        unknown -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        device_id -> Text,
        created_us -> BigInt,
        last_seen_us -> BigInt,
        ended_us -> Nullable<BigInt>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        created_us -> BigInt,
        expires_us -> BigInt,
        used_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Text,
        key -> Text,
        at_us -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        at_us -> BigInt,
        actor_user_id -> Nullable<Text>,
        subject_user_id -> Nullable<Text>,
        action -> Text,
        ip -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::table! {
    tally_deltas (id) {
        id -> BigInt,
        village_id -> Text,
        counts -> Text,
    }
}

diesel::table! {
    unit_tallies (unit_id, metric, birth_year) {
        unit_id -> Text,
        metric -> Text,
        birth_year -> Integer,
        yes -> BigInt,
        no -> BigInt,
        unknown -> BigInt,
    }
}

diesel::table! {
    unit_history (seq) {
        seq -> BigInt,
        unit_id -> Text,
        parent_id -> Nullable<Text>,
        valid_from -> Nullable<Text>,
        valid_to -> Nullable<Text>,
        created_us -> BigInt,
    }
}

diesel::table! {
    reorganisations (id) {
        id -> Text,
        kind -> Text,
        effective_on -> Text,
        detail -> Text,
        actor_user_id -> Nullable<Text>,
        created_us -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    units,
    unit_closure,
    users,
    user_scopes,
    devices,
    households,
    members,
    sync_batches,
    sync_changes,
    conflicts,
    village_tallies,
    sessions,
    refresh_tokens,
    login_failures,
    audit_log,
    tally_deltas,
    unit_tallies,
    unit_history,
    reorganisations,
);
