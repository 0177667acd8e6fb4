-- PostgreSQL's dialect: BIGINT times, bytewise text (see 0001).
-- Reusable Space keys (`pair spaces keys`): stored only as a SHA-256 digest; a container that
-- bootstraps with one becomes its own Space of the key's owner, shared with the key's people.

CREATE TABLE space_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    owner_id     TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL,
    key_hash     TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    uses         INTEGER NOT NULL DEFAULT 0,
    last_used_at BIGINT
);
-- A name is unique per owner among keys not revoked, so `revoke NAME` names one key.
CREATE UNIQUE INDEX space_keys_owner_name ON space_keys(owner_id, name) WHERE revoked_at IS NULL;

CREATE TABLE space_key_shares (
    key_id  TEXT COLLATE "C" NOT NULL REFERENCES space_keys(id) ON DELETE CASCADE,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (key_id, user_id)
);

-- The key that made a Space and the container name it was made for: the same container
-- rebuilt (the same name, with the same key) comes back as the same live Space.
ALTER TABLE spaces ADD COLUMN space_key_id TEXT COLLATE "C" REFERENCES space_keys(id) ON DELETE SET NULL;
ALTER TABLE spaces ADD COLUMN container_name TEXT COLLATE "C";
CREATE UNIQUE INDEX spaces_key_container ON spaces(space_key_id, container_name)
    WHERE deleted_at IS NULL AND space_key_id IS NOT NULL;
