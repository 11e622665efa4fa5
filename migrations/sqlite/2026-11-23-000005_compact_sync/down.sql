DROP INDEX tally_deltas_village;
ALTER TABLE tally_deltas RENAME TO tally_deltas_new;
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
INSERT INTO tally_deltas (village_id, metric, birth_year, yes, no, unknown)
SELECT d.village_id, json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'),
       json_extract(e.value, '$[2]'), json_extract(e.value, '$[3]'), json_extract(e.value, '$[4]')
FROM tally_deltas_new d, json_each(d.counts) AS e;
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
SELECT b.device_id, json_extract(e.value, '$.m'), '', COALESCE(json_extract(e.value, '$.o.id'), ''),
       json_extract(e.value, '$.s'), json_extract(e.value, '$.v'), json_extract(e.value, '$.o'),
       b.created_us
FROM sync_batches b, json_each(b.results) AS e;
DROP TABLE sync_batches;
