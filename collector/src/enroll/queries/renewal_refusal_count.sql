-- Counts a refused renewal of agent $1 in the current window of $2 seconds;
-- returns the count (1: the first of the window, the one audited).
UPDATE transmissor.agents SET
    renew_refusals = CASE WHEN renew_refusals_since > now() - make_interval(secs => $2)
                          THEN renew_refusals + 1 ELSE 1 END,
    renew_refusals_since = CASE WHEN renew_refusals_since > now() - make_interval(secs => $2)
                                THEN renew_refusals_since ELSE now() END
WHERE id = $1
RETURNING renew_refusals
