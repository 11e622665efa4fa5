-- The administrative tree over time. Each row says a unit sat under a parent from valid_from
-- (inclusive) to valid_to (exclusive); dates are 'YYYY-MM-DD' text, which orders like dates.
-- NULL valid_from: since before Hamlet's records; NULL valid_to: still so. Reorganisations
-- (moves, merges) close a row and open another; households never move because of them.
CREATE TABLE unit_history (
    seq BIGSERIAL PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units (id),
    parent_id TEXT REFERENCES units (id),
    valid_from TEXT,
    valid_to TEXT,
    created_us BIGINT NOT NULL
);
CREATE INDEX unit_history_unit ON unit_history (unit_id);
CREATE INDEX unit_history_parent ON unit_history (parent_id);
INSERT INTO unit_history (unit_id, parent_id, valid_from, valid_to, created_us)
    SELECT id, parent_id, NULL, NULL, created_us FROM units;

-- What was reorganised, when, by whom: the audit trail of the map.
CREATE TABLE reorganisations (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('move', 'merge')),
    effective_on TEXT NOT NULL,
    detail TEXT NOT NULL,
    actor_user_id TEXT,
    created_us BIGINT NOT NULL
);
