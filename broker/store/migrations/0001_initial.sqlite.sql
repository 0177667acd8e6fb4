-- SQLite's dialect: INTEGER columns hold 64 bits and `INTEGER PRIMARY KEY` numbers rows itself.
-- Accounts, SSH keys, Spaces, their shares and tokens, and the audit log.
-- Times are Unix seconds (INTEGER); secrets are stored only as SHA-256 hex digests.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    auth_key_hash TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    client       TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE ssh_keys (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL UNIQUE,
    key_type    TEXT NOT NULL,
    bits        INTEGER NOT NULL,
    public_key  TEXT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);
CREATE INDEX ssh_keys_user ON ssh_keys(user_id);

CREATE TABLE spaces (
    id                    TEXT PRIMARY KEY,
    owner_id              TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    state                 TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    last_seen_at          INTEGER,
    deleted_at            INTEGER,
    instance_id           TEXT,
    facts                 TEXT,
    agent_credential_hash TEXT UNIQUE
);
-- Names are unique per owner among live Spaces; a deleted Space's name can be reused.
CREATE UNIQUE INDEX spaces_owner_name ON spaces(owner_id, name) WHERE deleted_at IS NULL;

CREATE TABLE space_shares (
    space_id   TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (space_id, user_id)
);
CREATE INDEX space_shares_user ON space_shares(user_id);

CREATE TABLE space_tokens (
    jti              TEXT PRIMARY KEY,
    space_id         TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    issued_by        TEXT NOT NULL,
    issued_at        INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_instance_id TEXT,
    used_at          INTEGER,
    revoked_at       INTEGER
);
CREATE INDEX space_tokens_space ON space_tokens(space_id);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
