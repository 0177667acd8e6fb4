-- SQLite's dialect: INTEGER columns hold 64 bits (times, byte counts).
-- The relay: what the owner wants the Space's SSH service to be, and a log of every tunnel.

ALTER TABLE spaces ADD COLUMN desired_state TEXT NOT NULL DEFAULT 'running';

CREATE TABLE tunnels (
    id             TEXT PRIMARY KEY,
    space_id       TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    email          TEXT NOT NULL,
    client_address TEXT NOT NULL DEFAULT '',
    opened_at      INTEGER NOT NULL,
    closed_at      INTEGER,
    bytes_in       INTEGER NOT NULL DEFAULT 0,
    bytes_out      INTEGER NOT NULL DEFAULT 0,
    close_reason   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tunnels_space_open ON tunnels(space_id) WHERE closed_at IS NULL;
