-- The incident's state on the record (broadcaster/timeline/rules.py, status entries):
-- the current advice line, the key events editors pinned, and the state at creation
-- (JSON), from which the state as of any entry is replayed (CAP, pages).
ALTER TABLE incidents ADD COLUMN advice TEXT;
ALTER TABLE incidents ADD COLUMN pinned TEXT;
ALTER TABLE incidents ADD COLUMN initial TEXT;
