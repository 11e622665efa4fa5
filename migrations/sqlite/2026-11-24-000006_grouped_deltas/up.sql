-- Unfolded counter deltas grouped by metric: {"metric": [[birth year, yes, no, unknown], ...]}
-- instead of [[metric, birth year, yes, no, unknown], ...] (each metric's name once per row, not
-- once per birth year: rows half as long). The server reads both forms.
UPDATE tally_deltas SET counts = COALESCE((
    SELECT json_group_object(g.metric, json(g.keys))
    FROM (
        SELECT json_extract(e.value, '$[0]') AS metric,
               json_group_array(json_array(json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'),
                                           json_extract(e.value, '$[3]'), json_extract(e.value, '$[4]'))) AS keys
        FROM json_each(tally_deltas.counts) AS e
        GROUP BY 1
    ) AS g
), '{}')
WHERE substr(ltrim(counts), 1, 1) = '[';
