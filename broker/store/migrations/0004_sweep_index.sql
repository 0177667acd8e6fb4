-- The sweep that stops silent Spaces looks only at live running/stopping ones: index them, so it
-- does not scan every Space inside its write transaction.
CREATE INDEX spaces_live_state ON spaces(state, last_seen_at) WHERE deleted_at IS NULL;
