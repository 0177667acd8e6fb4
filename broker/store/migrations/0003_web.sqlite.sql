-- SQLite's dialect: INTEGER columns hold 64 bits (Unix times).
-- One-time sign-in links for the web page (`pair web`): stored only as a SHA-256 digest,
-- valid for minutes, and spent by their first use (used_at).

CREATE TABLE web_links (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX web_links_expiry ON web_links(expires_at);
