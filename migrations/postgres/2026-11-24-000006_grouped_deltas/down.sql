-- Unfolded counter deltas back to [[metric, birth year, yes, no, unknown], ...].
UPDATE tally_deltas d SET counts = COALESCE((
    SELECT json_agg(json_build_array(m.key, k->0, k->1, k->2, k->3))::text
    FROM json_each(d.counts::json) AS m, json_array_elements(m.value) AS k
), '[]')
WHERE left(ltrim(counts), 1) = '{';
