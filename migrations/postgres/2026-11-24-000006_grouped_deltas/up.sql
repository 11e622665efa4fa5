-- Unfolded counter deltas grouped by metric: {"metric": [[birth year, yes, no, unknown], ...]}
-- instead of [[metric, birth year, yes, no, unknown], ...] (each metric's name once per row, not
-- once per birth year: rows half as long). The server reads both forms.
UPDATE tally_deltas d SET counts = COALESCE((
    SELECT json_object_agg(g.metric, g.keys)::text
    FROM (
        SELECT e->>0 AS metric, json_agg(json_build_array(e->1, e->2, e->3, e->4)) AS keys
        FROM json_array_elements(d.counts::json) AS e
        GROUP BY e->>0
    ) AS g
), '{}')
WHERE left(ltrim(counts), 1) = '[';
