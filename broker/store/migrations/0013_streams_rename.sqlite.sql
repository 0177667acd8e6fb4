-- SQLite's dialect: no ALTER INDEX, so the index is made again under its new name.
-- The connection log is named for what it holds, every stream (ssh, terminal, port), not the
-- SSH tunnels it began with: table `tunnels` becomes `streams`, its index likewise.

ALTER TABLE tunnels RENAME TO streams;
DROP INDEX tunnels_space_open;
CREATE INDEX streams_space_open ON streams(space_id) WHERE closed_at IS NULL;
