-- PostgreSQL's dialect: the index and the constraints are renamed in place.
-- The connection log is named for what it holds, every stream (ssh, terminal, port), not the
-- SSH tunnels it began with: table `tunnels` becomes `streams`, its index and constraints likewise.

ALTER TABLE tunnels RENAME TO streams;
ALTER INDEX tunnels_space_open RENAME TO streams_space_open;
ALTER TABLE streams RENAME CONSTRAINT tunnels_pkey TO streams_pkey;
ALTER TABLE streams RENAME CONSTRAINT tunnels_space_id_fkey TO streams_space_id_fkey;
