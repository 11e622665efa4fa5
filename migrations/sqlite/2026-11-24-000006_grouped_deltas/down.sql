-- Unfolded counter deltas back to [[metric, birth year, yes, no, unknown], ...].
UPDATE tally_deltas SET counts = COALESCE((
    SELECT json_group_array(json_array(m.key, json_extract(k.value, '$[0]'), json_extract(k.value, '$[1]'),
                                       json_extract(k.value, '$[2]'), json_extract(k.value, '$[3]')))
    FROM json_each(tally_deltas.counts) AS m, json_each(m.value) AS k
), '[]')
WHERE substr(ltrim(counts), 1, 1) = '{';
