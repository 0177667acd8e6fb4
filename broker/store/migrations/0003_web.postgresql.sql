-- PostgreSQL's dialect: BIGINT times, bytewise text (see 0001).
-- One-time sign-in links for the web page (`pair web`): stored only as a SHA-256 digest,
-- valid for minutes, and spent by their first use (used_at).

CREATE TABLE web_links (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX web_links_expiry ON web_links(expires_at);
