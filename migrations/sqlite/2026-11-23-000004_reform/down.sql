DELETE FROM reorganisations WHERE kind = 'reform';
CREATE TABLE reorganisations_old (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('move', 'merge')),
    effective_on TEXT NOT NULL,
    detail TEXT NOT NULL,
    actor_user_id TEXT,
    created_us BIGINT NOT NULL
);
INSERT INTO reorganisations_old SELECT id, kind, effective_on, detail, actor_user_id, created_us
    FROM reorganisations;
DROP TABLE reorganisations;
ALTER TABLE reorganisations_old RENAME TO reorganisations;
