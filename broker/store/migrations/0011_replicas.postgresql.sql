-- PostgreSQL's dialect: BIGINT times, bytewise text (see 0001).
-- Broker replicas sharing this database: each registers the address the others reach it at and
-- beats (seen_at) while it serves; which replica holds each Space's agent control channel, and
-- what the agent last reported there (its terminals and listening ports); and which replica
-- logged each stream, so a starting replica closes only the dead ones' streams.

CREATE TABLE replicas (
    id         TEXT COLLATE "C" PRIMARY KEY,
    address    TEXT COLLATE "C" NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL
);

CREATE TABLE agent_channels (
    space_id    TEXT COLLATE "C" PRIMARY KEY,
    replica_id  TEXT COLLATE "C" NOT NULL,
    attached_at BIGINT NOT NULL,
    terminals   TEXT COLLATE "C",  -- what the agent last reported (JSON), for the replicas that do not hold it
    listening   TEXT COLLATE "C"
);

CREATE INDEX agent_channels_replica ON agent_channels (replica_id);

ALTER TABLE tunnels ADD COLUMN replica_id TEXT COLLATE "C" NOT NULL DEFAULT '';
