-- SQLite's dialect: INTEGER columns hold 64 bits (times).
-- The template a Space key makes its Spaces from (`pair spaces keys create --template NAME`).
-- NULL: the broker's default template when a container registers. A name, not a foreign key:
-- a template removed later is not silently replaced by another; registration is refused
-- naming it (broker/space_keys.py), and adding a template of that name again mends the key.
ALTER TABLE space_keys ADD COLUMN template TEXT;
