DROP TABLE unit_tallies;
DROP TABLE tally_deltas;
