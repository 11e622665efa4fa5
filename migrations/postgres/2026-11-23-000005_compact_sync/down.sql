-- Change feed back to one row per record (versions were not kept: 1).
ALTER TABLE sync_changes RENAME TO sync_changes_new;
DROP INDEX sync_changes_village_seq;
DROP INDEX sync_changes_order;
CREATE TABLE sync_changes (
    seq BIGSERIAL PRIMARY KEY,
    village_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    created_us BIGINT NOT NULL
);
CREATE INDEX sync_changes_village_seq ON sync_changes (village_id, txid, seq);
CREATE INDEX sync_changes_order ON sync_changes (txid, seq);
INSERT INTO sync_changes (village_id, record_type, record_id, version, txid, created_us)
SELECT c.village_id, c.record_type, r.id, 1, c.txid, c.created_us
FROM sync_changes_new c, unnest(string_to_array(c.record_ids, ',')) WITH ORDINALITY AS r(id, n)
ORDER BY c.txid, c.seq, r.n;
DROP TABLE sync_changes_new;

DROP INDEX tally_deltas_village;
ALTER TABLE tally_deltas RENAME TO tally_deltas_new;
CREATE TABLE tally_deltas (
    id BIGSERIAL PRIMARY KEY,
    village_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    birth_year INTEGER NOT NULL,
    yes BIGINT NOT NULL,
    no BIGINT NOT NULL,
    unknown BIGINT NOT NULL
);
CREATE INDEX tally_deltas_village ON tally_deltas (village_id);
INSERT INTO tally_deltas (village_id, metric, birth_year, yes, no, unknown)
SELECT d.village_id, e->>0, (e->>1)::integer, (e->>2)::bigint, (e->>3)::bigint, (e->>4)::bigint
FROM tally_deltas_new d, json_array_elements(d.counts::json) AS e;
DROP TABLE tally_deltas_new;

CREATE TABLE sync_mutations (
    device_id TEXT NOT NULL,
    mutation_id BIGINT NOT NULL,
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    status TEXT NOT NULL,
    version BIGINT,
    outcome TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (device_id, mutation_id)
);
INSERT INTO sync_mutations
SELECT b.device_id, (e->>'m')::bigint, '', COALESCE(e->'o'->>'id', ''), e->>'s', (e->>'v')::bigint,
       (e->'o')::text, b.created_us
FROM sync_batches b, json_array_elements(b.results::json) AS e;
DROP TABLE sync_batches;
