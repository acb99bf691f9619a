-- Issue 16: break-glass emergency access. The emergency team (each change is a kind-11
-- ledger entry; this table is only the server's view of it), the report keys wrapped to its
-- members and held in escrow, and break-glass requests (each a kind-12 entry).
-- Kept in step with ../postgres/.
CREATE TABLE emergency_team (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    added_by TEXT NOT NULL REFERENCES users(id),
    added_at BIGINT NOT NULL,
    ledger_index BIGINT
);

-- Served only through a released break-glass request of the member's.
CREATE TABLE emergency_escrow (
    report_id TEXT NOT NULL REFERENCES reports(id),
    member_id TEXT NOT NULL REFERENCES users(id),
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (report_id, member_id)
);
CREATE INDEX emergency_escrow_member ON emergency_escrow(member_id);

CREATE TABLE emergency_requests (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES users(id),
    reader_id TEXT NOT NULL REFERENCES users(id),
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    release_at BIGINT NOT NULL,
    -- The reader may fetch the keys and chunks until then.
    until_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    vetoed_at BIGINT,
    ledger_index BIGINT NOT NULL
);
CREATE INDEX emergency_requests_patient ON emergency_requests(patient_id, created_at);
CREATE INDEX emergency_requests_reader ON emergency_requests(reader_id, created_at);

-- The reports a request covers, fixed when it was opened (their hash is in its entry).
CREATE TABLE emergency_request_reports (
    request_id TEXT NOT NULL REFERENCES emergency_requests(id),
    report_id TEXT NOT NULL REFERENCES reports(id),
    PRIMARY KEY (request_id, report_id)
);
CREATE INDEX emergency_request_reports_report ON emergency_request_reports(report_id);
