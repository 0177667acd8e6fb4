-- PostgreSQL's dialect: BIGINT times and byte counts, bytewise text (see 0001).
-- The relay: what the owner wants the Space's SSH service to be, and a log of every tunnel.

ALTER TABLE spaces ADD COLUMN desired_state TEXT COLLATE "C" NOT NULL DEFAULT 'running';

CREATE TABLE tunnels (
    id             TEXT COLLATE "C" PRIMARY KEY,
    space_id       TEXT COLLATE "C" NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    user_id        TEXT COLLATE "C" NOT NULL,
    email          TEXT COLLATE "C" NOT NULL,
    client_address TEXT COLLATE "C" NOT NULL DEFAULT '',
    opened_at      BIGINT NOT NULL,
    closed_at      BIGINT,
    bytes_in       BIGINT NOT NULL DEFAULT 0,
    bytes_out      BIGINT NOT NULL DEFAULT 0,
    close_reason   TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX tunnels_space_open ON tunnels(space_id) WHERE closed_at IS NULL;
