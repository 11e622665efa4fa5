-- A reform (a national old->new mapping applied at once) is a reorganisation of its own kind.
ALTER TABLE reorganisations DROP CONSTRAINT reorganisations_kind_check;
ALTER TABLE reorganisations ADD CONSTRAINT reorganisations_kind_check
    CHECK (kind IN ('move', 'merge', 'reform'));
