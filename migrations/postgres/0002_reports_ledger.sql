-- Reports, chunks and where their replicas are, wrapped keys, grants, one-time codes, and the
-- ledger. Times are unix milliseconds; ids are UUID text; chunk ids are lowercase hex.
-- Kept in step with ../sqlite/.

-- The ledger's size: every append updates this one row first, which serializes appends in
-- the database (several server processes may share it).
CREATE TABLE ledger_state (
    id BIGINT PRIMARY KEY,
    size BIGINT NOT NULL
);
INSERT INTO ledger_state (id, size) VALUES (1, 0);

CREATE TABLE ledger_entries (
    idx BIGINT PRIMARY KEY,
    kind BIGINT NOT NULL,
    entry BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Hashes of the perfect subtrees completed by each append (level 0: leaf hashes), so every
-- root and proof is answered from O(log² n) rows.
CREATE TABLE ledger_nodes (
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Which users an entry is about (its patient, author, reader, wrapper), for
-- "entries about themselves".
CREATE TABLE ledger_subjects (
    user_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    PRIMARY KEY (user_id, idx)
);

CREATE TABLE ledger_heads (
    tree_size BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    signed BYTEA NOT NULL,
    PRIMARY KEY (tree_size, time_ms)
);

-- Ledger index of the user's key entry (kind 1).
ALTER TABLE users ADD COLUMN key_index BIGINT;

CREATE TABLE reports (
    id TEXT PRIMARY KEY,
    author_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    chunk_size BIGINT NOT NULL,
    plaintext_len BIGINT NOT NULL,
    n_chunks BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    touched_at BIGINT NOT NULL,
    committed_at BIGINT,
    manifest BYTEA,
    signature BYTEA,
    meta BYTEA,
    ledger_index BIGINT,
    released_at BIGINT
);
CREATE INDEX reports_patient ON reports(patient_id, created_at);
CREATE INDEX reports_author ON reports(author_id, created_at);
CREATE INDEX reports_open ON reports(status, touched_at);

CREATE TABLE chunks (
    id TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE chunk_replicas (
    chunk_id TEXT NOT NULL REFERENCES chunks(id),
    bucket TEXT NOT NULL,
    PRIMARY KEY (chunk_id, bucket)
);

-- Chunks uploaded to a report; `idx` is set at commit from the signed order.
CREATE TABLE report_chunks (
    report_id TEXT NOT NULL REFERENCES reports(id),
    chunk_id TEXT NOT NULL REFERENCES chunks(id),
    idx BIGINT,
    PRIMARY KEY (report_id, chunk_id)
);
CREATE INDEX report_chunks_chunk ON report_chunks(chunk_id);

CREATE TABLE wrapped_keys (
    report_id TEXT NOT NULL REFERENCES reports(id),
    reader_id TEXT NOT NULL REFERENCES users(id),
    wrapped BYTEA NOT NULL,
    wrapper_id TEXT NOT NULL REFERENCES users(id),
    grant_id TEXT,
    ledger_index BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (report_id, reader_id)
);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES reports(id),
    reader_id TEXT NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    how BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    approved_at BIGINT,
    approval_index BIGINT,
    consent_sig BYTEA,
    revoked_at BIGINT,
    revoke_index BIGINT
);
CREATE INDEX grants_report ON grants(report_id);
CREATE INDEX grants_reader ON grants(reader_id);

-- One-time codes (DESIGN.md §5): HMAC under the pepper, bound to the request id.
CREATE TABLE otp_requests (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    report_id TEXT NOT NULL REFERENCES reports(id),
    grant_id TEXT,
    user_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES users(id),
    code_mac BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    tries BIGINT NOT NULL DEFAULT 0,
    used_at BIGINT
);
CREATE INDEX otp_requests_user ON otp_requests(user_id, created_at);
