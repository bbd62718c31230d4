-- Search (broadcaster/store/search_postgres.py): one row per indexed entry.
-- ``doc`` is the lower-cased title and text, under a pg_trgm index for terms
-- of 3+ characters; ``grams`` the characters and character pairs of ``doc``
-- as integers, under a GIN array index for terms of 1 or 2 characters.

CREATE TABLE search_rows (
    id BIGSERIAL PRIMARY KEY,
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    posted_at TEXT NOT NULL,
    text TEXT NOT NULL,
    doc TEXT NOT NULL,
    grams INTEGER[] NOT NULL,
    UNIQUE (incident, seq)
);
CREATE INDEX search_rows_trgm ON search_rows USING gin (doc gin_trgm_ops);
CREATE INDEX search_rows_grams ON search_rows USING gin (grams);
CREATE INDEX search_rows_by_incident ON search_rows (incident, id);
CREATE TABLE search_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
