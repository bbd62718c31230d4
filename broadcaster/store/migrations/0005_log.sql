-- The site's transparency log (broadcaster/store/log.py, docs/integrity.md): leaves in
-- commit order, the tile-level hashes, signed checkpoints and the witnesses' cosignatures,
-- every incident's creation record, and the history of the site's signing keys.
CREATE TABLE log_leaves (
    idx BIGINT PRIMARY KEY,
    incident TEXT,
    seq BIGINT,
    data BYTEA NOT NULL
);
CREATE UNIQUE INDEX log_leaves_by_incident ON log_leaves (incident, seq);
CREATE TABLE log_hashes (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE log_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    published_at TEXT
);
CREATE TABLE log_cosignatures (
    size BIGINT NOT NULL,
    witness TEXT NOT NULL,
    line TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE TABLE incident_creations (
    incident TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT,
    announced_at BIGINT
);
CREATE TRIGGER log_leaves_append_only BEFORE UPDATE OR DELETE ON log_leaves
    FOR EACH ROW EXECUTE FUNCTION broadcaster_append_only();
CREATE TRIGGER log_hashes_append_only BEFORE UPDATE OR DELETE ON log_hashes
    FOR EACH ROW EXECUTE FUNCTION broadcaster_append_only();
CREATE TRIGGER incident_creations_append_only BEFORE UPDATE OR DELETE ON incident_creations
    FOR EACH ROW EXECUTE FUNCTION broadcaster_append_only();
CREATE TRIGGER log_leaves_no_truncate BEFORE TRUNCATE ON log_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION broadcaster_append_only();
CREATE TRIGGER log_hashes_no_truncate BEFORE TRUNCATE ON log_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION broadcaster_append_only();
