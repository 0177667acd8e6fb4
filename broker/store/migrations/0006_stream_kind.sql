-- The connection log holds every stream, not only SSH: what each one reached in the container
-- (ssh: sshd; terminal: a PTY; port: 127.0.0.1:PORT). Rows logged before streams were SSH.

ALTER TABLE tunnels ADD COLUMN kind TEXT NOT NULL DEFAULT 'ssh';
