-- `net` in Space lists sums the bytes of each Space's streams closed in the last 24 hours: an
-- index on (space_id, closed_at) reads just those rows, where the only index on streams held open
-- ones and the query read every stream the Space ever had.

CREATE INDEX streams_space_closed ON streams(space_id, closed_at) WHERE closed_at IS NOT NULL;
