-- PostgreSQL's dialect: BIGINT times, bytewise text (see 0001).
-- Shared ports (issue 12): each user's DNS handle (the OWNER part of app addresses), the ports
-- Spaces share with their address labels (PORT--SPACE--OWNER, unique: addresses are looked up,
-- never inverted), and the app sign-in tickets already redeemed (each works once).

ALTER TABLE users ADD COLUMN handle TEXT COLLATE "C";
CREATE UNIQUE INDEX users_handle ON users(handle) WHERE handle IS NOT NULL;

CREATE TABLE shared_ports (
    space_id   TEXT COLLATE "C" NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    port       INTEGER NOT NULL,
    level      TEXT COLLATE "C" NOT NULL,
    label      TEXT COLLATE "C" NOT NULL DEFAULT '',
    address    TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (space_id, port)
);

CREATE TABLE used_tickets (
    nonce      TEXT COLLATE "C" PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
