-- SQLite's dialect: INTEGER columns hold 64 bits (times).
-- Teams (issue 16): Space templates, groups, quotas and access requests; and the bus outbox,
-- through which the admin verbs (another process) reach the serving broker's bus.

-- A template says what a Space of it costs: compute units while it runs (starting or running),
-- storage units while it exists. At most one is the default (the partial unique index).
CREATE TABLE templates (
    name          TEXT PRIMARY KEY,
    description   TEXT NOT NULL DEFAULT '',
    compute_units INTEGER NOT NULL,
    storage_units INTEGER NOT NULL,
    is_default    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_one_default ON templates(is_default) WHERE is_default = 1;

-- A Space keeps its template's name and the units it had when the Space was made, so changing
-- or removing a template never changes what existing Spaces cost.
ALTER TABLE spaces ADD COLUMN template TEXT;
ALTER TABLE spaces ADD COLUMN compute_units INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spaces ADD COLUMN storage_units INTEGER NOT NULL DEFAULT 0;
CREATE INDEX spaces_owner_live ON spaces(owner_id) WHERE deleted_at IS NULL;

-- Quotas: NULL is unset (see broker/quotas.py for how unset and set limits combine).
ALTER TABLE users ADD COLUMN quota_spaces INTEGER;
ALTER TABLE users ADD COLUMN quota_compute INTEGER;
ALTER TABLE users ADD COLUMN quota_storage INTEGER;

-- Groups ("groups" is a keyword in SQL:2011 window frames, hence user_groups).
CREATE TABLE user_groups (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    quota_spaces  INTEGER,
    quota_compute INTEGER,
    quota_storage INTEGER
);

CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE space_group_shares (
    space_id   TEXT NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    group_id   TEXT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (space_id, group_id)
);
CREATE INDEX space_group_shares_group ON space_group_shares(group_id);

-- Access requests: someone without an account asks for one and waits (a device-flow hand-off,
-- RFC 8628: their CLI holds the device code, stored here as its SHA-256 digest).
-- state: pending, approved (the CLI signs in at its next poll), claimed (it did), denied.
CREATE TABLE access_requests (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL,
    message          TEXT NOT NULL DEFAULT '',
    client_address   TEXT NOT NULL DEFAULT '',
    device_code_hash TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    decided_at       INTEGER,
    decided_by       TEXT NOT NULL DEFAULT '',
    user_id          TEXT,
    space_id         TEXT,
    last_polled_at   INTEGER
);
CREATE INDEX access_requests_email ON access_requests(email, created_at);
CREATE INDEX access_requests_address ON access_requests(client_address, created_at);

-- Bus messages from processes that do not serve (the admin verbs): the serving brokers publish
-- them on their own bus (broker/outbox.py). AUTOINCREMENT: an id is never reused, so a reader
-- that remembers the last id it published never skips or repeats one.
CREATE TABLE bus_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel    TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bus_outbox_created ON bus_outbox(created_at);
