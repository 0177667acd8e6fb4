-- Whether the Space's sshd is serving, as its agent last reported it (SshHealth as JSON; NULL
-- before the agent reported, from agents older than the field, and after up/down until it does).

ALTER TABLE spaces ADD COLUMN ssh TEXT;
