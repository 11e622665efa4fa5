-- Change feed back to one row per record (versions were not kept: 1).
ALTER TABLE sync_changes RENAME TO sync_changes_new;
DROP INDEX sync_changes_village_seq;
DROP INDEX sync_changes_order;
CREATE TABLE sync_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    village_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    txid BIGINT NOT NULL DEFAULT 0,
    created_us BIGINT NOT NULL
);
CREATE INDEX sync_changes_village_seq ON sync_changes (village_id, txid, seq);
CREATE INDEX sync_changes_order ON sync_changes (txid, seq);
INSERT INTO sync_changes (village_id, record_type, record_id, version, txid, created_us)
SELECT c.village_id, c.record_type, j.value, 1, c.txid, c.created_us
FROM sync_changes_new c, json_each('["' || replace(c.record_ids, ',', '","') || '"]') AS j
ORDER BY c.txid, c.seq, j.key;
DROP TABLE sync_changes_new;

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
