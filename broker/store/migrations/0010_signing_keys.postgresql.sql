-- PostgreSQL's dialect: BIGINT times, bytewise text (see 0001).
-- Token signing keys kept in the database, shared by every replica: each private key sealed
-- with AES-256-GCM (broker/sealing.py), never in clear.

CREATE TABLE signing_keys (
    kid        TEXT COLLATE "C" PRIMARY KEY,
    created_at BIGINT NOT NULL,
    sealed     TEXT COLLATE "C" NOT NULL
);
