-- Hamlet initial schema (SQLite). Keep in step with ../../postgres/<same folder>/up.sql.
-- Conventions: ids are canonical UUID text; times are BIGINT microseconds since the Unix epoch
-- (UTC); a nullable *_us column doubles as a flag (NULL = not disabled / not deleted / live).

CREATE TABLE units (
    id TEXT PRIMARY KEY NOT NULL,
    code TEXT,
    name TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('country', 'province', 'district', 'commune', 'village')),
    parent_id TEXT REFERENCES units (id),
    created_us BIGINT NOT NULL,
    -- Set when a reorganisation retires the unit (e.g. a commune merged into another).
    retired_us BIGINT
);
-- Codes are unique among live units only: a retired commune's code may be reused.
CREATE UNIQUE INDEX units_live_code ON units (code) WHERE code IS NOT NULL AND retired_us IS NULL;
CREATE INDEX units_parent ON units (parent_id);

-- Transitive closure of the current tree, self rows included (depth 0): scope checks and
-- roll-ups are one indexed lookup instead of a recursive walk.
CREATE TABLE unit_closure (
    ancestor_id TEXT NOT NULL REFERENCES units (id),
    descendant_id TEXT NOT NULL REFERENCES units (id),
    depth INTEGER NOT NULL,
    PRIMARY KEY (ancestor_id, descendant_id)
);
CREATE INDEX unit_closure_descendant ON unit_closure (descendant_id, depth);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('enumerator', 'admin', 'viewer')),
    created_us BIGINT NOT NULL,
    disabled_us BIGINT
);

CREATE TABLE user_scopes (
    user_id TEXT NOT NULL REFERENCES users (id),
    unit_id TEXT NOT NULL REFERENCES units (id),
    PRIMARY KEY (user_id, unit_id)
);
CREATE INDEX user_scopes_unit ON user_scopes (unit_id);

-- A phone as used by one user: a shared phone has one row per user.
CREATE TABLE devices (
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT,
    created_us BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    last_sync_us BIGINT,
    revoked_us BIGINT,
    PRIMARY KEY (device_id, user_id)
);
CREATE INDEX devices_user ON devices (user_id);

-- One login of one user on one device. Access tokens name it (`sid`) and every request checks
-- it, so ending a session takes effect at once on every server process.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    device_id TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    ended_us BIGINT,
    -- 'logout', 'revoked', 'refresh_reuse', 'disabled', 'replaced'
    end_reason TEXT
);
CREATE INDEX sessions_user_device ON sessions (user_id, device_id);

-- Refresh tokens, stored as SHA-256 hashes. A used token stays, so presenting it again is
-- recognised as theft and ends its session.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    created_us BIGINT NOT NULL,
    expires_us BIGINT NOT NULL,
    used_us BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Failed logins, per key ('user:NAME' or 'ip:ADDR'), for rate limiting across processes.
CREATE TABLE login_failures (
    id TEXT PRIMARY KEY NOT NULL,
    key TEXT NOT NULL,
    at_us BIGINT NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (key, at_us);

-- Append-only audit trail of security events.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    at_us BIGINT NOT NULL,
    actor_user_id TEXT,
    -- The user the event is about (NULL for a failed login of an unknown name).
    subject_user_id TEXT,
    action TEXT NOT NULL,
    ip TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at_us);
CREATE INDEX audit_log_subject ON audit_log (subject_user_id, at_us);

-- Records. village_id is on every record table: it is the unit of scope and the shard key.
CREATE TABLE households (
    id TEXT PRIMARY KEY NOT NULL,
    village_id TEXT NOT NULL REFERENCES units (id),
    head_name TEXT NOT NULL,
    address TEXT,
    fixed_broadband TEXT NOT NULL DEFAULT 'unknown' CHECK (fixed_broadband IN ('yes', 'no', 'unknown')),
    surveyed_on TEXT,
    version BIGINT NOT NULL,
    -- JSON object: field name -> HLC of the write that set it (per-field merge).
    clocks TEXT NOT NULL DEFAULT '{}',
    deleted_us BIGINT,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL
);
CREATE INDEX households_village ON households (village_id);

CREATE TABLE members (
    id TEXT PRIMARY KEY NOT NULL,
    -- No foreign key: a member may arrive before its household.
    household_id TEXT NOT NULL,
    -- The household's village once attached; NULL while the household has not arrived.
    village_id TEXT REFERENCES units (id),
    full_name TEXT NOT NULL,
    birth_year INTEGER NOT NULL,
    sex TEXT CHECK (sex IN ('male', 'female', 'other')),
    owns_smartphone TEXT NOT NULL CHECK (owns_smartphone IN ('yes', 'no', 'unknown')),
    has_transaction_account TEXT NOT NULL CHECK (has_transaction_account IN ('yes', 'no', 'unknown')),
    vneid_level2 TEXT NOT NULL DEFAULT 'unknown' CHECK (vneid_level2 IN ('yes', 'no', 'unknown')),
    uses_online_public_services TEXT NOT NULL DEFAULT 'unknown' CHECK (uses_online_public_services IN ('yes', 'no', 'unknown')),
    uses_cashless_payment TEXT NOT NULL DEFAULT 'unknown' CHECK (uses_cashless_payment IN ('yes', 'no', 'unknown')),
    has_digital_signature TEXT NOT NULL DEFAULT 'unknown' CHECK (has_digital_signature IN ('yes', 'no', 'unknown')),
    version BIGINT NOT NULL,
    clocks TEXT NOT NULL DEFAULT '{}',
    -- The user whose push created the member: decides whether it may attach to its household.
    pushed_by TEXT REFERENCES users (id),
    deleted_us BIGINT,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL
);
CREATE INDEX members_household ON members (household_id);
CREATE INDEX members_village ON members (village_id);

-- Idempotency: the stored outcome of every (device, mutation id) ever processed.
CREATE TABLE sync_mutations (
    device_id TEXT NOT NULL,
    mutation_id BIGINT NOT NULL,
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    status TEXT NOT NULL,
    version BIGINT,
    -- JSON: { "conflicts": [...], "errors": [...] } as first answered.
    outcome TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (device_id, mutation_id)
);

-- Change feed: one row per record version, read by pulls in seq order below a safe horizon.
CREATE TABLE sync_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    village_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- PostgreSQL transaction id (see the postgres migration); 0 on SQLite, whose writers are serial.
    txid BIGINT NOT NULL DEFAULT 0,
    created_us BIGINT NOT NULL
);
CREATE INDEX sync_changes_village_seq ON sync_changes (village_id, txid, seq);
CREATE INDEX sync_changes_order ON sync_changes (txid, seq);

CREATE TABLE conflicts (
    id TEXT PRIMARY KEY NOT NULL,
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    village_id TEXT NOT NULL,
    field TEXT NOT NULL,
    current_value TEXT NOT NULL,
    incoming_value TEXT NOT NULL,
    current_hlc TEXT NOT NULL,
    incoming_hlc TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    resolved_us BIGINT,
    resolved_by TEXT REFERENCES users (id)
);
CREATE INDEX conflicts_village ON conflicts (village_id, resolved_us);

-- Aggregate tallies per village, updated in the transaction of each record change.
-- metric: 'households', 'members', a member tri field or a household indicator;
-- birth_year: the members' birth year for member metrics (adults are derived at read time
-- against the reference year), 0 for household metrics. yes/no/unknown are row counts.
CREATE TABLE village_tallies (
    village_id TEXT NOT NULL REFERENCES units (id),
    metric TEXT NOT NULL,
    birth_year INTEGER NOT NULL,
    yes BIGINT NOT NULL DEFAULT 0,
    no BIGINT NOT NULL DEFAULT 0,
    unknown BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (village_id, metric, birth_year)
);
