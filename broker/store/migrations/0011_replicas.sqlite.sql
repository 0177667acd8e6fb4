-- SQLite's dialect: INTEGER holds 64-bit Unix times.
-- Broker replicas sharing this database: each registers the address the others reach it at and
-- beats (seen_at) while it serves; which replica holds each Space's agent control channel, and
-- what the agent last reported there (its terminals and listening ports); and which replica
-- logged each stream, so a starting replica closes only the dead ones' streams.
-- (A SQLite broker is one process: it keeps the tables of the one sequence, and leaves them empty.)

CREATE TABLE replicas (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);

CREATE TABLE agent_channels (
    space_id    TEXT PRIMARY KEY,
    replica_id  TEXT NOT NULL,
    attached_at INTEGER NOT NULL,
    terminals   TEXT,  -- what the agent last reported (JSON), for the replicas that do not hold it
    listening   TEXT
);

CREATE INDEX agent_channels_replica ON agent_channels (replica_id);

ALTER TABLE tunnels ADD COLUMN replica_id TEXT NOT NULL DEFAULT '';
