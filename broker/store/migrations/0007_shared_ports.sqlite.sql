-- SQLite's dialect: INTEGER columns hold 64 bits (times).
-- Shared ports (issue 12): each user's DNS handle (the OWNER part of app addresses), the ports
-- Spaces share with their address labels (PORT--SPACE--OWNER, unique: addresses are looked up,
-- never inverted), and the app sign-in tickets already redeemed (each works once).

ALTER TABLE users ADD COLUMN handle TEXT;
CREATE UNIQUE INDEX users_handle ON users(handle) WHERE handle IS NOT NULL;

CREATE TABLE shared_ports (
    space_id   TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    port       INTEGER NOT NULL,
    level      TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    address    TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (space_id, port)
);

CREATE TABLE used_tickets (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
