-- Whether a target column holds pseudonyms (the agent's HMAC-SHA256 of the
-- value, keyed per municipality agent) rather than values in clear. Set by
-- the Begin that adds the column; a later transmission that sends the
-- column the other way is refused (changed schema), so a target column
-- never mixes clear values and pseudonyms.
ALTER TABLE transmissor.target_columns
    ADD COLUMN pseudonymised boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN transmissor.target_columns.pseudonymised IS
    'the column holds pseudonyms (lowercase hex HMAC-SHA256 keyed per municipality agent), never values in clear';
