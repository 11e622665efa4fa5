-- Roll-ups above the village. Pushes never update a shared total: they append deltas (insert
-- only), and a background fold moves them into unit_tallies, one row per unit, metric and birth
-- year, for every ancestor of the village. A read adds the deltas not folded yet.
CREATE TABLE tally_deltas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    village_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    birth_year INTEGER NOT NULL,
    yes BIGINT NOT NULL,
    no BIGINT NOT NULL,
    unknown BIGINT NOT NULL
);
CREATE INDEX tally_deltas_village ON tally_deltas (village_id);

CREATE TABLE unit_tallies (
    unit_id TEXT NOT NULL REFERENCES units (id),
    metric TEXT NOT NULL,
    birth_year INTEGER NOT NULL,
    yes BIGINT NOT NULL DEFAULT 0,
    no BIGINT NOT NULL DEFAULT 0,
    unknown BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (unit_id, metric, birth_year)
);
