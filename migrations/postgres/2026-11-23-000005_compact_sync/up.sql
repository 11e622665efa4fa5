-- Fewer rows per push. A push of 200 mutations used to write 200 idempotency rows and one
-- counter delta row per (village, metric, birth year) it moved, hundreds more: now one row
-- each per push.

-- Idempotency: one row per push, the first answer of every mutation it applied, in mutation id
-- order, as JSON [{"m": mutation id, "s": status, "v": version, "o": {"id", "conflicts",
-- "errors"}}, ...]. Pushes of one device take turns (its device rows are locked first), so the
-- ranges of two rows never hold the same mutation id.
CREATE TABLE sync_batches (
    device_id TEXT NOT NULL,
    first_mutation_id BIGINT NOT NULL,
    last_mutation_id BIGINT NOT NULL,
    results TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (device_id, last_mutation_id)
);
INSERT INTO sync_batches (device_id, first_mutation_id, last_mutation_id, results, created_us)
SELECT device_id, mutation_id, mutation_id,
       json_build_array(json_build_object('m', mutation_id, 's', status, 'v', version, 'o', outcome::json))::text,
       created_us
FROM sync_mutations;
DROP TABLE sync_mutations;

-- Counter deltas: one row per village per write, its counts as JSON
-- [[metric, birth year, yes, no, unknown], ...].
DROP INDEX tally_deltas_village;
ALTER TABLE tally_deltas RENAME TO tally_deltas_old;
CREATE TABLE tally_deltas (
    id BIGSERIAL PRIMARY KEY,
    village_id TEXT NOT NULL,
    counts TEXT NOT NULL
);
CREATE INDEX tally_deltas_village ON tally_deltas (village_id);
INSERT INTO tally_deltas (village_id, counts)
SELECT village_id, json_agg(json_build_array(metric, birth_year, yes, no, unknown))::text
FROM tally_deltas_old GROUP BY village_id;
DROP TABLE tally_deltas_old;

-- Change feed: one row per write, village and record type, listing the records it changed
-- (comma-separated ids, in change order). A row written before holds one id: still valid.
ALTER TABLE sync_changes RENAME COLUMN record_id TO record_ids;
ALTER TABLE sync_changes DROP COLUMN version;
