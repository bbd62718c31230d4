-- The SQLite schema, applied at every start (each statement is idempotent).
-- The timeline, its checkpoints and the audit log refuse UPDATE and DELETE by trigger;
-- bodies live apart in contents, keyed by content_hash, so a lawful redaction deletes text
-- without touching the chained record.
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    severity TEXT NOT NULL,
    area TEXT,
    started_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    update_interval_minutes INTEGER,
    require_approval INTEGER NOT NULL DEFAULT 0,
    head_seq INTEGER NOT NULL DEFAULT 0,
    head_hash TEXT NOT NULL,
    last_posted_at TEXT,
    advice TEXT,                -- what the public should do now (status entries change it)
    pinned TEXT,                -- JSON list of the seqs editors pinned as key events
    initial TEXT,               -- JSON: the state at creation, to replay any entry's state
    areas TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS entries (
    incident TEXT NOT NULL REFERENCES incidents(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (incident, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contents (
    content_hash TEXT PRIMARY KEY,
    salt TEXT NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS redactions (
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    redaction_seq INTEGER NOT NULL,
    basis TEXT NOT NULL,
    posted_at TEXT NOT NULL,
    department TEXT NOT NULL,
    PRIMARY KEY (incident, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (incident, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    department TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT,
    department TEXT,
    role TEXT,
    remote TEXT,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    token_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (token_id, key)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'timeline entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'timeline entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- from broadcaster/accountability/questions.py
CREATE TABLE IF NOT EXISTS questions (
    id TEXT PRIMARY KEY,
    incident TEXT NOT NULL REFERENCES incidents(id),
    text TEXT NOT NULL,
    asked_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    handled_at TEXT,
    handled_by TEXT,
    answer_seq INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS questions_by_incident ON questions (incident, status, asked_at);
-- who asked (source network) and what (fingerprint), kept only while a question is pending
CREATE TABLE IF NOT EXISTS question_sources (
    id TEXT PRIMARY KEY REFERENCES questions(id),
    incident TEXT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    asks INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS question_sources_by_source ON question_sources (incident, source);
CREATE INDEX IF NOT EXISTS question_sources_by_text ON question_sources (incident, fingerprint);
-- questions set aside per incident (public figures): folded into another, or turned away
CREATE TABLE IF NOT EXISTS question_intake (
    incident TEXT PRIMARY KEY REFERENCES incidents(id),
    folded INTEGER NOT NULL DEFAULT 0,
    turned_away INTEGER NOT NULL DEFAULT 0
);

-- from broadcaster/search/service.py
CREATE TABLE IF NOT EXISTS search_rows (
    id INTEGER PRIMARY KEY,
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    posted_at TEXT NOT NULL,
    UNIQUE (incident, seq)
);
CREATE VIRTUAL TABLE IF NOT EXISTS search_text USING fts5(title, text, tokenize='trigram');
CREATE VIRTUAL TABLE IF NOT EXISTS search_pairs
    USING fts5(title, text, content='', tokenize='unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS search_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- from broadcaster/accountability/promises.py
CREATE TABLE IF NOT EXISTS interval_changes (
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    before INTEGER,
    PRIMARY KEY (incident, seq)
) WITHOUT ROWID;

-- from broadcaster/timeline/drafts.py
CREATE TABLE IF NOT EXISTS drafts (
    n INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    incident TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    author_name TEXT NOT NULL,
    author_department TEXT NOT NULL,
    author_token INTEGER,
    entry TEXT NOT NULL,
    review TEXT NOT NULL,
    decided_at TEXT,
    decided_by TEXT,
    reason TEXT,
    seq INTEGER,
    redacted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS drafts_by_status ON drafts (status, n);
CREATE INDEX IF NOT EXISTS drafts_by_entry ON drafts (incident, seq);

-- from channels/webhooks/send.py
CREATE TABLE IF NOT EXISTS webhooks (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    incidents TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    disabled_reason TEXT,
    status_changed_at TEXT,
    failing_since REAL,
    consecutive_dead INTEGER NOT NULL DEFAULT 0,
    last_success_at TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    areas TEXT,
    min_severity TEXT
);

-- from channels/sms/service.py
CREATE TABLE IF NOT EXISTS sms_subscribers (
    id INTEGER PRIMARY KEY,
    incident TEXT NOT NULL,
    number TEXT NOT NULL,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (incident, number)
);
CREATE INDEX IF NOT EXISTS sms_subscribers_by_number ON sms_subscribers (number);
CREATE TABLE IF NOT EXISTS sms_inbound (
    id INTEGER PRIMARY KEY,
    msgid TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_inbound_by_time ON sms_inbound (received_at);

-- from channels/delivery/outbox.py
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    target INTEGER NOT NULL,
    event TEXT NOT NULL,
    incident TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    leased_until REAL,
    leased_by INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_error TEXT,
    UNIQUE (channel, target, event, incident, seq)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, next_at)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_target ON deliveries (channel, target, id);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id INTEGER PRIMARY KEY,
    delivery INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_ms INTEGER,
    outcome TEXT NOT NULL DEFAULT 'sending',
    response_code INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_delivery ON delivery_attempts (delivery, n);
-- from broadcaster/store/workers.py: a lease names its worker (deliveries.leased_by)
CREATE TABLE IF NOT EXISTS delivery_workers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL
);

-- from broadcaster/store/log.py: the site's transparency log (docs/integrity.md)
CREATE TABLE IF NOT EXISTS log_leaves (
    idx INTEGER PRIMARY KEY,
    incident TEXT,
    seq INTEGER,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_leaves_by_incident ON log_leaves (incident, seq);
CREATE TABLE IF NOT EXISTS log_hashes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    published_at TEXT
);
CREATE TABLE IF NOT EXISTS log_cosignatures (
    size INTEGER NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (size, witness)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incident_creations (
    incident TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    hash TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signing_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT,
    announced_at INTEGER
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS log_leaves_no_update BEFORE UPDATE ON log_leaves
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_leaves_no_delete BEFORE DELETE ON log_leaves
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_hashes_no_update BEFORE UPDATE ON log_hashes
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_hashes_no_delete BEFORE DELETE ON log_hashes
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS incident_creations_no_update BEFORE UPDATE ON incident_creations
BEGIN SELECT RAISE(ABORT, 'creation records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS incident_creations_no_delete BEFORE DELETE ON incident_creations
BEGIN SELECT RAISE(ABORT, 'creation records are append-only'); END;

-- Areas and standing alerts (broadcaster/areas.py, broadcaster/store/areas.py).
-- area_keys maps each normalised name, alias and code to its area (a name may be shared);
-- area_paths holds every (area, ancestor) pair, the area itself included.
CREATE TABLE IF NOT EXISTS areas (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    parent TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS area_keys (
    key TEXT NOT NULL,
    code TEXT NOT NULL,
    PRIMARY KEY (key, code)
);
CREATE TABLE IF NOT EXISTS area_paths (
    area TEXT NOT NULL,
    ancestor TEXT NOT NULL,
    PRIMARY KEY (area, ancestor)
);
CREATE INDEX IF NOT EXISTS area_paths_by_ancestor ON area_paths (ancestor, area);
CREATE TABLE IF NOT EXISTS incident_areas (
    area TEXT NOT NULL,
    incident TEXT NOT NULL,
    PRIMARY KEY (area, incident)
);
CREATE INDEX IF NOT EXISTS incident_areas_by_incident ON incident_areas (incident);
CREATE TABLE IF NOT EXISTS area_alerts (
    incident TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sms_area_subscribers (
    id INTEGER PRIMARY KEY,
    area TEXT NOT NULL,
    number TEXT NOT NULL,
    min_rank INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (area, number)
);
CREATE INDEX IF NOT EXISTS sms_area_subscribers_by_number ON sms_area_subscribers (number);
