DELETE FROM reorganisations WHERE kind = 'reform';
ALTER TABLE reorganisations DROP CONSTRAINT reorganisations_kind_check;
ALTER TABLE reorganisations ADD CONSTRAINT reorganisations_kind_check
    CHECK (kind IN ('move', 'merge'));
