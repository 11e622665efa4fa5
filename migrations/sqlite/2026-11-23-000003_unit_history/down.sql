DROP TABLE reorganisations;
DROP TABLE unit_history;
