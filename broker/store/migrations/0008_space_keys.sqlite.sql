-- SQLite's dialect: INTEGER columns hold 64 bits (Unix times).
-- Reusable Space keys (`pair spaces keys`): stored only as a SHA-256 digest; a container that
-- bootstraps with one becomes its own Space of the key's owner, shared with the key's people.

CREATE TABLE space_keys (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    uses         INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER
);
-- A name is unique per owner among keys not revoked, so `revoke NAME` names one key.
CREATE UNIQUE INDEX space_keys_owner_name ON space_keys(owner_id, name) WHERE revoked_at IS NULL;

CREATE TABLE space_key_shares (
    key_id  TEXT NOT NULL REFERENCES space_keys(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (key_id, user_id)
);

-- The key that made a Space and the container name it was made for: the same container
-- rebuilt (the same name, with the same key) comes back as the same live Space.
ALTER TABLE spaces ADD COLUMN space_key_id TEXT REFERENCES space_keys(id) ON DELETE SET NULL;
ALTER TABLE spaces ADD COLUMN container_name TEXT;
CREATE UNIQUE INDEX spaces_key_container ON spaces(space_key_id, container_name)
    WHERE deleted_at IS NULL AND space_key_id IS NOT NULL;
