-- Questions: the source network and text fingerprint of pending questions, and the
-- per-incident counts of questions set aside (broadcaster/accountability/questions.py).
CREATE TABLE question_sources (
    id TEXT PRIMARY KEY REFERENCES questions(id),
    incident TEXT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    asks INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX question_sources_by_source ON question_sources (incident, source);
CREATE INDEX question_sources_by_text ON question_sources (incident, fingerprint);
CREATE TABLE question_intake (
    incident TEXT PRIMARY KEY REFERENCES incidents(id),
    folded INTEGER NOT NULL DEFAULT 0,
    turned_away INTEGER NOT NULL DEFAULT 0
);
