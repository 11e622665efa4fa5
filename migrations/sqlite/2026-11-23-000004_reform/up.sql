-- A reform (a national old->new mapping applied at once) is a reorganisation of its own kind.
-- SQLite cannot alter a CHECK constraint: the table is rebuilt with its rows.
CREATE TABLE reorganisations_new (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('move', 'merge', 'reform')),
    effective_on TEXT NOT NULL,
    detail TEXT NOT NULL,
    actor_user_id TEXT,
    created_us BIGINT NOT NULL
);
INSERT INTO reorganisations_new SELECT id, kind, effective_on, detail, actor_user_id, created_us
    FROM reorganisations;
DROP TABLE reorganisations;
ALTER TABLE reorganisations_new RENAME TO reorganisations;
