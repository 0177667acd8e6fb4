-- SQLite's dialect: INTEGER holds 64-bit Unix times.
-- Token signing keys kept in the database (when the broker has an encryption key; always with
-- PostgreSQL): each private key sealed with AES-256-GCM (broker/sealing.py), never in clear.

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    sealed     TEXT NOT NULL
);
