-- Issue 15: TOTP second factor for staff. The secret is sealed (AES-256-GCM) under a key
-- derived from the server's secrets file, so a database reader cannot compute codes; recovery
-- codes and pending-login tokens are stored as HMACs only. Kept in step with ../postgres/.
CREATE TABLE totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    secret_sealed BLOB NOT NULL,
    -- NULL until the first code confirms the enrolment.
    confirmed_at INTEGER,
    -- The newest time step accepted: a code counts once, and older steps never again.
    last_step INTEGER NOT NULL DEFAULT -1,
    created_at INTEGER NOT NULL
);
CREATE TABLE totp_recovery (
    user_id TEXT NOT NULL REFERENCES users(id),
    code_mac BLOB NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_mac)
);
-- The password step of a login of an account that needs a code: bound to the account, short
-- lived, used once.
CREATE TABLE login_pending (
    token_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX login_pending_expires ON login_pending (expires_at);
